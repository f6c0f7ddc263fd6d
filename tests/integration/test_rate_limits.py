"""Provider rates shared by every worker: each send gets its own slot, 1/rate apart."""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import notifier.models  # noqa: F401  (every table, for the migration)
from notifier.db import Database
from notifier.migrations import upgrade
from notifier.providers.ratelimit import DatabaseRateLimiter, RateLimiter, RedisRateLimiter
from tests.support.stack import REDIS_URL, need


@pytest.fixture(params=["database", "redis"])
def limiter(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RateLimiter]:
    if request.param == "redis":
        need("Redis", "127.0.0.1", 6379)
        yield RedisRateLimiter(f"{REDIS_URL}/0", prefix=f"notifier-test:{uuid.uuid4().hex}:")
        return
    url = f"sqlite:///{tmp_path / 'rates.db'}"
    upgrade(url)
    db = Database(url)
    yield DatabaseRateLimiter(db)
    db.dispose()


def test_concurrent_senders_get_distinct_slots_one_interval_apart(limiter: RateLimiter) -> None:
    def slot(_: int) -> tuple[float, float]:
        # The slot is known only to within the call's round trip: a loaded machine
        # stretches that, so the check below widens with it instead of failing.
        asked = time.time()
        delay = limiter.reserve("twilio", 10.0)
        answered = time.time()
        return asked + delay, answered + delay

    with ThreadPoolExecutor(max_workers=8) as pool:
        slots = list(pool.map(slot, range(40)))
    # Forty sends at 10/s: no two slots shown closer than 0.1 s by the round trips (a
    # slow caller may leave a larger gap: a rate is a floor on spacing), four seconds in all.
    too_close = [
        (a, b)
        for a, b in itertools.combinations(slots, 2)
        if max(b[1] - a[0], a[1] - b[0]) < 0.1 - 1e-3
    ]
    assert not too_close, too_close
    assert max(hi for _, hi in slots) - min(lo for lo, _ in slots) >= 39 * 0.1 - 1e-3


def test_providers_do_not_share_a_rate(limiter: RateLimiter) -> None:
    for _ in range(5):
        limiter.reserve("smtp", 1.0)
    assert limiter.reserve("fcm", 1.0) < 0.5
