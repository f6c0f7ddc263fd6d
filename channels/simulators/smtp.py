"""A local SMTP catcher: an aiosmtpd server that keeps what it is sent.

It serves the tests and the benchmarks, and is the embedded mode's mail
server: point the ``smtp`` email provider at ``start()``'s (host, port) and
read the mail as parsed messages (``messages``) or as ``.eml`` files in
``maildir``.

Magic recipients (the local part of the address contains):

* ``smtp-451`` → ``451 4.3.0`` at RCPT (transient);
* ``smtp-550`` → ``550 5.1.1`` at RCPT (no such user, permanent);
* ``smtp-552`` → ``552 5.3.4`` after DATA (message too big, permanent).

Dead and slow domains, as a relay that accepts first and reports later:

* a recipient at ``dead_domain`` (``dead.example``) is accepted, then a
  delivery status notification (RFC 3464, ``Action: failed``, ``5.1.1``) goes
  to the message's envelope sender (its VERP bounce address) at
  ``bounce_to``, the (host, port) standing in for the bounce domain's MX;
* one at ``slow_domain`` (``slow.example``) gets a ``delayed`` DSN (``4.4.1``).

A DSN refused with 4xx is delivered again, as an MTA's queue would, until
``dsn_tries`` run out; ``dsns`` keeps each DSN sent (``resend_dsn`` sends one
again: a duplicate), ``dsn_replies`` the receiver's last reply to each.

``transient_rate`` and ``permanent_rate`` add random 451 / 550 answers, at
RCPT or after DATA (drawn with ``seed``); ``latency_ms`` delays each DATA
reply.

aiosmtpd quirks handled:

* ``Controller(port=0)`` fails its own readiness check (it connects to port
  0); the subclass reads the bound port from ``server.sockets[0]`` first.
  https://aiosmtpd.aio-libs.org/en/latest/controller.html
* An authenticator that answers ``AuthResult(success=False)`` with the
  default ``handled=True`` sends no reply and the client hangs; ours says
  ``handled=False`` so aiosmtpd answers ``535 5.7.8``.
  https://aiosmtpd.aio-libs.org/en/latest/auth.html
* AUTH is advertised only after STARTTLS unless ``auth_require_tls=False``
  (clients then report "SMTP AUTH extension not supported"); without a TLS
  context the catcher allows AUTH in clear, on 127.0.0.1 only.
  https://github.com/aio-libs/aiosmtpd/issues/283
* The controller's loop is closed by ``stop()``: each ``start()`` builds a
  new controller, on the same port as before so clients can reconnect.
"""

from __future__ import annotations

import asyncio
import email.policy
import itertools
import random
import smtplib
import socket
import ssl
import threading
import time
import uuid
import warnings
import weakref
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any, Literal, cast

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

__all__ = ["CaughtEnvelope", "SmtpCatcher", "delivery_status_notification"]

_Fault = Literal["transient", "permanent"]
_REPLIES: dict[tuple[str, _Fault], str] = {
    ("rcpt", "transient"): "451 4.3.0 Mailbox temporarily unavailable, try again later",
    ("rcpt", "permanent"): "550 5.1.1 No such user here",
    ("data", "transient"): "451 4.3.0 Local error in processing, try again later",
    ("data", "permanent"): "550 5.7.1 Message rejected",
}


@dataclass(frozen=True, slots=True)
class CaughtEnvelope:
    """The SMTP envelope of a kept message: who sent it to whom, and how."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    tls: bool
    login: str | None
    helo: str = ""
    """The name the client greeted with (EHLO/HELO)."""


def _local_part(address: str) -> str:
    return address.rpartition("@")[0] or address


class _Handler:
    """aiosmtpd handler hooks: scripted refusals, then keep the message."""

    def __init__(self, catcher: SmtpCatcher) -> None:
        self.catcher = catcher
        # A fault drawn at RCPT but answered after DATA, per transaction.
        self.deferred: weakref.WeakKeyDictionary[Envelope, _Fault] = weakref.WeakKeyDictionary()

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        local = _local_part(address)
        if "smtp-451" in local:
            return _REPLIES[("rcpt", "transient")]
        if "smtp-550" in local:
            return _REPLIES[("rcpt", "permanent")]
        fault = self.catcher._draw()
        if fault is not None:
            if self.catcher._coin():
                return _REPLIES[("rcpt", fault)]
            self.deferred[envelope] = fault
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.catcher.latency_ms:
            await asyncio.sleep(self.catcher.latency_ms / 1000)
        if any("smtp-552" in _local_part(rcpt) for rcpt in envelope.rcpt_tos):
            return "552 5.3.4 Message size exceeds fixed maximum message size"
        fault = self.deferred.pop(envelope, None)
        if fault is not None:
            return _REPLIES[("data", fault)]
        content = envelope.content
        raw = content.encode("utf-8") if isinstance(content, str) else bytes(content or b"")
        auth = session.auth_data  # what our authenticator returned on success
        caught = CaughtEnvelope(
            mail_from=envelope.mail_from or "",
            rcpt_tos=tuple(envelope.rcpt_tos),
            tls=session.ssl is not None,
            login=auth.login.decode() if isinstance(auth, LoginPassword) else None,
            helo=session.host_name or "",
        )
        number = self.catcher._keep(raw, caught)
        self.catcher._report_later(raw, caught)
        return f"250 2.0.0 Ok: queued as {number}"


class _Controller(Controller):
    """A Controller that may bind port 0 and counts the connections it serves."""

    def __init__(self, catcher: SmtpCatcher, handler: _Handler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.catcher = catcher

    def factory(self) -> SMTP:
        # Called once per accepted connection (the readiness probe is not counted).
        self.catcher._connected()
        with warnings.catch_warnings():
            # AUTH in clear is deliberate when no TLS context is given (127.0.0.1 only).
            warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS")
            return SMTP(self.handler, **self.SMTP_kwargs)

    def _trigger_server(self) -> None:
        # Controller probes self.port, which with port 0 is not where it listens.
        server = cast(asyncio.Server, self.server)
        self.port = server.sockets[0].getsockname()[1]
        # The probe makes aiosmtpd build its SMTP instance (and read the banner).
        with socket.create_connection((self.hostname, self.port), timeout=1.0) as probe:
            probe.recv(1024)


class SmtpCatcher:
    """An aiosmtpd server on 127.0.0.1 in its own thread that keeps every message.

    ``messages`` holds each accepted message parsed with
    ``email.policy.default``, ``envelopes`` the matching envelopes and
    ``connections`` the number of SMTP connections served (to prove reuse).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency_ms: float = 0.0,
        transient_rate: float = 0.0,
        permanent_rate: float = 0.0,
        seed: int | None = None,
        require_auth: tuple[str, str] | None = None,
        starttls: ssl.SSLContext | None = None,
        maildir: Path | str | None = None,
        keep_last: int | None = None,
        bounce_to: tuple[str, int] | None = None,
        dead_domain: str = "dead.example",
        slow_domain: str = "slow.example",
        dsn_tries: int = 300,
        dsn_retry_seconds: float = 0.2,
    ) -> None:
        """``keep_last`` bounds ``messages`` for a long-running embedded catcher;
        ``bounce_to`` is where DSNs go (None: no DSN is sent)."""
        self.host, self.port = host, port
        self.latency_ms = latency_ms
        self.transient_rate = transient_rate
        self.permanent_rate = permanent_rate
        self.require_auth = require_auth
        self.starttls = starttls
        self.maildir = Path(maildir) if maildir is not None else None
        self.keep_last = keep_last
        self.messages: list[EmailMessage] = []
        self.envelopes: list[CaughtEnvelope] = []
        self.connections = 0
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._numbers = itertools.count(1)
        self._probing = False
        self._controller: _Controller | None = None
        self.bounce_to = bounce_to
        self.dead_domain, self.slow_domain = dead_domain.lower(), slow_domain.lower()
        self.dsn_tries, self.dsn_retry_seconds = dsn_tries, dsn_retry_seconds
        self.dsns: list[tuple[str, bytes]] = []
        """Each DSN sent: (the envelope sender it went to, its bytes)."""
        self.dsn_replies: list[str] = []
        self._reporters: list[threading.Thread] = []

    # --- delivery status notifications -------------------------------------------------------

    def resend_dsn(self, index: int = -1) -> str:
        """Send DSN number ``index`` again, byte for byte; the receiver's reply."""
        to, raw = self.dsns[index]
        return self._deliver_dsn(to, raw)

    def wait_for_reports(self, timeout: float = 60.0) -> None:
        """Wait until every DSN due so far has been answered (or given up)."""
        for thread in list(self._reporters):
            thread.join(timeout)

    def _report_later(self, raw: bytes, envelope: CaughtEnvelope) -> None:
        if self.bounce_to is None or not envelope.mail_from:
            return  # a null sender gets no DSN (RFC 3464 §2), nor does one nobody listens for
        for rcpt in envelope.rcpt_tos:
            domain = rcpt.rpartition("@")[2].lower()
            if domain == self.dead_domain:
                action, status, said = "failed", "5.1.1", "550 5.1.1 <{rcpt}>: User unknown"
            elif domain == self.slow_domain:
                action, status, said = "delayed", "4.4.1", "421 4.4.1 Connection timed out"
            else:
                continue
            dsn = delivery_status_notification(
                original=raw,
                envelope_sender=envelope.mail_from,
                recipient=rcpt,
                action=action,
                status=status,
                diagnostic=said.format(rcpt=rcpt),
                reporting_mta=self._smtp_options()["server_hostname"],
            )
            with self._lock:
                self.dsns.append((envelope.mail_from, dsn))
            # After the 250, from a thread of its own: the client is not kept waiting.
            thread = threading.Thread(
                target=self._deliver_dsn, args=(envelope.mail_from, dsn), daemon=True
            )
            self._reporters.append(thread)
            thread.start()

    def _deliver_dsn(self, to: str, raw: bytes) -> str:
        assert self.bounce_to is not None
        host, port = self.bounce_to
        reply = ""
        for _ in range(self.dsn_tries):
            try:
                with smtplib.SMTP(host, port, timeout=30) as client:
                    client.ehlo_or_helo_if_needed()
                    # The null reverse-path: nobody answers a DSN (RFC 5321 §4.5.5).
                    code, said = client.mail("")
                    if code < 400:
                        code, said = client.rcpt(to)
                    if code < 400:
                        code, said = client.data(raw)
                    reply = f"{code} {_text(said)}"
            except smtplib.SMTPResponseException as exc:
                reply = f"{exc.smtp_code} {_text(exc.smtp_error)}"
            except OSError as exc:
                reply = f"network: {exc}"
            if reply[:1] == "2":
                break
            if reply[:1] == "5":
                break  # refused for good: a real MTA drops a DSN it cannot deliver
            time.sleep(self.dsn_retry_seconds)
        with self._lock:
            self.dsn_replies.append(reply)
        return reply

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> tuple[str, int]:
        """Listen (on the same port again after a ``stop()``) and return (host, port)."""
        if self._controller is not None:
            return self.host, self.port
        if self.maildir is not None:
            self.maildir.mkdir(parents=True, exist_ok=True)
        controller = _Controller(
            self, _Handler(self), hostname=self.host, port=self.port, **self._smtp_options()
        )
        self._probing = True  # the readiness probe is not a client
        try:
            controller.start()
        finally:
            self._probing = False
        self._controller = controller
        self.port = controller.port
        return self.host, self.port

    def stop(self) -> None:
        """Stop listening and drop open connections; ``start()`` may follow."""
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def __enter__(self) -> SmtpCatcher:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _smtp_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {
            "server_hostname": "smtp-catcher.localhost",
            "ident": "notifier SMTP catcher",
        }
        if self.starttls is not None:
            options.update(tls_context=self.starttls, require_starttls=True)
        if self.require_auth is not None:
            options.update(
                authenticator=self._authenticate,
                auth_required=True,
                auth_require_tls=self.starttls is not None,
            )
        return options

    # --- called from the server thread -------------------------------------------------------

    def _authenticate(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: Any,
    ) -> AuthResult:
        assert self.require_auth is not None
        user, password = self.require_auth
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == user.encode()
            and auth_data.password == password.encode()
        )
        # handled=False: aiosmtpd sends the 535 itself (FIELD-NOTES: else the client hangs).
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    def _connected(self) -> None:
        with self._lock:
            if not self._probing:
                self.connections += 1

    def _draw(self) -> _Fault | None:
        with self._lock:
            roll = self._random.random()
        if roll < self.transient_rate:
            return "transient"
        if roll < self.transient_rate + self.permanent_rate:
            return "permanent"
        return None

    def _coin(self) -> bool:
        with self._lock:
            return self._random.random() < 0.5

    def _keep(self, raw: bytes, envelope: CaughtEnvelope) -> int:
        parsed = BytesParser(policy=email.policy.default).parsebytes(raw)
        assert isinstance(parsed, EmailMessage)
        with self._lock:
            number = next(self._numbers)
            self.messages.append(parsed)
            self.envelopes.append(envelope)
            if self.keep_last is not None and len(self.messages) > self.keep_last:
                del self.messages[: -self.keep_last or None]
                del self.envelopes[: -self.keep_last or None]
        if self.maildir is not None:
            name = f"{datetime.now():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:12]}.eml"
            partial = self.maildir / f".{name}.tmp"
            partial.write_bytes(raw)
            partial.replace(self.maildir / name)  # readers never see half a message
        return number


def _text(said: bytes | str) -> str:
    return said.decode(errors="replace") if isinstance(said, bytes) else said


def delivery_status_notification(
    *,
    original: bytes,
    envelope_sender: str,
    recipient: str,
    action: str,
    status: str,
    diagnostic: str,
    reporting_mta: str,
) -> bytes:
    """A DSN as Postfix writes one (RFC 3464): prose, the status fields, the original headers."""
    headers = original.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    boundary = f"dsn-{uuid.uuid4().hex}"
    now = format_datetime(datetime.now().astimezone())
    human = (
        "I'm sorry to have to inform you that your message could not\r\n"
        "be delivered to one or more recipients.\r\n"
        if action == "failed"
        else "Your message could not be delivered yet; the mail system will keep trying.\r\n"
    )
    text = (
        f"From: MAILER-DAEMON@{reporting_mta} (Mail Delivery System)\r\n"
        f"To: {envelope_sender}\r\n"
        f"Subject: {'Undelivered Mail Returned to Sender' if action == 'failed' else 'Delayed Mail'}\r\n"
        f"Date: {now}\r\n"
        f"Message-ID: {make_msgid(domain=reporting_mta)}\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"\r\n'
        "\r\n"
        f"--{boundary}\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
        f"{human}\r\n<{recipient}>: {diagnostic}\r\n\r\n"
        f"--{boundary}\r\n"
        "Content-Type: message/delivery-status\r\n\r\n"
        f"Reporting-MTA: dns; {reporting_mta}\r\n"
        f"Arrival-Date: {now}\r\n"
        "\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\n"
        f"Original-Recipient: rfc822;{recipient}\r\n"
        f"Action: {action}\r\n"
        f"Status: {status}\r\n"
        f"Remote-MTA: dns; mx.{recipient.rpartition('@')[2]}\r\n"
        f"Diagnostic-Code: smtp; {diagnostic}\r\n"
        "\r\n"
        f"--{boundary}\r\n"
        "Content-Type: text/rfc822-headers\r\n\r\n"
    ).encode("ascii")
    return text + headers + f"\r\n\r\n--{boundary}--\r\n".encode("ascii")
