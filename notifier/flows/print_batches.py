"""The print batches as ops read them: each batch's size and when it went to print, and
its cards with what each is about.

A batch is the postcards ``flows.postcards`` marked ``sent`` through the ``print``
provider with the batch id as their provider id; nothing else records a batch,
so this reads the deliveries.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session, col, select

from notifier.deliveries.models import Delivery, DeliveryChange, Notification

__all__ = ["Batch", "Card", "batches", "cards"]

_PRINTED = (col(Delivery.channel) == "postcard", col(Delivery.provider) == "print")


@dataclass(frozen=True, slots=True)
class Batch:
    batch_id: str
    printed_at: datetime
    cards: int
    reprints: int
    """Cards of the batch that were queued again for a later batch."""


@dataclass(frozen=True, slots=True)
class Card:
    delivery: Delivery
    bill_no: str | None
    level: int
    reprinted_as: int | None


def batches(session: Session, *, offset: int, limit: int) -> tuple[int, list[Batch]]:
    """How many batches there are, and ``limit`` of them newest first from ``offset``."""
    batch = col(Delivery.provider_id)
    total = session.exec(
        select(sa.func.count(sa.distinct(batch))).where(*_PRINTED, batch.is_not(None))
    ).one()
    rows = session.exec(
        select(batch, sa.func.min(Delivery.updated_at), sa.func.count())
        .where(*_PRINTED, batch.is_not(None))
        .group_by(batch)
        .order_by(sa.func.min(Delivery.updated_at).desc(), batch.desc())
        .offset(offset)
        .limit(limit)
    ).all()
    found = []
    for batch_id, printed_at, n in rows:
        reprints = sum(card.reprinted_as is not None for card in cards(session, str(batch_id)))
        found.append(Batch(str(batch_id), printed_at, int(n), reprints))
    return int(total), found


def cards(session: Session, batch_id: str) -> list[Card]:
    """The cards of one batch, in delivery order; an empty list for no such batch."""
    rows = session.exec(
        select(Delivery, Notification)
        .join(Notification, col(Notification.id) == col(Delivery.notification_id))
        .where(*_PRINTED, col(Delivery.provider_id) == batch_id)
        .order_by(col(Delivery.id))
    ).all()

    ids = [d.id for d, _ in rows]
    again: dict[int, int] = {}
    for change in session.exec(
        select(DeliveryChange).where(col(DeliveryChange.delivery_id).in_(ids))
    ):
        if "retried_as" in change.detail:
            again[change.delivery_id] = int(change.detail["retried_as"])
    return [
        Card(delivery=d, bill_no=n.bill_no, level=n.level, reprinted_as=again.get(d.id or 0))
        for d, n in rows
    ]
