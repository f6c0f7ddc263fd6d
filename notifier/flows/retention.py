"""Retention: personal data of old, finished work is purged; ids, statuses and counts stay.

After ``NOTIFIER_RETENTION_DAYS`` (90) days the service no longer needs what
it rendered for a customer or the contact points a producer sent with an
event. :func:`purge` (the daily beat job, and ``notifier purge``) removes them
and keeps every row, so the delivery log, the dashboards, the metrics and the
escalation statistics count the same before and after:

- a **delivery** created more than N days ago and in a final state (never one
  still queued, deferred or sending: that one is still owed) loses its
  rendered ``content`` (it becomes ``{"purged": true}``) and its
  ``recipients``; phone numbers and emails in ``last_error`` are masked.
  ``address_masked`` stays: it is already cut to a district, the last three
  digits of a number or the first letter of an email, and it is what the log
  shows in place of the address. Status, provider, provider id, attempts,
  segments, language and timestamps stay; ``purged_at`` marks the row.
- its **timeline** keeps every entry, status and time; in ``detail``, ids,
  codes and numbers stay, free text (a provider's error, which may quote the
  number it refused; a reason; an SMTP reply) is masked like a log line, and
  lists or maps (SMTP's refused addresses) become their length. The hashes of
  what each send carried and of its template stay: the service record
  (notifier.escalation.record) is read from them after the purge too.
- an **event** received more than N days ago, processed, and whose
  deliveries are all final keeps its ``event_id``, type, ``occurred_at``,
  bill, level and usage; of its ``account`` only the account number,
  language, area and billing cycle stay (name, phone, email, address, push
  tokens, flags and opt-outs go). The payload still parses, so a late
  provider report that starts a fallback can rebuild the notice's context.
- an **escalation** keeps its case, bills, attempts and outcomes; the notes
  agents typed (free text, which may say anything about a person) are cleared
  on cases closed more than N days ago.
- **accounts** are never deleted: they are the master data of customers with
  current business, and every event refreshes them (a producer's upsert). An
  account with no unpaid bill, no open case and no event received (nor any
  change) in N days has its contact points cleared: name, phone, email, push
  tokens and postal address; its number, language, area, flags, opt-outs and
  billing cycle stay. The next event about it fills them in again.
- **producer callbacks** sent or failed for good are deleted (account and bill
  numbers, codes); one still owed stays until it is sent or given up.

Each kind is read in chunks of :data:`CHUNK` rows, keyset-paged, and each
chunk is committed on its own: a run killed half way keeps what it did, and
the next run (the job is idempotent) goes on from there. Purged deliveries
and events leave a partial index (``purged_at IS NULL``), so a daily run
reads only what aged since the day before. Rows a worker holds locked are
skipped and taken the next day. A finished run is written to the audit trail
(``retention.purge``) with its counts; a dry run counts and writes nothing.

Not covered here: files outside the database (print batches under
``<data dir>/print``, the sandboxes' ``.jsonl`` outboxes), and the audit
trail, which is append-only.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col

from notifier.accounts.models import Account
from notifier.audit import service as audit
from notifier.billing.models import Bill
from notifier.db import Database, UTCDateTime
from notifier.deliveries.models import FINAL_STATUSES, Delivery, DeliveryChange, Notification
from notifier.escalation.models import CaseStatus, Escalation, EscalationAttempt
from notifier.events.models import Event, EventStatus
from notifier.observability.logs import mask_text
from notifier.webhooks.models import CallbackStatus, ProducerCallback

__all__ = [
    "CHUNK",
    "KINDS",
    "PURGED_CONTENT",
    "Progress",
    "PurgeReport",
    "purge",
    "scrub_detail",
    "scrub_payload",
]

log = logging.getLogger(__name__)
CHUNK = 1000
KINDS: tuple[str, ...] = (
    "deliveries",
    "timeline entries",
    "events",
    "notes",
    "accounts",
    "callbacks",
    "print files",
)
PURGED_CONTENT: dict[str, Any] = {"purged": True}
"""What a purged delivery's ``content`` holds: the notice is gone, and says so."""

Progress = Callable[[str, int, int], None]
"""Called after each chunk with the kind, the rows done so far and the rows to do."""

# Timeline detail kept as it is: ids, codes, statuses, counts, times, and the
# staff member who acted ("user 3 (alice)"). Everything else is free text or
# a structure that may hold addresses.
_KEPT_DETAIL = frozenset(
    {
        "attempt", "provider", "provider_id", "sid", "report", "provider_status",
        "twilio_status", "error_code", "code", "transient", "permanent", "retry_in",
        "fallback", "batch", "retry_of", "retried_as", "by", "until", "segments",
        "recipients", "accepted", "rejected", "awaiting_batch",
        # What the service record proves a send with, read after the purge too (a hash of
        # the content is not the content, and a template's name names no one).
        "content_sha256", "template", "template_sha256", "pdf_sha256",
    }
)  # fmt: skip
# Of an event's ``account``: what routes and bills, not who or where the person is.
_KEPT_ACCOUNT = ("account_no", "language", "area", "billing_cycle_months")
_CONTACT_CLEARED: dict[str, Any] = {
    "name": None, "phone": None, "email": None, "address": None, "push_tokens": [],
    "invalid_phone": None, "phone_invalid_at": None,  # a wrong number is a number too
    "phone_invalid_reason": None, "sms_unable_phone": None,
    "invalid_email": None, "email_invalid_at": None,  # a bounced address is an address too
    "email_invalid_reason": None,
}  # fmt: skip


@dataclass
class PurgeReport:
    """What one run purged (or, dry, would purge): rows per kind."""

    days: int
    cutoff: datetime
    dry_run: bool = False
    deliveries: int = 0
    timeline_entries: int = 0
    events: int = 0
    notes: int = 0
    accounts: int = 0
    callbacks: int = 0
    """Producer callbacks sent or failed for good, deleted (the producer has them, or gave up)."""
    print_files: int = 0
    """Files of print batches (postcard PDFs and their manifests: names, addresses, amounts)
    of days before the cutoff, deleted with their day's folder."""

    def counts(self) -> dict[str, int]:
        """Rows per kind, in :data:`KINDS` order."""
        return {
            "deliveries": self.deliveries,
            "timeline entries": self.timeline_entries,
            "events": self.events,
            "notes": self.notes,
            "accounts": self.accounts,
            "callbacks": self.callbacks,
            "print files": self.print_files,
        }


def scrub_detail(detail: Mapping[str, Any]) -> dict[str, Any]:
    """A timeline entry's detail without personal data: free text masked, structures counted."""
    kept: dict[str, Any] = {}
    for key, value in detail.items():
        if key in _KEPT_DETAIL or value is None or isinstance(value, bool | int | float):
            kept[key] = value
        elif isinstance(value, str):
            kept[key] = mask_text(value)
        elif isinstance(value, list | tuple | dict):
            kept[key] = len(value)
    return kept


def scrub_payload(payload: Mapping[str, Any]) -> dict[str, Any]:
    """An event's payload with only the non-personal facts of its ``account``."""
    scrubbed = dict(payload)
    account = payload.get("account")
    if isinstance(account, Mapping):
        scrubbed["account"] = {key: account[key] for key in _KEPT_ACCOUNT if key in account}
    return scrubbed


def purge(
    db: Database,
    *,
    days: int,
    now: datetime,
    actor: str,
    dry_run: bool = False,
    chunk: int = CHUNK,
    progress: Progress | None = None,
    print_dir: Path | None = None,
) -> PurgeReport:
    """Purge the personal data older than ``days`` days before ``now``; returns the counts.

    ``print_dir``: where the print batches are kept (``<data dir>/print``, a folder per day):
    the days before the cutoff are deleted whole.
    """
    if days < 1:
        raise ValueError(f"retention must be at least 1 day, not {days}")
    report = PurgeReport(days=days, cutoff=now - timedelta(days=days), dry_run=dry_run)
    step = _Step(db, report, now=now, chunk=chunk, progress=progress)
    step.deliveries()
    step.events()
    step.notes()
    step.accounts()
    step.callbacks()
    if print_dir is not None:
        report.print_files = _old_print_days(print_dir, report.cutoff.date(), dry_run=dry_run)
    if not dry_run:
        with db.session() as session:
            audit.record(
                session,
                actor=actor,
                action="retention.purge",
                target=f"older than {days} days",
                detail={"cutoff": report.cutoff.isoformat(), **report.counts()},
            )
    log.info(
        "retention%s: %s deliveries, %s timeline entries, %s events, %s notes, %s accounts, "
        "%s callbacks, %s print files older than %s days",
        " (dry run)" if dry_run else "", report.deliveries, report.timeline_entries,
        report.events, report.notes, report.accounts, report.callbacks, report.print_files,
        days,
    )  # fmt: skip
    return report


def _old_print_days(print_dir: Path, before: date, *, dry_run: bool) -> int:
    """Delete (dry: count) the files of the print batches of days before ``before``."""
    if not print_dir.is_dir():
        return 0
    old = []
    for folder in print_dir.iterdir():
        try:
            day = date.fromisoformat(folder.name)
        except ValueError:
            continue  # not a day's batch folder: not ours to delete
        if folder.is_dir() and day < before:
            old.append(folder)
    files = sum(1 for folder in old for path in folder.rglob("*") if path.is_file())
    if not dry_run:
        for folder in old:
            shutil.rmtree(folder)
    return files


class _Step:
    """One run's passes, each a loop of committed chunks."""

    def __init__(
        self,
        db: Database,
        report: PurgeReport,
        *,
        now: datetime,
        chunk: int,
        progress: Progress | None,
    ) -> None:
        self.db, self.report, self.now, self.chunk = db, report, now, chunk
        self.cutoff, self.dry_run = report.cutoff, report.dry_run
        self._progress = progress

    def _report(self, kind: str, done: int, total: int) -> None:
        if self._progress is not None:
            self._progress(kind, done, total)

    def _count(self, query: Any) -> int:
        with self.db.session() as session:
            return int(session.execute(query).scalar_one())

    def _lock(self, query: Any) -> Any:
        # Rows a worker holds are left for the next run, not waited for.
        # (SQLite has no row locks: its writers queue for the whole database.)
        return query if self.dry_run else query.with_for_update(skip_locked=True)

    # -- producer callbacks ----------------------------------------------------------------

    def callbacks(self) -> None:
        """Delete finished callbacks (ids, account and bill numbers) past retention, in chunks."""
        done = (
            col(ProducerCallback.status).in_([CallbackStatus.SENT, CallbackStatus.FAILED]),
            col(ProducerCallback.created_at) < self.cutoff,
        )
        total = self._count(sa.select(sa.func.count()).select_from(ProducerCallback).where(*done))
        self._report("callbacks", 0, total)
        if self.dry_run:
            self.report.callbacks = total
            return
        while True:
            with self.db.session() as session:
                ids = list(
                    session.execute(
                        self._lock(
                            sa.select(col(ProducerCallback.id)).where(*done).limit(self.chunk)
                        )
                    ).scalars()
                )
                if not ids:
                    break
                session.execute(
                    sa.delete(ProducerCallback).where(col(ProducerCallback.id).in_(ids))
                )
            self.report.callbacks += len(ids)
            self._report("callbacks", self.report.callbacks, total)

    # -- deliveries and their timelines ----------------------------------------------------

    def deliveries(self) -> None:
        due = (
            col(Delivery.purged_at).is_(None),
            col(Delivery.created_at) < self.cutoff,
            col(Delivery.status).in_(FINAL_STATUSES),
        )
        total = self._count(sa.select(sa.func.count()).select_from(Delivery).where(*due))
        self._report("deliveries", 0, total)
        after: tuple[datetime, int] | None = None
        done = 0
        while True:
            with self.db.session() as session:
                query = (
                    sa.select(col(Delivery.id), col(Delivery.created_at), col(Delivery.last_error))
                    .where(*due)
                    .order_by(col(Delivery.created_at), col(Delivery.id))
                    .limit(self.chunk)
                )
                if after is not None:
                    query = query.where(_after(col(Delivery.created_at), col(Delivery.id), after))
                rows = session.execute(self._lock(query)).all()
                if not rows:
                    break
                after = (rows[-1][1], rows[-1][0])
                ids = [row[0] for row in rows]
                entries = _scrubbed_timeline(session, ids)
                errors = [
                    {"id": delivery_id, "last_error": mask_text(error)}
                    for delivery_id, _, error in rows
                    if error and mask_text(error) != error
                ]
                self.report.deliveries += len(ids)
                self.report.timeline_entries += len(entries)
                if not self.dry_run:
                    session.execute(
                        sa.update(Delivery)
                        .where(col(Delivery.id).in_(ids))
                        .values(content=PURGED_CONTENT, recipients=[], purged_at=self.now)
                        .execution_options(synchronize_session=False)
                    )
                    _update_by_id(session, Delivery, errors)
                    _update_by_id(session, DeliveryChange, entries)
            done += len(rows)
            self._report("deliveries", done, max(total, done))

    # -- events ------------------------------------------------------------------------------

    def events(self) -> None:
        owed = (
            sa.select(sa.literal(1))
            .select_from(Delivery)
            .join(Notification, col(Notification.id) == col(Delivery.notification_id))
            .where(
                col(Notification.event_pk) == col(Event.id),
                col(Delivery.status).not_in(FINAL_STATUSES),
            )
        )
        due = (
            col(Event.purged_at).is_(None),
            col(Event.received_at) < self.cutoff,
            col(Event.status) != EventStatus.RECEIVED,
            ~owed.exists(),
        )
        total = self._count(sa.select(sa.func.count()).select_from(Event).where(*due))
        self._report("events", 0, total)
        after: tuple[datetime, int] | None = None
        done = 0
        while True:
            with self.db.session() as session:
                query = (
                    sa.select(
                        col(Event.id), col(Event.received_at), col(Event.payload),
                        col(Event.outcome),
                    )
                    .where(*due)
                    .order_by(col(Event.received_at), col(Event.id))
                    .limit(self.chunk)
                )  # fmt: skip
                if after is not None:
                    query = query.where(_after(col(Event.received_at), col(Event.id), after))
                rows = session.execute(self._lock(query)).all()
                if not rows:
                    break
                after = (rows[-1][1], rows[-1][0])
                self.report.events += len(rows)
                if not self.dry_run:
                    _update_by_id(
                        session,
                        Event,
                        [
                            {
                                "id": event_pk,
                                "payload": scrub_payload(payload or {}),
                                "outcome": mask_text(outcome) if outcome else outcome,
                                "purged_at": self.now,
                            }
                            for event_pk, _, payload, outcome in rows
                        ],
                    )
            done += len(rows)
            self._report("events", done, max(total, done))

    # -- notes of closed escalation cases ------------------------------------------------------

    def notes(self) -> None:
        closed_long_ago = sa.select(col(Escalation.id)).where(
            col(Escalation.status) != CaseStatus.OPEN,
            sa.func.coalesce(col(Escalation.closed_at), col(Escalation.updated_at)) < self.cutoff,
        )
        due = (
            col(EscalationAttempt.note).is_not(None),
            col(EscalationAttempt.escalation_id).in_(closed_long_ago),
        )
        total = self._count(sa.select(sa.func.count()).select_from(EscalationAttempt).where(*due))
        self._report("notes", 0, total)
        after = 0
        while True:
            with self.db.session() as session:
                query = (
                    sa.select(col(EscalationAttempt.id))
                    .where(*due, col(EscalationAttempt.id) > after)
                    .order_by(col(EscalationAttempt.id))
                    .limit(self.chunk)
                )
                ids = list(session.execute(self._lock(query)).scalars())
                if not ids:
                    break
                after = ids[-1]
                self.report.notes += len(ids)
                if not self.dry_run:
                    session.execute(
                        sa.update(EscalationAttempt)
                        .where(col(EscalationAttempt.id).in_(ids))
                        .values(note=None)
                        .execution_options(synchronize_session=False)
                    )
            self._report("notes", self.report.notes, max(total, self.report.notes))

    # -- contact points of idle accounts ----------------------------------------------------------

    def accounts(self) -> None:
        reachable = sa.or_(
            col(Account.name).is_not(None),
            col(Account.phone).is_not(None),
            col(Account.email).is_not(None),
            col(Account.address).is_not(None),
            sa.cast(col(Account.push_tokens), sa.Text).not_in(["[]", "null"]),
        )
        total = self._count(sa.select(sa.func.count()).select_from(Account).where(reachable))
        self._report("accounts", 0, total)
        after = ""
        done = 0
        while True:
            with self.db.session() as session:
                # A page of accounts that still have contact points, locked first (events are
                # processed under the same lock), then judged in a statement of its own, so
                # that it sees an event committed while the lock was awaited.
                page_query = (
                    sa.select(col(Account.account_no))
                    .where(reachable, col(Account.account_no) > after)
                    .order_by(col(Account.account_no))
                    .limit(self.chunk)
                )
                page = list(session.execute(self._lock(page_query)).scalars())
                if not page:
                    break
                after = page[-1]
                idle = list(session.execute(self._idle(page)).scalars())
                self.report.accounts += len(idle)
                if idle and not self.dry_run:
                    session.execute(
                        sa.update(Account)
                        .where(col(Account.account_no).in_(idle))
                        .values(**_CONTACT_CLEARED)
                        .execution_options(synchronize_session=False)
                    )
            done += len(page)
            self._report("accounts", done, max(total, done))

    def _idle(self, account_nos: Iterable[str]) -> Any:
        """Of these accounts, those with no current business: no unpaid bill, no open case,
        no event and no change in the retention period."""
        unpaid = sa.select(sa.literal(1)).where(
            col(Bill.account_no) == col(Account.account_no), col(Bill.paid_at).is_(None)
        )
        open_case = sa.select(sa.literal(1)).where(
            col(Escalation.account_no) == col(Account.account_no),
            col(Escalation.status) == CaseStatus.OPEN,
        )
        recent_event = sa.select(sa.literal(1)).where(
            col(Event.account_no) == col(Account.account_no),
            col(Event.received_at) >= self.cutoff,
        )
        return sa.select(col(Account.account_no)).where(
            col(Account.account_no).in_(list(account_nos)),
            col(Account.updated_at) < self.cutoff,
            ~unpaid.exists(),
            ~open_case.exists(),
            ~recent_event.exists(),
        )


def _after(at: Any, id_: Any, key: tuple[datetime, int]) -> Any:
    """Keyset condition: rows after ``key`` in (time, id) order."""
    return sa.tuple_(at, id_) > sa.tuple_(
        sa.literal(key[0], type_=UTCDateTime()), sa.literal(key[1], type_=sa.Integer())
    )


def _scrubbed_timeline(session: Session, delivery_ids: list[int]) -> list[dict[str, Any]]:
    """``{"id", "detail"}`` of the deliveries' timeline entries whose detail changes."""
    entries = session.execute(
        sa.select(col(DeliveryChange.id), col(DeliveryChange.detail)).where(
            col(DeliveryChange.delivery_id).in_(delivery_ids)
        )
    )
    changed = []
    for entry_id, detail in entries:
        scrubbed = scrub_detail(detail or {})
        if scrubbed != (detail or {}):
            changed.append({"id": entry_id, "detail": scrubbed})
    return changed


def _update_by_id(session: Session, model: type[Any], rows: list[dict[str, Any]]) -> None:
    """One UPDATE per row by primary key, sent as one executemany."""
    if rows:
        session.execute(sa.update(model), rows, execution_options={"synchronize_session": False})
