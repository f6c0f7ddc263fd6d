"""Holds (dunning locks): an account, a bill or a whole area kept out of dunning for a while.

A hold applies on business date D when ``starts_on <= D`` and (``ends_on`` is
open or ``D <= ends_on``) and it was not released. While it applies, the
``bill.unpaid`` notices it covers are recorded ``suppressed`` (held), the sweep
opens no case, open cases leave the agents' lists and the ladder does not
advance. A bill hold covers that bill only: the account's other bills are
dunned as ever. When a hold ends (released, or ``ends_on`` passed) the
release work, one notice per account still owing, is done by a worker
(``notifier.flows.holds``); the ``release_*`` columns are its progress.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, Session, SQLModel, col, select

from notifier.accounts.models import Account
from notifier.audit import service as audit
from notifier.billing.models import Bill
from notifier.db import UTCDateTime, utcnow
from notifier.escalation.models import Agent, Escalation, EscalationBill
from notifier.privacy.text import clean_note

__all__ = [
    "NOTE_NEEDED",
    "REASONS",
    "SCOPES",
    "SUPERVISOR_SCOPES",
    "Hold",
    "HoldError",
    "HoldFilter",
    "HoldNotFound",
    "InvalidHold",
    "any_applying",
    "applying_hold",
    "applying_holds",
    "bills_held",
    "case_held",
    "case_holds",
    "create_hold",
    "holds_for",
    "list_holds",
    "release_hold",
    "releases_owed",
]

SCOPES: tuple[str, ...] = ("account", "bill", "area")
REASONS: tuple[str, ...] = ("dispute", "payment_plan", "medical", "disaster", "other")
SUPERVISOR_SCOPES = frozenset({"area"})
"""An area hold stops dunning for thousands of accounts at once: a supervisor's decision,
not the billing system's."""
NOTE_NEEDED = frozenset({"other"})
"""Reasons that say nothing by themselves: the note must (an area hold always needs one)."""
_BREADTH = {"account": 0, "area": 1, "bill": 2}
"""Which hold :func:`holds_for` names when several apply: the broadest first."""


class Hold(SQLModel, table=True):
    __tablename__ = "holds"
    __table_args__ = (
        # Every notice and every sweep chunk asks which holds apply: the unreleased ones.
        sa.Index(
            "ix_holds_unreleased",
            "scope",
            "starts_on",
            sqlite_where=sa.text("released_at IS NULL"),
            postgresql_where=sa.text("released_at IS NULL"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    scope: str = Field(max_length=16)
    """``account``, ``bill`` or ``area``: which one of the next three is set."""
    account_no: str | None = Field(
        default=None, foreign_key="accounts.account_no", index=True, max_length=11
    )
    bill_no: str | None = Field(
        default=None, foreign_key="bills.bill_no", index=True, max_length=64
    )
    area: str | None = Field(default=None, index=True, max_length=64)
    reason: str = Field(max_length=16)
    starts_on: date
    ends_on: date | None = None
    """The last business date it applies; None: until released."""
    note: str | None = Field(default=None, max_length=2000)
    created_by: str = Field(max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    released_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    released_by: str | None = Field(default=None, max_length=200)
    release_queued_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    """When the release work was last handed to a worker (the reconciler hands it again
    if it is not done a while later)."""
    release_accounts: int = 0
    """Accounts the release looks at: those with a notice held and none sent since."""
    release_checked: int = 0
    release_notified: int = 0
    release_cursor: str | None = Field(default=None, max_length=11)
    """The last account the release dealt with, committed with that chunk's notices."""
    release_done_at: datetime | None = Field(default=None, sa_type=UTCDateTime)

    def applies_on(self, day: date) -> bool:
        """Whether the hold applies on business date ``day``."""
        return (
            self.released_at is None
            and self.starts_on <= day
            and (self.ends_on is None or day <= self.ends_on)
        )

    def ended_by(self, day: date) -> bool:
        """Released, or its last day is before ``day``: its release work is owed."""
        return self.released_at is not None or (self.ends_on is not None and self.ends_on < day)

    @property
    def subject(self) -> str:
        """What it holds: the account, bill or area it names."""
        return str(
            {"account": self.account_no, "bill": self.bill_no, "area": self.area}[self.scope]
        )


class HoldError(Exception):
    pass


class HoldNotFound(HoldError):
    pass


class InvalidHold(HoldError):
    """A bad field of a hold: answered 422 naming ``field``, and nothing stored."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _applying(on: date) -> sa.ColumnElement[bool]:
    return sa.and_(
        col(Hold.released_at).is_(None),
        col(Hold.starts_on) <= on,
        sa.or_(col(Hold.ends_on).is_(None), col(Hold.ends_on) >= on),
    )


def applying_hold(
    session: Session, *, account_no: str, bill_nos: Collection[str], area: str | None, on: date
) -> Hold | None:
    """The hold that keeps this account (or one of ``bill_nos``, or its area) out of dunning
    on ``on``; the broadest if several do. None: dun as usual."""
    subjects = _subjects([account_no], list(bill_nos), [area] if area else [])
    return _broadest(session.exec(select(Hold).where(_applying(on), *subjects)).all())


def applying_holds(
    session: Session, subjects: Sequence[tuple[str, str | None, str | None]], on: date
) -> list[Hold | None]:
    """:func:`applying_hold` for many ``(account_no, bill_no, area)`` at once, in one query:
    for a chunk of notices, each one's hold or None."""
    if not subjects:
        return []
    accounts = {account_no for account_no, _, _ in subjects}
    bills = {bill_no for _, bill_no, _ in subjects if bill_no}
    areas = {area for _, _, area in subjects if area}
    found = session.exec(
        select(Hold).where(_applying(on), *_subjects(accounts, bills, areas))
    ).all()
    return [
        _broadest(
            [
                h
                for h in found
                if (h.scope == "account" and h.account_no == account_no)
                or (h.scope == "bill" and bill_no is not None and h.bill_no == bill_no)
                or (h.scope == "area" and area is not None and h.area == area)
            ]
        )
        for account_no, bill_no, area in subjects
    ]


def any_applying(session: Session, on: date) -> bool:
    """Whether any hold applies on ``on`` (one index lookup)."""
    return bool(session.execute(sa.select(sa.exists().where(_applying(on)))).scalar_one())


def holds_for(session: Session, account_nos: Collection[str], on: date) -> dict[str, Hold]:
    """For the sweep and the ladder: each held account among ``account_nos`` → its hold.

    An account is held by a hold on itself, on its area, or on any of its
    unpaid bills (the broadest is named). Three queries, whatever the number
    of accounts.
    """
    if not account_nos:
        return {}
    accounts = list(account_nos)
    found: dict[str, list[Hold]] = {}
    direct = session.exec(select(Hold).where(_applying(on), col(Hold.account_no).in_(accounts)))
    for hold in direct:
        assert hold.account_no is not None
        found.setdefault(hold.account_no, []).append(hold)
    by_area = session.execute(
        sa.select(col(Account.account_no), Hold)
        .join(Hold, sa.and_(col(Hold.scope) == "area", col(Hold.area) == col(Account.area)))
        .where(_applying(on), col(Account.account_no).in_(accounts))
    )
    for account_no, hold in by_area:
        found.setdefault(account_no, []).append(hold)
    by_bill = session.execute(
        sa.select(col(Bill.account_no), Hold)
        .join(Hold, sa.and_(col(Hold.scope) == "bill", col(Hold.bill_no) == col(Bill.bill_no)))
        .where(_applying(on), col(Bill.account_no).in_(accounts), col(Bill.paid_at).is_(None))
    )
    for account_no, hold in by_bill:
        found.setdefault(account_no, []).append(hold)
    return {no: h for no, candidates in found.items() if (h := _broadest(candidates))}


def bills_held(session: Session, bill_nos: Collection[str], on: date) -> set[str]:
    """Which of ``bill_nos`` a bill hold keeps out of dunning on ``on``."""
    if not bill_nos:
        return set()
    return {
        str(no)
        for no in session.exec(
            select(Hold.bill_no).where(
                _applying(on), col(Hold.scope) == "bill", col(Hold.bill_no).in_(list(bill_nos))
            )
        )
    }


def _subjects(
    account_nos: Collection[str], bill_nos: Collection[str], areas: Collection[str]
) -> list[sa.ColumnElement[bool]]:
    subjects = []
    if account_nos:
        subjects.append(
            sa.and_(col(Hold.scope) == "account", col(Hold.account_no).in_(account_nos))
        )
    if bill_nos:
        subjects.append(sa.and_(col(Hold.scope) == "bill", col(Hold.bill_no).in_(bill_nos)))
    if areas:
        subjects.append(sa.and_(col(Hold.scope) == "area", col(Hold.area).in_(areas)))
    return [sa.or_(*subjects)] if subjects else []


def _broadest(holds: Sequence[Hold]) -> Hold | None:
    return min(holds, key=lambda h: (_BREADTH[h.scope], h.id or 0), default=None)


def case_held(on: date) -> sa.ColumnElement[bool]:
    """SQL: the case (an ``Escalation`` row of the query) is held on ``on``: a hold on its
    account, on its area, or on one of its unpaid bills."""
    return sa.exists(sa.select(1).where(_applying(on), _covers_case()))


def _covers_case() -> sa.ColumnElement[bool]:
    case_bill = (
        sa.select(col(EscalationBill.bill_no))
        .join(Bill, col(Bill.bill_no) == col(EscalationBill.bill_no))
        .where(col(EscalationBill.escalation_id) == col(Escalation.id), col(Bill.paid_at).is_(None))
    )
    return sa.or_(
        sa.and_(col(Hold.scope) == "account", col(Hold.account_no) == col(Escalation.account_no)),
        sa.and_(col(Hold.scope) == "area", col(Hold.area) == col(Escalation.area)),
        sa.and_(col(Hold.scope) == "bill", col(Hold.bill_no).in_(case_bill)),
    )


def case_holds(
    session: Session, case_ids: Collection[int] | sa.Select[Any], on: date
) -> dict[int, Hold]:
    """Each held case among ``case_ids`` (ids, or a query of them) → the (broadest) hold on
    it, in one query."""
    ids = case_ids if isinstance(case_ids, sa.Select) else list(case_ids)
    found: dict[int, list[Hold]] = {}
    rows = session.execute(
        sa.select(col(Escalation.id), Hold)
        .join(Hold, _covers_case())
        .where(_applying(on), col(Escalation.id).in_(ids))
    )
    for case_id, hold in rows:
        found.setdefault(case_id, []).append(hold)
    return {case_id: hold for case_id, holds in found.items() if (hold := _broadest(holds))}


# --- placing, listing, releasing --------------------------------------------------------------


def create_hold(
    session: Session,
    *,
    scope: str,
    reason: str,
    account_no: str | None = None,
    bill_no: str | None = None,
    area: str | None = None,
    starts_on: date,
    ends_on: date | None,
    note: str | None,
    actor: str,
    supervisor: bool,
    today: date,
) -> Hold:
    """Check and store a hold (audited); :class:`InvalidHold` names the first bad field."""
    if scope not in SCOPES:
        raise InvalidHold("scope", f"one of {', '.join(SCOPES)}")
    if reason not in REASONS:
        raise InvalidHold("reason", f"one of {', '.join(REASONS)}")
    if scope in SUPERVISOR_SCOPES and not supervisor:
        raise InvalidHold("scope", f"an {scope} hold is placed by a supervisor")
    named = {"account": ("account_no", account_no), "bill": ("bill_no", bill_no)}
    named["area"] = ("area", area)
    for field_scope, (field, value) in named.items():
        if field_scope == scope and not value:
            raise InvalidHold(field, f"a {scope} hold names its {field}")
        if field_scope != scope and value:
            raise InvalidHold(field, f"not for a hold on one {scope}")
    if ends_on is not None and ends_on < starts_on:
        raise InvalidHold("ends_on", "before starts_on")
    if ends_on is not None and ends_on < today:
        raise InvalidHold("ends_on", f"already past (today is {today.isoformat()})")
    try:
        note = clean_note(note or "") or None
    except ValueError as exc:
        raise InvalidHold("note", str(exc)) from None
    if note is None and (reason in NOTE_NEEDED or scope == "area"):
        why = f"reason {reason}" if reason in NOTE_NEEDED else "an area hold"
        raise InvalidHold("note", f"{why} needs a note saying why")
    if scope == "account" and session.get(Account, account_no) is None:
        raise InvalidHold("account_no", "no such account")
    if scope == "bill" and session.get(Bill, bill_no) is None:
        raise InvalidHold("bill_no", "no such bill")
    if scope == "area" and not _known_area(session, str(area)):
        raise InvalidHold("area", "no account or agent in this area")
    hold = Hold(
        scope=scope, account_no=account_no, bill_no=bill_no, area=area, reason=reason,
        starts_on=starts_on, ends_on=ends_on, note=note, created_by=actor,
    )  # fmt: skip
    session.add(hold)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="hold.create",
        target=f"hold {hold.id}",
        detail={
            "scope": scope, "subject": hold.subject, "reason": reason,
            "starts_on": starts_on.isoformat(), "ends_on": ends_on and ends_on.isoformat(),
        },
    )  # fmt: skip
    return hold


def _known_area(session: Session, area: str) -> bool:
    return (
        session.exec(select(Account.account_no).where(Account.area == area).limit(1)).first()
        is not None
        or session.exec(select(Agent.id).where(Agent.area == area).limit(1)).first() is not None
    )


@dataclass(frozen=True)
class HoldFilter:
    """Which holds: every field left None matches all."""

    active_on: date | None = None
    """Only holds applying on this date."""
    scope: str | None = None
    account_no: str | None = None
    """Holds on the account or on one of its bills."""
    area: str | None = None


def list_holds(session: Session, where: HoldFilter, *, limit: int = 500) -> list[Hold]:
    """Holds matching ``where``, newest first."""
    query = select(Hold).order_by(col(Hold.id).desc()).limit(limit)
    if where.active_on is not None:
        query = query.where(_applying(where.active_on))
    if where.scope is not None:
        query = query.where(Hold.scope == where.scope)
    if where.account_no is not None:
        bills = select(Bill.bill_no).where(Bill.account_no == where.account_no)
        query = query.where(
            sa.or_(col(Hold.account_no) == where.account_no, col(Hold.bill_no).in_(bills))
        )
    if where.area is not None:
        query = query.where(Hold.area == where.area)
    return list(session.exec(query))


def release_hold(session: Session, hold_id: int, *, actor: str, now: datetime) -> Hold:
    """Release a hold now (audited); its release work is then owed to a worker.

    Releasing a released hold changes nothing (a retried DELETE).
    """
    hold = session.get(Hold, hold_id, with_for_update=True)
    if hold is None:
        raise HoldNotFound(f"no hold {hold_id}")
    if hold.released_at is not None:
        return hold
    hold.released_at, hold.released_by, hold.release_queued_at = now, actor, now
    session.add(hold)
    audit.record(
        session,
        actor=actor,
        action="hold.release",
        target=f"hold {hold_id}",
        detail={"scope": hold.scope, "subject": hold.subject, "reason": hold.reason},
    )
    session.flush()
    return hold


def releases_owed(session: Session, *, today: date, before: datetime, now: datetime) -> list[int]:
    """Holds whose release work is owed and not handed out since ``before``; marked handed now.

    A hold whose ``ends_on`` passed is found here the first time, as is one
    whose release task was lost.
    """
    ids = [
        hold_id
        for hold_id in session.exec(
            select(Hold.id)
            .where(
                col(Hold.release_done_at).is_(None),
                sa.or_(
                    col(Hold.released_at).is_not(None),
                    sa.and_(col(Hold.ends_on).is_not(None), col(Hold.ends_on) < today),
                ),
                sa.or_(col(Hold.release_queued_at).is_(None), col(Hold.release_queued_at) < before),
            )
            .order_by(col(Hold.id))
        )
        if hold_id is not None
    ]
    if ids:
        session.execute(sa.update(Hold).where(col(Hold.id).in_(ids)).values(release_queued_at=now))
    return ids
