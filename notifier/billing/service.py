"""The bill ledger built from ``bill.*`` events."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from sqlmodel import Session, col, select

from notifier.billing.models import Bill
from notifier.db import utcnow
from notifier.events.schema import BillIn

__all__ = ["is_paid", "record", "record_many", "settle", "unpaid_bills", "unpaid_bills_of"]


def record(
    session: Session, account_no: str, bill_in: BillIn, *, issued_at: datetime | None = None
) -> Bill:
    """Create the bill or update its terms; a ``bill.unpaid`` for a bill never issued creates it."""
    return record_many(session, [(account_no, bill_in, issued_at)])[bill_in.bill_no]


def record_many(
    session: Session, bills: Sequence[tuple[str, BillIn, datetime | None]]
) -> dict[str, Bill]:
    """:func:`record` for many bills, ``(account_no, bill, issued_at)``; by bill number.

    Existing bills are read under their row locks in bill-number order.
    """
    numbers = sorted({bill_in.bill_no for _, bill_in, _ in bills})
    if not numbers:
        return {}
    found = {
        bill.bill_no: bill
        for bill in session.exec(
            select(Bill)
            .where(col(Bill.bill_no).in_(numbers))
            .order_by(col(Bill.bill_no))
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    }
    for account_no, bill_in, issued_at in bills:
        bill = found.get(bill_in.bill_no)
        if bill is None:
            bill = found[bill_in.bill_no] = Bill(account_no=account_no, **bill_in.model_dump())
        else:
            bill.period, bill.amount, bill.due_date = (
                bill_in.period,
                bill_in.amount,
                bill_in.due_date,
            )
            bill.updated_at = utcnow()
        if issued_at is not None and bill.issued_at is None:
            bill.issued_at = issued_at
        session.add(bill)
    session.flush()
    return found


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


def unpaid_bills_of(session: Session, account_nos: Collection[str]) -> dict[str, list[Bill]]:
    """:func:`unpaid_bills` of many accounts in one query (accounts with none are absent)."""
    found: dict[str, list[Bill]] = {}
    if not account_nos:
        return found
    for bill in session.exec(
        select(Bill)
        .where(col(Bill.account_no).in_(list(account_nos)), col(Bill.paid_at).is_(None))
        .order_by(col(Bill.due_date), col(Bill.bill_no))
    ):
        found.setdefault(bill.account_no, []).append(bill)
    return found


def unpaid_bills(session: Session, account_no: str) -> list[Bill]:
    """The account's unpaid bills, oldest due date first."""
    return list(
        session.exec(
            select(Bill)
            .where(Bill.account_no == account_no, col(Bill.paid_at).is_(None))
            .order_by(col(Bill.due_date), col(Bill.bill_no))
        )
    )
