"""The print batches as ops read them: each batch's size and when it went to print, and
its cards with what each is about.

A batch is the postcards ``flows.postcards`` marked ``sent`` through the ``print``
provider with the batch id as their provider id; nothing else records a batch,
so this reads the deliveries.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

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
    shown = [str(batch_id) for batch_id, _, _ in rows]
    reprinted: dict[str, set[int]] = {}
    for batch_id, delivery_id, _ in _retried(session, batch.in_(shown)):
        reprinted.setdefault(str(batch_id), set()).add(delivery_id)
    return int(total), [
        Batch(str(batch_id), printed_at, int(n), len(reprinted.get(str(batch_id), ())))
        for batch_id, printed_at, n in rows
    ]


def _retried(session: Session, *where: Any) -> list[tuple[str, int, int]]:
    """(batch id, delivery id, the delivery it was retried as) of the printed cards matching
    ``where`` that were queued again, in timeline order: one query for a page of batches,
    however many cards they hold."""
    return [
        (str(batch_id), int(delivery_id), int(detail["retried_as"]))
        for batch_id, delivery_id, detail in session.exec(
            select(
                col(Delivery.provider_id),
                col(DeliveryChange.delivery_id),
                col(DeliveryChange.detail),
            )
            .join(DeliveryChange, col(DeliveryChange.delivery_id) == col(Delivery.id))
            .where(*_PRINTED, *where)
            .order_by(col(DeliveryChange.id))
        )
        if "retried_as" in detail
    ]


def cards(session: Session, batch_id: str) -> list[Card]:
    """The cards of one batch, in delivery order; an empty list for no such batch."""
    rows = session.exec(
        select(Delivery, Notification)
        .join(Notification, col(Notification.id) == col(Delivery.notification_id))
        .where(*_PRINTED, col(Delivery.provider_id) == batch_id)
        .order_by(col(Delivery.id))
    ).all()

    again = {
        delivery_id: retried_as
        for _, delivery_id, retried_as in _retried(session, col(Delivery.provider_id) == batch_id)
    }
    return [
        Card(delivery=d, bill_no=n.bill_no, level=n.level, reprinted_as=again.get(d.id or 0))
        for d, n in rows
    ]
