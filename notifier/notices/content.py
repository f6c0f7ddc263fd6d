"""What a notice says: the template context built from the ledger, and SMS sizing."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

from channels.sms import sms_segments
from notifier.accounts.models import Account
from notifier.billing.models import Bill, Payment
from notifier.events.schema import EventIn
from notifier.notices.rendering import bill_entry, split_bills
from notifier.privacy.masking import mask_account_no
from notifier.settings import Settings

__all__ = [
    "build_context",
    "collection_context",
    "ledger_context",
    "names_terms",
    "pay_link",
    "same_statement",
    "sms_segments",
    "statement",
    "visit_notice_context",
]


def pay_link(settings: Settings, reference: str) -> str:
    """The pay link for a bill, carrying an opaque reference, never the account number.

    Bill numbers contain the account number, and an SMS or a push is not a
    private channel; the pay site resolves the reference with the same key.
    """
    key = settings.pay_link_key.get_secret_value().encode()
    digest = hmac.new(key, reference.encode(), hashlib.sha256).digest()
    token = base64.b32encode(digest[:10]).decode().rstrip("=")
    return f"{settings.pay_url.rstrip('/')}/{token}"


def _bill(bill: Bill, today: date) -> dict[str, Any]:
    return bill_entry(
        bill_no=bill.bill_no,
        period=bill.period,
        amount=bill.amount,
        paid=bill.paid_amount,
        due_date=bill.due_date,
        today=today,
        kind=bill.kind,
    )


def _terms(bill: Mapping[str, Any]) -> list[Any]:
    # Everything a notice says of a bill: a change in any of these makes its text stale.
    return [bill["bill_no"], bill["amount"], bill["paid"], str(bill["due_date"]), bill["overdue"]]


def statement(context: Mapping[str, Any]) -> dict[str, Any]:
    """What a notice rendered from ``context`` states of the ledger (``Delivery.stated``).

    Claim-time checks compare it with the ledger as it is then; correction
    notices look in it for the terms a sent notice named. A correction notice
    keeps the terms it corrects too.
    """
    bill = context.get("bill")
    stated: dict[str, Any] = {
        "bill": _terms(bill) if bill else None,
        "bills": [_terms(b) for b in context.get("bills") or []],
    }
    correction = context.get("correction")
    if correction:
        stated["correction"] = {
            "amount": correction["amount"],
            "due_date": str(correction["due_date"]),
        }
    return stated


def same_statement(stored: Mapping[str, Any], fresh: Mapping[str, Any]) -> bool:
    """Whether a stored statement still tells what the ledger says (corrections aside)."""
    return bool(stored.get("bill") == fresh["bill"] and stored.get("bills") == fresh["bills"])


def names_terms(stated: Mapping[str, Any], bill_no: str, amount: int, due_date: date) -> bool:
    """Whether a notice named ``bill_no`` at these terms."""
    named = [stated.get("bill") or [], *(stated.get("bills") or [])]
    return any(t and (t[0], t[1], t[3]) == (bill_no, amount, str(due_date)) for t in named)


def ledger_context(bill: Bill | None, unpaid: Sequence[Bill], today: date) -> dict[str, Any]:
    """The ledger part of a context: the bill, the unpaid bills, overdue apart from upcoming."""
    about = _bill(bill, today) if bill is not None else None
    return {"today": today, "bill": about, **split_bills([_bill(b, today) for b in unpaid], about)}


def _account(account_no: str, name: str | None) -> dict[str, Any]:
    return {
        "account_no": account_no,
        "account_no_masked": mask_account_no(account_no),
        "name": name,
    }


def build_context(
    settings: Settings,
    account: Account,
    event: EventIn,
    *,
    bill: Bill | None,
    unpaid: Sequence[Bill],
    today: date,
    payment: Payment | None = None,
    correction: Mapping[str, Any] | None = None,
    urgent: bool = False,
) -> dict[str, Any]:
    """The context every template of this event renders from (see notifier.notices.rendering).

    ``today`` is the business date the notice is rendered on: what is overdue
    is decided against it. ``urgent`` is the notification's (a suspected leak,
    decided by the policy's ``usage``).
    """
    usage: dict[str, Any] | None = None
    if event.usage is not None:
        u = event.usage
        usage = {
            "period_start": u.period_start,
            "period_end": u.period_end,
            "kwh": u.kwh,
            "baseline_kwh": u.baseline_kwh,
            "ratio": u.kwh / u.baseline_kwh - 1,
            "reason": u.reason,
            "urgent": urgent,
        }
    return {
        "language": account.language,
        "level": event.level,
        "account": _account(account.account_no, account.name),
        **ledger_context(bill, unpaid, today),
        "payment": (
            {"amount": payment.amount, "paid_at": payment.paid_at, "method": payment.method}
            if payment is not None
            else None
        ),
        "correction": dict(correction) if correction is not None else None,
        "usage": usage,
        "service_phone": settings.service_phone,
        "utility": settings.identity.context(),
        "pay_url": pay_link(settings, bill.bill_no if bill is not None else account.account_no),
    }


def collection_context(
    settings: Settings,
    account: Account,
    kind: str,
    *,
    bill: Bill | None,
    unpaid: Sequence[Bill],
    today: date,
    on: date,
    deadline: date | None,
) -> dict[str, Any]:
    """The context of a collections-ladder notice, from the ledger at ``today``.

    ``collection.final_demand`` gets ``demand: {issued_on, deadline}`` (the demand's date
    and the business date after which the supply may be suspended);
    ``collection.reconnected`` gets ``reconnection: {paid_on}``.
    """
    context: dict[str, Any] = {
        "language": account.language,
        "level": 2,
        "account": _account(account.account_no, account.name),
        **ledger_context(bill, unpaid, today),
        "payment": None,
        "correction": None,
        "usage": None,
        "service_phone": settings.service_phone,
        "utility": settings.identity.context(),
        "pay_url": pay_link(settings, bill.bill_no if bill is not None else account.account_no),
    }
    if kind == "collection.final_demand":
        assert deadline is not None
        context["demand"] = {"issued_on": on, "deadline": deadline}
    else:
        context["reconnection"] = {"paid_on": on}
    return context


def visit_notice_context(
    settings: Settings,
    *,
    account_no: str,
    name: str | None,
    language: str,
    bills: Sequence[Mapping[str, Any]],
    visit_date: date,
    agent_name: str,
) -> dict[str, Any]:
    """The context of the notice a field agent leaves at the home (``escalation.visit``)."""
    oldest = bills[0] if bills else None
    return {
        "language": language,
        "level": 2,
        "account": _account(account_no, name),
        "bill": dict(oldest) if oldest else None,
        "bills": [dict(b) for b in bills],
        "total": sum(int(b["amount"]) for b in bills),
        "usage": None,
        "service_phone": settings.service_phone,
        "utility": settings.identity.context(),
        "pay_url": pay_link(settings, str(oldest["bill_no"]) if oldest else account_no),
        "visit": {"date": visit_date, "agent_name": agent_name},
    }
