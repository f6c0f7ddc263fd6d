"""The rule's date arithmetic and knobs, without a database."""

from __future__ import annotations

from datetime import date

import pytest
from pydantic import ValidationError

from notifier.escalation.rule import LedgerBill, Reachability, escalable, kind_for
from notifier.policy.rules import EscalationPolicy

# The dates as stored: a due date rolled past a weekend or holiday has its own tests
# (tests/unit/policy/test_calendar.py, tests/integration/test_business_calendar.py).
POLICY = EscalationPolicy(min_arrears=100, due_date_rolls_forward=False)


def bill(due: date, amount: int = 1830, paid: bool = False) -> LedgerBill:
    return LedgerBill(f"B{due:%Y%m%d}", due, amount, paid)


@pytest.mark.parametrize(
    ("due", "cycle", "second_billing_date"),
    [
        (date(2026, 9, 20), 2, date(2026, 11, 20)),
        (date(2026, 12, 31), 2, date(2027, 2, 28)),  # a month end stays a month end
        (date(2027, 12, 31), 2, date(2028, 2, 29)),  # leap year
        (date(2026, 1, 31), 1, date(2026, 2, 28)),
    ],
)
def test_without_a_next_bill_the_cycle_decides(
    due: date, cycle: int, second_billing_date: date
) -> None:
    bills = [bill(due)]
    before = second_billing_date.fromordinal(second_billing_date.toordinal() - 1)
    assert escalable(bills, before, POLICY, cycle) == []
    assert escalable(bills, second_billing_date, POLICY, cycle) == bills


def test_the_policy_default_cycle_applies_when_the_account_has_none() -> None:
    monthly = POLICY.model_copy(update={"default_cycle_months": 1})
    assert escalable([bill(date(2026, 10, 20))], date(2026, 11, 20), monthly, None)
    assert not escalable([bill(date(2026, 10, 20))], date(2026, 11, 20), POLICY, None)


def test_grace_days_push_the_date_back() -> None:
    lenient = POLICY.model_copy(update={"grace_days": 3})
    bills = [bill(date(2026, 9, 20)), bill(date(2026, 11, 20))]
    assert not escalable(bills, date(2026, 11, 22), lenient, 2)
    assert escalable(bills, date(2026, 11, 23), lenient, 2)


def test_a_paid_older_bill_leaves_the_newer_one_to_its_own_date() -> None:
    bills = [bill(date(2026, 9, 20), paid=True), bill(date(2026, 11, 20))]
    assert not escalable(bills, date(2026, 11, 21), POLICY, 2)
    assert escalable(bills, date(2027, 1, 20), POLICY, 2)


@pytest.mark.parametrize(
    ("account", "kind"),
    [
        (Reachability("+886912345678", vulnerable=False, prefers_paper=False), "call"),
        (Reachability(None, vulnerable=False, prefers_paper=False), "visit"),
        (Reachability("+886912345678", vulnerable=True, prefers_paper=False), "visit"),
        (Reachability("+886912345678", vulnerable=False, prefers_paper=True), "visit"),
        (Reachability("+886912345678", False, False, protected=True), "visit"),
        (Reachability("+886912345678", False, False, area="lanyu"), "visit"),  # remote
        (Reachability("+886912345678", False, False, area="toufen"), "call"),
    ],
)
def test_who_gets_a_visit(account: Reachability, kind: str) -> None:
    policy = POLICY.model_copy(update={"remote_areas": ["lanyu"]})
    assert kind_for(account, policy) == kind


def test_a_policy_may_call_even_those_who_prefer_paper() -> None:
    policy = POLICY.model_copy(update={"visit_flags": ["vulnerable"]})
    assert kind_for(Reachability("+886912345678", False, True), policy) == "call"


def test_business_days_skip_weekends_and_holidays() -> None:
    policy = EscalationPolicy(holidays=[date(2027, 1, 1)])
    assert policy.is_business_day(date(2026, 11, 27))  # a Friday
    assert not policy.is_business_day(date(2026, 11, 28))
    assert not policy.is_business_day(date(2027, 1, 1))


@pytest.mark.parametrize(
    ("knob", "value"),
    [("sweep_days", ["mon", "funday"]), ("max_call_attempts", 0), ("visit_flags", ["rich"])],
)
def test_a_bad_knob_is_refused_by_name(knob: str, value: object) -> None:
    with pytest.raises(ValidationError) as caught:
        EscalationPolicy.model_validate({knob: value})
    assert knob in str(caught.value)
