"""What a person reads of a stored instant: the utility's wall clock, its zone named.

The database and the JSON API keep UTC with an offset; pages, agents' lists,
exports and the CLI's lists show the business date and time in the policy's
time zone (Asia/Taipei). These functions are the one way from one to the
other, so an attempt at 04:41 Taipei on 12-02 (20:41 UTC on 12-01) reads
12-02 everywhere.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

__all__ = ["local", "local_date", "local_naive", "shown"]


def local(at: datetime, tz: ZoneInfo) -> datetime:
    """``at`` on the wall clock of ``tz`` (aware); a naive ``at`` is taken as UTC."""
    # The database hands back aware UTC; a naive value here is UTC that lost its
    # zone, never the machine's local time (which astimezone() would assume).
    aware = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    return aware.astimezone(tz)


def local_date(at: datetime, tz: ZoneInfo) -> date:
    """The business date of ``at`` in ``tz``."""
    return local(at, tz).date()


def local_naive(at: datetime, tz: ZoneInfo) -> datetime:
    """``at`` in ``tz`` without its zone, for a spreadsheet cell (whose header names the zone)."""
    return local(at, tz).replace(tzinfo=None)


def shown(at: datetime, tz: ZoneInfo, *, seconds: bool = True) -> str:
    """``2026-12-02 04:41:07 Asia/Taipei``: the time as a person reads it, its zone named."""
    pattern = "%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M"
    return f"{local(at, tz).strftime(pattern)} {tz.key}"
