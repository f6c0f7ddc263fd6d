"""Faults with nothing lost: workers, brokers, databases and providers failing for real.

Each test injects one fault into a running stack (tests/faults/conftest.py)
while events are accepted and delivered, and ends in the same check
(:func:`audit`). Scaled for CI time; where a figure is smaller than the
issue's, the constant says so.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, func, select

from channels import Channel
from channels.simulators.base import FaultMix
from notifier.deliveries.models import FINAL_STATUSES, Delivery, DeliveryChange
from notifier.escalation.models import Escalation, SweepRun
from notifier.providers.simulated import Simulators
from tests.support import events
from tests.support.faults import (
    RESULTS,
    TIMING,
    ChaosTwilio,
    FaultResult,
    audit,
    claimed_at,
    sending,
    settle,
)
from tests.support.ledger import Ledger
from tests.support.stack import Stack, need, postgres_database, wait_until

# Each test's waits are its fast figures times the measured time scale, bounded by this
# timeout less some room (tests/faults/conftest.py): a machine a few times slower than
# the reference still gets its waits before pytest would stop the test.
pytestmark = [pytest.mark.faults, pytest.mark.machine, pytest.mark.timeout(900)]

KILL_DELIVERIES = 5000
"""a: the issue's 5,000 deliveries (2,500 accounts × push and email)."""
BROKER_DOWN_SECONDS = 30.0
PROVIDER_FAULT_SECONDS = 20.0
"""d: the issue asks for a minute of provider faults; 20 s keeps CI's budget and
still spans several retry rounds (the test policy retries after 1–2 s)."""
SWEEP_ACCOUNTS = 4000
"""f: enough accounts for the sweep to take several chunks (CHUNK = 1,000)."""


def post_all(stack: Stack, posted: list[dict[str, Any]]) -> list[str]:
    """Post events in batches of 1,000; the ids accepted (202)."""
    accepted: list[str] = []
    for start in range(0, len(posted), 1000):
        part = posted[start : start + 1000]
        answer = stack.post_batch(part)
        assert answer.status_code in (200, 202), answer.text
        accepted += [e["event_id"] for e in part]
    return accepted


def unpaid_for(count: int, **contact: Any) -> tuple[list[dict[str, Any]], list[str]]:
    accts = [events.account(**contact) for _ in range(count)]
    return [events.unpaid(a) for a in accts], [a["account_no"] for a in accts]


def final_count(stack: Stack, accounts: list[str]) -> int:
    with stack.db() as session:
        return int(
            session.exec(
                select(func.count()).where(
                    col(Delivery.account_no).in_(accounts),
                    col(Delivery.status).in_(FINAL_STATUSES),
                )
            ).one()
        )


# -- a. a worker SIGKILLed mid-run ---------------------------------------------------------


def test_a_worker_killed_in_the_middle_of_5000_deliveries(
    stack: Stack, fault_sims: Simulators
) -> None:
    started = time.monotonic()
    posted, accounts = unpaid_for(KILL_DELIVERIES // 2, phone=None)
    accepted = post_all(stack, posted)
    wait_until(
        lambda: final_count(stack, accounts) >= KILL_DELIVERIES // 5,
        timeout=TIMING.seconds(120),
        interval=0.1,
        what="a fifth of the deliveries out",
    )
    stack.kill_worker()
    in_flight = sending(stack, accounts)
    stack.start_worker()
    audit(
        stack,
        fault_sims,
        "a. worker SIGKILL mid-run",
        event_ids=accepted,
        accounts=accounts,
        bound=in_flight,
        started=started,
    )


# -- b. the broker stopped -----------------------------------------------------------------


@contextmanager
def rabbitmq_stopped() -> Iterator[None]:
    subprocess.run(["rabbitmqctl", "-q", "stop_app"], check=True)
    try:
        yield
    finally:
        subprocess.run(["rabbitmqctl", "-q", "start_app"], check=True)
        subprocess.run(["rabbitmqctl", "-q", "await_startup"], check=True)


def test_b_rabbitmq_stopped_while_events_are_accepted(stack: Stack, fault_sims: Simulators) -> None:
    started = time.monotonic()
    posted, accounts = unpaid_for(600)
    accepted = post_all(stack, posted[:300])  # work in flight when the broker goes
    in_flight = 0
    with rabbitmq_stopped():
        down = time.monotonic()
        in_flight = sending(stack, accounts)
        for event in posted[300:]:  # one at a time, spread over the outage
            answer = stack.post(event)
            assert answer.status_code == 202, answer.text
            accepted.append(event["event_id"])
            if len(accepted) % 50 == 0:
                ready = stack.client.get("/readyz")
                assert ready.status_code == 200, ready.text
                assert ready.json()["status"] == "degraded", ready.text
            time.sleep(BROKER_DOWN_SECONDS / 2 / 300)
        time.sleep(max(0.0, BROKER_DOWN_SECONDS - (time.monotonic() - down)))
    audit(
        stack,
        fault_sims,
        f"b. RabbitMQ down {BROKER_DOWN_SECONDS:.0f} s",
        event_ids=accepted,
        accounts=accounts,
        bound=in_flight,
        started=started,
        timeout=180,
    )


# -- c. PostgreSQL restarted ---------------------------------------------------------------


def _pg_ctl(action: str) -> None:
    version = sorted(os.listdir("/etc/postgresql"))[0]
    command = ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action]
    if action == "stop":
        command += ["-m", "fast"]
    subprocess.run(command, check=True, timeout=60)


def test_c_postgresql_restarted_in_the_middle_of_a_run(
    stack: Stack, fault_sims: Simulators
) -> None:
    if not Path("/etc/postgresql").is_dir():
        need("a PostgreSQL this test can restart (pg_ctlcluster)", "127.0.0.1", 1)
    started = time.monotonic()
    posted, accounts = unpaid_for(900)
    accepted = post_all(stack, posted)
    wait_until(
        lambda: final_count(stack, accounts) >= 300,
        timeout=TIMING.seconds(60),
        interval=0.05,
        what="some deliveries out",
    )
    _pg_ctl("stop")
    stopped = datetime.now(UTC)  # nothing commits after this: the rows claimed then were in flight
    try:
        extra, more = unpaid_for(1)
        answer = stack.post(extra[0])
        assert answer.status_code == 503, answer.text
        ready = stack.client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["status"] == "down", ready.text
        time.sleep(3)
    finally:
        _pg_ctl("start")
    # The refused event, posted again, is accepted now that the database is back.
    wait_until(
        lambda: stack.post(extra[0]).status_code == 202,
        timeout=TIMING.seconds(30),
        what="the API accepting again",
    )
    # A batch that sent while the database went away could not record: its rows' leases
    # expire and the provider is asked before anything goes again. Only channels whose
    # provider cannot be asked (FCM; SMTP keeps no record we can read) may send twice.
    rows = settle(stack, [*accounts, *more], timeout=TIMING.seconds(180))
    claimed = claimed_by_channel(stack, rows, stopped)
    asked = {name for name in claimed if looks_up(stack, name)}
    print(f"c: in flight at the stop {dict(claimed)}, their providers asked: {sorted(asked)}")
    audit(
        stack,
        fault_sims,
        "c. PostgreSQL restart",
        event_ids=[*accepted, extra[0]["event_id"]],
        accounts=[*accounts, *more],
        bound=sum(n for name, n in claimed.items() if name not in asked),
        started=started,
        timeout=180,
    )
    twice = duplicates_by_channel(stack, fault_sims, rows)
    print(f"c: duplicate sends by channel {dict(twice)}")
    assert all(twice[name] <= claimed[name] for name in twice), (twice, claimed)
    assert not any(twice[name] for name in asked), "a provider that can be asked sent twice"


def claimed_by_channel(stack: Stack, rows: list[Delivery], moment: datetime) -> Counter[str]:
    """Per channel, the deliveries claimed and not yet recorded at ``moment`` (in flight)."""
    ids: dict[str, list[int]] = {}
    for d in rows:
        if d.id is not None:
            ids.setdefault(d.channel, []).append(d.id)
    return Counter({name: claimed_at(stack, part, moment) for name, part in ids.items()})


def looks_up(stack: Stack, channel: str) -> bool:
    """Whether the channel's provider can be asked what it took (flows/ambiguous.py)."""
    return type(stack.runtime.channel(channel)).lookup is not Channel.lookup


def duplicates_by_channel(stack: Stack, sims: Simulators, rows: list[Delivery]) -> Counter[str]:
    """Per channel, the sends the providers received beyond those the timelines record."""
    channels = {d.id: d.channel for d in rows if d.id is not None}
    with stack.db() as session:
        recorded = Counter(
            delivery_id
            for delivery_id, detail in session.exec(
                select(DeliveryChange.delivery_id, DeliveryChange.detail).where(
                    col(DeliveryChange.delivery_id).in_(list(channels))
                )
            ).all()
            if "provider_id" in detail
        )
    twice: Counter[str] = Counter()
    for (delivery_id, _), count in sims.sends().items():
        if delivery_id in channels and count > recorded[delivery_id]:
            twice[channels[delivery_id]] += count - recorded[delivery_id]
    return twice


# -- d. providers failing ------------------------------------------------------------------


def test_d_providers_at_30_percent_5xx_with_bursts_of_429(
    stack: Stack, fault_sims: Simulators
) -> None:
    started = time.monotonic()
    mixes = [FaultMix(server_error=0.3) for _ in range(2)]
    fault_sims.twilio.faults, fault_sims.fcm.faults = mixes
    fault_sims.smtp.transient_rate = 0.3
    stop = threading.Event()

    def bursts() -> None:  # a second of 429s every four seconds
        while not stop.wait(3.0):
            for mix in mixes:
                mix.rate_limited = 0.7
            stop.wait(1.0)
            for mix in mixes:
                mix.rate_limited = 0.0

    burster = threading.Thread(target=bursts, daemon=True)
    burster.start()
    accepted: list[str] = []
    accounts: list[str] = []
    try:
        while time.monotonic() - started < PROVIDER_FAULT_SECONDS:
            posted, numbers = unpaid_for(40)
            accepted += post_all(stack, posted)
            accounts += numbers
            time.sleep(1.0)
    finally:
        stop.set()
        burster.join()
        fault_sims.twilio.faults, fault_sims.fcm.faults = FaultMix(), FaultMix()
        fault_sims.smtp.transient_rate = 0.0
    audit(
        stack,
        fault_sims,
        f"d. providers 30% 5xx + 429 bursts, {PROVIDER_FAULT_SECONDS:.0f} s",
        event_ids=accepted,
        accounts=accounts,
        bound=0,
        started=started,
    )


# -- h. a provider that accepts, then stalls ------------------------------------------------

STALL_DELIVERIES = 300
STALL_SHARE = 0.2
"""h: a fifth of the SMS are taken by Twilio and answered after the client gave up."""
DROP_SHARE = 0.05
"""h: and one in twenty times out the same way, but Twilio never got it (sent again)."""


def test_h_provider_accepts_then_stalls(stack: Stack, fault_sims: Simulators) -> None:
    started = time.monotonic()
    twilio = fault_sims.twilio
    timeout = max(1.0, TIMING.scale)
    twilio.stall_seconds = 3 * timeout  # past the client's timeout, whatever the scale
    # Each stalled send is ambiguous: looked up and found, never sent again.
    worker_env = {
        "NOTIFIER_TWILIO__TIMEOUT": f"{timeout:.1f}",
        "NOTIFIER_AMBIGUOUS_WAIT_SECONDS": f"{10 * TIMING.scale:.1f}",
    }
    posted, accounts = unpaid_for(STALL_DELIVERIES, email=None, push_tokens=None)
    try:
        with stack.worker_with(**worker_env):
            twilio.faults = FaultMix(stalled=STALL_SHARE, dropped=DROP_SHARE, seed=19)
            accepted = post_all(stack, posted)
            rows = audit(
                stack,
                fault_sims,
                f"h. Twilio stalls ({STALL_SHARE:.0%} taken, {DROP_SHARE:.0%} dropped)",
                event_ids=accepted,
                accounts=accounts,
                bound=0,
                started=started,
            )
    finally:
        twilio.faults = FaultMix()
        twilio.stall_seconds = 3.0
    with stack.db() as session:
        settled = session.exec(
            select(DeliveryChange.status, DeliveryChange.detail).where(
                col(DeliveryChange.delivery_id).in_([d.id for d in rows]),
                col(DeliveryChange.status).in_(["ambiguous", "queued"]),
            )
        ).all()
    went_ambiguous = sum(status == "ambiguous" for status, _ in settled)
    resent = sum(bool(detail.get("ambiguous_resend")) for _, detail in settled)
    assert went_ambiguous > resent > 0, "stalls taken (found) and dropped (sent again) both"
    assert {d.status for d in rows} == {"delivered"}


# -- e. callbacks duplicated and out of order ----------------------------------------------


def test_e_duplicate_and_out_of_order_callbacks(stack: Stack, fault_sims: Simulators) -> None:
    started = time.monotonic()
    twilio = fault_sims.twilio
    assert isinstance(twilio, ChaosTwilio)
    reached, reached_nos = unpaid_for(200, email=None, push_tokens=None)
    # The simulator reports these SMS undelivered (30008, which says nothing of the number):
    # each must fall back to one call, once.
    unreached, unreached_nos = unpaid_for(40, phone="+886912330008", email=None, push_tokens=None)
    twilio.chaos = True
    try:
        accepted = post_all(stack, reached + unreached)
        rows = audit(
            stack,
            fault_sims,
            "e. callbacks repeated, out of order",
            event_ids=accepted,
            accounts=reached_nos + unreached_nos,
            bound=0,
            started=started,
        )
        twilio.wait_callbacks(timeout=TIMING.seconds(10))
    finally:
        twilio.chaos = False
    by_account: dict[str, list[tuple[str, str]]] = {}
    for d in sorted(rows, key=lambda d: d.id or 0):
        by_account.setdefault(d.account_no, []).append((d.channel, d.status))
    assert {tuple(by_account[n]) for n in reached_nos} == {(("sms", "delivered"),)}
    assert {tuple(by_account[n]) for n in unreached_nos} == {
        (("sms", "undelivered"), ("voice", "delivered"))
    }


# -- graceful shutdown ----------------------------------------------------------------------


def test_sigterm_lets_sends_in_flight_finish_and_leaves_nothing_claimed(
    stack: Stack, fault_sims: Simulators
) -> None:
    started = time.monotonic()
    slow = FaultMix(latency_ms=1500)
    fault_sims.twilio.faults, fault_sims.fcm.faults = slow, slow
    try:
        posted, accounts = unpaid_for(300, email=None)
        accepted = post_all(stack, posted)
        wait_until(
            lambda: sending(stack, accounts) > 0,
            timeout=TIMING.seconds(60),
            interval=0.05,
            what="sends in flight",
        )
        in_flight = sending(stack, accounts)
        worker = stack.worker
        assert worker is not None
        worker.send_signal(signal.SIGTERM)  # warm shutdown: the main process only
        worker.wait(timeout=TIMING.seconds(60))  # bounded by the sends in flight, not killed
        stack.worker = None
        assert sending(stack, accounts) == 0, "a delivery left claimed by a stopped worker"
    finally:
        fault_sims.twilio.faults, fault_sims.fcm.faults = FaultMix(), FaultMix()
    stack.start_worker()
    audit(
        stack,
        fault_sims,
        "g. SIGTERM with slow providers",
        event_ids=accepted,
        accounts=accounts,
        bound=in_flight,
        started=started,
    )


# -- f. the escalation sweep killed half way -----------------------------------------------


def test_f_the_escalation_sweep_killed_half_way_and_run_again(
    tmp_path: Path,
) -> None:
    need("PostgreSQL", "127.0.0.1", 5432)
    started = time.monotonic()
    url, drop = postgres_database()
    ledger = Ledger(url, tmp_path)
    try:
        accts = [events.account(area="toufen") for _ in range(SWEEP_ACCOUNTS)]
        issued = []
        for acct in accts:  # one bill each, due long ago: due again one cycle later
            event = events.unpaid(acct, period="2026-05", due=date(2026, 7, 20))
            event["type"] = "bill.issued"
            event.pop("level")
            issued.append(event)
        ledger.post(*issued)
        env = {
            **os.environ,
            "NOTIFIER_DATABASE_URL": url,
            "NOTIFIER_DATA_DIR": str(tmp_path),
            "NOTIFIER_BROKER_URL": "",
        }
        argv = [sys.executable, "-m", "notifier", "escalate", "--as-of", "2026-11-20", "--quiet"]
        first = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

        def half_way() -> bool:
            with ledger.db() as session:
                run = session.exec(select(SweepRun).order_by(col(SweepRun.id).desc())).first()
            return run is not None and 0 < run.checked < run.accounts

        wait_until(half_way, timeout=60, interval=0.01, what="the sweep half way")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        with ledger.db() as session:
            opened_before = session.exec(select(func.count()).select_from(Escalation)).one()
        again = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
        assert again.returncode == 0, again.stdout + again.stderr
        numbers = [a["account_no"] for a in accts]
        with ledger.db() as session:
            per_account = dict(
                session.exec(
                    select(Escalation.account_no, func.count())
                    .where(col(Escalation.account_no).in_(numbers))
                    .group_by(col(Escalation.account_no))
                ).all()
            )
    finally:
        ledger.close()
        drop()
    duplicates = sum(n - 1 for n in per_account.values() if n > 1)
    lost = len(numbers) - len(per_account)
    RESULTS.append(
        FaultResult(
            fault="f. escalation sweep SIGKILL (cases)",
            events=len(issued),
            deliveries=sum(per_account.values()),
            final=sum(per_account.values()),
            lost=lost,
            duplicates=duplicates,
            bound=0,
            seconds=time.monotonic() - started,
        )
    )
    assert 0 < opened_before < len(numbers), "the first run should die half way"
    assert lost == 0 and duplicates == 0
