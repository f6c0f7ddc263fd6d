"""Accepting events: stored once per producer and ``event_id``, in one transaction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from notifier.db import insert_many, utcnow
from notifier.events.models import NO_KEY, Event
from notifier.events.schema import EventIn

__all__ = ["accept", "get_by_event_id"]


def accept(
    session: Session,
    items: Sequence[tuple[EventIn, dict[str, Any]]],
    *,
    producer_key_id: int | None,
) -> dict[str, int | None]:
    """Insert the events not seen before; map each ``event_id`` to its new row id or None.

    ``INSERT … ON CONFLICT DO NOTHING`` makes the check and the insert one
    statement, so concurrent posts of one ``event_id`` create it once. An event id
    is the producer's own: another producer's event of the same id is another event
    (it can neither be dropped as a duplicate nor tell that the id exists).
    """
    if not items:
        return {}
    received_at = utcnow()
    rows = [
        {
            "event_id": event.event_id,
            "type": event.type,
            "occurred_at": event.occurred_at,
            "account_no": event.account.account_no,
            "payload": raw,
            "producer_key_id": NO_KEY if producer_key_id is None else producer_key_id,
            "received_at": received_at,
            "status": "received",
            "attempts": 0,
        }
        for event, raw in items
    ]
    table: sa.Table = Event.__table__  # type: ignore[attr-defined]
    # One statement of the same text for any batch (db.insert_many).
    created = {
        row.event_id: row.id
        for row in insert_many(
            session,
            table,
            rows,
            conflict=["producer_key_id", "event_id"],
            returning=["id", "event_id"],
        )
    }
    return {event.event_id: created.get(event.event_id) for event, _ in items}


def get_by_event_id(
    session: Session, event_id: str, *, producer_key_id: int | None = None
) -> Event | None:
    """The producer's event of that id; with no producer, the latest of any producer."""
    query = select(Event).where(Event.event_id == event_id)
    if producer_key_id is not None:
        query = query.where(Event.producer_key_id == producer_key_id)
    return session.exec(query.order_by(col(Event.id).desc())).first()
