"""The Celery worker: ``celery -A notifier.worker.app worker`` (or ``notifier worker``).

Tasks are thin and take ids; the flows do the work against the database.
"""

from __future__ import annotations

import json
import logging
from functools import lru_cache

from celery import Task
from celery.signals import worker_init

from notifier.escalation.sweep import sweep as sweep_flow
from notifier.flows.ambiguous import resolve as resolve_flow
from notifier.flows.deliver import BatchOutcome
from notifier.flows.deliver import deliver_batch as deliver_batch_flow
from notifier.flows.holds import release as release_flow
from notifier.flows.ladder import write_stage_notices
from notifier.flows.postcards import print_postcards as print_postcards_flow
from notifier.flows.process_event import process_events as process_events_flow
from notifier.flows.producer_callbacks import send_callback
from notifier.flows.reconcile import reconcile as reconcile_flow
from notifier.flows.retention import purge as purge_flow
from notifier.flows.voicemail import leave_voicemail as leave_voicemail_flow
from notifier.observability.logs import configure_logging
from notifier.queues.celery_config import make_celery
from notifier.runtime import Runtime
from notifier.settings import get_settings

__all__ = [
    "celery_app",
    "deliver",
    "deliver_batch",
    "escalation_sweep",
    "leave_voicemail",
    "print_postcards",
    "process_events",
    "purge",
    "reconcile",
    "release_hold",
    "resolve_ambiguous",
    "send_producer_callback",
]

log = logging.getLogger(__name__)
celery_app = make_celery(get_settings())


@worker_init.connect
def _quarantine_broken_messages(**_: object) -> None:
    """Move aside message files a killed process left half-written.

    kombu's filesystem transport (the embedded broker) stops the whole worker
    on a message file it cannot parse, and a process SIGKILLed while
    publishing leaves exactly that. The database still knows what is owed, so
    the reconciler sends those tasks again.
    """
    settings = get_settings()
    if not settings.resolved_broker_url.startswith("filesystem"):
        return
    folder = settings.broker_dir
    quarantine = folder / "broken"
    for path in folder.glob("*.msg"):
        try:
            json.loads(path.read_bytes())
        except (ValueError, OSError):
            quarantine.mkdir(exist_ok=True)
            path.replace(quarantine / path.name)
            log.warning("moved a half-written broker message aside: %s", path.name)


@lru_cache(maxsize=1)
def runtime() -> Runtime:
    configure_logging()
    rt = Runtime(get_settings())
    rt.renderer.check_all()  # a broken template stops the worker, not a customer's SMS
    return rt


@celery_app.task(name="notifier.process_events")
def process_events(event_pks: list[int]) -> None:
    """Turn accepted events into notifications and deliveries."""
    process_events_flow(runtime(), event_pks)


@celery_app.task(name="notifier.deliver_batch")
def deliver_batch(delivery_ids: list[int]) -> dict[str, int]:
    """Send a batch of one channel's deliveries; what must go again is enqueued again.

    A retry of a part of the batch (transient errors, a provider's rate) is a
    new batch message with a countdown, as Celery's own ``retry`` would send,
    for the ids that need it only; the rows are ``queued`` and due then, so
    the reconciler finds them if that message is lost.
    """
    return _deliver(delivery_ids)


@celery_app.task(name="notifier.deliver")
def deliver(delivery_id: int) -> dict[str, int]:
    """A message from before batches (an upgrade with work still queued): a batch of one."""
    return _deliver([delivery_id])


@celery_app.task(name="notifier.resolve_ambiguous")
def resolve_ambiguous(delivery_ids: list[int]) -> dict[str, int]:
    """Settle sends that may have reached their provider: found, sent again, or later."""
    return _dispatch(runtime(), resolve_flow(runtime(), delivery_ids))


def _deliver(delivery_ids: list[int]) -> dict[str, int]:
    rt = runtime()
    return _dispatch(rt, deliver_batch_flow(rt, delivery_ids))


def _dispatch(rt: Runtime, outcome: BatchOutcome) -> dict[str, int]:
    """Enqueue what a batch left to do; its statuses, counted."""
    if outcome.enqueue:
        rt.dispatcher.deliver(outcome.enqueue)
    for delay, items in outcome.later.items():
        rt.dispatcher.deliver(items, countdown=delay)
    for delay, items in outcome.resolve.items():
        rt.dispatcher.resolve_ambiguous(items, countdown=delay)
    counts: dict[str, int] = {}
    for status in outcome.statuses.values():
        counts[status] = counts.get(status, 0) + 1
    return counts


@celery_app.task(name="notifier.print_postcards")
def print_postcards() -> str | None:
    """The day's print batch of postcards, at the cut-off time."""
    report = print_postcards_flow(runtime())
    return report.batch_id if report else None


@celery_app.task(name="notifier.reconcile")
def reconcile() -> dict[str, int]:
    """Re-enqueue what the database says is owed."""
    report = reconcile_flow(runtime())
    return {
        "events": report.events,
        "deliveries": report.deliveries,
        "callbacks": report.callbacks,
    }


@celery_app.task(name="notifier.escalation_sweep")
def escalation_sweep(run_id: int | None = None) -> dict[str, object]:
    """A queued sweep run (from the API), or today's scheduled sweep on a business day."""
    rt = runtime()
    today = rt.policy.business_date(rt.clock())
    if run_id is None and not rt.policy.escalation.is_business_day(today):
        return {"skipped": f"{today} is not a business day"}
    run = sweep_flow(
        rt.db,
        rt.policy.escalation,
        today,
        trigger="beat" if run_id is None else "api",
        run_id=run_id,
        clock=rt.clock,
    )
    write_stage_notices(rt)  # the ladder's final demands and reconnection notices
    return {"run": run.id, "opened": run.opened, "joined": run.joined, "closed": run.closed}


@celery_app.task(name="notifier.leave_voicemail")
def leave_voicemail(delivery_id: int, call_sid: str) -> dict[str, object]:
    """A machine answered the call: replace the notice with the short voicemail."""
    return {"delivery": delivery_id, "left": leave_voicemail_flow(runtime(), delivery_id, call_sid)}


@celery_app.task(name="notifier.release_hold")
def release_hold(hold_id: int) -> dict[str, object]:
    """An ended hold's notices: at most one per account it kept back, in chunks."""
    hold = release_flow(runtime(), hold_id)
    if hold is None:
        return {"skipped": f"no hold {hold_id}"}
    return {
        "hold": hold_id,
        "accounts": hold.release_accounts,
        "checked": hold.release_checked,
        "notified": hold.release_notified,
    }


@celery_app.task(name="notifier.purge")
def purge() -> dict[str, int]:
    """Purge personal data older than ``NOTIFIER_RETENTION_DAYS`` (daily, from beat)."""
    rt = runtime()
    report = purge_flow(
        rt.db,
        days=rt.settings.retention_days,
        now=rt.clock(),
        actor="beat",
        print_dir=rt.settings.data_dir / "print",
    )
    return report.counts()


@celery_app.task(name="notifier.send_producer_callback", bind=True, max_retries=None)
def send_producer_callback(self: Task, callback_id: int) -> str | None:
    """POST one producer callback; a 5xx or a timeout comes back through Celery's retry."""
    outcome = send_callback(runtime(), callback_id)
    if outcome.retry_in is not None:
        raise self.retry(countdown=outcome.retry_in)
    return outcome.status
