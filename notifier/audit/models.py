"""The audit trail's one table; rows are only ever inserted."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from notifier.db import UTCDateTime, utcnow

__all__ = ["AuditEntry"]


class AuditEntry(SQLModel, table=True):
    __tablename__ = "audit_log"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    actor: str = Field(max_length=200, index=True)
    """``user 3 (alice)``, ``key 5 (billing)``, ``cli`` or ``web`` (not signed in)."""
    action: str = Field(max_length=64, index=True)
    """``<domain>.<verb>``: ``user.sign_in``, ``delivery.retry``, …"""
    target: str | None = Field(default=None, max_length=200)
    """What was acted on: ``delivery 42``, ``user 3 (alice)``."""
    detail: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON)
