"""deliver: claim → re-check → send through the channel → record → fallback.

The database session is closed before the provider is called, so a slow
provider holds a lease on one row, not a connection.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import datetime, timedelta

from sqlmodel import Session, select

from channels import ChannelError, Message, PermanentChannelError, SendResult, TransientChannelError
from notifier.billing import service as billing
from notifier.deliveries import callback_tokens
from notifier.deliveries import service as deliveries
from notifier.deliveries.models import Delivery, DeliveryStatus, Notification
from notifier.deliveries.service import Claim
from notifier.flows.fallback import forget_recipients, record_opt_out, retry_delay, start_fallback
from notifier.flows.outcome import DeliverOutcome
from notifier.flows.reports import apply_report
from notifier.runtime import Runtime
from notifier.webhooks import service as webhooks

__all__ = ["DeliverOutcome", "deliver"]

log = logging.getLogger(__name__)
REPORTING_PROVIDERS = frozenset({"twilio"})
MAX_RATE_WAIT = 10.0
"""Longer than this, a send gives its worker back and is retried at its slot."""


def deliver(rt: Runtime, delivery_id: int) -> DeliverOutcome:
    """Send one delivery if it is due; the caller enqueues ``outcome.enqueue``."""
    now = rt.clock()
    with rt.db.session() as session:
        channel_name = session.exec(
            select(Delivery.channel).where(Delivery.id == delivery_id)
        ).first()
        if channel_name is None:
            return DeliverOutcome(status=None)
        if rt.provider(channel_name) == "print":
            # Postcards wait in `queued` for the day's print batch (flows/postcards.py).
            return DeliverOutcome(status=DeliveryStatus.QUEUED)
        claim = deliveries.claim(
            session,
            delivery_id,
            token=uuid.uuid4().hex,
            now=now,
            lease_seconds=rt.settings.lease_seconds,
        )
        if claim is None:
            return DeliverOutcome(status=None)
        notification = session.get(Notification, claim.delivery.notification_id)
        assert notification is not None
        held = _hold_back(rt, session, claim, notification, now)
        if held is not None:
            return DeliverOutcome(status=held)
        message = _message(rt, claim.delivery, notification)
    channel = rt.channel(claim.delivery.channel)
    wait = _slot_wait(rt, channel.provider)
    if wait > MAX_RATE_WAIT:
        return _later(rt, claim, wait, reason=f"{channel.provider} rate limit")
    time.sleep(wait)
    try:
        result = rt.run_async(channel.send(message))
    except TransientChannelError as exc:
        return _transient(rt, claim, exc)
    except PermanentChannelError as exc:
        return _permanent(rt, claim, exc)
    except Exception as exc:
        # An adapter bug or an unmapped vendor error: retry a bounded number of
        # times rather than lose the notice or send it in a loop.
        log.exception("delivery %s: unexpected error from %s", delivery_id, channel.provider)
        return _transient(rt, claim, TransientChannelError(f"{type(exc).__name__}: {exc}"))
    return _sent(rt, claim, result)


def _reports_later(result: SendResult) -> bool:
    """Whether the provider reports back on this send (status callbacks)."""
    return result.provider in REPORTING_PROVIDERS


def _slot_wait(rt: Runtime, provider: str) -> float:
    """Seconds until this send's slot in the provider's rate, shared by all workers."""
    per_second = rt.settings.rate_limits.get(provider)
    return rt.rate_limiter.reserve(provider, per_second) if per_second else 0.0


def _later(rt: Runtime, claim: Claim, wait: float, *, reason: str) -> DeliverOutcome:
    """Give the worker back and send at the slot; no attempt was made, none is counted."""
    detail = {"reason": reason, "retry_in": round(wait, 1)}
    return _requeue(rt, claim, wait, attempted=False, detail=detail)


def _requeue(
    rt: Runtime,
    claim: Claim,
    delay: float,
    *,
    attempted: bool,
    detail: dict[str, object],
    **values: object,
) -> DeliverOutcome:
    """Back to ``queued``, due in ``delay`` seconds; the task retries itself then."""
    now = rt.clock()
    with rt.db.session() as session:
        ok = deliveries.transition(
            session,
            claim,
            DeliveryStatus.QUEUED,
            now=now,
            attempted=attempted,
            available_at=now + timedelta(seconds=delay),
            detail=detail,
            **values,
        )
    return DeliverOutcome(status=DeliveryStatus.QUEUED, retry_in=delay if ok else None)


def _hold_back(
    rt: Runtime, session: Session, claim: Claim, notification: Notification, now: datetime
) -> str | None:
    """Cancel or defer instead of sending: paid since, or inside quiet hours."""
    if notification.bill_no and billing.is_paid(session, notification.bill_no):
        deliveries.transition(
            session, claim, DeliveryStatus.CANCELLED, now=now, detail={"reason": "bill paid"}
        )
        return DeliveryStatus.CANCELLED
    quiet = rt.policy.quiet_hours
    if quiet is not None and claim.delivery.channel in quiet.channels:
        opens = quiet.window_opens(now, rt.policy.tz)
        if opens is not None:
            deliveries.transition(
                session,
                claim,
                DeliveryStatus.DEFERRED,
                now=now,
                available_at=opens,
                detail={"reason": "quiet hours", "until": opens.isoformat()},
            )
            return DeliveryStatus.DEFERRED
    return None


def _message(rt: Runtime, delivery: Delivery, notification: Notification) -> Message:
    assert delivery.id is not None
    content = delivery.content
    callback_url = menu_url = None
    if rt.provider(delivery.channel) == "twilio":
        # Opaque, signed and dated tokens, not the delivery id (callback_tokens.py).
        key, now = callback_tokens.signing_key(rt.settings), rt.clock()
        base = f"{rt.settings.public_url.rstrip('/')}/v1/callbacks/twilio"
        status_token = callback_tokens.issue(key, delivery.id, purpose="status", now=now)
        callback_url = f"{base}/status/{status_token}"
        if delivery.channel == "voice":
            menu_token = callback_tokens.issue(key, delivery.id, purpose="gather", now=now)
            menu_url = f"{base}/gather/{menu_token}"
    # What the app needs to open the right screen (push) or a printer to sort by.
    data = {
        "delivery_id": str(delivery.id),
        "notification_id": str(delivery.notification_id),
        "type": notification.type,
        **({"bill_no": notification.bill_no} if notification.bill_no else {}),
        **({"usage_period": notification.usage_period} if notification.usage_period else {}),
    }
    return Message(
        delivery_id=delivery.id,
        channel=delivery.channel,
        to=tuple(delivery.recipients),
        body=content.get("body") or "",
        subject=content.get("subject"),
        html=content.get("html"),
        language=delivery.language,
        attempt=delivery.attempts + 1,
        data=data,
        callback_url=callback_url,
        menu_url=menu_url,
    )


def _sent(rt: Runtime, claim: Claim, result: SendResult) -> DeliverOutcome:
    now = rt.clock()
    detail = {"provider": result.provider, "provider_id": result.provider_id, **result.detail}
    if result.rejected:
        detail["rejected"] = len(result.rejected)
    with rt.db.session() as session:
        ok = deliveries.finish(
            session,
            claim,
            result.status,
            now=now,
            provider=result.provider,
            provider_id=result.provider_id,
            last_error=None,
            detail=detail,
        )
        if not ok:
            return DeliverOutcome(status=None)
        assert claim.delivery.id is not None
        if result.status == DeliveryStatus.DELIVERED or not _reports_later(result):
            # Final now; a send whose provider reports later is told about on its report.
            webhooks.delivery_outcomes(session, [claim.delivery.id], result.status, now=now)
        if result.rejected:
            forget_recipients(session, claim.delivery, result.rejected)
        # A provider's report can beat our own record of the send; only a
        # ``sent`` that waits for reports can have one.
        early = (
            deliveries.early_report(session, claim.delivery)
            if result.status == DeliveryStatus.SENT and _reports_later(result)
            else None
        )
    if early is not None:
        assert claim.delivery.id is not None
        return apply_report(rt, claim.delivery.id, early)
    return DeliverOutcome(status=result.status)


def _transient(rt: Runtime, claim: Claim, exc: TransientChannelError) -> DeliverOutcome:
    retry = rt.policy.retry
    attempt = claim.delivery.attempts + 1
    if attempt >= retry.max_attempts:
        return _permanent(rt, claim, exc, reason=f"gave up after {attempt} attempts")
    delay = max(retry_delay(rt, attempt), exc.retry_after or 0.0)
    detail: dict[str, object] = {
        "error": str(exc),
        "code": exc.code,
        "transient": True,
        "retry_in": round(delay, 1),
    }
    return _requeue(rt, claim, delay, attempted=True, detail=detail, last_error=str(exc)[:1000])


def _permanent(
    rt: Runtime, claim: Claim, exc: ChannelError, *, reason: str | None = None
) -> DeliverOutcome:
    now = rt.clock()
    failed = claim.delivery
    assert failed.id is not None
    with rt.db.session() as session:
        ok = deliveries.finish(
            session,
            claim,
            DeliveryStatus.FAILED,
            now=now,
            last_error=str(exc)[:1000],
            detail={
                "error": str(exc),
                "code": exc.code,
                "permanent": True,
                **({"reason": reason} if reason else {}),
            },
        )
        if not ok:
            return DeliverOutcome(status=None)
        webhooks.delivery_outcomes(session, [failed.id], DeliveryStatus.FAILED, now=now)
        if isinstance(exc, PermanentChannelError) and exc.opt_out:
            record_opt_out(session, failed)
        if isinstance(exc, PermanentChannelError) and exc.rejected:
            forget_recipients(session, failed, exc.rejected)
        refused = exc.rejected if isinstance(exc, PermanentChannelError) else ()
        fallback = start_fallback(rt, session, failed, frozenset(refused))
    return DeliverOutcome(status=DeliveryStatus.FAILED, enqueue=fallback)
