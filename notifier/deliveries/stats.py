"""Counts for the ops dashboard: deliveries by time bucket, channel and status; failure reasons.

Every query is one ``GROUP BY`` over a ``created_at`` range (indexed), so the
database does the counting and the page gets dozens of numbers, not rows.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlmodel import Session, col

from notifier.deliveries.models import Delivery, DeliveryStatus, Notification, NotificationStatus

__all__ = ["Series", "by_channel", "by_time", "failure_reasons", "unreachable_count"]

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
    channels = sorted({channel for channel, _, _ in rows})
    counts: dict[str, list[int]] = defaultdict(lambda: [0] * len(channels))
    for channel, status, n in rows:
        counts[status][channels.index(channel)] += n
    return Series(channels, {s: counts[s] for s in STATUS_ORDER if s in counts})


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
