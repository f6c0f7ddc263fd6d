"""Cases follow the ledger (issue 17, item 6): a payment that takes the rule's ground away
closes the case; the rule holding again reopens it; a payment made just before the trigger
but heard of after the case opened is told apart from money collected.

Bimonthly bills fall due on the 20th of odd months: B07 on 20 Sep, B09 on 20 Nov, B11 on
20 Jan. The rule fires for B07 on 20 Nov (B09's due date).
"""

from __future__ import annotations

from datetime import date

import pytest
from sqlmodel import col, select

from notifier.escalation.lists import agent_list, stats
from notifier.escalation.models import EscalationChange
from notifier.escalation.sweep import sweep
from tests.support import events
from tests.support.ledger import Ledger

SEP_20, NOV_20, NOV_21, NOV_24 = date(2026, 9, 20), date(2026, 11, 20), date(2026, 11, 21), date(2026, 11, 24)  # fmt: skip
DEC_18, JAN_19, JAN_20 = date(2026, 12, 18), date(2027, 1, 19), date(2027, 1, 20)
LONG_AGO = date(2000, 1, 1)


def history(ledger: Ledger, case_id: int) -> list[tuple[str, str | None]]:
    with ledger.db() as session:
        return [
            (c.change, c.detail)
            for c in session.exec(
                select(EscalationChange)
                .where(EscalationChange.escalation_id == case_id)
                .order_by(col(EscalationChange.id))
            )
        ]


def test_the_older_bill_paid_closes_the_case_until_the_rest_reaches_its_own_date(
    ledger: Ledger,
) -> None:
    acct = events.account(area=ledger.new_area())
    caller = ledger.add_agent(acct["area"], "caller")
    b07 = ledger.issue(acct, "2026-07", SEP_20)
    b09 = ledger.issue(acct, "2026-09", NOV_20)
    ledger.sweep(NOV_20)
    ledger.sweep(NOV_21)  # B09 is overdue now: it joins the case
    [(case, bills)] = ledger.cases(acct["account_no"])
    assert bills == sorted([b07["bill_no"], b09["bill_no"]]) and case.id is not None

    # 24 Nov: B07 is paid. B09 is owed, but its own second billing date (20 Jan) is far off.
    ledger.pay(acct, b07, on=NOV_24)

    [(closed, _)] = ledger.cases(acct["account_no"])
    assert (closed.status, closed.outcome) == ("done", "paid")
    change, detail = history(ledger, case.id)[-1]
    assert change == "closed" and detail is not None and b09["bill_no"] in detail
    with ledger.db() as session:
        assert agent_list(session, caller, "call", today=NOV_24) == []

    for day in (DEC_18, JAN_19):  # a month and more overdue, but the rule does not hold yet
        ledger.sweep(day)
        assert ledger.open_case(acct["account_no"]) is None

    ledger.issue(acct, "2026-11", JAN_20)
    run = ledger.sweep(JAN_20)  # B09 unpaid when B11 falls due: the rule holds again

    reopened = ledger.open_case(acct["account_no"])
    assert reopened is not None and reopened.id == case.id  # the same case, its history kept
    assert (reopened.kind, reopened.assignee_id, reopened.outcome) == ("call", caller, None)
    assert run.reopened >= 1  # the ledger is shared: other tests' accounts sweep too
    [(_, bills)] = ledger.cases(acct["account_no"])
    assert bills == sorted([b07["bill_no"], b09["bill_no"]])
    # Reopened in the run, then given out with the day's other waiting cases, by priority.
    assert history(ledger, case.id)[-2:] == [
        ("reopened", "as of 2027-01-20: the rule holds again"),
        ("assigned", f"to agent {caller}"),
    ]
    with ledger.db() as session:
        [row] = agent_list(session, caller, "call", today=JAN_20)
    assert [b.bill_no for b in row.bills] == [b09["bill_no"]] and row.total == b09["amount"]

    ledger.sweep(JAN_20)  # and a second run that day changes nothing
    assert len(ledger.cases(acct["account_no"])) == 1


def test_a_case_stays_open_while_what_is_left_still_meets_the_rule(ledger: Ledger) -> None:
    acct = events.account(area=ledger.new_area())
    b05 = ledger.issue(acct, "2026-05", date(2026, 7, 20))
    ledger.issue(acct, "2026-07", SEP_20)
    ledger.issue(acct, "2026-09", NOV_20)
    ledger.sweep(NOV_21)

    ledger.pay(acct, b05, on=NOV_24)  # B07 passed its own date (20 Nov): still a case

    case = ledger.open_case(acct["account_no"])
    assert case is not None and case.outcome is None
    ledger.sweep(NOV_24)
    assert ledger.open_case(acct["account_no"]) is not None


def test_every_bill_paid_closes_the_case_and_a_later_debt_opens_a_new_one(ledger: Ledger) -> None:
    acct = events.account(area=ledger.new_area())
    b07 = ledger.issue(acct, "2026-07", SEP_20)
    b09 = ledger.issue(acct, "2026-09", NOV_20)
    ledger.sweep(NOV_20)
    ledger.pay(acct, b07, on=NOV_21)
    ledger.pay(acct, b09, on=NOV_21)
    [(first, _)] = ledger.cases(acct["account_no"])
    assert (first.status, first.outcome) == ("done", "paid")

    ledger.issue(acct, "2026-11", JAN_20)
    ledger.issue(acct, "2027-01", date(2027, 3, 20))  # a Saturday: due for the rule on Monday
    ledger.sweep(date(2027, 3, 22))  # a closed case owing nothing is history, not reopened

    [(old, _), (new, bills)] = ledger.cases(acct["account_no"])
    assert old.id == first.id and old.status == "done"
    assert new.status == "open" and bills == [f"B202611-{acct['account_no']}"]


@pytest.mark.parametrize(
    ("paid_on", "outcome"),
    [
        (date(2026, 11, 19), "paid_before_trigger"),  # the day before
        (date(2026, 11, 17), "paid_before_trigger"),  # payment_grace_days (3) before
        (date(2026, 11, 16), "paid"),  # longer before than any bank takes: not the grace
        (NOV_21, "paid"),  # after the trigger: collected
    ],
    ids=["1 day before", "3 days before", "4 days before", "the day after"],
)
def test_a_payment_made_before_the_trigger_but_heard_of_late_is_counted_apart(
    ledger: Ledger, paid_on: date, outcome: str
) -> None:
    area = ledger.new_area()
    acct = events.account(area=area)
    b07 = ledger.issue(acct, "2026-07", SEP_20)
    ledger.issue(acct, "2026-09", NOV_20)
    ledger.sweep(NOV_20)
    assert ledger.open_case(acct["account_no"]) is not None

    ledger.pay(acct, b07, on=paid_on)  # the bank's file reaches billing on 21 Nov or later

    [(case, _)] = ledger.cases(acct["account_no"])
    assert (case.status, case.outcome) == ("done", outcome)
    with ledger.db() as session:
        counted = stats(session, since=LONG_AGO, tz=ledger.runtime.policy.tz)
    assert counted["closed_by_area"][area] == {outcome: 1}


def test_the_stats_keep_paid_before_trigger_apart_from_collected(ledger: Ledger) -> None:
    area = ledger.new_area()
    late_file, collected = events.account(area=area), events.account(area=area)
    owed = {}
    for acct in (late_file, collected):
        owed[acct["account_no"]] = ledger.issue(acct, "2026-07", SEP_20)
        ledger.issue(acct, "2026-09", NOV_20)
    ledger.sweep(NOV_20)

    ledger.pay(late_file, owed[late_file["account_no"]], on=date(2026, 11, 19))
    ledger.pay(collected, owed[collected["account_no"]], on=NOV_24)

    with ledger.db() as session:
        counted = stats(session, since=LONG_AGO, tz=ledger.runtime.policy.tz)
    assert counted["closed_by_area"][area] == {"paid": 1, "paid_before_trigger": 1}
    assert area not in counted["open_by_area"]


def test_a_sweep_in_small_chunks_opens_and_joins_as_one_does(ledger: Ledger) -> None:
    """Each chunk reads the cases of its range of account numbers: the accounts in between
    that the day leaves alone keep their cases as they were."""
    area = ledger.new_area()
    caller = ledger.add_agent(area, "caller")
    prefix = events.new_account_no()[:6]
    acct = [events.account(f"{prefix}9999{i}", area=area) for i in range(1, 6)]
    nos = [a["account_no"] for a in acct]
    for a in (acct[1], acct[3]):
        ledger.issue(a, "2026-07", SEP_20)
        ledger.issue(a, "2026-09", NOV_20)
    ledger.sweep(NOV_21)  # the 2nd and 4th: cases of both bills, nothing left to do for them
    before = {no: ledger.cases(no) for no in (nos[1], nos[3])}
    b07 = ledger.issue(acct[2], "2026-07", SEP_20)
    b09 = ledger.issue(acct[2], "2026-09", NOV_20)
    ledger.sweep(NOV_20)  # the 3rd: a case of B07; B09 is not overdue yet
    for a in (acct[0], acct[4]):
        ledger.issue(a, "2026-07", SEP_20)
        ledger.issue(a, "2026-09", NOV_20)

    # Chunks of two: whichever way the day's candidates pair up, one chunk spans an
    # account it leaves alone.
    run = sweep(ledger.runtime.db, ledger.policy, NOV_21, trigger="test", chunk=2)

    assert run.opened >= 2 and run.joined >= 1
    for no in (nos[0], nos[4]):
        [(case, case_bills)] = ledger.cases(no)
        assert case.status == "open" and case.assignee_id == caller and len(case_bills) == 2
        assert case.id is not None
        assert history(ledger, case.id) == [
            ("opened", f"as of {NOV_21}"),
            ("assigned", f"to agent {caller}"),
        ]
    [(joined, joined_bills)] = ledger.cases(nos[2])
    assert joined_bills == sorted([b07["bill_no"], b09["bill_no"]]) and joined.id is not None
    assert history(ledger, joined.id)[-1] == ("bills joined", b09["bill_no"])
    for no, cases in before.items():
        [(case, case_bills)] = ledger.cases(no)
        [(was, was_bills)] = cases
        assert (case.id, case.status, case_bills) == (was.id, was.status, was_bills)
        assert case.updated_at == was.updated_at
