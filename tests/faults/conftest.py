"""Fault tests: one real stack (PostgreSQL, RabbitMQ, a prefork worker with beat) on the
provider simulators, faults injected for real, and one closing check for each
(tests/support/faults.py). The table of all of them is printed at the end of
the run, so CI output shows it.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from notifier.providers.simulated import Simulators
from tests.support.faults import (
    CALIBRATIONS,
    FAST_SECONDS,
    RESULTS,
    TIMING,
    ChaosTwilio,
    calibrate,
    timed_settings,
)
from tests.support.slowdown import (
    Calibration,
    cpu_hogs,
    cpu_loop_seconds,
    slow_hogs,
    worker_cpus,
)
from tests.support.stack import Stack, build_stack, need

DEADLINE_ROOM = 20.0
"""Seconds kept free before pytest's timeout: a wait that runs out fails as a timing
failure with the states it saw, and teardown still has time to stop the worker."""


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[Any]:
    # pytest-timeout counts from here (setup included), so the waits do too.
    marker = item.get_closest_marker("timeout")
    limit = (
        float(marker.args[0]) if marker and marker.args else float(item.config.getini("timeout"))
    )
    TIMING.deadline = time.monotonic() + (limit - DEADLINE_ROOM if limit > 0 else 3600.0)
    return (yield)


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
    for calibration in CALIBRATIONS:
        terminalreporter.write_line(f"machine: {calibration.describe()}")
    if TIMING.settings:
        timings = ", ".join(f"{name} {TIMING.settings[name]}" for name in FAST_SECONDS)
        terminalreporter.write_line(f"timings (fast figures x {TIMING.scale:.2f}): {timings}")


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
    hogs = slow_hogs()
    cpus = worker_cpus() if hogs else None
    with ExitStack() as running:
        calibration = Calibration(
            hogs=hogs, cpus=cpus, loop_alone=cpu_loop_seconds(), loop_worker=0
        )
        if cpus:
            running.enter_context(cpu_hogs(hogs, cpus[0]))
        calibration.loop_worker = cpu_loop_seconds(cpus) if cpus else calibration.loop_alone
        # Measured with timings that hold on any machine the scale could call for; the
        # worker is started again below with the ones the measure gives.
        built = build_stack(
            "postgres-rabbitmq-faults",
            tmp_path_factory.mktemp("faults"),
            {**fault_sims.env, **timed_settings(10.0)},
            worker_cpus=cpus,
        )
        running.callback(built.close)  # before the hogs stop: LIFO
        CALIBRATIONS.append(calibrate(built, fault_sims, calibration))
        TIMING.scale = calibration.scale
        TIMING.settings = timed_settings(calibration.scale)
        built.env.update(TIMING.settings)
        built.stop_worker()
        built.start_worker()
        yield built


@pytest.fixture
def stack(fault_stack: Stack) -> Stack:
    """The fault stack, with its worker running (a failed test may have left it stopped)."""
    if fault_stack.worker is None:
        fault_stack.start_worker()
    return fault_stack
