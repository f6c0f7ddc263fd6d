"""The fault tests on a slower machine, and the time scale their waits and settings follow.

``NOTIFIER_FAULTS_SLOW=N`` (N ≥ 1) slows the worker for real: it is pinned to
one core (``taskset``) that it shares with N busy-looping processes, each in a
session of its own, so that the scheduler gives the worker about 1/(N+1) of
that core where it had two. Nothing else is touched: PostgreSQL, RabbitMQ,
the API and the provider simulators keep their speed, as on a deployment
whose worker hosts are the slow part.

Whether slowed or not, the session starts by measuring (:func:`calibrate`):
a CPU loop where the worker runs, beside the hogs and without them, and a
small batch of real deliveries through the worker. The batch's time over the
reference batch time on a quiet machine of this kind is the *time scale*;
every lease, redispatch interval, receipt timeout and wait of the fault tests
is its fast figure times that scale, so that a slow machine gets longer
timings rather than red tests, and a wait that still runs out says it is a
timing failure (:class:`Timing`) instead of hanging to pytest's timeout.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

__all__ = [
    "REFERENCE_BATCH_SECONDS",
    "SCALE_ENV",
    "SLOW_ENV",
    "Calibration",
    "Timing",
    "TimingFailure",
    "cpu_hogs",
    "cpu_loop_seconds",
    "slow_hogs",
    "worker_cpus",
]

SLOW_ENV = "NOTIFIER_FAULTS_SLOW"
SCALE_ENV = "NOTIFIER_FAULTS_SCALE"
"""Set, it replaces the measured time scale: ``1`` runs the fast figures on any machine
(how issue #16 was reproduced); the calibration is still measured and shown."""
REFERENCE_BATCH_SECONDS = 4.0
"""What the calibration batch (:data:`CALIBRATION_EVENTS` events, first POST to last delivery
final) is held against. Kept on the generous side on purpose: in a whole-suite run on a
quiet 2-core machine the batch took 8.5 s, a scale of 2.1, and the fault module's timings
(lease 12.7 s, receipt timeout 32 s) passed with room; at a scale of 1 the receipt
timeout (15 s) is within reach of a busy API's late status callbacks."""
CALIBRATION_EVENTS = 100
"""Events of the calibration batch: 300 deliveries (push, SMS, email), one batch per channel."""
HOG_LIFETIME_SECONDS = 3600.0
"""A hog ends by itself after this, or as soon as the test process that started it is gone."""

_HOG = """
import os, sys, time
parent, cpu, until = int(sys.argv[1]), int(sys.argv[2]), time.monotonic() + float(sys.argv[3])
os.sched_setaffinity(0, {cpu})
n = 0
while time.monotonic() < until and os.getppid() == parent:
    for _ in range(200_000):
        n += 1
"""
_LOOP = """
import time
started = time.perf_counter()
n = 0
for _ in range(3_000_000):
    n += 1
print(time.perf_counter() - started)
"""


def slow_hogs() -> int:
    """How many CPU hogs share the worker's core (0: not slowed)."""
    raw = os.environ.get(SLOW_ENV, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return 0
    if raw in ("true", "yes", "on"):
        return 1
    return max(0, int(raw))


def worker_cpus() -> list[int]:
    """The core a slowed worker is pinned to: the last one this process may use."""
    return [max(os.sched_getaffinity(0))]


def cpu_loop_seconds(cpus: list[int] | None = None) -> float:
    """A fixed CPU loop's time in a fresh interpreter, pinned to ``cpus`` if given; best of 3."""
    prefix = ["taskset", "-c", ",".join(map(str, cpus))] if cpus else []
    runs = [
        float(
            subprocess.run(
                [*prefix, sys.executable, "-c", _LOOP],
                capture_output=True,
                text=True,
                check=True,
                timeout=120,
            ).stdout
        )
        for _ in range(3)
    ]
    return min(runs)


@contextmanager
def cpu_hogs(count: int, cpu: int) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``count`` busy loops on ``cpu``, each in its own session; stopped on exit, whatever happens.

    Bounded three ways: this context stops them, each stops when its parent
    (this process) is gone, and each stops after :data:`HOG_LIFETIME_SECONDS`.
    """
    hogs: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(count):
            hogs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-c",
                        _HOG,
                        str(os.getpid()),
                        str(cpu),
                        str(HOG_LIFETIME_SECONDS),
                    ],
                    start_new_session=True,  # its own autogroup: a share equal to the worker's
                )
            )
        yield hogs
    finally:
        for hog in hogs:
            if hog.poll() is None:
                hog.send_signal(signal.SIGKILL)
        for hog in hogs:
            hog.wait(timeout=30)


class TimingFailure(AssertionError):
    """A wait of a fault test ran out: the machine was slower than its time scale allowed."""


@dataclass
class Calibration:
    """What the session measured before the fault tests, and the time scale it gives."""

    hogs: int
    cpus: list[int] | None
    loop_alone: float
    """The CPU loop, unpinned and without hogs (seconds)."""
    loop_worker: float
    """The same loop where the worker runs: pinned beside the hogs when slowed."""
    deliveries: int = 0
    batch_seconds: float = 0.0
    """The calibration batch through the real worker, first POST to last delivery final."""

    @property
    def cpu_slowdown(self) -> float:
        return self.loop_worker / self.loop_alone

    @property
    def measured_scale(self) -> float:
        return max(1.0, self.batch_seconds / REFERENCE_BATCH_SECONDS)

    @property
    def scale(self) -> float:
        """Every fast timing of the fault tests is multiplied by this (at least 1)."""
        forced = os.environ.get(SCALE_ENV, "").strip()
        return float(forced) if forced else self.measured_scale

    def describe(self) -> str:
        how = (
            f"worker pinned to CPU {','.join(map(str, self.cpus or []))} beside {self.hogs} "
            f"CPU hog(s) ({SLOW_ENV}={self.hogs})"
            if self.hogs
            else f"worker not slowed ({SLOW_ENV} unset)"
        )
        return (
            f"{how}; CPU loop {self.loop_worker:.2f} s where the worker runs vs "
            f"{self.loop_alone:.2f} s alone ({self.cpu_slowdown:.1f}x slower); calibration: "
            f"{self.deliveries} deliveries through the worker in {self.batch_seconds:.1f} s "
            f"(reference {REFERENCE_BATCH_SECONDS:.1f} s) → time scale {self.measured_scale:.2f}"
            + (f", overridden: {SCALE_ENV}={self.scale:g}" if os.environ.get(SCALE_ENV) else "")
        )


@dataclass
class Timing:
    """The session's time scale and the current test's deadline (pytest's timeout, less room)."""

    scale: float = 1.0
    deadline: float = field(default_factory=lambda: time.monotonic() + 3600)
    settings: dict[str, str] = field(default_factory=dict)
    """The NOTIFIER_* timings given to the worker, derived from the scale."""

    def seconds(self, fast: float) -> float:
        """``fast`` seconds on this machine, cut to what is left before the test's deadline."""
        return max(1.0, min(fast * self.scale, self.left()))

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def failure(self, what: str, waited: float) -> TimingFailure:
        return TimingFailure(
            f"timing failure: {what} after {waited:.0f} s (time scale {self.scale:.2f}, "
            f"{max(0.0, self.left()):.0f} s left before pytest's timeout); on a machine this "
            f"slow, raise the scale ({SLOW_ENV}, tests/support/slowdown.py)"
        )
