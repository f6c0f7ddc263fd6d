"""A producer's registered callback URL, and the outbox of callbacks owed to it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from notifier.db import UTCDateTime, utcnow

__all__ = ["CallbackStatus", "ProducerCallback", "ProducerEndpoint"]


class CallbackStatus:
    PENDING = "pending"
    """Owed: due at ``next_at`` (the first POST, a retry, or a POST in flight until then)."""
    SENT = "sent"
    """The producer answered 2xx."""
    FAILED = "failed"
    """A 4xx (but 408 and 429), or every attempt used up; never sent again."""


class ProducerEndpoint(SQLModel, table=True):
    """Where one producer key's callbacks go, and the secret they are signed with."""

    __tablename__ = "producer_endpoints"

    key_id: int = Field(foreign_key="api_keys.id", primary_key=True)
    url: str = Field(max_length=2000)
    secret: str = Field(max_length=100)
    """Shown once when made; kept to sign with (an HMAC needs the secret itself)."""
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class ProducerCallback(SQLModel, table=True):
    """One callback owed to a producer, written with the change it reports (an outbox row)."""

    __tablename__ = "producer_callbacks"
    __table_args__ = (
        # The reconciler: pending rows whose next_at has long passed.
        sa.Index("ix_producer_callbacks_status_next_at", "status", "next_at"),
        # A producer's own list, newest first.
        sa.Index("ix_producer_callbacks_key_id_id", "key_id", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    key_id: int = Field(foreign_key="api_keys.id")
    type: str = Field(max_length=32)
    """``delivery.delivered`` … ``escalation.closed`` (docs/callbacks.md)."""
    body: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    """What is POSTed, but ``id`` (added when sent): ids, codes and statuses only."""
    status: str = Field(default=CallbackStatus.PENDING, max_length=16)
    attempts: int = 0
    next_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_status_code: int | None = None
    last_error: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
