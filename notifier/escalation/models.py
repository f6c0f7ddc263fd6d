"""Cases handed to people: agents, escalations and their attempts."""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from notifier.db import UTCDateTime, utcnow

__all__ = ["Agent", "Escalation", "EscalationAttempt"]


class Agent(SQLModel, table=True):
    __tablename__ = "agents"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200)
    area: str = Field(index=True, max_length=64)
    kind: str = Field(max_length=16)
    """``caller`` or ``field``."""
    active: bool = True
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Escalation(SQLModel, table=True):
    __tablename__ = "escalations"
    __table_args__ = (
        # One open case per account, enforced by the database itself.
        sa.Index(
            "uq_escalations_open_account",
            "account_no",
            unique=True,
            sqlite_where=sa.text("status = 'open'"),
            postgresql_where=sa.text("status = 'open'"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    account_no: str = Field(foreign_key="accounts.account_no", index=True, max_length=11)
    kind: str = Field(max_length=16)
    """``call`` or ``visit``."""
    status: str = Field(default="open", max_length=16)
    assignee_id: int | None = Field(default=None, foreign_key="agents.id", index=True)
    bill_nos: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    attempts: int = 0
    outcome: str | None = Field(default=None, max_length=32)
    opened_on: date
    opened_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    closed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class EscalationAttempt(SQLModel, table=True):
    __tablename__ = "escalation_attempts"

    id: int | None = Field(default=None, primary_key=True)
    escalation_id: int = Field(foreign_key="escalations.id", index=True)
    agent_id: int | None = Field(default=None, foreign_key="agents.id")
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    outcome: str = Field(max_length=32)
    note: str | None = Field(default=None, max_length=2000)
    promise_date: date | None = None
