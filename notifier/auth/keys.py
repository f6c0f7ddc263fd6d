"""API keys: create, verify, list, revoke, rotate; each change goes to the audit trail.

A key is 32 random bytes, so a plain SHA-256 of it cannot be brute-forced and
lookups stay one indexed query; a password KDF would only slow every request.
The key is shown once, when it is made; only its hash and first characters
are stored. A key carries a name, a role (:mod:`notifier.auth.access`), an
agent for agent keys, and may expire. Revoking sets ``revoked_at``: now, or a
moment ahead when a rotation leaves the old key a grace period; from then on
the key is refused. ``last_used_at`` is written at most once a minute per key.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import cast

import sqlalchemy as sa
from sqlmodel import Session, col, select

from notifier.audit import service as audit
from notifier.auth.access import ROLES, Role
from notifier.auth.models import ApiKey
from notifier.db import utcnow
from notifier.escalation.models import Agent
from notifier.webhooks.models import ProducerEndpoint

__all__ = [
    "LAST_USED_EVERY",
    "ROLES",
    "Role",
    "actor_of",
    "create_key",
    "hash_key",
    "list_keys",
    "revoke",
    "rotate",
    "state_of",
    "touch",
    "verify",
]

_PREFIX = "ntf_"
LAST_USED_EVERY = timedelta(minutes=1)
"""``last_used_at`` is at most this old for a key in use: one write a minute, not one a request."""


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def actor_of(row: ApiKey) -> str:
    """How the audit trail names a key: ``key 5 (billing)``."""
    return audit.actor_name("key", row.id, row.name)


def create_key(
    session: Session,
    *,
    role: Role,
    name: str,
    agent_id: int | None = None,
    expires_in: timedelta | None = None,
    actor: str = audit.CLI,
) -> tuple[ApiKey, str]:
    """Store a new key's hash and return the row and the key, which is never stored."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
    if role == "agent" and agent_id is None:
        raise ValueError("an agent key needs --agent ID")
    if agent_id is not None:
        agent = session.get(Agent, agent_id)
        if agent is None or not agent.active:
            raise ValueError(f"no active agent {agent_id} (see notifier agents list)")
    key = _PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(
        name=name,
        role=role,
        prefix=key[: len(_PREFIX) + 6],
        key_hash=hash_key(key),
        agent_id=agent_id,
        expires_at=utcnow() + expires_in if expires_in else None,
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="key.created",
        target=actor_of(row),
        detail={
            "role": role,
            "agent_id": agent_id,
            "expires_at": row.expires_at.isoformat() if row.expires_at else None,
        },
    )
    return row, key


def verify(session: Session, key: str, *, now: datetime | None = None) -> ApiKey | None:
    """The live key row for ``key``, or None if unknown, revoked or expired."""
    if not key.startswith(_PREFIX):
        return None
    row = session.exec(select(ApiKey).where(ApiKey.key_hash == hash_key(key))).first()
    now = now or utcnow()
    if row is None or state_of(row, now) != "active":
        return None
    return row


def touch(session: Session, row: ApiKey, *, now: datetime | None = None) -> bool:
    """Set ``last_used_at`` if it is older than :data:`LAST_USED_EVERY`; whether it wrote."""
    now = now or utcnow()
    if row.last_used_at is not None and now - row.last_used_at < LAST_USED_EVERY:
        return False
    # Conditional, so API replicas racing on one key write it once.
    stale = sa.or_(
        col(ApiKey.last_used_at).is_(None), col(ApiKey.last_used_at) <= now - LAST_USED_EVERY
    )
    done = session.execute(
        sa.update(ApiKey).where(col(ApiKey.id) == row.id, stale).values(last_used_at=now)
    )
    row.last_used_at = now
    return bool(getattr(done, "rowcount", 0))


def state_of(row: ApiKey, now: datetime | None = None) -> str:
    """``active``, ``revoked`` or ``expired``."""
    now = now or utcnow()
    if row.revoked_at is not None and row.revoked_at <= now:
        return "revoked"
    if row.expires_at is not None and row.expires_at <= now:
        return "expired"
    return "active"


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.exec(select(ApiKey).order_by(col(ApiKey.id))))


def revoke(
    session: Session,
    key_id: int,
    *,
    actor: str = audit.CLI,
    after: timedelta = timedelta(0),
    now: datetime | None = None,
) -> ApiKey | None:
    """Refuse the key from now (or ``after`` from now); the row, or None if it is no longer live."""
    now = now or utcnow()
    row = session.get(ApiKey, key_id, with_for_update=True)
    if row is None or state_of(row, now) != "active":
        return None
    at = now + after
    if row.revoked_at is not None and row.revoked_at <= at:
        return row  # already going sooner
    row.revoked_at = at
    session.add(row)
    audit.record(
        session,
        actor=actor,
        action="key.revoked",
        target=actor_of(row),
        detail={"at": at.isoformat()} if after else None,
    )
    return row


def rotate(
    session: Session,
    key_id: int,
    *,
    expires_in: timedelta | None = None,
    grace: timedelta = timedelta(0),
    actor: str = audit.CLI,
    now: datetime | None = None,
) -> tuple[ApiKey, str, ApiKey]:
    """A new key with the old one's name, role and agent; the old one is revoked after ``grace``.

    Returns the new row, the new key (shown once) and the old row. ``expires_in``
    defaults to the old key's lifetime (none if it had none).
    """
    now = now or utcnow()
    old = session.get(ApiKey, key_id, with_for_update=True)
    if old is None or state_of(old, now) != "active":
        raise ValueError(f"no active key {key_id} (see notifier keys list)")
    if expires_in is None and old.expires_at is not None:
        expires_in = old.expires_at - old.created_at
    new, key = create_key(
        session,
        role=cast(Role, old.role),  # a stored role is one of ROLES
        name=old.name,
        agent_id=old.agent_id,
        expires_in=expires_in,
        actor=actor,
    )
    endpoint = session.get(ProducerEndpoint, key_id)
    if endpoint is not None:
        # The billing side keeps its URL and secret: callbacks of events posted
        # with the new key go where the old key's went.
        assert new.id is not None
        session.add(ProducerEndpoint(key_id=new.id, url=endpoint.url, secret=endpoint.secret))
    revoke(session, key_id, actor=actor, after=grace, now=now)
    audit.record(
        session,
        actor=actor,
        action="key.rotated",
        target=actor_of(old),
        detail={"new_key": actor_of(new), "grace_hours": grace.total_seconds() / 3600},
    )
    return new, key, old
