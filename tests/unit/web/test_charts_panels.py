"""The dashboard's latency and queue-depth panels, counted by the database (SQLite and PostgreSQL).

The latency panel's p50 and p95 are checked against the timeline read row by
row in Python; the waiting panel against deliveries quiet hours really held.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlmodel import col, select

from notifier.deliveries import stats
from notifier.deliveries.models import Delivery, DeliveryChange, Notification
from notifier.events.models import Event
from tests.support import events
from tests.support.stack import Stack, wait_until

TWO_TRANSIENT_FAILURES = "+886900000012"  # the sandbox refuses it twice, then sends


def _by_hand(stack: Stack, since: datetime, until: datetime) -> dict[str, list[float]]:
    """Accept → first sent or delivered, per channel, sorted: the timeline read row by row."""
    seconds: dict[str, list[float]] = {}
    with stack.db() as session:
        rows = session.execute(
            sa.select(
                col(Delivery.id),
                col(Delivery.channel),
                col(DeliveryChange.status),
                col(DeliveryChange.at),
                col(Event.received_at),
            )
            .join(DeliveryChange, col(DeliveryChange.delivery_id) == col(Delivery.id))
            .join(Notification, col(Notification.id) == col(Delivery.notification_id))
            .join(Event, col(Event.id) == col(Notification.event_pk))
            .where(col(Delivery.created_at) >= since, col(Delivery.created_at) < until)
            .order_by(col(DeliveryChange.id))
        ).all()
    first: dict[int, tuple[str, float]] = {}
    for delivery_id, channel, status, at, received in rows:
        if status in ("sent", "delivered"):
            first.setdefault(delivery_id, (channel, (at - received).total_seconds()))
    for channel, value in first.values():
        seconds.setdefault(channel, []).append(value)
    return {channel: sorted(values) for channel, values in seconds.items()}


def _nearest_rank(values: list[float], p: float) -> float:
    return values[math.ceil(p * len(values)) - 1]


def test_latency_percentiles_are_the_timelines_nearest_ranks(stack: Stack) -> None:
    since = datetime.now(UTC) - timedelta(seconds=1)
    accounts = [events.account() for _ in range(3)]
    accounts.append(events.account(phone=TWO_TRANSIENT_FAILURES, email=None, push_tokens=None))
    for acct in accounts:
        assert stack.post(events.unpaid(acct)).status_code == 202
    for acct in accounts[:3]:
        stack.settled(acct["account_no"], count=3)
    stack.settled(accounts[3]["account_no"], count=1)
    until = datetime.now(UTC) + timedelta(seconds=1)

    expected = _by_hand(stack, since, until)
    with stack.db() as session:
        found = stats.latency_to_sent(session, since=since, until=until)

    assert set(found) == set(expected) == {"sms", "push", "email"}
    for channel, values in expected.items():
        row = found[channel]
        assert row.count == len(values)
        assert math.isclose(row.p50, _nearest_rank(values, 0.5), abs_tol=0.01), channel
        assert math.isclose(row.p95, _nearest_rank(values, 0.95), abs_tol=0.01), channel
    # Four SMS: the one sent only at its third attempt is the slowest, and p95 is it.
    assert found["sms"].count == 4
    assert math.isclose(found["sms"].p95, expected["sms"][-1], abs_tol=0.01)
    assert found["sms"].p95 > found["sms"].p50


def test_a_window_with_nothing_sent_has_no_latency(stack: Stack) -> None:
    future = datetime.now(UTC) + timedelta(days=1)
    with stack.db() as session:
        assert stats.latency_to_sent(session, since=future, until=future + timedelta(hours=1)) == {}


def test_deliveries_held_by_quiet_hours_are_waiting_until_released(stack: Stack) -> None:
    now = datetime.now(ZoneInfo("Asia/Taipei"))
    hours = f"{(now - timedelta(hours=1)):%H:%M}-{(now + timedelta(hours=1)):%H:%M}"
    with stack.db() as session:
        before = stats.waiting_by_channel(session)
    with stack.worker_with(NOTIFIER_QUIET_HOURS=hours):
        acct = events.account()
        stack.post(events.unpaid(acct))
        wait_until(
            lambda: (
                sorted(d.status for d in stack.deliveries(acct["account_no"]))
                == ["deferred", "deferred", "sent"]
            ),
            timeout=30,
            what="sms and push deferred, email sent",
        )
        with stack.db() as session:
            held = stats.waiting_by_channel(session)

    def deferred(series: stats.Series, channel: str) -> int:
        if channel not in series.labels or "deferred" not in series.series:
            return 0
        return series.series["deferred"][series.labels.index(channel)]

    assert set(held.series) <= set(stats.WAITING)
    for channel in ("sms", "push"):
        assert deferred(held, channel) == deferred(before, channel) + 1, channel
    assert deferred(held, "email") == deferred(before, "email")

    # Released (the window opens), they are sent and no longer wait.
    with stack.db() as session:
        for row in session.exec(
            select(Delivery).where(
                Delivery.account_no == acct["account_no"], Delivery.status == "deferred"
            )
        ):
            row.available_at = datetime.now(UTC) - timedelta(seconds=1)
            session.add(row)
    stack.settled(acct["account_no"], count=3)
    with stack.db() as session:
        after = stats.waiting_by_channel(session)
    for channel in ("sms", "push"):
        assert deferred(after, channel) == deferred(before, channel), channel
