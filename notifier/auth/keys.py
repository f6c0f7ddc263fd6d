"""API keys and roles.

A key is 32 random bytes, so a plain SHA-256 of it cannot be brute-forced and
lookups stay one indexed query; a password KDF would only slow every request.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import Literal

from sqlmodel import Session, col, select

from notifier.auth.models import ApiKey
from notifier.db import utcnow
from notifier.escalation.models import Agent

__all__ = ["ROLES", "Role", "create_key", "hash_key", "list_keys", "revoke", "verify"]

Role = Literal["producer", "ops", "agent", "supervisor", "admin"]
ROLES: tuple[Role, ...] = ("producer", "ops", "agent", "supervisor", "admin")
_PREFIX = "ntf_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(
    session: Session,
    *,
    role: Role,
    name: str,
    agent_id: int | None = None,
    expires_in: timedelta | None = None,
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
    return row, key


def verify(session: Session, key: str, *, now: datetime | None = None) -> ApiKey | None:
    """The live key row for ``key``, or None if unknown, revoked or expired."""
    if not key.startswith(_PREFIX):
        return None
    row = session.exec(select(ApiKey).where(ApiKey.key_hash == hash_key(key))).first()
    now = now or utcnow()
    if row is None or row.revoked_at is not None:
        return None
    if row.expires_at is not None and row.expires_at <= now:
        return None
    return row


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.exec(select(ApiKey).order_by(col(ApiKey.id))))


def revoke(session: Session, key_id: int) -> bool:
    row = session.get(ApiKey, key_id)
    if row is None or row.revoked_at is not None:
        return False
    row.revoked_at = utcnow()
    session.add(row)
    return True
