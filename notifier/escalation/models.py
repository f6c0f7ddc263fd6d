"""Cases handed to people: agents, escalations, the bills they cover, what happened."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from notifier.db import UTCDateTime, utcnow

__all__ = [
    "AGENT_KIND",
    "CASE_KINDS",
    "PAID_OUTCOMES",
    "Agent",
    "CaseKind",
    "CaseStatus",
    "CollectionStage",
    "Escalation",
    "EscalationAttempt",
    "EscalationBill",
    "EscalationChange",
    "SweepRun",
]


class CaseKind:
    CALL = "call"
    VISIT = "visit"


CASE_KINDS: tuple[str, ...] = (CaseKind.CALL, CaseKind.VISIT)
AGENT_KIND: dict[str, str] = {CaseKind.CALL: "caller", CaseKind.VISIT: "field"}
"""Which kind of agent works which kind of case."""


class CaseStatus:
    OPEN = "open"
    DONE = "done"
    CANCELLED = "cancelled"


PAID_OUTCOMES: tuple[str, ...] = ("paid", "paid_before_trigger")
"""How the ledger closes a case: collected, or paid before the trigger date but heard of late.
A case closed so is reopened when the rule holds again; its bills are not "dealt with"."""


class Agent(SQLModel, table=True):
    __tablename__ = "agents"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200)
    area: str = Field(index=True, max_length=64)
    kind: str = Field(max_length=16)
    """``caller`` or ``field``."""
    daily_capacity: int | None = None
    """Cases given to them per business day; None: no limit."""
    languages: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    """What they speak with customers (``events.schema.SPOKEN_LANGUAGES``)."""
    active: bool = True
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Escalation(SQLModel, table=True):
    __tablename__ = "escalations"
    __table_args__ = (
        # One open case per account, enforced by the database itself.
        sa.Index(
            "uq_escalations_open_account",
            "account_no",
            unique=True,
            sqlite_where=sa.text("status = 'open'"),
            postgresql_where=sa.text("status = 'open'"),
        ),
        # Lists and counts read open cases by assignee or area and kind.
        sa.Index(
            "ix_escalations_open_assignee",
            "assignee_id",
            "kind",
            sqlite_where=sa.text("status = 'open'"),
            postgresql_where=sa.text("status = 'open'"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    account_no: str = Field(foreign_key="accounts.account_no", index=True, max_length=11)
    area: str | None = Field(default=None, max_length=64, index=True)
    """The account's area when the case opened: who works it."""
    kind: str = Field(max_length=16)
    """``call`` or ``visit``."""
    status: str = Field(default=CaseStatus.OPEN, max_length=16)
    assignee_id: int | None = Field(default=None, foreign_key="agents.id")
    assigned_on: date | None = Field(default=None, index=True)
    """The business date it was given to its assignee: what counts against their capacity."""
    capacity_wait_since: date | None = None
    """Unassigned since this business date because every agent of its area and kind was full."""
    attempts: int = 0
    failed_calls: int = 0
    """Call attempts that ended ``no_answer`` or ``wrong_number``."""
    outcome: str | None = Field(default=None, max_length=32)
    """The last outcome recorded; the closing one once the case is done."""
    follow_up_on: date | None = None
    """Off the lists until this business date (a promise to pay, a payment the customer claims)."""
    next_call_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    """An unanswered call before this does not count against the case (``call_retry_hours``)."""
    stage: str | None = Field(default=None, max_length=32)
    """The collections-ladder stage (notifier.escalation.ladder): ``final_demand`` once the
    visit or calls ended unpaid, then ``suspension_due``, ``suspended``, ``reconnection_due``,
    ``reconnected``, or ``supervisor`` (life support: never suspended)."""
    stage_on: date | None = None
    """The business date the case reached ``stage``; None while it waits to (``stage_waiting``)."""
    stage_deadline: date | None = None
    """The deadline of the stage's notice: past it unpaid, the ladder moves on (a visit
    notice's before the final demand; the final demand's, after which the supply may be
    suspended)."""
    stage_waiting: str | None = Field(default=None, max_length=64)
    """Why the case has not reached ``stage`` yet (``proof of service``)."""
    opened_on: date
    """The business date (as_of) of the sweep that opened it."""
    opened_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    closed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class EscalationBill(SQLModel, table=True):
    """A bill a case covers; a bill falling overdue later joins the open case."""

    __tablename__ = "escalation_bills"

    escalation_id: int = Field(foreign_key="escalations.id", primary_key=True)
    bill_no: str = Field(foreign_key="bills.bill_no", primary_key=True, max_length=64, index=True)
    added_on: date


class EscalationAttempt(SQLModel, table=True):
    """One outcome an agent recorded: a call made or a visit paid."""

    __tablename__ = "escalation_attempts"
    __table_args__ = (
        # A form sent twice from a phone on a slow network, or a client's
        # retried POST, carries the same key: the attempt is recorded once.
        sa.Index("uq_escalation_attempts_request", "escalation_id", "request_key", unique=True),
    )

    id: int | None = Field(default=None, primary_key=True)
    escalation_id: int = Field(foreign_key="escalations.id", index=True)
    kind: str = Field(max_length=16)
    """The case's kind when the attempt was made."""
    request_key: str | None = Field(default=None, max_length=64)
    """The client's ``Idempotency-Key`` (or the page form's own), if it sent one."""
    agent_id: int | None = Field(default=None, foreign_key="agents.id")
    recorded_by: str = Field(max_length=200)
    """Who recorded it: the key's or user's name."""
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    outcome: str = Field(max_length=32)
    note: str | None = Field(default=None, max_length=2000)
    promise_date: date | None = None


class EscalationChange(SQLModel, table=True):
    """The case's history besides outcomes: opened, bills joined, assigned, turned into a visit."""

    __tablename__ = "escalation_changes"

    id: int | None = Field(default=None, primary_key=True)
    escalation_id: int = Field(foreign_key="escalations.id", index=True)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    change: str = Field(max_length=32)
    actor: str = Field(max_length=200)
    detail: str | None = Field(default=None, max_length=500)


class SweepRun(SQLModel, table=True):
    """One run of the escalation sweep, with its progress while it runs."""

    __tablename__ = "sweep_runs"

    id: int | None = Field(default=None, primary_key=True)
    as_of: date
    trigger: str = Field(max_length=32)
    """``beat``, ``cli`` or ``api:<key name>``."""
    status: str = Field(default="running", max_length=16)
    """``queued``, ``running``, ``done`` or ``failed``."""
    accounts: int = 0
    """Accounts the rule may change on this date: the work to do."""
    checked: int = 0
    opened: int = 0
    joined: int = 0
    """Bills added to cases already open."""
    closed: int = 0
    """Open cases the ledger no longer supports (the bills that made the rule hold were paid)."""
    reopened: int = 0
    """Cases closed by a payment that the rule holds for again."""
    assigned: int = 0
    unassigned: int = 0
    """Open cases the run left without an agent: none of their area and kind, or all full."""
    error: str | None = Field(default=None, max_length=1000)
    started_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class CollectionStage(SQLModel, table=True):
    """One step of an account up (or off) the collections ladder, with what proved it."""

    __tablename__ = "collection_stages"

    id: int | None = Field(default=None, primary_key=True)
    escalation_id: int = Field(foreign_key="escalations.id", index=True)
    account_no: str = Field(max_length=11, index=True)
    stage: str = Field(max_length=32)
    """The stage reached, or ``stopped`` (payment in full) with the stage it stopped at in
    ``previous``."""
    previous: str | None = Field(default=None, max_length=32)
    on: date
    """The business date of the step."""
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    actor: str = Field(max_length=200)
    deadline: date | None = None
    notification_id: int | None = Field(default=None, foreign_key="notifications.id", index=True)
    """The notice the step sent (the final demand, the reconnection confirmation)."""
    amount: int | None = None
    """NT$ owed on the case's bills at the step."""
    proofs: list[dict[str, Any]] = Field(default_factory=list, sa_type=sa.JSON)
    """The proofs of service the step rested on (notifier.escalation.proof.ServedProof)."""
