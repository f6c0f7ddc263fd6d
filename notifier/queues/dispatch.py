"""Publishing work to the broker, only ever after the commit that made it.

A failed publish is logged and forgotten here: the rows it was about stay
``received``/``queued`` in the database, and the reconciler sends them again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from celery import Celery

from notifier.queues.celery_config import EVENTS_QUEUE, MAINTENANCE_QUEUE, WEBHOOKS_QUEUE

__all__ = ["Dispatcher"]

log = logging.getLogger(__name__)
EVENTS_PER_TASK = 250
"""An events task's deliveries are enqueued per channel: as many events as a delivery
task takes, so a channel's batch is full (with 100, each batch held 100 sends and a
channel process waited out the provider's latency for 100 at a time)."""
DELIVERIES_PER_TASK = 250
"""Per-message tasks cost ~1.8 ms of CPU each here (FIELD-NOTES); a batch sends
its messages concurrently, so one task's overhead is shared by this many."""
# One quick retry re-opens a pooled connection the broker closed (a restart);
# more would only keep a request waiting on a broker that is down, while the
# reconciler resends from the database anyway.
_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.5, "interval_max": 0.5}


class Dispatcher:
    """Sends task messages by name, so the publisher needs no task code."""

    def __init__(self, app: Celery) -> None:
        self.app = app

    def process_events(self, event_pks: Sequence[int]) -> bool:
        """Enqueue processing of committed events, in chunks; False if the broker refused."""
        ok = True
        for start in range(0, len(event_pks), EVENTS_PER_TASK):
            chunk = list(event_pks[start : start + EVENTS_PER_TASK])
            ok &= self._send("notifier.process_events", [chunk], queue=EVENTS_QUEUE)
        return ok

    def deliver(
        self, deliveries: Iterable[tuple[int, str]], *, countdown: float | None = None
    ) -> bool:
        """Enqueue ``(delivery_id, channel)`` pairs on their channels' queues, in batches."""
        return self._per_channel("notifier.deliver_batch", deliveries, countdown=countdown)

    def resolve_ambiguous(
        self, deliveries: Iterable[tuple[int, str]], *, countdown: float | None = None
    ) -> bool:
        """Enqueue resolving ``ambiguous`` sends on their channels' queues (they ask the
        provider, as a send would)."""
        return self._per_channel("notifier.resolve_ambiguous", deliveries, countdown=countdown)

    def _per_channel(
        self, task: str, deliveries: Iterable[tuple[int, str]], *, countdown: float | None
    ) -> bool:
        """``task`` for the deliveries of each channel on its queue, DELIVERIES_PER_TASK a task."""
        by_channel: dict[str, list[int]] = {}
        for delivery_id, channel in deliveries:
            by_channel.setdefault(channel, []).append(delivery_id)
        ok = True
        for channel, ids in by_channel.items():
            for start in range(0, len(ids), DELIVERIES_PER_TASK):
                chunk = ids[start : start + DELIVERIES_PER_TASK]
                ok &= self._send(task, [chunk], queue=channel, countdown=countdown)
        return ok

    def voicemail(self, delivery_id: int, call_sid: str) -> bool:
        """Enqueue leaving the voicemail on a call a machine answered, on the voice queue."""
        return self._send("notifier.leave_voicemail", [delivery_id, call_sid], queue="voice")

    def producer_callbacks(self, callback_ids: Iterable[int]) -> bool:
        """Enqueue the POST of each producer callback on the ``webhooks`` queue."""
        ok = True
        for callback_id in callback_ids:
            ok &= self._send("notifier.send_producer_callback", [callback_id], queue=WEBHOOKS_QUEUE)
        return ok

    def sweep(self, run_id: int) -> bool:
        """Enqueue a queued escalation sweep run."""
        return self._send("notifier.escalation_sweep", [run_id], queue=MAINTENANCE_QUEUE)

    def release_hold(self, hold_id: int) -> bool:
        """Enqueue the release work of an ended hold."""
        return self._send("notifier.release_hold", [hold_id], queue=MAINTENANCE_QUEUE)

    def _send(
        self, task: str, args: list[object], *, queue: str, countdown: float | None = None
    ) -> bool:
        try:
            self.app.send_task(
                task,
                args=args,
                queue=queue,
                countdown=countdown,
                retry=True,
                retry_policy=_RETRY_POLICY,
            )
        except Exception as exc:  # broker down or unreachable: the reconciler resends
            log.warning(
                "broker refused %s on %s (%s); the reconciler will resend", task, queue, exc
            )
            return False
        return True

    def queue_depths(self, names: Iterable[str]) -> dict[str, int | None]:
        """Messages waiting in each queue; None where the broker would not say."""
        depths: dict[str, int | None] = dict.fromkeys(names)
        try:
            with self.app.connection_for_read() as conn:
                conn.ensure_connection(max_retries=1, timeout=2)
                redis = conn.transport.driver_type == "redis"
                for name in depths:
                    try:
                        depths[name] = conn.default_channel.queue_declare(
                            queue=name, passive=True
                        ).message_count
                    except Exception:
                        # Redis keeps a queue as a list, and an empty list is no
                        # key at all: "no such queue" there means nothing waits.
                        depths[name] = 0 if redis else None
        except Exception as exc:
            log.warning("cannot read queue depths (%s)", exc)
        return depths

    def ping(self) -> None:
        """Raise if the broker does not answer."""
        with self.app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
