"""Where the consumer's messages come from: kombu's consumer, or Redis lists read in bulk.

RabbitMQ (and the filesystem broker) push messages to a kombu ``Consumer``
up to the prefetch count; acknowledging the last of a batch with
``multiple`` acknowledges the batch in one frame.

kombu's Redis transport takes one message per ``BRPOP`` and keeps each one
it hands out in an "unacknowledged" hash, written and deleted with a round
trip per message: about 1,400 messages/s here. :class:`RedisSource` takes up
to a batch per round trip instead, with a Lua script that pops the messages
and records them in the same hash and index, in kombu's own format, in one
atomic step; a batch is acknowledged with one pipeline. kombu's
``restore_visible`` (called here while the queue is idle, and every few
seconds) puts back what a consumer that died left unacknowledged, after the
visibility timeout, exactly as for kombu's own consumers.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from kombu.connection import Connection
from kombu.message import Message
from kombu.messaging import Consumer

from notifier.ingest import bus
from notifier.settings import IngestSettings

__all__ = ["KombuSource", "RedisSource", "Source", "open_source"]

RESTORE_EVERY_SECONDS = 5.0
REDIS_IDLE_POLL_SECONDS = 0.05

# KEYS: the unacknowledged hash, its index (tag → time), then the queue's
# lists in kombu's priority order. ARGV: how many, now. Returns pairs
# {tag, raw}; a tag of "" marks an entry that is not a kombu message.
_FETCH = """
local got = {}
local want = tonumber(ARGV[1])
for i = 3, #KEYS do
  if #got >= 2 * want then break end
  local popped = redis.call('RPOP', KEYS[i], want - #got / 2)
  if popped then
    for _, raw in ipairs(popped) do
      local ok, env = pcall(cjson.decode, raw)
      local tag = ''
      if ok and type(env) == 'table' and type(env['properties']) == 'table' then
        local props = env['properties']
        local info = props['delivery_info']
        if type(props['delivery_tag']) == 'string' and type(info) == 'table' then
          tag = props['delivery_tag']
          redis.call('HSET', KEYS[1], tag, '[' .. raw .. ',' .. cjson.encode(info['exchange'] or '')
            .. ',' .. cjson.encode(info['routing_key'] or '') .. ']')
          redis.call('ZADD', KEYS[2], ARGV[2], tag)
        end
      end
      got[#got + 1] = tag
      got[#got + 1] = raw
    end
  end
end
return got
"""


class Source(Protocol):
    """Messages for the consumer, and their acknowledgement."""

    buffer: list[Any]

    def wait(self, timeout: float) -> None:
        """Add what has arrived to ``buffer``, waiting up to ``timeout``; TimeoutError if nothing."""

    def ack(self, batch: list[Any]) -> None:
        """Acknowledge a batch taken from the front of ``buffer``, in order."""

    def give_back(self, messages: list[Any]) -> None:
        """Return messages held but not acknowledged (the consumer is stopping on an error)."""

    def close(self) -> None: ...


def open_source(conn: Connection, channel: Any, cfg: IngestSettings, batch_size: int) -> Source:
    """The source for this connection's transport, consuming already."""
    if conn.transport.driver_type == "redis":
        return RedisSource(channel, cfg, batch_size)
    return KombuSource(conn, channel, cfg, prefetch=2 * batch_size)


class KombuSource:
    def __init__(self, conn: Connection, channel: Any, cfg: IngestSettings, *, prefetch: int):
        self.conn = conn
        self.buffer: list[Any] = []
        self.amqp = conn.transport.driver_type == "amqp"
        self.consumer = Consumer(
            channel,
            queues=[bus.ingest_queue(cfg)],
            on_message=self.buffer.append,
            prefetch_count=prefetch,
            no_ack=False,
        )
        self.consumer.consume()

    def wait(self, timeout: float) -> None:
        self.conn.drain_events(timeout=timeout)

    def ack(self, batch: list[Any]) -> None:
        if self.amqp:
            batch[-1].ack(multiple=True)  # this batch and none after it: tags are in order
        else:
            for message in batch:
                message.ack()

    def give_back(self, messages: list[Any]) -> None:
        """Nothing to do: the broker requeues what a closed channel held."""

    def close(self) -> None:
        self.consumer.cancel()


@dataclass
class NotKombu:
    """An entry of the Redis list that is not a kombu message: it goes to the DLQ as it is."""

    body: bytes
    headers: dict[str, Any] = field(default_factory=dict)
    properties: dict[str, Any] = field(default_factory=dict)
    content_type: str | None = None
    content_encoding: str | None = None


class RedisSource:
    def __init__(self, channel: Any, cfg: IngestSettings, batch_size: int) -> None:
        self.channel = channel
        self.batch_size = batch_size
        self.buffer: list[Any] = []
        client = channel.client
        self.client = client
        self.keys = [
            channel.unacked_key,
            channel.unacked_index_key,
            *(channel._q_for_pri(cfg.queue, pri) for pri in channel.priority_steps),
        ]
        self.fetch = client.register_script(_FETCH)
        self.restored_at = 0.0

    def wait(self, timeout: float) -> None:
        if time.monotonic() - self.restored_at > RESTORE_EVERY_SECONDS:
            self._restore()
        want = max(self.batch_size - len(self.buffer), 1)
        got = self.fetch(keys=self.keys, args=[want, time.time()])
        if not got:
            if time.monotonic() - self.restored_at > 1:
                self._restore()  # idle: a good time to look for what a dead consumer left
            time.sleep(min(timeout, REDIS_IDLE_POLL_SECONDS))
            raise TimeoutError
        for tag, raw in zip(got[::2], got[1::2], strict=True):
            if tag:
                self.buffer.append(_message_of(self.channel, raw))
            else:
                self.buffer.append(NotKombu(body=raw if isinstance(raw, bytes) else raw.encode()))

    def ack(self, batch: list[Any]) -> None:
        tags = [m.delivery_tag for m in batch if not isinstance(m, NotKombu)]
        if not tags:
            return
        with self.client.pipeline() as pipe:
            pipe.zrem(self.keys[1], *tags)
            pipe.hdel(self.keys[0], *tags)
            pipe.execute()

    def give_back(self, messages: list[Any]) -> None:
        # In reverse, each at the head of its queue (RPUSH: the consumer pops on the right).
        for message in reversed(messages):
            if not isinstance(message, NotKombu):
                self.channel.qos.restore_by_tag(message.delivery_tag, leftmost=False)

    def close(self) -> None:
        """Nothing held by kombu: what is unacknowledged is in Redis, restored after the timeout."""

    def _restore(self) -> None:
        self.restored_at = time.monotonic()
        self.channel.qos.restore_visible(num=None, interval=1)


def _message_of(channel: Any, raw: bytes | str) -> Message:
    """kombu's message for an envelope popped from a Redis list."""
    message: Message = channel.Message(json.loads(raw), channel=channel)
    return message
