"""The collections ladder after the case (DESIGN.md): final demand, suspension hand-off.

A case whose visit or calls ended unpaid waits at ``final_demand`` (``service``
marks it: a refused visit, nobody home ``nobody_home_visits`` times, the calls used up
on an account with no address). A visit notice handed over (``notice_delivered``,
which closes the case) gives ``visit_notice_days`` business days (the closed case
waits at ``final_demand`` with that ``stage_deadline``); past them unpaid, the case
is opened again. The daily sweep then calls
:func:`advance`, which for each such case, unless a hold applies
(``holds.case_holds``: on the case's account, area or one of its unpaid bills):

1. a protected account (``Account.protections``) that has had no visit gets one
   first: the call case becomes a visit, and the ladder waits for its outcome;
2. the final demand (限期催繳) goes out only once a level-2 ``bill.unpaid`` notice of
   the case's bills or the case's visit notice is proven served
   (:mod:`notifier.escalation.proof`); until then the case waits, shown to supervisors
   as "waiting for proof of service". The demand is a ``collection.final_demand``
   notice on every channel (its postcard the printed copy), stating what the ledger
   says when it is sent and the deadline, ``final_demand_days`` business days on;
3. past the deadline unpaid, with the demand proven served, the account becomes
   ``suspension_due`` and the producers that own its bills get a signed
   ``collection.suspension_due``; a ``life_support`` account becomes a supervisor's
   case instead (stage ``supervisor``), and nobody is told to suspend it.

The producer confirms with ``account.suspended`` and ``account.reconnected``
(:func:`confirm`, checked beforehand by :func:`refusal`). A payment in full closes the
case at any stage (``notifier.escalation.stages.after_payment``). Every step is a
:func:`notifier.escalation.stages.enter`: a stage row, history, audit, callback.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime

from sqlmodel import Session, col, select

from notifier.accounts.models import Account
from notifier.escalation import holds, proof, rule, stages
from notifier.escalation import service as cases
from notifier.escalation.models import (
    CaseKind,
    CaseStatus,
    CollectionStage,
    Escalation,
    EscalationAttempt,
    EscalationBill,
    EscalationChange,
)
from notifier.events.schema import PROTECTIONS
from notifier.policy.rules import EscalationPolicy

__all__ = [
    "CONFIRMATIONS",
    "LIFE_SUPPORT",
    "LadderReport",
    "LadderRow",
    "advance",
    "confirm",
    "ladder_rows",
    "refusal",
]

log = logging.getLogger(__name__)
ACTOR = "ladder"
LIFE_SUPPORT = "life_support"
CONFIRMATIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "account.suspended": ((stages.SUSPENSION_DUE,), stages.SUSPENDED),
    "account.reconnected": ((stages.SUSPENDED, stages.RECONNECTION_DUE), stages.RECONNECTED),
}
"""A producer's confirmation: the stages it may come at, and the stage it moves to."""


@dataclass
class LadderReport:
    """What one :func:`advance` did, by stage: case ids."""

    reopened: list[int] = field(default_factory=list)
    visits: list[int] = field(default_factory=list)
    waiting: list[int] = field(default_factory=list)
    final_demand: list[int] = field(default_factory=list)
    suspension_due: list[int] = field(default_factory=list)
    supervisor: list[int] = field(default_factory=list)
    held: list[int] = field(default_factory=list)
    notices: list[int] = field(default_factory=list)
    """Notifications written, their deliveries to render (notifier.flows.ladder)."""


def advance(
    session: Session, policy: EscalationPolicy, as_of: date, *, now: datetime
) -> LadderReport:
    """Move every case the ladder may move on business date ``as_of`` (idempotent)."""
    report = LadderReport()
    waiting_case = (col(Escalation.stage) == stages.FINAL_DEMAND) & (
        (col(Escalation.status) == CaseStatus.OPEN)
        | (col(Escalation.stage_on).is_(None) & (col(Escalation.stage_deadline) < as_of))
    )
    accounts = sorted(set(session.exec(select(Escalation.account_no).where(waiting_case))))
    if not accounts:
        return report
    # Accounts first, in order, as bill.paid and the sweep's chunks take them: a payment
    # (account, then its cases) and the ladder (cases, then a notice's key on the account)
    # would otherwise wait for each other.
    session.exec(
        select(Account.account_no)
        .where(col(Account.account_no).in_(accounts))
        .order_by(col(Account.account_no))
        .with_for_update()
    ).all()
    _reopen_after_notice(session, policy, as_of, now, report)
    waiting = session.exec(
        select(Escalation)
        .where(
            Escalation.status == CaseStatus.OPEN,
            Escalation.stage == stages.FINAL_DEMAND,
        )
        .order_by(col(Escalation.id))
        .with_for_update()
    ).all()
    held = holds.case_holds(session, [case.id for case in waiting if case.id is not None], as_of)
    for case in waiting:
        assert case.id is not None
        if case.id in held:
            report.held.append(case.id)
        elif case.stage_on is None:
            _demand(session, policy, case, as_of, now, report)
        elif case.stage_deadline is not None and case.stage_deadline < as_of:
            _past_deadline(session, case, as_of, now, report)
    if any(vars(report).values()):
        log.info(
            "ladder as of %s: %d final demands, %d suspension due, %d to supervisors, "
            "%d waiting for proof, %d visits first, %d held",
            as_of, len(report.final_demand), len(report.suspension_due),
            len(report.supervisor), len(report.waiting), len(report.visits), len(report.held),
        )  # fmt: skip
    return report


def _reopen_after_notice(
    session: Session, policy: EscalationPolicy, as_of: date, now: datetime, report: LadderReport
) -> None:
    """Cases closed by a visit notice handed over, unpaid past the notice's days: reopened
    at ``final_demand`` (unless the account has another case open); paid meanwhile, they
    leave the ladder."""
    closed = session.exec(
        select(Escalation)
        .where(
            Escalation.status == CaseStatus.DONE,
            Escalation.stage == stages.FINAL_DEMAND,
            col(Escalation.stage_on).is_(None),
            col(Escalation.stage_deadline) < as_of,
        )
        .order_by(col(Escalation.id))
        .with_for_update()
    ).all()
    if not closed:
        return
    accounts = {case.account_no for case in closed}
    busy = set(
        session.exec(
            select(Escalation.account_no).where(
                Escalation.status == CaseStatus.OPEN, col(Escalation.account_no).in_(accounts)
            )
        )
    )
    ledgers = cases.ledger_of(session, accounts)
    held = holds.case_holds(session, [case.id for case in closed if case.id is not None], as_of)
    for case in closed:
        assert case.id is not None
        handed = case.stage_deadline
        cycle, bills, _ = ledgers[case.account_no]
        if not rule.escalable(bills, as_of, policy, cycle):
            case.stage, case.stage_deadline = None, None  # paid in the notice's days
            session.add(case)
            continue
        if case.account_no in busy or case.id in held:
            continue
        case.status, case.closed_at, case.updated_at = CaseStatus.OPEN, None, now
        case.stage_deadline, case.stage_waiting = None, None
        session.add(case)
        session.add(
            EscalationChange(
                escalation_id=case.id, change="reopened", actor=ACTOR, at=now,
                detail=f"the visit notice's {policy.visit_notice_days} business days passed "
                f"on {handed} unpaid: {stages.FINAL_DEMAND}",
            )
        )  # fmt: skip
        session.flush()  # one open case per account: the index sees it before the next
        busy.add(case.account_no)
        report.reopened.append(case.id)


def _protected(account: Account | None) -> list[str]:
    return [p for p in (account.protections if account else []) if p in PROTECTIONS]


def _demand(
    session: Session,
    policy: EscalationPolicy,
    case: Escalation,
    as_of: date,
    now: datetime,
    report: LadderReport,
) -> None:
    """Send the final demand if its ground is proven; else wait, visibly."""
    assert case.id is not None
    account = session.get(Account, case.account_no)
    visited = session.exec(
        select(EscalationAttempt.id).where(
            EscalationAttempt.escalation_id == case.id,
            EscalationAttempt.kind == CaseKind.VISIT,
        )
    ).first()
    if (protections := _protected(account)) and case.kind == CaseKind.CALL and not visited:
        case.stage, case.stage_waiting = None, None
        cases.become_visit(
            session, case, now, as_of, why=f"protected ({', '.join(protections)}): a visit before "
            "any final demand"
        )  # fmt: skip
        session.add(case)
        report.visits.append(case.id)
        return
    bill_nos = session.exec(
        select(EscalationBill.bill_no).where(EscalationBill.escalation_id == case.id)
    ).all()
    grounds = proof.dunning_served(session, case.account_no, bill_nos)
    if visit := proof.visit_served(session, case.id):
        grounds.append(visit)
    if not grounds:
        _wait_for_proof(session, case, now, "no level-2 or visit notice proven served yet")
        report.waiting.append(case.id)
        return
    demand = stages.notice(session, case, stages.FINAL_DEMAND_NOTICE, on=as_of)
    assert demand.id is not None
    deadline = policy.add_business_days(as_of, policy.final_demand_days)
    stages.enter(
        session, case, stages.FINAL_DEMAND, on=as_of, now=now, actor=ACTOR,
        deadline=deadline, notification_id=demand.id, proofs=grounds,
    )  # fmt: skip
    report.final_demand.append(case.id)
    report.notices.append(demand.id)


def _past_deadline(
    session: Session, case: Escalation, as_of: date, now: datetime, report: LadderReport
) -> None:
    """The final demand's deadline passed unpaid: hand over, or to a supervisor."""
    assert case.id is not None
    step = session.exec(
        select(CollectionStage)
        .where(
            CollectionStage.escalation_id == case.id,
            CollectionStage.stage == stages.FINAL_DEMAND,
            col(CollectionStage.notification_id).is_not(None),
        )
        .order_by(col(CollectionStage.id).desc())
    ).first()
    served = proof.proofs(session, step.notification_id) if step and step.notification_id else []
    if not served:
        _wait_for_proof(session, case, now, "the final demand is not proven served yet")
        report.waiting.append(case.id)
        return
    account = session.get(Account, case.account_no)
    if LIFE_SUPPORT in _protected(account):
        stages.enter(
            session, case, stages.SUPERVISOR, on=as_of, now=now, actor=ACTOR, proofs=served
        )
        report.supervisor.append(case.id)
        return
    stages.enter(
        session, case, stages.SUSPENSION_DUE, on=as_of, now=now, actor=ACTOR, proofs=served,
        also=["collection.suspension_due"],
    )  # fmt: skip
    report.suspension_due.append(case.id)


def _wait_for_proof(session: Session, case: Escalation, now: datetime, why: str) -> None:
    """Shown to supervisors as waiting for proof of service; the history says it once."""
    if case.stage_waiting == stages.WAITING_FOR_PROOF:
        return
    assert case.id is not None
    case.stage_waiting, case.updated_at = stages.WAITING_FOR_PROOF, now
    session.add(case)
    session.add(
        EscalationChange(
            escalation_id=case.id, change="waiting for proof of service", actor=ACTOR,
            detail=why, at=now,
        )
    )  # fmt: skip


def _confirmable(session: Session, event_type: str, account_no: str) -> Escalation | None:
    """The account's latest case at a stage ``event_type`` may confirm."""
    allowed, _ = CONFIRMATIONS[event_type]
    latest = session.exec(
        select(Escalation)
        .where(Escalation.account_no == account_no, col(Escalation.stage).is_not(None))
        .order_by(col(Escalation.id).desc())
    ).first()
    return latest if latest is not None and latest.stage in allowed else None


def refusal(session: Session, event_type: str, account_no: str) -> str | None:
    """Why the producer's ``event_type`` confirmation cannot be taken for the account now
    (the 422's message), or None."""
    if event_type not in CONFIRMATIONS:
        return None
    if _confirmable(session, event_type, account_no) is not None:
        return None
    allowed, _ = CONFIRMATIONS[event_type]
    return f"account {account_no} is not {' or '.join(allowed)}; {event_type} does not apply"


def confirm(
    session: Session, event_type: str, account_no: str, *, on: date, now: datetime, actor: str
) -> str:
    """Record the producer's ``account.suspended``/``account.reconnected``; what it did."""
    case = _confirmable(session, event_type, account_no)
    if case is None:
        return refusal(session, event_type, account_no) or "nothing to confirm"
    _, stage = CONFIRMATIONS[event_type]
    stages.enter(session, case, stage, on=on, now=now, actor=actor)
    return f"case {case.id}: {stage} on {on}"


@dataclass(frozen=True)
class LadderRow:
    """A case on the ladder, as supervisors see it."""

    case_id: int
    status: str
    account_no: str
    area: str | None
    stage: str
    reached_on: date | None
    """None while the case waits to reach ``stage``."""
    deadline: date | None
    waiting: str | None
    """``proof of service`` while the step's proof is missing."""
    owed: int
    protections: tuple[str, ...]
    notification_id: int | None
    """The notice the latest step sent (the final demand)."""
    proofs: tuple[dict[str, object], ...]
    """What the latest step rested on."""

    @property
    def state(self) -> str:
        """What supervisors read: the stage, or what it waits for."""
        if self.waiting:
            return f"waiting for {self.waiting}"
        return self.stage if self.reached_on else f"waiting for {self.stage}"


def ladder_rows(session: Session, *, stage: str | None = None) -> list[LadderRow]:
    """Cases on the ladder (open ones, and closed ones still to hand over: reconnection due),
    at ``stage`` if given, oldest first."""
    query = (
        select(Escalation, Account)
        .join(Account, col(Account.account_no) == col(Escalation.account_no))
        .where(
            col(Escalation.stage).is_not(None),
            (Escalation.status == CaseStatus.OPEN) | (Escalation.stage == stages.RECONNECTION_DUE),
        )
        .order_by(col(Escalation.id))
    )
    if stage is not None:
        query = query.where(Escalation.stage == stage)
    found = session.exec(query).all()
    latest: dict[int, CollectionStage] = {}
    if found:
        for step in session.exec(
            select(CollectionStage)
            .where(col(CollectionStage.escalation_id).in_([c.id for c, _ in found]))
            .order_by(col(CollectionStage.id))
        ):
            latest[step.escalation_id] = step
    rows = []
    for case, account in found:
        assert case.id is not None and case.stage is not None
        last = latest.get(case.id)
        rows.append(
            LadderRow(
                case_id=case.id, status=case.status, account_no=case.account_no,
                area=case.area, stage=case.stage, reached_on=case.stage_on,
                deadline=case.stage_deadline, waiting=case.stage_waiting,
                owed=stages.owed(session, case.id), protections=tuple(_protected(account)),
                notification_id=last.notification_id if last else None,
                proofs=tuple(last.proofs) if last else (),
            )
        )  # fmt: skip
    return rows
