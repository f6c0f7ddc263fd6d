"""Rates that hold across every process and host: provider sends, API requests per key.

Each send reserves the next free slot of its provider (GCRA: a "theoretical
arrival time" per provider advanced by 1/rate per send) and waits until it.
An API request is admitted the same way, but only while its key's theoretical
arrival time is less than a burst ahead of now; otherwise it is refused and
nothing is spent. The state lives where every process sees it: Redis when one
is configured (or the broker is Redis), otherwise the database (one row per
provider or key, updated under a row lock; SQLite in the embedded mode).
"""

from __future__ import annotations

import time
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Field, Session, SQLModel, col

from notifier.db import Database

__all__ = [
    "DatabaseRateLimiter",
    "ProviderRate",
    "RateLimiter",
    "RedisRateLimiter",
    "make_rate_limiter",
]


class RateLimiter(Protocol):
    def reserve(self, provider: str, per_second: float, count: int = 1) -> float:
        """Take the provider's next ``count`` slots; seconds to wait before the first.

        Slot ``i`` comes ``i / per_second`` seconds after the first.
        """
        ...

    def admit(
        self, key: str, per_second: float, burst: int, *, session: Session | None = None
    ) -> float:
        """Take a slot for ``key`` if fewer than ``burst`` are ahead; 0, or seconds until one is.

        ``session``: a transaction of the caller's to do it in (the database
        limiter then adds no transaction of its own); Redis ignores it.
        """
        ...


class ProviderRate(SQLModel, table=True):
    __tablename__ = "provider_rates"

    provider: str = Field(primary_key=True, max_length=32)
    """A provider (``twilio``), or an API key (``api-key:12``)."""
    next_at: float = 0.0
    """Epoch seconds of the provider's next free slot."""


# KEYS[1] = the provider's key; ARGV[1] = seconds the sends take (count / rate). Redis's own clock
# is the one clock every host shares.
_GCRA = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local interval = tonumber(ARGV[1])
redis.call('SET', KEYS[1], tostring(tat + interval), 'PX', math.ceil((tat + interval - now) * 1000) + 1000)
return tostring(tat - now)
"""

# KEYS[1] = the key's key; ARGV[1] = seconds per request, ARGV[2] = how far
# ahead of now the next slot may be ((burst - 1) intervals). Refused: nothing
# is written, and the answer is how long until a slot frees.
_GCRA_ADMIT = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local ahead = tat - now - tonumber(ARGV[2])
if ahead > 0 then return string.format('%.6f', ahead) end
local next_at = tat + tonumber(ARGV[1])
redis.call('SET', KEYS[1], string.format('%.6f', next_at), 'PX', math.ceil((next_at - now) * 1000) + 1000)
return '0'
"""


class RedisRateLimiter:
    def __init__(self, url: str, *, prefix: str = "notifier:rate:") -> None:
        import redis

        self._redis = redis.Redis.from_url(url)
        self._script = self._redis.register_script(_GCRA)
        self._admit = self._redis.register_script(_GCRA_ADMIT)
        self._prefix = prefix

    def reserve(self, provider: str, per_second: float, count: int = 1) -> float:
        wait = self._script(keys=[self._prefix + provider], args=[count / per_second])
        return max(float(wait), 0.0)

    def admit(
        self, key: str, per_second: float, burst: int, *, session: Session | None = None
    ) -> float:
        interval = 1.0 / per_second
        wait = self._admit(keys=[self._prefix + key], args=[interval, (burst - 1) * interval])
        return max(float(wait), 0.0)


class DatabaseRateLimiter:
    def __init__(self, db: Database) -> None:
        self._db = db

    def reserve(self, provider: str, per_second: float, count: int = 1) -> float:
        now = time.time()
        with self._db.session() as session:
            row = _locked_row(session, provider)
            slot = max(row.next_at, now)
            row.next_at = slot + count / per_second
            session.add(row)
        return slot - now

    def admit(
        self, key: str, per_second: float, burst: int, *, session: Session | None = None
    ) -> float:
        if session is None:
            with self._db.session() as own:
                return self.admit(key, per_second, burst, session=own)
        interval = 1.0 / per_second
        tolerance = (burst - 1) * interval
        now = time.time()
        # The usual case in one statement: the key's row exists and has room.
        dialect = session.get_bind().dialect.name
        greatest = sa.func.greatest if dialect == "postgresql" else sa.func.max
        next_at = col(ProviderRate.next_at)
        slot = greatest(next_at, now)
        taken = session.execute(
            sa.update(ProviderRate)
            .where(col(ProviderRate.provider) == key, slot - now <= tolerance)
            .values(next_at=slot + interval)
            .returning(next_at)
            .execution_options(synchronize_session=False)
        ).first()
        if taken is not None:
            return 0.0
        # A new key, or one over its rate: read the row under its lock to tell which.
        row = _locked_row(session, key)
        free_at = max(row.next_at, now)
        ahead = free_at - now - tolerance
        if ahead > 0:
            return ahead
        row.next_at = free_at + interval
        session.add(row)
        session.flush()
        return 0.0


def _locked_row(session: Session, name: str) -> ProviderRate:
    """The rate row of ``name``, created if new, locked until the transaction ends."""
    row = session.get(ProviderRate, name, with_for_update=True)
    if row is None:
        dialect = session.get_bind().dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        session.execute(
            insert(ProviderRate).values(provider=name, next_at=0.0).on_conflict_do_nothing()
        )
        row = session.get(ProviderRate, name, with_for_update=True, populate_existing=True)
        assert row is not None
    return row


def make_rate_limiter(db: Database, *, redis_url: str, broker_url: str) -> RateLimiter:
    """Redis if configured (or the broker is Redis), else the database."""
    url = redis_url or (broker_url if broker_url.startswith(("redis://", "rediss://")) else "")
    return RedisRateLimiter(url) if url else DatabaseRateLimiter(db)
