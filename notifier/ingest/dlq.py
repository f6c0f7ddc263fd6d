"""The dead-letter queue: list, replay and drop the messages the consumer refused.

Messages are read with ``basic_get`` and left unacknowledged; whatever was
not replayed or dropped is given back to the queue at the end (rejected with
``requeue``). A command that dies half way gives everything back too: the
broker requeues what a closed connection held (RabbitMQ at once, Redis after
``NOTIFIER_INGEST__VISIBILITY_TIMEOUT``). The embedded filesystem broker
holds them in the process: there, a command killed with SIGKILL loses the
messages it held.

A replay publishes the body (or its correction) to the ingest exchange,
waits for the broker's confirm, then acknowledges the dead letter: the
consumer validates it again, and a still-invalid message comes back here
with its ``x-notifier-replays`` count one higher.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from kombu.connection import Connection
from kombu.message import Message

from notifier.events.schema import EventIn, FieldError
from notifier.ingest import bus
from notifier.ingest.producer import Publisher, encode
from notifier.settings import Settings

__all__ = ["DeadLetter", "ReplayReport", "count", "drop", "peek", "replay"]


@dataclass
class DeadLetter:
    """One dead-lettered message, as the consumer left it."""

    message_id: str
    errors: list[FieldError]
    dead_lettered_at: str | None
    replays: int
    body: bytes
    content_type: str
    headers: dict[str, Any]
    message: Message = field(repr=False)


@dataclass
class ReplayReport:
    replayed: list[str] = field(default_factory=list)
    corrected: list[str] = field(default_factory=list)
    """Of those replayed, the ones sent with the corrected body."""


def count(settings: Settings, url: str | None = None) -> int:
    """Messages waiting in the dead-letter queue."""
    with bus.connect(settings, url) as conn:
        return _depth(conn, settings)


def peek(
    settings: Settings, url: str | None = None, *, limit: int | None = None
) -> tuple[int, list[DeadLetter]]:
    """The queue's depth and its first ``limit`` messages, all left in the queue."""
    with _scan(settings, url, limit=limit) as (_, total, letters):
        return total, letters


def replay(
    settings: Settings,
    url: str | None = None,
    *,
    select: Callable[[DeadLetter], bool],
    fixes: Mapping[str, EventIn] | None = None,
) -> ReplayReport:
    """Send the selected dead letters back to the ingest exchange (corrected where ``fixes`` has their id)."""
    report = ReplayReport()
    fixes = fixes or {}
    with (
        _scan(settings, url) as (conn, _, letters),
        Publisher(connection=conn, settings=settings) as publisher,
    ):
        for letter in letters:
            if not select(letter):
                continue
            fix = fixes.get(letter.message_id)
            headers = {
                k: v
                for k, v in letter.headers.items()
                if k not in (bus.ERRORS_HEADER, bus.DEAD_AT_HEADER)
            }
            headers[bus.REPLAYS_HEADER] = letter.replays + 1
            if fix is not None:
                publisher.publish_raw(encode(fix), message_id=fix.event_id, headers=headers)
                report.corrected.append(letter.message_id)
            else:
                publisher.publish_raw(
                    letter.body,
                    message_id=letter.message_id,
                    headers=headers,
                    content_type=letter.content_type,
                )
            letter.message.ack()
            report.replayed.append(letter.message_id)
    return report


def drop(
    settings: Settings, url: str | None = None, *, select: Callable[[DeadLetter], bool]
) -> list[str]:
    """Remove the selected dead letters for good; return their ids."""
    dropped: list[str] = []
    with _scan(settings, url) as (_, _, letters):
        for letter in letters:
            if select(letter):
                letter.message.ack()
                dropped.append(letter.message_id)
    return dropped


@contextmanager
def _scan(
    settings: Settings, url: str | None, *, limit: int | None = None
) -> Iterator[tuple[Connection, int, list[DeadLetter]]]:
    """Hold up to ``limit`` (default: all) dead letters; give back the ones not acknowledged."""
    cfg = settings.ingest
    with bus.connect(settings, url) as conn:
        channel = conn.channel()
        bus.declare(channel, cfg)
        total = _depth(conn, settings)
        # The depth at the start bounds the scan: a replay that fails again
        # comes back to the queue meanwhile, and is not read twice.
        wanted = total if limit is None else min(limit, total)
        queue = bus.dead_queue(cfg).bind(channel)
        held: list[Message] = []
        try:
            while len(held) < wanted:
                message = queue.get(no_ack=False)
                if message is None:
                    break
                held.append(message)
            yield conn, total, [_letter(m) for m in held]
        finally:
            redis = conn.transport.driver_type == "redis"
            # In reverse, each at the head of the queue: the first is first again.
            # (kombu's Redis reject puts a message at the tail; RabbitMQ puts it
            # back where it was; the filesystem broker at the tail.)
            for message in reversed(held):
                if message.acknowledged:
                    continue
                if redis:
                    channel.qos.restore_by_tag(message.delivery_tag, leftmost=False)
                else:
                    message.reject(requeue=True)


def _depth(conn: Connection, settings: Settings) -> int:
    channel = conn.default_channel
    bus.declare(channel, settings.ingest)
    try:
        return int(channel.queue_declare(queue=settings.ingest.dlq, passive=True).message_count)
    except Exception:
        # Redis drops an empty list, and kombu then calls the queue missing.
        if conn.transport.driver_type == "redis":
            return 0
        raise


def _letter(message: Message) -> DeadLetter:
    headers = dict(message.headers or {})
    try:
        errors = [FieldError(**e) for e in json.loads(headers.get(bus.ERRORS_HEADER) or "[]")]
    except (ValueError, TypeError):
        errors = [FieldError(field="(header)", message=f"unreadable {bus.ERRORS_HEADER}")]
    body = message.body
    try:
        replays = int(headers.get(bus.REPLAYS_HEADER) or 0)
    except (TypeError, ValueError):
        replays = 0
    return DeadLetter(
        message_id=str((message.properties or {}).get("message_id") or ""),
        errors=errors,
        dead_lettered_at=headers.get(bus.DEAD_AT_HEADER),
        replays=replays,
        body=body.encode() if isinstance(body, str) else body,
        content_type=message.content_type or "application/octet-stream",
        headers=headers,
        message=message,
    )
