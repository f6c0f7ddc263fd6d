"""What agents and supervisors read: case rows with contact, bills and earlier attempts.

Three queries whatever the number of cases (cases with their accounts, then
the unpaid bills and the attempts of the same cases), so an agent's list of
ten thousand cases is one round trip each, not thirty thousand.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

import phonenumbers
import sqlalchemy as sa
from sqlmodel import Session, col

from notifier.accounts import service as accounts
from notifier.accounts.labels import protections_text, spoken_language_label
from notifier.accounts.models import Account
from notifier.billing.models import Bill
from notifier.escalation import holds
from notifier.escalation.models import (
    Agent,
    CaseKind,
    CaseStatus,
    Escalation,
    EscalationAttempt,
    EscalationBill,
)
from notifier.policy.local_time import local_date

__all__ = [
    "AttemptLine",
    "BillLine",
    "CaseFilter",
    "CaseRow",
    "HoldLine",
    "agent_list",
    "case_rows",
    "export_table",
    "stats",
]


@dataclass(frozen=True)
class BillLine:
    bill_no: str
    period: str
    amount: int
    """What is still owed on the bill (its amount less the payments on file)."""
    due_date: date


@dataclass(frozen=True)
class AttemptLine:
    at: datetime
    kind: str
    outcome: str
    recorded_by: str
    note: str | None
    promise_date: date | None


@dataclass(frozen=True)
class HoldLine:
    """The hold that keeps a case off the agents' lists, as supervisors see it."""

    hold_id: int
    scope: str
    reason: str
    ends_on: date | None


@dataclass
class CaseRow:
    case_id: int
    kind: str
    status: str
    outcome: str | None
    account_no: str
    name: str | None
    language: str
    phone: str | None
    address: str | None
    area: str | None
    assignee_id: int | None
    assignee: str | None
    opened_on: date
    follow_up_on: date | None
    failed_calls: int
    invalid_phone: str | None
    next_call_at: datetime | None
    """An unanswered call before this is not counted (``call_retry_hours``)."""
    stage: str | None
    """The collections-ladder stage the case waits for, if any."""
    protections: list[str]
    """The account's protections (``life_support``, ...): shown on every card and export."""
    spoken_language: str | None
    """What to speak with the customer (``nan``, ``hak``, ...), if the producer said."""
    capacity_wait_since: date | None
    """Unassigned since this day because every agent of its area and kind was full."""
    days_overdue: int = 0
    bills: list[BillLine] = field(default_factory=list)
    attempts: list[AttemptLine] = field(default_factory=list)
    note: str | None = None
    """What the list must say about the case today (a payment claimed but not in the ledger)."""
    hold: HoldLine | None = None
    """The hold that applies today: the case is off the agents' lists while it does."""

    @property
    def total(self) -> int:
        return sum(b.amount for b in self.bills)

    @property
    def phone_invalid(self) -> bool:
        """The phone is the number an agent found wrong."""
        return accounts.phone_marked_invalid(self.phone, self.invalid_phone)


@dataclass(frozen=True)
class CaseFilter:
    """Which cases: every field left None matches all."""

    case_id: int | None = None
    status: str | None = None
    kind: str | None = None
    area: str | None = None
    assignee_id: int | None = None
    unassigned: bool = False
    waiting_for_capacity: bool = False
    """Only unassigned cases that wait for an agent of their area to have room."""
    due_on: date | None = None
    """Only cases to work on this day: not waiting for a promised or claimed payment, nor for
    the next stage of the ladder (a refused visit), nor held."""
    after_id: int | None = None

    def apply(self, query: Any) -> Any:
        conditions = []
        if self.case_id is not None:
            conditions.append(col(Escalation.id) == self.case_id)
        if self.status is not None:
            conditions.append(col(Escalation.status) == self.status)
        if self.kind is not None:
            conditions.append(col(Escalation.kind) == self.kind)
        if self.area is not None:
            conditions.append(col(Escalation.area) == self.area)
        if self.assignee_id is not None:
            conditions.append(col(Escalation.assignee_id) == self.assignee_id)
        if self.unassigned:
            conditions.append(col(Escalation.assignee_id).is_(None))
        if self.waiting_for_capacity:
            conditions.append(col(Escalation.assignee_id).is_(None))
            conditions.append(col(Escalation.capacity_wait_since).is_not(None))
        if self.due_on is not None:
            conditions.append(
                sa.or_(
                    col(Escalation.follow_up_on).is_(None),
                    col(Escalation.follow_up_on) <= self.due_on,
                )
            )
            conditions.append(col(Escalation.stage).is_(None))
            conditions.append(~holds.case_held(self.due_on))
        if self.after_id is not None:
            conditions.append(col(Escalation.id) > self.after_id)
        return query.where(*conditions)


def case_rows(
    session: Session, where: CaseFilter, *, today: date, limit: int | None = None
) -> list[CaseRow]:
    """Cases matching ``where`` by id, with their unpaid bills and attempts."""
    # Columns, not ORM objects: building 10,000 Escalation and Account objects
    # was most of a list pull.
    cases = where.apply(
        sa.select(
            col(Escalation.id), col(Escalation.kind), col(Escalation.status),
            col(Escalation.outcome), col(Escalation.account_no), col(Account.name),
            col(Account.language), col(Account.phone), col(Account.address), col(Escalation.area),
            col(Escalation.assignee_id), col(Agent.name), col(Escalation.opened_on),
            col(Escalation.follow_up_on), col(Escalation.failed_calls), col(Account.invalid_phone),
            col(Escalation.next_call_at), col(Escalation.stage), col(Account.protections),
            col(Account.spoken_language), col(Escalation.capacity_wait_since),
        )
        .join(Account, col(Account.account_no) == col(Escalation.account_no))
        .outerjoin(Agent, col(Agent.id) == col(Escalation.assignee_id))
        .order_by(col(Escalation.id))
    )  # fmt: skip
    if limit is not None:
        cases = cases.limit(limit)
    rows: dict[int, CaseRow] = {}
    for values in session.execute(cases):
        row = CaseRow(*values)
        rows[row.case_id] = row
    if not rows:
        return []
    # The same filter again rather than a list of ids: no parameter limit, one plan.
    scope = where.apply(sa.select(col(Escalation.id)))
    if limit is not None:
        scope = scope.where(col(Escalation.id) <= max(rows))
    bills = session.execute(
        sa.select(
            col(EscalationBill.escalation_id), col(Bill.bill_no), col(Bill.period),
            # What is left to pay: a partial payment is already off what the agent asks for.
            (col(Bill.amount) - col(Bill.paid_amount)).label("owed"), col(Bill.due_date),
        )
        .join(Bill, col(Bill.bill_no) == col(EscalationBill.bill_no))
        .where(col(EscalationBill.escalation_id).in_(scope), col(Bill.paid_at).is_(None))
        .order_by(col(Bill.due_date), col(Bill.bill_no))
    )  # fmt: skip
    for case_id, bill_no, period, amount, due_date in bills:
        if case_id in rows:
            rows[case_id].bills.append(BillLine(bill_no, period, amount, due_date))
    attempts = session.execute(
        sa.select(EscalationAttempt)
        .where(col(EscalationAttempt.escalation_id).in_(scope))
        .order_by(col(EscalationAttempt.at), col(EscalationAttempt.id))
    )
    for (a,) in attempts:
        if a.escalation_id in rows:
            rows[a.escalation_id].attempts.append(
                AttemptLine(a.at, a.kind, a.outcome, a.recorded_by, a.note, a.promise_date)
            )
    for case_id, hold in holds.case_holds(session, scope, today).items():
        assert hold.id is not None
        rows[case_id].hold = HoldLine(hold.id, hold.scope, hold.reason, hold.ends_on)
    for row in rows.values():
        if row.bills:
            row.days_overdue = max(0, (today - row.bills[0].due_date).days)
        row.note = _note(row, today)
    return list(rows.values())


def _note(row: CaseRow, today: date) -> str | None:
    """A payment the customer claimed that the ledger does not show by the day it was due to."""
    claimed = row.outcome == "payment_claimed" and row.status == CaseStatus.OPEN
    if not claimed or row.follow_up_on is None or today < row.follow_up_on or not row.bills:
        return None
    said = next((a for a in reversed(row.attempts) if a.outcome == "paid"), None)
    when = f" on {said.at.date().isoformat()}" if said else ""
    return (
        f"the customer said{when} it was paid; by {row.follow_up_on.isoformat()} the ledger "
        "still shows it unpaid"
    )


def agent_list(session: Session, agent_id: int, kind: str, *, today: date) -> list[CaseRow]:
    """An agent's open cases of ``kind`` to work today, in working order.

    Calls: the largest arrears first, then the longest overdue. Visits: by
    area, then address, so a day's round follows the streets.
    """
    where = CaseFilter(status=CaseStatus.OPEN, kind=kind, assignee_id=agent_id, due_on=today)
    rows = case_rows(session, where, today=today)
    if kind == CaseKind.CALL:
        rows.sort(key=lambda r: (-r.total, -r.days_overdue, r.case_id))
    else:
        rows.sort(key=lambda r: (r.area or "", r.address or "", r.case_id))
    return rows


# --- exports ----------------------------------------------------------------------------------

_HEADERS: dict[str, tuple[str, ...]] = {
    CaseKind.CALL: ("case", "account", "name", "phone"),
    CaseKind.VISIT: ("case", "account", "name", "area", "address"),
}
_COMMON = (
    "bills", "total", "oldest due", "days overdue", "attempts", "last note", "opened on",
    # Last, so that readers of the older files find every column where it was.
    "protections", "spoken language",
)  # fmt: skip


def _national(phone: str | None) -> str:
    """The number as an agent dials it here ("0912 345 678"), not E.164."""
    if not phone:
        return ""
    number = phonenumbers.parse(phone, None)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)


def export_table(
    rows: Sequence[CaseRow], kind: str, *, tz: ZoneInfo, language: str = "zh-TW"
) -> tuple[list[str], list[list[Any]]]:
    """Headers and flat rows of a list, for CSV/XLSX/ODS: one row per case.

    Attempts are listed by their business date in ``tz``, as the agent page shows them;
    protections and the spoken language by their labels in ``language``.
    """
    headers = [*_HEADERS[kind], *_COMMON]
    table: list[list[Any]] = []
    for r in rows:
        phone = _national(r.phone) + (" (marked invalid)" if r.phone_invalid else "")
        contact: list[Any] = [phone] if kind == CaseKind.CALL else [r.area or "", r.address or ""]
        bills = "; ".join(f"{b.period} {b.amount} (due {b.due_date.isoformat()})" for b in r.bills)
        attempts = "; ".join(f"{local_date(a.at, tz).isoformat()} {a.outcome}" for a in r.attempts)
        last_note = r.note or next((a.note for a in reversed(r.attempts) if a.note), "")
        table.append(
            [
                r.case_id, r.account_no, r.name or "", *contact, bills, r.total,
                r.bills[0].due_date if r.bills else None, r.days_overdue, attempts, last_note,
                r.opened_on, protections_text(r.protections, language),
                spoken_language_label(r.spoken_language, language),
            ]
        )  # fmt: skip
    return headers, table


# --- counts for supervisors ------------------------------------------------------------------


def stats(session: Session, *, since: date, tz: ZoneInfo) -> dict[str, Any]:
    """Open cases by area and kind (unassigned, waiting for capacity); outcomes and closed cases
    since ``since``.

    Closed cases count by how they ended, so ``paid_before_trigger`` (paid in
    time, heard of late) stays apart from ``paid`` (collected).
    """
    open_rows = session.execute(
        sa.select(
            col(Escalation.area),
            col(Escalation.kind),
            col(Escalation.assignee_id).is_(None),
            sa.func.count(),
        )
        .where(col(Escalation.status) == CaseStatus.OPEN)
        .group_by(col(Escalation.area), col(Escalation.kind), col(Escalation.assignee_id).is_(None))
    )
    open_by_area: dict[str, dict[str, int]] = defaultdict(
        lambda: {"call": 0, "visit": 0, "unassigned": 0, "waiting_for_capacity": 0}
    )
    for area, kind, unassigned, n in open_rows:
        counts = open_by_area[area or ""]
        counts[kind] += n
        if unassigned:
            counts["unassigned"] += n
    for area, n in session.execute(
        sa.select(col(Escalation.area), sa.func.count())
        .where(
            col(Escalation.status) == CaseStatus.OPEN,
            col(Escalation.assignee_id).is_(None),
            col(Escalation.capacity_wait_since).is_not(None),
        )
        .group_by(col(Escalation.area))
    ):
        open_by_area[area or ""]["waiting_for_capacity"] += n
    start = datetime.combine(since, time(0), tzinfo=tz)
    outcome_rows = session.execute(
        sa.select(col(Escalation.area), col(EscalationAttempt.outcome), sa.func.count())
        .join(Escalation, col(Escalation.id) == col(EscalationAttempt.escalation_id))
        .where(col(EscalationAttempt.at) >= start)
        .group_by(col(Escalation.area), col(EscalationAttempt.outcome))
    )
    outcomes: dict[str, dict[str, int]] = defaultdict(dict)
    for area, outcome, n in outcome_rows:
        outcomes[area or ""][outcome] = n
    closed_rows = session.execute(
        sa.select(col(Escalation.area), col(Escalation.outcome), sa.func.count())
        .where(col(Escalation.status) == CaseStatus.DONE, col(Escalation.closed_at) >= start)
        .group_by(col(Escalation.area), col(Escalation.outcome))
    )
    closed: dict[str, dict[str, int]] = defaultdict(dict)
    for area, outcome, n in closed_rows:
        closed[area or ""][outcome or ""] = n
    return {
        "open_by_area": dict(sorted(open_by_area.items())),
        "outcomes_since": since,
        "outcomes_by_area": dict(sorted(outcomes.items())),
        "closed_by_area": dict(sorted(closed.items())),
    }
