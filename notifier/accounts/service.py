"""Accounts: upsert what producers know, read what channels need."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

import phonenumbers
import sqlalchemy as sa
from sqlmodel import Session, col, select

from notifier.accounts.models import Account
from notifier.audit import service as audit
from notifier.db import insert_many, utcnow
from notifier.events.schema import PROTECTIONS, AccountIn
from notifier.privacy import lookup, phones

__all__ = [
    "add_protections",
    "by_contact",
    "callable_phone",
    "get",
    "is_mobile",
    "kept_by_another",
    "mail_to",
    "mark_email_invalid",
    "mark_phone_invalid",
    "mark_sms_unable",
    "owners",
    "phone_marked_invalid",
    "texts_to",
    "upsert_locked",
    "upsert_many_locked",
]


# A plain INSERT does not run the models' default factories: the lists go in as values.
_EMPTY_LISTS: dict[str, list[str]] = {
    "push_tokens": [], "opt_outs": [], "protections": [], "protections_added": []
}  # fmt: skip


def upsert_locked(
    session: Session, account_in: AccountIn, *, lookup_key: bytes, producer: int | None = None
) -> Account:
    """Create or update the account and hold its row lock until commit.

    The lock serialises everything done for one account (dedup, escalation),
    so two workers cannot both decide to send the same notice.
    """
    producers = {account_in.account_no: producer} if producer is not None else None
    return upsert_many_locked(session, [account_in], producers=producers, lookup_key=lookup_key)[
        account_in.account_no
    ]


def upsert_many_locked(
    session: Session,
    accounts_in: Sequence[AccountIn],
    *,
    producers: Mapping[str, int] | None = None,
    lookup_key: bytes,
) -> dict[str, Account]:
    """:func:`upsert_locked` for many accounts in two statements; by account number.

    Rows are locked in account-number order, so two batches that share
    accounts wait for each other instead of deadlocking. ``producers`` names the
    producer of each account's event: an account belongs to the producer that first sent
    its contact data (for one older than that rule too), and another producer's contact
    data is not applied (:func:`kept_by_another`). ``lookup_key`` keys the phone and email
    hashes the delivery log searches by (``privacy.lookup``).
    """
    numbers = sorted({a.account_no for a in accounts_in})
    if not numbers:
        return {}
    # A new account goes in with its contact data (one row written, not an insert and an
    # update): the first event that names it; later ones in the list apply below, in order.
    fresh: dict[str, AccountIn] = {}
    for account_in in accounts_in:
        fresh.setdefault(account_in.account_no, account_in)
    table: sa.Table = Account.__table__  # type: ignore[attr-defined]
    created = {
        row.account_no
        for row in insert_many(
            session,
            table,
            [_new_row(fresh[no], (producers or {}).get(no), lookup_key) for no in numbers],
            conflict=["account_no"],
            returning=["account_no"],
        )
    }
    found = {
        account.account_no: account
        for account in session.exec(
            select(Account)
            .where(col(Account.account_no).in_(numbers))
            .order_by(col(Account.account_no))
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    }
    for account_in in accounts_in:
        if account_in.account_no in created and fresh[account_in.account_no] is account_in:
            continue  # inserted with what it says
        account = found[account_in.account_no]
        producer = (producers or {}).get(account_in.account_no)
        changes = account_in.known_fields()
        # Contact data claims the account, not an event that names it alone: another
        # producer's `account_no`-only event processed first must not take it over.
        if producer is not None and account.producer_key_id is None and changes:
            account.producer_key_id = producer
            session.add(account)
        if kept_by_another(account, producer):
            continue
        if "protections" in changes:
            # The producer's list replaces its own earlier one, never what a supervisor added.
            changes["protections"] = _joined(changes["protections"], account.protections_added)
        for field, value in changes.items():
            setattr(account, field, value)
        if "phone" in changes:
            account.phone_hash = lookup.phone_hash(account.phone, lookup_key)
        if "email" in changes:
            account.email_hash = lookup.email_hash(account.email, lookup_key)
        if changes:
            account.updated_at = utcnow()
            session.add(account)
    return found


def _new_row(account_in: AccountIn, producer: int | None, lookup_key: bytes) -> dict[str, Any]:
    """The row of an account not stored yet, as :func:`upsert_many_locked` would leave it."""
    changes = account_in.known_fields()
    if "protections" in changes:
        changes["protections"] = _joined(changes["protections"])
    row: dict[str, Any] = {**_EMPTY_LISTS, **changes, "account_no": account_in.account_no}
    if producer is not None and changes:
        row["producer_key_id"] = producer
    if changes.get("phone"):
        row["phone_hash"] = lookup.phone_hash(changes["phone"], lookup_key)
    if changes.get("email"):
        row["email_hash"] = lookup.email_hash(changes["email"], lookup_key)
    return row


def by_contact(session: Session, text: str, *, lookup_key: bytes) -> tuple[str, ...]:
    """The accounts whose phone or email is ``text`` (normalised, found by its keyed hash)."""
    phone, email = lookup.query_hashes(text, lookup_key)
    wanted = [
        c == h for c, h in ((col(Account.phone_hash), phone), (col(Account.email_hash), email)) if h
    ]
    if not wanted:
        return ()
    numbers = session.exec(
        select(Account.account_no).where(sa.or_(*wanted)).order_by(col(Account.account_no))
    )
    return tuple(numbers)


def kept_by_another(account: Account | None, producer: int | None) -> bool:
    """Whether ``account``'s contact data belongs to a producer other than ``producer``."""
    return (
        account is not None
        and producer is not None
        and account.producer_key_id is not None
        and account.producer_key_id != producer
    )


def owners(session: Session, account_nos: Collection[str]) -> dict[str, int | None]:
    """The producer each existing account belongs to (None: not yet anyone's)."""
    if not account_nos:
        return {}
    rows = session.exec(
        select(Account.account_no, Account.producer_key_id).where(
            col(Account.account_no).in_(sorted(account_nos))
        )
    ).all()
    return dict(rows)


def _joined(*lists: Sequence[str]) -> list[str]:
    """The protections of all ``lists``, each once, in the vocabulary's order."""
    return [p for p in PROTECTIONS if any(p in one for one in lists)]


def add_protections(
    session: Session, account_no: str, protections: Sequence[str], *, actor: str, now: datetime
) -> Account | None:
    """A supervisor's protections added to the account (audited); None if there is no account.

    What a supervisor adds stays when the producer sends its own list again.
    """
    account = session.get(Account, account_no, with_for_update=True)
    if account is None:
        return None
    before = list(account.protections)
    account.protections_added = _joined(account.protections_added, protections)
    account.protections = _joined(account.protections, protections)
    account.updated_at = now
    session.add(account)
    audit.record(
        session,
        actor=actor,
        action="account.protections",
        target=f"account {account_no}",
        detail={"added": _joined(protections), "before": before, "now": account.protections},
    )
    return account


def get(session: Session, account_no: str) -> Account | None:
    """The account, or None."""
    return session.get(Account, account_no)


def is_mobile(phone: str | None) -> bool:
    """Whether an E.164 number can take SMS."""
    if not phone:
        return False
    number = phones.parse(phone, None)
    return phonenumbers.number_type(number) in {
        phonenumbers.PhoneNumberType.MOBILE,
        phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
    }


def phone_marked_invalid(phone: str | None, invalid_phone: str | None) -> bool:
    """Whether the account's phone is the number an agent found wrong."""
    return phone is not None and phone == invalid_phone


def callable_phone(phone: str | None, invalid_phone: str | None) -> str | None:
    """The number to call, or None when there is none or it is known to be wrong."""
    return None if phone_marked_invalid(phone, invalid_phone) else phone


def mark_phone_invalid(
    session: Session,
    account_no: str,
    *,
    now: datetime,
    reason: str = "wrong_number",
    phone: str | None = None,
) -> bool:
    """Mark the account's current phone as wrong; False if there is none or it was already.

    With ``phone``, only if that is still the account's number: a report about
    an old number says nothing of the new one.
    """
    account = session.get(Account, account_no, with_for_update=True)
    if account is None or account.phone is None or account.invalid_phone == account.phone:
        return False
    if phone is not None and phone != account.phone:
        return False
    account.invalid_phone, account.phone_invalid_at = account.phone, now
    account.phone_invalid_reason = reason
    account.updated_at = now
    session.add(account)
    return True


def mark_sms_unable(session: Session, account_no: str, phone: str, *, now: datetime) -> bool:
    """Note that ``phone``, still the account's number, takes no SMS; False if nothing changed."""
    account = session.get(Account, account_no, with_for_update=True)
    if account is None or account.phone != phone or account.sms_unable_phone == phone:
        return False
    account.sms_unable_phone = phone
    account.updated_at = now
    session.add(account)
    return True


def texts_to(account: Account) -> str | None:
    """The number SMS go to: a mobile one not known as wrong or unable to take SMS."""
    phone = callable_phone(account.phone, account.invalid_phone)
    if phone is None or phone == account.sms_unable_phone or not is_mobile(phone):
        return None
    return phone


def mail_to(account: Account) -> str | None:
    """The address email goes to: the account's, unless a hard bounce said it takes no mail."""
    if not account.email or account.email == account.invalid_email:
        return None
    return account.email


def mark_email_invalid(
    session: Session, account_no: str, email: str, *, now: datetime, reason: str
) -> bool:
    """Mark ``email``, if it is still the account's address, as taking no mail; False if
    nothing changed (another address now, or marked already)."""
    account = session.get(Account, account_no, with_for_update=True)
    if account is None or account.email is None or account.invalid_email == account.email:
        return False
    if account.email.strip().lower() != email.strip().lower():
        return False
    account.invalid_email, account.email_invalid_at = account.email, now
    account.email_invalid_reason = reason[:64]
    account.updated_at = now
    session.add(account)
    return True
