"""Record what people and programs did; read it back newest first.

The trail is append-only: this module has no function that changes or
deletes an entry, and nothing else should write to ``audit_log``. An entry is
written in the caller's transaction, so it stands or falls with the change it
describes.

Actors are strings made by :func:`actor_name`: ``user 3 (alice)``, ``key 5
(billing)``; :data:`CLI` for the ``notifier`` command and :data:`WEB` for a
browser that is not signed in (a failed sign-in). Actions are
``<domain>.<verb>``: ``user.sign_in``, ``delivery.retry``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlmodel import Session, col, select

from notifier.audit.models import AuditEntry

__all__ = ["CLI", "WEB", "AuditPage", "actor_name", "list_entries", "record"]

CLI = "cli"
WEB = "web"


def actor_name(kind: Literal["user", "key"], id_: int | None, name: str) -> str:
    """How an entry names a user or an API key: ``user 3 (alice)``."""
    return f"{kind} {id_} ({name})"


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    target: str | None = None,
    detail: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append one entry in the session's transaction."""
    entry = AuditEntry(actor=actor, action=action, target=target, detail=detail)
    session.add(entry)
    session.flush()
    return entry


@dataclass(frozen=True)
class AuditPage:
    entries: list[AuditEntry]
    next_before: int | None
    """Pass as ``before`` for the next (older) page; None on the last page."""


def list_entries(
    session: Session,
    *,
    actor: str | None = None,
    action: str | None = None,
    target: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before: int | None = None,
    limit: int = 100,
) -> AuditPage:
    """Entries newest first, filtered; keyset-paged on the id (``before``)."""
    query = select(AuditEntry).order_by(col(AuditEntry.id).desc()).limit(limit + 1)
    if actor is not None:
        query = query.where(AuditEntry.actor == actor)
    if action is not None:
        query = query.where(AuditEntry.action == action)
    if target is not None:
        query = query.where(AuditEntry.target == target)
    if since is not None:
        query = query.where(col(AuditEntry.at) >= since)
    if until is not None:
        query = query.where(col(AuditEntry.at) < until)
    if before is not None:
        query = query.where(col(AuditEntry.id) < before)
    rows = list(session.exec(query))
    more = len(rows) > limit
    rows = rows[:limit]
    return AuditPage(entries=rows, next_before=rows[-1].id if more and rows else None)
