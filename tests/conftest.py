"""Shared fixtures: real notifier stacks, started once per test session."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from notifier.providers.simulated import Simulators
from tests.support.ledger import Ledger, opened
from tests.support.stack import (
    REAL_BROKER_STACKS,
    STACKS,
    Stack,
    build_stack,
)

MACHINE_LOCK = os.environ.get("NOTIFIER_MACHINE_LOCK", "/tmp/notifier-machine.lock")
"""The lock benchmarks and server restarts take (``flock`` on this file); empty: none."""
MACHINE_LOCK_WAIT = 240.0
"""Seconds a ``machine`` test waits for the lock: under pytest's 300 s timeout, so a held
lock fails the test with the reason rather than as a timeout."""


@pytest.fixture(scope="session")
def _machine_lock() -> Iterator[None]:
    # A `machine` test stops Redis, RabbitMQ or PostgreSQL under every other run
    # on the machine: a benchmark measuring then lost its Redis and left thousands
    # of deliveries claimed. Held from the first such test to the end of the run.
    if not MACHINE_LOCK:
        yield
        return
    with open(MACHINE_LOCK, "a") as held:
        deadline, told = time.monotonic() + MACHINE_LOCK_WAIT, False
        while True:
            try:
                fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"{MACHINE_LOCK} is still held after {MACHINE_LOCK_WAIT:.0f} s (a "
                        "benchmark or another run restarting servers?); these tests stop "
                        "servers it may be using. NOTIFIER_MACHINE_LOCK= runs them without it"
                    )
                if not told:
                    print(f"\nwaiting for {MACHINE_LOCK}: another run holds it", flush=True)
                    told = True
                time.sleep(1.0)
        try:
            yield
        finally:
            fcntl.flock(held, fcntl.LOCK_UN)


@pytest.fixture(autouse=True)
def _machine_quiet(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("machine") is not None:
        request.getfixturevalue("_machine_lock")


@pytest.fixture(scope="session")
def _stacks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Stack]]:
    started: dict[str, Stack] = {}
    yield started
    for stack in started.values():
        stack.close()


def _get(started: dict[str, Stack], name: str, tmp_path_factory: pytest.TempPathFactory) -> Stack:
    if name not in started:
        folder: Path = tmp_path_factory.mktemp(name)
        started[name] = build_stack(name, folder)
    stack = started[name]
    if stack.worker is None:  # a test that failed half way may have left it stopped
        stack.start_worker()
    return stack


@pytest.fixture(params=STACKS)
def stack(
    request: pytest.FixtureRequest,
    _stacks: dict[str, Stack],
    tmp_path_factory: pytest.TempPathFactory,
) -> Stack:
    """A running stack: SQLite + filesystem broker, or PostgreSQL + RabbitMQ / Redis."""
    return _get(_stacks, request.param, tmp_path_factory)


@pytest.fixture(params=REAL_BROKER_STACKS)
def broker_stack(
    request: pytest.FixtureRequest,
    _stacks: dict[str, Stack],
    tmp_path_factory: pytest.TempPathFactory,
) -> Stack:
    """A running stack on a broker server that a test may stop and start."""
    return _get(_stacks, request.param, tmp_path_factory)


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def ledger(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Ledger]:
    """A bill ledger on SQLite or PostgreSQL, fed by events, for calendar scenarios."""
    with opened(request.param, tmp_path_factory.mktemp(f"ledger-{request.param}")) as book:
        yield book


@pytest.fixture(scope="module")
def simulators(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulators]:
    """The Twilio, FCM and SMTP simulators, for a module whose stack uses the real adapters."""
    sims = Simulators(maildir=tmp_path_factory.mktemp("mail"))
    sims.start()
    yield sims
    sims.stop()
