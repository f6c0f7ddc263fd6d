"""Providers that fail, customers who pay, brokers and workers that die: nothing is lost."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import col, func, select

from notifier.deliveries import service as deliveries
from notifier.deliveries.models import FINAL_STATUSES, Delivery, DeliveryChange
from notifier.events.models import Event
from tests.support import events
from tests.support.stack import Stack, wait_until

# Sandbox magic numbers (channels/sandbox.py): ...012 fails twice then works,
# ...001 is an invalid number, ...019 keeps failing for nine attempts.
TWO_TRANSIENT_FAILURES = "+886900000012"
INVALID_NUMBER = "+886900000001"
ALWAYS_BUSY = "+886900000019"


def timeline(stack: Stack, delivery_id: int) -> list[str]:
    with stack.db() as session:
        return [change.status for change in deliveries.timeline(session, delivery_id)]


def test_a_transient_failure_is_retried_until_it_succeeds(stack: Stack) -> None:
    acct = events.account(phone=TWO_TRANSIENT_FAILURES, email=None, push_tokens=None)
    stack.post(events.unpaid(acct))
    [sms] = stack.settled(acct["account_no"], count=1)
    assert (sms.channel, sms.status, sms.attempts) == ("sms", "delivered", 3)
    assert timeline(stack, sms.id) == [  # type: ignore[arg-type]
        "queued", "sending", "queued", "sending", "queued", "sending", "delivered",
    ]  # fmt: skip


def test_a_permanent_failure_falls_back_to_the_next_channel(stack: Stack) -> None:
    # Push fails for good; SMS is already part of the notice, so the chain goes on to voice.
    acct = events.account(push_tokens=["tok-fail-permanent"], email=None)
    stack.post(events.unpaid(acct))
    rows = stack.settled(acct["account_no"], count=3)
    by_channel = {d.channel: d for d in rows}
    assert by_channel["push"].status == "failed"
    assert by_channel["push"].attempts == 1
    assert by_channel["sms"].status == "delivered"
    assert by_channel["voice"].status == "delivered"
    assert by_channel["voice"].fallback_of == by_channel["push"].id


def test_an_invalid_number_falls_back_to_a_postcard(stack: Stack) -> None:
    acct = events.account(phone=INVALID_NUMBER, email=None, push_tokens=None)
    stack.post(events.unpaid(acct))
    rows = stack.settled(acct["account_no"], count=2)
    assert [(d.channel, d.status) for d in rows] == [("sms", "failed"), ("postcard", "sent")]
    assert "21211" in (rows[0].last_error or "")


def test_retries_stop_at_the_limit_and_fall_back(stack: Stack) -> None:
    # A busy line proves nothing about the number, so voice is still tried.
    acct = events.account(phone=ALWAYS_BUSY, email=None, push_tokens=None)
    stack.post(events.unpaid(acct))
    rows = stack.settled(acct["account_no"], count=3, timeout=90)
    assert [(d.channel, d.status) for d in rows] == [
        ("sms", "failed"), ("voice", "failed"), ("postcard", "sent"),
    ]  # fmt: skip
    assert [d.attempts for d in rows] == [4, 4, 1]  # max_attempts of the test policy


def test_payment_cancels_a_notice_still_waiting_to_go_out(stack: Stack) -> None:
    acct = events.account(phone=ALWAYS_BUSY, email=None, push_tokens=None)
    stack.post(events.unpaid(acct))
    wait_until(
        lambda: any(d.attempts >= 1 for d in stack.deliveries(acct["account_no"])),
        timeout=30,
        what="a first failed attempt",
    )
    assert stack.post(events.paid(acct)).status_code == 202
    [sms] = stack.settled(acct["account_no"], count=1)
    assert sms.status == "cancelled"
    assert sms.attempts < 4


def test_a_reminder_that_arrives_after_the_payment_sends_nothing(stack: Stack) -> None:
    # One batch is processed in order: the payment is on the ledger before the reminder.
    acct = events.account()
    reminder = events.unpaid(acct)
    assert stack.post_batch([events.paid(acct), reminder]).json()["accepted"] == 2
    wait_until(
        lambda: _event(stack, reminder["event_id"]).status == "processed",
        timeout=30,
        what="processing",
    )
    assert _event(stack, reminder["event_id"]).outcome == "bill already paid; no notice"
    assert stack.deliveries(acct["account_no"]) == []


def _event(stack: Stack, event_id: str) -> Event:
    with stack.db() as session:
        return session.exec(select(Event).where(Event.event_id == event_id)).one()


def test_quiet_hours_defer_sms_and_push_but_not_email(stack: Stack) -> None:
    now = datetime.now(ZoneInfo("Asia/Taipei"))
    start, end = (
        (now - timedelta(hours=1)).strftime("%H:%M"),
        (now + timedelta(hours=1)).strftime("%H:%M"),
    )
    with stack.worker_with(NOTIFIER_QUIET_HOURS=f"{start}-{end}"):
        acct = events.account()
        stack.post(events.unpaid(acct))

        def three_done() -> list[Delivery] | None:
            rows = stack.deliveries(acct["account_no"])
            statuses = sorted(d.status for d in rows)
            return rows if statuses == ["deferred", "deferred", "sent"] else None

        rows = wait_until(three_done, timeout=30, what="sms and push deferred, email sent")
    deferred = [d for d in rows if d.status == "deferred"]
    assert sorted(d.channel for d in deferred) == ["push", "sms"]
    opens = deferred[0].available_at.astimezone(ZoneInfo("Asia/Taipei"))
    assert opens.strftime("%H:%M") == end
    # The calendar moves on to the window's opening: the reconciler releases them.
    with stack.db() as session:
        for row in deferred:
            row.available_at = datetime.now(UTC) - timedelta(seconds=1)
            session.add(row)
    rows = stack.settled(acct["account_no"], count=3)
    assert sorted(d.status for d in rows) == ["delivered", "delivered", "sent"]


@contextmanager
def broker_stopped(stack: Stack) -> Iterator[None]:
    """Stop the stack's broker server for real, and start it again afterwards."""
    if "rabbitmq" in stack.name:
        subprocess.run(["rabbitmqctl", "-q", "stop_app"], check=True)
        try:
            yield
        finally:
            subprocess.run(["rabbitmqctl", "-q", "start_app"], check=True)
            subprocess.run(["rabbitmqctl", "-q", "await_startup"], check=True)
    else:
        subprocess.run(["redis-cli", "-h", "127.0.0.1", "shutdown", "nosave"], check=False)
        try:
            yield
        finally:
            subprocess.run(
                [
                    "redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1",
                    "--port", "6379", "--save", "", "--appendonly", "no",
                    "--dir", "/var/lib/redis", "--logfile", "/var/log/redis/ci.log",
                ],
                check=True,
            )  # fmt: skip
            wait_until(
                lambda: (
                    subprocess.run(
                        ["redis-cli", "-h", "127.0.0.1", "ping"], capture_output=True
                    ).stdout.strip()
                    == b"PONG"
                ),
                timeout=20,
                what="redis to answer",
            )


# The broker server itself is stopped: every other stack on the machine would lose it too.
@pytest.mark.machine
def test_events_accepted_while_the_broker_is_down_are_delivered_when_it_returns(
    broker_stack: Stack,
) -> None:
    stack = broker_stack
    acct = events.account()
    with broker_stopped(stack):
        started = time.monotonic()
        answer = stack.post(events.unpaid(acct))
        assert answer.status_code == 202, answer.text
        assert time.monotonic() - started < 10, "accepting must not wait on a dead broker"
        ready = stack.client.get("/readyz").json()
        assert ready["status"] == "degraded" and ready["database"] == "ok"
        assert stack.deliveries(acct["account_no"]) == []
    rows = stack.settled(acct["account_no"], count=3, timeout=90)
    assert {d.status for d in rows} <= {"delivered", "sent"}


def test_a_worker_killed_mid_run_leaves_every_delivery_final(stack: Stack) -> None:
    accounts = [events.account(push_tokens=None, email=None) for _ in range(120)]
    answer = stack.post_batch([events.unpaid(a) for a in accounts])
    assert answer.json()["accepted"] == 120
    numbers = [a["account_no"] for a in accounts]

    def some_sent() -> bool:
        with stack.db() as session:
            sent = session.exec(
                select(func.count()).where(
                    col(Delivery.account_no).in_(numbers), Delivery.status == "delivered"
                )
            ).one()
        return sent >= 10

    wait_until(some_sent, timeout=60, interval=0.05, what="the first deliveries")
    stack.kill_worker()
    # The rows the dead worker held may have gone out: held ambiguous, sent again only
    # after the wait (the sandbox cannot be asked), here a short one.
    stack.start_worker(NOTIFIER_AMBIGUOUS_WAIT_SECONDS="3")

    def all_final() -> bool:
        with stack.db() as session:
            rows = session.exec(
                select(Delivery.status).where(col(Delivery.account_no).in_(numbers))
            ).all()
        return len(rows) == 120 and all(status in FINAL_STATUSES for status in rows)

    try:
        wait_until(all_final, timeout=120, what="all 120 deliveries final after the kill")
    finally:
        stack.stop_worker()
        stack.start_worker()
    with stack.db() as session:
        changes = session.exec(
            select(DeliveryChange.status, DeliveryChange.detail).where(
                col(DeliveryChange.delivery_id).in_(
                    select(Delivery.id).where(col(Delivery.account_no).in_(numbers))
                ),
                col(DeliveryChange.status).in_(["ambiguous", "queued"]),
            )
        ).all()
    expired = {status for status, d in changes if str(d.get("reason", "")).startswith("lease")}
    assert expired <= {"ambiguous"}, "a row the dead worker held was queued again blindly"
    with stack.db() as session:
        statuses = set(
            session.exec(select(Delivery.status).where(col(Delivery.account_no).in_(numbers))).all()
        )
    assert statuses == {"delivered"}
