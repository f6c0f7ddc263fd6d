"""What the fault tests share (tests/faults): the stack's settings, a Twilio with
chaotic callbacks, the closing check and the table it fills.

Every fault test ends in :func:`audit`: each accepted event has its
notifications, every delivery is final, none is lost, and the sends the
simulators received beyond what the deliveries recorded (duplicates) are
counted and bounded by the sends in flight at the fault. tests/faults/conftest.py
prints :data:`RESULTS` at the end of the run.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import col, func, select

from channels.simulators.twilio import TwilioSimulator
from notifier.deliveries.models import FINAL_STATUSES, Delivery, DeliveryChange, Notification
from notifier.events.models import Event
from notifier.flows.deliver import REPORTING_PROVIDERS
from notifier.providers.simulated import Simulators
from tests.support import events
from tests.support.slowdown import CALIBRATION_EVENTS, Calibration, Timing
from tests.support.stack import Stack

FIXED = {
    "NOTIFIER_PROVIDERS": "{}",  # the real adapters, against the simulators
    "NOTIFIER_RATE_LIMITS": "{}",  # no provider rate: the faults, not the limits, are tested
}
FAST_SECONDS = {
    # Short leases and sweeps, so a fault heals in seconds (the defaults are minutes).
    "NOTIFIER_LEASE_SECONDS": 6.0,
    "NOTIFIER_REDISPATCH_AFTER_SECONDS": 2.0,
    "NOTIFIER_RECONCILE_INTERVAL_SECONDS": 1.0,
    # A report lost while the API was down: the SMS is unknown (and falls back) in seconds.
    "NOTIFIER_RECEIPT_TIMEOUT_SECONDS": 15.0,
    # A lease that ran out makes its rows ambiguous: no resend before this wait.
    "NOTIFIER_AMBIGUOUS_WAIT_SECONDS": 10.0,
}
"""The stack's timings on a quiet machine of the FIELD-NOTES kind; :func:`timed_settings`
scales them to the machine the session measured."""
TIMING = Timing()
"""The session's time scale (set by tests/faults/conftest.py after :func:`calibrate`)."""
CALIBRATIONS: list[Calibration] = []


def timed_settings(scale: float) -> dict[str, str]:
    """The stack's settings with every timing of :data:`FAST_SECONDS` times ``scale``."""
    return {**FIXED, **{name: f"{fast * scale:.1f}" for name, fast in FAST_SECONDS.items()}}


@dataclass(frozen=True)
class FaultResult:
    fault: str
    events: int
    deliveries: int
    final: int
    lost: int
    duplicates: int
    bound: int
    seconds: float


RESULTS: list[FaultResult] = []


class ChaosTwilio(TwilioSimulator):
    """Twilio whose status callbacks, while ``chaos`` is on, come shuffled and repeated."""

    chaos = False

    def _post_callbacks(self, events: list[tuple[str, dict[str, str]]]) -> None:
        # Each event is (url, params): a call's answering-machine report goes to its own URL.
        if self.chaos:
            rng = random.Random()
            events = [event for event in events for _ in range(rng.randint(1, 3))]
            rng.shuffle(events)
        super()._post_callbacks(events)


# -- the closing check ------------------------------------------------------------------


def provider_sends(sims: Simulators) -> Counter[tuple[int, str]]:
    """Accepted sends per (delivery id, recipient), as the simulators received them."""
    return sims.sends()


def _chunks(items: Sequence[Any], size: int = 2000) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def done(delivery: Delivery) -> bool:
    """Final, and not waiting for a provider's report either (Twilio's ``sent``)."""
    if delivery.status == "sent" and delivery.provider in REPORTING_PROVIDERS:
        return False
    return delivery.status in FINAL_STATUSES


def settle(stack: Stack, accounts: Sequence[str], *, timeout: float) -> list[Delivery]:
    """Wait until every account has deliveries and all are final (running the print batch
    when only postcards wait); the deliveries as they are at the end, final or not."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            rows: list[Delivery] = []
            with stack.db() as session:
                for part in _chunks(accounts):
                    rows += session.exec(
                        select(Delivery).where(col(Delivery.account_no).in_(part))
                    ).all()
            waiting = [d for d in rows if not done(d)]
            # Every account here gets at least one delivery: one with none is still owed.
            if len({d.account_no for d in rows}) == len(set(accounts)) and not waiting:
                return rows
            if rows and all(d.channel == "postcard" and d.status == "queued" for d in waiting):
                stack.print_postcards()
        except Exception as exc:  # the database may still be coming back
            print(f"settle: {type(exc).__name__}: {exc}")
        if time.monotonic() > deadline:
            return rows
        time.sleep(0.5)


def audit(
    stack: Stack,
    sims: Simulators,
    fault: str,
    *,
    event_ids: Sequence[str],
    accounts: Sequence[str],
    bound: int,
    started: float,
    timeout: float = 120,
    in_flight_at: datetime | None = None,
) -> list[Delivery]:
    """The closing check of every fault test; records its row of the table.

    ``timeout`` is the wait on a quiet machine: it grows with the session's
    time scale, up to what is left before pytest's own timeout.
    """
    waited = TIMING.seconds(timeout)
    rows = settle(stack, accounts, timeout=waited)
    ids = [d.id for d in rows if d.id is not None]
    if in_flight_at is not None:
        bound = max(bound, claimed_at(stack, ids, in_flight_at))
    with stack.db() as session:
        stored: dict[str, int] = {}
        for part in _chunks(event_ids):
            stored.update(
                (event_id, pk)
                for event_id, pk in session.exec(
                    select(Event.event_id, Event.id).where(col(Event.event_id).in_(part))
                ).all()
                if pk is not None
            )
        noticed: set[int] = set()
        for part in _chunks(list(stored.values())):
            noticed.update(
                session.exec(
                    select(Notification.event_pk)
                    .where(col(Notification.event_pk).in_(part))
                    .group_by(col(Notification.event_pk))
                    .having(func.count() > 0)
                ).all()
            )
        recorded: Counter[int] = Counter()
        for part in _chunks(ids):
            for delivery_id, detail in session.exec(
                select(DeliveryChange.delivery_id, DeliveryChange.detail).where(
                    col(DeliveryChange.delivery_id).in_(part)
                )
            ).all():
                if "provider_id" in detail:
                    recorded[delivery_id] += 1
    sends = provider_sends(sims)
    mine = set(ids)
    # A delivery still being sent (a wait that ran out) may have a send out and not yet
    # recorded: that one is not a duplicate.
    for d in rows:
        if d.status == "sending" and d.id is not None:
            recorded[d.id] += 1
    duplicates = sum(
        max(0, count - recorded[delivery_id])
        for (delivery_id, _), count in sends.items()
        if delivery_id in mine
    )
    final = sum(done(d) for d in rows)
    lost_events = [e for e in event_ids if stored.get(e) not in noticed]
    lost = len(lost_events) + len(rows) - final
    RESULTS.append(
        FaultResult(
            fault=fault,
            events=len(event_ids),
            deliveries=len(rows),
            final=final,
            lost=lost,
            duplicates=duplicates,
            bound=bound,
            seconds=time.monotonic() - started,
        )
    )
    states = Counter(d.status for d in rows)
    assert not lost_events, f"{len(lost_events)} accepted events without notifications"
    # Duplicates first: sends counted so far already exceed the bound, whatever still waits.
    if duplicates > bound:
        twice = sorted(
            delivery_id
            for (delivery_id, _), count in sends.items()
            if delivery_id in mine and count > recorded[delivery_id]
        )
        raise AssertionError(
            f"{duplicates} duplicate sends, more than the {bound} in flight; "
            f"{len(twice)} deliveries sent more often than recorded, the first ones:\n"
            + "\n".join(timeline_text(stack, delivery_id) for delivery_id in twice[:3])
        )
    if final != len(rows) or len({d.account_no for d in rows}) != len(set(accounts)):
        with sims.twilio.lock:
            answers = Counter(str(c["status"]) for c in sims.twilio.callbacks_sent)
        raise TIMING.failure(
            f"{fault}: {len(rows) - final} of {len(rows)} deliveries not final ({states}) and "
            f"{len(set(accounts)) - len({d.account_no for d in rows})} accounts without any; "
            f"status callbacks answered {dict(answers)} (None: the API did not answer in time)",
            waited,
        ) from AssertionError(stack.worker_log_tail())
    return rows


def timeline_text(stack: Stack, delivery_id: int) -> str:
    """One delivery's timeline (delivery_changes), a line per change: the evidence of a fault."""
    with stack.db() as session:
        changes = session.exec(
            select(DeliveryChange)
            .where(DeliveryChange.delivery_id == delivery_id)
            .order_by(col(DeliveryChange.id))
        ).all()
    return "\n".join(
        [f"delivery {delivery_id}:"]
        + [
            f"  {c.at.isoformat(timespec='milliseconds')}  {c.status:<9} {c.detail}"
            for c in changes
        ]
    )


def calibrate(stack: Stack, sims: Simulators, calibration: Calibration) -> Calibration:
    """Time :data:`CALIBRATION_EVENTS` unpaid-bill events through the worker, to the last
    delivery final; checked like a fault (nothing lost, no duplicate sends)."""
    accts = [events.account() for _ in range(CALIBRATION_EVENTS)]
    posted = [events.unpaid(a) for a in accts]
    started = time.monotonic()
    answer = stack.post_batch(posted)
    assert answer.status_code in (200, 202), answer.text
    rows = audit(
        stack,
        sims,
        "calibration (no fault)",
        event_ids=[e["event_id"] for e in posted],
        accounts=[a["account_no"] for a in accts],
        bound=0,
        started=started,
    )
    calibration.deliveries = len(rows)
    calibration.batch_seconds = time.monotonic() - started
    return calibration


def claimed_at(stack: Stack, delivery_ids: Sequence[int], moment: datetime) -> int:
    """How many deliveries were claimed and not yet recorded at ``moment``, from their timelines.

    Read after the fact, so it also sees a batch claimed between a snapshot
    and the fault (every claim and record is written with its time).
    """
    last: dict[int, str] = {}
    with stack.db() as session:
        for part in _chunks(list(delivery_ids)):
            for delivery_id, status in session.exec(
                select(DeliveryChange.delivery_id, DeliveryChange.status)
                .where(col(DeliveryChange.delivery_id).in_(part), DeliveryChange.at <= moment)
                .order_by(col(DeliveryChange.id))
            ).all():
                last[delivery_id] = status
    return sum(status == "sending" for status in last.values())


def sending(stack: Stack, accounts: Sequence[str]) -> int:
    """How many of the accounts' deliveries are claimed (in a worker's hands) now."""
    with stack.db() as session:
        return sum(
            session.exec(
                select(func.count()).where(
                    col(Delivery.account_no).in_(part), Delivery.status == "sending"
                )
            ).one()
            for part in _chunks(accounts)
        )
