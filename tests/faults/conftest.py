"""Fault tests: one real stack (PostgreSQL, RabbitMQ, a prefork worker with beat) on the
provider simulators, faults injected for real, and one closing check for each
(tests/support/faults.py). The table of all of them is printed at the end of
the run, so CI output shows it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from notifier.providers.simulated import Simulators
from tests.support.faults import FAST, RESULTS, ChaosTwilio
from tests.support.stack import Stack, build_stack, need


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RESULTS:
        return
    header = ("fault", "events", "deliveries", "final", "lost", "duplicate sends", "bound", "s")
    rows = [
        (
            r.fault,
            r.events,
            r.deliveries,
            r.final,
            r.lost,
            r.duplicates,
            r.bound,
            f"{r.seconds:.0f}",
        )
        for r in RESULTS
    ]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    terminalreporter.section("faults: nothing lost")
    for row in [header, *rows]:
        terminalreporter.write_line(
            "  ".join(
                str(cell).ljust(w) if i == 0 else str(cell).rjust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    terminalreporter.write_line(
        "bound: sends in flight at the fault (deliveries claimed by the worker that died or "
        "could not record); duplicate sends must not exceed it"
    )


@pytest.fixture(scope="session")
def fault_sims(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulators]:
    sims = Simulators(maildir=None)
    sims.twilio = ChaosTwilio(
        account_sid=sims.account_sid,
        auth_token=sims.auth_token,
        callback_delay=sims.callback_delay,
    )
    sims.start()
    yield sims
    sims.stop()


@pytest.fixture(scope="session")
def fault_stack(
    fault_sims: Simulators, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    need("PostgreSQL", "127.0.0.1", 5432)
    need("RabbitMQ", "127.0.0.1", 5672)
    built = build_stack(
        "postgres-rabbitmq-faults", tmp_path_factory.mktemp("faults"), {**fault_sims.env, **FAST}
    )
    yield built
    built.close()


@pytest.fixture
def stack(fault_stack: Stack) -> Stack:
    """The fault stack, with its worker running (a failed test may have left it stopped)."""
    if fault_stack.worker is None:
        fault_stack.start_worker()
    return fault_stack
