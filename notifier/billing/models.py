"""The bill ledger: what each account was billed and whether it paid."""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from notifier.db import UTCDateTime, utcnow

__all__ = ["Bill", "BillKind", "Payment"]


class BillKind:
    REGULAR = "regular"
    SUPPLEMENTARY = "supplementary"
    """追補: an extra bill for a period already billed; it is not "the next bill"."""
    FINAL = "final"
    """The last bill of a closed account."""


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
    producer_key_id: int | None = None
    """The producer whose event created the bill: only its events change or pay it, and its
    callbacks alone tell of the cases and the ladder over it. None: older than the rule."""
    period: str = Field(max_length=16)
    amount: int
    due_date: date
    kind: str = Field(default=BillKind.REGULAR, max_length=16)
    paid_amount: int = 0
    """What its payments add up to, reversals taken off; more than ``amount`` is a credit."""
    issued_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    paid_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    """When it was settled in full; cleared when a reversal reopens it."""
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)

    @property
    def owed(self) -> int:
        """What is still to pay on the bill (never below zero)."""
        return max(0, self.amount - self.paid_amount)

    @property
    def credit(self) -> int:
        """What was paid beyond the bill."""
        return max(0, self.paid_amount - self.amount)


class Payment(SQLModel, table=True):
    """One payment of a bill as a ``bill.paid`` event told it, and its reversal if any."""

    __tablename__ = "payments"

    id: int | None = Field(default=None, primary_key=True)
    bill_no: str = Field(foreign_key="bills.bill_no", index=True, max_length=64)
    account_no: str = Field(max_length=11)
    event_pk: int = Field(foreign_key="events.id", index=True)
    amount: int
    paid_at: datetime = Field(sa_type=UTCDateTime)
    method: str | None = Field(default=None, max_length=32)
    """None when the producer said only "paid in full"."""
    reversed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    reversed_by: int | None = Field(default=None, foreign_key="events.id")
    """The ``bill.payment_reversed`` event that undid it."""
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
