"""A hold ends: each account it kept back gets at most one notice stating the ledger now.

Released through the API, or its ``ends_on`` passed (the reconciler finds
those), a hold's release work is a worker's task (``notifier.release_hold``):
the accounts it covers whose ``bill.unpaid`` notice was held (by it or by
another hold) and that got none since are taken in chunks, in account order.
An account still held otherwise, or whose held bills were paid meanwhile,
gets nothing; any other gets one ``bill.unpaid`` notice, at the highest level
held, about a held bill still unpaid, listing every unpaid bill at what is
owed today. So a disaster-area hold over 10,000 accounts ends in at most
10,000 notices, not one per notice held.

Idempotent: each chunk's notices and the hold's ``release_cursor`` commit
together, under the hold's row lock, and an account told since its notice
was held is not an account owed a notice. A second run (a redelivered task,
the reconciler) goes on from the cursor or finds nothing left.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import date

import sqlalchemy as sa
from sqlmodel import Session, col, select

from notifier.accounts.models import Account
from notifier.billing import service as billing
from notifier.billing.models import Bill
from notifier.deliveries.models import DeliveryStatus, Notification, NotificationStatus
from notifier.escalation import holds
from notifier.escalation.holds import Hold
from notifier.events.models import Event
from notifier.events.schema import parse_event
from notifier.flows import unreachable
from notifier.flows.process_event import create_deliveries
from notifier.notices.content import build_context
from notifier.policy.routing import plan
from notifier.runtime import Runtime

__all__ = ["CHUNK", "owed_accounts", "release"]

log = logging.getLogger(__name__)
CHUNK = 500
DUNNING = "bill.unpaid"


def release(rt: Runtime, hold_id: int, *, chunk: int = CHUNK) -> Hold | None:
    """Do the release work of an ended hold; the hold with its progress (None: no such hold).

    A hold that still applies, or whose work is done, is left as it is.
    """
    today = rt.policy.business_date(rt.clock())
    with rt.db.session() as session:
        hold = session.get(Hold, hold_id, with_for_update=True)
        if hold is None or hold.release_done_at is not None or not hold.ended_by(today):
            return hold
        todo = owed_accounts(session, hold)
        hold.release_accounts = hold.release_checked + len(todo)
        session.add(hold)
    for start in range(0, len(todo), chunk):
        with rt.db.session() as session:
            hold = session.get(Hold, hold_id, with_for_update=True)
            assert hold is not None
            batch = [no for no in todo[start : start + chunk] if no > (hold.release_cursor or "")]
            if hold.release_done_at is not None or not batch:
                continue  # another run did this chunk (its cursor is past it)
            created = _notify(rt, session, hold, batch, today)
            hold.release_cursor = batch[-1]
            hold.release_checked += len(batch)
            hold.release_notified += len({account_no for account_no, _ in created})
            session.add(hold)
        deliveries = [pair for _, made in created for pair in made]
        if deliveries:
            rt.dispatcher.deliver(deliveries)
    with rt.db.session() as session:
        hold = session.get(Hold, hold_id, with_for_update=True)
        assert hold is not None
        if hold.release_done_at is None:
            hold.release_done_at = rt.clock()
            session.add(hold)
    log.info(
        "hold %s released: %s accounts checked, %s notified",
        hold_id, hold.release_checked, hold.release_notified,
    )  # fmt: skip
    return hold


def _owed() -> sa.ColumnElement[bool]:
    """A held dunning notice with no dunning notice sent to its account since."""
    later = sa.orm.aliased(Notification)
    return sa.and_(
        col(Notification.held_by).is_not(None),
        col(Notification.type) == DUNNING,
        ~sa.exists(
            sa.select(1).where(
                col(later.account_no) == col(Notification.account_no),
                col(later.type) == DUNNING,
                col(later.status) == NotificationStatus.ACTIVE,
                col(later.id) > col(Notification.id),
            )
        ),
    )


def owed_accounts(session: Session, hold: Hold) -> list[str]:
    """The accounts ``hold`` covers that a held notice is owed to, after its cursor, in order."""
    query = sa.select(col(Notification.account_no)).where(_owed()).distinct()
    if hold.scope == "account":
        query = query.where(col(Notification.account_no) == hold.account_no)
    elif hold.scope == "bill":
        owner = sa.select(col(Bill.account_no)).where(col(Bill.bill_no) == hold.bill_no)
        query = query.where(col(Notification.account_no).in_(owner.scalar_subquery()))
    else:
        query = query.join(Account, col(Account.account_no) == col(Notification.account_no)).where(
            col(Account.area) == hold.area
        )
    if hold.release_cursor:
        query = query.where(col(Notification.account_no) > hold.release_cursor)
    return sorted(session.execute(query).scalars())


def _notify(
    rt: Runtime, session: Session, hold: Hold, account_nos: Sequence[str], today: date
) -> list[tuple[str, list[tuple[int, str]]]]:
    """One notice for each of ``account_nos`` still owed one and no longer held; per account
    notified, the deliveries to enqueue."""
    accounts = {
        a.account_no: a
        for a in session.exec(
            select(Account)
            .where(col(Account.account_no).in_(list(account_nos)))
            .order_by(col(Account.account_no))
            .with_for_update()  # as bill.paid processing takes them: no notice beside a payment
        )
    }
    still = holds.holds_for(session, list(accounts), today)
    unpaid = billing.unpaid_bills_of(session, list(accounts))
    candidates = [
        no for no in accounts if unpaid.get(no) and (no not in still or _bill_held(still, no))
    ]
    held_bills = holds.bills_held(
        session, {b.bill_no for no in candidates for b in unpaid.get(no, [])}, today
    )
    chosen: dict[str, Notification] = {}
    for notification in session.exec(
        select(Notification)
        .where(_owed(), col(Notification.account_no).in_(candidates))
        .order_by(col(Notification.id))
    ):
        owing = {b.bill_no for b in unpaid.get(notification.account_no, [])}
        if notification.bill_no not in owing or notification.bill_no in held_bills:
            continue  # paid meanwhile, or that bill is still held
        best = chosen.get(notification.account_no)
        if best is None or notification.level >= best.level:
            chosen[notification.account_no] = notification
    events = {
        e.id: e
        for e in session.exec(
            select(Event).where(col(Event.id).in_([n.event_pk for n in chosen.values()]))
        )
    }
    bills = {b.bill_no: b for bs in unpaid.values() for b in bs}
    made: list[tuple[str, list[tuple[int, str]]]] = []
    for account_no, held in sorted(chosen.items()):
        account = accounts[account_no]
        notice = Notification(
            event_pk=held.event_pk, account_no=account_no, type=DUNNING, bill_no=held.bill_no,
            level=held.level, dedup_key=held.dedup_key, status=NotificationStatus.ACTIVE,
        )  # fmt: skip
        steps = plan(rt.policy, account, DUNNING, held.level, rt.has_template(DUNNING))
        if not steps:
            notice.status = NotificationStatus.UNREACHABLE
        session.add(notice)
        session.flush()
        context = build_context(
            rt.settings,
            account,
            parse_event(events[held.event_pk].payload),
            bill=bills[str(held.bill_no)],
            unpaid=unpaid[account_no],
            today=today,
        )
        rows = create_deliveries(
            rt,
            session,
            notice,
            steps,
            context=context,
            note=f"hold {hold.id} ended: notice {held.id} held, sent now from the ledger",
        )
        unreachable.report(rt, session, [(notice, account)])
        made.append(
            (
                account_no,
                [(r.id, r.channel) for r in rows if r.id and r.status == DeliveryStatus.QUEUED],
            )
        )
    return made


def _bill_held(still: dict[str, Hold], account_no: str) -> bool:
    """Held by a bill hold only: its other bills may be told."""
    hold = still.get(account_no)
    return hold is not None and hold.scope == "bill"
