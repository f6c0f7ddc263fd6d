"""Server-side sessions of signed-in users.

The browser's cookie holds 32 random bytes; the row's id is their SHA-256, so
a leaked table signs nobody in. A session ends when it has been idle for the
timeout, when it is ``max_age`` old however busy, at sign-out, and when its
user is disabled or their password changes. A session between the password
and the TOTP code (stage ``totp`` or ``enrol``) opens no page and lives
``PENDING_FOR`` at most; completing it replaces it with a new ``full`` one.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from sqlmodel import Session, col, delete

from notifier.auth.keys import hash_key
from notifier.users.models import SESSION_STAGES, User, UserSession

__all__ = ["PENDING_FOR", "end", "end_all", "resume", "start"]

PENDING_FOR = timedelta(minutes=10)
"""How long a password sign-in may wait for its TOTP code or enrolment."""

# Pushing the expiry forward on every request would write on every page view.
_TOUCH_EVERY = timedelta(minutes=1)


def start(
    session: Session, user: User, *, now: datetime, idle: timedelta, stage: str = "full"
) -> tuple[str, UserSession]:
    """A new session for ``user``; returns the cookie's token (never stored) and the row."""
    assert user.id is not None
    assert stage in SESSION_STAGES
    token = secrets.token_urlsafe(32)
    row = UserSession(
        id=hash_key(token),
        user_id=user.id,
        csrf_token=secrets.token_urlsafe(32),
        created_at=now,
        last_seen_at=now,
        expires_at=now + (idle if stage == "full" else min(idle, PENDING_FOR)),
        stage=stage,
    )
    session.add(row)
    # The user's sessions that timed out are dropped here rather than by a job.
    session.exec(
        delete(UserSession).where(
            col(UserSession.user_id) == user.id, col(UserSession.expires_at) <= now
        )
    )
    session.flush()
    return token, row


def resume(
    session: Session,
    token: str,
    *,
    now: datetime,
    idle: timedelta,
    max_age: timedelta,
    stage: str = "full",
) -> tuple[User, UserSession] | None:
    """The active user and live session of ``stage`` behind a cookie's token, or None."""
    row = session.get(UserSession, hash_key(token))
    if row is None:
        return None
    user = session.get(User, row.user_id)
    if row.expires_at <= now or row.created_at + max_age <= now or user is None or not user.active:
        session.delete(row)
        session.flush()
        return None
    if row.stage != stage:
        return None
    if stage == "full" and now - row.last_seen_at >= _TOUCH_EVERY:
        row.last_seen_at = now
        row.expires_at = now + idle
        session.add(row)
    return user, row


def end(session: Session, token: str) -> UserSession | None:
    """Delete the session behind ``token``; the row it was, if any."""
    row = session.get(UserSession, hash_key(token))
    if row is not None:
        session.delete(row)
        session.flush()
    return row


def end_all(session: Session, user_id: int) -> None:
    """End every session of a user (disabled, or a new password)."""
    session.exec(delete(UserSession).where(col(UserSession.user_id) == user_id))
