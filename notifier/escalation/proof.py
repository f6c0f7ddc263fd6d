"""Proof of service: a notice counts as served only when something proves it reached the home.

What proves it, and nothing else (issue 18, DESIGN.md "The collections ladder"):

- a delivery of the notice with a ``delivered`` receipt (the provider's report, or the
  channel that knows at once): proven at the time the receipt was recorded. A call
  counts only when Twilio's answering machine detection reported a person
  (``answered_by: human`` in its report): a completed call may have reached a
  voicemail;
- a postcard of the notice posted in a print batch: its delivery is ``sent`` by the
  ``print`` provider with the batch id, which is written only once the batch's PDF and
  CSV manifest are (notifier.flows.postcards);
- for a visit, the agent's outcome ``notice_delivered`` on the case, at its time, by
  that agent.

``sent`` (an email handed to SMTP, a push to FCM), ``unknown`` (no receipt in time), a
call that reached voicemail (``sent`` with no ``delivered``), ``failed`` and the rest do
not count. Reads only: deliveries, their timelines, notifications, case attempts.

The service record (another part of issue 18) calls :func:`served` per notification;
the ladder calls :func:`dunning_served` and :func:`visit_served` before a final demand,
and :func:`served` on the final demand before a suspension.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from notifier.deliveries.models import Delivery, DeliveryChange, DeliveryStatus, Notification
from notifier.escalation.models import EscalationAttempt

__all__ = ["PRINT_PROVIDER", "ServedProof", "dunning_served", "proofs", "served", "visit_served"]

PRINT_PROVIDER = "print"
"""The provider of a postcard sent in a print batch (notifier.flows.postcards)."""


@dataclass(frozen=True, slots=True)
class ServedProof:
    """How one notice was proven served."""

    how: str
    """``delivered`` (a receipt), ``posted`` (a postcard in a print batch's manifest) or
    ``notice_delivered`` (a visit outcome)."""
    channel: str
    """The delivery's channel, or ``visit``."""
    at: datetime
    reference: str | None
    """The provider's message id, the print batch id, or who recorded the visit."""
    notification_id: int | None = None
    delivery_id: int | None = None
    escalation_id: int | None = None
    agent_id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, for a stage's record of what it rested on."""
        found = asdict(self)
        found["at"] = self.at.isoformat()
        return found


def proofs(session: Session, notification_id: int) -> list[ServedProof]:
    """Every proof that notification ``notification_id`` was served, earliest first."""
    rows = session.exec(
        select(Delivery).where(
            Delivery.notification_id == notification_id,
            col(Delivery.status).in_([DeliveryStatus.DELIVERED, DeliveryStatus.SENT]),
        )
    ).all()
    found: list[ServedProof] = []
    for delivery in rows:
        assert delivery.id is not None
        if delivery.status == DeliveryStatus.DELIVERED and (
            delivery.channel != "voice" or _answered_by_a_person(session, delivery.id)
        ):
            found.append(
                ServedProof(
                    how="delivered",
                    channel=delivery.channel,
                    at=_when(session, delivery.id, DeliveryStatus.DELIVERED) or delivery.updated_at,
                    reference=delivery.provider_id,
                    notification_id=notification_id,
                    delivery_id=delivery.id,
                )
            )
        elif delivery.channel == "postcard" and delivery.provider == PRINT_PROVIDER:
            found.append(
                ServedProof(
                    how="posted",
                    channel=delivery.channel,
                    at=_when(session, delivery.id, DeliveryStatus.SENT) or delivery.updated_at,
                    reference=delivery.provider_id,
                    notification_id=notification_id,
                    delivery_id=delivery.id,
                )
            )
    return sorted(found, key=lambda proof: (proof.at, proof.delivery_id or 0))


def served(session: Session, notification_id: int) -> ServedProof | None:
    """The first proof that notification ``notification_id`` was served; None if unproven."""
    found = proofs(session, notification_id)
    return found[0] if found else None


def dunning_served(
    session: Session, account_no: str, bill_nos: Collection[str], *, level: int = 2
) -> list[ServedProof]:
    """The first proof of each ``bill.unpaid`` notice at ``level`` or above about one of
    ``bill_nos`` of the account, earliest first."""
    if not bill_nos:
        return []
    notices = session.exec(
        select(Notification.id).where(
            Notification.account_no == account_no,
            Notification.type == "bill.unpaid",
            col(Notification.level) >= level,
            col(Notification.bill_no).in_(list(bill_nos)),
        )
    ).all()
    found = [proof for n in notices if n is not None and (proof := served(session, n))]
    return sorted(found, key=lambda proof: proof.at)


def visit_served(session: Session, escalation_id: int) -> ServedProof | None:
    """The visit notice of case ``escalation_id`` handed over (``notice_delivered``), if it was."""
    attempt = session.exec(
        select(EscalationAttempt)
        .where(
            EscalationAttempt.escalation_id == escalation_id,
            EscalationAttempt.outcome == "notice_delivered",
        )
        .order_by(col(EscalationAttempt.at))
    ).first()
    if attempt is None:
        return None
    return ServedProof(
        how="notice_delivered",
        channel="visit",
        at=attempt.at,
        reference=attempt.recorded_by,
        escalation_id=escalation_id,
        agent_id=attempt.agent_id,
    )


def _answered_by_a_person(session: Session, delivery_id: int) -> bool:
    """Whether a report of the call said a person answered (not a machine, not unknown)."""
    reports = session.exec(
        select(DeliveryChange.detail).where(DeliveryChange.delivery_id == delivery_id)
    ).all()
    return any(detail.get("answered_by") == "human" for detail in reports)


def _when(session: Session, delivery_id: int, status: str) -> datetime | None:
    """When the delivery's timeline first recorded ``status``."""
    at: datetime | None = session.execute(
        sa.select(sa.func.min(col(DeliveryChange.at))).where(
            col(DeliveryChange.delivery_id) == delivery_id, col(DeliveryChange.status) == status
        )
    ).scalar_one_or_none()
    return at
