"""Publishing events on the message bus: the billing side's library.

    from notifier.ingest.producer import Publisher, publish

    publish(event)                      # one event, one connection
    with Publisher(url="amqp://billing:…@mq:5672/utility") as bus:
        for event in events:
            bus.publish(event)          # many, one connection

An event is validated here first, exactly as the service validates it
(:func:`notifier.events.schema.parse_event`): an invalid one raises
:class:`InvalidEvent` with the field errors and is not sent. Whether its
``event_id`` was seen before is decided by the consumer; publishing it again
creates nothing new.

On RabbitMQ every message is confirmed by the broker (it is then stored):
:func:`publish` returns after the confirm; a :class:`Publisher` keeps up to
``window`` messages in flight and waits for their confirms in :meth:`flush`
and at the end of its ``with`` block. A lost connection is opened again and
whatever was not confirmed is sent again (the consumer drops duplicates).
Redis has no confirms: a publish returns once Redis holds the message in
memory (its persistence is Redis's configuration), and a lost connection is
retried by kombu. Errors::

    ProducerError
     ├─ InvalidEvent    the event fails validation; nothing sent
     ├─ BusNotReady     no queue bound to the exchange yet (start `notifier ingest` once)
     └─ PublishFailed   the broker refused or stayed unreachable through the retries
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from kombu.connection import Connection
from kombu.exceptions import OperationalError as KombuOperationalError
from kombu.messaging import Producer
from pydantic import ValidationError

from notifier.events.schema import EventIn, FieldError, field_errors, parse_event
from notifier.ingest import bus
from notifier.settings import Settings, get_settings

__all__ = [
    "RETRY_POLICY",
    "BusNotReady",
    "InvalidEvent",
    "ProducerError",
    "PublishFailed",
    "Publisher",
    "encode",
    "publish",
    "validate",
]

log = logging.getLogger(__name__)

RETRY_POLICY: dict[str, Any] = {
    "max_retries": 30,
    "interval_start": 0,
    "interval_step": 1,
    "interval_max": 3,
}
"""Reconnect and send again for about 90 s (a broker restart) before giving up."""
CONTENT_TYPE = "application/json"
WINDOW = 500
"""Messages in flight, unconfirmed, on one RabbitMQ connection."""
CONFIRM_TIMEOUT = 30.0
"""No confirm for this long: the connection is taken as lost."""


class ProducerError(Exception):
    """Publishing an event failed."""


class InvalidEvent(ProducerError, ValueError):
    """The event fails the service's validation; it was not sent."""

    def __init__(self, errors: list[FieldError], event_id: str | None = None) -> None:
        self.errors = errors
        self.event_id = event_id
        detail = "; ".join(f"{e.field}: {e.message}" for e in errors)
        super().__init__(f"invalid event {event_id or '(no event_id)'}: {detail}")


class BusNotReady(ProducerError):
    """No queue is bound to the exchange yet: the consumer declares them when it starts."""


class PublishFailed(ProducerError):
    """The broker refused the message or could not be reached through the retries."""


def validate(event: Mapping[str, Any] | EventIn) -> EventIn:
    """The event, validated as ``POST /v1/events`` validates it; raises :class:`InvalidEvent`."""
    if isinstance(event, EventIn):
        return event
    try:
        return parse_event(event)
    except ValidationError as exc:
        event_id = event.get("event_id") if isinstance(event, Mapping) else None
        raise InvalidEvent(
            field_errors(exc), event_id if isinstance(event_id, str) else None
        ) from None


def encode(event: EventIn) -> bytes:
    """The message body: the event as JSON, the fields the producer set only."""
    raw = event.model_dump(mode="json", exclude_unset=True)
    return json.dumps(raw, ensure_ascii=False, separators=(",", ":")).encode()


@dataclass(frozen=True)
class _Outgoing:
    body: bytes
    message_id: str | None
    headers: dict[str, Any]
    content_type: str


class Publisher:
    """Publishes events over one broker connection; use it as a context manager.

    ``url`` (or an open kombu ``connection``) names the broker; by default the
    bus of the settings (``NOTIFIER_INGEST__BROKER_URL``, else
    ``NOTIFIER_BROKER_URL``). A connection passed in is not closed here, and
    its transport options decide confirms (``confirm_publish`` on RabbitMQ:
    each publish then waits for its own).

    On its own RabbitMQ connection, with ``confirm``, up to ``window``
    messages are in flight at once: :meth:`publish` returns once the message
    is sent, and :meth:`flush` (and the end of the ``with`` block) once the
    broker has confirmed every one. A connection lost on the way is opened
    again and every message not yet confirmed is sent again.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        connection: Connection | None = None,
        confirm: bool = True,
        settings: Settings | None = None,
        retry_policy: Mapping[str, Any] | None = None,
        window: int = WINDOW,
    ) -> None:
        self.settings = settings or get_settings()
        self.cfg = self.settings.ingest
        self._owned = connection is None
        # Our own RabbitMQ connection confirms in windows, not message by message.
        self.connection = connection or bus.connect(self.settings, url, confirm=False)
        self.confirm = confirm
        self.retry_policy = dict(RETRY_POLICY if retry_policy is None else retry_policy)
        self.window = max(window, 1)
        self._producer: Producer | None = None
        self._windowed = False
        self._pending: dict[int, _Outgoing] = {}
        """Sent on the current channel, not confirmed yet, by delivery tag."""
        self._tag = 0
        self._nacked = 0
        self._broken = False

    def __enter__(self) -> Publisher:
        self.open()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close(flush=exc is None)

    def open(self) -> None:
        """Connect (retrying as a publish would) and check that the exchange routes somewhere."""
        if self._producer is not None:
            return
        try:
            self.connection.ensure_connection(
                max_retries=self.retry_policy.get("max_retries"),
                interval_start=self.retry_policy.get("interval_start", 2),
                interval_step=self.retry_policy.get("interval_step", 2),
                interval_max=self.retry_policy.get("interval_max", 30),
            )
            channel = self.connection.default_channel
            driver = self.connection.transport.driver_type
            if driver in ("filesystem", "memory"):
                # No accounts on these: declaring costs nothing and needs no right.
                bus.declare(channel, self.cfg)
            elif not bus.bound(channel, self.cfg):
                raise BusNotReady(
                    f"no queue is bound to exchange {self.cfg.exchange!r} on this broker: "
                    "start `notifier ingest` once; it declares the exchange and its queues"
                )
            self._windowed = self._owned and self.confirm and driver == "amqp"
            if self._windowed:
                self._new_channel()
            else:
                self._producer = Producer(
                    self.connection, exchange=bus.exchange(self.cfg), auto_declare=False
                )
        except ProducerError:
            raise
        except Exception as exc:
            raise PublishFailed(f"cannot reach the broker: {exc}") from exc

    def flush(self) -> None:
        """Wait until the broker has confirmed every message published so far."""
        if self._windowed:
            self._guarded(lambda: self._await(0))

    def close(self, *, flush: bool = True) -> None:
        """Flush (unless told not to), then close the connection if it is ours."""
        try:
            if flush and self._producer is not None:
                self.flush()
        finally:
            self._producer = None
            if self._owned:
                self.connection.release()

    def publish(self, event: Mapping[str, Any] | EventIn) -> str:
        """Validate and publish one event; return its ``event_id``."""
        parsed = validate(event)
        self.publish_raw(encode(parsed), message_id=parsed.event_id)
        return parsed.event_id

    def publish_raw(
        self,
        body: bytes,
        *,
        message_id: str | None,
        headers: Mapping[str, Any] | None = None,
        content_type: str = CONTENT_TYPE,
    ) -> None:
        """Publish a body as it is, unvalidated (replays; the consumer validates anyway)."""
        self.open()
        item = _Outgoing(body, message_id, dict(headers or {}), content_type)
        if self._windowed:
            self._guarded(lambda: self._send_windowed(item))
            return
        try:
            self._emit(item, retry=True)
        except Exception as exc:
            raise PublishFailed(f"publishing {message_id or 'a message'} failed: {exc}") from exc

    # -- sending ------------------------------------------------------------

    def _emit(self, item: _Outgoing, *, retry: bool = False) -> None:
        assert self._producer is not None
        properties = {"message_id": item.message_id} if item.message_id else {}
        self._producer.publish(
            item.body,
            routing_key=self.cfg.routing_key,
            content_type=item.content_type,
            content_encoding="utf-8" if item.content_type == CONTENT_TYPE else "binary",
            delivery_mode=2,
            headers=item.headers,
            retry=retry,
            retry_policy=self.retry_policy,
            **properties,
        )

    def _send_windowed(self, item: _Outgoing) -> None:
        self._emit(item)
        self._tag += 1
        self._pending[self._tag] = item
        if len(self._pending) >= self.window:
            self._await(self.window // 2)

    def _new_channel(self) -> None:
        """A channel in confirm mode; its delivery tags count from 1."""
        channel = self.connection.channel()
        channel.confirm_select()
        channel.events["basic_ack"].add(self._on_ack)
        channel.events["basic_nack"].add(self._on_nack)
        self._tag = 0
        self._producer = Producer(channel, exchange=bus.exchange(self.cfg), auto_declare=False)

    def _on_ack(self, tag: int, multiple: bool) -> None:
        if not multiple:
            self._pending.pop(tag, None)
            return
        while self._pending and next(iter(self._pending)) <= tag:
            self._pending.pop(next(iter(self._pending)))

    def _on_nack(self, tag: int, multiple: bool) -> None:
        before = len(self._pending)
        self._on_ack(tag, multiple)
        self._nacked += before - len(self._pending)

    def _await(self, most: int) -> None:
        """Read confirms until at most ``most`` messages wait for one."""
        while len(self._pending) > most:
            self.connection.drain_events(timeout=CONFIRM_TIMEOUT)
        if self._nacked:
            nacked, self._nacked = self._nacked, 0
            raise PublishFailed(f"the broker refused {nacked} message(s) (nack)")

    def _guarded(self, action: Callable[[], None]) -> None:
        """Run ``action``; on a lost connection open it again, resend what is unconfirmed, retry."""
        recoverable = (
            *self.connection.recoverable_connection_errors,
            *self.connection.recoverable_channel_errors,
            OSError,  # timeouts too: no confirm for CONFIRM_TIMEOUT
            # What _reconnect's ensure_connection raises while the broker is still down:
            # kombu wraps the refused socket in it, and a broker that takes more than a
            # second to come back is the case these retries are for.
            KombuOperationalError,
        )
        retries = self.retry_policy.get("max_retries")
        attempt = 0
        while True:
            try:
                if self._broken:
                    self._reconnect()
                action()
                return
            except recoverable as exc:
                self._broken = True
                if retries is not None and attempt >= retries:
                    raise PublishFailed(
                        f"the broker stayed unreachable through {attempt} retries: {exc}"
                    ) from exc
                delay = min(
                    self.retry_policy.get("interval_start", 0)
                    + attempt * self.retry_policy.get("interval_step", 1),
                    self.retry_policy.get("interval_max", 3),
                )
                log.warning(
                    "publishing: %s: %s; %d unconfirmed, sending again in %.0f s",
                    type(exc).__name__,
                    exc,
                    len(self._pending),
                    delay,
                )
                time.sleep(delay)
                attempt += 1
            except ProducerError:
                raise
            except Exception as exc:  # refused: a channel error (no such exchange, no right)
                self._broken = True
                raise PublishFailed(f"the broker refused: {exc}") from exc

    def _reconnect(self) -> None:
        with contextlib.suppress(Exception):
            self.connection.close()
        self.connection.ensure_connection(max_retries=1)
        self._new_channel()
        unconfirmed = list(self._pending.values())
        # Kept whole until every one is sent again: a failure half way resends them all.
        fresh: dict[int, _Outgoing] = {}
        for item in unconfirmed:
            self._emit(item)
            self._tag += 1
            fresh[self._tag] = item
        self._pending = fresh
        self._broken = False


def publish(
    event: Mapping[str, Any] | EventIn,
    *,
    url: str | None = None,
    connection: Connection | None = None,
    confirm: bool = True,
    settings: Settings | None = None,
) -> str:
    """Validate and publish one event on its own connection; return its ``event_id``."""
    with Publisher(url, connection=connection, confirm=confirm, settings=settings) as publisher:
        return publisher.publish(event)
