"""A local Twilio REST API: Messages and Calls, basic auth, errors, signed callbacks.

Speaks enough of ``https://api.twilio.com/2010-04-01`` for the real twilio SDK:

* ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` and ``.../Calls.json``,
  form-encoded, HTTP basic auth with the configured account sid and auth token
  (anything else: 401, code 20003); the answer is 201 JSON with ``sid``
  (``SM``/``CA`` + 32 hex), ``status`` (``queued``; ``accepted`` for a
  Messaging Service without ``From``), ``to``, ``from``, ``num_segments``,
  ``account_sid``, ``date_created`` (RFC 2822, as Twilio writes it).
* Errors are Twilio's JSON ``{"code", "message", "more_info", "status"}``.
  The :class:`~channels.simulators.base.FaultMix` injects 500 (code 20500)
  and 429 (code 20429, with ``Retry-After: 1``, which Twilio itself does not
  promise).
* Accepted requests are kept in ``messages`` / ``calls`` (form fields, a
  repeated field as a list, plus ``Sid``); ``callbacks_sent`` lists every
  status callback posted and the HTTP status it got.
* ``GET .../Messages.json`` and ``.../Calls.json`` list what was accepted,
  newest first, as Twilio's read endpoints do: filtered by ``To`` and
  ``From``, ``PageSize`` records (default 50) in one page whose list key is
  ``messages`` / ``calls``, with Twilio's paging fields (``next_page_uri``
  null: one page). Each record's ``status`` follows the callbacks posted.
  Like Twilio's, a record carries no ``StatusCallback`` (nor a call's TwiML).
* Accepts, then stalls: ``FaultMix.stalled`` (a share of the creates; ``dropped``
  the share that stalls without being taken),
  :meth:`TwilioSimulator.stall_next` (the next creates, or with ``to=`` the
  next ones to that number) or a ``To`` ending ``0491`` take the send
  (recorded, called back as usual) and hold the answer ``stall_seconds``,
  past the client's timeout. ``stall_next(n, accept=False)`` holds the answer
  of a send it drops: the timeout looks the same to the client, and Twilio
  has no record.

Account-level refusals (our side broken, not the number):
``refuse_account(20003)`` answers every create as if the credentials were
wrong (401), ``20005`` as a suspended account (401), ``21212`` / ``21606`` as a
``From`` number Twilio will not send from (400); ``refuse_account(None)``
puts the account right again.

Magic ``To`` numbers, like Twilio's test credentials
(https://www.twilio.com/docs/iam/test-credentials), for Messages and Calls:

=================  ==================================================
``To`` ends with    result
=================  ==================================================
``21211``           400, code 21211: invalid ``To`` number
``21217``           400, code 21217: phone number not reachable
``21610``           400, code 21610: recipient replied STOP
``21614``           400, code 21614: not a mobile number
``30003``           SMS accepted; callbacks ``sent``, then ``undelivered``
                    with ``ErrorCode`` 30003 (handset unreachable)
``30005``           the same with ``ErrorCode`` 30005 (unknown destination)
``30006``           the same with ``ErrorCode`` 30006 (a landline); a call to
                    it is answered like any other
``30008``           the same with ``ErrorCode`` 30008 (unknown error): says
                    nothing of the number
``0486``            call accepted; callbacks end ``busy``
``0487``            call accepted; callbacks end ``no-answer``
``0488``            call answered by a machine: ``AnsweredBy`` ``machine_end_beep``
``0489``            call answered, detection undecided: ``AnsweredBy`` ``unknown``
``0490``            call answered by a person who hangs up: ``CallDuration`` 4
=================  ==================================================

Any other number is accepted; its SMS callbacks are ``sent`` then
``delivered``; a call's are ``initiated``, ``ringing``, ``in-progress``
(the ``answered`` event) and ``completed`` (``CallDuration`` 45), each only
if asked for in ``StatusCallbackEvent`` (default: ``completed`` alone), as
Twilio does. A call created with ``MachineDetection`` and ``AsyncAmd=true``
also posts its answering-machine result (``AnsweredBy``: ``human`` unless the
number says otherwise, ``MachineDetectionDuration``) to
``AsyncAmdStatusCallback``, after it is answered and before it completes
(https://www.twilio.com/docs/voice/answering-machine-detection).
``POST .../Calls/{CallSid}.json`` (a live call's new ``Twiml``) is kept in
``call_updates`` and answered with the call.

Callbacks are posted from a background thread, ``callback_delay`` seconds
apart (held while ``callbacks_open`` is cleared), form-encoded and signed like Twilio's: ``X-Twilio-Signature`` =
``RequestValidator(auth_token).compute_signature(url, params)``
(https://www.twilio.com/docs/usage/security#validating-requests).
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
import time
import uuid
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any, ClassVar
from urllib.error import HTTPError
from urllib.parse import parse_qsl, urlencode
from urllib.request import ProxyHandler, Request, build_opener

from twilio.request_validator import RequestValidator

from channels.simulators.base import FaultMix, HttpSimulator, JsonHandler
from channels.sms import sms_segments

__all__ = ["TwilioSimulator"]

API_VERSION = "2010-04-01"
_PATH = re.compile(
    rf"^/{API_VERSION}/Accounts/(?P<sid>[^/]+)/(?P<kind>Messages|Calls)"
    r"(?:/(?P<call>CA[0-9a-f]{32}))?\.json$"
)
_STALLS = "0491"
"""``To`` suffix of a send that is accepted and then answered too late."""

# To-suffix → (code, message) of a refused create, for Messages and Calls alike.
_REFUSED = {
    "21211": (21211, "The 'To' number {to} is not a valid phone number."),
    "21217": (21217, "Phone number does not appear to be valid"),
    "21610": (21610, "Attempt to send to unsubscribed recipient"),
    "21614": (21614, "'To' number {to} is not a valid mobile number"),
}
# Account-level refusals: code → (HTTP status, message).
_ACCOUNT_REFUSALS = {
    20003: (401, "Authenticate"),
    20005: (401, "Account not active"),
    21212: (400, "The 'From' number is not a valid phone number, shortcode, or alphanumeric ID."),
    21606: (400, "The 'From' phone number provided is not a valid message-capable number."),
}
# To-suffix → how a call ends when nobody answers.
_CALL_ENDINGS = {"0486": "busy", "0487": "no-answer"}
# To-suffix → who answering-machine detection says took the call (else a person).
_ANSWERED_BY = {"0488": "machine_end_beep", "0489": "unknown"}
_SHORT_CALL = "0490"
_SMS_UNDELIVERED = ("30003", "30005", "30006", "30008")
"""``To`` suffixes whose SMS end ``undelivered`` with that ``ErrorCode``."""
CALLBACK_TIMEOUT_SECONDS = 15.0
"""How long a status callback waits for the receiver's answer: Twilio's own 15 s
(https://www.twilio.com/docs/api/errors/11205). Shorter, a receiver that is busy but
working loses reports that Twilio would have delivered."""


def _error(code: int, message: str, status: int) -> dict[str, Any]:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def _now() -> str:
    return format_datetime(datetime.now(UTC).replace(microsecond=0))


class _TwilioHandler(JsonHandler):
    simulator: ClassVar[TwilioSimulator]

    def do_GET(self) -> None:
        sim = self.simulator
        path, _, query = self.path.partition("?")
        match = _PATH.match(path)
        if not match or match["call"]:
            self.send_json(
                404, _error(20404, f"The requested resource {self.path} was not found", 404)
            )
            return
        if not sim.authorized(self.headers.get("Authorization"), match["sid"]):
            self.send_json(401, _error(20003, "Authenticate", 401))
            return
        self.send_json(200, sim.list_page(match["kind"], dict(parse_qsl(query)), path))

    def do_POST(self) -> None:
        raw = self.body()  # read it all first, or the keep-alive connection desyncs
        sim = self.simulator
        sim.faults.pause()
        match = _PATH.match(self.path.split("?", 1)[0])
        if not match:
            self.send_json(
                404, _error(20404, f"The requested resource {self.path} was not found", 404)
            )
            return
        if not sim.authorized(self.headers.get("Authorization"), match["sid"]):
            self.send_json(
                401,
                _error(20003, "Authenticate", 401),
                {"WWW-Authenticate": 'Basic realm="Twilio API"'},
            )
            return
        refusal = sim.account_refusal
        if refusal is not None:
            status, text = _ACCOUNT_REFUSALS[refusal]
            with sim.lock:
                sim.refused_requests += 1
            self.send_json(status, _error(refusal, text, status))
            return
        fault = sim.faults.draw()
        if fault == "server_error":
            self.send_json(500, _error(20500, "Internal Server Error", 500))
            return
        if fault == "rate_limited":
            self.send_json(429, _error(20429, "Too Many Requests", 429), {"Retry-After": "1"})
            return
        form: dict[str, Any] = {}
        for key, value in parse_qsl(raw.decode("utf-8"), keep_blank_values=True):
            if key in form:  # a repeated field (StatusCallbackEvent) becomes a list
                previous = form[key]
                form[key] = [*previous, value] if isinstance(previous, list) else [previous, value]
            else:
                form[key] = value
        if match["call"]:
            if match["kind"] != "Calls":
                self.send_json(404, _error(20404, f"{self.path} was not found", 404))
                return
            status, payload = sim.update_call(match["call"], form)
        else:
            stall = sim.take_stall(form.get("To", ""), drawn=fault)
            if stall == "drop":
                time.sleep(sim.stall_seconds)  # nothing recorded: Twilio never had it
                self._answer_late(500, _error(20500, "Internal Server Error", 500))
                return
            create = sim.create_message if match["kind"] == "Messages" else sim.create_call
            status, payload = create(form)
            if stall == "accept" and status == 201:
                time.sleep(sim.stall_seconds)
                self._answer_late(status, payload)
                return
        self.send_json(status, payload)

    def _answer_late(self, status: int, payload: dict[str, Any]) -> None:
        # The client gave up long ago; its socket may be gone.
        try:
            self.send_json(status, payload)
        except OSError:
            self.close_connection = True


class TwilioSimulator(HttpSimulator):
    """Twilio's Messages and Calls resources on 127.0.0.1, with signed status callbacks."""

    handler = _TwilioHandler

    def __init__(
        self,
        *,
        account_sid: str = "AC" + "0" * 32,
        auth_token: str = "simulator-token",
        callback_delay: float = 0.05,
        stall_seconds: float = 3.0,
        faults: FaultMix | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(faults=faults, host=host, port=port)
        self.account_sid, self.auth_token = account_sid, auth_token
        self.callback_delay = callback_delay
        self.stall_seconds = stall_seconds
        """How long an accepted-then-stalled send's answer is held."""
        self._stalls: list[tuple[str | None, str]] = []
        """``(To or None for any, "accept" or "drop")``, in the order asked."""
        self._records: dict[str, list[dict[str, Any]]] = {"Messages": [], "Calls": []}
        self.messages: list[dict[str, Any]] = []
        self.calls: list[dict[str, Any]] = []
        self.call_updates: list[dict[str, Any]] = []
        self.callbacks_sent: list[dict[str, Any]] = []
        self.account_refusal: int | None = None
        self.refused_requests = 0
        self._validator = RequestValidator(auth_token)
        self._callback_threads: list[threading.Thread] = []
        self.callbacks_open = threading.Event()
        """Cleared, status callbacks wait until it is set again (Twilio slow to report)."""
        self.callbacks_open.set()
        # No proxy: callbacks go to local receivers even with http_proxy set.
        self._opener = build_opener(ProxyHandler({}))

    def reset(self, faults: FaultMix | None = None) -> None:
        """Forget what was received and sent; take a new failure mix (default: none)."""
        self.wait_callbacks()
        with self.lock:
            self.faults = faults or FaultMix()
            self.account_refusal = None
            self.refused_requests = 0
            self.messages.clear()
            self.calls.clear()
            self.call_updates.clear()
            self.callbacks_sent.clear()
            self._callback_threads.clear()
            self._stalls.clear()
            for records in self._records.values():
                records.clear()

    def stall_next(self, count: int = 1, *, accept: bool = True, to: str | None = None) -> None:
        """Hold the answer of the next ``count`` creates past the client's timeout.

        ``accept``: the send is taken first (Twilio has it); else it is dropped.
        ``to``: only creates to this number stall. A simulator shared by many
        stacks gets creates from all of them: unkeyed, another's send may take
        the stall, and the one meant to stall goes through at once.
        """
        with self.lock:
            self._stalls.extend([(to, "accept" if accept else "drop")] * count)

    def take_stall(self, to: str, *, drawn: str | None) -> str | None:
        """How this create stalls: ``"accept"``, ``"drop"`` or None (answered at once).

        ``drawn``: the request's :meth:`FaultMix.draw`.
        """
        with self.lock:
            for index, (number, how) in enumerate(self._stalls):
                if number is None or number == to:
                    del self._stalls[index]
                    return how
        if drawn == "dropped":
            return "drop"
        return "accept" if drawn == "stalled" or to.endswith(_STALLS) else None

    def list_page(self, kind: str, query: dict[str, str], path: str) -> dict[str, Any]:
        """One page of a Messages or Calls read: newest first, filtered by ``To``/``From``."""
        size = max(1, min(int(query.get("PageSize") or 50), 1000))
        with self.lock:
            records = [
                dict(record)
                for record in reversed(self._records[kind])
                if query.get("To", record["to"]) == record["to"]
                and query.get("From", record["from"]) == record["from"]
            ][:size]
        uri = f"{path}?{urlencode(query)}"
        return {
            kind.lower(): records,
            "end": max(0, len(records) - 1),
            "first_page_uri": uri,
            "next_page_uri": None,
            "page": 0,
            "page_size": size,
            "previous_page_uri": None,
            "start": 0,
            "uri": uri,
        }

    def refuse_account(self, code: int | None) -> None:
        """Answer every create with this account-level error (None: accept again)."""
        if code is not None and code not in _ACCOUNT_REFUSALS:
            raise ValueError(f"refuse_account: one of {sorted(_ACCOUNT_REFUSALS)}, not {code!r}")
        with self.lock:
            self.account_refusal = code

    def authorized(self, header: str | None, path_sid: str) -> bool:
        """Whether the basic credentials are ours and the path names our account."""
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return (user, password, path_sid) == (self.account_sid, self.auth_token, self.account_sid)

    def _resource(self, kind: str, sid: str) -> dict[str, Any]:
        now = _now()
        return {
            "sid": sid,
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "date_created": now,
            "date_updated": now,
            "direction": "outbound-api",
            "price": None,
            "price_unit": "USD",
            "uri": f"/{API_VERSION}/Accounts/{self.account_sid}/{kind}/{sid}.json",
        }

    def _refused(self, to: str) -> tuple[int, dict[str, Any]] | None:
        for suffix, (code, text) in _REFUSED.items():
            if to.endswith(suffix):
                return 400, _error(code, text.format(to=to), 400)
        return None

    def create_message(self, form: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Answer a Messages create: (HTTP status, JSON body)."""
        to, sender = form.get("To", ""), form.get("From", "")
        service, body = form.get("MessagingServiceSid", ""), form.get("Body", "")
        if not to:
            return 400, _error(21604, "A 'To' phone number is required.", 400)
        if not sender and not service:
            return 400, _error(21603, "A 'From' phone number is required.", 400)
        if not body:
            return 400, _error(21602, "Message body is required.", 400)
        if len(body) > 1600:
            return 400, _error(
                21617, "The concatenated message body exceeds the 1600 character limit.", 400
            )
        refused = self._refused(to)
        if refused:
            return refused
        sid = "SM" + uuid.uuid4().hex
        payload = self._resource("Messages", sid) | {
            "to": to,
            "from": sender or None,
            "body": body,
            "messaging_service_sid": service or None,
            "status": "queued" if sender else "accepted",
            "num_segments": str(sms_segments(body)),
            "num_media": "0",
            "date_sent": None,
            "error_code": None,
            "error_message": None,
        }
        with self.lock:
            self.messages.append(form | {"Sid": sid, "received_at": time.time()})
            self._records["Messages"].append(payload)
        callback = form.get("StatusCallback")
        if callback:
            error_code = next((code for code in _SMS_UNDELIVERED if to.endswith(code)), None)
            final = "undelivered" if error_code else "delivered"
            base = {
                "AccountSid": self.account_sid,
                "ApiVersion": API_VERSION,
                "MessageSid": sid,
                "SmsSid": sid,
                "From": sender,
                "To": to,
            } | ({"MessagingServiceSid": service} if service else {})
            events = [base | {"MessageStatus": "sent", "SmsStatus": "sent"}]
            last = base | {"MessageStatus": final, "SmsStatus": final}
            if error_code:
                last["ErrorCode"] = error_code
            events.append(last)
            self._post_later([(callback, params) for params in events])
        return 201, payload

    def create_call(self, form: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Answer a Calls create: (HTTP status, JSON body)."""
        to, sender = form.get("To", ""), form.get("From", "")
        if not to:
            return 400, _error(21201, "No 'To' number is specified", 400)
        if not sender:
            return 400, _error(21213, "No 'From' number is specified", 400)
        if not (form.get("Twiml") or form.get("Url") or form.get("ApplicationSid")):
            return 400, _error(21205, "Url parameter is required.", 400)
        refused = self._refused(to)
        if refused:
            return refused
        sid = "CA" + uuid.uuid4().hex
        payload = self._resource("Calls", sid) | {
            "to": to,
            "to_formatted": to,
            "from": sender,
            "from_formatted": sender,
            "status": "queued",
            "start_time": None,
            "end_time": None,
            "duration": None,
            "parent_call_sid": None,
        }
        with self.lock:
            self.calls.append(form | {"Sid": sid, "received_at": time.time()})
            self._records["Calls"].append(payload)
        self._post_later(self._call_events(sid, to, sender, form))
        return 201, payload

    def update_call(self, sid: str, form: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Answer a Calls update (new TwiML for a live call): (HTTP status, JSON body)."""
        with self.lock:
            placed = next((call for call in self.calls if call["Sid"] == sid), None)
            if placed is None:
                return 404, _error(20404, f"The requested resource Calls/{sid} was not found", 404)
            self.call_updates.append(form | {"Sid": sid, "received_at": time.time()})
        to, sender = placed.get("To", ""), placed.get("From", "")
        return 200, self._resource("Calls", sid) | {
            "to": to,
            "from": sender,
            "status": "in-progress",
        }

    def _call_events(
        self, sid: str, to: str, sender: str, form: dict[str, Any]
    ) -> list[tuple[str, dict[str, str]]]:
        """The ``(url, params)`` callbacks of a call, in the order Twilio posts them."""
        callback, amd_callback = form.get("StatusCallback"), form.get("AsyncAmdStatusCallback")
        asked = form.get("StatusCallbackEvent") or ["completed"]
        asked = set(asked if isinstance(asked, list) else [asked])
        ending = next((end for sfx, end in _CALL_ENDINGS.items() if to.endswith(sfx)), None)
        steps = [("initiated", "initiated"), ("ringing", "ringing")]
        if ending is None:
            steps += [("answered", "in-progress"), ("completed", "completed")]
        else:
            steps += [("completed", ending)]
        detects = bool(form.get("MachineDetection")) and form.get("AsyncAmd") == "true"
        events: list[tuple[str, dict[str, str]]] = []
        number = 0  # Twilio numbers the status callbacks it posts, from 0
        for event, status in steps:
            if event == "completed" and ending is None and detects and amd_callback:
                answered_by = next(
                    (who for sfx, who in _ANSWERED_BY.items() if to.endswith(sfx)), "human"
                )
                detection = {
                    "AccountSid": self.account_sid,
                    "CallSid": sid,
                    "AnsweredBy": answered_by,
                    "MachineDetectionDuration": "4100" if answered_by != "human" else "1800",
                }
                events.append((amd_callback, detection))
            if event not in asked or not callback:
                continue
            params = {
                "AccountSid": self.account_sid,
                "ApiVersion": API_VERSION,
                "CallSid": sid,
                "CallStatus": status,
                "Called": to,
                "Caller": sender,
                "CallbackSource": "call-progress-events",
                "Direction": "outbound-api",
                "From": sender,
                "To": to,
                "SequenceNumber": str(number),
                "Timestamp": _now(),
            }
            if event == "completed":
                params["CallDuration"] = (
                    "0" if ending else "4" if to.endswith(_SHORT_CALL) else "45"
                )
            events.append((callback, params))
            number += 1
        return events

    def _post_later(self, events: list[tuple[str, dict[str, str]]]) -> None:
        if not events:
            return
        thread = threading.Thread(
            target=self._post_callbacks, args=(events,), name="twilio-callbacks", daemon=True
        )
        with self.lock:
            self._callback_threads.append(thread)
        thread.start()

    def _post_callbacks(self, events: list[tuple[str, dict[str, str]]]) -> None:
        for url, params in events:
            time.sleep(self.callback_delay)
            self.callbacks_open.wait()
            signature = self._validator.compute_signature(url, params)
            request = Request(
                url,
                data=urlencode(params).encode(),
                headers={
                    "Content-Type": "application/x-www-form-urlencoded",
                    "X-Twilio-Signature": signature,
                    "User-Agent": "TwilioProxy/1.1",
                },
                method="POST",
            )
            answered: int | None
            try:
                with self._opener.open(request, timeout=CALLBACK_TIMEOUT_SECONDS) as reply:
                    answered = reply.status
            except HTTPError as exc:
                answered = exc.code
            except OSError:
                answered = None  # receiver down: Twilio does not retry either
            with self.lock:
                self.callbacks_sent.append(
                    {"url": url, "params": params, "signature": signature, "status": answered}
                )
                self._follow(params)

    def _follow(self, params: dict[str, str]) -> None:
        """A listed record's status, as its latest callback said (under ``lock``)."""
        status = params.get("MessageStatus") or params.get("CallStatus")
        sid = params.get("MessageSid") or params.get("CallSid")
        kind = "Messages" if "MessageStatus" in params else "Calls"
        for record in self._records[kind] if status else ():
            if record["sid"] == sid:
                record["status"] = status
                break

    def wait_callbacks(self, timeout: float = 5.0) -> None:
        """Wait until every callback thread started so far has finished."""
        deadline = time.monotonic() + timeout
        with self.lock:
            threads = list(self._callback_threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
