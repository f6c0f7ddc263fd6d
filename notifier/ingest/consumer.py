"""``notifier ingest``: events from the message bus, stored as the API stores them.

In batches: up to ``NOTIFIER_INGEST__BATCH_SIZE`` messages are fetched
(:mod:`notifier.ingest.sources`), each is validated exactly as
``POST /v1/events`` validates a body (:func:`check`), the valid ones are
stored in one transaction with the API's idempotency
(:func:`notifier.events.service.accept`: a redelivered or republished
``event_id`` creates nothing), and only after the commit is every message of
the batch acknowledged; then the new events' processing is enqueued, as the
API does after its commit (the reconciler resends a lost one). While one
batch is in the database (on a thread of its own), the next is fetched and
validated.

A message that fails validation, or is not JSON at all, is published to the
dead-letter queue with its body unchanged and the errors in the
``x-notifier-errors`` header, then acknowledged: it never holds up the queue.

Whatever fails (the database, the broker) before the acknowledgements
leaves the whole batch unacknowledged: the connection is closed, the broker
delivers the messages again, and the consumer reconnects after a backoff.
A consumer killed mid-batch loses nothing for the same reason; what it had
committed comes back as duplicates and is dropped.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from kombu.connection import Connection
from kombu.message import Message
from kombu.messaging import Producer
from pydantic import ValidationError
from sqlalchemy import exc as sa_exc

from notifier.db import utcnow
from notifier.events import service as events
from notifier.events.schema import EventIn, FieldError, field_errors, parse_event
from notifier.ingest import bus
from notifier.ingest.sources import Source, open_source
from notifier.runtime import Runtime

__all__ = ["Checked", "Counts", "IngestConsumer", "check"]

log = logging.getLogger(__name__)

PAUSE_SECONDS = 0.05
"""A batch is stored as soon as the queue pauses this long, full or not."""
IDLE_POLL_SECONDS = 1.0
REPORT_EVERY_SECONDS = 60.0
MAX_BACKOFF_SECONDS = 30.0


@dataclass
class Counts:
    """What the consumer did with the messages it took."""

    accepted: int = 0
    duplicate: int = 0
    invalid: int = 0
    batches: int = 0

    @property
    def messages(self) -> int:
        return self.accepted + self.duplicate + self.invalid

    def add(self, other: Counts) -> None:
        self.accepted += other.accepted
        self.duplicate += other.duplicate
        self.invalid += other.invalid
        self.batches += other.batches

    def __str__(self) -> str:
        return (
            f"{self.messages} messages in {self.batches} batches: {self.accepted} accepted, "
            f"{self.duplicate} duplicate, {self.invalid} dead-lettered"
        )


@dataclass
class _InFlight:
    """A batch whose transaction runs on the database thread."""

    batch: list[Message]
    verdicts: list[Checked]
    future: Future[dict[str, int | None]]
    started: float


@dataclass
class Checked:
    """One message's verdict: an event to store, or the errors that send it to the DLQ."""

    event: EventIn | None = None
    raw: dict[str, Any] | None = None
    errors: list[FieldError] = field(default_factory=list)
    event_id: str | None = None
    """The body's ``event_id`` when it has a usable one, valid or not."""


def check(body: bytes | str, *, max_bytes: int) -> Checked:
    """Decode and validate one message body exactly as the API takes a request body."""
    if len(body) > max_bytes:
        return Checked(
            errors=[FieldError(field="(body)", message=f"larger than {max_bytes} bytes")]
        )
    try:
        raw = json.loads(body)
    except ValueError as exc:  # not UTF-8, or not JSON
        return Checked(errors=[FieldError(field="(body)", message=f"not JSON ({exc})")])
    event_id = raw.get("event_id") if isinstance(raw, dict) else None
    if not isinstance(event_id, str) or not event_id.isascii() or len(event_id) > 128:
        event_id = None
    try:
        event = parse_event(raw)
    except ValidationError as exc:
        return Checked(errors=field_errors(exc), event_id=event_id)
    return Checked(event=event, raw=raw, event_id=event.event_id)


class IngestConsumer:
    """Consumes the ingest queue in batches until :meth:`stop` (see the module's docstring)."""

    def __init__(
        self,
        rt: Runtime,
        *,
        url: str | None = None,
        batch_size: int | None = None,
        batch_wait: float | None = None,
        on_batch: Callable[[Counts], None] | None = None,
    ) -> None:
        self.rt = rt
        self.cfg = rt.settings.ingest
        self.url = url
        self.batch_size = batch_size or self.cfg.batch_size
        self.batch_wait = batch_wait or self.cfg.batch_wait_seconds
        self.on_batch = on_batch
        self.counts = Counts()
        self._stopping = threading.Event()
        self._reported = Counts()
        self._reported_at = time.monotonic()

    def stop(self) -> None:
        """Finish the batch in hand, then return from :meth:`run`."""
        self._stopping.set()

    def run(self) -> Counts:
        """Consume until stopped, reconnecting after any failure; return the totals."""
        backoff = 1.0
        while not self._stopping.is_set():
            conn = bus.connect(self.rt.settings, self.url)
            batches = self.counts.batches
            try:
                conn.ensure_connection(max_retries=1)
                log.info(
                    "ingest: consuming %s on %s (batches of up to %d)",
                    self.cfg.queue,
                    bus.describe(conn),
                    self.batch_size,
                )
                self._consume(conn)
            except Exception as exc:
                if self.counts.batches > batches:  # it worked for a while: a new failure
                    backoff = 1.0
                # Nothing of the batch in hand was acknowledged: the broker gives it back.
                level = logging.WARNING if _is_expected(conn, exc) else logging.ERROR
                log.log(
                    level,
                    "ingest: %s: %s; reconnecting in %.0f s",
                    type(exc).__name__,
                    exc,
                    backoff,
                    exc_info=level == logging.ERROR,
                )
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
            finally:
                _close(conn)
        log.info("ingest: stopped; %s", self.counts)
        return self.counts

    # -- one connection -----------------------------------------------------

    def _consume(self, conn: Connection) -> None:
        """Batches in a pipeline: batch k+1 is fetched and validated while batch k commits.

        The database work runs on one other thread (it waits on the server
        most of the time); batch k is acknowledged when its commit is done,
        before batch k+1 is handed over, so acknowledgements keep their order.
        Twice a batch is prefetched, for the one in the database and the next.
        """
        channel = conn.channel()
        bus.declare(channel, self.cfg)
        dead = Producer(conn.channel(), exchange=bus.dead_exchange(self.cfg), auto_declare=False)
        source = open_source(conn, channel, self.cfg, self.batch_size)
        buffer = source.buffer
        storing: _InFlight | None = None
        batch: list[Message] = []
        try:
            with ThreadPoolExecutor(1, thread_name_prefix="ingest-db") as database:
                while not self._stopping.is_set() or buffer or storing:
                    # While a batch is in the database, wait for more only briefly.
                    self._fill(source, idle=PAUSE_SECONDS if storing else IDLE_POLL_SECONDS)
                    batch = buffer[: self.batch_size]
                    del buffer[: len(batch)]
                    verdicts = [self._check(m) for m in batch]
                    if storing is not None:
                        self._finish(storing, source, dead)
                        storing = None
                    if batch:
                        future = database.submit(self._store, verdicts)
                        storing, batch = _InFlight(batch, verdicts, future, time.monotonic()), []
                    self._report()
        except BaseException:
            # Not acknowledged: given back (RabbitMQ does it itself when the channel closes).
            held = (storing.batch if storing else []) + batch + buffer
            with contextlib.suppress(Exception):
                source.give_back(held)
            raise
        finally:
            with contextlib.suppress(Exception):
                source.close()

    def _check(self, message: Message) -> Checked:
        return check(message.body, max_bytes=self.rt.settings.max_body_bytes)

    def _fill(self, source: Source, *, idle: float) -> None:
        """Wait until a batch is there, the queue pauses, or its first message waited enough."""
        buffer = source.buffer
        first: float | None = None
        while len(buffer) < self.batch_size and not self._stopping.is_set():
            if buffer:
                first = first or time.monotonic()
                left = self.batch_wait - (time.monotonic() - first)
                if left <= 0:
                    return
                timeout = min(left, PAUSE_SECONDS)
            else:
                timeout = idle
            try:
                source.wait(timeout)
            except TimeoutError:
                if buffer or idle < IDLE_POLL_SECONDS:
                    return

    def _finish(self, storing: _InFlight, source: Source, dead: Producer) -> None:
        """After the commit: dead letters, then every acknowledgement, then the processing."""
        batch, verdicts = storing.batch, storing.verdicts
        created = storing.future.result()
        # Dead letters next: if one cannot be published, nothing is acknowledged
        # and the batch comes back (its events as duplicates).
        invalid = 0
        for message, verdict in zip(batch, verdicts, strict=True):
            if verdict.errors or verdict.event is None:
                self._dead_letter(dead, message, verdict)
                invalid += 1
        source.ack(batch)
        new = [pk for pk in created.values() if pk is not None]
        if new:
            self.rt.dispatcher.process_events(new)
        counts = Counts(
            accepted=len(new), duplicate=len(batch) - len(new) - invalid, invalid=invalid, batches=1
        )
        self.counts.add(counts)
        log.debug(
            "ingest: batch of %d in %.0f ms: %d accepted, %d duplicate, %d dead-lettered",
            len(batch),
            (time.monotonic() - storing.started) * 1000,
            counts.accepted,
            counts.duplicate,
            counts.invalid,
        )
        if self.on_batch is not None:
            self.on_batch(counts)

    def _store(self, verdicts: list[Checked]) -> dict[str, int | None]:
        """Accept the valid events in one transaction; map each ``event_id`` to its new row or None.

        Should the database refuse a statement (not an outage: that is raised,
        and the batch comes back), each event is stored alone and the one it
        refuses is dead-lettered, so that one message cannot hold up the queue.
        """
        unique: dict[str, Checked] = {}
        for verdict in verdicts:
            if verdict.event is not None:
                unique.setdefault(verdict.event.event_id, verdict)
        try:
            return self._accept(list(unique.values()))
        except sa_exc.DBAPIError as exc:
            if _outage(exc):
                raise
            log.warning("ingest: the database refused a batch (%s); storing one by one", exc.orig)
        created: dict[str, int | None] = {}
        for verdict in unique.values():
            try:
                created.update(self._accept([verdict]))
            except sa_exc.DBAPIError as exc:
                if _outage(exc):
                    raise
                verdict.errors = [
                    FieldError(
                        field="(body)",
                        message=f"the database refused it ({type(exc.orig).__name__})",
                    )
                ]
        return created

    def _accept(self, verdicts: list[Checked]) -> dict[str, int | None]:
        items: list[tuple[EventIn, dict[str, Any]]] = [
            (v.event, v.raw) for v in verdicts if v.event is not None and v.raw is not None
        ]
        with self.rt.db.session() as session:
            return events.accept(session, items, producer_key_id=self.cfg.producer_key_id)

    def _dead_letter(self, dead: Producer, message: Message, verdict: Checked) -> None:
        props = message.properties or {}
        message_id = props.get("message_id") or verdict.event_id or f"dead-{uuid.uuid4()}"
        headers = dict(message.headers or {})
        headers[bus.ERRORS_HEADER] = json.dumps(
            [e.model_dump() for e in verdict.errors], ensure_ascii=False
        )
        headers[bus.DEAD_AT_HEADER] = utcnow().isoformat()
        headers[bus.REPLAYS_HEADER] = _int(headers.get(bus.REPLAYS_HEADER))
        body = message.body
        dead.publish(
            body.encode() if isinstance(body, str) else body,
            routing_key=self.cfg.dlq,
            content_type=message.content_type or "application/octet-stream",
            content_encoding=message.content_encoding or "binary",
            headers=headers,
            delivery_mode=2,
            message_id=message_id,
        )
        log.warning(
            "ingest: dead-lettered %s: %s",
            message_id,
            "; ".join(f"{e.field}: {e.message}" for e in verdict.errors),
        )

    def _report(self, *, force: bool = False) -> None:
        """A line of totals once a minute while messages come."""
        now = time.monotonic()
        if not force and now - self._reported_at < REPORT_EVERY_SECONDS:
            return
        if self.counts.messages != self._reported.messages:
            log.info("ingest: %s so far", self.counts)
            self._reported = Counts(**self.counts.__dict__)
        self._reported_at = now


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _outage(exc: sa_exc.DBAPIError) -> bool:
    """The database is down or went away (try again later), not refusing this statement."""
    return exc.connection_invalidated or isinstance(
        exc, sa_exc.OperationalError | sa_exc.InterfaceError
    )


def _is_expected(conn: Connection, exc: Exception) -> bool:
    """A broker or database outage (logged without a traceback), not a bug."""
    if isinstance(exc, sa_exc.DBAPIError):
        return _outage(exc)
    return isinstance(exc, (*conn.connection_errors, *conn.channel_errors, OSError))


def _close(conn: Connection) -> None:
    try:
        conn.release()
    except Exception as exc:  # the connection is already gone: the broker requeues anyway
        log.debug("ingest: closing the connection: %s", exc)
