"""Escalation cases (the sweep that opens them is its own issue)."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, col, select

from notifier.billing.models import Bill
from notifier.escalation.models import Escalation

__all__ = ["close_if_paid"]


def close_if_paid(session: Session, account_no: str, *, now: datetime) -> int:
    """Close the account's open cases whose bills are all paid, with outcome ``paid``."""
    closed = 0
    for case in session.exec(
        select(Escalation).where(Escalation.account_no == account_no, Escalation.status == "open")
    ):
        unpaid = session.exec(
            select(Bill.bill_no).where(
                col(Bill.bill_no).in_(case.bill_nos), col(Bill.paid_at).is_(None)
            )
        ).first()
        if unpaid is None:
            case.status, case.outcome, case.closed_at = "done", "paid", now
            session.add(case)
            closed += 1
    return closed
