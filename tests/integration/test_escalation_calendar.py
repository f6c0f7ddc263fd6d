"""The escalation rule as calendar scenarios: an account, its bills, the days moving on.

Bimonthly bills fall due on the 20th of odd months here: B07 (July's
period) on 20 Sep, B09 on 20 Nov, B11 on 20 Jan. A bill still unpaid when the
next one falls due goes to a person on that day (DESIGN.md, "Escalation rule").
"""

from __future__ import annotations

from datetime import date, datetime, time
from zoneinfo import ZoneInfo

import pytest

from notifier.escalation import service as cases
from tests.support import events
from tests.support.ledger import Ledger

SEP_20, NOV_19, NOV_20, NOV_21 = date(2026, 9, 20), date(2026, 11, 19), date(2026, 11, 20), date(2026, 11, 21)  # fmt: skip
NOV_23, JAN_20 = date(2026, 11, 23), date(2027, 1, 20)
TAIPEI = ZoneInfo("Asia/Taipei")


def taipei(day: date, hour: int, minute: int = 0) -> datetime:
    """An instant on a business date, as an agent's clock in Taiwan shows it."""
    return datetime.combine(day, time(hour, minute), tzinfo=TAIPEI)


def two_bills(ledger: Ledger, **account: object) -> tuple[dict[str, object], dict, dict]:
    acct = events.account(area=ledger.new_area(), **account)
    b07 = ledger.issue(acct, "2026-07", SEP_20)
    b09 = ledger.issue(acct, "2026-09", NOV_20)
    return acct, b07, b09


def test_a_bill_unpaid_on_the_next_bills_due_date_goes_to_a_caller(ledger: Ledger) -> None:
    acct, b07, _ = two_bills(ledger)
    caller = ledger.add_agent(acct["area"], "caller")

    ledger.sweep(NOV_19)
    assert ledger.cases(acct["account_no"]) == []

    ledger.sweep(NOV_20)
    [(case, bills)] = ledger.cases(acct["account_no"])
    assert (case.kind, case.status, case.assignee_id, case.opened_on) == (
        "call", "open", caller, NOV_20,
    )  # fmt: skip
    # B09 falls due that very day: it is not overdue yet, so only B07 is owed.
    assert bills == [b07["bill_no"]]


def test_a_monthly_account_without_a_next_bill_is_due_one_cycle_later(ledger: Ledger) -> None:
    acct = events.account(area=ledger.new_area(), billing_cycle_months=1)
    ledger.post(events.unpaid(acct, period="2026-09", due=date(2026, 10, 20)))

    ledger.sweep(NOV_19)
    assert ledger.cases(acct["account_no"]) == []
    ledger.sweep(NOV_20)
    assert ledger.open_case(acct["account_no"]) is not None


def test_a_bimonthly_account_without_a_next_bill_waits_two_months(ledger: Ledger) -> None:
    acct = events.account(area=ledger.new_area())
    ledger.issue(acct, "2026-07", SEP_20)

    ledger.sweep(NOV_19)
    assert ledger.cases(acct["account_no"]) == []
    ledger.sweep(NOV_20)
    assert ledger.open_case(acct["account_no"]) is not None


def test_a_known_next_bill_decides_even_when_it_comes_early(ledger: Ledger) -> None:
    acct = events.account(area=ledger.new_area())
    ledger.issue(acct, "2026-07", SEP_20)
    ledger.issue(acct, "2026-09", date(2026, 11, 13))  # earlier than two months on

    ledger.sweep(date(2026, 11, 13))
    assert ledger.open_case(acct["account_no"]) is not None


def test_a_bill_unpaid_event_for_a_bill_never_issued_enters_the_ledger(ledger: Ledger) -> None:
    acct = events.account(area=ledger.new_area(), phone=None, email=None, push_tokens=None)
    ledger.post(events.unpaid(acct, period="2026-07", due=SEP_20))

    ledger.sweep(NOV_20)
    [(_, bills)] = ledger.cases(acct["account_no"])
    assert bills == [f"B202607-{acct['account_no']}"]


def test_paid_the_day_before_the_trigger_no_case(ledger: Ledger) -> None:
    acct, b07, _ = two_bills(ledger)
    ledger.pay(acct, b07, on=NOV_19)

    ledger.sweep(NOV_20)
    ledger.sweep(NOV_21)
    assert ledger.cases(acct["account_no"]) == []


def test_paid_the_day_after_the_case_closes_as_paid_and_leaves_the_list(ledger: Ledger) -> None:
    acct, b07, _ = two_bills(ledger)
    caller = ledger.add_agent(acct["area"], "caller")
    ledger.sweep(NOV_20)
    case = ledger.open_case(acct["account_no"])
    assert case is not None

    ledger.pay(acct, b07, on=NOV_21)

    [(closed, _)] = ledger.cases(acct["account_no"])
    assert (closed.status, closed.outcome) == ("done", "paid")
    with ledger.db() as session:
        from notifier.escalation.lists import agent_list

        assert agent_list(session, caller, "call", today=NOV_21) == []
    ledger.sweep(NOV_21)  # and the sweep does not open it again
    assert len(ledger.cases(acct["account_no"])) == 1


def test_arrears_under_the_minimum_are_not_escalated(ledger: Ledger) -> None:
    acct = events.account(area=ledger.new_area())
    ledger.issue(acct, "2026-07", SEP_20, amount=ledger.policy.min_arrears - 1)
    ledger.issue(acct, "2026-09", NOV_20)

    ledger.sweep(NOV_20)
    assert ledger.cases(acct["account_no"]) == []
    ledger.sweep(NOV_21)  # B09 overdue too: now the arrears are enough
    assert ledger.open_case(acct["account_no"]) is not None


@pytest.mark.parametrize(
    "account",
    [{"vulnerable": True}, {"phone": None}, {"prefers_paper": True}],
    ids=["vulnerable", "no phone", "prefers paper"],
)
def test_some_accounts_go_straight_to_a_visit(ledger: Ledger, account: dict[str, object]) -> None:
    acct, _, _ = two_bills(ledger, **account)
    caller = ledger.add_agent(acct["area"], "caller")
    field_agent = ledger.add_agent(acct["area"], "field")

    ledger.sweep(NOV_20)
    case = ledger.open_case(acct["account_no"])
    assert case is not None
    assert (case.kind, case.assignee_id) == ("visit", field_agent)
    assert case.assignee_id != caller


def test_three_unanswered_calls_turn_the_case_into_a_visit(ledger: Ledger) -> None:
    acct, _, _ = two_bills(ledger)
    caller = ledger.add_agent(acct["area"], "caller")
    field_agent = ledger.add_agent(acct["area"], "field")
    ledger.sweep(NOV_20)
    case = ledger.open_case(acct["account_no"])
    assert case is not None and case.id is not None

    ledger.record(case.id, "no_answer", today=NOV_20, at=taipei(NOV_20, 9))
    ledger.record(case.id, "no_answer", today=NOV_21, at=taipei(NOV_21, 9))
    assert ledger.open_case(acct["account_no"]).kind == "call"  # type: ignore[union-attr]
    third = ledger.record(case.id, "no_answer", today=NOV_23, at=taipei(NOV_23, 9))

    assert (third.kind, third.assignee_id, third.status) == ("visit", field_agent, "open")
    assert third.assignee_id != caller


def test_two_unpaid_bills_make_one_case_and_a_later_bill_joins_it(ledger: Ledger) -> None:
    acct = events.account(area=ledger.new_area())
    b05 = ledger.issue(acct, "2026-05", date(2026, 7, 20))
    b07 = ledger.issue(acct, "2026-07", SEP_20)
    b09 = ledger.issue(acct, "2026-09", NOV_20)

    ledger.sweep(NOV_20)  # missed the 20 Sep trigger: one case covers both overdue bills
    [(case, bills)] = ledger.cases(acct["account_no"])
    assert bills == sorted([b05["bill_no"], b07["bill_no"]])

    ledger.sweep(NOV_21)  # B09 now overdue: it joins the open case
    [(same, bills)] = ledger.cases(acct["account_no"])
    assert same.id == case.id
    assert bills == sorted([b05["bill_no"], b07["bill_no"], b09["bill_no"]])

    ledger.pay(acct, b05, on=NOV_21)  # one paid is not the arrears cleared
    assert ledger.open_case(acct["account_no"]) is not None


def test_the_sweep_run_twice_gives_the_same_cases(ledger: Ledger) -> None:
    acct, _, _ = two_bills(ledger)
    ledger.add_agent(acct["area"], "caller")

    ledger.sweep(NOV_20)
    first = [(c.id, c.kind, c.assignee_id, bills) for c, bills in ledger.cases(acct["account_no"])]
    again = ledger.sweep(NOV_20)
    second = [(c.id, c.kind, c.assignee_id, bills) for c, bills in ledger.cases(acct["account_no"])]

    assert first == second and len(first) == 1
    assert again.joined == 0


def test_cases_are_shared_out_to_the_least_loaded_agent(ledger: Ledger) -> None:
    area = ledger.new_area()
    first = ledger.add_agent(area, "caller", name="甲")
    second = ledger.add_agent(area, "caller", name="乙")
    accounts = [events.account(area=area) for _ in range(5)]
    for acct in accounts:
        ledger.issue(acct, "2026-07", SEP_20)

    ledger.sweep(NOV_20)

    assignees = [ledger.open_case(a["account_no"]).assignee_id for a in accounts]  # type: ignore[union-attr]
    assert sorted(assignees.count(agent) for agent in (first, second)) == [2, 3]


def test_with_no_agent_in_the_area_a_case_waits_unassigned_until_one_is_added(
    ledger: Ledger,
) -> None:
    acct, _, _ = two_bills(ledger)
    run = ledger.sweep(NOV_20)
    case = ledger.open_case(acct["account_no"])
    assert case is not None and case.assignee_id is None
    assert run.unassigned >= 1

    caller = ledger.add_agent(acct["area"], "caller")
    ledger.sweep(NOV_21)
    assert ledger.open_case(acct["account_no"]).assignee_id == caller  # type: ignore[union-attr]


def test_a_delivered_notice_is_not_reopened_until_a_newer_bill_falls_due(ledger: Ledger) -> None:
    acct, b07, b09 = two_bills(ledger, vulnerable=True)
    ledger.sweep(NOV_20)
    case = ledger.open_case(acct["account_no"])
    assert case is not None and case.id is not None and case.kind == "visit"
    ledger.record(case.id, "notice_delivered", today=NOV_20, note="left with his wife")

    ledger.sweep(NOV_21)
    assert ledger.open_case(acct["account_no"]) is None

    ledger.issue(acct, "2026-11", JAN_20)
    ledger.sweep(JAN_20)  # B09 unpaid when B11 falls due: a new case for all that is owed
    new = ledger.open_case(acct["account_no"])
    assert new is not None and new.id != case.id
    [_, (_, bills)] = ledger.cases(acct["account_no"])
    assert bills == sorted([b07["bill_no"], b09["bill_no"]])


def test_a_promise_takes_the_case_off_the_list_until_the_day_after(ledger: Ledger) -> None:
    from notifier.escalation.lists import agent_list

    acct, _, _ = two_bills(ledger)
    caller = ledger.add_agent(acct["area"], "caller")
    ledger.sweep(NOV_20)
    case = ledger.open_case(acct["account_no"])
    assert case is not None and case.id is not None

    ledger.record(case.id, "promised", today=NOV_20, promise_date=date(2026, 11, 25))

    with ledger.db() as session:
        assert agent_list(session, caller, "call", today=date(2026, 11, 25)) == []
        [row] = agent_list(session, caller, "call", today=date(2026, 11, 26))
    assert row.case_id == case.id and row.attempts[0].outcome == "promised"


def test_an_agent_cannot_record_on_another_agents_case(ledger: Ledger) -> None:
    acct, _, _ = two_bills(ledger)
    mine = ledger.add_agent(acct["area"], "caller")
    other = ledger.add_agent(ledger.new_area(), "caller")
    ledger.sweep(NOV_20)
    case = ledger.open_case(acct["account_no"])
    assert case is not None and case.id is not None and case.assignee_id == mine

    with pytest.raises(cases.NotYourCase):
        ledger.record(case.id, "no_answer", today=NOV_20, actor=cases.Actor("x", agent_id=other))
    ledger.record(case.id, "no_answer", today=NOV_20, actor=cases.Actor("me", agent_id=mine))


@pytest.mark.parametrize(
    ("outcome", "extra", "field"),
    [
        ("notice_delivered", {}, "outcome"),  # a visit's outcome on a call case
        ("promised", {}, "promise_date"),
        ("promised", {"promise_date": date(2026, 11, 1)}, "promise_date"),
    ],
)
def test_an_outcome_that_does_not_fit_names_the_field(
    ledger: Ledger, outcome: str, extra: dict[str, object], field: str
) -> None:
    acct, _, _ = two_bills(ledger)
    ledger.sweep(NOV_20)
    case = ledger.open_case(acct["account_no"])
    assert case is not None and case.id is not None

    with pytest.raises(cases.InvalidInput) as caught:
        ledger.record(case.id, outcome, today=NOV_20, **extra)
    assert caught.value.field == field
    assert ledger.open_case(acct["account_no"]).attempts == 0  # type: ignore[union-attr]


def test_a_closed_case_takes_no_more_outcomes(ledger: Ledger) -> None:
    acct, _, _ = two_bills(ledger, phone=None)
    ledger.sweep(NOV_20)
    case = ledger.open_case(acct["account_no"])
    assert case is not None and case.id is not None
    ledger.record(case.id, "notice_delivered", today=NOV_20)

    with pytest.raises(cases.CaseClosed):
        ledger.record(case.id, "no_answer", today=NOV_21)


def test_a_disabled_agents_open_cases_go_to_a_colleague(ledger: Ledger) -> None:
    from notifier.escalation.agents import disable_agent

    acct, _, _ = two_bills(ledger)
    leaving = ledger.add_agent(acct["area"], "caller")
    ledger.sweep(NOV_20)
    staying = ledger.add_agent(acct["area"], "caller")

    with ledger.db() as session:
        moved, waiting = disable_agent(session, leaving, now=ledger.runtime.clock(), actor="test")
    assert (moved, waiting) == (1, 0)
    assert ledger.open_case(acct["account_no"]).assignee_id == staying  # type: ignore[union-attr]
