"""SMS through Mitake (三竹資訊), the Taiwanese gateway's HTTP API.

One message per send: ``POST {base_url}/api/mtk/SmSend?CharsetURL=UTF8``, a
form with ``username``, ``password``, ``dstaddr`` (``09xxxxxxxx``, converted
from E.164), ``smbody`` (line breaks as ASCII 6, as Mitake asks), ``clientid``
and, when reports are wanted, ``response`` (the callback URL). The answer is
plain text, one block per message::

    [1]
    msgid=1234567890
    statuscode=1
    AccountPoint=98
    Duplicate=Y          (only when clientid was seen before)

``clientid`` is our idempotency key: Mitake keeps it 12 hours and answers a
repeat with the first answer (``Duplicate=Y``) instead of sending again. It is
derived from the delivery id (:func:`client_id`), the same for every attempt
of that delivery: a send retried after a timeout or a dropped connection (which
the retry policy counts as an attempt) reaches the customer once, and so does
a send repeated by a worker that took over a dead one's row. A request Mitake
refused sent nothing, so its retry under the same key is a new send. No
accepted SMS of a delivery is ever meant to go again (a failed or undelivered
one falls back, or ops retries it, on a new delivery). This adapter repeats a
send once itself when the connection failed, for that reason. Mitake wants the
key unique for good, not only for 12 hours: ``client_id_prefix`` keeps two
databases (a rebuilt one, a second site) on one Mitake account apart.

Status codes of a send (``statuscode``) and what they become here::

    0 1 2 4                      accepted (scheduled, at the carrier, delivered)
    v                            PermanentChannelError(rejected=(to,)): invalid number
    c d e f h k m n p s          ProviderChannelError(code="mitake:<c>"): our account
                                 (ACCOUNT_FAULT_CODES: credentials, expired or disabled
                                 account, IP not registered, no HTTP permission, no points)
    * a b l r                    TransientChannelError: Mitake busy or paused
    t u x y and anything else    PermanentChannelError(code="mitake:<c>")
    HTTP 5xx, 429, network       TransientChannelError

Delivery reports (``StatusFlag``, or ``statuscode`` when it is absent) come
to the ``response`` URL by GET or POST with ``msgid``, ``dstaddr``,
``dlvtime``, ``donetime``, ``statusstr``; :func:`report_for` maps them. The
receiver must answer ``magicid=sms_gateway_rpack`` and the ``msgid``
(:func:`acknowledgement`), or Mitake posts the report again. Mitake signs
nothing: the URL's own token is the only proof the report is Mitake's.
``SmQuery`` (:meth:`MitakeSms.query`) asks for a message's status instead.

Vendor descriptions read (Mitake publishes its PDF to customers only; these
public clients transcribe it, v2.14):

* Mitake's own Java client: https://github.com/mitaketw/sms-java
* status codes, SmQuery answer and the callback fields:
  https://github.com/minchao/go-mitake (message.go, callback.go)
* SmSend/SmBulkSend/SmQuery endpoints under ``/api/mtk/``, ``Duplicate=Y``,
  the acknowledgement body and code ``l``:
  https://github.com/codepower-tw/sms-mitake-php (src/Client.php,
  src/Response/ResponseParser.php, src/StatusCode.php, src/Callback/DeliveryReceipt.php)
* field limits (``clientid`` 36, ``response`` 256, the 12-hour dedup window, a long
  body silently truncated on an account without long-SMS rights, ``CharsetURL``
  ``UTF8``/``Big5``): https://github.com/7a6163/mitake_sms and the TypeScript
  transcription quoted in issue 19's notes.

Mitake splits a long message itself; ``max_length`` (characters) is the
account's long-SMS limit, refused here with a clear error instead of being cut.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar
from urllib.parse import urlsplit

import aiohttp
import phonenumbers

from channels.base import (
    Channel,
    ChannelError,
    Message,
    PermanentChannelError,
    ProviderChannelError,
    SendResult,
    TransientChannelError,
)
from channels.registry import register
from channels.sms import sms_segments

__all__ = [
    "ACCEPTED_CODES",
    "ACCOUNT_FAULT_CODES",
    "DEFAULT_BASE_URL",
    "MitakeSms",
    "MitakeStatus",
    "acknowledgement",
    "client_id",
    "parse_query_answer",
    "parse_send_answer",
    "report_for",
    "to_dstaddr",
]

DEFAULT_BASE_URL = "https://smsapi.mitake.com.tw"
SEND_PATH = "/api/mtk/SmSend"
QUERY_PATH = "/api/mtk/SmQuery"

ACCEPTED_CODES = frozenset("0124")
BAD_NUMBER_CODES = frozenset("v")
ACCOUNT_FAULT_CODES = frozenset("cdefhkmnps")
"""Our account, not the customer: missing or wrong credentials (c d e), expired or
disabled account (f h), a source IP Mitake has not registered (k), a password that
must be changed (m n), no HTTP API permission (p), no points left (s)."""
BUSY_CODES = frozenset("*ablr")
"""System error, sending paused (a b r), too many connections at once (l)."""

STATUS_TEXT: Mapping[str, str] = {
    "0": "scheduled",
    "1": "at the carrier",
    "2": "at the carrier",
    "4": "delivered to the handset",
    "5": "content error",
    "6": "number error",
    "7": "SMS disabled",
    "8": "expired undelivered",
    "9": "scheduled send cancelled",
    "*": "system error, contact Mitake",
    "a": "sending temporarily stopped",
    "b": "sending temporarily stopped",
    "c": "username missing",
    "d": "password missing",
    "e": "wrong username or password",
    "f": "account expired",
    "h": "account disabled",
    "k": "connection address (IP) not registered",
    "l": "too many connections at once",
    "m": "password must be changed first",
    "n": "password expired",
    "p": "no permission for the HTTP API",
    "r": "service paused",
    "s": "accounting failed (no points?)",
    "t": "message expired",
    "u": "message body empty",
    "v": "invalid mobile number",
    "w": "too many ids queried",
    "x": "request too large",
    "y": "bad parameter",
    "z": "no such message",
}

# Delivery statuses (StatusFlag) → the report our deliveries understand; 0-2 are progress.
_REPORTS: Mapping[str, str] = {
    "4": "delivered",
    "5": "failed",  # Mitake found the content bad: the same text never goes
    "6": "undelivered",  # the number does not take SMS
    "7": "failed",
    "8": "undelivered",  # expired before the handset took it
    "9": "failed",
}
_CLIENT_ID_MAX = 36
_RESPONSE_URL_MAX = 256
_LINE_BREAK = "\x06"
_NETWORK_ERRORS = (aiohttp.ClientError, TimeoutError, OSError)


def report_for(status: str) -> str:
    """Our report for a Mitake delivery status: ``delivered``, ``undelivered``,
    ``failed``, or ``report`` for progress (scheduled, at the carrier) and codes
    Mitake does not document for reports."""
    return _REPORTS.get(status.strip(), "report")


def acknowledgement(msgid: str) -> str:
    """The body Mitake expects back for a delivery report (else it reports again)."""
    return f"magicid=sms_gateway_rpack\nmsgid={msgid}\n"


def client_id(prefix: str, delivery_id: int) -> str:
    """Mitake's ``clientid`` for a delivery: the same for every attempt, so never two SMS."""
    key = f"{prefix}{delivery_id}"
    if len(key) > _CLIENT_ID_MAX:
        raise ValueError(f"clientid {key!r} is longer than Mitake's {_CLIENT_ID_MAX} characters")
    return key


def to_dstaddr(e164: str) -> str:
    """A Taiwanese mobile in E.164 (+8869...) as Mitake's ``09xxxxxxxx``.

    Raises :class:`PermanentChannelError`: an invalid number with ``rejected``
    (it reaches nobody), a valid one that is not a Taiwanese mobile without it
    (the number is fine; this gateway cannot text it).
    """
    try:
        number = phonenumbers.parse(e164, "TW")
    except phonenumbers.NumberParseException:
        raise PermanentChannelError(
            f"dstaddr: {_masked(e164)} is not a phone number",
            code="mitake:bad_number",
            rejected=(e164,),
        ) from None
    if not phonenumbers.is_valid_number(number):
        raise PermanentChannelError(
            f"dstaddr: {_masked(e164)} is not a valid phone number",
            code="mitake:bad_number",
            rejected=(e164,),
        )
    kind = phonenumbers.number_type(number)
    if number.country_code != 886:
        raise PermanentChannelError(
            f"dstaddr: {_masked(e164)} is not a Taiwanese number; Mitake sends to Taiwan only",
            code="mitake:not_taiwan",
        )
    if kind not in (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.UNKNOWN):
        raise PermanentChannelError(
            f"dstaddr: {_masked(e164)} is not a mobile number",
            code="mitake:not_mobile",
            rejected=(e164,),
        )
    national = phonenumbers.national_significant_number(number)
    return "0" + national


def _masked(number: str) -> str:
    # Personal data never reaches a log or an error unmasked.
    return number[:4] + "*" * max(0, len(number) - 7) + number[-3:] if len(number) > 7 else "***"


@dataclass(frozen=True, slots=True)
class MitakeStatus:
    """One block of a SmSend answer."""

    statuscode: str
    msgid: str = ""
    account_point: int | None = None
    duplicate: bool = False
    client_key: str = ""
    """What stood in the block's brackets (the clientid or a sequence number)."""


def parse_send_answer(text: str) -> list[MitakeStatus]:
    """The blocks of a SmSend/SmBulkSend answer, in order (empty: nothing parseable)."""
    blocks: list[dict[str, str]] = []
    current: dict[str, str] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            current = {"[key]": line[1:-1]}
            blocks.append(current)
            continue
        key, sep, value = line.partition("=")
        if not sep:
            continue
        if current is None:  # an answer without a header (a global error)
            current = {"[key]": ""}
            blocks.append(current)
        current[key.strip()] = value.strip()
    statuses = []
    for block in blocks:
        point = block.get("AccountPoint", "")
        statuses.append(
            MitakeStatus(
                statuscode=block.get("statuscode", ""),
                msgid=block.get("msgid", "").lstrip("#"),
                account_point=int(point) if point.lstrip("-").isdigit() else None,
                duplicate=block.get("Duplicate", "").upper() == "Y",
                client_key=block["[key]"],
            )
        )
    return statuses


def parse_query_answer(text: str) -> dict[str, str]:
    """``msgid → statuscode`` from a SmQuery answer (``msgid<TAB>statuscode<TAB>time``).

    A lone code (e.g. ``e``) is an error of the whole query: raised as our error.
    """
    found: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        fields = line.split("\t")
        if len(fields) >= 2:
            found[fields[0].strip().lstrip("#")] = fields[1].strip()
            continue
        code = line.partition("=")[2].strip() if "=" in line else line
        if line.startswith("AccountPoint"):
            continue
        raise _status_error(code, to=None)
    return found


def _status_error(code: str, *, to: str | None) -> ChannelError:
    """Our error for a Mitake status code that did not accept the message."""
    text = STATUS_TEXT.get(code, "undocumented status")
    reason = f"Mitake statuscode {code or '(none)'}: {text}"
    tagged = f"mitake:{code or 'none'}"
    if code in BAD_NUMBER_CODES and to is not None:
        return PermanentChannelError(reason, code=tagged, rejected=(to,))
    if code in ACCOUNT_FAULT_CODES:
        return ProviderChannelError(
            f"{reason} (our Mitake account, not the customer)", code=tagged, provider="mitake"
        )
    if code in BUSY_CODES:
        return TransientChannelError(reason, code=tagged)
    return PermanentChannelError(reason, code=tagged)


def _decode(body: bytes, charset: str | None) -> str:
    # Mitake answers in Big5 unless told otherwise; the answer's fields are ASCII anyway.
    for encoding in (charset, "utf-8", "big5"):
        if not encoding:
            continue
        try:
            return body.decode(encoding)
        except (LookupError, UnicodeDecodeError):
            continue
    return body.decode("latin-1")


@register("sms", "mitake")
class MitakeSms(Channel):
    """Send one SMS per message through Mitake's SmSend."""

    channel: ClassVar[str] = "sms"
    provider: ClassVar[str] = "mitake"
    max_in_flight: ClassVar[int] = 15  # Mitake's limit of connections at once (code "l")

    def __init__(
        self,
        *,
        username: str,
        password: str,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = 10.0,
        callback: bool = True,
        max_length: int = 333,
        client_id_prefix: str = "ntf-",
    ) -> None:
        if not username:
            raise ValueError("mitake username is required")
        if not password:
            raise ValueError("mitake password is required")
        if timeout <= 0:
            raise ValueError(f"mitake timeout must be positive, not {timeout!r}")
        if max_length < 1:
            raise ValueError(f"mitake max_length must be at least 1, not {max_length!r}")
        target = urlsplit(base_url)
        if target.scheme not in ("http", "https") or not target.netloc:
            raise ValueError(f"mitake base_url must be an http(s) URL, not {base_url!r}")
        client_id(client_id_prefix, 2**63 - 1)  # a prefix too long fails now, not per send
        self.username, self._password = username, password
        self.base_url = base_url.rstrip("/")
        self.timeout, self.callback = timeout, callback
        self.max_length, self.client_id_prefix = max_length, client_id_prefix
        self._sessions: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, aiohttp.ClientSession
        ] = weakref.WeakKeyDictionary()

    def _session(self) -> aiohttp.ClientSession:
        # An aiohttp session belongs to the loop that made it: one per running loop.
        loop = asyncio.get_running_loop()
        session = self._sessions.get(loop)
        if session is None or session.closed:
            session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                connector=aiohttp.TCPConnector(limit=self.max_in_flight),
            )
            self._sessions[loop] = session
        return session

    async def send(self, message: Message) -> SendResult:
        if not message.to:
            raise PermanentChannelError("no recipient", code="no_recipient")
        to = message.to[0]
        body = message.body
        if not body.strip():
            raise PermanentChannelError("smbody: the message is empty", code="mitake:u")
        if len(body) > self.max_length:
            raise PermanentChannelError(
                f"smbody: {len(body)} characters exceed Mitake's {self.max_length} "
                "(NOTIFIER_MITAKE__MAX_LENGTH); Mitake would cut it, so it is not sent",
                code="mitake:too_long",
            )
        key = client_id(self.client_id_prefix, message.delivery_id)
        form = {
            "username": self.username,
            "password": self._password,
            "dstaddr": to_dstaddr(to),
            "smbody": body.replace("\r\n", "\n").replace("\n", _LINE_BREAK),
            "clientid": key,
        }
        if self.callback and message.callback_url:
            if len(message.callback_url) > _RESPONSE_URL_MAX:
                raise PermanentChannelError(
                    f"response: the callback URL has {len(message.callback_url)} characters, "
                    f"Mitake takes {_RESPONSE_URL_MAX}",
                    code="mitake:y",
                )
            form["response"] = message.callback_url
        text = await self._post(SEND_PATH, form, params={"CharsetURL": "UTF8"}, repeatable=True)
        blocks = parse_send_answer(text)
        if not blocks:
            raise TransientChannelError("Mitake answered nothing we can read", code="mitake:answer")
        answer = blocks[0]
        if answer.statuscode not in ACCEPTED_CODES:
            raise _status_error(answer.statuscode, to=to)
        if not answer.msgid:
            # Accepted, yet no id to follow it by: asking again under the same clientid is
            # safe (Mitake answers the first msgid) where calling it sent or failed is not.
            raise TransientChannelError(
                f"Mitake accepted (statuscode {answer.statuscode}) but named no msgid",
                code="mitake:answer",
            )
        detail: dict[str, object] = {
            "segments": sms_segments(body),
            "mitake_status": answer.statuscode,
            "clientid": key,
        }
        if answer.account_point is not None:
            detail["account_point"] = answer.account_point
        if answer.duplicate:
            detail["duplicate"] = True  # Mitake had it already: nothing went out twice
        # 4 is already on the handset: no report will come to say more.
        if answer.statuscode == "4":
            return SendResult(
                provider=self.provider, provider_id=answer.msgid, status="delivered", detail=detail
            )
        return SendResult(provider=self.provider, provider_id=answer.msgid, detail=detail)

    async def query(self, provider_id: str) -> str:
        """Mitake's status code of message ``provider_id`` now (see :func:`report_for`).

        An id Mitake does not know answers ``z``.
        """
        form = {"username": self.username, "password": self._password, "msgid": provider_id}
        text = await self._post(QUERY_PATH, form, params={}, repeatable=True)
        return parse_query_answer(text).get(provider_id, "z")

    async def _post(
        self, path: str, form: dict[str, str], *, params: dict[str, str], repeatable: bool
    ) -> str:
        url = self.base_url + path
        tries = 2 if repeatable else 1
        for attempt in range(1, tries + 1):
            try:
                async with self._session().post(url, data=form, params=params) as answer:
                    raw = await answer.read()
                    if answer.status == 429 or answer.status >= 500:
                        raise TransientChannelError(
                            f"Mitake answered HTTP {answer.status}",
                            code=f"mitake:http_{answer.status}",
                            retry_after=_seconds(answer.headers.get("Retry-After")),
                        )
                    if answer.status >= 400:
                        raise PermanentChannelError(
                            f"Mitake answered HTTP {answer.status} to {path}",
                            code=f"mitake:http_{answer.status}",
                        )
                    return _decode(raw, answer.charset)
            except _NETWORK_ERRORS as exc:
                # The request may have arrived: the same clientid makes the repeat harmless.
                if attempt < tries:
                    continue
                raise TransientChannelError(
                    f"mitake unreachable: {type(exc).__name__}: {exc}", code="mitake:network"
                ) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def aclose(self) -> None:
        session = self._sessions.pop(asyncio.get_running_loop(), None)
        if session is not None:
            await session.close()


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None
