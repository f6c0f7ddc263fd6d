"""A local Mitake (三竹資訊) SMS gateway: SmSend, SmQuery and delivery reports.

Speaks the plain-text HTTP API of ``https://smsapi.mitake.com.tw/api/mtk/``
as described in :mod:`channels.mitake_sms`:

* ``POST /api/mtk/SmSend?CharsetURL=UTF8`` (or ``Big5``, Mitake's default),
  a form with ``username``, ``password``, ``dstaddr``, ``smbody``, optional
  ``clientid``, ``response``, ``destname``, ``dlvtime``, ``vldtime``. The
  answer is ``[1]`` then ``msgid=``, ``statuscode=``, ``AccountPoint=`` lines,
  HTTP 200 even for an error (only the status code says so), in the charset
  asked for. A ``clientid`` seen before gets the first answer again with
  ``Duplicate=Y``, and nothing is sent (Mitake keeps them 12 hours; this
  simulator for its whole life). Only accepted sends are remembered: a refused
  request sent nothing to repeat.
* ``POST /api/mtk/SmQuery`` with ``msgid`` (comma-separated): one
  ``msgid<TAB>statuscode<TAB>YYYYMMDDHHMMSS`` line each (``z`` for an unknown
  id); without ``msgid`` the account's ``AccountPoint=``.
* Wrong ``username``/``password``: ``statuscode=e``. ``account_fault`` (a code
  such as ``s``, no points, or ``k``, IP not registered) answers every request
  with that code, as a suspended account does. The
  :class:`~channels.simulators.base.FaultMix` injects HTTP 500
  (``server_error``) and ``statuscode=l``, too many connections (``rate_limited``).

Magic ``dstaddr`` endings (Taiwanese mobiles, ``09xxxxxxxx``):

================  ===========================================================
ends with          result
================  ===========================================================
``99990``          refused: ``statuscode=v`` (invalid mobile number)
``00006``          accepted; report ``StatusFlag=6`` (number error), UNDELIV
``00008``          accepted; report ``StatusFlag=8`` (expired), EXPIRED
``00005``          accepted; report ``StatusFlag=5`` (content error), REJECTD
``77777``          accepted and recorded, then the answer waits ``stall_seconds``:
                   a send that went out though the sender never heard so
================  ===========================================================

Any other number ends ``StatusFlag=4`` (delivered), DELIVRD. The report is
a GET to the ``response`` URL with ``msgid``, ``dstaddr``, ``dlvtime``,
``donetime``, ``statuscode``, ``statusstr`` and ``StatusFlag`` appended,
``callback_delay`` seconds after the send, and repeated (up to
``report_tries`` times) while the receiver does not acknowledge it with
``magicid=sms_gateway_rpack`` and the msgid, as Mitake does. Every report
posted is kept in ``callbacks_sent`` with the HTTP status and whether it was
acknowledged.
"""

from __future__ import annotations

import itertools
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar
from urllib.error import HTTPError
from urllib.parse import parse_qsl, urlencode
from urllib.request import ProxyHandler, Request, build_opener

from channels.simulators.base import FaultMix, HttpSimulator, JsonHandler

__all__ = ["MitakeSimulator"]

_TAIPEI = timezone(timedelta(hours=8))
_REFUSED_SUFFIX = "99990"
_STALL_SUFFIX = "77777"
# dstaddr ending → (StatusFlag, statusstr) of the final report; else delivered.
_ENDINGS = {"00006": ("6", "UNDELIV"), "00008": ("8", "EXPIRED"), "00005": ("5", "REJECTD")}
_DELIVERED = ("4", "DELIVRD")
REPORT_TIMEOUT_SECONDS = 15.0


def _stamp(at: float) -> str:
    return datetime.fromtimestamp(at, _TAIPEI).strftime("%Y%m%d%H%M%S")


def _charset(params: dict[str, str]) -> str:
    asked = (params.get("CharsetURL") or "Big5").replace("-", "").upper()
    return "utf-8" if asked == "UTF8" else "big5"


class _MitakeHandler(JsonHandler):
    simulator: ClassVar[MitakeSimulator]

    def do_POST(self) -> None:
        raw = self.body()  # read it all first, or the keep-alive connection desyncs
        sim = self.simulator
        sim.faults.pause()
        path, _, query = self.path.partition("?")
        params = dict(parse_qsl(query, keep_blank_values=True))
        charset = _charset(params)
        try:
            form = dict(parse_qsl(raw.decode("ascii"), keep_blank_values=True, encoding=charset))
        except (UnicodeDecodeError, ValueError):
            self.answer(200, "statuscode=y\n", charset)
            return
        if path == "/api/mtk/SmSend":
            status, text, stall = sim.sm_send(form, charset)
            if stall:
                time.sleep(sim.stall_seconds)
        elif path == "/api/mtk/SmQuery":
            status, text = sim.sm_query(form)
        else:
            status, text = 404, "Not Found\n"
        self.answer(status, text, charset)

    def answer(self, status: int, text: str, charset: str) -> None:
        data = text.encode(charset, "replace")
        try:
            self.send_response(status)
            self.send_header("Content-Type", f"text/plain; charset={charset}")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            pass  # the client gave up (a stalled answer): what it sent stays recorded


class MitakeSimulator(HttpSimulator):
    """Mitake's SmSend and SmQuery on 127.0.0.1, with delivery reports to ``response``."""

    handler = _MitakeHandler

    def __init__(
        self,
        *,
        username: str = "simulator",
        password: str = "simulator-password",
        callback_delay: float = 0.05,
        stall_seconds: float = 5.0,
        report_tries: int = 3,
        account_points: int = 100_000,
        faults: FaultMix | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(faults=faults, host=host, port=port)
        self.username, self.password = username, password
        self.callback_delay, self.stall_seconds = callback_delay, stall_seconds
        self.report_tries = report_tries
        self.account_points = account_points
        self.account_fault: str | None = None
        self.messages: list[dict[str, Any]] = []
        """Every accepted send (form fields, ``msgid``, ``charset``): what went out."""
        self.duplicates: list[dict[str, Any]] = []
        """Sends answered from the clientid memory: nothing went out for them."""
        self.callbacks_sent: list[dict[str, Any]] = []
        self._by_client: dict[str, str] = {}
        self._status: dict[str, tuple[str, float]] = {}
        self._ids = itertools.count(1_000_000_001)
        self._threads: list[threading.Thread] = []
        self._opener = build_opener(ProxyHandler({}))  # local receivers even with http_proxy

    def reset(self, faults: FaultMix | None = None) -> None:
        """Forget what was received and sent; take a new failure mix (default: none)."""
        self.wait_callbacks()
        with self.lock:
            self.faults = faults or FaultMix()
            self.account_fault = None
            self.messages.clear()
            self.duplicates.clear()
            self.callbacks_sent.clear()
            self._by_client.clear()
            self._status.clear()
            self._threads.clear()

    def _refusal(self, form: dict[str, str]) -> str | None:
        if not form.get("username"):
            return "c"
        if not form.get("password"):
            return "d"
        if (form["username"], form["password"]) != (self.username, self.password):
            return "e"
        if self.account_fault is None and self.account_points <= 0:
            return "s"  # a prepaid account whose points ran out: Mitake sends nothing more
        return self.account_fault

    def sm_send(self, form: dict[str, str], charset: str) -> tuple[int, str, bool]:
        """Answer one SmSend: (HTTP status, body, whether the answer stalls)."""
        fault = self.faults.draw()
        if fault == "server_error":
            return 500, "Internal Server Error\n", False
        refused = self._refusal(form)
        if refused is None and fault == "rate_limited":
            refused = "l"
        dstaddr, body = form.get("dstaddr", ""), form.get("smbody", "")
        if refused is None and not body:
            refused = "u"
        if refused is None and (not dstaddr.isdigit() or dstaddr.endswith(_REFUSED_SUFFIX)):
            refused = "v"
        if refused is not None:
            return 200, f"[1]\nstatuscode={refused}\nError={refused}\n", False
        key = form.get("clientid", "")
        with self.lock:
            first = self._by_client.get(key) if key else None
            if first is not None:
                self.duplicates.append(form | {"msgid": first, "received_at": time.time()})
                point = self.account_points
                return 200, self._accepted(first, point, key, duplicate=True), False
            msgid = f"{next(self._ids):010d}"
            self.account_points -= 1
            point = self.account_points
            now = time.time()
            final = next((end for sfx, end in _ENDINGS.items() if dstaddr.endswith(sfx)), None)
            self._status[msgid] = ("1", now)
            self.messages.append(form | {"msgid": msgid, "charset": charset, "received_at": now})
            if key:
                self._by_client[key] = msgid
        self._report_later(msgid, dstaddr, now, final or _DELIVERED, form.get("response", ""))
        return 200, self._accepted(msgid, point, key), dstaddr.endswith(_STALL_SUFFIX)

    @staticmethod
    def _accepted(msgid: str, point: int, key: str, *, duplicate: bool = False) -> str:
        lines = [f"[{key or 1}]", f"msgid={msgid}", "statuscode=1", f"AccountPoint={point}"]
        if duplicate:
            lines.append("Duplicate=Y")
        return "\n".join(lines) + "\n"

    def sm_query(self, form: dict[str, str]) -> tuple[int, str]:
        """Answer one SmQuery: statuses of the msgids asked for, or the points left."""
        refused = self._refusal(form)
        if refused is not None:
            return 200, f"statuscode={refused}\n"
        asked = [m.strip() for m in form.get("msgid", "").split(",") if m.strip()]
        if not asked:
            return 200, f"AccountPoint={self.account_points}\n"
        if len(asked) > 100:
            return 200, "statuscode=w\n"
        lines = []
        with self.lock:
            for msgid in asked:
                code, at = self._status.get(msgid, ("z", time.time()))
                lines.append(f"{msgid}\t{code}\t{_stamp(at)}")
        return 200, "\n".join(lines) + "\n"

    def _report_later(
        self, msgid: str, dstaddr: str, sent_at: float, final: tuple[str, str], url: str
    ) -> None:
        thread = threading.Thread(
            target=self._report,
            args=(msgid, dstaddr, sent_at, final, url),
            name="mitake-reports",
            daemon=True,
        )
        with self.lock:
            self._threads.append(thread)
        thread.start()

    def _report(
        self, msgid: str, dstaddr: str, sent_at: float, final: tuple[str, str], url: str
    ) -> None:
        time.sleep(self.callback_delay)
        flag, text = final
        done = time.time()
        with self.lock:
            self._status[msgid] = (flag, done)
        if not url:
            return
        params = {
            "msgid": msgid,
            "dstaddr": dstaddr,
            "dlvtime": _stamp(sent_at),
            "donetime": _stamp(done),
            "statuscode": "0",  # the carrier's own code; StatusFlag is Mitake's status
            "statusstr": text,
            "StatusFlag": flag,
        }
        target = url + ("&" if "?" in url else "?") + urlencode(params)
        for attempt in range(1, self.report_tries + 1):
            answered: int | None
            reply = ""
            try:
                request = Request(target, method="GET", headers={"User-Agent": "Mitake-SMS"})
                with self._opener.open(request, timeout=REPORT_TIMEOUT_SECONDS) as got:
                    answered = got.status
                    reply = got.read().decode("utf-8", "replace")
            except HTTPError as exc:
                answered = exc.code
            except OSError:
                answered = None
            acked = answered == 200 and "magicid=sms_gateway_rpack" in reply and msgid in reply
            with self.lock:
                self.callbacks_sent.append(
                    {"url": url, "params": params, "status": answered, "acked": acked}
                )
            if acked:
                return
            if attempt < self.report_tries:
                time.sleep(self.callback_delay)

    def wait_callbacks(self, timeout: float = 5.0) -> None:
        """Wait until every report thread started so far has finished."""
        deadline = time.monotonic() + timeout
        with self.lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
