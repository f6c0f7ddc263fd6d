"""Escalation cases: outcomes agents record, reassignment, closing when the ledger says so.

Outcomes (DESIGN.md; docs/agents.md, "Escalation"):

- ``promised`` keeps the case open but off the lists until the day after the
  promised date, which may be at most ``max_promise_days`` business days ahead
  (``max_promise_days_supervisor`` for a supervisor).
- ``no_answer`` counts against the call once per ``call_retry_hours``: the
  ``max_call_attempts``-th counted one turns the case into a visit. Calls
  made sooner are recorded but not counted, so three in a minute are one try.
- ``wrong_number`` marks the phone invalid on the account (the producer is
  told: ``account.contact_invalid``) and turns the case into a visit at once.
- ``refused`` never ends a case: a call becomes a visit; a visit is marked
  for the next stage of the collections ladder (``final_demand``) and leaves
  the field agent's list. So is a visit ending ``nobody_home`` for the
  ``nobody_home_visits``-th time, and a call case whose calls are used up on an
  account with no address to visit (``notifier.escalation.ladder`` takes it on).
- ``paid`` on the customer's word is a claim: the case waits as
  ``payment_claimed`` for ``claimed_payment_days`` business days, then comes
  back to the list with a note if the ledger still shows the bills unpaid. Only
  the ledger (``bill.paid``) closes a case as paid.
- ``notice_delivered`` ends a visit; ``nobody_home`` keeps it on the list. The
  notice handed over gives ``visit_notice_days`` business days to pay (the case's
  ``stage_deadline``); past them unpaid, the ladder opens the case again.

A case follows the ledger (:func:`close_paid_cases`): once the rule no longer
holds for its account (the older bill paid, what is left not yet at its own
second billing date) it closes as ``paid``, or as ``paid_before_trigger`` when
the payment was made in the ``payment_grace_days`` before the trigger date
and only heard of after the case opened. The sweep reopens it when the rule
holds again.

The audit trail gets every reassignment (``case.reassigned``) and every
outcome a supervisor records on a case not assigned to them (``case.outcome``).
Producers with a callback URL hear of each outcome and of each case closing
(``notifier.escalation.callbacks``), in the same transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session, col, select

from notifier.accounts import service as accounts
from notifier.accounts.models import Account
from notifier.audit import service as audit
from notifier.billing.models import Bill
from notifier.escalation import callbacks, rule, stages
from notifier.escalation.assignment import Assigner
from notifier.escalation.models import (
    AGENT_KIND,
    Agent,
    CaseKind,
    CaseStatus,
    Escalation,
    EscalationAttempt,
    EscalationBill,
    EscalationChange,
)
from notifier.policy.rules import EscalationPolicy
from notifier.privacy.text import clean_note

__all__ = [
    "CLOSING_OUTCOMES",
    "NEXT_STAGE",
    "OUTCOMES",
    "PAYMENT_CLAIMED",
    "Actor",
    "CaseClosed",
    "CaseError",
    "CaseNotFound",
    "InvalidInput",
    "NotYourCase",
    "assign",
    "become_visit",
    "check_notice_day",
    "close_paid_cases",
    "get_case",
    "ledger_of",
    "record_outcome",
]

OUTCOMES: dict[str, tuple[str, ...]] = {
    CaseKind.CALL: ("promised", "refused", "no_answer", "wrong_number", "paid"),
    CaseKind.VISIT: ("promised", "refused", "notice_delivered", "nobody_home", "paid"),
}
CLOSING_OUTCOMES = frozenset({"notice_delivered"})
"""Outcomes an agent records that end a case; payment ends one only through the ledger."""
PAYMENT_CLAIMED = "payment_claimed"
"""A case's outcome while a payment the customer claims waits to show in the ledger."""
NEXT_STAGE = stages.FINAL_DEMAND
"""Where a visit or calls ending unpaid go: the collections ladder's next stage (DESIGN.md)."""
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Actor:
    """Who acts on a case: an agent may touch only their own; a supervisor any."""

    name: str
    agent_id: int | None = None
    supervisor: bool = False


class CaseError(Exception):
    """A request about a case that cannot be done as asked."""


class CaseNotFound(CaseError):
    def __init__(self, case_id: int) -> None:
        super().__init__(f"no escalation case {case_id}")


class NotYourCase(CaseError):
    def __init__(self, case_id: int) -> None:
        super().__init__(f"case {case_id} is not assigned to you")


class CaseClosed(CaseError):
    def __init__(self, case: Escalation) -> None:
        super().__init__(f"case {case.id} is {case.status} ({case.outcome}); it takes no outcomes")


class InvalidInput(CaseError):
    """Bad input about a case, naming the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def get_case(session: Session, case_id: int, actor: Actor, *, lock: bool = False) -> Escalation:
    """The case, if ``actor`` may see it."""
    query = select(Escalation).where(Escalation.id == case_id)
    case = session.exec(query.with_for_update() if lock else query).first()
    if case is None:
        raise CaseNotFound(case_id)
    if not actor.supervisor and (actor.agent_id is None or case.assignee_id != actor.agent_id):
        raise NotYourCase(case_id)
    return case


def record_outcome(
    session: Session,
    case_id: int,
    actor: Actor,
    *,
    outcome: str,
    today: date,
    policy: EscalationPolicy,
    now: datetime,
    note: str | None = None,
    promise_date: date | None = None,
    request_key: str | None = None,
) -> Escalation:
    """Record one call or visit and move the case on (see the module docstring).

    A ``request_key`` already recorded on this case is a repeat of that
    request: the case is returned as it is, and nothing is recorded twice.
    """
    case = get_case(session, case_id, actor, lock=True)
    if (
        request_key is not None
        and session.exec(
            select(EscalationAttempt.id).where(
                EscalationAttempt.escalation_id == case_id,
                EscalationAttempt.request_key == request_key,
            )
        ).first()
    ):
        return case
    if case.status != CaseStatus.OPEN:
        raise CaseClosed(case)
    allowed = OUTCOMES[case.kind]
    if outcome not in allowed:
        raise InvalidInput("outcome", f"a {case.kind} case takes one of {', '.join(allowed)}")
    _check_promise(promise_date, outcome=outcome, today=today, policy=policy, actor=actor)
    try:
        note = clean_note(note or "") or None  # shown on pages and the service record
    except ValueError as exc:
        raise InvalidInput("note", str(exc)) from None
    assert case.id is not None
    # A supervisor's outcome on a case not assigned to them (or to nobody) is audited.
    on_behalf = actor.supervisor and (actor.agent_id is None or case.assignee_id != actor.agent_id)
    assignee_before = case.assignee_id
    session.add(
        EscalationAttempt(
            escalation_id=case.id,
            kind=case.kind,
            agent_id=actor.agent_id,
            recorded_by=actor.name,
            at=now,
            outcome=outcome,
            note=note,
            promise_date=promise_date,
            request_key=request_key,
        )
    )
    case.attempts += 1
    case.outcome, case.updated_at = outcome, now
    case.follow_up_on = None
    if outcome == "promised":
        assert promise_date is not None
        case.follow_up_on = promise_date + timedelta(days=1)
    elif outcome == "paid":
        case.outcome = PAYMENT_CLAIMED
        case.follow_up_on = policy.add_business_days(today, policy.claimed_payment_days)
        _change(session, case, "payment claimed", actor.name, now,
                f"off the lists until {case.follow_up_on} for the ledger to show it")  # fmt: skip
    elif outcome in CLOSING_OUTCOMES:
        case.status, case.closed_at = CaseStatus.DONE, now
        # The notice handed over gives its days to pay; then the ladder looks again.
        case.stage, case.stage_on = NEXT_STAGE, None
        case.stage_deadline = policy.add_business_days(today, policy.visit_notice_days)
    elif outcome == "refused":
        if case.kind == CaseKind.CALL:
            become_visit(session, case, now, today, why="refused on the phone")
        else:
            _to_next_stage(session, case, actor.name, now, why="refused at the door")
    elif outcome == "nobody_home":
        visits = _count(session, case, "nobody_home")
        if visits >= policy.nobody_home_visits:
            _to_next_stage(session, case, actor.name, now, why=f"nobody home {visits} times")
    elif outcome == "wrong_number":
        case.failed_calls += 1
        if accounts.mark_phone_invalid(session, case.account_no, now=now):
            callbacks.contact_invalid(
                session,
                case.account_no,
                contact="phone",
                reason=outcome,
                now=now,
                escalation_id=case.id,
            )
        _calls_ended(session, case, actor.name, now, today, why="the phone number is wrong")
    elif outcome == "no_answer":
        if case.next_call_at is not None and now < case.next_call_at:
            _change(session, case, "call not counted", actor.name, now,
                    f"unanswered again before {case.next_call_at.isoformat()}")  # fmt: skip
        else:
            case.failed_calls += 1
            case.next_call_at = now + timedelta(hours=policy.call_retry_hours)
            if case.failed_calls >= policy.max_call_attempts:
                _calls_ended(
                    session,
                    case,
                    actor.name,
                    now,
                    today,
                    why=f"after {case.failed_calls} failed calls",
                )
    session.add(case)
    if on_behalf:
        audit.record(
            session,
            actor=actor.name,
            action="case.outcome",
            target=f"case {case.id}",
            detail={"outcome": outcome, "assignee": assignee_before},
        )
    callbacks.escalation_outcome(
        session,
        case,
        outcome=case.outcome or outcome,
        now=now,
        promise_date=promise_date,
        closed=case.status != CaseStatus.OPEN,
    )
    log.info(
        "case %s: %s recorded by %s; now %s %s",
        case.id,
        outcome,
        actor.name,
        case.status,
        case.kind,
    )
    return case


def _check_promise(
    promise_date: date | None,
    *,
    outcome: str,
    today: date,
    policy: EscalationPolicy,
    actor: Actor,
) -> None:
    if outcome == "promised" and promise_date is None:
        raise InvalidInput("promise_date", "a promise to pay needs the promised date")
    if promise_date is None:
        return
    if promise_date < today:
        raise InvalidInput("promise_date", f"{promise_date} is in the past (today is {today})")
    days = policy.max_promise_days_supervisor if actor.supervisor else policy.max_promise_days
    latest = policy.add_business_days(today, days)
    if promise_date > latest:
        who = "a supervisor" if actor.supervisor else "an agent"
        raise InvalidInput(
            "promise_date",
            f"{promise_date} is more than {days} business days ahead, as far as {who} may "
            f"accept (the latest is {latest})",
        )


def check_notice_day(day: date, *, today: date, policy: EscalationPolicy) -> date:
    """``day`` if a printed visit notice may be dated so: today to ``max_notice_days`` ahead."""
    latest = today + timedelta(days=policy.max_notice_days)
    if day < today:
        raise InvalidInput("day", f"{day} is in the past (today is {today})")
    if day > latest:
        raise InvalidInput(
            "day",
            f"{day} is more than {policy.max_notice_days} days ahead (the latest is {latest})",
        )
    return day


def _change(
    session: Session, case: Escalation, change: str, actor: str, now: datetime, detail: str
) -> None:
    assert case.id is not None
    session.add(
        EscalationChange(escalation_id=case.id, change=change, actor=actor, detail=detail, at=now)
    )


def _count(session: Session, case: Escalation, outcome: str) -> int:
    """Attempts of the case that ended ``outcome``, the one being recorded included."""
    session.flush()
    found = session.execute(
        sa.select(sa.func.count()).where(
            col(EscalationAttempt.escalation_id) == case.id,
            col(EscalationAttempt.outcome) == outcome,
        )
    ).scalar_one()
    return int(found)


def _to_next_stage(
    session: Session, case: Escalation, actor: str, now: datetime, *, why: str
) -> None:
    """Off the agents' lists, waiting for the ladder's final demand (the sweep sends it)."""
    case.stage, case.stage_on, case.stage_waiting = NEXT_STAGE, None, None
    _change(session, case, "marked for the next stage", actor, now, f"{why}: {NEXT_STAGE}")


def _calls_ended(
    session: Session, case: Escalation, actor: str, now: datetime, today: date, *, why: str
) -> None:
    """The calls gave nothing: a visit, or with no address to visit, the final demand."""
    account = session.get(Account, case.account_no)
    if account is not None and not account.address:
        _to_next_stage(session, case, actor, now, why=f"{why}; no address to visit")
    else:
        become_visit(session, case, now, today, why=why)


def become_visit(
    session: Session, case: Escalation, now: datetime, today: date, *, why: str
) -> None:
    """Turn an open call case into a visit, assigned to a field agent of its area if any
    (by spoken language and the day's capacity)."""
    case.kind = CaseKind.VISIT
    case.next_call_at = None
    assigner = Assigner(session, area=case.area, day=today)
    account = session.get(Account, case.account_no)
    language = account.spoken_language if account is not None else None
    case.assignee_id = assigner.pick(case.area, CaseKind.VISIT, language=language)
    case.assigned_on = today if case.assignee_id is not None else None
    if case.assignee_id is not None:
        case.capacity_wait_since = None
        detail = f"assigned to agent {case.assignee_id}"
    elif assigner.full(case.area, CaseKind.VISIT):
        case.capacity_wait_since = case.capacity_wait_since or today
        detail = "every field agent of the area is full today: waiting for capacity"
    else:
        detail = "no field agent"
    _change(session, case, "became a visit", "rule", now, f"{why}; {detail}")


def assign(
    session: Session,
    case_id: int,
    agent_id: int | None,
    actor: Actor,
    *,
    now: datetime,
    today: date | None = None,
) -> Escalation:
    """Give an open case to ``agent_id`` (an active agent of the case's kind), or to nobody.

    Only a supervisor may give a case to an agent of another area. A case given
    on business date ``today`` counts against the agent's capacity that day; a
    supervisor's choice is not refused for capacity (they decide who has room).
    """
    case = get_case(session, case_id, actor, lock=True)
    if case.status != CaseStatus.OPEN:
        raise CaseClosed(case)
    agent: Agent | None = None
    if agent_id is not None:
        agent = session.get(Agent, agent_id)
        if agent is None or not agent.active:
            raise InvalidInput("agent_id", f"no active agent {agent_id}")
        if agent.kind != AGENT_KIND[case.kind]:
            raise InvalidInput(
                "agent_id", f"agent {agent_id} is a {agent.kind}; a {case.kind} case needs a "
                f"{AGENT_KIND[case.kind]}"
            )  # fmt: skip
        if agent.area != case.area and not actor.supervisor:
            raise InvalidInput(
                "agent_id", f"agent {agent_id} works {agent.area}; only a supervisor gives a "
                f"case of {case.area} to another area"
            )  # fmt: skip
    assert case.id is not None
    before = case.assignee_id
    case.assignee_id, case.updated_at = agent_id, now
    case.assigned_on = today if agent_id is not None else None
    if agent_id is not None:
        case.capacity_wait_since = None
    across = agent is not None and agent.area != case.area
    session.add(case)
    session.add(
        EscalationChange(
            escalation_id=case.id,
            change="reassigned",
            actor=actor.name,
            detail=f"agent {before} → agent {agent_id}"
            + (f" (of {agent.area}, across areas)" if agent is not None and across else ""),
            at=now,
        )
    )
    audit.record(
        session,
        actor=actor.name,
        action="case.reassigned",
        target=f"case {case.id}",
        detail={"from": before, "to": agent_id, **({"across_areas": True} if across else {})},
    )
    return case


LEDGER_COLUMNS = (
    col(Bill.account_no), col(Bill.bill_no), col(Bill.due_date), col(Bill.amount),
    col(Bill.paid_at), col(Bill.paid_amount), col(Bill.period), col(Bill.kind),
)  # fmt: skip
"""A bill as the rule reads it, in :func:`ledger_bill`'s order after the account number."""


def ledger_bill(
    bill_no: str,
    due_date: date,
    amount: int,
    paid_at: datetime | None,
    paid_amount: int,
    period: str,
    kind: str,
) -> rule.LedgerBill:
    """What the rule weighs of a bill: what is left to pay (partial payments off), its kind."""
    return rule.LedgerBill(
        bill_no, due_date, max(0, amount - paid_amount), paid_at is not None, period, kind
    )


def ledger_of(
    session: Session, account_nos: Collection[str]
) -> dict[str, tuple[int | None, list[rule.LedgerBill], dict[str, datetime]]]:
    """Per account: its billing cycle, its bills as the rule reads them, when each paid one was."""
    found: dict[str, tuple[int | None, list[rule.LedgerBill], dict[str, datetime]]] = {
        account_no: (cycle, [], {})
        for account_no, cycle in session.execute(
            sa.select(col(Account.account_no), col(Account.billing_cycle_months)).where(
                col(Account.account_no).in_(list(account_nos))
            )
        )
    }
    for (
        account_no,
        bill_no,
        due_date,
        amount,
        paid_at,
        paid_amount,
        period,
        kind,
    ) in session.execute(
        sa.select(*LEDGER_COLUMNS).where(col(Bill.account_no).in_(list(account_nos)))
    ):
        _, bills, paid = found[account_no]
        bills.append(ledger_bill(bill_no, due_date, amount, paid_at, paid_amount, period, kind))
        if paid_at is not None:
            paid[bill_no] = paid_at
    return found


def close_paid_cases(
    session: Session,
    *,
    now: datetime,
    actor: str,
    policy: EscalationPolicy,
    today: date,
    account_no: str | None = None,
) -> list[int]:
    """Close the open cases the ledger no longer supports as of ``today``; their ids.

    A case stands while the rule holds for its account. Once a payment leaves
    too little for it (the older bill paid, the rest not yet at its own second
    billing date, or under the minimum), it closes as ``paid``, or as
    ``paid_before_trigger`` when its first bill was paid in the
    ``payment_grace_days`` before the date the rule fired for it.
    """
    # Only cases with a bill paid since can have lost their ground.
    paid_bill = (
        sa.select(1)
        .select_from(EscalationBill)
        .join(Bill, col(Bill.bill_no) == col(EscalationBill.bill_no))
        .where(
            col(EscalationBill.escalation_id) == col(Escalation.id),
            col(Bill.paid_at).is_not(None),
        )
    )
    query = (
        sa.select(col(Escalation.id), col(Escalation.account_no))
        .where(col(Escalation.status) == CaseStatus.OPEN, paid_bill.exists())
        .order_by(col(Escalation.account_no))
        .with_for_update()
    )
    if account_no is not None:
        query = query.where(col(Escalation.account_no) == account_no)
    candidates = [(case_id, account) for case_id, account in session.execute(query)]
    if not candidates:
        return []
    ledgers = ledger_of(session, {account for _, account in candidates})
    covered = _bills_of(session, [case_id for case_id, _ in candidates])
    closing: dict[int, tuple[str, str]] = {}
    for case_id, account in candidates:
        cycle, bills, paid_at = ledgers[account]
        if rule.escalable(bills, today, policy, cycle):
            continue
        outcome = _how_paid(bills, covered.get(case_id, []), paid_at, cycle, policy)
        left = [b.bill_no for b in bills if not b.paid]
        detail = outcome + (
            f"; still owed, not yet due to a person: {', '.join(left)}" if left else ""
        )
        closing[case_id] = (outcome, detail)
    if not closing:
        return []
    for outcome in {outcome for outcome, _ in closing.values()}:
        session.execute(
            sa.update(Escalation)
            .where(col(Escalation.id).in_([i for i, (o, _) in closing.items() if o == outcome]))
            .values(
                status=CaseStatus.DONE, outcome=outcome, closed_at=now, updated_at=now,
                follow_up_on=None, next_call_at=None,
            )
        )  # fmt: skip
    session.execute(
        sa.insert(EscalationChange),
        [
            {"escalation_id": i, "change": "closed", "actor": actor, "detail": detail, "at": now}
            for i, (_, detail) in closing.items()
        ],
    )
    ids = sorted(closing)
    callbacks.escalations_closed(session, ids, now=now)
    stages.after_payment(session, ids, now=now, today=today, actor=actor)
    return ids


def _bills_of(session: Session, case_ids: Sequence[int]) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {}
    for case_id, bill_no in session.execute(
        sa.select(col(EscalationBill.escalation_id), col(EscalationBill.bill_no)).where(
            col(EscalationBill.escalation_id).in_(list(case_ids))
        )
    ):
        found.setdefault(case_id, []).append(bill_no)
    return found


def _how_paid(
    bills: Sequence[rule.LedgerBill],
    case_bills: Collection[str],
    paid_at: dict[str, datetime],
    cycle: int | None,
    policy: EscalationPolicy,
) -> str:
    """``paid_before_trigger`` if the case's first bill was paid just before the rule fired."""
    own = sorted(
        (b for b in bills if b.bill_no in case_bills), key=lambda b: (b.due_date, b.bill_no)
    )
    if not own or own[0].bill_no not in paid_at:
        return "paid"
    first = own[0]
    trigger = rule.second_billing_date(
        bills, first, cycle or policy.default_cycle_months, policy
    ) + timedelta(days=policy.grace_days)
    paid_on = policy.business_date(paid_at[first.bill_no])
    window_opens = trigger - timedelta(days=policy.payment_grace_days)
    return "paid_before_trigger" if window_opens <= paid_on < trigger else "paid"
