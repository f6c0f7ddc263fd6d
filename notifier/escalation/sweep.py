"""The escalation sweep: every account whose arrears reached the rule gets one open case.

Cases follow the ledger: first the open cases a payment left without ground
close (:func:`~notifier.escalation.service.close_paid_cases`); then an account
the rule holds for again gets its case closed by that payment back, reopened,
with its attempts and history, rather than a new one. Last, every case without
an agent (new, reopened, or waiting since an earlier day) is given out in
priority order within each agent's daily capacity
(:mod:`~notifier.escalation.assignment`).

Last, the collections ladder moves the cases past their visit or calls
(:func:`notifier.escalation.ladder.advance`: final demands, suspension hand-offs).

It is idempotent (a second run on the same date changes nothing) and safe
beside payments and another sweep: each chunk of accounts is processed under
their row locks, which ``bill.paid`` processing takes too, and re-read inside
them. Progress is written to the run's row after each chunk, so a caller (or
a supervisor polling the API) sees how far a long run is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlmodel import Session, col, select

from notifier.accounts import service as accounts_service
from notifier.accounts.models import Account
from notifier.billing.models import Bill
from notifier.db import Database, utcnow
from notifier.escalation import bulk, holds, ladder, rule
from notifier.escalation.assignment import Assigner, priority
from notifier.escalation.models import (
    AGENT_KIND,
    PAID_OUTCOMES,
    CaseStatus,
    Escalation,
    EscalationBill,
    EscalationChange,
    SweepRun,
)
from notifier.escalation.service import LEDGER_COLUMNS, close_paid_cases, ledger_bill
from notifier.policy.rules import EscalationPolicy

__all__ = ["CHUNK", "Progress", "queue_run", "queued_runs", "sweep"]

log = logging.getLogger(__name__)
CHUNK = 1000
"""Accounts a sweep transaction takes: a payment on one of them waits up to a chunk. The
1,000,000-account figure in docs/benchmarks.md was measured with 5,000 (fewer statements a
run); 1,000 keeps that wait short and fault f's sweep several chunks long."""
SWEEP_ACTOR = "sweep"

Progress = Callable[[SweepRun], None]


def queue_run(session: Session, as_of: date, *, trigger: str, now: datetime) -> SweepRun:
    """A run to be done by a worker (``sweep(..., run_id=run.id)``); it shows as ``queued``."""
    run = SweepRun(as_of=as_of, trigger=trigger, status="queued", started_at=now)
    session.add(run)
    session.flush()
    return run


def queued_runs(session: Session, *, before: datetime) -> list[SweepRun]:
    """Runs queued before ``before`` that no worker started: their task was lost."""
    return list(
        session.exec(
            select(SweepRun).where(SweepRun.status == "queued", SweepRun.started_at < before)
        )
    )


def sweep(
    db: Database,
    policy: EscalationPolicy,
    as_of: date,
    *,
    trigger: str,
    run_id: int | None = None,
    chunk: int = CHUNK,
    progress: Progress | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> SweepRun:
    """Open, extend and assign cases as of business date ``as_of``; returns the finished run.

    ``run_id`` names a queued run to do (and its ``as_of`` wins); None starts a new one.
    """
    with db.session() as session:
        queued = session.get(SweepRun, run_id, with_for_update=True) if run_id else None
        if run_id is not None and (queued is None or queued.status != "queued"):
            raise ValueError(f"sweep run {run_id} is not waiting to run")
        run = queued or SweepRun(as_of=as_of, trigger=trigger)
        run.status, run.started_at = "running", clock()
        as_of = run.as_of
        session.add(run)
    try:
        with db.session() as session:
            run.closed = len(
                close_paid_cases(
                    session, now=clock(), actor=SWEEP_ACTOR, policy=policy, today=as_of
                )
            )
            candidates = _accounts_to_check(session, as_of, policy)
            run.accounts = len(candidates)
            _save(session, run)
        if progress:
            progress(run)
        statistics = _Statistics(db)
        for start in range(0, len(candidates), chunk):
            statistics.refresh_if_stale(run.opened)
            with db.session() as session:
                accounts = candidates[start : start + chunk]
                _sweep_chunk(session, accounts, as_of, policy, run, clock())
                run.checked = min(start + chunk, len(candidates))
                _save(session, run)
            if progress:
                progress(run)
        with db.session() as session:
            # New, reopened and waiting cases together, so today's room goes by priority.
            run.assigned, run.unassigned = _assign_waiting(session, as_of, clock())
            ladder.advance(session, policy, as_of, now=clock())  # the ladder after the case
            run.status, run.finished_at = "done", clock()
            _save(session, run)
    except BaseException as exc:
        with db.session() as session:
            run.status, run.finished_at = "failed", clock()
            run.error = f"{type(exc).__name__}: {exc}"[:1000]
            _save(session, run)
        raise
    log.info(
        "sweep %s as of %s: %s accounts checked, %s opened, %s reopened, %s bills joined, "
        "%s closed",
        run.id, as_of, run.accounts, run.opened, run.reopened, run.joined, run.closed,
    )  # fmt: skip
    return run


class _Statistics:
    """Keeps PostgreSQL's row estimates of the case tables in step while a sweep fills them.

    Every case inserted checks its foreign keys with a query that PostgreSQL
    plans once per connection from the table's statistics. Planned while the
    tables looked empty, that check scans the whole table: a sweep opening
    90,000 cases slowed from 1,000 accounts a second to 100. Autovacuum would
    refresh the statistics, but it may be off or behind; an ANALYZE (a sample,
    tens of milliseconds) each time the tables have doubled costs a handful
    per run and makes the checks index lookups again.
    """

    TABLES = "escalations, escalation_bills, escalation_changes"

    def __init__(self, db: Database) -> None:
        self.db = db
        self.enabled = db.engine.dialect.name == "postgresql"
        self.known = 0.0
        self._analyze(0)

    def refresh_if_stale(self, opened: int) -> None:
        """ANALYZE once this run's new cases outnumber the table's estimate."""
        if opened >= max(1000.0, 2 * self.known):
            self._analyze(opened)

    def _analyze(self, opened: int) -> None:
        if not self.enabled:
            return
        with self.db.engine.begin() as conn:
            conn.execute(sa.text(f"ANALYZE {self.TABLES}"))
            estimate = conn.execute(
                sa.text("SELECT reltuples FROM pg_class WHERE relname = 'escalations'")
            ).scalar_one()
        self.known = max(float(estimate), float(opened))


def _save(session: Session, run: SweepRun) -> None:
    session.merge(run)


def _accounts_to_check(session: Session, as_of: date, policy: EscalationPolicy) -> list[str]:
    """Accounts the rule may change today: a superset, narrowed in SQL, decided in Python.

    Either an unpaid bill not yet in a case may have reached its second
    billing date (the next bill fell due by then, or the bill is at least a
    short month overdue), or an open case has a newly overdue bill to take
    in. Most accounts in arrears are neither: their only unpaid bill is the
    current one. Checking only these kept a 1,000,000-account sweep from
    reading and locking every account that owes anything.
    """
    grace = timedelta(days=policy.grace_days)
    shortest_cycle = timedelta(days=28)  # the next bill is never due sooner than a month on
    bill, later, case, covered = (
        sa.orm.aliased(Bill), sa.orm.aliased(Bill), sa.orm.aliased(Escalation),
        sa.orm.aliased(EscalationBill),
    )  # fmt: skip
    in_a_case = (
        sa.select(1)
        .select_from(covered)
        .join(case, col(case.id) == col(covered.escalation_id))
        .where(col(covered.bill_no) == col(bill.bill_no), _dealt_with(case))
    )
    next_bill_due = sa.select(1).where(
        col(later.account_no) == col(bill.account_no),
        col(later.due_date) > col(bill.due_date),
        col(later.due_date) <= as_of - grace,
    )
    reaching = sa.select(col(bill.account_no)).where(
        col(bill.paid_at).is_(None),
        col(bill.due_date) < as_of,
        sa.or_(col(bill.due_date) <= as_of - grace - shortest_cycle, next_bill_due.exists()),
        ~in_a_case.exists(),
    )
    joining = (
        sa.select(col(case.account_no))
        .join(bill, col(bill.account_no) == col(case.account_no))
        .where(
            col(case.status) == CaseStatus.OPEN,
            col(bill.paid_at).is_(None),
            col(bill.due_date) < as_of,
            ~sa.select(1)
            .where(
                col(covered.escalation_id) == col(case.id),
                col(covered.bill_no) == col(bill.bill_no),
            )
            .exists(),
        )
    )
    union = sa.union(reaching, joining).subquery()
    return list(session.execute(sa.select(union.c[0]).order_by(union.c[0])).scalars())


def _dealt_with(case: Any) -> sa.ColumnElement[bool]:
    """Cases that account for their bills: open ones, and those ended otherwise than paid."""
    return sa.or_(
        col(case.status) == CaseStatus.OPEN,
        sa.and_(
            col(case.status) == CaseStatus.DONE,
            sa.or_(col(case.outcome).is_(None), col(case.outcome).not_in(PAID_OUTCOMES)),
        ),
    )


@dataclass
class _Facts:
    account: rule.Reachability
    area: str | None
    cycle_months: int | None
    bills: list[rule.LedgerBill] = field(default_factory=list)
    open_case: int | None = None
    case_bills: set[str] = field(default_factory=set)
    """The bills of the open case."""
    covered: set[str] = field(default_factory=set)
    """Bills of any open case or case ended otherwise than by payment."""
    reopenable: int | None = None
    """The latest case a payment closed while some of its bills stayed owed."""
    reopenable_bills: set[str] = field(default_factory=set)


def _sweep_chunk(
    session: Session,
    account_nos: Sequence[str],
    as_of: date,
    policy: EscalationPolicy,
    run: SweepRun,
    now: datetime,
) -> None:
    new_cases: list[dict[str, object]] = []
    owed_by_account: dict[str, list[str]] = {}
    joins: dict[int, list[str]] = {}
    reopens: dict[int, tuple[str, list[str]]] = {}
    chunk = _read_locked(session, account_nos)
    _leave_out_held(session, chunk, as_of)
    for account_no, f in chunk.items():
        due = rule.escalable(f.bills, as_of, policy, f.cycle_months)
        if not due:
            continue
        owed = [b.bill_no for b in rule.overdue(f.bills, as_of, policy)]
        if f.open_case is not None:
            if missing := [no for no in owed if no not in f.case_bills]:
                joins[f.open_case] = missing
            continue
        if all(b.bill_no in f.covered for b in due):
            continue  # a case already ended for these bills (refused, notice delivered)
        kind = rule.kind_for(f.account, policy)
        if f.reopenable is not None:
            missing = [no for no in owed if no not in f.reopenable_bills]
            reopens[f.reopenable] = (kind, missing)
            continue
        new_cases.append(
            {
                "account_no": account_no, "area": f.area, "kind": kind,
                "status": CaseStatus.OPEN, "assignee_id": None,
                "attempts": 0, "failed_calls": 0, "opened_on": as_of, "opened_at": now,
                "updated_at": now,
            }
        )  # fmt: skip
        owed_by_account[account_no] = owed
    bills: list[dict[str, object]] = []
    changes: list[dict[str, object]] = []
    # The run's counters once per chunk: each assignment to a SQLModel attribute is validated.
    opened = _insert_cases(session, new_cases)
    for case_id, account_no in opened:
        bills += [_bill(case_id, no, as_of) for no in owed_by_account[account_no]]
        changes.append(_change(case_id, "opened", f"as of {as_of}", now))
    run.opened += len(opened)
    for case_id, (kind, missing) in reopens.items():
        session.execute(
            sa.update(Escalation)
            .where(col(Escalation.id) == case_id)
            .values(
                status=CaseStatus.OPEN, outcome=None, closed_at=None, kind=kind,
                assignee_id=None, assigned_on=None, capacity_wait_since=None, failed_calls=0,
                follow_up_on=None, next_call_at=None, stage=None, stage_on=None,
                stage_deadline=None, stage_waiting=None, updated_at=now,
            )
        )  # fmt: skip
        bills += [_bill(case_id, no, as_of) for no in missing]
        changes.append(_change(case_id, "reopened", f"as of {as_of}: the rule holds again", now))
    run.reopened += len(reopens)
    for case_id, missing in joins.items():
        bills += [_bill(case_id, no, as_of) for no in missing]
        changes.append(_change(case_id, "bills joined", ", ".join(missing), now))
    run.joined += sum(len(missing) for missing in joins.values())
    bulk.insert_rows(session, _BILLS, bills)
    bulk.insert_rows(session, _CHANGES, changes)


def _leave_out_held(session: Session, facts: dict[str, _Facts], as_of: date) -> None:
    """A held account is paused: no case opens or reopens. A held bill is left out of the
    ledger the rule reads, so the account's other bills go on as ever."""
    if not holds.any_applying(session, as_of):
        return  # the usual day: three queries per chunk spared
    held = holds.holds_for(session, list(facts), as_of)
    for account_no in [no for no, hold in held.items() if hold.scope != "bill"]:
        del facts[account_no]
    if any(hold.scope == "bill" for hold in held.values()):
        unpaid = {b.bill_no for no in held if no in facts for b in facts[no].bills if not b.paid}
        kept_back = holds.bills_held(session, unpaid, as_of)
        for no in held:
            if no in facts:
                facts[no].bills = [b for b in facts[no].bills if b.bill_no not in kept_back]


_PROTECTED = (sa.func.json_array_length(col(Account.protections)) > 0).label("protected")
"""Whether the account has protections, as the sweep weighs them: decoding every
candidate's JSON list to ask was a tenth of a sweep's time."""


def _read_locked(session: Session, account_nos: Sequence[str]) -> dict[str, _Facts]:
    """The chunk's accounts, locked, with their bills and cases as committed now."""
    # Only the columns the rule reads: whole Account objects (JSON, timestamps)
    # were a third of a sweep's time. Core rows, not the ORM's: nothing here is an object.
    conn = session.connection()
    accounts = conn.execute(
        sa.select(
            col(Account.account_no), col(Account.phone), col(Account.invalid_phone),
            col(Account.vulnerable), col(Account.prefers_paper), _PROTECTED,
            col(Account.area), col(Account.billing_cycle_months),
        )
        .where(col(Account.account_no).in_(account_nos))
        .order_by(col(Account.account_no))
        .with_for_update()
    )  # fmt: skip
    # A number an agent found wrong is no phone to call: such an account gets a visit.
    facts = {
        account_no: _Facts(
            rule.Reachability(
                accounts_service.callable_phone(phone, invalid),
                vulnerable,
                paper,
                protected=protected,
                area=area,
            ),
            area,
            cycle,
        )
        for account_no, phone, invalid, vulnerable, paper, protected, area, cycle in accounts
    }
    bills = conn.execute(sa.select(*LEDGER_COLUMNS).where(col(Bill.account_no).in_(account_nos)))
    for account_no, bill_no, due, amount, paid_at, paid_amount, period, kind in bills:
        facts[account_no].bills.append(
            ledger_bill(bill_no, due, amount, paid_at, paid_amount, period, kind)
        )
    # Cases first, then their bills by case id: two index lookups. As one join
    # the planner chose a scan of every case's bills, growing with history. The
    # chunk's range of account numbers, not a list of them: against a list of a
    # thousand the planner chose a scan of every case, a sweep's cost growing with
    # the square of the cases it opens.
    cases = {
        case_id: (account_no, status, outcome)
        for case_id, account_no, status, outcome in conn.execute(
            sa.select(
                col(Escalation.id), col(Escalation.account_no), col(Escalation.status),
                col(Escalation.outcome),
            )
            .where(
                col(Escalation.account_no).between(min(account_nos), max(account_nos)),
                col(Escalation.status).in_([CaseStatus.OPEN, CaseStatus.DONE]),
            )
            .order_by(col(Escalation.id))
        )
        if account_no in facts
    }  # fmt: skip
    if not cases:
        return facts
    unpaid = {b.bill_no for f in facts.values() for b in f.bills if not b.paid}
    paid_closed: dict[int, set[str]] = {}
    for case_id, bill_no in conn.execute(
        sa.select(col(EscalationBill.escalation_id), col(EscalationBill.bill_no)).where(
            col(EscalationBill.escalation_id).in_(list(cases))
        )
    ):
        account_no, status, outcome = cases[case_id]
        f = facts[account_no]
        if status == CaseStatus.OPEN:
            f.open_case = case_id
            f.case_bills.add(bill_no)
        if status == CaseStatus.OPEN or outcome not in PAID_OUTCOMES:
            f.covered.add(bill_no)
        else:
            paid_closed.setdefault(case_id, set()).add(bill_no)
    for case_id in sorted(paid_closed):  # ascending: the latest wins
        if paid_closed[case_id] & unpaid:
            f = facts[cases[case_id][0]]
            f.reopenable, f.reopenable_bills = case_id, paid_closed[case_id]
    return facts


def _insert_cases(session: Session, rows: list[dict[str, object]]) -> list[tuple[int, str]]:
    """Insert open cases; one that another sweep opened meanwhile is skipped, not doubled."""
    if not rows:
        return []
    if bulk.is_postgresql(session):
        inserted = bulk.insert_rows(
            session, _CASES, rows, suffix=_OPEN_CONFLICT, returning=("id", "account_no")
        )
        return [(row[0], row[1]) for row in inserted]
    statement = (
        sqlite.insert(Escalation)
        .on_conflict_do_nothing(
            index_elements=["account_no"], index_where=sa.text("status = 'open'")
        )
        .returning(col(Escalation.id), col(Escalation.account_no))
    )
    return [(row[0], row[1]) for row in session.execute(statement, rows)]


_CASES: sa.Table = Escalation.__table__  # type: ignore[attr-defined]
_BILLS: sa.Table = EscalationBill.__table__  # type: ignore[attr-defined]
_CHANGES: sa.Table = EscalationChange.__table__  # type: ignore[attr-defined]
_OPEN_CONFLICT = "ON CONFLICT (account_no) WHERE status = 'open' DO NOTHING"
"""Another sweep opened the account's case meanwhile: the one open case stands."""


def _bill(case_id: int, bill_no: str, as_of: date) -> dict[str, object]:
    return {"escalation_id": case_id, "bill_no": bill_no, "added_on": as_of}


def _change(case_id: int, change: str, detail: str, at: datetime) -> dict[str, object]:
    return {
        "escalation_id": case_id, "change": change, "actor": SWEEP_ACTOR,
        "detail": detail, "at": at,
    }  # fmt: skip


_AS_PROTECTED = ("protected",)
"""What :func:`priority` weighs of protections: whether there are any."""


def _assign_waiting(session: Session, as_of: date, now: datetime) -> tuple[int, int]:
    """Give unassigned open cases to agents with room on ``as_of``; (assigned, left waiting).

    Cases go in :func:`~notifier.escalation.assignment.priority` order, so when
    capacity is short the protected visits and the largest debts longest owed
    are worked today and the rest wait for the next business day's sweep. A case
    every agent of its area was too full for is marked waiting for capacity.
    """
    waiting = session.connection().execute(
        sa.select(
            col(Escalation.id), col(Escalation.area), col(Escalation.kind),
            col(Escalation.capacity_wait_since), _PROTECTED, col(Account.spoken_language),
        )
        .join(Account, col(Account.account_no) == col(Escalation.account_no))
        .where(col(Escalation.status) == CaseStatus.OPEN, col(Escalation.assignee_id).is_(None))
        .with_for_update(of=Escalation)
    ).all()  # fmt: skip
    if not waiting:
        return 0, 0
    unassigned = (
        sa.select(col(Escalation.id))
        .where(col(Escalation.status) == CaseStatus.OPEN, col(Escalation.assignee_id).is_(None))
        .scalar_subquery()
    )
    owed = {
        case_id: (total, oldest)
        for case_id, total, oldest in session.execute(
            sa.select(
                col(EscalationBill.escalation_id),
                sa.func.sum(col(Bill.amount) - col(Bill.paid_amount)),
                sa.func.min(col(Bill.due_date)),
            )
            .join(Bill, col(Bill.bill_no) == col(EscalationBill.bill_no))
            .where(col(EscalationBill.escalation_id).in_(unassigned), col(Bill.paid_at).is_(None))
            .group_by(col(EscalationBill.escalation_id))
        )
    }

    def pressing(case: Any) -> tuple[int, int, int]:  # a row of `waiting`
        total, oldest = owed.get(case.id, (0, as_of))
        days = max(0, (as_of - oldest).days)
        return priority(
            kind=case.kind, protections=_AS_PROTECTED if case.protected else (),
            owed=int(total or 0),
            days_overdue=days, case_id=case.id,
        )  # fmt: skip

    assigner = Assigner(session, day=as_of)
    given: list[dict[str, object]] = []
    full: list[int] = []
    changes: list[dict[str, object]] = []
    for case in sorted(waiting, key=pressing):
        agent_id = assigner.pick(case.area, case.kind, language=case.spoken_language)
        if agent_id is not None:
            given.append({"id": case.id, "assignee_id": agent_id})
            changes.append(_change(case.id, "assigned", f"to agent {agent_id}", now))
        elif case.capacity_wait_since is None and assigner.full(case.area, case.kind):
            full.append(case.id)
            changes.append(
                _change(case.id, "waiting for capacity", f"every {AGENT_KIND[case.kind]} "
                        f"agent of {case.area} is full on {as_of}", now)
            )  # fmt: skip
    bulk.update_by_id(
        session, _CASES, given,
        values={"assigned_on": as_of, "capacity_wait_since": None, "updated_at": now},
    )  # fmt: skip
    bulk.update_by_id(
        session, _CASES, [{"id": case_id} for case_id in full],
        values={"capacity_wait_since": as_of, "updated_at": now},
    )  # fmt: skip
    bulk.insert_rows(session, _CHANGES, changes)
    return len(given), len(waiting) - len(given)
