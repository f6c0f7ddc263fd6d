"""A circuit per provider: open while our account, credentials or sender are wrong.

A :class:`~channels.ProviderChannelError` (a bad auth token, a suspended
account, a sender the provider refuses) says no send through that provider
can succeed, whoever the recipient. It *trips* the provider's circuit: from
then on its sends are held ``queued`` (no attempt counted, no fallback, no
recipient blamed) until the probe time, ``circuit_open_seconds`` later. The
first claim after that time takes the probe (:meth:`Circuits.check` answers
``probe`` once, and moves the probe time a period on, so other workers keep
waiting); it sends one message: an accepted send (or a refusal that blames the
recipient, which proves our account works) closes the circuit, another
ProviderChannelError keeps it open for another period.

The state lives where every process sees it, as the rate limiter's does
(providers/ratelimit.py): Redis when one is configured (or the broker is
Redis), otherwise the database (one row per provider, changed under its row
lock). Times are epoch seconds of the caller's clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Field, Session, SQLModel, col, select

from notifier.db import Database

__all__ = [
    "CircuitState",
    "Circuits",
    "DatabaseCircuits",
    "ProviderCircuit",
    "RedisCircuits",
    "Verdict",
    "make_circuits",
]

REASON_CHARS = 300


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a batch may do with a provider now."""

    state: Literal["closed", "probe", "open"]
    wait: float = 0.0
    """``open``: seconds until the probe time."""
    reason: str = ""


@dataclass(frozen=True, slots=True)
class CircuitState:
    """One provider's circuit as the ops pages and the metrics show it."""

    provider: str
    open: bool
    opened_at: float | None
    probe_at: float | None
    reason: str
    openings: int


class Circuits(Protocol):
    def check(self, provider: str, *, now: float, open_seconds: float) -> Verdict:
        """Closed, open (wait), or the one probe (taken now: others wait another period)."""
        ...

    def trip(self, provider: str, reason: str, *, now: float, open_seconds: float) -> bool:
        """Open the circuit (or keep it open) until ``now + open_seconds``; True if newly open."""
        ...

    def close(self, provider: str) -> bool:
        """Close the circuit; True if it was open."""
        ...

    def states(self, *, session: Session | None = None) -> list[CircuitState]:
        """Every provider whose circuit ever opened, by name.

        ``session``: a transaction of the caller's to read in (a page's); Redis ignores it.
        """
        ...


class ProviderCircuit(SQLModel, table=True):
    __tablename__ = "provider_circuits"

    provider: str = Field(primary_key=True, max_length=32)
    opened_at: float | None = None
    """Epoch seconds the circuit opened; None: closed."""
    probe_at: float = 0.0
    """Epoch seconds after which one probe send is let through."""
    reason: str = Field(default="", max_length=REASON_CHARS)
    openings: int = 0
    """Times it opened, ever (the metric's counter)."""


class DatabaseCircuits:
    def __init__(self, db: Database) -> None:
        self._db = db

    def check(self, provider: str, *, now: float, open_seconds: float) -> Verdict:
        with self._db.session() as session:
            row = session.get(ProviderCircuit, provider)
            if row is None or row.opened_at is None:
                return Verdict("closed")  # the usual case: one read, no lock
            row = session.get(
                ProviderCircuit, provider, with_for_update=True, populate_existing=True
            )
            assert row is not None
            if row.opened_at is None:
                return Verdict("closed")
            if now < row.probe_at:
                return Verdict("open", wait=row.probe_at - now, reason=row.reason)
            row.probe_at = now + open_seconds
            session.add(row)
            return Verdict("probe", reason=row.reason)

    def trip(self, provider: str, reason: str, *, now: float, open_seconds: float) -> bool:
        with self._db.session() as session:
            row = _locked_row(session, provider)
            opened = row.opened_at is None
            if opened:
                row.opened_at = now
                row.openings += 1
            row.probe_at = now + open_seconds
            row.reason = reason[:REASON_CHARS]
            session.add(row)
        return opened

    def close(self, provider: str) -> bool:
        with self._db.session() as session:
            row = session.get(ProviderCircuit, provider, with_for_update=True)
            if row is None or row.opened_at is None:
                return False
            row.opened_at = None
            session.add(row)
        return True

    def states(self, *, session: Session | None = None) -> list[CircuitState]:
        if session is None:
            with self._db.session() as own:
                return self.states(session=own)
        rows = session.exec(select(ProviderCircuit).order_by(col(ProviderCircuit.provider)))
        return [
            CircuitState(
                provider=row.provider,
                open=row.opened_at is not None,
                opened_at=row.opened_at,
                probe_at=row.probe_at if row.opened_at is not None else None,
                reason=row.reason,
                openings=row.openings,
            )
            for row in rows
        ]


def _locked_row(session: Session, provider: str) -> ProviderCircuit:
    row = session.get(ProviderCircuit, provider, with_for_update=True)
    if row is None:
        dialect = session.get_bind().dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        session.execute(insert(ProviderCircuit).values(provider=provider).on_conflict_do_nothing())
        row = session.get(ProviderCircuit, provider, with_for_update=True, populate_existing=True)
        assert row is not None
    return row


# KEYS[1] = the provider's hash; ARGV[1] = now, ARGV[2] = open seconds.
# Answers {state, wait, reason}; a due probe moves probe_at on in the same step.
_CHECK = """
local opened = redis.call('HGET', KEYS[1], 'opened_at')
if not opened or opened == '' then return {'closed', '0', ''} end
local now = tonumber(ARGV[1])
local probe_at = tonumber(redis.call('HGET', KEYS[1], 'probe_at') or '0')
local reason = redis.call('HGET', KEYS[1], 'reason') or ''
if now < probe_at then return {'open', tostring(probe_at - now), reason} end
redis.call('HSET', KEYS[1], 'probe_at', tostring(now + tonumber(ARGV[2])))
return {'probe', '0', reason}
"""

# KEYS[1] = the provider's hash, KEYS[2] = the set of providers; ARGV = now, open seconds, reason.
_TRIP = """
local opened = redis.call('HGET', KEYS[1], 'opened_at')
local fresh = (not opened) or opened == ''
if fresh then
  redis.call('HSET', KEYS[1], 'opened_at', ARGV[1])
  redis.call('HINCRBY', KEYS[1], 'openings', 1)
end
redis.call('HSET', KEYS[1], 'probe_at', tostring(tonumber(ARGV[1]) + tonumber(ARGV[2])),
           'reason', ARGV[3])
redis.call('SADD', KEYS[2], KEYS[1])
if fresh then return 1 else return 0 end
"""

_CLOSE = """
local opened = redis.call('HGET', KEYS[1], 'opened_at')
if not opened or opened == '' then return 0 end
redis.call('HSET', KEYS[1], 'opened_at', '')
return 1
"""


class RedisCircuits:
    def __init__(self, url: str, *, prefix: str = "notifier:circuit:") -> None:
        import redis

        self._redis = redis.Redis.from_url(url, decode_responses=True)
        self._check = self._redis.register_script(_CHECK)
        self._trip = self._redis.register_script(_TRIP)
        self._close = self._redis.register_script(_CLOSE)
        self._prefix = prefix
        self._all = prefix + "providers"

    def check(self, provider: str, *, now: float, open_seconds: float) -> Verdict:
        state, wait, reason = self._check(keys=[self._prefix + provider], args=[now, open_seconds])
        return Verdict(state, wait=max(float(wait), 0.0), reason=reason)

    def trip(self, provider: str, reason: str, *, now: float, open_seconds: float) -> bool:
        keys = [self._prefix + provider, self._all]
        return bool(self._trip(keys=keys, args=[now, open_seconds, reason[:REASON_CHARS]]))

    def close(self, provider: str) -> bool:
        return bool(self._close(keys=[self._prefix + provider]))

    def states(self, *, session: Session | None = None) -> list[CircuitState]:
        found: list[CircuitState] = []
        for key in sorted(str(k) for k in self._redis.smembers(self._all)):
            row = {str(k): str(v) for k, v in self._redis.hgetall(key).items()}
            opened = float(row["opened_at"]) if row.get("opened_at") else None
            found.append(
                CircuitState(
                    provider=key.removeprefix(self._prefix),
                    open=opened is not None,
                    opened_at=opened,
                    probe_at=float(row.get("probe_at") or 0) if opened is not None else None,
                    reason=row.get("reason", ""),
                    openings=int(row.get("openings") or 0),
                )
            )
        return found


def make_circuits(db: Database, *, redis_url: str, broker_url: str) -> Circuits:
    """Redis if configured (or the broker is Redis), else the database: as the rate limiter."""
    url = redis_url or (broker_url if broker_url.startswith(("redis://", "rediss://")) else "")
    return RedisCircuits(url) if url else DatabaseCircuits(db)
