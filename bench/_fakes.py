"""Lean provider fakes for the benchmarks: Twilio SMS, FCM and SMTP in one asyncio process.

    python bench/_fakes.py [--latency-ms 50] [--callback-delay 0.05] [--callback-connections 64]

The full simulators (channels/simulators) keep every message and serve the
tests and the embedded mode; at benchmark rates they were the ceiling (one
thread per request, 76-91% of a core at 438-1,308 sends/s, 1.6 GB RSS after
60,000 messages). These keep counters only, so that the bench measures the
notifier, not its fakes:

* Twilio: ``POST /2010-04-01/Accounts/{sid}/Messages.json`` (basic auth) answers
  201 with the fields the SDK and channels/twilio_sms.py read (``sid``,
  ``status`` ``queued``, ``num_segments``, ...); ``GET`` of it (the
  ambiguous-send lookup) answers an empty page. For each message with a
  ``StatusCallback``, ``sent`` then ``delivered`` are posted to it
  ``--callback-delay`` apart, form-encoded and signed as Twilio signs them
  (``X-Twilio-Signature``), over a pool of keep-alive connections; ``delivered``
  leaves only once ``sent`` was answered, as Twilio's come in order. None is
  dropped: a connection lost before the answer is retried once, and every
  callback is counted as answered 2xx or failed.
* FCM HTTP v1: ``POST /v1/projects/{p}/messages:send`` (bearer token) answers
  ``{"name": "projects/{p}/messages/<n>"}``. The token is static, so
  firebase-admin makes no OAuth round trip.
* SMTP: EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT (PIPELINING advertised);
  a message is read only to its end (``\\r\\n.\\r\\n``) and its header for
  ``X-Notifier-Delivery``.

Mitake is not served: the bench runs the full simulators for it. Replies wait
``--latency-ms`` (one timer per chunk read, not a coroutine per request) and
leave in the order their requests came, so pipelined requests are safe.

It prints the ``export NOTIFIER_...=...`` settings that point the notifier at
it, like ``notifier simulators``; on SIGUSR1 two lines: ``counts {...}`` (sends
per channel, callbacks answered/failed/pending, refusals) and ``sends
[[delivery_id, recipient, count], ...]``, what bench/e2e.py compares with the
delivery log to count duplicate sends.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import signal
import socket
import sys
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote_plus, unquote_plus, urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from channels.sms import sms_segments  # noqa: E402
from notifier.deliveries.callback_tokens import unverified_delivery_id  # noqa: E402

__all__ = ["Fakes", "HttpProtocol", "main"]

TWILIO_PREFIX = b"/2010-04-01/Accounts/"
FCM_PREFIX = b"/v1/projects/"
FCM_SUFFIX = b"/messages:send"
CALLBACK_TIMEOUT = 15.0
"""Seconds a status callback waits for its answer: Twilio's own 15 s (its error 11205)."""
MAX_HEADER = 65536
_REASONS = {
    200: b"OK", 201: b"Created", 204: b"No Content", 400: b"Bad Request", 401: b"Unauthorized",
    403: b"Forbidden", 404: b"Not Found", 405: b"Method Not Allowed", 411: b"Length Required",
    431: b"Request Header Fields Too Large",
}  # fmt: skip


def _twilio_error(code: int, message: str, status: int) -> bytes:
    return json.dumps(
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        }
    ).encode()


def _google_error(code: int, status: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message, "status": status}}).encode()


def _response(status: int, body: bytes, *, close: bool = False) -> bytes:
    head = b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n" % (
        status,
        _REASONS.get(status, b"Error"),
        len(body),
        b"Connection: close\r\n" if close else b"",
    )
    return head + body


_FORM_FIELDS = frozenset((b"To", b"From", b"Body", b"StatusCallback", b"MessagingServiceSid"))


def _form(body: bytes) -> dict[str, str]:
    """The fields of a Messages create the fakes read (parse_qsl decodes every one, slower)."""
    form = {}
    for pair in body.split(b"&"):
        name, _, value = pair.partition(b"=")
        if name in _FORM_FIELDS:
            form[name.decode()] = unquote_plus(value.decode())
    return form


def _header_value(head: bytes, start: int) -> bytes:
    """From ``start`` to the end of that line (or of ``head``)."""
    end = head.find(b"\n", start)
    return head[start : end if end >= 0 else len(head)]


class OrderedReplies:
    """Replies of one connection, written in the order their requests came.

    A reply is queued when its request is read and becomes ready after the
    latency; a ready reply waits for those before it (HTTP pipelining, SMTP
    PIPELINING), and all the replies of one chunk read share one timer.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, latency: float) -> None:
        self.loop = loop
        self.latency = latency
        self.transport: asyncio.Transport | None = None
        self._queue: deque[list[Any]] = deque()  # [ready, bytes, close after]
        self._batch: list[list[Any]] = []

    def add(self, reply: bytes, *, delayed: bool = True, close: bool = False) -> None:
        entry = [not (delayed and self.latency), reply, close]
        self._queue.append(entry)
        if not entry[0]:
            self._batch.append(entry)

    def end_of_chunk(self) -> None:
        """Arm one timer for the delayed replies of the chunk just read; flush the ready ones."""
        if self._batch:
            self.loop.call_later(self.latency, self._release, self._batch)
            self._batch = []
        self._flush()

    def _release(self, entries: list[list[Any]]) -> None:
        for entry in entries:
            entry[0] = True
        self._flush()

    def _flush(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            self._queue.clear()
            return
        out = []
        close = False
        while self._queue and self._queue[0][0]:
            _, reply, close = self._queue.popleft()
            out.append(reply)
            if close:
                break
        if out:
            transport.write(b"".join(out))
        if close:
            self._queue.clear()
            transport.close()


class HttpProtocol(asyncio.Protocol):
    """Minimal HTTP/1.1 server side: keep-alive, pipelining, Content-Length bodies only."""

    def __init__(self, handle: Callable[[bytes, bytes, dict[bytes, bytes], bytes], bytes],
                 latency: float) -> None:  # fmt: skip
        self.handle = handle
        self.replies = OrderedReplies(asyncio.get_running_loop(), latency)
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.replies.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.replies.transport = None

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        pos = 0
        size = len(buffer)
        while pos < size:
            end = buffer.find(b"\r\n\r\n", pos)
            if end < 0:
                if size - pos > MAX_HEADER:
                    self.replies.add(_response(431, b"{}", close=True), delayed=False, close=True)
                    pos = size
                break
            lines = buffer[pos:end].split(b"\r\n")
            try:
                method, target, _ = lines[0].split(b" ", 2)
            except ValueError:
                self.replies.add(_response(400, b"{}", close=True), delayed=False, close=True)
                pos = size
                break
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
            if b"transfer-encoding" in headers:
                self.replies.add(_response(411, b"{}", close=True), delayed=False, close=True)
                pos = size
                break
            start = end + 4
            stop = start + int(headers.get(b"content-length", b"0"))
            if stop > size:
                break  # the body is still coming
            reply = self.handle(method, target, headers, buffer[start:stop])
            close = headers.get(b"connection", b"").lower() == b"close"
            if close:  # urllib asks for it (the floor's tasks)
                reply = reply.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)
            self.replies.add(reply, close=close)
            pos = stop
        self.buffer = buffer[pos:]
        self.replies.end_of_chunk()


# -- status callbacks -----------------------------------------------------------


@dataclass
class _Callback:
    host: str
    port: int
    request: bytes
    then: Callable[[], None] | None
    attempts: int = 0
    started: float = 0.0


class _ClientConnection(asyncio.Protocol):
    """One keep-alive connection of the callback pool: one request at a time."""

    def __init__(self, pool: CallbackPool, key: tuple[str, int]) -> None:
        self.pool = pool
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.job: _Callback | None = None
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.pool.idle_connection(self)

    def send(self, job: _Callback) -> None:
        assert self.transport is not None
        self.job = job
        self.buffer = b""
        job.started = self.pool.loop.time()
        self.transport.write(job.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buffer[:end].lower()
        status = int(head[9:12])
        length = 0
        marker = head.find(b"\r\ncontent-length:")
        if marker >= 0:
            length = int(_header_value(head, marker + 17))
        elif b"\r\ntransfer-encoding: chunked" in head:
            if not self.buffer.endswith(b"0\r\n\r\n"):
                return
            length = len(self.buffer) - end - 4
        if len(self.buffer) < end + 4 + length:
            return
        job, self.job = self.job, None
        self.buffer = b""
        keep = b"\r\nconnection: close" not in head
        if job is not None:
            self.pool.answered(job, status)
        if keep:
            self.pool.idle_connection(self)
        elif self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.pool.lost(self)


class CallbackPool:
    """Status callbacks over at most ``limit`` keep-alive connections, in order of posting."""

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int) -> None:
        self.loop = loop
        self.limit = limit
        self.waiting: deque[_Callback] = deque()
        self.idle: list[_ClientConnection] = []
        self.busy: set[_ClientConnection] = set()
        self.connecting = 0
        self.scheduled = 0
        self._delayed: dict[float, deque[tuple[float, _Callback]]] = {}
        self.answered_by_status: Counter[int] = Counter()
        self.failed: Counter[str] = Counter()
        self.retried = 0
        self.sweeper = loop.call_later(1.0, self._sweep)

    @property
    def pending(self) -> int:
        return self.scheduled + len(self.waiting) + len(self.busy)

    def later(self, delay: float, job: _Callback) -> None:
        """Post ``job`` in ``delay`` seconds: one timer per delay's queue, not one per callback."""
        due = self.loop.time() + delay
        queue = self._delayed.setdefault(delay, deque())
        queue.append((due, job))
        self.scheduled += 1
        if len(queue) == 1:
            self.loop.call_at(due, self._due, queue)

    def _due(self, queue: deque[tuple[float, _Callback]]) -> None:
        # The same delay for all: the queue is in the order they fall due.
        now = self.loop.time() + 0.001
        while queue and queue[0][0] <= now:
            self.scheduled -= 1
            self.post(queue.popleft()[1])
        if queue:
            self.loop.call_at(queue[0][0], self._due, queue)

    def post(self, job: _Callback) -> None:
        while self.idle:
            conn = self.idle.pop()
            if conn.transport is not None and not conn.transport.is_closing():
                self.busy.add(conn)
                conn.send(job)
                return
        self.waiting.append(job)
        if self.connecting + len(self.busy) < self.limit:
            self.connecting += 1
            self.loop.create_task(self._connect((job.host, job.port)))

    async def _connect(self, key: tuple[str, int]) -> None:
        try:
            await self.loop.create_connection(lambda: _ClientConnection(self, key), *key)
        except OSError as exc:
            self.connecting -= 1
            # The receiver is down: what waits for a connection fails, as Twilio's would.
            if not self.busy and self.connecting == 0:
                while self.waiting:
                    self._finish(self.waiting.popleft(), failed=type(exc).__name__)
            return
        self.connecting -= 1

    def idle_connection(self, conn: _ClientConnection) -> None:
        self.busy.discard(conn)
        if self.waiting:
            self.busy.add(conn)
            conn.send(self.waiting.popleft())
        else:
            self.idle.append(conn)

    def answered(self, job: _Callback, status: int) -> None:
        self.answered_by_status[status] += 1
        self._finish(job, failed=None if 200 <= status < 300 else f"HTTP {status}")

    def lost(self, conn: _ClientConnection) -> None:
        self.busy.discard(conn)
        if conn in self.idle:
            self.idle.remove(conn)
        job, conn.job = conn.job, None
        if job is None:
            return
        timed_out = self.loop.time() - job.started >= CALLBACK_TIMEOUT
        if job.attempts == 0 and not timed_out:
            # A keep-alive connection the receiver closed as the request went out: once more.
            job.attempts += 1
            self.retried += 1
            self.post(job)
        else:
            self._finish(job, failed="timeout" if timed_out else "connection lost")

    def _finish(self, job: _Callback, *, failed: str | None) -> None:
        if failed:
            self.failed[failed] += 1
        if job.then is not None:
            job.then()

    def _sweep(self) -> None:
        now = self.loop.time()
        for conn in list(self.busy):
            job = conn.job
            if job is not None and now - job.started >= CALLBACK_TIMEOUT and conn.transport:
                conn.transport.abort()
        self.sweeper = self.loop.call_later(1.0, self._sweep)


# -- the fakes -----------------------------------------------------------------


@dataclass
class Fakes:
    latency: float
    callback_delay: float
    callback_connections: int
    account_sid: str = field(default_factory=lambda: "AC" + secrets.token_hex(16))
    auth_token: str = field(default_factory=lambda: secrets.token_hex(16))
    fcm_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    project: str = "notifier-simulated"
    from_number: str = "+886900000000"
    counts: Counter[str] = field(default_factory=Counter)
    sends: Counter[tuple[int, str]] = field(default_factory=Counter)
    """Accepted sends per (delivery id, recipient); bare clients' (no delivery) are left out."""

    def __post_init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.pool = CallbackPool(self.loop, self.callback_connections)
        self._mac = hmac.new(self.auth_token.encode(), digestmod=hashlib.sha1)
        basic = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode())
        self._basic = b"Basic " + basic
        self._bearer = b"Bearer " + self.fcm_token.encode()
        self._messages_path = TWILIO_PREFIX + self.account_sid.encode() + b"/Messages.json"
        self._fcm_path = FCM_PREFIX + self.project.encode() + FCM_SUFFIX
        self._date = ("", 0)

    # HTTP: one handler for both APIs (they are on two ports, told apart by path).

    def handle_http(
        self, method: bytes, target: bytes, headers: dict[bytes, bytes], body: bytes
    ) -> bytes:
        path, _, query = target.partition(b"?")
        if path == self._messages_path:
            if headers.get(b"authorization") != self._basic:
                self.counts["refused"] += 1
                return _response(401, _twilio_error(20003, "Authenticate", 401))
            if method == b"POST":
                return self._create_message(body)
            if method == b"GET":
                return _response(200, self._empty_page(path, query))
        elif path == self._fcm_path and method == b"POST":
            if headers.get(b"authorization") != self._bearer:
                self.counts["refused"] += 1
                return _response(401, _google_error(401, "UNAUTHENTICATED", "bad token"))
            return self._push(body)
        self.counts["not_found"] += 1
        if path.startswith(TWILIO_PREFIX):
            return _response(404, _twilio_error(20404, f"{target.decode()} was not found", 404))
        return _response(404, _google_error(404, "NOT_FOUND", f"{target.decode()} not served"))

    def _now(self) -> str:
        second = int(time.time())
        if self._date[1] != second:
            self._date = (formatdate(second, usegmt=True).replace("GMT", "+0000"), second)
        return self._date[0]

    def _create_message(self, body: bytes) -> bytes:
        form = _form(body)
        to, text, sender = form.get("To", ""), form.get("Body", ""), form.get("From", "")
        if not to or not text:
            self.counts["refused"] += 1
            return _response(400, _twilio_error(21604, "A 'To' and a 'Body' are required.", 400))
        self.counts["sms"] += 1
        sid = f"SM{self.counts['sms']:032x}"
        callback = form.get("StatusCallback")
        if callback:
            delivery_id = unverified_delivery_id(callback.rsplit("/", 1)[-1])
            if delivery_id is not None:
                self.sends[delivery_id, to] += 1
            self._callbacks(callback, sid, to, sender)
        now = self._now()
        payload = {
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "sid": sid,
            "to": to,
            "from": sender or None,
            "messaging_service_sid": form.get("MessagingServiceSid"),
            "status": "queued" if sender else "accepted",
            "num_segments": str(sms_segments(text)),
            "num_media": "0",
            "date_created": now,
            "date_updated": now,
            "date_sent": None,
            "error_code": None,
            "error_message": None,
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json",
        }
        return _response(201, json.dumps(payload).encode())

    def _empty_page(self, path: bytes, query: bytes) -> bytes:
        uri = (path + (b"?" + query if query else b"")).decode()
        size = dict(parse_qsl(query.decode())).get("PageSize", "50")
        return json.dumps(
            {
                "messages": [], "end": 0, "first_page_uri": uri, "next_page_uri": None, "page": 0,
                "page_size": int(size), "previous_page_uri": None, "start": 0, "uri": uri,
            }
        ).encode()  # fmt: skip

    def _callbacks(self, url: str, sid: str, to: str, sender: str) -> None:
        """``sent`` after the answer and the delay, ``delivered`` once ``sent`` was answered."""
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        # The form and the string Twilio signs, built by hand: urlencode and
        # RequestValidator.compute_signature cost 20 µs a callback, most of the
        # fakes' CPU per SMS. tests/integration/test_bench_fakes.py checks both
        # against the twilio library's.
        form = (
            f"AccountSid={self.account_sid}&ApiVersion=2010-04-01&MessageSid={sid}&SmsSid={sid}"
            f"&From={quote_plus(sender)}&To={quote_plus(to)}"
        )
        # Twilio signs the URL and each field's name and value, sorted by name.
        signed = (
            f"{url}AccountSid{self.account_sid}ApiVersion2010-04-01From{sender}MessageSid{sid}"
            "MessageStatus",
            f"SmsSid{sid}SmsStatus",
            f"To{to}",
        )
        head = (
            f"POST {target} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\nUser-Agent: TwilioProxy/1.1\r\n"
        )

        def job(status: str, then: Callable[[], None] | None) -> _Callback:
            body = f"{form}&MessageStatus={status}&SmsStatus={status}"
            mac = self._mac.copy()
            mac.update(f"{signed[0]}{status}{signed[1]}{status}{signed[2]}".encode())
            signature = base64.b64encode(mac.digest()).decode()
            request = (
                f"{head}X-Twilio-Signature: {signature}\r\nContent-Length: {len(body)}\r\n\r\n"
                f"{body}"
            )
            return _Callback(host, port, request.encode(), then)

        def delivered() -> None:
            self.pool.later(self.callback_delay, job("delivered", None))

        self.pool.later(self.latency + self.callback_delay, job("sent", delivered))

    def _push(self, body: bytes) -> bytes:
        try:
            message = json.loads(body)["message"]
            token = message.get("fid") or message.get("token")
        except (ValueError, KeyError, TypeError, AttributeError):
            token = None
        if not token:
            self.counts["refused"] += 1
            return _response(400, _google_error(400, "INVALID_ARGUMENT", "no message target"))
        self.counts["push"] += 1
        delivery = (message.get("data") or {}).get("delivery_id", "")
        if delivery.isdigit():
            self.sends[int(delivery), token] += 1
        name = f"projects/{self.project}/messages/0:{self.counts['push']:016d}%fakes"
        return _response(200, b'{"name": "%s"}' % name.encode())

    def email(self, headers: bytes, recipient: str) -> None:
        self.counts["email"] += 1
        marker = headers.find(b"\nX-Notifier-Delivery:")
        if marker >= 0:
            value = _header_value(headers, marker + 21)
            if value.strip().isdigit():
                self.sends[int(value), recipient] += 1

    def tally(self) -> str:
        counts = dict(self.counts) | {
            "callbacks_answered": dict(self.pool.answered_by_status),
            "callbacks_failed": dict(self.pool.failed),
            "callbacks_retried": self.pool.retried,
            "callbacks_pending": self.pool.pending,
        }
        rows = [[d, to, n] for (d, to), n in sorted(self.sends.items())]
        return f"counts {json.dumps(counts)}\nsends {json.dumps(rows)}\n"


class SmtpProtocol(asyncio.Protocol):
    """Enough ESMTP for aiosmtplib: commands line by line, DATA read to its end, counted."""

    def __init__(self, fakes: Fakes) -> None:
        self.fakes = fakes
        self.replies = OrderedReplies(fakes.loop, fakes.latency)
        self.buffer = b""
        self.in_data = False
        self.recipients: list[str] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.replies.transport = transport
        transport.write(b"220 fakes ESMTP\r\n")

    def connection_lost(self, exc: Exception | None) -> None:
        self.replies.transport = None

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        pos = 0
        while True:
            if self.in_data:
                if buffer.startswith(b".\r\n", pos):  # the end at once: an empty message
                    message, pos = b"", pos + 3
                else:
                    end = buffer.find(b"\r\n.\r\n", pos)
                    if end < 0:
                        break
                    message, pos = buffer[pos : end + 2], end + 5
                top = message.find(b"\r\n\r\n")
                self.fakes.email(message[: top if top >= 0 else len(message)], self.recipients[0])
                self.replies.add(b"250 2.0.0 OK queued\r\n")
                self.in_data = False
                self.recipients = []
                continue
            end = buffer.find(b"\r\n", pos)
            if end < 0:
                break
            line = buffer[pos:end]
            pos = end + 2
            self._command(line)
        self.buffer = buffer[pos:]
        self.replies.end_of_chunk()

    def _command(self, line: bytes) -> None:
        verb = line[:4].upper()
        add = self.replies.add
        if verb == b"EHLO":
            add(b"250-fakes\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n"
                b"250 SIZE 33554432\r\n", delayed=False)  # fmt: skip
        elif verb == b"HELO":
            add(b"250 fakes\r\n", delayed=False)
        elif verb == b"MAIL":
            self.recipients = []
            add(b"250 2.1.0 OK\r\n", delayed=False)
        elif verb == b"RCPT":
            address = line.partition(b"<")[2].partition(b">")[0]
            self.recipients.append(address.decode(errors="replace"))
            add(b"250 2.1.5 OK\r\n", delayed=False)
        elif verb == b"DATA":
            if self.recipients:
                self.in_data = True
                add(b"354 end with <CRLF>.<CRLF>\r\n", delayed=False)
            else:
                add(b"503 5.5.1 RCPT first\r\n", delayed=False)
        elif verb == b"RSET":
            self.recipients = []
            add(b"250 2.0.0 OK\r\n", delayed=False)
        elif verb == b"NOOP":
            add(b"250 2.0.0 OK\r\n", delayed=False)
        elif verb == b"QUIT":
            add(b"221 2.0.0 bye\r\n", delayed=False, close=True)
        else:
            add(b"502 5.5.2 not implemented\r\n", delayed=False)


# -- running it ------------------------------------------------------------------


async def serve(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    fakes = Fakes(args.latency_ms / 1000, args.callback_delay, args.callback_connections)
    latency = fakes.latency

    def http() -> HttpProtocol:
        return HttpProtocol(fakes.handle_http, latency)

    backlog = 4096  # a short backlog throttles many concurrent clients (FIELD-NOTES)
    twilio = await loop.create_server(http, args.host, 0, backlog=backlog)
    fcm = await loop.create_server(http, args.host, 0, backlog=backlog)
    smtp = await loop.create_server(lambda: SmtpProtocol(fakes), args.host, 0, backlog=backlog)

    def port(server: asyncio.Server) -> int:
        sock: socket.socket = server.sockets[0]
        return int(sock.getsockname()[1])

    settings = {
        "NOTIFIER_TWILIO__ACCOUNT_SID": fakes.account_sid,
        "NOTIFIER_TWILIO__AUTH_TOKEN": fakes.auth_token,
        "NOTIFIER_TWILIO__FROM_NUMBER": fakes.from_number,
        "NOTIFIER_TWILIO__BASE_URL": f"http://{args.host}:{port(twilio)}",
        "NOTIFIER_FCM__PROJECT_ID": fakes.project,
        "NOTIFIER_FCM__ACCESS_TOKEN": fakes.fcm_token,
        "NOTIFIER_FCM__BASE_URL": f"http://{args.host}:{port(fcm)}",
        "NOTIFIER_FCM__SDK_RETRIES": "false",
        "NOTIFIER_SMTP__HOST": args.host,
        "NOTIFIER_SMTP__PORT": str(port(smtp)),
        "NOTIFIER_SMTP__STARTTLS": "false",
    }
    sys.stdout.write("".join(f"export {name}={value}\n" for name, value in settings.items()))
    sys.stdout.flush()
    stop = asyncio.Event()

    def tally() -> None:
        sys.stdout.write(fakes.tally())
        sys.stdout.flush()

    loop.add_signal_handler(signal.SIGUSR1, tally)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()
    for server in (twilio, fcm, smtp):
        server.close()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--latency-ms", type=float, default=0.0, help="each answer waits this long")
    add("--callback-delay", type=float, default=0.05, help="seconds before each status callback")
    add("--callback-connections", type=int, default=64, help="keep-alive connections to the API")
    add("--host", default="127.0.0.1")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    asyncio.run(serve(parse_args(argv)))


if __name__ == "__main__":
    main()
