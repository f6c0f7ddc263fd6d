"""deliver: claim → re-check → send through the channel → record → fallback.

The database session is closed before the provider is called, so a slow
provider holds a lease on one row, not a connection.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from celery.utils.time import get_exponential_backoff_interval
from sqlmodel import Session, select

from channels import ChannelError, Message, PermanentChannelError, SendResult, TransientChannelError
from notifier.accounts.models import Account
from notifier.billing import service as billing
from notifier.deliveries import service as deliveries
from notifier.deliveries.models import Delivery, DeliveryStatus, Notification
from notifier.deliveries.service import Claim
from notifier.flows.process_event import context_for, create_delivery
from notifier.routing import next_fallback
from notifier.runtime import Runtime

__all__ = ["DeliverOutcome", "deliver"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DeliverOutcome:
    status: str | None
    """The status the delivery was left in; None if it was not ours to send."""
    retry_in: float | None = None
    enqueue: tuple[tuple[int, str], ...] = ()
    """Deliveries created on the way (fallbacks) to enqueue after commit."""


def deliver(rt: Runtime, delivery_id: int) -> DeliverOutcome:
    """Send one delivery if it is due; the caller enqueues ``outcome.enqueue``."""
    now = rt.clock()
    with rt.db.session() as session:
        claim = deliveries.claim(
            session,
            delivery_id,
            token=uuid.uuid4().hex,
            now=now,
            lease_seconds=rt.settings.lease_seconds,
        )
        if claim is None:
            return DeliverOutcome(status=None)
        held = _hold_back(rt, session, claim, now)
        if held is not None:
            return DeliverOutcome(status=held)
        message = _message(rt, claim.delivery)
    channel = rt.channel(claim.delivery.channel)
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


def _hold_back(rt: Runtime, session: Session, claim: Claim, now: datetime) -> str | None:
    """Cancel or defer instead of sending: paid since, or inside quiet hours."""
    notification = session.get(Notification, claim.delivery.notification_id)
    assert notification is not None
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


def _message(rt: Runtime, delivery: Delivery) -> Message:
    assert delivery.id is not None
    content = delivery.content
    return Message(
        delivery_id=delivery.id,
        channel=delivery.channel,
        to=tuple(delivery.recipients),
        body=content.get("body") or "",
        subject=content.get("subject"),
        html=content.get("html"),
        language=delivery.language,
        attempt=delivery.attempts + 1,
        data={"delivery_id": str(delivery.id), "notification_id": str(delivery.notification_id)},
    )


def _sent(rt: Runtime, claim: Claim, result: SendResult) -> DeliverOutcome:
    now = rt.clock()
    detail = {"provider": result.provider, "provider_id": result.provider_id, **result.detail}
    if result.rejected:
        detail["rejected"] = len(result.rejected)
    with rt.db.session() as session:
        deliveries.finish(
            session,
            claim,
            result.status,
            now=now,
            provider=result.provider,
            provider_id=result.provider_id,
            last_error=None,
            detail=detail,
        )
    return DeliverOutcome(status=result.status)


def _transient(rt: Runtime, claim: Claim, exc: TransientChannelError) -> DeliverOutcome:
    retry = rt.policy.retry
    attempt = claim.delivery.attempts + 1
    if attempt >= retry.max_attempts:
        return _permanent(rt, claim, exc, reason=f"gave up after {attempt} attempts")
    delay = float(
        get_exponential_backoff_interval(
            factor=int(retry.base_seconds),
            retries=attempt - 1,
            maximum=int(retry.max_seconds),
            full_jitter=True,
        )
    )
    delay = max(delay, exc.retry_after or 0.0, 1.0)
    now = rt.clock()
    with rt.db.session() as session:
        ok = deliveries.finish(
            session,
            claim,
            DeliveryStatus.QUEUED,
            now=now,
            available_at=now + timedelta(seconds=delay),
            last_error=str(exc)[:1000],
            detail={"error": str(exc), "transient": True, "retry_in": round(delay, 1)},
        )
    return DeliverOutcome(status=DeliveryStatus.QUEUED, retry_in=delay if ok else None)


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
            detail={"error": str(exc), "permanent": True, **({"reason": reason} if reason else {})},
        )
        if not ok:
            return DeliverOutcome(status=None)
        if isinstance(exc, PermanentChannelError) and exc.opt_out:
            _record_opt_out(session, failed)
        refused = exc.rejected if isinstance(exc, PermanentChannelError) else ()
        fallback = _start_fallback(rt, session, failed, frozenset(refused))
    return DeliverOutcome(status=DeliveryStatus.FAILED, enqueue=fallback)


def _record_opt_out(session: Session, delivery: Delivery) -> None:
    account = session.get(Account, delivery.account_no, with_for_update=True)
    if account is not None and delivery.channel not in account.opt_outs:
        account.opt_outs = [*account.opt_outs, delivery.channel]
        session.add(account)


def _start_fallback(
    rt: Runtime, session: Session, failed: Delivery, refused: frozenset[str]
) -> tuple[tuple[int, str], ...]:
    notification = session.get(Notification, failed.notification_id)
    assert notification is not None and failed.id is not None
    used = set(
        session.exec(select(Delivery.channel).where(Delivery.notification_id == notification.id))
    )
    account, context = context_for(rt, session, notification)
    step = next_fallback(
        rt.policy,
        account,
        failed.channel,
        used,
        rt.has_template(notification.type),
        refused=refused,
    )
    if step is None:
        deliveries.record_change(session, failed.id, DeliveryStatus.FAILED, fallback="none left")
        return ()
    created = create_delivery(
        rt,
        session,
        notification,
        step,
        context=context,
        note=f"fallback after {failed.channel} delivery {failed.id} failed",
        fallback_of=failed.id,
    )
    assert created.id is not None
    deliveries.record_change(
        session,
        failed.id,
        DeliveryStatus.FAILED,
        fallback=f"{created.channel} delivery {created.id}",
    )
    return ((created.id, created.channel),)
