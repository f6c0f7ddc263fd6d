"""The collections ladder's stages: moving a case to one, and what a payment does to them.

Every stage change (:func:`enter`) is one :class:`CollectionStage` row (what the step
rested on: its proofs, its notice, the amount owed), a line of the case's history, an
audit entry (``collection.stage``) and a ``collection.stage_changed`` callback to the
producers of the account, in the caller's transaction.

A payment in full closes the case (``service.close_paid_cases``), which calls
:func:`after_payment`: a suspended account moves on to ``reconnection_due`` (the
customer gets a reconnection confirmation, the producer ``collection.reconnection_due``);
any other stage reached is recorded as ``stopped`` and cleared.

The ladder's notices (``collection.final_demand``, ``collection.reconnected``) are
written here as notifications only; ``notifier.flows.ladder`` renders their deliveries
(the renderer and the dispatcher are the runtime's), and the reconciler catches any it
has not rendered yet.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import date, datetime

import sqlalchemy as sa
from sqlmodel import Session, col, select

from notifier.audit import service as audit
from notifier.billing.models import Bill
from notifier.deliveries.models import Notification, NotificationStatus
from notifier.escalation import callbacks
from notifier.escalation.models import CollectionStage, Escalation, EscalationBill, EscalationChange
from notifier.escalation.proof import ServedProof
from notifier.events.models import Event

__all__ = [
    "FINAL_DEMAND",
    "FINAL_DEMAND_NOTICE",
    "LADDER_NOTICES",
    "RECONNECTED",
    "RECONNECTED_NOTICE",
    "RECONNECTION_DUE",
    "STAGES",
    "STOPPED",
    "SUPERVISOR",
    "SUSPENDED",
    "SUSPENSION_DUE",
    "WAITING_FOR_PROOF",
    "after_payment",
    "enter",
    "notice",
    "notice_of",
    "owed",
    "step_of_notice",
]

log = logging.getLogger(__name__)

FINAL_DEMAND = "final_demand"
SUSPENSION_DUE = "suspension_due"
SUSPENDED = "suspended"
RECONNECTION_DUE = "reconnection_due"
RECONNECTED = "reconnected"
SUPERVISOR = "supervisor"
"""A ``life_support`` account past its final demand: a supervisor's case, never suspended."""
STOPPED = "stopped"
"""History only: a payment in full stopped the ladder at the row's ``previous`` stage."""
STAGES = (FINAL_DEMAND, SUSPENSION_DUE, SUSPENDED, RECONNECTION_DUE, RECONNECTED, SUPERVISOR)
WAITING_FOR_PROOF = "proof of service"
FINAL_DEMAND_NOTICE = "collection.final_demand"
RECONNECTED_NOTICE = "collection.reconnected"
LADDER_NOTICES = frozenset({FINAL_DEMAND_NOTICE, RECONNECTED_NOTICE})


def owed(session: Session, case_id: int) -> int:
    """NT$ still owed on the case's bills (partial payments off)."""
    total = session.execute(
        sa.select(sa.func.coalesce(sa.func.sum(col(Bill.amount) - col(Bill.paid_amount)), 0))
        .join(EscalationBill, col(EscalationBill.bill_no) == col(Bill.bill_no))
        .where(col(EscalationBill.escalation_id) == case_id, col(Bill.paid_at).is_(None))
    ).scalar_one()
    return int(total)


def enter(
    session: Session,
    case: Escalation,
    stage: str,
    *,
    on: date,
    now: datetime,
    actor: str,
    deadline: date | None = None,
    notification_id: int | None = None,
    proofs: Sequence[ServedProof] = (),
    also: Sequence[str] = (),
) -> CollectionStage:
    """Move ``case`` to ``stage`` on business date ``on``; ``also`` names callbacks owed
    besides ``collection.stage_changed`` (``collection.suspension_due``, …)."""
    assert case.id is not None
    previous = case.stage if case.stage_on is not None else None
    case.stage, case.stage_on, case.stage_waiting, case.updated_at = stage, on, None, now
    if deadline is not None:
        case.stage_deadline = deadline
    session.add(case)
    amount = owed(session, case.id)
    step = CollectionStage(
        escalation_id=case.id,
        account_no=case.account_no,
        stage=stage,
        previous=previous,
        on=on,
        at=now,
        actor=actor,
        deadline=deadline,
        notification_id=notification_id,
        amount=amount,
        proofs=[proof.as_dict() for proof in proofs],
    )
    session.add(step)
    detail = f"{previous or 'case'} → {stage} on {on}" + (
        f", deadline {deadline}" if deadline else ""
    )
    session.add(
        EscalationChange(escalation_id=case.id, change="stage", actor=actor, detail=detail, at=now)
    )
    audit.record(
        session,
        actor=actor,
        action="collection.stage",
        target=f"case {case.id}",
        detail={
            "account": case.account_no, "stage": stage, "previous": previous,
            "on": on.isoformat(), "deadline": deadline.isoformat() if deadline else None,
            "notification": notification_id, "proofs": len(proofs), "amount": amount,
        },
    )  # fmt: skip
    callbacks.collection(
        session,
        case,
        ["collection.stage_changed", *also],
        now=now,
        previous=previous,
        on=on,
        amount=amount,
    )
    session.flush()
    log.info("case %s: %s → %s on %s", case.id, previous, stage, on)
    return step


def notice(session: Session, case: Escalation, kind: str, *, on: date) -> Notification:
    """A ladder notice of ``kind`` for the case's account, its deliveries still to render.

    A notification hangs on an event: a ladder notice on the account's latest bill event,
    the producer's word that its bills exist (its delivery callbacks go to that producer).
    A final demand is about the case's oldest bill (paid, its deliveries are cancelled).
    """
    assert case.id is not None and kind in LADDER_NOTICES
    event_pk = session.exec(
        select(Event.id)
        .where(Event.account_no == case.account_no, col(Event.type).startswith("bill."))
        .order_by(col(Event.id).desc())
    ).first()
    if event_pk is None:
        raise ValueError(f"account {case.account_no} has no bill event for a {kind} notice")
    oldest = session.exec(
        select(Bill.bill_no)
        .join(EscalationBill, col(EscalationBill.bill_no) == col(Bill.bill_no))
        .where(EscalationBill.escalation_id == case.id)
        .order_by(col(Bill.due_date), col(Bill.bill_no))
    ).first()
    notification = Notification(
        event_pk=event_pk,
        account_no=case.account_no,
        type=kind,
        # A notice about a bill is cancelled once the bill is paid; the reconnection
        # confirmation comes because it was, and is about the account.
        bill_no=oldest if kind == FINAL_DEMAND_NOTICE else None,
        level=2,
        dedup_key=f"{kind}:{case.account_no}:case {case.id}:{on.isoformat()}",
        status=NotificationStatus.ACTIVE,
    )
    session.add(notification)
    session.flush()
    return notification


def notice_of(session: Session, notification_id: int) -> Notification:
    """The ladder notice ``notification_id``."""
    found = session.get(Notification, notification_id)
    if found is None:
        raise LookupError(f"no notification {notification_id}")
    return found


def step_of_notice(session: Session, notification_id: int) -> CollectionStage | None:
    """The stage step that sent notification ``notification_id`` (its deadline, its date)."""
    return session.exec(
        select(CollectionStage).where(CollectionStage.notification_id == notification_id)
    ).first()


def after_payment(
    session: Session, case_ids: Sequence[int], *, now: datetime, today: date, actor: str
) -> list[int]:
    """What closing ``case_ids`` by payment does to their ladder; the notices it wrote."""
    if not case_ids:
        return []
    cases = session.exec(
        select(Escalation)
        .where(col(Escalation.id).in_(case_ids), col(Escalation.stage).is_not(None))
        .execution_options(populate_existing=True)
    ).all()
    written: list[int] = []
    for case in cases:
        assert case.id is not None
        if case.stage_on is None:  # waiting to reach it: nothing reached to record
            case.stage, case.stage_waiting = None, None
            session.add(case)
        elif case.stage == SUSPENDED:
            reconnected = notice(session, case, RECONNECTED_NOTICE, on=today)
            assert reconnected.id is not None
            written.append(reconnected.id)
            enter(
                session, case, RECONNECTION_DUE, on=today, now=now, actor=actor,
                notification_id=reconnected.id, also=["collection.reconnection_due"],
            )  # fmt: skip
        elif case.stage in (FINAL_DEMAND, SUSPENSION_DUE, SUPERVISOR):
            stopped_at = case.stage
            enter(session, case, STOPPED, on=today, now=now, actor=actor)
            case.stage, case.stage_on, case.stage_waiting = None, None, None
            session.add(case)
            log.info("case %s: paid at %s; the ladder stops", case.id, stopped_at)
    return written
