"""The message bus way in: its exchange and queues, and connections to it.

Names come from ``NOTIFIER_INGEST__*``; every entity is durable::

    producer ─▶ exchange notifier.events (direct) ─"event"─▶ queue notifier.events.ingest ─▶ notifier ingest
                                                                    invalid ─▶ exchange + queue notifier.events.dead

They are distinct from Celery's own queues (``events``, ``sms``, …). Only the
consumer declares them, so a producer's broker account needs no right to
configure anything: on RabbitMQ it writes to the exchange and nothing else.

A message is the JSON body of one ``POST /v1/events`` (content type
``application/json``, persistent, ``message_id`` = ``event_id``). A message
that is dead-lettered keeps its body and gets headers saying why
(:data:`ERRORS_HEADER`, a JSON list of ``{"field", "message"}``).
"""

from __future__ import annotations

from typing import Any

from amqp.exceptions import NotFound
from kombu.connection import Connection
from kombu.entity import Exchange, Queue
from kombu.transport.virtual import Channel as VirtualChannel

from notifier.queues.celery_config import FILESYSTEM_TRANSPORT, filesystem_options
from notifier.settings import IngestSettings, Settings

__all__ = [
    "DEAD_AT_HEADER",
    "ERRORS_HEADER",
    "REPLAYS_HEADER",
    "bound",
    "connect",
    "dead_exchange",
    "dead_queue",
    "declare",
    "describe",
    "exchange",
    "ingest_queue",
    "url_of",
]

ERRORS_HEADER = "x-notifier-errors"
"""On a dead letter: why it was refused, ``[{"field": "account.phone", "message": "…"}]`` as JSON."""
DEAD_AT_HEADER = "x-notifier-dead-lettered-at"
"""On a dead letter: when (ISO 8601, UTC)."""
REPLAYS_HEADER = "x-notifier-replays"
"""How many times ``notifier events dlq replay`` has sent this message back."""
CONNECT_TIMEOUT = 5.0
# Redis keeps a consumer's unacknowledged messages under keys that are global
# to the database; Celery's workers use the default names with a visibility
# timeout of an hour. Ours get their own keys, so neither side restores the
# other's messages on its own clock.
_REDIS_UNACKED_KEYS = ("unacked_key", "unacked_index_key", "unacked_mutex_key")


def url_of(settings: Settings, url: str | None = None) -> str:
    """The broker the bus is on: ``url``, else ``NOTIFIER_INGEST__BROKER_URL``, else the service's."""
    return url or settings.ingest.broker_url or settings.resolved_broker_url


def connect(settings: Settings, url: str | None = None, *, confirm: bool = True) -> Connection:
    """A (lazy) kombu connection to the bus, with publisher confirms where the broker has them."""
    target = url_of(settings, url)
    cfg = settings.ingest
    if target.startswith("filesystem"):
        return Connection(
            hostname="localhost",
            transport=FILESYSTEM_TRANSPORT,
            transport_options=filesystem_options(settings),
        )
    options: dict[str, Any] = {}
    if target.startswith("memory"):  # kombu's in-process broker (tests)
        options["polling_interval"] = 0.01
    elif target.startswith(("amqp", "pyamqp")):
        # Each publish waits for the broker's ack: it is on disk (persistent,
        # durable queue) when publish returns, or publish raises.
        options["confirm_publish"] = confirm
    elif target.startswith(("redis", "rediss")):
        options.update(
            {key: f"{cfg.queue}.{key.removesuffix('_key')}" for key in _REDIS_UNACKED_KEYS},
            visibility_timeout=cfg.visibility_timeout,
            # Look for messages a dead consumer left unacknowledged at each idle poll.
            unacked_restore_throttle=1,
            # A publish on a half-open connection fails instead of waiting forever.
            socket_timeout=30,
        )
    return Connection(target, transport_options=options, connect_timeout=CONNECT_TIMEOUT)


def describe(conn: Connection) -> str:
    """Where a connection goes, without its password."""
    if conn.transport.driver_type == "filesystem":
        folder = (conn.transport_options or {}).get("data_folder_in")
        return f"the filesystem broker in {folder}"
    return str(conn.as_uri())


def exchange(cfg: IngestSettings) -> Exchange:
    return Exchange(cfg.exchange, type="direct", durable=True)


def ingest_queue(cfg: IngestSettings) -> Queue:
    return Queue(cfg.queue, exchange(cfg), routing_key=cfg.routing_key, durable=True)


def dead_exchange(cfg: IngestSettings) -> Exchange:
    return Exchange(cfg.dlq, type="direct", durable=True)


def dead_queue(cfg: IngestSettings) -> Queue:
    return Queue(cfg.dlq, dead_exchange(cfg), routing_key=cfg.dlq, durable=True)


def declare(channel: Any, cfg: IngestSettings) -> None:
    """Declare both exchanges and queues and their bindings (idempotent)."""
    ingest_queue(cfg).bind(channel).declare()
    dead_queue(cfg).bind(channel).declare()


def bound(channel: Any, cfg: IngestSettings) -> bool:
    """Whether the exchange is there and, where that can be seen, routes to the ingest queue.

    On Redis (and the filesystem broker) a message published to an exchange
    with no queue bound is dropped without a word: the bindings are read. On
    RabbitMQ a passive declare (no right needed) finds the exchange; it would
    refuse a publish to a missing one too, but only after the fact.
    """
    if not isinstance(channel, VirtualChannel):
        try:
            channel.exchange_declare(cfg.exchange, "direct", passive=True)
        except NotFound:
            return False
        return True
    try:
        table = channel.get_table(cfg.exchange)
    except KeyError:  # the in-memory transport: no such exchange
        return False
    return any(queue == cfg.queue for _key, _pattern, queue in table)
