"""Shared fixtures: real notifier stacks, started once per test session."""

from __future__ import annotations

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
