"""Prometheus metrics, computed from the database when Prometheus scrapes.

Why a collector that reads the database, and not prometheus-client's
multiprocess mode: deliveries are changed by many processes on several hosts
(prefork workers per queue, API replicas taking provider callbacks, beat's
reconciler and print batch). Multiprocess mode merges the files of the
processes of *one host* (``PROMETHEUS_MULTIPROC_DIR``): Prometheus would have
to scrape every worker host, workers would need an HTTP port, and gauges such
as "deliveries queued now" cannot be kept right by increments spread over
processes that crash. The database is the one place every process writes,
with every status change in the ``delivery_changes`` timeline, so any API
replica computes the same numbers from it, and no process has to stay alive
to keep a count.

What each scrape costs (the ``notifier_metrics_read_seconds`` gauge says):

- gauges (deliveries by status, open escalations) are one ``GROUP BY`` each
  over their table, as they are now;
- the timeline's totals (time to sent and to delivered, provider errors) are
  not read again in full: :class:`TimelineTotals` adds each range of timeline
  ids up once, ``SETTLE_SECONDS`` after it saw the range's last id (by then
  every transaction that took an id in it has committed or rolled back), and
  reads only the ids after that range at each scrape. The first scrapes of a
  process read the whole timeline, once.

:class:`DatabaseCollector` also keeps its result for
``NOTIFIER_METRICS_CACHE_SECONDS``, so several scrapers (two Prometheus
servers, replicas behind one load balancer) do not multiply the load.

Counters and histograms are totals over the rows in the database: they only
grow, unless rows are deleted (Prometheus reads that as a counter reset).
Labels carry channels, statuses, queue names, escalation kinds, service areas
and provider error codes: never an address, a number or a name.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy.orm import aliased
from sqlmodel import Session, col

from notifier.db import Database
from notifier.deliveries.models import Delivery, DeliveryChange, DeliveryStatus, Notification
from notifier.escalation.models import Agent, CaseStatus, Escalation
from notifier.events.models import Event
from notifier.providers.circuits import CircuitState

__all__ = [
    "LATENCY_BUCKETS",
    "SETTLE_SECONDS",
    "DatabaseCollector",
    "Histogram",
    "Snapshot",
    "Timeline",
    "TimelineTotals",
    "error_code",
    "families",
    "read_gauges",
    "read_receipts",
    "read_timeline",
]

OTHER_AREA = "other"
"""The ``area`` label of open cases in an area no agent works (or none)."""

LATENCY_BUCKETS: tuple[float, ...] = (
    1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 28800, 43200, 86400, 172800,
)  # fmt: skip
"""Seconds: a sandbox send takes about one, quiet hours hold SMS up to 11 hours,
and a postcard waits for the day's print batch."""
SETTLE_SECONDS = 30.0
"""A transaction that wrote a timeline row has committed or rolled back this
long after; the service's transactions last well under a second."""

_SENT = (DeliveryStatus.SENT, DeliveryStatus.DELIVERED)
_DELIVERED = (DeliveryStatus.DELIVERED,)
# Timeline entries that may carry a provider's error: a transient failure
# (back to queued), a permanent one, and provider reports.
_ERROR_STATUSES = (
    DeliveryStatus.QUEUED,
    DeliveryStatus.FAILED,
    DeliveryStatus.UNDELIVERED,
    "busy",
    "no-answer",
)
# Provider codes as the adapters raise them: Twilio and SMTP numbers ("21211",
# "550", "4xx"), FCM and our own names ("UNREGISTERED", "no_recipient").
# Anything else becomes "other", so no label can carry a phone number (8 or
# more digits), an email address or free text.
_CODE = re.compile(r"\d{1,6}|\dxx|[A-Za-z][A-Za-z0-9_./-]{0,39}")
_CODE_HEAD = 48
"""Characters of an error text searched for its ``code: reason`` prefix."""


def error_code(text: str | None) -> str:
    """A label-safe provider error code: ``"21211"``, ``"UNREGISTERED"``, ``"none"`` or ``"other"``."""
    if not text:
        return "none"
    text = text.strip()
    return text if _CODE.fullmatch(text) else "other"


@dataclass
class Histogram:
    """Cumulative bucket counts (``buckets[i]``: observations <= ``LATENCY_BUCKETS[i]``)."""

    buckets: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BUCKETS))
    count: int = 0
    total: float = 0.0

    def __add__(self, other: Histogram) -> Histogram:
        return Histogram(
            [a + b for a, b in zip(self.buckets, other.buckets, strict=True)],
            self.count + other.count,
            self.total + other.total,
        )


@dataclass
class Timeline:
    """Totals over a range of timeline ids; the totals of two ranges add up."""

    errors: dict[tuple[str, str], int] = field(default_factory=dict)
    time_to_sent: dict[str, Histogram] = field(default_factory=dict)
    time_to_delivered: dict[str, Histogram] = field(default_factory=dict)

    def __add__(self, other: Timeline) -> Timeline:
        return Timeline(
            _merge(self.errors, other.errors, 0),
            _merge(self.time_to_sent, other.time_to_sent, Histogram()),
            _merge(self.time_to_delivered, other.time_to_delivered, Histogram()),
        )


def _merge(a: Mapping[Any, Any], b: Mapping[Any, Any], zero: Any) -> dict[Any, Any]:
    return {key: a.get(key, zero) + b.get(key, zero) for key in a.keys() | b.keys()}


@dataclass
class Snapshot:
    """Everything one scrape reports, read at ``at`` (epoch seconds) in ``seconds``."""

    deliveries: dict[tuple[str, str], int] = field(default_factory=dict)
    retries: dict[str, int] = field(default_factory=dict)
    escalations_open: dict[tuple[str, str], int] = field(default_factory=dict)
    timeline: Timeline = field(default_factory=Timeline)
    queue_depths: dict[str, int | None] = field(default_factory=dict)
    circuits: list[CircuitState] = field(default_factory=list)
    receipts_overdue: dict[str, int] = field(default_factory=dict)
    at: float = 0.0
    seconds: float = 0.0


def read_gauges(session: Session) -> Snapshot:
    """Deliveries by channel and status (with their retries), open escalations."""
    snap = Snapshot(at=time.time())
    for channel, status, count, retries in session.execute(
        sa.select(
            col(Delivery.channel),
            col(Delivery.status),
            sa.func.count(),
            # Attempts after the first: every retry that reached the provider
            # (transient errors, busy or unanswered calls); rate-limit waits
            # and lost leases are not counted, as no attempt was made.
            sa.func.sum(sa.case((col(Delivery.attempts) > 1, col(Delivery.attempts) - 1), else_=0)),
        ).group_by(col(Delivery.channel), col(Delivery.status))
    ):
        snap.deliveries[(channel, status)] = int(count)
        snap.retries[channel] = snap.retries.get(channel, 0) + int(retries or 0)
    # An account's area is the producer's text: as a label it would let a producer add
    # series without end. Areas some agent works are labels; every other is "other".
    staffed = set(session.execute(sa.select(col(Agent.area)).distinct()).scalars())
    for kind, area, count in session.execute(
        sa.select(col(Escalation.kind), col(Escalation.area), sa.func.count())
        .where(col(Escalation.status) == CaseStatus.OPEN)
        .group_by(col(Escalation.kind), col(Escalation.area))
    ):
        label = area if area in staffed else OTHER_AREA
        key = (kind, label)
        snap.escalations_open[key] = snap.escalations_open.get(key, 0) + int(count)
    return snap


def read_receipts(
    session: Session, *, providers: Collection[str], older_than: float
) -> dict[str, int]:
    """Per receipt-reporting provider: its ``sent`` deliveries waiting for a report since
    before ``older_than`` (epoch seconds). One count per provider, each a range of the
    receipt sweep's index (status, provider, updated_at); 0 for a provider with none."""
    cutoff = datetime.fromtimestamp(older_than, UTC)
    overdue = dict.fromkeys(sorted(providers), 0)
    for provider, count in session.execute(
        sa.select(col(Delivery.provider), sa.func.count())
        .where(
            col(Delivery.status) == DeliveryStatus.SENT,
            col(Delivery.provider).in_(list(providers)),
            col(Delivery.updated_at) < cutoff,
        )
        .group_by(col(Delivery.provider))
    ):
        overdue[provider] = int(count)
    return overdue


def read_timeline(session: Session, *, after: int = 0, upto: int | None = None) -> Timeline:
    """The timeline's totals over the ids in ``(after, upto]`` (``upto`` None: all after)."""
    return Timeline(
        errors=provider_errors(session, after=after, upto=upto),
        time_to_sent=first_times(session, _SENT, after=after, upto=upto),
        time_to_delivered=first_times(session, _DELIVERED, after=after, upto=upto),
    )


def _in_range(after: int, upto: int | None) -> Any:
    ids = col(DeliveryChange.id)
    return sa.and_(ids > after, sa.true() if upto is None else ids <= upto)


def provider_errors(
    session: Session, *, after: int = 0, upto: int | None = None
) -> dict[tuple[str, str], int]:
    """Provider errors in the timeline, by channel and the provider's code.

    A send's error is recorded as ``"<code>: <reason>"`` (``str`` of a
    ``ChannelError``); a provider report's as ``error_code``. Only the code is
    kept, and only if it looks like one (:func:`error_code`).
    """
    detail = col(DeliveryChange.detail)
    error = detail["error"].as_string()
    reported = detail["error_code"].as_string()
    head = sa.func.substr(error, 1, _CODE_HEAD)
    if session.get_bind().dialect.name == "postgresql":
        prefix: Any = sa.func.split_part(head, ": ", 1)
    else:
        colon = sa.func.instr(head, ": ")
        prefix = sa.case((colon > 0, sa.func.substr(head, 1, colon - 1)), else_=head)
    code = sa.func.coalesce(detail["code"].as_string(), reported, prefix)
    coded = (
        sa.select(col(Delivery.channel).label("channel"), code.label("code"))
        .select_from(DeliveryChange)
        .join(Delivery, col(Delivery.id) == col(DeliveryChange.delivery_id))
        .where(
            _in_range(after, upto),
            col(DeliveryChange.status).in_(_ERROR_STATUSES),
            sa.or_(error.is_not(None), reported.is_not(None)),
        )
        .subquery()
    )
    errors: dict[tuple[str, str], int] = {}
    for channel, raw, count in session.execute(
        sa.select(coded.c.channel, coded.c.code, sa.func.count()).group_by(
            coded.c.channel, coded.c.code
        )
    ):
        key = (channel, error_code(raw))
        errors[key] = errors.get(key, 0) + int(count)
    return errors


def first_times(
    session: Session, statuses: Sequence[str], *, after: int = 0, upto: int | None = None
) -> dict[str, Histogram]:
    """Seconds from the event's acceptance to each delivery's first ``statuses`` entry.

    Counted in the id range that holds the delivery's first such entry: a
    delivery with one at or before ``after`` was counted with that range.
    The hand-over to the provider is the first ``sent`` or ``delivered``
    (sandbox and FCM sends are delivered at once); delivery is the first
    ``delivered``, the provider's report included.
    """
    change = col(DeliveryChange.status)
    first: Any = (
        sa.select(
            col(DeliveryChange.delivery_id).label("delivery_id"),
            sa.func.min(col(DeliveryChange.at)).label("at"),
        )
        .where(_in_range(after, upto), change.in_(statuses))
        .group_by(col(DeliveryChange.delivery_id))
    )
    if after > 0:
        earlier = aliased(DeliveryChange)
        first = first.where(
            ~sa.exists().where(
                col(earlier.delivery_id) == col(DeliveryChange.delivery_id),
                col(earlier.status).in_(statuses),
                col(earlier.id) <= after,
            )
        )
    firsts = first.subquery()
    timed = (
        sa.select(
            col(Delivery.channel).label("channel"),
            _seconds_between(session, firsts.c.at, col(Event.received_at)).label("seconds"),
        )
        .select_from(firsts)
        .join(Delivery, col(Delivery.id) == firsts.c.delivery_id)
        .join(Notification, col(Notification.id) == col(Delivery.notification_id))
        .join(Event, col(Event.id) == col(Notification.event_pk))
        # Materialized, so that PostgreSQL computes each row's seconds once,
        # not once per bucket bound it compares them with.
        .cte("timed")
        .prefix_with("MATERIALIZED", dialect="postgresql")
    )
    seconds = timed.c.seconds
    bucket = sa.case(
        *((seconds <= le, i) for i, le in enumerate(LATENCY_BUCKETS)), else_=len(LATENCY_BUCKETS)
    )
    histograms: dict[str, Histogram] = {}
    for channel, index, count, total in session.execute(
        sa.select(timed.c.channel, bucket, sa.func.count(), sa.func.sum(seconds)).group_by(
            timed.c.channel, bucket
        )
    ):
        h = histograms.setdefault(channel, Histogram())
        for i in range(int(index), len(LATENCY_BUCKETS)):
            h.buckets[i] += int(count)  # cumulative: each bucket from the first that holds it
        h.count += int(count)
        h.total += float(total or 0.0)
    return histograms


def _seconds_between(session: Session, later: Any, earlier: Any) -> Any:
    """``later - earlier`` in seconds, in the database's own SQL."""
    if session.get_bind().dialect.name == "postgresql":
        return sa.func.extract("epoch", later - earlier)
    # SQLite keeps UTC datetimes as text; julianday reads it, fractions included.
    return (sa.func.julianday(later) - sa.func.julianday(earlier)) * 86400.0


class TimelineTotals:
    """The timeline's totals, adding each range of ids up once it has settled.

    A row's id is taken when it is inserted, not when it commits, so a row
    with a lower id than one already read may still appear. Ids are folded
    into the kept totals only up to the highest id seen ``settle`` seconds
    ago; everything after that is read again at each call.
    """

    def __init__(self, *, settle: float = SETTLE_SECONDS) -> None:
        self.settle = settle
        self.reset()

    def reset(self) -> None:
        """Forget every total: the next read starts from the first id."""
        self.folded = Timeline()
        self.folded_upto = 0
        self._seen: deque[tuple[float, int]] = deque()

    def read(self, session: Session) -> Timeline:
        now = time.monotonic()
        last = int(session.execute(sa.select(sa.func.max(col(DeliveryChange.id)))).scalar() or 0)
        if last < self.folded_upto:  # the database was restored or emptied: start again
            self.reset()
        target = None
        while self._seen and now - self._seen[0][0] >= self.settle:
            target = self._seen.popleft()[1]
        if target is not None and target > self.folded_upto:
            self.folded = self.folded + read_timeline(session, after=self.folded_upto, upto=target)
            self.folded_upto = target
        self._seen.append((now, last))
        return self.folded + read_timeline(session, after=self.folded_upto)


class DatabaseCollector(Collector):
    """A prometheus-client collector over the database, its result kept ``ttl`` seconds."""

    def __init__(
        self,
        db: Database,
        *,
        ttl: float,
        queue_depths: Callable[[], Mapping[str, int | None]] | None = None,
        circuits: Callable[[], Sequence[CircuitState]] | None = None,
        settle: float = SETTLE_SECONDS,
        reporting: Collection[str] = (),
        receipt_overdue_seconds: float = 900.0,
    ) -> None:
        self.db = db
        self.ttl = ttl
        self.queue_depths = queue_depths
        self.circuits = circuits
        self.reporting = reporting
        self.receipt_overdue_seconds = receipt_overdue_seconds
        self.timeline = TimelineTotals(settle=settle)
        self._snapshot: Snapshot | None = None
        self._lock = threading.Lock()

    def snapshot(self) -> Snapshot:
        """The kept snapshot, or a new one when it is older than ``ttl``.

        Scrapes that arrive while one is being read wait for it and share it.
        """
        with self._lock:
            cached = self._snapshot
            if cached is not None and time.time() - cached.at < self.ttl:
                return cached
            started = time.perf_counter()
            with self.db.session() as session:
                snap = read_gauges(session)
                snap.timeline = self.timeline.read(session)
                if self.reporting:
                    snap.receipts_overdue = read_receipts(
                        session,
                        providers=self.reporting,
                        older_than=snap.at - self.receipt_overdue_seconds,
                    )
            if self.queue_depths is not None:
                snap.queue_depths = dict(self.queue_depths())
            if self.circuits is not None:
                snap.circuits = list(self.circuits())
            snap.seconds = time.perf_counter() - started
            self._snapshot = snap
            return snap

    def collect(self) -> Iterator[Metric]:
        yield from families(self.snapshot())


def families(snap: Snapshot) -> Iterator[Metric]:
    """The snapshot as Prometheus metric families."""
    deliveries = GaugeMetricFamily(
        "notifier_deliveries",
        "Deliveries now in each status, by channel.",
        labels=["channel", "status"],
    )
    for (channel, status), count in sorted(snap.deliveries.items()):
        deliveries.add_metric([channel, status], count)
    yield deliveries

    for name, doc, data in (
        (
            "notifier_time_to_sent_seconds",
            "Seconds from the event's acceptance to the delivery's hand-over to the provider.",
            snap.timeline.time_to_sent,
        ),
        (
            "notifier_time_to_delivered_seconds",
            "Seconds from the event's acceptance to the first report that the delivery arrived.",
            snap.timeline.time_to_delivered,
        ),
    ):
        histogram = HistogramMetricFamily(name, doc, labels=["channel"])
        for channel, h in sorted(data.items()):
            buckets = [
                (str(float(le)), float(n)) for le, n in zip(LATENCY_BUCKETS, h.buckets, strict=True)
            ]
            buckets.append(("+Inf", float(h.count)))
            histogram.add_metric([channel], buckets, sum_value=h.total)
        yield histogram

    retries = CounterMetricFamily(
        "notifier_delivery_retries",
        "Send attempts after a delivery's first (transient errors, busy or unanswered calls).",
        labels=["channel"],
    )
    for channel, count in sorted(snap.retries.items()):
        retries.add_metric([channel], count)
    yield retries

    errors = CounterMetricFamily(
        "notifier_provider_errors",
        "Errors from providers (failed sends and error reports), by the provider's error code.",
        labels=["channel", "code"],
    )
    for (channel, code), count in sorted(snap.timeline.errors.items()):
        errors.add_metric([channel, code], count)
    yield errors

    queues = GaugeMetricFamily(
        "notifier_queue_depth",
        "Messages waiting in each broker queue (absent when the broker would not say).",
        labels=["queue"],
    )
    for queue, depth in sorted(snap.queue_depths.items()):
        if depth is not None:
            queues.add_metric([queue], depth)
    yield queues

    circuit_open = GaugeMetricFamily(
        "notifier_provider_circuit_open",
        "1 while the provider's circuit is open (its sends held: our account, credentials or "
        "sender were refused), else 0.",
        labels=["provider"],
    )
    openings = CounterMetricFamily(
        "notifier_provider_circuit_openings",
        "Times the provider's circuit opened.",
        labels=["provider"],
    )
    for circuit in snap.circuits:
        circuit_open.add_metric([circuit.provider], 1 if circuit.open else 0)
        openings.add_metric([circuit.provider], circuit.openings)
    yield circuit_open
    yield openings

    receipts = GaugeMetricFamily(
        "notifier_receipts_overdue",
        "Sends of a provider that reports receipts still without a report after "
        "NOTIFIER_RECEIPT_STALL_SECONDS (from NOTIFIER_RECEIPT_STALL_COUNT of them, traffic "
        "moves to the channel's other providers).",
        labels=["provider"],
    )
    for provider, count in sorted(snap.receipts_overdue.items()):
        receipts.add_metric([provider], count)
    yield receipts

    escalations = GaugeMetricFamily(
        "notifier_escalations_open",
        "Escalation cases open now, by kind (call, visit) and service area.",
        labels=["kind", "area"],
    )
    for (kind, area), count in sorted(snap.escalations_open.items()):
        escalations.add_metric([kind, area], count)
    yield escalations

    yield GaugeMetricFamily(
        "notifier_metrics_read_seconds",
        "Seconds the last reading of these metrics took (database and broker).",
        value=snap.seconds,
    )
