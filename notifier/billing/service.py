"""The bill ledger built from ``bill.*`` events."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, col, select

from notifier.billing.models import Bill
from notifier.db import utcnow
from notifier.events.schema import BillIn

__all__ = ["is_paid", "record", "settle", "unpaid_bills"]


def record(
    session: Session, account_no: str, bill_in: BillIn, *, issued_at: datetime | None = None
) -> Bill:
    """Create the bill or update its terms; a ``bill.unpaid`` for a bill never issued creates it."""
    bill = session.get(Bill, bill_in.bill_no, with_for_update=True)
    if bill is None:
        bill = Bill(account_no=account_no, **bill_in.model_dump())
    else:
        bill.period, bill.amount, bill.due_date = bill_in.period, bill_in.amount, bill_in.due_date
        bill.updated_at = utcnow()
    if issued_at is not None and bill.issued_at is None:
        bill.issued_at = issued_at
    session.add(bill)
    session.flush()
    return bill


def settle(session: Session, account_no: str, bill_in: BillIn, paid_at: datetime) -> Bill:
    """Mark the bill paid (creating it if this is the first we hear of it)."""
    bill = record(session, account_no, bill_in)
    if bill.paid_at is None:
        bill.paid_at = paid_at
        bill.updated_at = utcnow()
        session.add(bill)
    return bill


def is_paid(session: Session, bill_no: str) -> bool:
    """Whether the bill has been settled."""
    paid_at = session.exec(select(Bill.paid_at).where(Bill.bill_no == bill_no)).first()
    return paid_at is not None


def unpaid_bills(session: Session, account_no: str) -> list[Bill]:
    """The account's unpaid bills, oldest due date first."""
    return list(
        session.exec(
            select(Bill)
            .where(Bill.account_no == account_no, col(Bill.paid_at).is_(None))
            .order_by(col(Bill.due_date), col(Bill.bill_no))
        )
    )
