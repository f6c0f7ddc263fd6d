"""The customer's account: who they are and how they can be reached."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from notifier.db import UTCDateTime, utcnow

__all__ = ["Account"]


class Account(SQLModel, table=True):
    __tablename__ = "accounts"

    account_no: str = Field(primary_key=True, max_length=11)
    name: str | None = Field(default=None, max_length=200)
    language: str = Field(default="zh-TW", max_length=16)
    phone: str | None = Field(default=None, max_length=20)
    """E.164."""
    invalid_phone: str | None = Field(default=None, max_length=20)
    """The number an agent found wrong; while ``phone`` is still it, nobody calls it.
    Kept as the number, not a flag, so a new number from the producer is good again."""
    phone_invalid_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    email: str | None = Field(default=None, max_length=320)
    push_tokens: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    address: str | None = Field(default=None, max_length=500)
    area: str | None = Field(default=None, max_length=64, index=True)
    vulnerable: bool = False
    prefers_paper: bool = False
    prefers_voice: bool = False
    opt_outs: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    protections: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    """Any of ``life_support``, ``low_income``, ``disabled``, ``elderly``: a protected account
    gets a visit before a final demand; a ``life_support`` one never reaches suspension."""
    billing_cycle_months: int | None = None
    """Months between bills; None: the policy's default (escalation.default_cycle_months)."""
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
