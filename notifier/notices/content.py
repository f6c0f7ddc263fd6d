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
from notifier.billing.models import Bill
from notifier.events.schema import EventIn
from notifier.privacy.masking import mask_account_no
from notifier.settings import Settings

__all__ = ["build_context", "pay_link", "sms_segments", "visit_notice_context"]


def pay_link(settings: Settings, reference: str) -> str:
    """The pay link for a bill, carrying an opaque reference, never the account number.

    Bill numbers contain the account number, and an SMS or a push is not a
    private channel; the pay site resolves the reference with the same key.
    """
    key = settings.pay_link_key.get_secret_value().encode()
    digest = hmac.new(key, reference.encode(), hashlib.sha256).digest()
    token = base64.b32encode(digest[:10]).decode().rstrip("=")
    return f"{settings.pay_url.rstrip('/')}/{token}"


def _bill(bill: Bill) -> dict[str, Any]:
    return {
        "bill_no": bill.bill_no,
        "period": bill.period,
        "amount": bill.amount,
        "due_date": bill.due_date,
    }


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
    urgent: bool = False,
) -> dict[str, Any]:
    """The context every template of this event renders from (see notifier.notices.rendering).

    ``urgent`` is the notification's (a suspected leak, decided by the policy's ``usage``).
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
        "bill": _bill(bill) if bill is not None else None,
        "bills": [_bill(b) for b in unpaid],
        "total": sum(b.amount for b in unpaid),
        "usage": usage,
        "service_phone": settings.service_phone,
        "pay_url": pay_link(settings, bill.bill_no if bill is not None else account.account_no),
    }


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
        "pay_url": pay_link(settings, str(oldest["bill_no"]) if oldest else account_no),
        "visit": {"date": visit_date, "agent_name": agent_name},
    }
