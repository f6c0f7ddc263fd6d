"""What the Twilio SMS and voice channels share: the client, the error map, SMS segments.

The twilio SDK has no base-URL setting, so :class:`BaseUrlHttpClient` (a
subclass of the SDK's aiohttp client) rewrites scheme and host of every
request to ``base_url``: the real API, a proxy, or the local simulator. The
aiohttp session must be created inside the running event loop, so
:class:`TwilioConnection` builds one client lazily per loop.

Twilio's errors become ours in one place, :func:`translate_errors`::

    code 21211 21614 21217 (bad number)     PermanentChannelError(rejected=(to,))
    code 21610 (recipient replied STOP)     PermanentChannelError(opt_out=True, rejected=(to,))
    status 429 or code 20429                TransientChannelError(retry_after=Retry-After)
    status >= 500                           TransientChannelError
    code 20003 20005 21212 21606, status    ProviderChannelError (our account, credentials
      401 or 403                              or sender: no number blamed)
    other 4xx                               PermanentChannelError
    TwilioServiceException (RFC-9457 body)  the same rules: it is a TwilioException,
                                            not a TwilioRestException
    refused, DNS, connect timeout           TransientChannelError: nothing reached Twilio
      (ClientConnectorError, ConnectionTimeoutError)
    read timeout, reset, server disconnect  AmbiguousChannelError: the request was written,
      after the connection was made           Twilio may have accepted it
      (ServerTimeoutError, TimeoutError,
      ServerDisconnectedError, ClientOSError,
      ClientPayloadError)
    other aiohttp.ClientError, OSError      TransientChannelError

How the timeouts tell the two apart: :class:`BaseUrlHttpClient` gives each
request one total timeout; aiohttp turns a timeout that strikes while it
connects (or waits for a pooled connection) into ``ConnectionTimeoutError``,
so a bare ``TimeoutError`` or a ``SocketTimeoutError`` comes only after the
connection was made and the request went out. aiohttp never resends a POST
on a dropped keep-alive connection (only idempotent methods, RFC 9112 9.3.1),
so a reset there is ambiguous too.

Vendor pages for the quirks handled here:

* error codes: https://www.twilio.com/docs/api/errors (21211, 21610, 21614,
  21217, 20003, 20429 each at ``/docs/errors/<code>``); ours, not the
  number's: 20003 "Permission Denied" (wrong SID/token, account suspended or
  closed), 20005 "Account not active" (out of funds, trial not activated),
  21212 "Invalid From Number (caller ID)", 21606 "From number is not a valid
  message-capable Twilio number for this destination/account";
* 429 handling: https://support.twilio.com/hc/en-us/articles/360044308153
  (Twilio documents no ``Retry-After``; the hint is passed on when present);
* segments: https://www.twilio.com/docs/glossary/what-sms-character-limit
  (GSM-7 160/153 septets, UCS-2 70/67 UTF-16 units; an escaped GSM character
  or a surrogate pair is never split across segments).

Surprises in twilio 9.13 that shaped this module: ``AsyncTwilioHttpClient``
ignores its own ``timeout`` (each request passes ``None``, which aiohttp takes
as "no timeout"), ``TwilioRestException`` carries no response headers, and
``TwilioServiceException`` is not a ``TwilioRestException``.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import SplitResult, urlsplit

import aiohttp
from twilio.base.exceptions import TwilioException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from channels.base import (
    AmbiguousChannelError,
    ChannelError,
    PermanentChannelError,
    ProviderChannelError,
    SendResult,
    TransientChannelError,
)

__all__ = [
    "LOOKUP_LIMIT",
    "BaseUrlHttpClient",
    "TwilioConnection",
    "accepted_since",
    "to_channel_error",
    "translate_errors",
]

DEFAULT_BASE_URL = "https://api.twilio.com"

# Codes that say this number will never receive from us (invalid, landline, unreachable).
BAD_NUMBER_CODES = frozenset({21211, 21614, 21217})
OPT_OUT_CODES = frozenset({21610})
# Codes that say our account, credentials or sender are wrong: every send would fail alike.
PROVIDER_CODES = frozenset({20003, 20005, 21212, 21606})
PROVIDER_STATUSES = frozenset({401, 403})
RATE_LIMIT_CODE = 20429
LOOKUP_LIMIT = 200
"""Newest records read per lookup (in pages of as many): far more than one number gets
from us within the ambiguous wait."""
LOOKUP_SKEW = timedelta(minutes=2)
"""Slack for the clocks: ours says when the attempt began, Twilio's ``date_created``
when it took the request."""

# The Retry-After of the last response seen by the current task: TwilioRestException
# does not carry headers, and a context variable is per task, so concurrent sends
# sharing one HTTP client never see each other's value.
_retry_after: ContextVar[float | None] = ContextVar("twilio_retry_after", default=None)


class BaseUrlHttpClient(AsyncTwilioHttpClient):  # type: ignore[misc]  # twilio is untyped
    """The SDK's aiohttp client, sending every request to ``base_url`` with a total timeout."""

    def __init__(self, base_url: str, *, timeout: float) -> None:
        super().__init__(pool_connections=True, timeout=timeout)
        target = _split_base_url(base_url)
        self._scheme, self._netloc = target.scheme, target.netloc
        self._prefix = target.path.rstrip("/")
        # Every SMS goes to the same Messages URL with the same login: worked out once each.
        self.rewrite = functools.lru_cache(maxsize=64)(self._rewrite)
        self._basic = functools.lru_cache(maxsize=4)(_basic_auth)

    def _rewrite(self, url: str) -> str:
        """``url`` with scheme and host (and any path prefix) of ``base_url``."""
        parts = urlsplit(url)
        return parts._replace(
            scheme=self._scheme, netloc=self._netloc, path=self._prefix + parts.path
        ).geturl()

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, Any] | None = None,
        data: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        # Replaces the SDK's request(): it would pass timeout=None (no timeout at all)
        # and drop the response headers we need for Retry-After.
        session: aiohttp.ClientSession = self.session
        headers = dict(headers or {})
        if auth:
            headers["Authorization"] = self._basic(*auth)
        async with session.request(
            method.upper(),
            self.rewrite(url),
            params=params,
            data=data,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout or self.timeout),
            allow_redirects=allow_redirects,
        ) as answer:
            text = await answer.text()
            _retry_after.set(_seconds(answer.headers.get("Retry-After")))
            return Response(answer.status, text, dict(answer.headers))


def _basic_auth(user: str, password: str) -> str:
    # By hand: aiohttp 3.14 deprecates BasicAuth, older ones lack encode_basic_auth.
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _split_base_url(base_url: str) -> SplitResult:
    target = urlsplit(base_url)
    if target.scheme not in ("http", "https") or not target.netloc:
        raise ValueError(f"base_url must be an http(s) URL, not {base_url!r}")
    return target


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # an HTTP date: rare enough to fall back on our own backoff


class TwilioConnection:
    """One ``twilio.rest.Client`` per running event loop, created on first use."""

    def __init__(self, *, account_sid: str, auth_token: str, base_url: str, timeout: float) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, not {timeout!r}")
        _split_base_url(base_url)  # refuse a bad URL now, not at the first send
        self.account_sid, self.base_url, self.timeout = account_sid, base_url, timeout
        self._auth_token = auth_token
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )

    def client(self) -> Any:
        """The twilio ``Client`` of the running loop; call only from inside it."""
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            http = BaseUrlHttpClient(self.base_url, timeout=self.timeout)
            client = Client(self.account_sid, self._auth_token, http_client=http)
            self._clients[loop] = client
        return client

    async def aclose(self) -> None:
        """Close the running loop's aiohttp session (others belong to their own loops)."""
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.http_client.close()


def to_channel_error(exc: BaseException, *, to: str) -> ChannelError | None:
    """Our error for a Twilio or network failure of a send to ``to``; None if not ours to map."""
    if isinstance(exc, TwilioException):
        status = int(getattr(exc, "status", 0) or 0)
        code = getattr(exc, "code", None)
        reason = getattr(exc, "msg", None) or getattr(exc, "title", None) or str(exc)
        code_text = str(code) if code is not None else str(status)
        # Twilio's codes mean the same whichever body shape (legacy or RFC-9457) carried them.
        if code in OPT_OUT_CODES:
            return PermanentChannelError(reason, code=code_text, rejected=(to,), opt_out=True)
        if code in BAD_NUMBER_CODES:
            return PermanentChannelError(reason, code=code_text, rejected=(to,))
        if code in PROVIDER_CODES or status in PROVIDER_STATUSES:
            return ProviderChannelError(f"twilio: {reason}", code=code_text)
        if status == 429 or code == RATE_LIMIT_CODE:
            return TransientChannelError(reason, code=code_text, retry_after=_retry_after.get())
        if status >= 500:
            return TransientChannelError(reason, code=code_text)
        return PermanentChannelError(reason, code=code_text)
    if isinstance(exc, aiohttp.ConnectionTimeoutError | aiohttp.ClientConnectorError):
        return TransientChannelError(f"twilio unreachable: {type(exc).__name__}: {exc}")
    if isinstance(exc, _AFTER_WRITE):
        return AmbiguousChannelError(
            f"twilio: no answer after the request left: {type(exc).__name__}: {exc}",
            code="no_answer",
        )
    if isinstance(exc, aiohttp.ClientError | OSError):
        return TransientChannelError(f"twilio unreachable: {type(exc).__name__}: {exc}")
    return None


# Failures once the connection was made (checked after the connector's own errors,
# which subclass some of these): the request may have reached Twilio.
# TimeoutError is asyncio.TimeoutError on 3.11; aiohttp's read timeouts subclass it.
_AFTER_WRITE = (
    aiohttp.ServerTimeoutError,
    TimeoutError,
    aiohttp.ServerDisconnectedError,
    aiohttp.ClientOSError,
    aiohttp.ClientPayloadError,
    ConnectionResetError,
)


@contextmanager
def translate_errors(*, to: str) -> Iterator[None]:
    """Raise our channel error ``from`` any Twilio or network failure inside the block."""
    try:
        yield
    except (TwilioException, aiohttp.ClientError, OSError) as exc:
        mapped = to_channel_error(exc, to=to)
        if mapped is None:  # pragma: no cover - every caught type maps
            raise
        raise mapped from exc


def accepted_since(records: Iterable[Any], since: datetime) -> list[SendResult]:
    """Twilio Message or Call records created since ``since`` (less the skew), oldest first.

    Twilio lists newest first. ``date_created`` is when Twilio took the
    request; ``date_sent`` / ``start_time`` stay empty while a message or call
    is queued, so the SDK's ``date_sent_after`` / ``start_time_after`` filters
    would miss exactly the sends a lookup is after.
    """
    after = (since if since.tzinfo else since.replace(tzinfo=UTC)) - LOOKUP_SKEW
    found = [
        SendResult(
            provider="twilio",
            provider_id=str(record.sid),
            status="sent",
            detail={"twilio_status": str(record.status), "found_by": "lookup"},
        )
        for record in records
        if isinstance(record.date_created, datetime) and record.date_created >= after
    ]
    return found[::-1]
