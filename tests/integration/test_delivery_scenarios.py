"""An unpaid bill through the real stack: API → database → broker → worker → sandbox."""

from __future__ import annotations

import json

from sqlmodel import col, func, select

from notifier.deliveries.models import Notification
from notifier.events.models import Event
from tests.support import events
from tests.support.stack import Stack


def test_an_account_with_every_contact_gets_one_delivery_per_channel(stack: Stack) -> None:
    acct = events.account()
    answer = stack.post(events.unpaid(acct, level=1))
    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] == "accepted"

    rows = stack.settled(acct["account_no"], count=3)
    assert {d.channel: d.status for d in rows} == {
        "push": "delivered",
        "sms": "delivered",
        "email": "sent",
    }
    sms = next(d for d in rows if d.channel == "sms")
    assert "NT$1,830" in sms.content["body"] and sms.segments and sms.segments >= 1
    assert sms.address_masked == "+886 912 ***678"
    recorded = (stack.folder / "sandbox" / "sms.jsonl").read_text().splitlines()
    assert any(json.loads(line)["delivery_id"] == sms.id for line in recorded)


def test_a_second_reminder_also_calls(stack: Stack) -> None:
    acct = events.account()
    stack.post(events.unpaid(acct, level=2))
    rows = stack.settled(acct["account_no"], count=4)
    assert sorted(d.channel for d in rows) == ["email", "push", "sms", "voice"]


def test_no_digital_contact_sends_a_postcard(stack: Stack) -> None:
    acct = events.account(phone=None, email=None, push_tokens=None)
    stack.post(events.unpaid(acct))
    rows = stack.settled(acct["account_no"], count=1)
    assert [(d.channel, d.status) for d in rows] == [("postcard", "sent")]
    assert rows[0].address_masked == "苗栗縣頭份市…"


def test_abnormal_usage_goes_to_push_sms_and_email(stack: Stack) -> None:
    acct = events.account()
    assert stack.post(events.abnormal_usage(acct)).status_code == 202
    rows = stack.settled(acct["account_no"], count=3)
    assert sorted(d.channel for d in rows) == ["email", "push", "sms"]
    sms = next(d for d in rows if d.channel == "sms")
    assert "420" in sms.content["body"] and "117%" in sms.content["body"]


def test_the_same_event_posted_twice_is_stored_once(stack: Stack) -> None:
    acct = events.account(push_tokens=None, email=None)
    event = events.unpaid(acct)
    first, second = stack.post(event), stack.post(event)
    assert (first.status_code, first.json()["status"]) == (202, "accepted")
    assert (second.status_code, second.json()["status"]) == (200, "duplicate")
    stack.settled(acct["account_no"], count=1)
    with stack.db() as session:
        stored = session.exec(select(func.count()).where(Event.event_id == event["event_id"])).one()
        notices = session.exec(
            select(func.count()).where(Notification.account_no == acct["account_no"])
        ).one()
    assert (stored, notices) == (1, 1)
    assert len(stack.deliveries(acct["account_no"])) == 1


def test_a_repeat_notice_inside_the_window_is_suppressed_visibly(stack: Stack) -> None:
    acct = events.account(push_tokens=None, email=None)
    stack.post(events.unpaid(acct))
    stack.settled(acct["account_no"], count=1)
    stack.post(events.unpaid(acct))  # a new event_id about the same bill and level
    rows = stack.settled(acct["account_no"], count=2)
    assert [d.status for d in rows] == ["delivered", "suppressed"]
    with stack.db() as session:
        notices = session.exec(
            select(Notification)
            .where(Notification.account_no == acct["account_no"])
            .order_by(col(Notification.id))
        ).all()
    assert [n.status for n in notices] == ["active", "suppressed"]
    assert notices[1].duplicate_of == notices[0].id


def test_a_batch_answers_per_item(stack: Stack) -> None:
    good = [events.unpaid(events.account(push_tokens=None, email=None)) for _ in range(3)]
    bad = events.unpaid(events.account(phone="12345"))
    answer = stack.post_batch([*good, bad, good[0]])
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["accepted"], body["duplicate"], body["invalid"]) == (3, 1, 1)
    assert body["results"][3]["errors"][0]["field"] == "events[3].account.phone"
    for event in good:
        stack.settled(event["account"]["account_no"], count=1)
