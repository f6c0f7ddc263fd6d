"""A provider's circuit: opened by a fault of our account, one probe per period, closed by it.

The same scenario for both stores every process shares: the database (here
SQLite, as in the embedded mode) and Redis.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from notifier.db import Database
from notifier.migrations import upgrade
from notifier.providers.circuits import Circuits, DatabaseCircuits, RedisCircuits
from tests.support.stack import REDIS_URL, need

PERIOD = 300.0
T0 = 1_800_000_000.0


@pytest.fixture(params=["database", "redis"])
def circuits(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Circuits]:
    if request.param == "database":
        url = f"sqlite:///{tmp_path / 'circuits.db'}"
        upgrade(url)
        db = Database(url)
        yield DatabaseCircuits(db)
        db.dispose()
    else:
        need("Redis", "127.0.0.1", 6379)
        prefix = f"notifier-test:circuit:{tmp_path.name}:"
        store = RedisCircuits(f"{REDIS_URL}/0", prefix=prefix)
        yield store
        keys = store._redis.keys(prefix + "*")
        if keys:
            store._redis.delete(*keys)


def test_a_provider_nobody_tripped_is_closed(circuits: Circuits) -> None:
    assert circuits.check("twilio", now=T0, open_seconds=PERIOD).state == "closed"
    assert circuits.states() == []
    assert circuits.close("twilio") is False


def test_an_open_circuit_lets_one_probe_through_per_period(circuits: Circuits) -> None:
    assert circuits.trip("twilio", "20003: Authenticate", now=T0, open_seconds=PERIOD) is True

    waiting = circuits.check("twilio", now=T0 + 100, open_seconds=PERIOD)
    assert (waiting.state, waiting.wait, waiting.reason) == ("open", 200.0, "20003: Authenticate")
    assert circuits.check("fcm", now=T0 + 100, open_seconds=PERIOD).state == "closed"

    assert circuits.check("twilio", now=T0 + PERIOD, open_seconds=PERIOD).state == "probe"
    again = circuits.check("twilio", now=T0 + PERIOD + 1, open_seconds=PERIOD)
    assert (again.state, again.wait) == ("open", PERIOD - 1), "the others wait while it probes"

    # The probe failed the same way: open another period, still one opening.
    assert (
        circuits.trip("twilio", "20003: Authenticate", now=T0 + 310, open_seconds=PERIOD) is False
    )
    [state] = circuits.states()
    assert (state.provider, state.open, state.opened_at, state.openings) == ("twilio", True, T0, 1)
    assert state.probe_at == T0 + 310 + PERIOD


def test_a_probe_that_worked_closes_it_and_the_next_fault_opens_it_again(
    circuits: Circuits,
) -> None:
    circuits.trip("twilio", "20005: Account not active", now=T0, open_seconds=PERIOD)
    assert circuits.check("twilio", now=T0 + PERIOD, open_seconds=PERIOD).state == "probe"

    assert circuits.close("twilio") is True
    assert circuits.check("twilio", now=T0 + PERIOD + 1, open_seconds=PERIOD).state == "closed"
    [closed] = circuits.states()
    assert (closed.open, closed.openings, closed.probe_at) == (False, 1, None)

    assert circuits.trip("twilio", "21212: bad From", now=T0 + 900, open_seconds=PERIOD) is True
    [reopened] = circuits.states()
    assert (reopened.open, reopened.openings, reopened.reason) == (True, 2, "21212: bad From")
