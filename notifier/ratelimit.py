"""Per-provider send rates that hold across every worker process and host.

Each send reserves the next free slot of its provider (GCRA: a "theoretical
arrival time" per provider advanced by 1/rate per send) and waits until it.
The state lives where every worker sees it: Redis when one is configured (or
the broker is Redis), otherwise the database (one row per provider, updated
under a row lock; SQLite in the embedded mode).
"""

from __future__ import annotations

import time
from typing import Protocol

from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Field, SQLModel

from notifier.db import Database

__all__ = [
    "DatabaseRateLimiter",
    "ProviderRate",
    "RateLimiter",
    "RedisRateLimiter",
    "make_rate_limiter",
]


class RateLimiter(Protocol):
    def reserve(self, provider: str, per_second: float) -> float:
        """Take the provider's next slot; seconds to wait before using it."""
        ...


class ProviderRate(SQLModel, table=True):
    __tablename__ = "provider_rates"

    provider: str = Field(primary_key=True, max_length=32)
    next_at: float = 0.0
    """Epoch seconds of the provider's next free slot."""


# KEYS[1] = the provider's key; ARGV[1] = seconds per send. Redis's own clock
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


class RedisRateLimiter:
    def __init__(self, url: str, *, prefix: str = "notifier:rate:") -> None:
        import redis

        self._redis = redis.Redis.from_url(url)
        self._script = self._redis.register_script(_GCRA)
        self._prefix = prefix

    def reserve(self, provider: str, per_second: float) -> float:
        wait = self._script(keys=[self._prefix + provider], args=[1.0 / per_second])
        return max(float(wait), 0.0)


class DatabaseRateLimiter:
    def __init__(self, db: Database) -> None:
        self._db = db

    def reserve(self, provider: str, per_second: float) -> float:
        now = time.time()
        with self._db.session() as session:
            row = session.get(ProviderRate, provider, with_for_update=True)
            if row is None:
                dialect = session.get_bind().dialect.name
                insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
                session.execute(
                    insert(ProviderRate)
                    .values(provider=provider, next_at=0.0)
                    .on_conflict_do_nothing()
                )
                row = session.get(
                    ProviderRate, provider, with_for_update=True, populate_existing=True
                )
                assert row is not None
            slot = max(row.next_at, now)
            row.next_at = slot + 1.0 / per_second
            session.add(row)
        return slot - now


def make_rate_limiter(db: Database, *, redis_url: str, broker_url: str) -> RateLimiter:
    """Redis if configured (or the broker is Redis), else the database."""
    url = redis_url or (broker_url if broker_url.startswith(("redis://", "rediss://")) else "")
    return RedisRateLimiter(url) if url else DatabaseRateLimiter(db)
