"""An account's service record: every notice, how it went out, and whether it was served.

For a dispute, or before the collections ladder acts on a notice, the record
shows per notification its bills and amounts as each delivery stated them,
every channel tried with its timeline (sends with the SHA-256 of the exact
content handed to the channel and the template's identity and version,
provider ids, receipts with their times), whether it is served and how
(:mod:`notifier.escalation.proof`), and the account's cases with each
outcome an agent recorded (a visit's ``notice_delivered``, its time and agent).

It holds only what survives the personal-data purge (notifier.flows.retention):
numbers, hashes, dates, channels and statuses; never a name, a phone number,
an email, an address or a notice's text, nor an agent's note.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel
from sqlmodel import Session, col, select

from notifier.deliveries.models import Delivery, DeliveryChange, Notification
from notifier.escalation.models import Agent, Escalation, EscalationAttempt, EscalationBill
from notifier.escalation.proof import ServedProof, served

__all__ = [
    "CaseRecord",
    "ChannelRecord",
    "NoticeRecord",
    "OutcomeRecord",
    "ProofOut",
    "ServiceRecord",
    "StatedBill",
    "TimelineEntry",
    "service_record",
]

# Of a timeline entry's detail, what proves a step: ids, codes, hashes; never free text.
_PROOF_DETAIL = (
    "attempt", "provider_id", "code", "error_code", "provider_status", "twilio_status",
    "content_sha256", "template", "template_sha256", "batch", "pdf_sha256",
)  # fmt: skip


class StatedBill(BaseModel):
    """A bill as a notice stated it when it went out."""

    bill_no: str
    amount: int
    paid: int
    due_date: date
    overdue: bool


class TimelineEntry(BaseModel):
    at: datetime
    status: str
    attempt: int | None = None
    provider_id: str | None = None
    code: str | None = None
    content_sha256: str | None = None
    """SHA-256 of the content handed to the channel on this send (flows/deliver.py)."""
    template: str | None = None
    template_sha256: str | None = None
    batch: str | None = None
    """The print batch (postcards), whose manifest lists the card."""
    pdf_sha256: str | None = None


class ChannelRecord(BaseModel):
    """One channel tried for a notice: a delivery, its attempts and receipts."""

    delivery_id: int
    channel: str
    provider: str | None
    provider_id: str | None
    status: str
    attempts: int
    language: str
    fallback_of: int | None
    created_at: datetime
    content_sha256: str | None
    """The hash of the content of its last accepted send."""
    template: str | None
    template_sha256: str | None
    stated: list[StatedBill]
    timeline: list[TimelineEntry]


class ProofOut(BaseModel):
    how: str
    """``delivered`` (a receipt), ``posted`` (in a print batch), ``notice_delivered`` (a visit
    notice handed over; channel ``visit``)."""
    channel: str | None
    at: datetime
    reference: str | None

    @classmethod
    def of(cls, proof: ServedProof | None) -> ProofOut | None:
        if proof is None:
            return None
        return cls(how=proof.how, channel=proof.channel, at=proof.at, reference=proof.reference)


class NoticeRecord(BaseModel):
    notification_id: int
    type: str
    level: int
    status: str
    created_at: datetime
    bill_no: str | None
    usage_period: str | None
    served: ProofOut | None
    """The earliest proof of service; None while the notice is not proven served."""
    channels: list[ChannelRecord]


class OutcomeRecord(BaseModel):
    at: datetime
    kind: str
    outcome: str
    agent_id: int | None
    agent: str | None
    """The agent's name (a member of staff, not the customer)."""
    recorded_by: str
    """The key or user that recorded it (a supervisor may record for an agent)."""


class CaseRecord(BaseModel):
    case_id: int
    kind: str
    status: str
    opened_on: date
    closed_at: datetime | None
    bills: list[str]
    notice_served: ProofOut | None
    """The first ``notice_delivered`` a field agent recorded on the case."""
    outcomes: list[OutcomeRecord]


class ServiceRecord(BaseModel):
    account_no: str
    generated_at: datetime
    notices: list[NoticeRecord]
    cases: list[CaseRecord]


def service_record(session: Session, account_no: str, *, now: datetime) -> ServiceRecord:
    """The service record of ``account_no`` as of ``now`` (empty lists for no history)."""
    notifications = session.exec(
        select(Notification)
        .where(Notification.account_no == account_no)
        .order_by(col(Notification.id))
    ).all()
    cases = session.exec(
        select(Escalation).where(Escalation.account_no == account_no).order_by(col(Escalation.id))
    ).all()
    ids = [n.id for n in notifications if n.id is not None]
    deliveries = (
        session.exec(
            select(Delivery)
            .where(col(Delivery.notification_id).in_(ids))
            .order_by(col(Delivery.id))
        ).all()
        if ids
        else []
    )
    timelines = _timelines(session, [d.id for d in deliveries if d.id is not None])
    by_notification: dict[int, list[ChannelRecord]] = {}
    for delivery in deliveries:
        assert delivery.id is not None
        by_notification.setdefault(delivery.notification_id, []).append(
            _channel(delivery, timelines.get(delivery.id, []))
        )
    notices = [
        NoticeRecord(
            notification_id=n.id,
            type=n.type,
            level=n.level,
            status=n.status,
            created_at=n.created_at,
            bill_no=n.bill_no,
            usage_period=n.usage_period,
            served=ProofOut.of(served(session, n.id)),
            channels=by_notification.get(n.id, []),
        )
        for n in notifications
        if n.id is not None
    ]
    return ServiceRecord(
        account_no=account_no,
        generated_at=now,
        notices=notices,
        cases=_cases(session, cases),
    )


def _timelines(session: Session, delivery_ids: list[int]) -> dict[int, list[DeliveryChange]]:
    if not delivery_ids:
        return {}
    found: dict[int, list[DeliveryChange]] = {}
    for change in session.exec(
        select(DeliveryChange)
        .where(col(DeliveryChange.delivery_id).in_(delivery_ids))
        .order_by(col(DeliveryChange.at), col(DeliveryChange.id))
    ):
        found.setdefault(change.delivery_id, []).append(change)
    return found


def _entry(change: DeliveryChange) -> TimelineEntry:
    detail = change.detail or {}
    kept: dict[str, Any] = {
        key: detail[key] for key in _PROOF_DETAIL if detail.get(key) is not None
    }
    # Twilio's report carries its own status word and error code; one field each here.
    code = kept.pop("error_code", None)
    if code is not None:
        kept.setdefault("code", code)
    for key in ("provider_status", "twilio_status"):
        kept.pop(key, None)
    text = {key: str(value) for key, value in kept.items() if key != "attempt"}
    attempt = kept.get("attempt")
    return TimelineEntry(
        at=change.at,
        status=change.status,
        attempt=attempt if isinstance(attempt, int) else None,
        **text,
    )


def _stated(stated: dict[str, Any] | None) -> list[StatedBill]:
    """The bills a delivery's content named (``Delivery.stated``), the notice's own first."""
    if not stated:
        return []
    terms = [stated["bill"]] if stated.get("bill") else []
    terms += stated.get("bills") or []
    bills: dict[str, StatedBill] = {}
    for bill_no, amount, paid, due_date, overdue in terms:
        bills.setdefault(
            bill_no,
            StatedBill(
                bill_no=bill_no, amount=amount, paid=paid, due_date=due_date, overdue=overdue
            ),
        )
    return list(bills.values())


def _channel(delivery: Delivery, changes: list[DeliveryChange]) -> ChannelRecord:
    assert delivery.id is not None
    timeline = [_entry(change) for change in changes]
    sends = [entry for entry in timeline if entry.content_sha256]
    last = sends[-1] if sends else None
    return ChannelRecord(
        delivery_id=delivery.id,
        channel=delivery.channel,
        provider=delivery.provider,
        provider_id=delivery.provider_id,
        status=delivery.status,
        attempts=delivery.attempts,
        language=delivery.language,
        fallback_of=delivery.fallback_of,
        created_at=delivery.created_at,
        content_sha256=last.content_sha256 if last else None,
        template=last.template if last else None,
        template_sha256=last.template_sha256 if last else None,
        stated=_stated(delivery.stated),
        timeline=timeline,
    )


def _cases(session: Session, cases: list[Escalation] | Any) -> list[CaseRecord]:
    case_ids = [case.id for case in cases if case.id is not None]
    if not case_ids:
        return []
    bills: dict[int, list[str]] = {}
    for escalation_id, bill_no in session.exec(
        select(EscalationBill.escalation_id, EscalationBill.bill_no)
        .where(col(EscalationBill.escalation_id).in_(case_ids))
        .order_by(col(EscalationBill.bill_no))
    ):
        bills.setdefault(escalation_id, []).append(bill_no)
    attempts = session.exec(
        select(EscalationAttempt)
        .where(col(EscalationAttempt.escalation_id).in_(case_ids))
        .order_by(col(EscalationAttempt.at), col(EscalationAttempt.id))
    ).all()
    agent_ids = {a.agent_id for a in attempts if a.agent_id is not None}
    names = dict(
        session.exec(select(Agent.id, Agent.name).where(col(Agent.id).in_(agent_ids))).all()
        if agent_ids
        else []
    )
    outcomes: dict[int, list[OutcomeRecord]] = {}
    first_notice: dict[int, ServedProof] = {}
    for attempt in attempts:
        outcomes.setdefault(attempt.escalation_id, []).append(
            OutcomeRecord(
                at=attempt.at,
                kind=attempt.kind,
                outcome=attempt.outcome,
                agent_id=attempt.agent_id,
                agent=names.get(attempt.agent_id) if attempt.agent_id is not None else None,
                recorded_by=attempt.recorded_by,
            )
        )
        if attempt.outcome == "notice_delivered" and attempt.escalation_id not in first_notice:
            first_notice[attempt.escalation_id] = ServedProof(
                how="notice_delivered",
                channel="visit",
                at=attempt.at,
                reference=f"case {attempt.escalation_id}",
                escalation_id=attempt.escalation_id,
                agent_id=attempt.agent_id,
            )
    return [
        CaseRecord(
            case_id=case.id,
            kind=case.kind,
            status=case.status,
            opened_on=case.opened_on,
            closed_at=case.closed_at,
            bills=bills.get(case.id, []),
            notice_served=ProofOut.of(first_notice.get(case.id)),
            outcomes=outcomes.get(case.id, []),
        )
        for case in cases
        if case.id is not None
    ]
