"""The real adapters (twilio, aiosmtplib, firebase-admin) through the whole service.

One stack runs its worker against the provider simulators: Twilio's REST
shapes with signed status callbacks into our API, FCM v1, an SMTP catcher.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from notifier.accounts.models import Account
from notifier.deliveries import service as deliveries
from notifier.deliveries.models import Delivery
from notifier.providers.simulated import Simulators
from tests.support import events
from tests.support.stack import Stack, build_stack
from tests.support.twilio import callback_path, flush_reports, signed

LANDLINE_NO_ANSWER = "+886223450487"  # simulator: calls end no-answer
MOBILE_UNDELIVERED = "+886912330008"  # simulator: SMS reported undelivered (30008, unknown)
MOBILE_STOP = "+886912321610"  # simulator: 21610, the customer replied STOP
DIAL_NUMBER = "+886223456789"  # the menu's "press 2" (E.164; the printed line stays 1911)


@pytest.fixture(scope="module")
def stack(simulators: Simulators, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {
        **simulators.env,
        "NOTIFIER_PROVIDERS": "{}",  # credentials decide: the real adapters
        "NOTIFIER_RATE_LIMITS": '{"twilio": 20, "smtp": 50, "fcm": 200}',
        "NOTIFIER_SERVICE_DIAL_NUMBER": DIAL_NUMBER,
    }
    built = build_stack("postgres-redis-providers", tmp_path_factory.mktemp("providers"), env)
    yield built
    built.close()


def test_every_channel_goes_out_through_its_real_sdk(stack: Stack, simulators: Simulators) -> None:
    acct = events.account(prefers_paper=True)
    stack.post(events.unpaid(acct, level=2))
    rows = stack.reach(
        acct["account_no"],
        [
            ("push", "sent"),
            ("sms", "delivered"),
            ("email", "sent"),
            ("voice", "delivered"),
            ("postcard", "sent"),
        ],
    )
    by_channel = {d.channel: d for d in rows}
    assert by_channel["push"].provider == "fcm"
    assert any(r.token == acct["push_tokens"][0] for r in simulators.fcm.received)
    assert by_channel["sms"].provider_id in {m["Sid"] for m in simulators.twilio.messages}
    assert any(acct["email"] in str(mail["To"]) for mail in simulators.smtp.messages)
    statuses = [status for status, _ in stack.timeline(by_channel["sms"].id)]
    assert statuses[-1] == "delivered"  # reported by Twilio's signed callback
    card = by_channel["postcard"]
    assert card.provider == "print" and Path(stack.folder, "print").exists()


def test_a_dead_push_token_falls_back_to_a_call_then_a_postcard(
    stack: Stack, simulators: Simulators
) -> None:
    # A landline takes no SMS: push → (sms skipped) → voice, unanswered every time → postcard.
    acct = events.account(
        phone=LANDLINE_NO_ANSWER, email=None, push_tokens=["device-unregistered-1"]
    )
    stack.post(events.unpaid(acct))
    rows = stack.reach(
        acct["account_no"],
        [("push", "failed"), ("voice", "failed"), ("postcard", "sent")],
        timeout=120,
    )
    assert rows[1].attempts == 4  # every attempt ended no-answer
    with stack.db() as session:
        account = session.get(Account, acct["account_no"])
    assert account is not None and account.push_tokens == []  # the dead token is forgotten


def test_an_sms_reported_undelivered_falls_back_to_a_call(stack: Stack) -> None:
    acct = events.account(phone=MOBILE_UNDELIVERED, email=None, push_tokens=None)
    stack.post(events.unpaid(acct))
    rows = stack.reach(acct["account_no"], [("sms", "undelivered"), ("voice", "delivered")])
    assert rows[1].fallback_of == rows[0].id


def test_a_customer_who_replied_stop_gets_no_more_sms(stack: Stack) -> None:
    acct = events.account(phone=MOBILE_STOP, push_tokens=None)
    stack.post(events.unpaid(acct))
    first = stack.settled(acct["account_no"], count=2)
    assert {d.channel: d.status for d in first}["sms"] == "failed"
    with stack.db() as session:
        account = session.get(Account, acct["account_no"])
    assert account is not None and "sms" in account.opt_outs
    stack.post(events.unpaid(acct, level=2))
    later = stack.settled(acct["account_no"], count=len(first) + 2)[len(first) :]
    assert "sms" not in {d.channel for d in later}


def test_callbacks_need_a_valid_signature(stack: Stack, simulators: Simulators) -> None:
    acct = events.account(email=None, push_tokens=None)
    stack.post(events.unpaid(acct))
    [sms] = stack.reach(acct["account_no"], [("sms", "delivered")])
    path = callback_path(stack, sms.id)
    params = {"MessageSid": sms.provider_id or "", "MessageStatus": "undelivered"}
    before = stack.timeline(sms.id)
    good = signed(stack, path, params, simulators.auth_token)
    assert stack.client.post(path, data=params).status_code == 403  # missing
    assert (
        stack.client.post(
            path, data={**params, "MessageStatus": "failed"}, headers=good
        ).status_code
        == 403
    )
    assert (
        stack.client.post(
            path, data=params, headers={"X-Twilio-Signature": "x" + good["X-Twilio-Signature"]}
        ).status_code
        == 403
    )
    assert stack.timeline(sms.id) == before
    assert stack.deliveries(acct["account_no"])[0].status == "delivered"


def test_late_duplicate_and_out_of_order_callbacks_never_move_a_delivery_back(
    stack: Stack, simulators: Simulators
) -> None:
    acct = events.account(email=None, push_tokens=None)
    stack.post(events.unpaid(acct))
    [sms] = stack.reach(acct["account_no"], [("sms", "delivered")])
    simulators.twilio.wait_callbacks()  # its own sent and delivered are in the timeline
    path = callback_path(stack, sms.id)
    for status in ("sent", "delivered", "queued", "sent", "delivered"):
        params = {"MessageSid": sms.provider_id or "", "MessageStatus": status}
        answer = stack.client.post(
            path, data=params, headers=signed(stack, path, params, simulators.auth_token)
        )
        assert answer.status_code == 204
    flush_reports(stack)
    [after] = stack.deliveries(acct["account_no"])
    assert after.status == "delivered"
    reports = [
        detail.get("provider_status")
        for _, detail in stack.timeline(sms.id)
        if detail.get("report")
    ]
    # Each report once, and progress about the message we recorded sent (sent, a late
    # queued) not at all: our own record of the send already says it.
    assert reports == ["delivered"]


def test_the_provider_rate_holds_across_worker_processes(
    stack: Stack, simulators: Simulators
) -> None:
    accounts = [events.account(email=None, push_tokens=None) for _ in range(40)]
    started = len(simulators.twilio.messages)
    stack.post_batch([events.unpaid(a) for a in accounts])
    for acct in accounts:
        stack.settled(acct["account_no"], count=1)
    stamps = sorted(m["received_at"] for m in simulators.twilio.messages[started:])
    assert len(stamps) == 40
    # The limiter spaces the sends' starts 1/20 s apart; the simulator stamps arrivals, and
    # on a loaded machine two requests slotted apart can land together. So a second may see
    # a couple more than 20, but 40 sends can never take less than (40 - 20) / 20 s.
    busiest = max(sum(1 for t in stamps if s <= t < s + 1.0) for s in stamps)
    assert busiest <= 20 + 3, f"{busiest} SMS in one second at a limit of 20/s"
    span = stamps[-1] - stamps[0]
    assert span >= (40 - 20 - 3) / 20, f"40 SMS within {span:.2f} s at a limit of 20/s"


def test_voice_menu_repeats_or_connects_to_the_service_line(
    stack: Stack, simulators: Simulators
) -> None:
    acct = events.account(email=None, push_tokens=None)
    stack.post(events.unpaid(acct, level=2))
    rows = stack.settled(acct["account_no"], count=2)
    call = next(d for d in rows if d.channel == "voice")
    path = callback_path(stack, call.id, "gather")
    for digit, expected in (("1", "<Say"), ("2", f"<Dial>{DIAL_NUMBER}</Dial>")):
        params = {"CallSid": call.provider_id or "", "Digits": digit}
        answer = stack.client.post(
            path, data=params, headers=signed(stack, path, params, simulators.auth_token)
        )
        assert answer.status_code == 200 and expected in answer.text


def test_a_report_that_beats_our_record_of_the_send_is_applied_once_we_record_it(
    stack: Stack, simulators: Simulators
) -> None:
    from channels import SendResult
    from notifier.deliveries.service import Claim
    from notifier.flows.deliver import record_outcomes

    acct = events.account(email=None, push_tokens=None)
    stack.post(events.unpaid(acct))
    [sms] = stack.reach(acct["account_no"], [("sms", "delivered")])
    # Put the row back in flight, as if the worker were still waiting on Twilio's answer.
    with stack.db() as session:
        row = session.get(Delivery, sms.id)
        assert row is not None
        row.status, row.claim_token = "sending", "in-flight"
        session.add(row)
        deliveries.record_change(session, row.id or 0, "sending", attempt=2)
    # The second attempt is a new message at Twilio, with a sid of its own.
    second_sid = "SM" + uuid.uuid4().hex
    path = callback_path(stack, sms.id)
    params = {"MessageSid": second_sid, "MessageStatus": "delivered"}
    answer = stack.client.post(
        path, data=params, headers=signed(stack, path, params, simulators.auth_token)
    )
    assert answer.status_code == 204
    flush_reports(stack)
    [early] = stack.deliveries(acct["account_no"])
    assert early.status == "sending"  # the report waits in the timeline
    outcome = record_outcomes(
        stack.runtime,
        [
            (
                Claim(delivery=early, token="in-flight"),
                SendResult(provider="twilio", provider_id=second_sid, status="sent"),
            )
        ],
    )
    assert outcome.statuses == {sms.id: "delivered"}
    [after] = stack.deliveries(acct["account_no"])
    assert after.status == "delivered"
