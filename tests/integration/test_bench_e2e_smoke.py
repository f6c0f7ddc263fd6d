"""bench/e2e.py runs from start to end on a small load.

SMS go through two providers: Mitake first, whose prepaid account runs out half
way (it answers ``s``, no points left: its circuit opens), then Twilio. Only that
it works is asserted: every delivery final and no duplicate send (exit 0; no
worker dies here, so the bound is 0), SMS sent by both providers, and one
summary line last. The lean fakes the bench uses by default serve no Mitake, so
this runs the full simulators (``--fakes simulators``); tests/integration/test_bench_fakes.py
covers the lean ones. The figures are printed, even when the test passes, so that CI's
log shows them; they are not judged, as timings on a shared 2-core machine
are noise.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from notifier.settings import PROJECT_ROOT
from tests.support.stack import PG_ADMIN_URL, RABBIT_URL, need

BENCH = PROJECT_ROOT / "bench" / "e2e.py"
ARGS = [
    "--events", "600", "--latency-ms", "5", "--timeout", "150",
    "--ceiling-events", "300", "--floor-count", "100",
    "--database", PG_ADMIN_URL, "--broker", RABBIT_URL,
    "--sms-providers", "mitake,twilio", "--mitake-points", "300", "--fakes", "simulators",
]  # fmt: skip
DEADLINE = 240
"""Seconds before the bench is stopped; under pytest's 300 s timeout with room for cleanup."""


@pytest.mark.stack
def test_bench_e2e_runs_to_its_summary(capsys: pytest.CaptureFixture[str]) -> None:
    need("PostgreSQL", "127.0.0.1", 5432)
    need("RabbitMQ", "127.0.0.1", 5672)

    returncode, output = _run([sys.executable, str(BENCH), *ARGS])

    with capsys.disabled():
        print(f"\n$ python bench/e2e.py {' '.join(ARGS)}\n{output}")
    assert returncode == 0, f"bench/e2e.py exited {returncode}; its output is printed above"
    assert output.strip().splitlines()[-1].startswith("summary:")
    assert "  duplicate sends: 0 (" in output, "the bench did not count duplicate sends"
    sent_by = next(line for line in output.splitlines() if line.startswith("  sent by: "))
    assert "sms mitake" in sent_by and "sms twilio" in sent_by, sent_by


def _run(argv: list[str]) -> tuple[int, str]:
    """Run the bench; past the deadline, SIGTERM it so that it cleans up, then kill it."""
    process = subprocess.Popen(
        argv,
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},  # stdout and stderr in the order written
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output, _ = process.communicate(timeout=DEADLINE)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)  # the bench stops its processes, drops its database
        try:
            output, _ = process.communicate(timeout=45)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
        output += f"\n(stopped after {DEADLINE} s)"
    return process.returncode, output
