"""The bill ledger built from ``bill.*`` events: terms, corrections, payments and reversals."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

from sqlmodel import Session, col, select

from notifier.billing.models import Bill, Payment
from notifier.db import insert_objects, utcnow
from notifier.events.schema import BillIn, PaymentIn

__all__ = [
    "Recorded",
    "Terms",
    "bills_by_no",
    "is_paid",
    "owners",
    "pay",
    "payment_of_event",
    "record",
    "record_many",
    "reverse",
    "unpaid_bills",
    "unpaid_bills_of",
]


@dataclass(frozen=True, slots=True)
class Terms:
    """What a bill asked for before a correction changed it."""

    amount: int
    due_date: date


@dataclass(slots=True)
class Recorded:
    """What :func:`record_many` left in the ledger."""

    bills: dict[str, Bill] = field(default_factory=dict)
    """By bill number."""
    corrected: dict[str, Terms] = field(default_factory=dict)
    """Bills whose amount or due date the events changed: their terms before."""


def record(
    session: Session, account_no: str, bill_in: BillIn, *, issued_at: datetime | None = None
) -> Bill:
    """Create the bill or update its terms; a ``bill.unpaid`` for a bill never issued creates it."""
    return record_many(session, [(account_no, bill_in, issued_at)]).bills[bill_in.bill_no]


def record_many(
    session: Session,
    bills: Sequence[tuple[str, BillIn, datetime | None]],
    *,
    terms: bool = True,
    producers: Mapping[str, int] | None = None,
) -> Recorded:
    """:func:`record` for many bills, ``(account_no, bill, issued_at)``.

    Existing bills are read under their row locks in bill-number order. With
    ``terms=False`` an existing bill keeps its terms: a payment's copy of the
    bill does not rewrite what was billed. ``producers`` (by bill number) is who
    posted: a new bill (or one older than the rule) becomes that producer's; the
    caller has refused another producer's bill already (:func:`owners`).
    """
    numbers = sorted({bill_in.bill_no for _, bill_in, _ in bills})
    recorded = Recorded()
    if not numbers:
        return recorded
    found = recorded.bills
    found.update(
        (bill.bill_no, bill)
        for bill in session.exec(
            select(Bill)
            .where(col(Bill.bill_no).in_(numbers))
            .order_by(col(Bill.bill_no))
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    )
    # A new bill goes in as its first mention says (one statement for all of them); any
    # later mention in the list applies below to the bill inserted, in order.
    first: dict[str, int] = {}
    for i, (_, bill_in, _) in enumerate(bills):
        if bill_in.bill_no not in found:
            first.setdefault(bill_in.bill_no, i)
    now = utcnow()
    found.update(
        (bill.bill_no, bill)
        for bill in insert_objects(
            session,
            Bill,
            [
                {
                    "account_no": account_no,
                    "producer_key_id": (producers or {}).get(bill_in.bill_no),
                    **bill_in.model_dump(),
                    "issued_at": issued_at,
                    "created_at": now,
                    "updated_at": now,
                }
                for account_no, bill_in, issued_at in (bills[i] for i in first.values())
            ],
        )
    )
    for i, (_, bill_in, issued_at) in enumerate(bills):
        if first.get(bill_in.bill_no) == i:
            continue  # inserted with what it says
        bill = found[bill_in.bill_no]
        changed = False
        producer = (producers or {}).get(bill_in.bill_no)
        if bill.producer_key_id is None and producer is not None:
            bill.producer_key_id = producer
            changed = True
        elif terms:
            before = Terms(bill.amount, bill.due_date)
            if (bill_in.amount, bill_in.due_date) != (before.amount, before.due_date):
                # A correction: the first terms of a batch are what notices may have stated.
                recorded.corrected.setdefault(bill.bill_no, before)
            new = (bill_in.period, bill_in.amount, bill_in.due_date, bill_in.kind)
            if new != (bill.period, bill.amount, bill.due_date, bill.kind):
                bill.period, bill.amount, bill.due_date, bill.kind = new
                changed = True
                if bill.paid_at is not None and bill.paid_amount < bill.amount:
                    bill.paid_at = None  # corrected upwards: the rest is owed again
                elif bill.paid_at is None and bill.amount and bill.paid_amount >= bill.amount:
                    bill.paid_at = utcnow()  # corrected down to what was already paid
        if issued_at is not None and bill.issued_at is None:
            bill.issued_at = issued_at
            changed = True
        if changed:
            # A stamp only when the ledger moved: claim-time checks compare what notices stated.
            bill.updated_at = utcnow()
            session.add(bill)
    session.flush()
    if recorded.corrected:
        recorded.corrected = {
            no: before
            for no, before in recorded.corrected.items()
            if (found[no].amount, found[no].due_date) != (before.amount, before.due_date)
        }
    return recorded


def pay(
    session: Session,
    account_no: str,
    bill_in: BillIn,
    payment_in: PaymentIn | None,
    *,
    event_pk: int,
    occurred_at: datetime,
    producer: int | None = None,
) -> tuple[Bill, Payment | None]:
    """Record a payment of the bill; none (``payment_in``) means the rest is paid in full.

    Several payments add up; one beyond what is owed is kept as a credit. The
    bill is settled (``paid_at``) once its payments reach its amount. Returns
    the payment recorded, or None when a "paid in full" found nothing owed.
    """
    producers = {bill_in.bill_no: producer} if producer is not None else None
    recorded = record_many(session, [(account_no, bill_in, None)], terms=False, producers=producers)
    bill = recorded.bills[bill_in.bill_no]
    if payment_in is None:
        amount, paid_at, method = bill.owed, occurred_at, None
    else:
        amount, paid_at, method = payment_in.amount, payment_in.paid_at, payment_in.method
    if amount <= 0:
        if bill.paid_at is None:  # a bill of NT$0, or one paid by credits only
            bill.paid_at, bill.updated_at = occurred_at, utcnow()
            session.add(bill)
        return bill, None
    payment = Payment(
        bill_no=bill.bill_no,
        account_no=bill.account_no,
        event_pk=event_pk,
        amount=amount,
        paid_at=paid_at,
        method=method,
    )
    bill.paid_amount += amount
    if bill.paid_at is None and bill.paid_amount >= bill.amount:
        bill.paid_at = paid_at
    bill.updated_at = utcnow()
    session.add_all([payment, bill])
    session.flush()
    return bill, payment


def reverse(
    session: Session,
    account_no: str,
    bill_in: BillIn,
    payment_in: PaymentIn,
    *,
    event_pk: int,
    now: datetime,
    producer: int | None = None,
) -> tuple[Bill, Payment | None]:
    """Undo the payment ``payment_in`` names (a bounced cheque, a failed auto-debit).

    The payment is the bill's unreversed one of that amount paid at that
    time, else the latest of that amount (a "paid in full" event recorded its
    own time). What it had settled is owed again. Returns None as the payment
    when the ledger holds no such payment: nothing is changed then.
    """
    producers = {bill_in.bill_no: producer} if producer is not None else None
    recorded = record_many(session, [(account_no, bill_in, None)], terms=False, producers=producers)
    bill = recorded.bills[bill_in.bill_no]
    candidates = session.exec(
        select(Payment)
        .where(
            Payment.bill_no == bill.bill_no,
            Payment.amount == payment_in.amount,
            col(Payment.reversed_at).is_(None),
        )
        .order_by(col(Payment.id).desc())
        .with_for_update()
    ).all()
    exact = [p for p in candidates if p.paid_at == payment_in.paid_at]
    if not (exact or candidates):
        return bill, None
    payment = (exact or list(candidates))[0]
    payment.reversed_at, payment.reversed_by = now, event_pk
    bill.paid_amount -= payment.amount
    if bill.paid_at is not None and bill.paid_amount < bill.amount:
        bill.paid_at = None
    bill.updated_at = utcnow()
    session.add_all([payment, bill])
    session.flush()
    return bill, payment


def payment_of_event(session: Session, event_pk: int) -> Payment | None:
    """The payment a ``bill.paid`` event recorded, if it recorded one."""
    return session.exec(select(Payment).where(Payment.event_pk == event_pk)).first()


def owners(session: Session, bill_nos: Collection[str]) -> dict[str, int | None]:
    """The producer each existing bill belongs to (None: older than the rule, anyone's)."""
    if not bill_nos:
        return {}
    rows = session.exec(
        select(Bill.bill_no, Bill.producer_key_id).where(col(Bill.bill_no).in_(sorted(bill_nos)))
    ).all()
    return dict(rows)


def is_paid(session: Session, bill_no: str) -> bool:
    """Whether the bill has been settled."""
    paid_at = session.exec(select(Bill.paid_at).where(Bill.bill_no == bill_no)).first()
    return paid_at is not None


def bills_by_no(session: Session, bill_nos: Collection[str]) -> dict[str, Bill]:
    """The bills of these numbers, in one query."""
    if not bill_nos:
        return {}
    return {
        bill.bill_no: bill
        for bill in session.exec(select(Bill).where(col(Bill.bill_no).in_(list(bill_nos))))
    }


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
