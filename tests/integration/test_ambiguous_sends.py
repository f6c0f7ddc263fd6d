"""Sends whose answer was lost: the provider may have them, so none is sent blindly again.

A stack runs the real adapters against the simulators, with a short client
timeout and ``NOTIFIER_AMBIGUOUS_WAIT_SECONDS``. Each scenario makes the next
send stall past the timeout, after the provider took it or not, and counts
what the provider received: the customer's copies.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlmodel import col, select

from notifier.deliveries.models import DeliveryChange
from notifier.providers.simulated import Simulators
from tests.support import events
from tests.support.stack import Stack, build_stack, wait_until

WAIT_SECONDS = 6


@pytest.fixture(scope="module", params=["sqlite-filesystem", "postgres-redis"])
def stack(
    request: pytest.FixtureRequest, simulators: Simulators, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    env = {
        **simulators.env,
        "NOTIFIER_PROVIDERS": "{}",  # credentials decide: the real adapters
        # Shorter than the simulators' stalls (Twilio 3 s, FCM 2 s): the answer is lost.
        "NOTIFIER_TWILIO__TIMEOUT": "1",
        "NOTIFIER_FCM__TIMEOUT": "1",
        "NOTIFIER_AMBIGUOUS_WAIT_SECONDS": str(WAIT_SECONDS),
    }
    name = f"{request.param}-ambiguous"
    built = build_stack(name, tmp_path_factory.mktemp(name), env)
    yield built
    built.close()


_NUMBERS = itertools.count(secrets.randbelow(1000))


def mobile() -> str:
    """A number of this test's own, so the provider's records of it are this test's.

    Drawn at random for each test, six draws from 1,000 numbers gave two tests of the
    module (whose simulators keep every SMS) the same one about once in 67 runs: the
    later test counted the earlier one's SMS as a second copy of its own.
    """
    return f"+88691{next(_NUMBERS) % 1000:03d}5678"  # a mobile range (not +886 99)


def sms_to(simulators: Simulators, phone: str) -> list[dict[str, object]]:
    with simulators.twilio.lock:
        return [m for m in simulators.twilio.messages if m["To"] == phone]


def test_an_sms_twilio_took_before_stalling_is_found_not_sent_again(
    stack: Stack, simulators: Simulators
) -> None:
    phone = mobile()
    acct = events.account(phone=phone, email=None, push_tokens=[])
    simulators.twilio.stall_next(accept=True, to=phone)

    stack.post(events.unpaid(acct))
    [sms] = stack.reach(acct["account_no"], [("sms", "delivered")])

    [received] = received_once(stack, simulators, sms.id, phone)
    assert sms.provider_id == received["Sid"]
    assert sms.attempts == 1
    statuses = [status for status, _ in stack.timeline(sms.id)]
    assert statuses.count("ambiguous") == 1, statuses
    assert statuses.count("sending") == 1, "never claimed to be sent again"
    assert "queued" not in statuses[1:], statuses
    [found] = [d for s, d in stack.timeline(sms.id) if s == "sent"]
    assert found["provider_id"] == received["Sid"]
    assert found["found_by"] in {"lookup", "report"}


def test_a_stalled_sms_is_found_by_asking_twilio_before_any_report(
    stack: Stack, simulators: Simulators
) -> None:
    phone = mobile()
    acct = events.account(phone=phone, email=None, push_tokens=[])
    simulators.twilio.stall_next(accept=True, to=phone)
    simulators.twilio.callbacks_open.clear()  # Twilio reports late: only a lookup can tell
    try:
        stack.post(events.unpaid(acct))
        [sms] = stack.reach(acct["account_no"], [("sms", "sent")])
    finally:
        simulators.twilio.callbacks_open.set()
    [sms] = stack.reach(acct["account_no"], [("sms", "delivered")])

    [received] = received_once(stack, simulators, sms.id, phone)
    assert sms.provider_id == received["Sid"] and sms.attempts == 1
    [found] = [d for s, d in stack.timeline(sms.id) if s == "sent"]
    assert found["found_by"] == "lookup"


def test_a_call_and_an_sms_that_always_stall_are_each_placed_once(
    stack: Stack, simulators: Simulators
) -> None:
    phone = "+886912340491"  # simulator: every send to it is taken, then answered late
    acct = events.account(phone=phone, email=None, push_tokens=[])
    twilio = simulators.twilio
    with twilio.lock:  # the number is shared by this module's stacks: count from here
        calls_before, sms_before = len(twilio.calls), len(twilio.messages)

    stack.post(events.unpaid(acct, level=2))
    rows = stack.reach(acct["account_no"], [("sms", "delivered"), ("voice", "delivered")])

    with twilio.lock:
        calls = [c["Sid"] for c in twilio.calls[calls_before:] if c["To"] == phone]
        texts = [m["Sid"] for m in twilio.messages[sms_before:] if m["To"] == phone]
    by_channel = {d.channel: d for d in rows}
    assert calls == [by_channel["voice"].provider_id]
    assert texts == [by_channel["sms"].provider_id]
    for delivery in rows:
        statuses = [status for status, _ in stack.timeline(delivery.id)]
        assert "ambiguous" in statuses and statuses.count("sending") == 1, statuses


def test_an_sms_twilio_never_got_is_sent_again_after_the_wait_once(
    stack: Stack, simulators: Simulators
) -> None:
    phone = mobile()
    acct = events.account(phone=phone, email=None, push_tokens=[])
    simulators.twilio.stall_next(accept=False, to=phone)

    stack.post(events.unpaid(acct))
    [sms] = stack.reach(acct["account_no"], [("sms", "delivered")], timeout=90)

    [received] = received_once(stack, simulators, sms.id, phone)
    assert sms.provider_id == received["Sid"]
    assert sms.attempts == 2
    timeline = stack.timeline(sms.id)
    [(_, ambiguous)] = [(s, d) for s, d in timeline if s == "ambiguous"]
    [resend] = [
        i for i, (s, d) in enumerate(timeline) if s == "queued" and d.get("ambiguous_resend")
    ]
    assert stack_entry_time(stack, sms.id, resend) >= datetime.fromisoformat(
        ambiguous["resolve_by"]
    )


def test_a_stalled_push_is_sent_again_once_after_the_wait_under_its_collapse_key(
    stack: Stack, simulators: Simulators
) -> None:
    token = f"device-{secrets.token_hex(6)}"
    acct = events.account(phone=None, email=None, push_tokens=[token])
    simulators.fcm.stall_next(token=token)

    stack.post(events.unpaid(acct))
    [push] = stack.reach(acct["account_no"], [("push", "sent")], timeout=90)

    copies = [r for r in simulators.fcm.received if r.token == token]
    assert len(copies) == 2, "FCM cannot be asked: one resend after the wait, no more"
    assert copies[0].android["collapse_key"] == copies[1].android["collapse_key"]
    timeline = stack.timeline(push.id)
    [(_, ambiguous)] = [(s, d) for s, d in timeline if s == "ambiguous"]
    [resend] = [
        i for i, (s, d) in enumerate(timeline) if s == "queued" and d.get("ambiguous_resend")
    ]
    assert stack_entry_time(stack, push.id, resend) >= datetime.fromisoformat(
        ambiguous["resolve_by"]
    )


def test_an_sms_twilio_took_from_a_worker_that_died_before_recording_it_is_not_sent_again(
    stack: Stack, simulators: Simulators
) -> None:
    phone = mobile()
    acct = events.account(phone=phone, email=None, push_tokens=[])
    simulators.twilio.stall_next(accept=True, to=phone)
    # The client waits out the stall this time: the worker dies while Twilio holds the answer.
    with stack.worker_with(NOTIFIER_TWILIO__TIMEOUT="30"):
        stack.post(events.unpaid(acct))
        wait_until(lambda: sms_to(simulators, phone), timeout=60, interval=0.02,
                   what="Twilio taking the SMS")  # fmt: skip
        stack.kill_worker()
    [sms] = stack.reach(acct["account_no"], [("sms", "delivered")], timeout=90)

    [received] = received_once(stack, simulators, sms.id, phone)
    assert sms.provider_id == received["Sid"]
    timeline = stack.timeline(sms.id)
    [(_, held)] = [(s, d) for s, d in timeline if s == "ambiguous"]
    assert held.get("lease_expired"), timeline
    assert [s for s, _ in timeline].count("sending") == 1, "never claimed to be sent again"


def received_once(
    stack: Stack, simulators: Simulators, delivery_id: int | None, phone: str
) -> list[dict[str, object]]:
    """The SMS Twilio took for ``phone``; more than one names the delivery's timeline."""
    received = sms_to(simulators, phone)
    if len(received) != 1:
        took = [
            (m["Sid"], datetime.fromtimestamp(float(str(m["received_at"])), UTC)) for m in received
        ]
        with stack.db() as session:
            changes = session.exec(
                select(DeliveryChange)
                .where(DeliveryChange.delivery_id == delivery_id)
                .order_by(col(DeliveryChange.id))
            ).all()
        lines = [f"  {c.at.isoformat()} {c.status:<9} {c.detail}" for c in changes]
        logged = [
            line
            for line in stack.worker_log_tail(2000).splitlines()
            if f"delivery_id={delivery_id} " in f"{line} "
        ]
        raise AssertionError(
            f"Twilio took {took} for one delivery:\n"
            + "\n".join([*lines, "worker log:", *logged[-30:]])
        )
    return received


def stack_entry_time(stack: Stack, delivery_id: int | None, index: int) -> datetime:
    """When the ``index``-th timeline entry of the delivery was written."""
    with stack.db() as session:
        rows = session.exec(
            select(DeliveryChange.at)
            .where(DeliveryChange.delivery_id == delivery_id)
            .order_by(col(DeliveryChange.id))
        ).all()
    return rows[index]
