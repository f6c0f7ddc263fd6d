"""Events as the billing system would post them, for scenario tests."""

from __future__ import annotations

import itertools
import secrets
from datetime import date, timedelta
from typing import Any

_counter = itertools.count(1)


def new_account_no() -> str:
    """A fresh 11-digit account number, unique in this run."""
    return f"{secrets.randbelow(10**6):06d}{next(_counter):05d}"


def account(account_no: str | None = None, **fields: Any) -> dict[str, Any]:
    """An account with every contact point unless fields say otherwise."""
    no = account_no or new_account_no()
    base: dict[str, Any] = {
        "account_no": no,
        "name": "王小明",
        "language": "zh-TW",
        "phone": "+886912345678",
        "email": f"c{no}@example.com",
        "push_tokens": [f"token-{no}"],
        "address": "苗栗縣頭份市中正路1號",
        "area": "toufen",
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def bill(
    account_no: str, *, period: str = "2026-09", amount: int = 1830, due: date | None = None
) -> dict[str, Any]:
    return {
        "bill_no": f"B{period.replace('-', '')}-{account_no}",
        "period": period,
        "amount": amount,
        "due_date": (due or date(2026, 11, 20)).isoformat(),
    }


def unpaid(
    acct: dict[str, Any], *, level: int = 1, event_id: str | None = None, **bill_kw: Any
) -> dict[str, Any]:
    return {
        "event_id": event_id or f"test-{secrets.token_hex(8)}",
        "type": "bill.unpaid",
        "occurred_at": "2026-11-27T09:00:00+08:00",
        "account": acct,
        "bill": bill(acct["account_no"], **bill_kw),
        "level": level,
    }


def paid(acct: dict[str, Any], **bill_kw: Any) -> dict[str, Any]:
    return {
        "event_id": f"test-{secrets.token_hex(8)}",
        "type": "bill.paid",
        "occurred_at": "2026-11-27T10:00:00+08:00",
        "account": {"account_no": acct["account_no"]},
        "bill": bill(acct["account_no"], **bill_kw),
    }


def abnormal_usage(acct: dict[str, Any]) -> dict[str, Any]:
    start = date(2026, 10, 1)
    return {
        "event_id": f"test-{secrets.token_hex(8)}",
        "type": "usage.abnormal",
        "occurred_at": "2026-11-27T02:00:00+08:00",
        "account": acct,
        "usage": {
            "period_start": start.isoformat(),
            "period_end": (start + timedelta(days=30)).isoformat(),
            "kwh": 912.5,
            "baseline_kwh": 420.0,
            "reason": "usage 117% above the same period last year",
        },
    }
