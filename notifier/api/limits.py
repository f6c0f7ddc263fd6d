"""What one caller may send: a body size per request, a request rate per API key.

``BodySizeLimit`` is ASGI middleware that counts the body as it arrives: a
declared ``Content-Length`` over the limit is refused before a byte is read,
and a chunked body is cut off at the first chunk that crosses it. Either way
the answer is 413 with a JSON ``detail`` naming the limit.

``throttle`` spends one request of the caller's key (GCRA with a burst, in
``notifier.providers.ratelimit``: Redis when there is one, else a row of the database)
and answers 429 with ``Retry-After`` once the key is over its role's rate.
"""

from __future__ import annotations

import json
import logging
import math

from fastapi import HTTPException, status
from sqlmodel import Session
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from notifier.auth.models import ApiKey
from notifier.runtime import Runtime

__all__ = ["BodySizeLimit", "BodyTooLarge", "throttle"]

log = logging.getLogger(__name__)


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when the body crosses the limit; the app answers it as a 413.

    An ``HTTPException``, so FastAPI's body parsing lets it through to the
    exception handlers instead of calling it a malformed body (400).
    """

    def __init__(self, max_bytes: int) -> None:
        super().__init__(status.HTTP_413_CONTENT_TOO_LARGE, too_large(max_bytes))


def too_large(max_bytes: int) -> str:
    return f"request body over the limit of {max_bytes:,} bytes (NOTIFIER_MAX_BODY_BYTES)"


class BodySizeLimit:
    """ASGI middleware: 413 for a request body over ``max_bytes``, never read whole first."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(send)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def watching_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except BodyTooLarge:
            # Read outside FastAPI's handlers (no route answered it): answer here.
            if started:
                raise
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps({"detail": too_large(self.max_bytes)}, separators=(",", ":")).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status.HTTP_413_CONTENT_TOO_LARGE,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    # The rest of the body is not read: the connection cannot be reused.
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses it before we see it
    return None


def throttle(rt: Runtime, key: ApiKey, session: Session) -> None:
    """Count one request against ``key``'s rate; 429 with ``Retry-After`` when over it.

    ``session`` is the transaction that verified the key: a limit kept in the
    database is counted in it rather than in a transaction of its own.
    """
    rate = rt.settings.api_rate_for(key.role)
    if rate is None or key.id is None:
        return
    try:
        wait = rt.rate_limiter.admit(
            f"api-key:{key.id}", rate.per_second, rate.burst, session=session
        )
    except Exception as exc:
        # A limiter that does not answer must not stop intake: let the request in.
        log.warning("API rate limiter unavailable (%s); not limiting", type(exc).__name__)
        return
    if wait > 0:
        seconds = max(1, math.ceil(wait))
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"this key is over its rate of {rate.per_second:g} requests/s"
            f" (burst {rate.burst}); retry in {seconds} s",
            headers={"Retry-After": str(seconds)},
        )
