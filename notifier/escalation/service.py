"""Escalation cases: outcomes agents record, reassignment, closing on payment.

Outcomes (DESIGN.md): ``paid``, ``refused`` and ``notice_delivered`` end the
case. ``promised`` keeps it open but off the lists until the day after the
promised date. ``no_answer`` and ``wrong_number`` count against the call; the
``max_call_attempts``-th turns the case into a visit, assigned like a new one.
``nobody_home`` keeps a visit on the list.

The audit trail gets every reassignment (``case.reassigned``) and every
outcome a supervisor records on a case not assigned to them (``case.outcome``).
Producers with a callback URL hear of each outcome and of each case closing
(``notifier.escalation.callbacks``), in the same transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session, col, select

from notifier.audit import service as audit
from notifier.billing.models import Bill
from notifier.escalation import callbacks
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

__all__ = [
    "CLOSING_OUTCOMES",
    "OUTCOMES",
    "Actor",
    "CaseClosed",
    "CaseError",
    "CaseNotFound",
    "InvalidInput",
    "NotYourCase",
    "assign",
    "close_paid_cases",
    "get_case",
    "record_outcome",
]

OUTCOMES: dict[str, tuple[str, ...]] = {
    CaseKind.CALL: ("promised", "refused", "no_answer", "wrong_number", "paid"),
    CaseKind.VISIT: ("promised", "refused", "notice_delivered", "nobody_home", "paid"),
}
CLOSING_OUTCOMES = frozenset({"paid", "refused", "notice_delivered"})
_FAILED_CALL = frozenset({"no_answer", "wrong_number"})
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
    if outcome == "promised" and promise_date is None:
        raise InvalidInput("promise_date", "a promise to pay needs the promised date")
    if promise_date is not None and promise_date < today:
        raise InvalidInput("promise_date", f"{promise_date} is in the past (today is {today})")
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
    if outcome in CLOSING_OUTCOMES:
        case.status, case.closed_at = CaseStatus.DONE, now
    elif outcome in _FAILED_CALL:
        case.failed_calls += 1
        if case.failed_calls >= policy.max_call_attempts:
            _become_visit(session, case, now)
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
        outcome=outcome,
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


def _become_visit(session: Session, case: Escalation, now: datetime) -> None:
    assert case.id is not None
    case.kind = CaseKind.VISIT
    case.assignee_id = Assigner(session, area=case.area).pick(case.area, CaseKind.VISIT)
    detail = f"after {case.failed_calls} failed calls; " + (
        f"assigned to agent {case.assignee_id}" if case.assignee_id else "no field agent"
    )
    session.add(
        EscalationChange(
            escalation_id=case.id, change="became a visit", actor="rule", detail=detail, at=now
        )
    )


def assign(
    session: Session, case_id: int, agent_id: int | None, actor: Actor, *, now: datetime
) -> Escalation:
    """Give an open case to ``agent_id`` (an active agent of the case's kind), or to nobody."""
    case = get_case(session, case_id, actor, lock=True)
    if case.status != CaseStatus.OPEN:
        raise CaseClosed(case)
    if agent_id is not None:
        agent = session.get(Agent, agent_id)
        if agent is None or not agent.active:
            raise InvalidInput("agent_id", f"no active agent {agent_id}")
        if agent.kind != AGENT_KIND[case.kind]:
            raise InvalidInput(
                "agent_id", f"agent {agent_id} is a {agent.kind}; a {case.kind} case needs a "
                f"{AGENT_KIND[case.kind]}"
            )  # fmt: skip
    assert case.id is not None
    before = case.assignee_id
    case.assignee_id, case.updated_at = agent_id, now
    session.add(case)
    session.add(
        EscalationChange(
            escalation_id=case.id,
            change="reassigned",
            actor=actor.name,
            detail=f"agent {before} → agent {agent_id}",
            at=now,
        )
    )
    audit.record(
        session,
        actor=actor.name,
        action="case.reassigned",
        target=f"case {case.id}",
        detail={"from": before, "to": agent_id},
    )
    return case


def close_paid_cases(
    session: Session, *, now: datetime, actor: str, account_no: str | None = None
) -> list[int]:
    """Close, as ``paid``, open cases none of whose bills is still unpaid; their ids."""
    unpaid = (
        select(EscalationBill.bill_no)
        .join(Bill, col(Bill.bill_no) == col(EscalationBill.bill_no))
        .where(col(EscalationBill.escalation_id) == col(Escalation.id), col(Bill.paid_at).is_(None))
    )
    closing = (
        sa.update(Escalation)
        .where(col(Escalation.status) == CaseStatus.OPEN, ~unpaid.exists())
        .values(status=CaseStatus.DONE, outcome="paid", closed_at=now, updated_at=now)
        .returning(col(Escalation.id))
    )
    if account_no is not None:
        closing = closing.where(col(Escalation.account_no) == account_no)
    ids = list(session.execute(closing).scalars())
    if not ids:
        return []
    session.execute(
        sa.insert(EscalationChange),
        [
            {"escalation_id": i, "change": "closed", "actor": actor, "detail": "paid", "at": now}
            for i in ids
        ],
    )
    callbacks.escalations_closed(session, ids, now=now)
    return ids
