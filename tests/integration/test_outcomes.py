"""Outcomes that mean something (issue 17, item 7), as the calendar moves on.

B07 falls due on 20 Sep 2026 and B09 on Friday 20 Nov, when the case for B07
opens. Business days are Monday to Friday (no holidays in the shipped policy).
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import col, select

from notifier.accounts.models import Account
from notifier.auth import keys
from notifier.escalation import service as cases
from notifier.escalation.lists import CaseFilter, agent_list, case_rows
from notifier.escalation.models import Escalation, EscalationChange
from notifier.webhooks import service as webhooks
from notifier.webhooks.models import ProducerCallback
from tests.support import events
from tests.support.ledger import Ledger

SEP_20, NOV_20, NOV_23 = date(2026, 9, 20), date(2026, 11, 20), date(2026, 11, 23)
NOV_24, NOV_25, JAN_20 = date(2026, 11, 24), date(2026, 11, 25), date(2027, 1, 20)
TAIPEI = ZoneInfo("Asia/Taipei")


def taipei(day: date, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute, second), tzinfo=TAIPEI)


def a_case(ledger: Ledger, **account: Any) -> tuple[dict[str, Any], dict[str, Any], Escalation]:
    """An account whose B07 went to a person on 20 Nov; (account, B07, the case)."""
    acct = events.account(area=ledger.new_area(), **account)
    b07 = ledger.issue(acct, "2026-07", SEP_20)
    ledger.issue(acct, "2026-09", NOV_20)
    ledger.sweep(NOV_20)
    case = ledger.open_case(acct["account_no"])
    assert case is not None and case.id is not None
    return acct, b07, case


def changes(ledger: Ledger, case_id: int) -> list[str]:
    with ledger.db() as session:
        return list(
            session.exec(
                select(EscalationChange.change)
                .where(EscalationChange.escalation_id == case_id)
                .order_by(col(EscalationChange.id))
            )
        )


# -- wrong_number -------------------------------------------------------------------------------


def test_a_wrong_number_marks_the_phone_tells_the_producer_and_sends_someone_round(
    ledger: Ledger,
) -> None:
    area = ledger.new_area()
    with ledger.db() as session:
        producer, _ = keys.create_key(session, role="producer", name=f"billing {area}")
        assert producer.id is not None
        producer_id = producer.id
        # Nothing listens there: the outbox row is the promise to the producer.
        webhooks.register(
            session, producer_id, "http://127.0.0.1:9/billing", deployed=False, allow_private=True,
            now=taipei(NOV_20, 8),
        )  # fmt: skip
    acct = events.account(area=area)
    caller = ledger.add_agent(area, "caller")
    field_agent = ledger.add_agent(area, "field", name="陳志明")
    b07 = events.unpaid(acct, period="2026-07", due=SEP_20)
    b09 = events.unpaid(acct, period="2026-09", due=NOV_20)
    ledger.post(b07, b09, producer_key_id=producer_id)
    ledger.sweep(NOV_20)
    case = ledger.open_case(acct["account_no"])
    assert case is not None and case.id is not None and case.assignee_id == caller

    after = ledger.record(
        case.id, "wrong_number", today=NOV_20, at=taipei(NOV_20, 9),
        actor=cases.Actor("林建宏", agent_id=caller), note="a noodle shop answered",
    )  # fmt: skip

    assert (after.kind, after.assignee_id, after.status) == ("visit", field_agent, "open")
    with ledger.db() as session:
        account = session.get(Account, acct["account_no"])
        assert account is not None and account.invalid_phone == acct["phone"]
        assert agent_list(session, caller, "call", today=NOV_20) == []
        [visit] = agent_list(session, field_agent, "visit", today=NOV_20)
        [seen] = case_rows(session, CaseFilter(case_id=case.id), today=NOV_20)
        owed = session.exec(
            select(ProducerCallback).where(
                ProducerCallback.key_id == producer_id,
                ProducerCallback.type == "account.contact_invalid",
            )
        ).all()
    assert visit.case_id == case.id and seen.phone_invalid
    [callback] = owed
    assert callback.body == {
        "type": "account.contact_invalid", "occurred_at": taipei(NOV_20, 9).isoformat(),
        "event_id": None, "account_no": acct["account_no"], "contact": "phone",
        "reason": "wrong_number", "escalation_id": case.id,
    }  # fmt: skip

    # The visit ends; when B09 goes to a person in January, nobody dials that number again.
    ledger.record(case.id, "notice_delivered", today=NOV_23)
    ledger.issue(acct, "2026-11", JAN_20)
    ledger.sweep(JAN_20)
    again = ledger.open_case(acct["account_no"])
    assert again is not None and again.kind == "visit"


def test_a_new_number_from_the_producer_is_called_again(ledger: Ledger) -> None:
    acct, _, case = a_case(ledger)
    assert case.id is not None
    ledger.record(case.id, "wrong_number", today=NOV_20)
    ledger.record(case.id, "notice_delivered", today=NOV_23)

    ledger.issue({**acct, "phone": "+886922333444"}, "2026-11", JAN_20)
    ledger.sweep(JAN_20)

    again = ledger.open_case(acct["account_no"])
    assert again is not None and again.kind == "call"
    with ledger.db() as session:
        [row] = case_rows(session, CaseFilter(case_id=again.id), today=JAN_20)
    assert (row.phone, row.phone_invalid) == ("+886922333444", False)


# -- refused ------------------------------------------------------------------------------------


def test_a_refused_call_becomes_a_visit_and_stays_open(ledger: Ledger) -> None:
    acct, _, case = a_case(ledger)
    field_agent = ledger.add_agent(acct["area"], "field")
    assert case.id is not None

    after = ledger.record(case.id, "refused", today=NOV_20, note="says the meter is wrong")

    assert (after.status, after.kind, after.assignee_id) == ("open", "visit", field_agent)
    with ledger.db() as session:
        [row] = agent_list(session, field_agent, "visit", today=NOV_20)
    assert row.case_id == case.id and row.attempts[-1].outcome == "refused"


def test_a_refused_visit_waits_for_the_next_stage_of_the_ladder(ledger: Ledger) -> None:
    acct, _, case = a_case(ledger, vulnerable=True)
    assert case.id is not None and case.kind == "visit"
    field_agent = ledger.add_agent(acct["area"], "field")
    ledger.sweep(NOV_23)  # assigns it

    after = ledger.record(case.id, "refused", today=NOV_23)

    assert (after.status, after.stage) == ("open", "final_demand")
    assert "marked for the next stage" in changes(ledger, case.id)
    with ledger.db() as session:
        assert agent_list(session, field_agent, "visit", today=NOV_24) == []  # no visit to make
        [row] = case_rows(session, CaseFilter(status="open", area=acct["area"]), today=NOV_24)
    assert (row.case_id, row.stage) == (case.id, "final_demand")  # the supervisors see it
    ledger.sweep(NOV_24)
    assert ledger.open_case(acct["account_no"]) is not None  # never closed as if done


# -- paid on the customer's word -----------------------------------------------------------------


def test_a_payment_the_customer_claims_comes_back_with_a_note_if_the_ledger_never_shows_it(
    ledger: Ledger,
) -> None:
    acct, _, case = a_case(ledger)
    caller = ledger.add_agent(acct["area"], "caller")
    ledger.sweep(NOV_20)
    assert case.id is not None

    claimed = ledger.record(
        case.id, "paid", today=NOV_20, at=taipei(NOV_20, 10),
        actor=cases.Actor("林建宏", agent_id=caller), note="paid at 7-Eleven yesterday",
    )  # fmt: skip

    # Friday 20 Nov + 3 business days = Wednesday 25 Nov.
    assert (claimed.status, claimed.outcome, claimed.follow_up_on) == (
        "open", "payment_claimed", NOV_25,
    )  # fmt: skip
    with ledger.db() as session:
        assert agent_list(session, caller, "call", today=NOV_24) == []
        [back] = agent_list(session, caller, "call", today=NOV_25)
    assert back.case_id == case.id and back.note is not None
    assert "said on 2026-11-20" in back.note and "still shows it unpaid" in back.note


def test_a_claimed_payment_that_reaches_the_ledger_closes_the_case(ledger: Ledger) -> None:
    acct, b07, case = a_case(ledger)
    assert case.id is not None
    ledger.record(case.id, "paid", today=NOV_20)
    assert ledger.open_case(acct["account_no"]) is not None  # a word is not a payment

    ledger.pay(acct, b07, on=NOV_23)

    [(closed, _)] = ledger.cases(acct["account_no"])
    assert (closed.status, closed.outcome) == ("done", "paid")


# -- promise dates and notice days --------------------------------------------------------------


@pytest.mark.parametrize(
    ("actor", "latest"),
    [
        (cases.Actor("林建宏", agent_id=None), date(2026, 12, 10)),  # 14 business days on
        # 60 business days on, past 行憲紀念日, 元旦 and the Lunar New Year of 2027
        # (2/4-2/10): seven weekdays off.
        (cases.Actor("課長", supervisor=True), date(2027, 2, 23)),
    ],
    ids=["agent", "supervisor"],
)
def test_a_promise_is_bounded_in_business_days(
    ledger: Ledger, actor: cases.Actor, latest: date
) -> None:
    acct, _, case = a_case(ledger)
    assert case.id is not None
    if not actor.supervisor:
        agent = ledger.add_agent(acct["area"], "caller")
        with ledger.db() as session:
            cases.assign(session, case.id, agent, ledger_supervisor(), now=taipei(NOV_20, 8))
        actor = cases.Actor(actor.name, agent_id=agent)

    with pytest.raises(cases.InvalidInput) as caught:
        ledger.record(
            case.id, "promised", today=NOV_20, actor=actor, promise_date=latest + timedelta(days=1)
        )
    assert caught.value.field == "promise_date" and latest.isoformat() in caught.value.message
    assert ledger.open_case(acct["account_no"]).attempts == 0  # type: ignore[union-attr]

    kept = ledger.record(case.id, "promised", today=NOV_20, actor=actor, promise_date=latest)
    assert kept.follow_up_on == latest + timedelta(days=1)


def ledger_supervisor() -> cases.Actor:
    return cases.Actor("test supervisor", supervisor=True)


def test_a_holiday_is_not_a_business_day_for_the_bounds(ledger: Ledger) -> None:
    policy = ledger.policy.model_copy(update={"holidays": [date(2026, 11, 23)]})
    # Friday 20 Nov + 3 business days, Monday 23 Nov off: Thursday 26 Nov.
    assert policy.add_business_days(NOV_20, 3) == date(2026, 11, 26)
    assert ledger.policy.add_business_days(NOV_20, 3) == NOV_25


@pytest.mark.parametrize(
    ("day", "ok"),
    [
        (NOV_20, True),
        (date(2026, 11, 27), True),
        (date(2026, 11, 28), False),
        (date(2026, 11, 19), False),
    ],
    ids=["today", "7 days ahead", "8 days ahead", "yesterday"],
)
def test_a_visit_notice_is_dated_today_to_seven_days_ahead(
    ledger: Ledger, day: date, ok: bool
) -> None:
    if ok:
        assert cases.check_notice_day(day, today=NOV_20, policy=ledger.policy) == day
        return
    with pytest.raises(cases.InvalidInput) as caught:
        cases.check_notice_day(day, today=NOV_20, policy=ledger.policy)
    assert caught.value.field == "day"


# -- no_answer spacing --------------------------------------------------------------------------


def test_three_no_answers_in_a_minute_are_one_try(ledger: Ledger) -> None:
    acct, _, case = a_case(ledger)
    ledger.add_agent(acct["area"], "field")
    assert case.id is not None

    for second in (0, 20, 50):
        after = ledger.record(case.id, "no_answer", today=NOV_20, at=taipei(NOV_20, 9, 0, second))

    assert (after.kind, after.failed_calls, after.attempts) == ("call", 1, 3)
    assert after.next_call_at == taipei(NOV_20, 13)
    assert changes(ledger, case.id).count("call not counted") == 2

    # Spaced out, they count: 13:00 and the next morning make three, and a visit.
    ledger.record(case.id, "no_answer", today=NOV_20, at=taipei(NOV_20, 13))
    third = ledger.record(case.id, "no_answer", today=NOV_23, at=taipei(NOV_23, 9))
    assert (third.kind, third.failed_calls) == ("visit", 3)
