"""process_event: an accepted event becomes notifications and rendered deliveries."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from notifier.accounts import service as accounts
from notifier.accounts.models import Account
from notifier.billing import service as billing
from notifier.billing.models import Bill, Payment
from notifier.db import insert_many, insert_objects
from notifier.deliveries import service as deliveries
from notifier.deliveries.models import Delivery, DeliveryStatus, Notification, NotificationStatus
from notifier.escalation import holds, ladder, stages
from notifier.escalation import service as escalation
from notifier.escalation.holds import Hold
from notifier.events.models import Event, EventStatus
from notifier.events.schema import EventIn, parse_event
from notifier.flows import unreachable
from notifier.notices.content import (
    build_context,
    collection_context,
    names_terms,
    sms_segments,
    statement,
)
from notifier.policy.routing import Planned, plan, reachable
from notifier.privacy.masking import mask_recipient
from notifier.runtime import Runtime

__all__ = [
    "MAX_EVENT_ATTEMPTS",
    "context_for",
    "create_deliveries",
    "create_delivery",
    "process_events",
    "unprocessed_events",
]

log = logging.getLogger(__name__)
MAX_EVENT_ATTEMPTS = 5
CORRECTED = "bill.corrected"
"""The notice that a bill's amount or due date changed after a notice named it."""


def process_events(rt: Runtime, event_pks: Sequence[int]) -> None:
    """Turn a chunk of accepted events into notifications and deliveries, then enqueue them.

    The common case goes in bulk (:func:`_process_batch`): one transaction and
    a handful of statements for the whole chunk. Events that need care (a
    payment, two events of one account in the chunk) or that the bulk pass
    could not take go one by one, each under a savepoint of one more
    transaction, so a failing event is recorded alone. The deliveries created
    are enqueued once, after the commits, in batches per channel.
    """
    created, careful = _process_batch(rt, event_pks)
    failures: list[tuple[int, Exception]] = []
    if careful:
        with rt.db.session() as session:
            for event_pk in careful:
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


def _process_batch(
    rt: Runtime, event_pks: Sequence[int]
) -> tuple[list[tuple[int, str]], list[int]]:
    """The bulk pass: what it created, and the events left for one-by-one processing."""
    try:
        with rt.db.session() as session:
            return _batch(rt, session, event_pks)
    except Exception:
        # Rolled back whole: the careful path retries each event and records any failure.
        log.exception("events %s…: the bulk pass failed; one by one instead", event_pks[:3])
        return [], list(event_pks)


def _batch(
    rt: Runtime, session: Session, event_pks: Sequence[int]
) -> tuple[list[tuple[int, str]], list[int]]:
    events = session.exec(
        select(Event)
        .where(col(Event.id).in_(event_pks), Event.status == EventStatus.RECEIVED)
        .order_by(col(Event.id))
        .with_for_update(skip_locked=True)  # being processed elsewhere: not ours
    ).all()
    parsed: list[tuple[Event, EventIn]] = []
    careful: list[int] = []
    for event in events:
        assert event.id is not None
        try:
            parsed.append((event, parse_event(event.payload)))
        except Exception:
            careful.append(event.id)  # recorded as a failure there
    parsed = _refuse_foreign_bills(session, parsed, now=rt.clock())
    accounts_seen = Counter(data.account.account_no for _, data in parsed)
    bills_seen = Counter(data.bill.bill_no for _, data in parsed if data.bill)
    simple: list[tuple[Event, EventIn]] = []
    for event, data in parsed:
        assert event.id is not None
        if (
            data.type in ("bill.paid", "bill.payment_reversed", *ladder.CONFIRMATIONS)
            or accounts_seen[data.account.account_no] > 1
            or (data.bill is not None and bills_seen[data.bill.bill_no] > 1)
        ):
            careful.append(event.id)  # in order, each seeing the one before
        else:
            simple.append((event, data))
    if not simple:
        return [], sorted(careful)
    found = accounts.upsert_many_locked(
        session,
        [data.account for _, data in simple],
        producers={data.account.account_no: event.producer_key_id for event, data in simple},
        lookup_key=rt.settings.resolved_lookup_key,
    )
    recorded = billing.record_many(
        session,
        [
            (data.account.account_no, data.bill, _issued_at(data))
            for _, data in simple
            if data.bill is not None
        ],
        producers={data.bill.bill_no: event.producer_key_id for event, data in simple if data.bill},
    )
    bills = recorded.bills
    now = rt.clock()
    corrections: list[tuple[int, str]] = []
    for event, data in simple:
        if data.bill is not None and data.bill.bill_no in recorded.corrected:
            corrections.extend(
                _correct(
                    rt,
                    session,
                    event,
                    data,
                    found[data.account.account_no],
                    bills[data.bill.bill_no],
                    recorded.corrected[data.bill.bill_no],
                )
            )
    candidates = []
    for event, data in simple:
        bill = bills[data.bill.bill_no] if data.bill is not None else None
        if data.type == "bill.unpaid" and bill is not None and bill.paid_at is not None:
            event.outcome = "bill already paid; no notice"
            continue
        account = found[data.account.account_no]
        candidates.append((event, data, account, bill, _dedup_key(data, account, bill)))
    window = timedelta(hours=rt.policy.dedup_window_hours)
    originals = (
        deliveries.recent_notifications(session, [c[4] for c in candidates], now - window)
        if window
        else {}
    )
    held = _holds(rt, session, [(data, account, bill) for _, data, account, bill, _ in candidates])
    notices = [
        notice
        for (event, data, account, bill, key), hold in zip(candidates, held, strict=True)
        if (
            notice := _plan_notice(
                rt, event, data, account, bill, key, originals.get(key), hold=hold
            )
        )
    ]
    created = corrections + _store_notices(rt, session, notices)
    for event, data in simple:
        _note_contact_kept(event, data, found[data.account.account_no])
        event.status, event.processed_at = EventStatus.PROCESSED, now
        session.add(event)
    return created, sorted(careful)


FOREIGN_BILL = "refused: the bill belongs to another producer; nothing recorded, no notice"
CONTACT_KEPT = "the account's contact data is kept by the producer that created it: not applied"


def _refuse_foreign_bills(
    session: Session, parsed: list[tuple[Event, EventIn]], *, now: datetime
) -> list[tuple[Event, EventIn]]:
    """Settle the events about another producer's bill as refused; the others, to process.

    The API refuses them at once (422); this catches what it cannot see: the bus, and two
    producers posting about a new bill at the same moment.
    """
    owner = billing.owners(session, {data.bill.bill_no for _, data in parsed if data.bill})
    kept = []
    for event, data in parsed:
        bill_owner = owner.get(data.bill.bill_no) if data.bill else None
        if bill_owner is not None and bill_owner != event.producer_key_id:
            event.outcome, event.status, event.processed_at = (
                FOREIGN_BILL, EventStatus.PROCESSED, now,
            )  # fmt: skip
            session.add(event)
        else:
            kept.append((event, data))
    return kept


def _note_contact_kept(event: Event, data: EventIn, account: Account) -> None:
    if data.account.known_fields() and accounts.kept_by_another(account, event.producer_key_id):
        event.outcome = f"{event.outcome}; {CONTACT_KEPT}" if event.outcome else CONTACT_KEPT


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
    now = rt.clock()
    if not _refuse_foreign_bills(session, [(event, data)], now=now):
        return []
    account = accounts.upsert_locked(
        session,
        data.account,
        producer=event.producer_key_id,
        lookup_key=rt.settings.resolved_lookup_key,
    )
    bill: Bill | None = None
    payment: Payment | None = None
    notify = True
    created: list[tuple[int, str]] = []
    assert event.id is not None
    if data.type in ladder.CONFIRMATIONS:
        # The billing side confirms a suspension or reconnection: the ladder's, no notice.
        notify = False
        event.outcome = ladder.confirm(
            session,
            data.type,
            account.account_no,
            on=rt.policy.business_date(data.occurred_at),
            now=now,
            actor=f"event {data.event_id}",
        )
    if data.bill is not None:
        if data.type == "bill.paid":
            bill, payment = billing.pay(
                session,
                account.account_no,
                data.bill,
                data.payment,
                event_pk=event.id,
                occurred_at=data.occurred_at,
                producer=event.producer_key_id,
            )
            event.outcome = _settled(rt, session, event, bill, payment, now)
        elif data.type == "bill.payment_reversed":
            assert data.payment is not None
            bill, payment = billing.reverse(
                session, account.account_no, data.bill, data.payment, event_pk=event.id, now=now,
                producer=event.producer_key_id,
            )  # fmt: skip
            event.outcome = (
                f"payment {payment.id} reversed; NT${bill.owed} owed on {bill.bill_no}"
                if payment is not None
                else "no such payment on the bill; nothing reversed"
            )
            payment = None
        else:
            recorded = billing.record_many(
                session,
                [(account.account_no, data.bill, _issued_at(data))],
                producers={data.bill.bill_no: event.producer_key_id},
            )
            bill = recorded.bills[data.bill.bill_no]
            if bill.bill_no in recorded.corrected:
                created += _correct(
                    rt, session, event, data, account, bill, recorded.corrected[bill.bill_no]
                )
            if data.type == "bill.unpaid" and bill.paid_at is not None:
                notify = False
                event.outcome = "bill already paid; no notice"
    if notify:
        key = _dedup_key(data, account, bill)
        window = timedelta(hours=rt.policy.dedup_window_hours)
        original = deliveries.recent_notification(session, key, now - window) if window else None
        (hold,) = _holds(rt, session, [(data, account, bill)])
        notice = _plan_notice(rt, event, data, account, bill, key, original, payment, hold=hold)
        created += _store_notices(rt, session, [notice] if notice else [])
    _note_contact_kept(event, data, account)
    event.status, event.processed_at = EventStatus.PROCESSED, now
    session.add(event)
    return created


def _settled(
    rt: Runtime, session: Session, event: Event, bill: Bill, payment: Payment | None, now: datetime
) -> str:
    """What a ``bill.paid`` did: a settled bill stops its notices; a partial one leaves them
    to tell the rest (they are rendered again when claimed). Either may take the rule's
    ground from under a case (the arrears under the minimum), so both ask the cases."""
    received = f"NT${payment.amount} received" if payment is not None else "nothing owed"
    closed = len(
        escalation.close_paid_cases(
            session,
            now=now,
            actor=f"event {event.event_id}",
            account_no=bill.account_no,
            policy=rt.policy.escalation,
            today=rt.policy.business_date(now),
        )
    )
    if bill.paid_at is None:
        cases = f"; {closed} cases closed" if closed else ""
        return f"{received}; NT${bill.owed} still owed on {bill.bill_no}{cases}"
    cancelled = deliveries.cancel_pending_for_bill(
        session, bill.bill_no, now=now, reason="bill paid"
    )
    credit = f", NT${bill.credit} credit" if bill.credit else ""
    return (
        f"{received}; bill settled{credit}; {cancelled} deliveries cancelled, {closed} cases closed"
    )


def _correct(
    rt: Runtime,
    session: Session,
    event: Event,
    data: EventIn,
    account: Account,
    bill: Bill,
    before: billing.Terms,
) -> list[tuple[int, str]]:
    """A bill's amount or due date changed: tell it where the old terms already went out.

    Notices not sent yet need nothing here: they are rendered again from the
    ledger when claimed. A sent one (its ``stated`` names the old terms) gets a
    ``bill.corrected`` notice on its channel, at the account's contact point now.
    """
    if not rt.policy.corrections.notify:
        return []
    sent = deliveries.sent_about(session, account.account_no, bill.bill_no)
    channels = sorted(
        {
            d.channel
            for d in sent
            if d.stated and names_terms(d.stated, bill.bill_no, before.amount, before.due_date)
        }
    )
    has_template = rt.has_template(CORRECTED)
    steps = [
        Planned(channel, to)
        for channel in channels
        if (to := reachable(account, channel, has_template))
    ]
    if not steps:
        return []
    assert event.id is not None
    notification = Notification(
        event_pk=event.id,
        account_no=account.account_no,
        type=CORRECTED,
        bill_no=bill.bill_no,
        level=1,
        dedup_key=f"{CORRECTED}:{account.account_no}:{bill.bill_no}:{bill.amount}:{bill.due_date}",
    )
    session.add(notification)
    session.flush()
    context = build_context(
        rt.settings,
        account,
        data,
        bill=bill,
        unpaid=billing.unpaid_bills(session, account.account_no),
        today=rt.policy.business_date(rt.clock()),
        correction={"amount": before.amount, "due_date": before.due_date},
    )
    rows = create_deliveries(
        rt,
        session,
        notification,
        steps,
        context=context,
        note=f"correction: {bill.bill_no} was NT${before.amount} due {before.due_date}",
    )
    return [(d.id, d.channel) for d in rows if d.id is not None]


def _holds(
    rt: Runtime, session: Session, notices: Sequence[tuple[EventIn, Account, Bill | None]]
) -> list[Hold | None]:
    """The hold keeping back each ``bill.unpaid`` notice (a hold on its account, its bill or
    its area on today's business date); None for any other notice."""
    dunning = [
        (i, account, bill)
        for i, (data, account, bill) in enumerate(notices)
        if data.type == "bill.unpaid" and bill is not None
    ]
    found = holds.applying_holds(
        session,
        [(account.account_no, bill.bill_no, account.area) for _, account, bill in dunning],
        rt.policy.business_date(rt.clock()),
    )
    held: list[Hold | None] = [None] * len(notices)
    for (i, _, _), hold in zip(dunning, found, strict=True):
        held[i] = hold
    return held


def _issued_at(data: EventIn) -> datetime | None:
    return data.occurred_at if data.type == "bill.issued" else None


def _usage_period(data: EventIn) -> str | None:
    return f"{data.usage.period_start}/{data.usage.period_end}" if data.usage else None


def _dedup_key(data: EventIn, account: Account, bill: Bill | None) -> str:
    about = bill.bill_no if bill else _usage_period(data)
    if data.payment is not None:
        # Each payment is news of its own: two partial payments are two receipts.
        about = f"{about}:{data.payment.paid_at.isoformat()}:{data.payment.amount}"
    return f"{data.type}:{account.account_no}:{about}:{data.level}"


@dataclass(slots=True)
class _Notice:
    """A notification decided for an event, with what its deliveries are made from."""

    event: Event
    data: EventIn
    account: Account
    bill: Bill | None
    row: dict[str, Any]
    """The notification's column values, until :func:`_store_notices` inserts it."""
    planned: list[Planned]
    original: Notification | None
    payment: Payment | None = None
    hold: Hold | None = None
    notification: Notification = field(init=False)
    """Set by :func:`_store_notices`."""


def _plan_notice(
    rt: Runtime,
    event: Event,
    data: EventIn,
    account: Account,
    bill: Bill | None,
    dedup_key: str,
    original: Notification | None,
    payment: Payment | None = None,
    *,
    hold: Hold | None = None,
) -> _Notice | None:
    """The notification for the event (None if the policy sends nothing for it)."""
    urgent = data.usage is not None and rt.policy.usage.is_urgent(
        kwh=data.usage.kwh, baseline_kwh=data.usage.baseline_kwh, reason=data.usage.reason
    )
    planned = plan(
        rt.policy, account, data.type, data.level, rt.has_template(data.type), urgent=urgent
    )
    if not planned and not rt.policy.channels_for(data.type, data.level):
        return None
    status = NotificationStatus.ACTIVE
    if original is not None or hold is not None:
        status = NotificationStatus.SUPPRESSED
    elif not planned:
        status = NotificationStatus.UNREACHABLE
    assert event.id is not None
    row = {
        "event_pk": event.id,
        "account_no": account.account_no,
        "type": data.type,
        "bill_no": bill.bill_no if bill else None,
        "usage_period": _usage_period(data),
        "level": data.level,
        "dedup_key": dedup_key,
        "status": status,
        "duplicate_of": original.id if original else None,
        "held_by": hold.id if hold else None,
        "urgent": urgent,
    }
    return _Notice(event, data, account, bill, row, list(planned), original, payment, hold)


def _store_notices(
    rt: Runtime, session: Session, notices: Sequence[_Notice]
) -> list[tuple[int, str]]:
    """Insert the notifications, then their rendered deliveries, a statement for each kind."""
    if not notices:
        return []
    stored = insert_objects(session, Notification, [notice.row for notice in notices])
    for notice, notification in zip(notices, stored, strict=True):
        notice.notification = notification
    unpaid = billing.unpaid_bills_of(session, {notice.account.account_no for notice in notices})
    today = rt.policy.business_date(rt.clock())
    made: list[tuple[_Notice, list[dict[str, Any]]]] = []
    for notice in notices:
        context = build_context(
            rt.settings,
            notice.account,
            notice.data,
            bill=notice.bill,
            unpaid=unpaid.get(notice.account.account_no, []),
            today=today,
            payment=notice.payment,
            urgent=notice.notification.urgent,
        )
        status = (
            DeliveryStatus.SUPPRESSED if notice.original or notice.hold else DeliveryStatus.QUEUED
        )
        made.append(
            (notice, _delivery_rows(rt, notice.notification, notice.planned, context, status))
        )
    # Rows, not ORM objects: nothing here reads a delivery back, and a batch's deliveries
    # go in as one statement (db.insert_many).
    table: sa.Table = Delivery.__table__  # type: ignore[attr-defined]
    ids = {
        (row.notification_id, row.channel): row.id
        for row in insert_many(
            session,
            table,
            [row for _, mine in made for row in mine],
            returning=["id", "notification_id", "channel"],
        )
    }
    created: list[tuple[int, str, str]] = [
        (ids[row["notification_id"], row["channel"]], row["channel"], row["status"])
        for _, mine in made
        for row in mine
    ]
    changes: list[tuple[int, str, dict[str, object]]] = []
    for notice, mine in made:
        detail: dict[str, object]
        if notice.hold is not None:
            detail = {"note": _held_note(notice.hold), "reason": "held", "hold": notice.hold.id}
        elif notice.original:
            detail = {"note": f"repeat of notification {notice.original.id}"}
        else:
            continue  # planned by policy: the row says so (deliveries.timeline)
        changes.extend(
            (ids[row["notification_id"], row["channel"]], row["status"], detail) for row in mine
        )
    deliveries.record_changes(session, changes, at=rt.clock())
    unreachable.report(rt, session, [(notice.notification, notice.account) for notice in notices])
    # Last, after the statements above: set earlier, the outcome would be flushed by them in
    # an UPDATE of its own, and the event's status in another.
    for notice in notices:
        held = f" (held by hold {notice.hold.id})" if notice.hold else ""
        notice.event.outcome = (
            f"notification {notice.notification.id} {notice.notification.status}{held}: "
            f"{len(notice.planned)} deliveries"
        )
    return [(i, channel) for i, channel, status in created if status == DeliveryStatus.QUEUED]


def _held_note(hold: Hold) -> str:
    until = f"until {hold.ends_on.isoformat()}" if hold.ends_on else "until released"
    return f"held: {hold.scope} hold {hold.id} ({hold.reason}) {until}"


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
    (delivery,) = create_deliveries(
        rt,
        session,
        notification,
        [step],
        context=context,
        status=status,
        note=note,
        fallback_of=fallback_of,
    )
    return delivery


def create_deliveries(
    rt: Runtime,
    session: Session,
    notification: Notification,
    steps: Sequence[Planned],
    *,
    context: dict[str, object],
    status: str = DeliveryStatus.QUEUED,
    note: str,
    fallback_of: int | None = None,
) -> list[Delivery]:
    """Render the notice for each planned channel and store them, in one flush."""
    rows = _new_deliveries(rt, notification, steps, context, status, fallback_of=fallback_of)
    session.add_all(rows)
    session.flush()
    deliveries.record_changes(
        session, [(d.id or 0, d.status, {"note": note}) for d in rows], at=rt.clock()
    )
    return rows


def _new_deliveries(
    rt: Runtime,
    notification: Notification,
    steps: Sequence[Planned],
    context: dict[str, object],
    status: str,
    *,
    fallback_of: int | None = None,
) -> list[Delivery]:
    return [
        Delivery(**row)
        for row in _delivery_rows(rt, notification, steps, context, status, fallback_of=fallback_of)
    ]


def _delivery_rows(
    rt: Runtime,
    notification: Notification,
    steps: Sequence[Planned],
    context: dict[str, object],
    status: str,
    *,
    fallback_of: int | None = None,
) -> list[dict[str, Any]]:
    """The notice rendered for each planned channel, as the deliveries' column values."""
    assert notification.id is not None
    language = str(context["language"])
    stated = statement(context)
    rows = []
    for step in steps:
        rendered = rt.renderer.render(notification.type, step.channel, language, context)
        rows.append(
            {
                "notification_id": notification.id,
                "account_no": notification.account_no,
                "event_type": notification.type,
                "channel": step.channel,
                "status": status,
                "recipients": list(step.recipients),
                "address_masked": ", ".join(
                    mask_recipient(step.channel, r) for r in step.recipients
                ),
                "language": rendered.language,
                "language_fallback": rendered.language_fallback,
                "content": {
                    "subject": rendered.subject,
                    "body": rendered.body,
                    "html": rendered.html,
                },
                "segments": sms_segments(rendered.body) if step.channel == "sms" else None,
                "stated": stated,
                "fallback_of": fallback_of,
            }
        )
    return rows


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
    rt: Runtime,
    session: Session,
    notification: Notification,
    *,
    stated: dict[str, Any] | None = None,
) -> tuple[Account, dict[str, object]]:
    """The account and template context of a notification, rebuilt from its event and
    the ledger now; ``stated`` is what an earlier delivery of it stated (a correction
    notice keeps there the terms it corrects)."""
    event = session.get(Event, notification.event_pk)
    account = session.get(Account, notification.account_no)
    assert event is not None and account is not None and event.id is not None
    data = parse_event(event.payload)
    bill = session.get(Bill, notification.bill_no) if notification.bill_no else None
    unpaid = billing.unpaid_bills(session, account.account_no)
    if notification.type in stages.LADDER_NOTICES:
        # A ladder notice's own terms (its date, its deadline) are its stage step's.
        assert notification.id is not None
        step = stages.step_of_notice(session, notification.id)
        assert step is not None, f"notification {notification.id} has no ladder step"
        return account, collection_context(
            rt.settings,
            account,
            notification.type,
            bill=bill,
            unpaid=unpaid,
            today=rt.policy.business_date(rt.clock()),
            on=step.on,
            deadline=step.deadline,
        )
    payment = billing.payment_of_event(session, event.id) if data.type == "bill.paid" else None
    return account, build_context(
        rt.settings,
        account,
        data,
        bill=bill,
        unpaid=unpaid,
        today=rt.policy.business_date(rt.clock()),
        payment=payment,
        correction=correction_of(stated),
        urgent=notification.urgent,
    )


def correction_of(stated: dict[str, Any] | None) -> dict[str, Any] | None:
    """The corrected terms a ``bill.corrected`` delivery keeps in ``stated``."""
    kept = (stated or {}).get("correction")
    if not kept:
        return None
    return {"amount": kept["amount"], "due_date": date.fromisoformat(kept["due_date"])}
