"""What happens after a delivery fails for good: opt-outs, dead tokens, the fallback."""

from __future__ import annotations

from celery.utils.time import get_exponential_backoff_interval
from sqlmodel import Session, select

from notifier.accounts.models import Account
from notifier.deliveries import service as deliveries
from notifier.deliveries.models import Delivery, DeliveryStatus, Notification
from notifier.flows.process_event import context_for, create_delivery
from notifier.policy.routing import next_fallback
from notifier.runtime import Runtime

__all__ = ["forget_recipients", "record_opt_out", "retry_delay", "start_fallback"]


def retry_delay(rt: Runtime, attempt: int) -> float:
    """Exponential backoff with full jitter after ``attempt`` tries, at least a second."""
    retry = rt.policy.retry
    delay = get_exponential_backoff_interval(
        factor=int(retry.base_seconds),
        retries=attempt - 1,
        maximum=int(retry.max_seconds),
        full_jitter=True,
    )
    return max(float(delay), 1.0)


def record_opt_out(session: Session, delivery: Delivery) -> None:
    account = session.get(Account, delivery.account_no, with_for_update=True)
    if account is not None and delivery.channel not in account.opt_outs:
        account.opt_outs = [*account.opt_outs, delivery.channel]
        session.add(account)


def forget_recipients(session: Session, delivery: Delivery, rejected: tuple[str, ...]) -> None:
    """Drop push tokens the provider says are dead, so no later notice tries them."""
    if delivery.channel != "push":
        return
    account = session.get(Account, delivery.account_no, with_for_update=True)
    if account is not None:
        kept = [token for token in account.push_tokens if token not in rejected]
        if kept != account.push_tokens:
            account.push_tokens = kept
            session.add(account)


def start_fallback(
    rt: Runtime,
    session: Session,
    failed: Delivery,
    refused: frozenset[str],
    *,
    noted_as: str = DeliveryStatus.FAILED,
) -> tuple[tuple[int, str], ...]:
    """The next channel of the chain for ``failed``'s notification, if one is left.

    ``noted_as`` is the status of the timeline entry naming the fallback: a
    delivery that became ``unknown`` is not written down as ``failed``.
    """
    notification = session.get(Notification, failed.notification_id)
    assert notification is not None and failed.id is not None
    used = set(
        session.exec(select(Delivery.channel).where(Delivery.notification_id == notification.id))
    )
    account, context = context_for(rt, session, notification, stated=failed.stated)
    step = next_fallback(
        rt.policy,
        account,
        failed.channel,
        used,
        rt.has_template(notification.type),
        refused=refused,
    )
    if step is None:
        deliveries.record_change(session, failed.id, noted_as, fallback="none left")
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
        noted_as,
        fallback=f"{created.channel} delivery {created.id}",
    )
    return ((created.id, created.channel),)
