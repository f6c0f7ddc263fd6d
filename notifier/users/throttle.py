"""The per-client sign-in throttle: too many failures from one address make it wait.

Besides each account's lock (which a guesser of one account meets), one
client address may fail ``limit`` sign-ins (wrong password, unknown user,
wrong TOTP code) in a window of ``window`` from its first failure; past that
every sign-in from it is refused, without checking anything, until the window
ends. A fixed window in one row per address: the database is shared by every
API replica, and the row is the whole state.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, delete

from notifier.users.models import SignInThrottle

__all__ = ["record_failure", "retry_after"]

_MAX_CLIENT = 64


def _key(client: str) -> str:
    return client[:_MAX_CLIENT]


def retry_after(
    session: Session, client: str, *, now: datetime, limit: int, window: timedelta
) -> int | None:
    """Seconds ``client`` must wait before it may try again, or None if it may now."""
    row = session.get(SignInThrottle, _key(client))
    if row is None or row.failures < limit:
        return None
    ends = row.window_start + window
    if ends <= now:
        return None
    return max(1, math.ceil((ends - now).total_seconds()))


def record_failure(session: Session, client: str, *, now: datetime, window: timedelta) -> int:
    """Count one failed sign-in of ``client``; the failures in its window so far."""
    row = session.get(SignInThrottle, _key(client), with_for_update=True)
    if row is None:
        # Rows of windows long over are dropped here rather than by a job.
        session.exec(delete(SignInThrottle).where(col(SignInThrottle.window_start) <= now - window))
        try:
            with session.begin_nested():  # another replica may add this client's row meanwhile
                session.add(SignInThrottle(client=_key(client), window_start=now, failures=0))
        except IntegrityError:
            pass
        row = session.get(
            SignInThrottle, _key(client), with_for_update=True, populate_existing=True
        )
        assert row is not None
    if row.window_start + window <= now:
        row.window_start = now
        row.failures = 0
    row.failures += 1
    session.add(row)
    session.flush()
    return row.failures
