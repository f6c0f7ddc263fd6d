"""Served or not: a notice counts as served only when its service is proven.

Proof is one of: a ``delivered`` receipt on one of the notice's deliveries; a
postcard of it written into a print batch (the batch's manifest lists it); a
field agent's ``notice_delivered`` on a visit case covering the notice's
bill. A ``sent`` email, an SMS or call whose receipt never came (``unknown``)
or a push the provider only accepted prove nothing. The earliest proof is the
one given.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, select

from notifier.deliveries.models import Delivery, DeliveryChange, DeliveryStatus, Notification
from notifier.escalation.models import Escalation, EscalationAttempt, EscalationBill

__all__ = ["POSTED_BY", "ServedProof", "served"]

POSTED_BY = "print"
"""The postcard provider whose ``sent`` means a card in a print batch and its manifest."""
NOTICE_DELIVERED = "notice_delivered"


@dataclass(frozen=True, slots=True)
class ServedProof:
    """How a notice was served: ``delivered`` (a receipt), ``posted`` (a print batch) or
    ``visit`` (a notice left by a field agent)."""

    how: str
    channel: str | None
    """The channel of the delivery that proves it; None for a visit."""
    at: datetime
    reference: str | None
    """The provider's message id, the print batch, or ``case <id>``."""


def served(session: Session, notification_id: int) -> ServedProof | None:
    """The earliest proof that notification ``notification_id`` was served, or None."""
    notification = session.get(Notification, notification_id)
    if notification is None:
        return None
    proofs: list[ServedProof] = []
    rows = session.exec(
        select(Delivery, DeliveryChange)
        .join(DeliveryChange, col(DeliveryChange.delivery_id) == col(Delivery.id))
        .where(
            Delivery.notification_id == notification_id,
            col(DeliveryChange.status).in_([DeliveryStatus.DELIVERED, DeliveryStatus.SENT]),
        )
    ).all()
    for delivery, change in rows:
        if change.status == DeliveryStatus.DELIVERED:
            how = "delivered"
        elif delivery.channel == "postcard" and delivery.provider == POSTED_BY:
            how = "posted"
        else:
            continue
        reference = change.detail.get("batch") if how == "posted" else None
        proofs.append(
            ServedProof(
                how=how,
                channel=delivery.channel,
                at=change.at,
                reference=str(reference or delivery.provider_id or "") or None,
            )
        )
    if notification.bill_no:
        visits = session.exec(
            select(EscalationAttempt)
            .join(
                EscalationBill,
                col(EscalationBill.escalation_id) == col(EscalationAttempt.escalation_id),
            )
            .join(Escalation, col(Escalation.id) == col(EscalationAttempt.escalation_id))
            .where(
                EscalationBill.bill_no == notification.bill_no,
                Escalation.account_no == notification.account_no,
                EscalationAttempt.outcome == NOTICE_DELIVERED,
            )
        ).all()
        proofs += [
            ServedProof(how="visit", channel=None, at=a.at, reference=f"case {a.escalation_id}")
            for a in visits
        ]
    return min(proofs, key=lambda proof: proof.at, default=None)
