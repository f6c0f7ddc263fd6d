"""The ops dashboard: deliveries by channel and status over 24 hours and 30 days, failure
reasons ranked, queue depths, open circuits and today's cases.

Its counts come from :mod:`notifier.deliveries.stats` (computed in the database) and are
drawn server-side by :mod:`notifier.web.charts`, so the page needs no script. A page
module beside :mod:`notifier.web.ops`: it imports the domains' read-only services.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from time import monotonic
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from channels import CHANNEL_NAMES
from notifier.api.deliveries import shown_text
from notifier.api.deps import RuntimeDep, SessionDep
from notifier.deliveries import stats
from notifier.escalation import lists
from notifier.queues.celery_config import ALL_QUEUES
from notifier.web import charts
from notifier.web.deps import LANG_COOKIE, OpsUser, render
from notifier.web.i18n import pick_language, translations
from notifier.web.ops import STATUSES, _open_circuits

__all__ = ["router"]

router = APIRouter(prefix="/ops", include_in_schema=False)
WIDE = 700.0
"""A full-width chart's drawing on a wider screen (a card at 48rem holds 700 px)."""


@dataclass(frozen=True, slots=True)
class _Counts:
    hourly: stats.Series
    daily: stats.Series
    channels_day: stats.Series
    channels_month: stats.Series
    failures: list[tuple[str, str, int]]
    latency_day: dict[str, stats.Latency]


def _delivery_counts(session: SessionDep, now: datetime, tz: ZoneInfo) -> _Counts:
    day_ago, month_ago = now - timedelta(hours=24), now - timedelta(days=30)
    return _Counts(
        hourly=stats.by_time(session, unit="hour", since=day_ago, until=now, tz=tz),
        daily=stats.by_time(session, unit="day", since=month_ago, until=now, tz=tz),
        channels_day=stats.by_channel(session, since=day_ago, until=now),
        channels_month=stats.by_channel(session, since=month_ago, until=now),
        failures=_masked_reasons(
            stats.failure_reasons(session, since=month_ago, until=now, limit=200)
        ),
        # 24 hours only: ranking a month of deliveries costs seconds (about 4 s for
        # 400,000 on PostgreSQL here, 0.2-0.4 s for their last day); Grafana has the month.
        latency_day=stats.latency_to_sent(session, since=day_ago, until=now),
    )


def _masked_reasons(
    rows: list[tuple[str, str, int]], *, top: int = 10
) -> list[tuple[str, str, int]]:
    """The most frequent failure reasons as ops may read them: a provider's text often names
    the number or address it refused, and reasons that differ only there are one reason."""
    merged: Counter[tuple[str, str]] = Counter()
    for channel, reason, n in rows:
        merged[(channel, shown_text(reason))] += n
    return [(channel, reason, n) for (channel, reason), n in merged.most_common(top)]


class _SlowOnly:
    """Keeps a result for ``ttl`` seconds, but only one that took long to compute.

    With a million deliveries the 30-day counts take most of a second; a few
    people reloading the dashboard should not each cost that. Small databases
    (and tests) always see fresh numbers.
    """

    def __init__(self, *, slow: float, ttl: float) -> None:
        self.slow, self.ttl = slow, ttl
        self._kept: tuple[float, _Counts] | None = None
        self._lock = threading.Lock()

    def get(self, compute: Callable[[], _Counts]) -> _Counts:
        with self._lock:
            if self._kept is not None and monotonic() - self._kept[0] < self.ttl:
                return self._kept[1]
        started = monotonic()
        value = compute()
        if monotonic() - started >= self.slow:
            with self._lock:
                self._kept = (monotonic(), value)
        return value


_DASHBOARD = _SlowOnly(slow=0.25, ttl=30)


@router.get("/dashboard", response_class=HTMLResponse)
def dashboard(
    request: Request,
    rt: RuntimeDep,
    session: SessionDep,
    user: OpsUser,
) -> HTMLResponse:
    """Deliveries by channel and status (24 hours, 30 days), failures ranked, latency,
    what waits now, queues, cases."""
    now, tz = rt.clock(), rt.policy.tz
    counts = _DASHBOARD.get(lambda: _delivery_counts(session, now, tz))
    today = rt.policy.business_date(now)
    cases = lists.stats(session, since=today, tz=tz)
    # Not in the cached counts: fixing contact data, or a queue draining, should
    # show at the next reload.
    unreachable = stats.unreachable_count(session, since=now - timedelta(days=30), until=now)
    waiting = stats.waiting_by_channel(session)
    # The charts' words in the page's language: statuses and channels.
    words = translations(pick_language(request.cookies.get(LANG_COOKIE), user))
    _ = words.gettext
    names = {word: _(word) for word in (*STATUSES, *CHANNEL_NAMES)}

    def bars(series: stats.Series, title: str, *, cut: int = 0, every: int = 1) -> str:
        labels = [label[cut:] for label in series.labels]
        return charts.either(
            charts.stacked_bars(
                labels,
                series.series,
                title=_(title),
                label_every=every,
                names=names,
                width=WIDE,
            ),
            charts.stacked_bars(
                labels,
                series.series,
                title=_(title),
                label_every=every * 2,
                names=names,
                width=charts.NARROW,
            ),
        )

    def by_channel(series: stats.Series, title: str) -> str:
        return charts.stacked_bars(
            series.labels, series.series, title=_(title), names=names, width=charts.NARROW
        )

    failures = [(f"{_(channel)} · {reason}", n) for channel, reason, n in counts.failures]
    failures_title = _("Failure reasons, last 30 days")
    latency = [(_(channel), row.p50, row.p95) for channel, row in counts.latency_day.items()]
    return render(
        request,
        "ops/dashboard.html",
        circuits=_open_circuits(rt, session),
        hourly=counts.hourly,
        daily=counts.daily,
        hourly_svg=bars(counts.hourly, "Deliveries per hour, last 24 hours", cut=-5, every=3),
        daily_svg=bars(counts.daily, "Deliveries per day, last 30 days", cut=5, every=5),
        channels_day_svg=by_channel(counts.channels_day, "By channel, last 24 hours"),
        channels_month_svg=by_channel(counts.channels_month, "By channel, last 30 days"),
        failures=counts.failures,
        failures_svg=charts.either(
            charts.hbars(failures, title=failures_title, width=WIDE),
            charts.hbars(failures, title=failures_title, width=charts.NARROW),
        ) if failures else "",
        latency_day=counts.latency_day,
        latency_svg=charts.latency_bars(
            latency, title=_("Accepted to sent, last 24 hours"), width=charts.NARROW,
            caption=lambda p50, p95: f"p50 {duration(p50, _)} · p95 {duration(p95, _)}",
        ) if latency else "",
        waiting=waiting,
        waiting_svg=by_channel(waiting, "Waiting now by channel") if waiting.labels else "",
        queues=rt.dispatcher.queue_depths(ALL_QUEUES),
        cases=cases,
        today=today,
        tz=tz,
        unreachable=unreachable,
        duration=lambda seconds: duration(seconds, _),
    )  # fmt: skip


def duration(seconds: float, gettext: Callable[[str], str]) -> str:
    """A latency in the unit that reads best: ``"42 s"``, ``"12 min"``, ``"3.5 h"``, ``"1.2 d"``."""
    if seconds < 90:
        return gettext("%(n)s s") % {"n": f"{seconds:.0f}" if seconds >= 10 else f"{seconds:.1f}"}
    if seconds < 90 * 60:
        return gettext("%(n)s min") % {"n": f"{seconds / 60:.0f}"}
    if seconds < 36 * 3600:
        return gettext("%(n)s h") % {"n": f"{seconds / 3600:.1f}"}
    return gettext("%(n)s d") % {"n": f"{seconds / 86400:.1f}"}
