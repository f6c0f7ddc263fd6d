"""The rule on Taiwan's business calendar: holiday weeks, a make-up Saturday, due dates on Sundays.

春節 2025 ran from Saturday 1/25 to Sunday 2/2, with Monday 1/27 given off
for Saturday 2/8 worked (補班, DGPA's 114年 calendar). 22 Nov 2026 is a Sunday.
"""

from __future__ import annotations

from datetime import date

import pytest
from sqlmodel import select

from notifier.billing.models import Bill
from notifier.escalation import service as cases
from notifier.escalation.sweep import sweep
from tests.support import events
from tests.support.ledger import Ledger

NOV_25_2024, JAN_24, JAN_26, FEB_3 = date(2024, 11, 25), date(2025, 1, 24), date(2025, 1, 26), date(2025, 2, 3)  # fmt: skip
MAKE_UP_SATURDAY = date(2025, 2, 8)


def test_a_next_bill_due_in_the_holiday_week_opens_the_case_after_it(ledger: Ledger) -> None:
    acct = events.account(area=ledger.new_area())
    b09 = ledger.issue(acct, "2024-09", NOV_25_2024)
    b11 = ledger.issue(acct, "2024-11", JAN_26)  # a Sunday inside 春節: due on Monday 2/3

    for day in (JAN_24, JAN_26, date(2025, 1, 27), date(2025, 2, 2)):
        ledger.sweep(day)  # a sweep run by hand on a day off changes nothing either
        assert ledger.cases(acct["account_no"]) == [], day

    ledger.sweep(FEB_3)
    [(case, bills)] = ledger.cases(acct["account_no"])
    assert (case.status, case.opened_on) == ("open", FEB_3)
    assert bills == [b09["bill_no"]]  # B11 is due for the rule that day, not overdue yet
    ledger.sweep(date(2025, 2, 4))
    assert ledger.cases(acct["account_no"])[0][1] == sorted([b09["bill_no"], b11["bill_no"]])
    with ledger.db() as session:  # the bill keeps the due date the producer sent
        assert (
            session.exec(select(Bill.due_date).where(Bill.bill_no == b11["bill_no"])).one()
            == JAN_26
        )


def a_case_before_the_holidays(ledger: Ledger) -> tuple[dict[str, object], int, int]:
    """An account whose case opened on 25 Nov 2024, given to a caller: (account, case, agent)."""
    acct = events.account(area=ledger.new_area())
    agent = ledger.add_agent(str(acct["area"]), "caller")
    ledger.issue(acct, "2024-07", date(2024, 9, 23))
    ledger.issue(acct, "2024-09", NOV_25_2024)
    ledger.sweep(NOV_25_2024)
    case = ledger.open_case(str(acct["account_no"]))
    assert case is not None and case.id is not None and case.assignee_id == agent
    return acct, case.id, agent


def test_a_claimed_payment_waits_three_business_days_across_the_holidays(ledger: Ledger) -> None:
    _, case_id, _ = a_case_before_the_holidays(ledger)
    claimed = ledger.record(case_id, "paid", today=JAN_24)  # the Friday before 春節
    assert claimed.follow_up_on == date(2025, 2, 5)  # 2/3, 2/4, 2/5: the nine days off skipped


def test_the_make_up_saturday_counts_as_a_business_day(ledger: Ledger) -> None:
    _, case_id, _ = a_case_before_the_holidays(ledger)
    claimed = ledger.record(case_id, "paid", today=date(2025, 2, 6))
    assert claimed.follow_up_on == date(2025, 2, 10)  # Fri 2/7, Sat 2/8 (補班), Mon 2/10


def test_a_promise_is_bounded_by_business_days_across_the_holidays(ledger: Ledger) -> None:
    _, case_id, agent = a_case_before_the_holidays(ledger)
    caller = cases.Actor("林建宏", agent_id=agent)
    # 14 business days from 1/24: 2/3 … 2/7, 2/8 (補班), 2/10 … 2/14, 2/17 … 2/19.
    with pytest.raises(cases.InvalidInput) as caught:
        ledger.record(
            case_id, "promised", today=JAN_24, actor=caller, promise_date=date(2025, 2, 20)
        )
    assert caught.value.field == "promise_date" and "2025-02-19" in caught.value.message
    kept = ledger.record(
        case_id, "promised", today=JAN_24, actor=caller, promise_date=date(2025, 2, 19)
    )
    assert kept.follow_up_on == date(2025, 2, 20)


def test_a_due_date_on_a_sunday_rolls_to_monday(ledger: Ledger) -> None:
    acct = events.account(area=ledger.new_area())
    b07 = ledger.issue(acct, "2026-07", date(2026, 9, 20))  # a Sunday too
    b09 = ledger.issue(acct, "2026-09", date(2026, 11, 22))

    ledger.sweep(date(2026, 11, 22))
    assert ledger.cases(acct["account_no"]) == []
    ledger.sweep(date(2026, 11, 23))
    [(case, bills)] = ledger.cases(acct["account_no"])
    assert case.opened_on == date(2026, 11, 23) and bills == [b07["bill_no"]]
    ledger.sweep(date(2026, 11, 24))
    assert ledger.cases(acct["account_no"])[0][1] == sorted([b07["bill_no"], b09["bill_no"]])


def test_without_rolling_forward_the_stored_due_date_decides(ledger: Ledger) -> None:
    acct = events.account(area=ledger.new_area())
    b07 = ledger.issue(acct, "2026-07", date(2026, 9, 20))
    ledger.issue(acct, "2026-09", date(2026, 11, 22))
    as_stored = ledger.policy.model_copy(update={"due_date_rolls_forward": False})

    sweep(ledger.runtime.db, as_stored, date(2026, 11, 22), trigger="test")
    [(case, bills)] = ledger.cases(acct["account_no"])
    assert case.opened_on == date(2026, 11, 22) and bills == [b07["bill_no"]]
