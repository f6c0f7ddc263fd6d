"""API keys: only a hash is stored; the key itself is shown once."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from notifier.db import UTCDateTime, utcnow

__all__ = ["ApiKey"]


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_keys"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200)
    role: str = Field(max_length=16)
    prefix: str = Field(max_length=16)
    """The key's first characters, to tell keys apart in listings."""
    key_hash: str = Field(unique=True, max_length=128)
    agent_id: int | None = Field(default=None, foreign_key="agents.id")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
