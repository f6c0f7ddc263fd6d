"""The right person for a case, on the calendar: the customer's language, each agent's daily
capacity, the overflow by priority, remote areas, protected customers.

Bimonthly bills as in test_escalation_calendar: B07 due Fri 20 Nov's two months
back (20 Sep), B09 due 20 Nov; a bill unpaid when the next falls due goes to a
person that day. 20 Nov 2026 is a Friday; the next business days are Mon 23
and Tue 24.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import pytest
from pydantic import ValidationError
from sqlmodel import col, select

from notifier.accounts import service as accounts
from notifier.accounts.models import Account
from notifier.audit.models import AuditEntry
from notifier.escalation import service as cases
from notifier.escalation.lists import CaseFilter, agent_list, case_rows
from notifier.escalation.models import EscalationChange
from notifier.escalation.sweep import sweep
from notifier.events.schema import field_errors
from tests.support import events
from tests.support.ledger import SUPERVISOR, Ledger

SEP_20, NOV_20, NOV_23, NOV_24 = date(2026, 9, 20), date(2026, 11, 20), date(2026, 11, 23), date(2026, 11, 24)  # fmt: skip


def in_arrears(ledger: Ledger, area: str, amount: int = 1830, **account: Any) -> dict[str, Any]:
    """An account of ``area`` whose B07 (``amount``) is unpaid when B09 falls due on 20 Nov."""
    acct = events.account(area=area, **account)
    ledger.issue(acct, "2026-07", SEP_20, amount=amount)
    ledger.issue(acct, "2026-09", NOV_20)
    return acct


def assignee(ledger: Ledger, acct: dict[str, Any]) -> int | None:
    case = ledger.open_case(acct["account_no"])
    assert case is not None
    return case.assignee_id


def test_a_customer_who_speaks_taiwanese_goes_to_the_agent_who_does(ledger: Ledger) -> None:
    area = ledger.new_area()
    mandarin = ledger.add_agent(area, name="甲", languages=["zh-TW"])  # first: wins ties
    taiwanese = ledger.add_agent(area, name="乙", languages=["zh-TW", "nan"])
    grandma = in_arrears(ledger, area, spoken_language="nan")
    grandpa = in_arrears(ledger, area, spoken_language="nan")
    anyone = in_arrears(ledger, area)

    ledger.sweep(NOV_20)

    # Both Hokkien speakers go to her although she then has more cases; the rest by load.
    assert (assignee(ledger, grandma), assignee(ledger, grandpa)) == (taiwanese, taiwanese)
    assert assignee(ledger, anyone) == mandarin
    with ledger.db() as session:
        rows = agent_list(session, taiwanese, "call", today=NOV_20)
    assert sorted(r.account_no for r in rows) == sorted(a["account_no"] for a in (grandma, grandpa))
    assert {r.spoken_language for r in rows} == {"nan"}


def test_when_the_speaker_is_full_another_agent_of_the_area_takes_the_case(
    ledger: Ledger,
) -> None:
    area = ledger.new_area()
    mandarin = ledger.add_agent(area, name="甲")
    hakka = ledger.add_agent(area, name="丙", languages=["hak"], daily_capacity=1)
    first = in_arrears(ledger, area, amount=3000, spoken_language="hak")
    second = in_arrears(ledger, area, amount=1000, spoken_language="hak")

    ledger.sweep(NOV_20)

    assert (assignee(ledger, first), assignee(ledger, second)) == (hakka, mandarin)


def test_capacity_two_with_five_cases_two_today_the_rest_by_priority_a_protected_visit_first(
    ledger: Ledger,
) -> None:
    area = ledger.new_area()
    field = ledger.add_agent(area, "field", name="陳志明", daily_capacity=2)
    # No phone: every one is a visit. The protected customer owes the least.
    life_support = in_arrears(ledger, area, amount=200, phone=None, protections=["life_support"])
    owed = {n: in_arrears(ledger, area, amount=n, phone=None) for n in (1000, 3000, 5000, 4000)}

    run = ledger.sweep(NOV_20)

    def given() -> dict[int | str, int | None]:
        found: dict[int | str, int | None] = {"life_support": assignee(ledger, life_support)}
        return found | {n: assignee(ledger, acct) for n, acct in owed.items()}

    assert given() == {"life_support": field, 5000: field, 4000: None, 3000: None, 1000: None}
    assert run.unassigned >= 3
    with ledger.db() as session:
        waiting = case_rows(session, CaseFilter(area=area, waiting_for_capacity=True), today=NOV_20)
        changes = session.exec(
            select(EscalationChange.change).where(
                col(EscalationChange.escalation_id).in_([r.case_id for r in waiting])
            )
        ).all()
    assert sorted(r.total for r in waiting) == [1000, 3000, 4000]
    assert {r.capacity_wait_since for r in waiting} == {NOV_20}
    assert changes.count("waiting for capacity") == 3

    ledger.sweep(NOV_20)  # the same day again: her two are given, nothing more
    assert given()[4000] is None

    ledger.sweep(NOV_23)  # Monday: two more, the larger debts first
    assert given() == {"life_support": field, 5000: field, 4000: field, 3000: field, 1000: None}
    ledger.sweep(NOV_24)
    assert given()[1000] == field
    with ledger.db() as session:
        assert (
            case_rows(session, CaseFilter(area=area, waiting_for_capacity=True), today=NOV_24) == []
        )
        today = agent_list(session, field, "visit", today=NOV_24)
    assert len(today) == 5 and next(r for r in today if r.protections).protections == [
        "life_support"
    ]


def test_amount_owed_times_days_overdue_ranks_the_calls(ledger: Ledger) -> None:
    area = ledger.new_area()
    caller = ledger.add_agent(area, daily_capacity=1)
    # A monthly account owing NT$2,000 for 31 days: 62,000.
    recent = events.account(area=area)
    ledger.issue(recent, "2026-09", date(2026, 10, 20), amount=2000)
    ledger.issue(recent, "2026-10", NOV_20, amount=500)
    # NT$600 in all, but owed since 20 Jul, 123 days: 73,800.
    old = events.account(area=area)
    ledger.issue(old, "2026-05", date(2026, 7, 20), amount=300)
    ledger.issue(old, "2026-07", SEP_20, amount=300)

    ledger.sweep(NOV_20)

    assert (assignee(ledger, old), assignee(ledger, recent)) == (caller, None)


def test_a_remote_area_gets_a_visit_even_with_a_phone(ledger: Ledger) -> None:
    island, town = ledger.new_area(), ledger.new_area()
    policy = ledger.policy.model_copy(update={"remote_areas": [island]})
    remote = in_arrears(ledger, island)
    near = in_arrears(ledger, town)

    sweep(ledger.runtime.db, policy, NOV_20, trigger="test")

    assert [ledger.open_case(a["account_no"]).kind for a in (remote, near)] == ["visit", "call"]  # type: ignore[union-attr]


def test_any_protection_means_a_visit_and_the_old_flag_still_does(ledger: Ledger) -> None:
    area = ledger.new_area()
    elderly = in_arrears(ledger, area, protections=["elderly"])
    flagged = in_arrears(ledger, area, vulnerable=True)

    ledger.sweep(NOV_20)

    assert [ledger.open_case(a["account_no"]).kind for a in (elderly, flagged)] == [
        "visit",
        "visit",
    ]  # type: ignore[union-attr]


def test_a_supervisors_protection_stays_when_the_producer_sends_its_list_again(
    ledger: Ledger,
) -> None:
    acct = events.account(area=ledger.new_area(), protections=["low_income"])
    ledger.issue(acct, "2026-09", NOV_20)
    with ledger.db() as session:
        accounts.add_protections(
            session,
            acct["account_no"],
            ["life_support"],
            actor="課長",
            now=datetime.now().astimezone(),
        )

    # The producer's next list drops low_income and names disabled: its own list is replaced.
    ledger.issue({**acct, "protections": ["disabled"]}, "2026-11", date(2027, 1, 20))

    with ledger.db() as session:
        account = session.get(Account, acct["account_no"])
        assert account is not None
        assert account.protections == ["life_support", "disabled"]
        entry = session.exec(
            select(AuditEntry).where(AuditEntry.target == f"account {acct['account_no']}")
        ).one()
    assert (entry.actor, entry.action) == ("課長", "account.protections")
    assert entry.detail == {
        "added": ["life_support"], "before": ["low_income"], "now": ["life_support", "low_income"],
    }  # fmt: skip


@pytest.mark.parametrize(
    ("field", "value", "path"),
    [
        ("protections", ["vip"], "account.protections[0]"),
        ("protections", "life_support", "account.protections"),
        ("spoken_language", "fr", "account.spoken_language"),
    ],
)
def test_an_unknown_protection_or_language_is_refused_naming_the_field(
    ledger: Ledger, field: str, value: object, path: str
) -> None:
    acct = events.account(area=ledger.new_area(), **{field: value})
    with pytest.raises(ValidationError) as caught:
        ledger.post(events.unpaid(acct))
    with ledger.db() as session:
        assert session.get(Account, acct["account_no"]) is None  # nothing stored
    assert [e.field for e in field_errors(caught.value)] == [path]


def test_a_supervisor_gives_a_waiting_case_to_an_agent_of_another_area(ledger: Ledger) -> None:
    home, away = ledger.new_area(), ledger.new_area()
    ledger.add_agent(home, name="本區", daily_capacity=1)
    in_arrears(ledger, home, amount=5000)  # the larger debt takes today's one place
    waiting = in_arrears(ledger, home, amount=1830)
    ledger.sweep(NOV_20)
    case = ledger.open_case(waiting["account_no"])
    assert case is not None and case.id is not None
    assert (case.assignee_id, case.capacity_wait_since) == (None, NOV_20)
    helper = ledger.add_agent(away, name="外區支援")

    with ledger.db() as session:
        moved = cases.assign(
            session, case.id, helper, SUPERVISOR, now=datetime.now().astimezone(), today=NOV_20
        )
        assert (moved.assignee_id, moved.assigned_on, moved.capacity_wait_since) == (
            helper, NOV_20, None,
        )  # fmt: skip
        [change] = session.exec(
            select(EscalationChange.detail).where(
                EscalationChange.escalation_id == case.id, EscalationChange.change == "reassigned"
            )
        ).all()
        entry = session.exec(select(AuditEntry).where(AuditEntry.target == f"case {case.id}")).one()
    assert change == f"agent None → agent {helper} (of {away}, across areas)"
    assert entry.detail == {"from": None, "to": helper, "across_areas": True}
    with ledger.db() as session:
        assert [r.case_id for r in agent_list(session, helper, "call", today=NOV_20)] == [case.id]


def test_a_call_that_becomes_a_visit_goes_to_a_field_agent_who_speaks_hakka(
    ledger: Ledger,
) -> None:
    area = ledger.new_area()
    ledger.add_agent(area, "caller")
    ledger.add_agent(area, "field", name="甲")
    hakka = ledger.add_agent(area, "field", name="丙", languages=["hak"], daily_capacity=1)
    first = in_arrears(ledger, area, spoken_language="hak")
    second = in_arrears(ledger, area, spoken_language="hak")
    ledger.sweep(NOV_20)
    calls = [ledger.open_case(a["account_no"]) for a in (first, second)]
    assert all(c is not None and c.kind == "call" for c in calls)

    for case in calls:
        assert case is not None and case.id is not None
        ledger.record(case.id, "wrong_number", today=NOV_23)

    # The one Hakka-speaking field agent has room for one on Monday; the other goes by load.
    visits = [ledger.open_case(a["account_no"]) for a in (first, second)]
    assert [(v.kind, v.assignee_id == hakka, v.assigned_on) for v in visits if v] == [
        ("visit", True, NOV_23), ("visit", False, NOV_23),
    ]  # fmt: skip
