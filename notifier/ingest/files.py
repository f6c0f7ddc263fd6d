"""Event files a billing system exports: JSON lines, or CSV rows of unpaid bills.

JSON lines (``.jsonl``): one event per line, each exactly a ``POST /v1/events``
body; blank lines are skipped. A ``.json`` file holds one event or a list.

CSV (UTF-8, a BOM allowed; the first row names the columns, in any order):

=========================  ========  ==========================================
column                     needed    becomes
=========================  ========  ==========================================
``event_id``               yes       ``event_id`` (unique per event; letters, digits, ``._:-``)
``type``                   no        ``type``; default ``bill.unpaid`` (``bill.issued``, ``bill.paid``)
``occurred_at``            yes       ``occurred_at``, ISO 8601 with an offset (``2026-11-27T09:00:00+08:00``)
``account_no``             yes       ``account.account_no`` (11 digits)
``name``, ``phone``,       no        ``account.*``; an empty cell leaves the stored value as it is
``email``, ``address``,
``area``, ``language``
``push_tokens``,           no        ``account.*``, several values separated by ``|``
``opt_outs``
``vulnerable``,            no        ``account.*``: ``true``/``false`` (also ``1``/``0``, ``yes``/``no``)
``prefers_paper``,
``prefers_voice``
``protections``            no        ``account.protections``, several separated by ``|`` (``life_support|elderly``)
``spoken_language``        no        ``account.spoken_language`` (``nan``, ``hak``, ...)
``billing_cycle_months``   no        ``account.billing_cycle_months``
``bill_no``, ``period``,   yes       ``bill.*``: period ``YYYY-MM``, amount in whole NT$,
``amount``, ``due_date``             due date ``YYYY-MM-DD``
``level``                  no        ``level`` (dunning level, default 1)
=========================  ========  ==========================================

An unknown column is refused (a misspelt column is a bug in the export), as
the API refuses an unknown field. Each row is validated as the API validates
a body; the errors name the CSV column where there is one.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from notifier.events.schema import EventIn, FieldError, field_errors, parse_event

__all__ = ["CSV_COLUMNS", "FileError", "Row", "count_rows", "file_format", "read_events"]

Format = Literal["csv", "jsonl", "json"]
ACCOUNT_COLUMNS = (
    "account_no", "name", "phone", "email", "address", "area", "language",
    "push_tokens", "opt_outs", "vulnerable", "prefers_paper", "prefers_voice",
    "billing_cycle_months", "protections", "spoken_language",
)  # fmt: skip
BILL_COLUMNS = ("bill_no", "period", "amount", "due_date")
EVENT_COLUMNS = ("event_id", "type", "occurred_at", "level")
CSV_COLUMNS = (*EVENT_COLUMNS, *ACCOUNT_COLUMNS, *BILL_COLUMNS)
LIST_COLUMNS = ("push_tokens", "opt_outs", "protections")
INT_COLUMNS = ("amount", "level", "billing_cycle_months")
BOOL_COLUMNS = ("vulnerable", "prefers_paper", "prefers_voice")
_BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
_COLUMN_OF = {
    **{f"account.{name}": name for name in ACCOUNT_COLUMNS},
    **{f"bill.{name}": name for name in BILL_COLUMNS},
}


class FileError(ValueError):
    """The file as a whole cannot be read (unknown columns, not text)."""


@dataclass
class Row:
    """One event of the file: where it is, and the event or why it is invalid."""

    line: int
    event: EventIn | None = None
    errors: list[FieldError] = field(default_factory=list)
    event_id: str | None = None


def file_format(path: Path, named: str | None = None) -> Format:
    """``csv`` or ``jsonl``: as named, else by the file's extension."""
    chosen = (named or path.suffix.lstrip(".")).lower()
    if chosen in ("csv",):
        return "csv"
    if chosen in ("jsonl", "ndjson"):
        return "jsonl"
    if chosen == "json":
        return "json"
    raise FileError(f"cannot tell the format of {path.name}: name it .csv or .jsonl (or --format)")


def count_rows(path: Path, fmt: Format, *, encoding: str = "utf-8-sig") -> int:
    """Roughly how many events the file holds (its non-blank lines, less the CSV header)."""
    if fmt == "json":
        return 0  # read whole: no progress to show
    with path.open(encoding=encoding, errors="replace") as f:
        lines = sum(1 for line in f if line.strip())
    return max(lines - 1, 0) if fmt == "csv" else lines


def read_events(path: Path, fmt: Format, *, encoding: str = "utf-8-sig") -> Iterator[Row]:
    """Each event of the file, validated, in file order."""
    try:
        with path.open(encoding=encoding, newline="" if fmt == "csv" else None) as f:
            if fmt == "csv":
                yield from _csv_rows(f)
            elif fmt == "jsonl":
                yield from _jsonl_rows(f)
            else:
                yield from _json_rows(f)
    except UnicodeDecodeError as exc:
        raise FileError(f"{path.name} is not {encoding} text ({exc.reason})") from None


def _jsonl_rows(f: Any) -> Iterator[Row]:
    for number, line in enumerate(f, start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except ValueError as exc:
            yield Row(line=number, errors=[FieldError(field="(line)", message=f"not JSON ({exc})")])
            continue
        yield _validated(number, raw)


def _json_rows(f: Any) -> Iterator[Row]:
    """A JSON document: one event, or a list of events (each reported as line 1)."""
    try:
        document = json.load(f)
    except ValueError as exc:
        yield Row(line=1, errors=[FieldError(field="(file)", message=f"not JSON ({exc})")])
        return
    for raw in document if isinstance(document, list) else [document]:
        yield _validated(1, raw)


def _csv_rows(f: Any) -> Iterator[Row]:
    reader = csv.reader(f)
    try:
        header = [name.strip() for name in next(reader)]
    except StopIteration:
        return
    unknown = [name for name in header if name not in CSV_COLUMNS]
    if unknown:
        raise FileError(
            f"unknown column(s) {', '.join(map(repr, unknown))}; the columns are "
            + ", ".join(CSV_COLUMNS)
        )
    start = reader.line_num + 1
    for cells in reader:
        line, start = start, reader.line_num + 1
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) != len(header):
            message = f"{len(cells)} cells, the header has {len(header)}"
            yield Row(line=line, errors=[FieldError(field="(row)", message=message)])
            continue
        row = _validated(line, _event_of(dict(zip(header, cells, strict=True))))
        row.errors = [FieldError(field=_column(e.field), message=e.message) for e in row.errors]
        yield row


def _typed(name: str, value: str) -> Any:
    """A cell as the JSON value its field takes (the API takes no number as text); a cell
    that is not one stays text, and validation names its column."""
    if name in INT_COLUMNS and value.lstrip("-").isascii() and value.lstrip("-").isdigit():
        return int(value)
    if name in BOOL_COLUMNS:
        return _BOOLS.get(value.lower(), value)
    return value


def _event_of(cells: dict[str, str]) -> dict[str, Any]:
    """A CSV row as an event body; empty cells are left out (stored values are kept)."""
    present = {name: _typed(name, value.strip()) for name, value in cells.items() if value.strip()}
    account: dict[str, Any] = {}
    for name in ACCOUNT_COLUMNS:
        if name in present:
            value = present[name]
            account[name] = (
                [part.strip() for part in value.split("|") if part.strip()]
                if name in LIST_COLUMNS
                else value
            )
    event: dict[str, Any] = {
        name: present[name] for name in ("event_id", "occurred_at", "level") if name in present
    }
    event["type"] = present.get("type", "bill.unpaid")
    event["account"] = account
    bill = {name: present[name] for name in BILL_COLUMNS if name in present}
    if bill:
        event["bill"] = bill
    return event


def _validated(line: int, raw: Any) -> Row:
    event_id = raw.get("event_id") if isinstance(raw, dict) else None
    try:
        event = parse_event(raw)
    except ValidationError as exc:
        return Row(
            line=line,
            errors=field_errors(exc),
            event_id=event_id if isinstance(event_id, str) else None,
        )
    return Row(line=line, event=event, event_id=event.event_id)


def _column(path: str) -> str:
    """``account.phone`` → ``phone``: the CSV column an error is about, where there is one.

    A list's item (``account.protections[1]``) is its column's.
    """
    return _COLUMN_OF.get(path, _COLUMN_OF.get(path.split("[", 1)[0], path))
