"""process_event: an accepted event becomes notifications and rendered deliveries."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta

import sqlalchemy as sa
from sqlmodel import Session, col, select

from notifier.accounts import service as accounts
from notifier.accounts.models import Account
from notifier.billing import service as billing
from notifier.billing.models import Bill
from notifier.content import build_context, sms_segments
from notifier.deliveries import service as deliveries
from notifier.deliveries.models import Delivery, DeliveryStatus, Notification, NotificationStatus
from notifier.escalation import service as escalation
from notifier.events.models import Event, EventStatus
from notifier.events.schema import EventIn, parse_event
from notifier.masking import mask_recipient
from notifier.routing import Planned, plan
from notifier.runtime import Runtime

__all__ = [
    "MAX_EVENT_ATTEMPTS",
    "context_for",
    "create_delivery",
    "process_events",
    "unprocessed_events",
]

log = logging.getLogger(__name__)
MAX_EVENT_ATTEMPTS = 5


def process_events(rt: Runtime, event_pks: Sequence[int]) -> None:
    """Process a chunk of events in one transaction, each under a savepoint.

    One commit for the chunk instead of one per event (a commit waits for the
    disk); an event that fails rolls back to its savepoint alone and is
    recorded as failed. The deliveries the chunk created are enqueued once,
    after the commit, in batches per channel.
    """
    created: list[tuple[int, str]] = []
    failures: list[tuple[int, Exception]] = []
    with rt.db.session() as session:
        for event_pk in event_pks:
            try:
                with session.begin_nested():
                    made = _process_one(rt, session, event_pk)
            except Exception as exc:
                log.exception("event %s: processing failed", event_pk)
                failures.append((event_pk, exc))
                continue
            created.extend(made)
    for event_pk, error in failures:
        _record_failure(rt, event_pk, error)
    if created:
        rt.dispatcher.deliver(created)


def _record_failure(rt: Runtime, event_pk: int, exc: Exception) -> None:
    with rt.db.session() as session:
        event = session.get(Event, event_pk)
        if event is None or event.status != EventStatus.RECEIVED:
            return
        event.attempts += 1
        event.outcome = f"{type(exc).__name__}: {exc}"[:500]
        if event.attempts >= MAX_EVENT_ATTEMPTS:
            event.status = EventStatus.FAILED
        session.add(event)


def _process_one(rt: Runtime, session: Session, event_pk: int) -> list[tuple[int, str]]:
    event = session.exec(
        select(Event).where(Event.id == event_pk).with_for_update(skip_locked=True)
    ).first()
    if event is None or event.status != EventStatus.RECEIVED:
        return []  # already processed (a redelivered task) or being processed now
    data = parse_event(event.payload)
    account = accounts.upsert_locked(session, data.account)
    now = rt.clock()
    bill: Bill | None = None
    notify = True
    if data.bill is not None:
        if data.type == "bill.paid":
            bill = billing.settle(session, account.account_no, data.bill, data.occurred_at)
            cancelled = deliveries.cancel_pending_for_bill(
                session, bill.bill_no, now=now, reason="bill paid"
            )
            closed = len(
                escalation.close_paid_cases(
                    session, now=now, actor=f"event {event.event_id}", account_no=account.account_no
                )
            )
            event.outcome = f"bill settled; {cancelled} deliveries cancelled, {closed} cases closed"
        else:
            issued_at = data.occurred_at if data.type == "bill.issued" else None
            bill = billing.record(session, account.account_no, data.bill, issued_at=issued_at)
            if data.type == "bill.unpaid" and bill.paid_at is not None:
                notify = False
                event.outcome = "bill already paid; no notice"
    created: list[tuple[int, str]] = []
    if notify:
        created = _notify(rt, session, event, data, account, bill)
    event.status, event.processed_at = EventStatus.PROCESSED, now
    session.add(event)
    return created


def _notify(
    rt: Runtime, session: Session, event: Event, data: EventIn, account: Account, bill: Bill | None
) -> list[tuple[int, str]]:
    has_template = rt.has_template(data.type)
    planned = plan(rt.policy, account, data.type, data.level, has_template)
    if not planned and not rt.policy.channels_for(data.type, data.level):
        return []  # the policy sends nothing for this event
    usage_period = (
        f"{data.usage.period_start}/{data.usage.period_end}" if data.usage is not None else None
    )
    dedup_key = (
        f"{data.type}:{account.account_no}:{bill.bill_no if bill else usage_period}:{data.level}"
    )
    now = rt.clock()
    window = timedelta(hours=rt.policy.dedup_window_hours)
    original = deliveries.recent_notification(session, dedup_key, now - window) if window else None
    status = NotificationStatus.ACTIVE
    if original is not None:
        status = NotificationStatus.SUPPRESSED
    elif not planned:
        status = NotificationStatus.UNREACHABLE
    assert event.id is not None
    notification = Notification(
        event_pk=event.id,
        account_no=account.account_no,
        type=data.type,
        bill_no=bill.bill_no if bill else None,
        usage_period=usage_period,
        level=data.level,
        dedup_key=dedup_key,
        status=status,
        duplicate_of=original.id if original else None,
    )
    session.add(notification)
    session.flush()
    context = build_context(
        rt.settings,
        account,
        data,
        bill=bill,
        unpaid=billing.unpaid_bills(session, account.account_no),
    )
    created = []
    for step in planned:
        delivery = create_delivery(
            rt,
            session,
            notification,
            step,
            context=context,
            status=DeliveryStatus.SUPPRESSED if original else DeliveryStatus.QUEUED,
            note=f"repeat of notification {original.id}" if original else "planned by policy",
        )
        if delivery.status == DeliveryStatus.QUEUED:
            assert delivery.id is not None
            created.append((delivery.id, delivery.channel))
    event.outcome = f"notification {notification.id} {status}: {len(planned)} deliveries"
    return created


def create_delivery(
    rt: Runtime,
    session: Session,
    notification: Notification,
    step: Planned,
    *,
    context: dict[str, object],
    status: str = DeliveryStatus.QUEUED,
    note: str,
    fallback_of: int | None = None,
) -> Delivery:
    """Render the notice for one channel and store it as a delivery."""
    assert notification.id is not None
    language = str(context["language"])
    rendered = rt.renderer.render(notification.type, step.channel, language, context)
    delivery = Delivery(
        notification_id=notification.id,
        account_no=notification.account_no,
        event_type=notification.type,
        channel=step.channel,
        status=status,
        recipients=list(step.recipients),
        address_masked=", ".join(mask_recipient(step.channel, r) for r in step.recipients),
        language=rendered.language,
        language_fallback=rendered.language_fallback,
        content={"subject": rendered.subject, "body": rendered.body, "html": rendered.html},
        segments=sms_segments(rendered.body) if step.channel == "sms" else None,
        fallback_of=fallback_of,
    )
    session.add(delivery)
    session.flush()
    assert delivery.id is not None
    deliveries.record_change(session, delivery.id, status, note=note)
    return delivery


def unprocessed_events(rt: Runtime, session: Session, *, limit: int) -> list[int]:
    """Events committed but not processed for a while: their task was lost."""
    stale = rt.clock() - timedelta(seconds=rt.settings.redispatch_after_seconds)
    pks = list(
        session.exec(
            select(Event.id)
            .where(
                Event.status == EventStatus.RECEIVED,
                sa.func.coalesce(col(Event.dispatched_at), col(Event.received_at)) < stale,
            )
            .order_by(col(Event.id))
            .limit(limit)
        )
    )
    if pks:
        session.execute(
            sa.update(Event).where(col(Event.id).in_(pks)).values(dispatched_at=rt.clock())
        )
    return [pk for pk in pks if pk is not None]


def context_for(
    rt: Runtime, session: Session, notification: Notification
) -> tuple[Account, dict[str, object]]:
    """The account and template context of a notification, rebuilt from its event."""
    event = session.get(Event, notification.event_pk)
    account = session.get(Account, notification.account_no)
    assert event is not None and account is not None
    data = parse_event(event.payload)
    bill = session.get(Bill, notification.bill_no) if notification.bill_no else None
    unpaid = billing.unpaid_bills(session, account.account_no)
    return account, build_context(rt.settings, account, data, bill=bill, unpaid=unpaid)
