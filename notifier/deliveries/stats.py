"""Counts for the ops dashboard: deliveries by time bucket, channel and status; failure
reasons; the time from acceptance to sent; the deliveries waiting now.

Every query is one ``GROUP BY`` over a ``created_at`` range (indexed), or over the
waiting statuses (indexed), so the database does the counting and the page gets
dozens of numbers, not rows. The latencies' percentiles are ranked in the
database too (window functions, on SQLite and PostgreSQL alike): two rows come
back per channel.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlmodel import Session, col

from notifier.deliveries.models import (
    Delivery,
    DeliveryChange,
    DeliveryStatus,
    Notification,
    NotificationStatus,
)
from notifier.events.models import Event

__all__ = [
    "WAITING",
    "Latency",
    "Series",
    "by_channel",
    "by_time",
    "failure_reasons",
    "latency_to_sent",
    "unreachable_count",
    "waiting_by_channel",
]

Unit = Literal["hour", "day"]
STATUS_ORDER: tuple[str, ...] = (
    DeliveryStatus.DELIVERED, DeliveryStatus.SENT, DeliveryStatus.SENDING, DeliveryStatus.QUEUED,
    DeliveryStatus.DEFERRED, DeliveryStatus.AMBIGUOUS, DeliveryStatus.FAILED, DeliveryStatus.UNDELIVERED,
    DeliveryStatus.UNKNOWN, DeliveryStatus.CANCELLED, DeliveryStatus.SUPPRESSED,
)  # fmt: skip


@dataclass(frozen=True)
class Series:
    """Bars (``labels``) stacked by status (``series[status][i]``)."""

    labels: list[str]
    series: dict[str, list[int]]

    @property
    def total(self) -> int:
        return sum(sum(values) for values in self.series.values())


def _bucket(session: Session, unit: Unit, tz: ZoneInfo, at: datetime) -> Any:
    """``created_at`` cut to the local hour or day, as text, in the database's own SQL."""
    if session.get_bind().dialect.name == "postgresql":
        local = sa.func.timezone(tz.key, col(Delivery.created_at))
        return sa.func.to_char(
            sa.func.date_trunc(unit, local),
            "YYYY-MM-DD HH24:00" if unit == "hour" else "YYYY-MM-DD",
        )
    # SQLite stores naive UTC; shift by the zone's offset at the window's end
    # (exact for Asia/Taipei, which has no daylight saving time).
    offset = at.astimezone(tz).utcoffset() or timedelta(0)
    shift = f"{int(offset.total_seconds())} seconds"
    pattern = "%Y-%m-%d %H:00" if unit == "hour" else "%Y-%m-%d"
    return sa.func.strftime(pattern, col(Delivery.created_at), shift)


def _labels(unit: Unit, tz: ZoneInfo, since: datetime, until: datetime) -> list[str]:
    step = timedelta(hours=1) if unit == "hour" else timedelta(days=1)
    local = since.astimezone(tz)
    local = local.replace(minute=0, second=0, microsecond=0)
    if unit == "day":
        local = local.replace(hour=0)
    labels = []
    while local < until.astimezone(tz):
        labels.append(local.strftime("%Y-%m-%d %H:00" if unit == "hour" else "%Y-%m-%d"))
        local += step
    return labels


def by_time(
    session: Session,
    *,
    unit: Unit,
    since: datetime,
    until: datetime,
    tz: ZoneInfo,
    channel: str | None = None,
) -> Series:
    """Deliveries created per hour or day in [since, until), stacked by their status now."""
    bucket = _bucket(session, unit, tz, until)
    query = (
        sa.select(bucket, col(Delivery.status), sa.func.count())
        .where(col(Delivery.created_at) >= since, col(Delivery.created_at) < until)
        .group_by(bucket, col(Delivery.status))
    )
    if channel is not None:
        query = query.where(col(Delivery.channel) == channel)
    labels = _labels(unit, tz, since, until)
    index = {label: i for i, label in enumerate(labels)}
    counts: dict[str, list[int]] = defaultdict(lambda: [0] * len(labels))
    for label, status, n in session.execute(query):
        if label in index:
            counts[status][index[label]] += n
    return Series(labels, {s: counts[s] for s in STATUS_ORDER if s in counts})


def by_channel(session: Session, *, since: datetime, until: datetime) -> Series:
    """Deliveries created in [since, until) per channel, stacked by status."""
    rows = session.execute(
        sa.select(col(Delivery.channel), col(Delivery.status), sa.func.count())
        .where(col(Delivery.created_at) >= since, col(Delivery.created_at) < until)
        .group_by(col(Delivery.channel), col(Delivery.status))
    ).all()
    return _per_channel(rows, STATUS_ORDER)


def failure_reasons(
    session: Session, *, since: datetime, until: datetime, limit: int = 10
) -> list[tuple[str, str, int]]:
    """(channel, last error, count) of deliveries that failed, most frequent first."""
    reason = col(Delivery.last_error)
    rows = session.execute(
        sa.select(col(Delivery.channel), reason, sa.func.count().label("n"))
        .where(
            col(Delivery.created_at) >= since,
            col(Delivery.created_at) < until,
            col(Delivery.status).in_([DeliveryStatus.FAILED, DeliveryStatus.UNDELIVERED]),
        )
        .group_by(col(Delivery.channel), reason)
        .order_by(sa.desc("n"))
        .limit(limit)
    )
    return [(channel, text or "(no reason recorded)", n) for channel, text, n in rows]


def unreachable_count(session: Session, *, since: datetime, until: datetime) -> int:
    """Notifications created in [since, until) that ended with no delivery at all."""
    count = session.execute(
        sa.select(sa.func.count()).where(
            col(Notification.status) == NotificationStatus.UNREACHABLE,
            col(Notification.created_at) >= since,
            col(Notification.created_at) < until,
        )
    ).scalar_one()
    return int(count)


WAITING: tuple[str, ...] = (DeliveryStatus.QUEUED, DeliveryStatus.DEFERRED, DeliveryStatus.SENDING)
"""The statuses of deliveries owed and not yet handed to a provider."""


def waiting_by_channel(session: Session) -> Series:
    """Deliveries waiting now (queued, deferred, sending) per channel, stacked by status."""
    return _per_channel(
        session.execute(
            sa.select(col(Delivery.channel), col(Delivery.status), sa.func.count())
            .where(col(Delivery.status).in_(WAITING))
            .group_by(col(Delivery.channel), col(Delivery.status))
        ).all(),
        WAITING,
    )


def _per_channel(rows: Sequence[Any], order: Sequence[str]) -> Series:
    channels = sorted({channel for channel, _, _ in rows})
    counts: dict[str, list[int]] = defaultdict(lambda: [0] * len(channels))
    for channel, status, n in rows:
        counts[status][channels.index(channel)] += n
    return Series(channels, {s: counts[s] for s in order if s in counts})


@dataclass(frozen=True)
class Latency:
    """Seconds from the event's acceptance to a channel's first hand-over to its provider."""

    count: int
    p50: float
    p95: float


def latency_to_sent(session: Session, *, since: datetime, until: datetime) -> dict[str, Latency]:
    """p50 and p95 of accept → sent per channel, over deliveries created in [since, until).

    "Sent" is the delivery's first ``sent`` or ``delivered`` timeline entry (a
    sandbox or push send is delivered at once), as ``notifier_time_to_sent_seconds``
    counts it. The percentiles are nearest-rank (the value at rank ⌈p·n⌉), ranked
    by ``ROW_NUMBER()`` in the database.
    """
    # Looked up per delivery of the window (the timeline's delivery_id index), so a
    # day's ranking reads a day's rows, not the whole timeline.
    first_at = (
        sa.select(sa.func.min(col(DeliveryChange.at)))
        .where(
            col(DeliveryChange.delivery_id) == col(Delivery.id),
            col(DeliveryChange.status).in_([DeliveryStatus.SENT, DeliveryStatus.DELIVERED]),
        )
        .correlate(Delivery)
        .scalar_subquery()
    )
    timed = (
        sa.select(
            col(Delivery.channel).label("channel"),
            first_at.label("first_at"),
            col(Event.received_at).label("received_at"),
        )
        .join(Notification, col(Notification.id) == col(Delivery.notification_id))
        .join(Event, col(Event.id) == col(Notification.event_pk))
        .where(col(Delivery.created_at) >= since, col(Delivery.created_at) < until)
        # Materialized: PostgreSQL looks each first hand-over up once, not once per use.
        .cte("timed")
        .prefix_with("MATERIALIZED", dialect="postgresql")
    )
    seconds = _seconds_between(session, timed.c.first_at, timed.c.received_at)
    ranked = (
        sa.select(
            timed.c.channel,
            seconds.label("seconds"),
            sa.func.row_number().over(partition_by=timed.c.channel, order_by=seconds).label("rank"),
            sa.func.count().over(partition_by=timed.c.channel).label("n"),
        )
        .where(timed.c.first_at.is_not(None))
        .subquery()
    )
    # ⌈p·n⌉ in integer arithmetic, the same in both databases.
    p50_rank, p95_rank = (50 * ranked.c.n + 99) // 100, (95 * ranked.c.n + 99) // 100
    found: dict[str, dict[str, float]] = defaultdict(dict)
    counts: dict[str, int] = {}
    for name, value, n, is_p50, is_p95 in session.execute(
        sa.select(
            ranked.c.channel,
            ranked.c.seconds,
            ranked.c.n,
            ranked.c.rank == p50_rank,
            ranked.c.rank == p95_rank,
        ).where(sa.or_(ranked.c.rank == p50_rank, ranked.c.rank == p95_rank))
    ):
        counts[name] = int(n)
        # A clock step between two processes can put the hand-over a moment
        # before the acceptance; no latency is below zero.
        value = max(float(value), 0.0)
        if is_p50:
            found[name]["p50"] = value
        if is_p95:
            found[name]["p95"] = value
    return {
        name: Latency(counts[name], found[name]["p50"], found[name]["p95"])
        for name in sorted(found)
    }


def _seconds_between(session: Session, later: Any, earlier: Any) -> Any:
    """``later - earlier`` in seconds, in the database's own SQL."""
    if session.get_bind().dialect.name == "postgresql":
        return sa.func.extract("epoch", later - earlier)
    # SQLite keeps UTC datetimes as text; julianday reads it, fractions included.
    return (sa.func.julianday(later) - sa.func.julianday(earlier)) * 86400.0
