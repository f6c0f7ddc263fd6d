"""Events as producers posted them; each row is also its own outbox entry."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from notifier.db import UTCDateTime, utcnow

__all__ = ["NO_KEY", "Event", "EventStatus"]

NO_KEY = 0
"""The producer of events that came with no API key (key ids start at 1)."""


class EventStatus:
    RECEIVED = "received"
    """Committed, not yet processed: the relay owes it a ``process_events`` task."""
    PROCESSED = "processed"
    FAILED = "failed"


class Event(SQLModel, table=True):
    __tablename__ = "events"
    __table_args__ = (
        # An event id is the producer's own: another producer's same id is another event.
        sa.UniqueConstraint("producer_key_id", "event_id", name="uq_events_producer_event"),
        sa.Index("ix_events_status_received_at", "status", "received_at"),
        # Retention reads the events not purged yet, oldest first; a purged row leaves the index.
        sa.Index(
            "ix_events_unpurged",
            "received_at",
            "id",
            sqlite_where=sa.text("purged_at IS NULL"),
            postgresql_where=sa.text("purged_at IS NULL"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(index=True, max_length=128)
    type: str = Field(max_length=32)
    occurred_at: datetime = Field(sa_type=UTCDateTime)
    account_no: str = Field(index=True, max_length=11)
    payload: dict[str, Any] = Field(sa_type=sa.JSON)
    producer_key_id: int = NO_KEY
    """The API key that posted it; :data:`NO_KEY` for events from the bus or a file with no
    key configured (``NOTIFIER_INGEST__PRODUCER_KEY_ID``), one producer of their own."""
    received_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    dispatched_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    status: str = Field(default=EventStatus.RECEIVED, max_length=16)
    attempts: int = 0
    processed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    outcome: str | None = Field(default=None, max_length=500)
    purged_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    """When retention removed the account's personal fields from ``payload``."""
