"""The bill ledger: what each account was billed and whether it paid."""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from notifier.db import UTCDateTime, utcnow

__all__ = ["Bill"]


class Bill(SQLModel, table=True):
    __tablename__ = "bills"
    __table_args__ = (
        # The escalation sweep and every notice read an account's unpaid bills.
        sa.Index(
            "ix_bills_unpaid",
            "account_no",
            "due_date",
            sqlite_where=sa.text("paid_at IS NULL"),
            postgresql_where=sa.text("paid_at IS NULL"),
        ),
    )

    bill_no: str = Field(primary_key=True, max_length=64)
    account_no: str = Field(foreign_key="accounts.account_no", index=True, max_length=11)
    period: str = Field(max_length=16)
    amount: int
    due_date: date
    issued_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    paid_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
