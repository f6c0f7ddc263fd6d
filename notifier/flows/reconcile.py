"""The reconciler: whatever the database says is owed, enqueue again.

The broker only carries hints. A publish that failed while the broker was
down, a task prefetched by a worker that was SIGKILLed, a quiet-hours window
that opened: each leaves a row the reconciler finds and enqueues. So does a
producer callback whose POST was never enqueued or whose task was lost. And
an SMS or call whose receipt never came becomes ``unknown`` (flows/receipts.py).
A ``sending`` row whose lease expired is not sent again blindly: its worker
died, or sent and could not record it, so it becomes ``ambiguous`` and the
provider is asked first (flows/ambiguous.py). An ``ambiguous`` send whose
resolution is overdue (its task was lost) is resolved again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from channels import CHANNEL_NAMES
from notifier.deliveries import service as deliveries
from notifier.escalation.holds import releases_owed
from notifier.escalation.sweep import queued_runs
from notifier.flows.ambiguous import overdue as ambiguous_overdue
from notifier.flows.ladder import write_stage_notices
from notifier.flows.process_event import unprocessed_events
from notifier.flows.receipts import expire_receipts
from notifier.queues.celery_config import EVENTS_QUEUE, MAINTENANCE_QUEUE, WEBHOOKS_QUEUE
from notifier.runtime import Runtime
from notifier.webhooks import service as webhooks

__all__ = ["ReconcileReport", "reconcile"]

log = logging.getLogger(__name__)
BATCH = 2000


@dataclass(frozen=True, slots=True)
class ReconcileReport:
    events: int
    deliveries: int
    callbacks: int = 0


def reconcile(rt: Runtime) -> ReconcileReport:
    """One pass: re-enqueue stale events and due or orphaned deliveries."""
    # A row still waiting behind a backlog is not lost: only where a queue has
    # drained can a stale row mean that its message is gone.
    depths = rt.dispatcher.queue_depths(
        [EVENTS_QUEUE, MAINTENANCE_QUEUE, WEBHOOKS_QUEUE, *CHANNEL_NAMES]
    )
    drained = {name for name, depth in depths.items() if not depth}
    # Postcards wait in `queued` for the print batch on purpose.
    drained -= {name for name in CHANNEL_NAMES if rt.provider(name) == "print"}
    with rt.db.session() as session:
        events = unprocessed_events(rt, session, limit=BATCH) if EVENTS_QUEUE in drained else []
        due = deliveries.requeue_due(
            session,
            now=rt.clock(),
            redispatch_after=rt.settings.redispatch_after_seconds,
            limit=BATCH,
            drained=drained,
        )
        # Not bound to a drained queue: what it enqueues is new work (fallbacks).
        due += expire_receipts(rt, session, limit=BATCH)
        # Only where the channel's queue drained: a backlog may still hold their tasks.
        unresolved = [
            pair for pair in ambiguous_overdue(rt, session, limit=BATCH) if pair[1] in drained
        ]
        # New work too: no task of theirs is queued, their worker is gone.
        unresolved += deliveries.hold_expired_leases(
            session, now=rt.clock(), wait=rt.settings.ambiguous_wait_seconds, limit=BATCH
        )
        stale = rt.clock() - timedelta(seconds=rt.settings.redispatch_after_seconds)
        sweeps = (
            [run.id for run in queued_runs(session, before=stale) if run.id is not None]
            if MAINTENANCE_QUEUE in drained
            else []
        )
        # Holds whose ends_on passed are found here first: no separate daily job.
        releases = releases_owed(
            session, today=rt.policy.business_date(rt.clock()), before=stale, now=rt.clock()
        )
        callbacks = (
            webhooks.owed_again(
                session,
                now=rt.clock(),
                stale_after=rt.settings.redispatch_after_seconds,
                limit=BATCH,
            )
            if WEBHOOKS_QUEUE in drained
            else []
        )
    # Ladder notices written where no renderer was (a CLI sweep), or whose enqueue was lost.
    write_stage_notices(rt)
    if events:
        rt.dispatcher.process_events(events)
    if due:
        rt.dispatcher.deliver(due)
    if unresolved:
        rt.dispatcher.resolve_ambiguous(unresolved)
    for run_id in sweeps:
        rt.dispatcher.sweep(run_id)
    for hold_id in releases:
        rt.dispatcher.release_hold(hold_id)
    if callbacks:
        rt.dispatcher.producer_callbacks(callbacks)
    if events or due or callbacks or unresolved:
        log.info(
            "reconciler: %d events, %d deliveries, %d ambiguous sends to resolve and %d "
            "producer callbacks enqueued again",
            len(events),
            len(due),
            len(unresolved),
            len(callbacks),
        )
    return ReconcileReport(events=len(events), deliveries=len(due), callbacks=len(callbacks))
