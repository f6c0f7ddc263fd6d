"""The business calendar: which dates the utility works, by Taiwan's official calendar.

A date is a business day when its weekday is one of ``sweep_days`` and it is
no holiday, or when it is a make-up working day (補班, a Saturday worked for
a weekday given off). Holidays come from the ``holidays`` package
(``holidays.TW``: the national holidays of 紀念日及節日實施條例 with their
observed days, and the swapped days off it knows), then from a data file
under ``config/calendars/`` for what the package lacks (make-up working days
above all: the package names them only inside a label), then from the
policy's own ``holidays`` (local closures: a typhoon day, 颱風假).

The sweep asks once per account and per day counted, so each year is worked
out once into two sets and kept.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import date
from pathlib import Path
from threading import Lock

import yaml
from holidays import country_holidays
from pydantic import BaseModel, ConfigDict, ValidationError

__all__ = ["BusinessCalendar", "CalendarFile", "CalendarYear", "load_calendar_file"]

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class CalendarYear(BaseModel):
    """One year of a calendar file: what the official calendar adds to the package's."""

    model_config = ConfigDict(extra="forbid")

    holidays: list[date] = []
    """Days off the package does not know (a swapped day off it lacks, a one-off holiday)."""
    make_up_workdays: list[date] = []
    """Make-up working days (補班): business days although they fall on a weekend."""
    workdays: list[date] = []
    """Days the package calls holidays that the official calendar has as working days."""


class CalendarFile(BaseModel):
    """``config/calendars/<country>.yaml``: per year, the corrections to the package."""

    model_config = ConfigDict(extra="forbid")

    country: str
    years: dict[int, CalendarYear] = {}

    def year(self, year: int) -> CalendarYear:
        return self.years.get(year, CalendarYear())


@functools.cache
def load_calendar_file(path: Path) -> CalendarFile:
    """Read and check a calendar file (once per path and process)."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"calendar file not found: {path}") from exc
    try:
        found = CalendarFile.model_validate(raw)
    except ValidationError as exc:
        raise ValueError(f"calendar file {path}: {exc}") from exc
    for year, entry in found.years.items():
        for day in (*entry.holidays, *entry.make_up_workdays, *entry.workdays):
            if day.year != year:
                raise ValueError(f"calendar file {path}: {day} is listed under {year}")
    return found


class BusinessCalendar:
    """Business days of one country's calendar, the data file's corrections and local closures."""

    def __init__(
        self,
        country: str | None,
        *,
        weekdays: Iterable[str] = WEEKDAYS[:5],
        corrections: CalendarFile | None = None,
        closures: Iterable[date] = (),
    ) -> None:
        self.country = country
        self._weekdays = frozenset(WEEKDAYS.index(day) for day in weekdays)
        self._corrections = corrections
        self._closures = frozenset(closures)
        self._years: dict[int, tuple[frozenset[date], frozenset[date]]] = {}
        self._lock = Lock()

    def is_business_day(self, day: date) -> bool:
        """Whether the utility works on ``day``."""
        closed, opened = self._year(day.year)
        if day in opened:
            return True
        return day.weekday() in self._weekdays and day not in closed

    def holidays(self, year: int) -> frozenset[date]:
        """The days off of ``year`` besides the weekends (closures included)."""
        return self._year(year)[0]

    def make_up_workdays(self, year: int) -> frozenset[date]:
        """The days of ``year`` worked although their weekday is off (補班)."""
        return self._year(year)[1]

    def _year(self, year: int) -> tuple[frozenset[date], frozenset[date]]:
        found = self._years.get(year)
        if found is None:
            with self._lock:
                found = self._years.setdefault(year, self._work_out(year))
        return found

    def _work_out(self, year: int) -> tuple[frozenset[date], frozenset[date]]:
        closed = set(country_holidays(self.country, years=year)) if self.country else set()
        opened: set[date] = set()
        if self._corrections is not None:
            entry = self._corrections.year(year)
            closed |= set(entry.holidays)
            closed -= set(entry.workdays) | set(entry.make_up_workdays)
            opened |= set(entry.make_up_workdays) | set(entry.workdays)
        closed |= {day for day in self._closures if day.year == year}
        # A local closure wins over a make-up working day: the office is shut all the same.
        opened -= closed
        return frozenset(closed), frozenset(opened)
