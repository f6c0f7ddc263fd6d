"""Who is given a case first when agents' room is short (docs/agents.md, "Escalation": capacity)."""

from __future__ import annotations

from notifier.escalation.assignment import priority


def test_a_protected_visit_comes_before_any_debt_and_a_call_does_not_jump_the_queue() -> None:
    waiting = {
        "protected visit, small debt": priority(
            kind="visit", protections=["life_support"], owed=200, days_overdue=61, case_id=9
        ),
        "large visit": priority(
            kind="visit", protections=[], owed=9000, days_overdue=61, case_id=1
        ),
        "protected call": priority(
            kind="call", protections=["elderly"], owed=100, days_overdue=61, case_id=2
        ),
        "older smaller debt": priority(
            kind="call", protections=[], owed=600, days_overdue=123, case_id=3
        ),
        "newer larger debt": priority(
            kind="call", protections=[], owed=1000, days_overdue=61, case_id=4
        ),
    }
    assert sorted(waiting, key=waiting.__getitem__) == [
        "protected visit, small debt",
        "large visit",
        "older smaller debt",  # 73,800
        "newer larger debt",  # 61,000
        "protected call",
    ]


def test_equal_pressure_goes_to_the_older_case() -> None:
    same = {"kind": "call", "protections": [], "owed": 1000, "days_overdue": 30}
    assert priority(**same, case_id=5) < priority(**same, case_id=6)  # type: ignore[arg-type]
