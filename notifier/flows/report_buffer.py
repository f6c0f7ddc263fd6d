"""Provider reports buffered in the API process and applied in batches.

A status callback is verified (signature, token) and answered at once; the
report waits here and a flusher thread applies what waits every
:data:`FLUSH_SECONDS`, or as soon as :data:`BATCH` reports wait, through
:func:`notifier.flows.reports.apply_reports`: one transaction and a handful
of statements per batch instead of one transaction per report. Each API
process has its own buffer; batches of two processes lock their deliveries in
id order.

Nothing accepted is dropped while the process lives: a batch that fails is
applied again one report at a time, so one bad report does not hold the
others back; a report that fails alone goes back to the buffer and is tried
again, with a growing pause while the database is away (an
``OperationalError`` never gives up; any other error gives up after
``_GIVE_UP_AFTER`` tries, logged as an error naming the delivery). At
shutdown the lifespan drains the buffer before the process exits.

The trade: a report answered 200/204 but still waiting when the process is
killed (``kill -9``, an out-of-memory kill; at most one flush interval's
worth) is lost, and Twilio does not send an answered report again. The
deliveries it was about stay ``sent``, and the reconciler's receipt expiry
(:func:`notifier.flows.receipts.expire_receipts` over
:func:`notifier.deliveries.service.expire_unreceipted`, every Twilio and
Mitake send with no settling report within ``NOTIFIER_RECEIPT_TIMEOUT_SECONDS``)
moves them to ``unknown``, and a dunning notice starts its fallback: a lost
``delivered`` costs a notice sent again on the next channel, never a notice
counted as served that was not; a lost ``failed`` starts the same fallback
later. A lost progress report loses nothing. That is why no inbox table is
written per report (it would add rows to every delivery). Two reports are not
buffered, as they decide more than a status: the answering-machine result
(a lost one would count a voicemail as served) and the voice menu (its answer
is TwiML).

While the buffer is not running (an app used without its lifespan) or is full
(:data:`MAX_PENDING`: the database has been away long enough), a
report is applied in the request, as before.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import replace

from sqlalchemy.exc import OperationalError

from notifier.flows.outcome import DeliverOutcome
from notifier.flows.reports import ForeignReport, Report, apply_reports
from notifier.runtime import Runtime

__all__ = [
    "BATCH",
    "FLUSH_SECONDS",
    "MAX_PENDING",
    "ReportBuffer",
    "apply_now",
    "buffer_of",
    "dispatch_outcome",
    "refused",
]

log = logging.getLogger(__name__)
FLUSH_SECONDS = 0.05
"""How long a report may wait; Twilio's two reports per SMS come seconds apart anyway."""
BATCH = 200
MAX_PENDING = 20_000
_GIVE_UP_AFTER = 5
_MAX_PAUSE = 5.0
_DRAIN_SECONDS = 20.0


class ReportBuffer:
    """Reports accepted by this process and not applied yet; a thread applies them in batches."""

    def __init__(
        self,
        rt: Runtime,
        *,
        flush_seconds: float = FLUSH_SECONDS,
        batch: int = BATCH,
        max_pending: int = MAX_PENDING,
    ) -> None:
        self.rt = rt
        self.flush_seconds = flush_seconds
        self.batch = batch
        self.max_pending = max_pending
        self._pending: deque[Report] = deque()
        self._lock = threading.Lock()
        self._flushing = threading.Lock()  # one batch at a time: the thread's or a flush()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._pause = 0.0

    def start(self) -> None:
        if self._thread is None:
            self._stopping.clear()
            self._thread = threading.Thread(target=self._run, name="report-flusher", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread and apply what is left (the lifespan's shutdown)."""
        with self._lock:  # from here on a report is applied by the request that brought it
            thread, self._thread = self._thread, None
        if thread is not None:
            self._stopping.set()
            self._wake.set()
            thread.join()
        deadline = time.monotonic() + _DRAIN_SECONDS
        while self.pending() and time.monotonic() < deadline:
            if not self.flush():
                time.sleep(min(self._pause, 1.0))
        if left := self.pending():
            log.error(
                "%d provider reports not applied at shutdown (the database did not answer); "
                "their deliveries settle by the receipt timeout",
                left,
            )

    def put(self, report: Report) -> bool:
        """Take ``report`` to apply soon; False if it must be applied now, in the request."""
        with self._lock:
            if self._thread is None or len(self._pending) >= self.max_pending:
                return False
            self._pending.append(report)
            full = len(self._pending) >= self.batch
        if full:
            self._wake.set()
        return True

    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def flush(self) -> bool:
        """Apply every report taken so far; False if some failed and wait to be tried again."""
        with self._flushing:
            todo = self.pending()  # those failing now go back behind: not again in this call
            while todo > 0:
                with self._lock:
                    batch = [self._pending.popleft() for _ in range(min(self.batch, todo))]
                todo -= len(batch)
                if not batch:
                    break
                if not self._apply(batch):
                    return False
            return True

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(max(self.flush_seconds, self._pause))
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # the thread must live on: the reports are still in the buffer
                log.exception("the report flusher failed")

    def _apply(self, batch: Sequence[Report]) -> bool:
        try:
            results = apply_reports(self.rt, batch)
        except Exception:
            log.warning(
                "a batch of %d provider reports failed; applying them one at a time",
                len(batch),
                exc_info=True,
            )
            results = []
            failed: list[Report] = []
            for report in batch:
                try:
                    results.extend(apply_reports(self.rt, [report]))
                except Exception as exc:
                    failed.append(report)
                    self._again(report, exc)
            self._pause = min(max(self._pause * 2, 0.1), _MAX_PAUSE) if failed else 0.0
            ok = not failed
        else:
            self._pause, ok = 0.0, True
        for report, outcome in results:
            if isinstance(outcome, ForeignReport):
                refused(report, str(outcome))
            else:
                dispatch_outcome(self.rt, report.delivery_id, outcome)
        return ok

    def _again(self, report: Report, exc: Exception) -> None:
        tries = report.attempt + 1
        if not isinstance(exc, OperationalError) and tries >= _GIVE_UP_AFTER:
            log.error(
                "delivery %s: report %r not applied after %d tries, given up; the delivery "
                "settles by the receipt timeout",
                report.delivery_id,
                report.provider_status,
                tries,
                exc_info=exc,
                extra={"delivery_id": report.delivery_id},
            )
            return
        with self._lock:
            self._pending.append(replace(report, attempt=tries))


def dispatch_outcome(rt: Runtime, delivery_id: int, outcome: DeliverOutcome) -> None:
    """Enqueue what a report started, after its commit: a fallback, a busy line's retry."""
    if outcome.enqueue:
        rt.dispatcher.deliver(outcome.enqueue)
    if outcome.retry_in is not None and outcome.channel:
        rt.dispatcher.deliver([(delivery_id, outcome.channel)], countdown=outcome.retry_in)


def refused(report: Report, reason: str) -> None:
    """Log a report the delivery's record refuses (it names another message), never its form."""
    log.warning(
        "refused a %s report for delivery %s: %s",
        report.provider.capitalize(),
        report.delivery_id,
        reason,
        extra={"delivery_id": report.delivery_id},
    )


def apply_now(rt: Runtime, report: Report) -> None:
    """Apply one report in the caller's transaction of its own; raises :class:`ForeignReport`."""
    [(_, outcome)] = apply_reports(rt, [report])
    if isinstance(outcome, ForeignReport):
        raise outcome
    dispatch_outcome(rt, report.delivery_id, outcome)


def buffer_of(state: object) -> ReportBuffer | None:
    """The app's buffer (``app.state.reports``), if it has one."""
    found = getattr(state, "reports", None)
    return found if isinstance(found, ReportBuffer) else None
