"""The producer contract's ledger additions: payment bodies, reversals and bill kinds."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from pydantic import ValidationError

from notifier.escalation.rule import LedgerBill, second_billing_date
from notifier.events.schema import field_errors, parse_event
from tests.support import events


def paid(payment: Any = None, type_: str = "bill.paid") -> dict[str, Any]:
    event = events.paid(events.account())
    event["type"] = type_
    if payment is not None:
        event["payment"] = payment
    return event


def errors(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        parse_event(raw)
    return [error.field for error in field_errors(caught.value)]


PAYMENT = {"amount": 1000, "paid_at": "2026-11-27T09:30:00+08:00", "method": "超商"}


def test_bill_paid_takes_a_payment_or_none_for_paid_in_full() -> None:
    assert parse_event(paid()).payment is None
    payment = parse_event(paid(PAYMENT)).payment
    assert payment is not None and (payment.amount, payment.method) == (1000, "超商")


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (paid({**PAYMENT, "amount": -5}), "payment.amount"),
        (paid({**PAYMENT, "amount": 0}), "payment.amount"),
        (paid({**PAYMENT, "paid_at": "2026-11-27T09:30:00"}), "payment.paid_at"),
        (paid({**PAYMENT, "cheque": "1234"}), "payment.cheque"),
        (paid(None, "bill.payment_reversed"), "payment"),
        ({**events.unpaid(events.account()), "payment": PAYMENT}, "payment"),
    ],
    ids=["negative", "zero", "naive-time", "unknown-field", "reversal-without", "not-a-payment"],
)
def test_a_bad_payment_is_refused_naming_the_field(raw: dict[str, Any], field: str) -> None:
    assert field in errors(raw)


def test_bill_kind_is_regular_unless_said_and_only_the_three_kinds() -> None:
    event = events.unpaid(events.account())
    assert parse_event(event).bill is not None and parse_event(event).bill.kind == "regular"  # type: ignore[union-attr]
    event["bill"]["kind"] = "supplementary"
    assert parse_event(event).bill.kind == "supplementary"  # type: ignore[union-attr]
    event["bill"]["kind"] = "extra"
    assert "bill.kind" in errors(event)


def test_only_a_regular_bill_of_a_later_period_is_the_next_bill() -> None:
    b07 = LedgerBill("B07", date(2026, 9, 20), 1830, False, "2026-07")
    extra = LedgerBill("B07S", date(2026, 10, 5), 420, False, "2026-07", "supplementary")
    same_period = LedgerBill("B07R", date(2026, 10, 8), 420, False, "2026-07")
    b09 = LedgerBill("B09", date(2026, 11, 20), 1830, False, "2026-09")

    assert second_billing_date([b07, extra], b07, 2) == date(2026, 11, 20)  # one cycle on
    assert second_billing_date([b07, same_period], b07, 2) == date(2026, 11, 20)
    assert second_billing_date([b07, extra, b09], b07, 2) == date(2026, 11, 20)
    assert second_billing_date([b07, b09], b07, 1) == date(2026, 11, 20)
