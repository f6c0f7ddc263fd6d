"""Push notices as the phone gets them: how long FCM keeps each, what it replaces, how it wakes.

An account with the app, bills posted by the billing system, the queue sent by
the real FCM channel (firebase-admin) to the FCM simulator, which records the
``android`` block and APNs headers of each push. The calendar is today's: the
channel turns the expiry into a TTL on the wall clock, as in production.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from pydantic import SecretStr
from sqlmodel import col, select

from channels.simulators.fcm import FcmReceived, FcmSimulator
from notifier.deliveries.models import Delivery
from notifier.flows.deliver import deliver_batch
from notifier.settings import FcmSettings
from tests.support import events
from tests.support.ledger import Ledger

TAIPEI = ZoneInfo("Asia/Taipei")
PROJECT = "notifier-push-terms"
TOKEN = "push-terms-token"


@pytest.fixture(scope="module")
def simulator() -> Iterator[FcmSimulator]:
    with FcmSimulator(access_token=TOKEN, project=PROJECT) as sim:
        yield sim


@pytest.fixture
def fcm(ledger: Ledger, simulator: FcmSimulator) -> Iterator[FcmSimulator]:
    """The ledger's pushes go to the FCM simulator for this test, then back to the sandbox."""
    rt = ledger.runtime
    saved = rt.settings
    rt.settings = saved.model_copy(
        update={
            "providers": {**saved.providers, "push": "fcm"},
            "fcm": FcmSettings(
                project_id=PROJECT, access_token=SecretStr(TOKEN), base_url=simulator.base_url
            ),
            "push_ttl_hours": 72.0,
        }
    )
    # The runtime keeps one channel per name and thread: the sandbox's push must not serve.
    cached: dict[str, Any] = getattr(rt._loops, "channels", {})
    sandbox = cached.pop("push", None)
    simulator.reset()
    try:
        yield simulator
    finally:
        channel = cached.pop("push", None)
        if channel is not None:
            rt.run_async(channel.aclose())
        if sandbox is not None:
            cached["push"] = sandbox
        rt.settings = saved


def post(ledger: Ledger, event: dict[str, Any]) -> dict[str, Any]:
    event["occurred_at"] = datetime.now(UTC).isoformat()
    ledger.post(event)
    return event


def push_of(ledger: Ledger, fcm: FcmSimulator, acct: dict[str, Any]) -> FcmReceived:
    """Send the account's queued push and return what the device got."""
    with ledger.db() as session:
        ids = [
            d.id
            for d in session.exec(
                select(Delivery).where(
                    Delivery.account_no == acct["account_no"],
                    Delivery.channel == "push",
                    Delivery.status == "queued",
                )
            )
            if d.id is not None
        ]
        session.execute(
            sa.update(Delivery)
            .where(col(Delivery.id).in_(ids))
            .values(available_at=ledger.runtime.clock())
        )
    assert len(ids) == 1
    before = len(fcm.received)
    assert deliver_batch(ledger.runtime, ids).statuses == {ids[0]: "sent"}
    (received,) = fcm.received[before:]
    assert received.token == acct["push_tokens"][0]
    return received


def expiry(received: FcmReceived) -> datetime:
    return datetime.fromtimestamp(int(received.apns_headers["apns-expiration"]), UTC)


def ttl(received: FcmReceived) -> timedelta:
    return timedelta(seconds=int(received.android["ttl"].removesuffix("s")))


def working_day_after(ledger: Ledger, day: date) -> date:
    day += timedelta(days=1)
    while not ledger.policy.is_business_day(day):
        day += timedelta(days=1)
    return day


def test_a_reminder_before_the_due_date_lasts_until_the_end_of_that_day(
    ledger: Ledger, fcm: FcmSimulator
) -> None:
    today = datetime.now(TAIPEI).date()
    due = working_day_after(ledger, today)
    acct = events.account(area=ledger.new_area(), email=None)
    event = post(ledger, events.unpaid(acct, period="2026-11", due=due))

    received = push_of(ledger, fcm, acct)

    end_of_due = datetime.combine(due + timedelta(days=1), time(0), tzinfo=TAIPEI)
    if end_of_due - datetime.now(UTC) < timedelta(hours=72):
        assert expiry(received) == end_of_due
    else:  # a long weekend: the 72-hour cap comes first
        assert expiry(received) < end_of_due
    assert abs(ttl(received) - (expiry(received) - datetime.now(UTC))) < timedelta(seconds=60)
    assert received.android["priority"] == "high"
    assert received.apns_headers["apns-priority"] == "10"
    assert received.apns_headers["apns-push-type"] == "alert"
    key = f"{acct['account_no']}:{event['bill']['bill_no']}"
    assert received.android["collapse_key"] == key
    assert received.apns_headers["apns-collapse-id"] == key


def test_a_bill_due_in_weeks_is_kept_no_longer_than_push_ttl_hours(
    ledger: Ledger, fcm: FcmSimulator
) -> None:
    acct = events.account(area=ledger.new_area(), email=None)
    post(ledger, events.unpaid(acct, due=datetime.now(TAIPEI).date() + timedelta(days=20)))
    sent_at = datetime.now(UTC)

    received = push_of(ledger, fcm, acct)

    assert timedelta(hours=72) - timedelta(seconds=60) < ttl(received) <= timedelta(hours=72)
    assert abs(expiry(received) - (sent_at + timedelta(hours=72))) < timedelta(seconds=60)


def test_level_2_replaces_level_1_on_the_phone_and_another_bill_does_not(
    ledger: Ledger, fcm: FcmSimulator
) -> None:
    today = datetime.now(TAIPEI).date()
    acct = events.account(area=ledger.new_area(), email=None)
    overdue = {"period": "2026-07", "due": today - timedelta(days=10)}

    post(ledger, events.unpaid(acct, level=1, **overdue))
    first = push_of(ledger, fcm, acct)
    post(ledger, events.unpaid(acct, level=2, **overdue))
    second = push_of(ledger, fcm, acct)
    post(ledger, events.unpaid(acct, period="2026-09", due=today - timedelta(days=3)))
    other = push_of(ledger, fcm, acct)

    assert first.android["collapse_key"] == second.android["collapse_key"]
    assert first.apns_headers["apns-collapse-id"] == second.apns_headers["apns-collapse-id"]
    assert other.android["collapse_key"] != first.android["collapse_key"]
    # Overdue: the notice speaks of today; half a day, not until a date already gone.
    for received in (first, second, other):
        assert timedelta(hours=11, minutes=59) < ttl(received) <= timedelta(hours=12)
        assert received.android["priority"] == "high"


@pytest.mark.parametrize(
    ("reason", "priority", "apns_priority"),
    [
        ("usage 117% above the same period last year", "normal", "5"),
        ("suspected 漏電 on the premises", "high", "10"),
    ],
    ids=["informational", "suspected-leak"],
)
def test_a_usage_alert_is_kept_a_few_hours(
    ledger: Ledger, fcm: FcmSimulator, reason: str, priority: str, apns_priority: str
) -> None:
    acct = events.account(area=ledger.new_area(), email=None)
    event = events.abnormal_usage(acct)
    event["usage"]["reason"] = reason
    post(ledger, event)

    received = push_of(ledger, fcm, acct)

    assert timedelta(hours=3, minutes=59) < ttl(received) <= timedelta(hours=4)
    assert received.android["priority"] == priority
    assert received.apns_headers["apns-priority"] == apns_priority
    assert received.android["collapse_key"].startswith(f"{acct['account_no']}:")
