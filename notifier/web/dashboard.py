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

_Counts = tuple[stats.Series, stats.Series, stats.Series, stats.Series, list[tuple[str, str, int]]]


def _delivery_counts(session: SessionDep, now: datetime, tz: ZoneInfo) -> _Counts:
    day_ago, month_ago = now - timedelta(hours=24), now - timedelta(days=30)
    return (
        stats.by_time(session, unit="hour", since=day_ago, until=now, tz=tz),
        stats.by_time(session, unit="day", since=month_ago, until=now, tz=tz),
        stats.by_channel(session, since=day_ago, until=now),
        stats.by_channel(session, since=month_ago, until=now),
        _masked_reasons(stats.failure_reasons(session, since=month_ago, until=now, limit=200)),
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
    """Deliveries by channel and status (24 hours, 30 days), failures ranked, queues, cases."""
    now, tz = rt.clock(), rt.policy.tz
    hourly, daily, channels_day, channels_month, failures = _DASHBOARD.get(
        lambda: _delivery_counts(session, now, tz)
    )
    today = rt.policy.business_date(now)
    cases = lists.stats(session, since=today, tz=tz)
    # Not in the cached counts: fixing contact data should show at the next reload.
    unreachable = stats.unreachable_count(session, since=now - timedelta(days=30), until=now)
    # The charts' words in the page's language: statuses and channels.
    words = translations(pick_language(request.cookies.get(LANG_COOKIE), user))
    names = {word: words.gettext(word) for word in (*STATUSES, *CHANNEL_NAMES)}
    return render(
        request,
        "ops/dashboard.html",
        circuits=_open_circuits(rt, session),
        hourly=hourly,
        daily=daily,
        hourly_svg=charts.stacked_bars(
            [label[-5:] for label in hourly.labels], hourly.series,
            title="deliveries per hour, last 24 hours", label_every=3, names=names,
        ),
        daily_svg=charts.stacked_bars(
            [label[5:] for label in daily.labels], daily.series,
            title="deliveries per day, last 30 days", label_every=5, names=names,
        ),
        channels_day_svg=charts.stacked_bars(
            channels_day.labels, channels_day.series, title="last 24 hours by channel",
            names=names, width=400,
        ),
        channels_month_svg=charts.stacked_bars(
            channels_month.labels, channels_month.series, title="last 30 days by channel",
            names=names, width=400,
        ),
        channels_day=channels_day,
        channels_month=channels_month,
        failures=failures,
        failures_svg=charts.hbars(
            [(f"{channel} · {reason}", n) for channel, reason, n in failures],
            title="failure reasons, last 30 days",
        ) if failures else "",
        queues=rt.dispatcher.queue_depths(ALL_QUEUES),
        cases=cases,
        today=today,
        tz=tz,
        unreachable=unreachable,
    )  # fmt: skip
