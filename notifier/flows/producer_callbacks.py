"""POST one producer callback: sign it, send it, and decide what its answer means.

::

    answer                                   what happens
    2xx                                      sent
    5xx, 408, 429, a timeout, no connection  retried: backoff with jitter, up to
                                             NOTIFIER_WEBHOOK_MAX_ATTEMPTS POSTs, then failed
    any other (4xx, a redirect)              failed at once, never retried
    a host that no longer resolves, or       retried like no connection (DNS may
      resolves to a blocked address          come back; a rebinding name may not)

408 and 429 are 4xx that say "later" in so many words, so they are retried
like a 5xx (a ``Retry-After`` in seconds is honoured, up to the backoff's
cap). Headers: ``X-Notifier-Signature: t=<unix ts>,v1=<hex HMAC-SHA256(secret,
"<t>." + body)>`` and ``X-Notifier-Callback-Id``. Every attempt is one log
line with the callback's id, type, key, answer and what comes next.

The host is resolved and checked again before every POST, and the POST goes to
the checked address (notifier/webhooks/outbound.py). The producer reads only a
category of what went wrong (``timeout``, ``refused``, ``tls``, ``http 5xx``, ...):
never the answer's body or a socket's message, which would let a producer key read
or scan what this machine can reach.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import timedelta

from notifier.runtime import Runtime
from notifier.settings import Settings
from notifier.webhooks import outbound, service
from notifier.webhooks.models import CallbackStatus, ProducerEndpoint

__all__ = ["SendOutcome", "retry_delay", "send_callback"]

log = logging.getLogger(__name__)
_RETRYABLE_4XX = frozenset({408, 429})
USER_AGENT = "notifier-callbacks/1"


@dataclass(frozen=True, slots=True)
class SendOutcome:
    status: str | None
    """What the callback is now; None if it was not ours to send (not due, taken, done)."""
    retry_in: float | None = None
    """POST again after this many seconds."""


def retry_delay(settings: Settings, attempt: int) -> float:
    """Seconds before the next POST after ``attempt`` POSTs: half to all of base × 2^(n−1)."""
    cap = min(
        settings.webhook_retry_max_seconds,
        settings.webhook_retry_base_seconds * 2 ** min(attempt - 1, 32),
    )
    return float(cap / 2 + random.uniform(0, cap / 2))


def send_callback(rt: Runtime, callback_id: int) -> SendOutcome:
    """POST one callback that is due; the caller sends it again after ``retry_in``."""
    settings = rt.settings
    now = rt.clock()
    # Held past the POST's timeout, so the reconciler does not send it twice meanwhile.
    lease = timedelta(seconds=settings.webhook_timeout_seconds * 3 + 5)
    with rt.db.session() as session:
        callback = service.claim(session, callback_id, now=now, lease=lease)
        if callback is None:
            return SendOutcome(status=None)
        endpoint = session.get(ProducerEndpoint, callback.key_id)
        if endpoint is None:
            service.record_attempt(
                session,
                callback,
                status=CallbackStatus.FAILED,
                now=now,
                code=None,
                error="no callback URL registered",
            )
            _log(callback.id, callback.type, callback.key_id, "no URL registered", "failed")
            return SendOutcome(status=CallbackStatus.FAILED)
        url, secret = endpoint.url, endpoint.secret
    body = service.encode(callback)
    code, error, retry_after = _post(
        url, secret, body, callback_id, timestamp=int(rt.clock().timestamp()), settings=settings
    )
    attempt = callback.attempts + 1
    done = rt.clock()
    answer = error or f"HTTP {code}"
    if code is not None and 200 <= code < 300:
        status, retry_in = CallbackStatus.SENT, None
    elif (code is None or code >= 500 or code in _RETRYABLE_4XX) and (
        attempt < settings.webhook_max_attempts
    ):
        status = CallbackStatus.PENDING
        retry_in = max(retry_delay(settings, attempt), min(retry_after or 0.0, 3600.0))
    else:
        status, retry_in = CallbackStatus.FAILED, None
    with rt.db.session() as session:
        service.record_attempt(
            session,
            callback,
            status=status,
            now=done,
            code=code,
            error=error,
            retry_at=done + timedelta(seconds=retry_in) if retry_in is not None else None,
        )
    then = f"retry in {retry_in:.1f}s" if retry_in is not None else status
    _log(callback.id, callback.type, callback.key_id, answer, then, attempt=attempt, code=code)
    return SendOutcome(status=status, retry_in=retry_in)


def _post(
    url: str, secret: str, body: bytes, callback_id: int, *, timestamp: int, settings: Settings
) -> tuple[int | None, str | None, float | None]:
    """(HTTP status or None, error category, Retry-After seconds) of one signed POST."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Notifier-Callback-Id": str(callback_id),
        "X-Notifier-Signature": service.signature_header(secret, body, timestamp),
    }
    try:
        target = outbound.resolve(url, allow_private=settings.callback_allow_private)
    except outbound.BlockedUrl as exc:
        log.warning("producer callback %s not sent: %s", callback_id, exc)
        return None, exc.category, None
    answer = outbound.post(target, body, headers, timeout=settings.webhook_timeout_seconds)
    return answer.code, answer.category, answer.retry_after


def _log(
    callback_id: int | None,
    kind: str,
    key_id: int,
    answer: str,
    then: str,
    *,
    attempt: int | None = None,
    code: int | None = None,
) -> None:
    log.info(
        "producer callback %s (%s) to key %s: %s; %s",
        callback_id,
        kind,
        key_id,
        answer,
        then,
        extra={
            "callback_id": callback_id,
            "key_id": key_id,
            "attempt": attempt,
            "status_code": code,
        },
    )
