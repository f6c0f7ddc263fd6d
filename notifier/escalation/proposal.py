"""The proposal run: what the sweep would do as of a date, under a policy, changing nothing.

The real :func:`~notifier.escalation.sweep.sweep` runs, with whatever stages
the ladder adds to it, inside one transaction on one connection that is
rolled back at the end; each of its sessions is a savepoint in it. Nothing
it wrote outlives the run: no case, no history, no ``SweepRun``, no outbox
row. Nothing is published either: the hooks that enqueue owed callbacks and
tasks after a commit look up the publisher of the session's engine, and
these sessions are bound to a connection, which has none.

The figures are read inside the transaction, before the rollback: the case
history rows the run wrote (opened, reopened, bills joined, closed, assigned,
and any change a ladder stage records), counted by the case's area, kind and
stage; the producer callbacks it owed and the notifications it created, by
type; and the run's own counts. A dry run locks the accounts it reads for its
whole length, as one chunk of a real sweep does for the chunk's.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime

import sqlalchemy as sa
from sqlmodel import Session, col

from notifier.db import Database, utcnow
from notifier.deliveries.models import Notification
from notifier.escalation.models import Escalation, EscalationChange
from notifier.escalation.sweep import sweep
from notifier.policy.rules import EscalationPolicy
from notifier.webhooks.models import ProducerCallback

__all__ = ["COUNTS", "Figures", "Line", "compare", "dry_run"]

COUNTS = ("accounts", "opened", "reopened", "joined", "closed", "assigned", "unassigned")
"""The run's own counts, as a ``SweepRun`` keeps them."""
NO_AREA = "(no area)"


@dataclass(frozen=True, order=True)
class Line:
    """What the run did to cases of one area, kind and stage: one kind of change."""

    area: str
    kind: str
    stage: str
    change: str


@dataclass
class Figures:
    """What a sweep as of ``as_of`` would do: nothing of it was kept."""

    as_of: date
    counts: dict[str, int]
    """The run's counts (:data:`COUNTS`): accounts checked, cases opened, bills joined …"""
    cases: dict[Line, int] = field(default_factory=dict)
    """Cases per area, kind, stage and change (``opened``, ``closed (paid)``, ``unassigned``)."""
    callbacks: dict[str, int] = field(default_factory=dict)
    """Producer callbacks the run would owe, by type (what the ladder hands over)."""
    notifications: dict[str, int] = field(default_factory=dict)
    """Notices the run would create, by type."""

    def as_dict(self) -> dict[str, object]:
        """The figures as JSON data (the CLI's ``--json``, the API's answer)."""
        return {
            "as_of": self.as_of.isoformat(),
            "counts": dict(self.counts),
            "cases": [
                {**vars(line), "stage": line.stage or None, "cases": count}
                for line, count in self.cases.items()
            ],
            "callbacks": dict(self.callbacks),
            "notifications": dict(self.notifications),
        }


class _RolledBack(Database):
    """The database seen through one connection whose transaction is never committed."""

    def __init__(self, db: Database, connection: sa.Connection) -> None:
        # Not Database.__init__: no engine of its own. The engine is kept for its
        # dialect (the sweep's ANALYZE of PostgreSQL statistics runs beside, harmless).
        self.url = db.url
        self.engine = db.engine
        self._connection = connection

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A savepoint in the one transaction: "committed" into it, rolled back with it."""
        with Session(
            bind=self._connection, join_transaction_mode="create_savepoint", expire_on_commit=False
        ) as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def dispose(self) -> None:
        raise RuntimeError("a rolled-back view does not own its engine")


def dry_run(
    db: Database,
    policy: EscalationPolicy,
    as_of: date,
    *,
    clock: Callable[[], datetime] = utcnow,
) -> Figures:
    """What :func:`~notifier.escalation.sweep.sweep` would do as of ``as_of`` under ``policy``."""
    with db.engine.connect() as connection:
        transaction = connection.begin()
        try:
            rolled = _RolledBack(db, connection)
            with rolled.session() as session:
                marks = _marks(session)
            run = sweep(rolled, policy, as_of, trigger="dry-run", clock=clock)
            with rolled.session() as session:
                figures = Figures(
                    as_of=run.as_of, counts={name: getattr(run, name) for name in COUNTS}
                )
                _read_figures(session, marks, figures)
        finally:
            transaction.rollback()
    return figures


def _marks(session: Session) -> dict[str, int]:
    """The highest id of each table the figures read: rows above it are the run's."""
    return {
        name: session.execute(sa.select(sa.func.coalesce(sa.func.max(column), 0))).scalar_one()
        for name, column in (
            ("changes", col(EscalationChange.id)),
            ("callbacks", col(ProducerCallback.id)),
            ("notifications", col(Notification.id)),
        )
    }


def _read_figures(session: Session, marks: dict[str, int], figures: Figures) -> None:
    cases: Counter[Line] = Counter()
    touched: dict[int, Line] = {}
    rows = session.execute(
        sa.select(
            col(EscalationChange.change), col(Escalation.id), col(Escalation.area),
            col(Escalation.kind), col(Escalation.stage), col(Escalation.outcome),
            col(Escalation.assignee_id),
        )
        .join(Escalation, col(Escalation.id) == col(EscalationChange.escalation_id))
        .where(col(EscalationChange.id) > marks["changes"])
    )  # fmt: skip
    for change, case_id, area, kind, stage, outcome, assignee in rows:
        label = f"{change} ({outcome})" if change == "closed" and outcome else change
        line = Line(area or NO_AREA, kind, stage or "", label)
        cases[line] += 1
        if change in ("opened", "reopened") and assignee is None:
            touched[case_id] = Line(line.area, line.kind, line.stage, "unassigned")
    cases.update(touched.values())
    figures.cases = dict(sorted(cases.items()))
    figures.callbacks = _by_type(session, ProducerCallback, marks["callbacks"])
    figures.notifications = _by_type(session, Notification, marks["notifications"])


def _by_type(
    session: Session, table: type[ProducerCallback] | type[Notification], mark: int
) -> dict[str, int]:
    """Rows of ``table`` above ``mark``, counted by their ``type``."""
    kind, key = col(table.type), col(table.id)
    return {
        name: count
        for name, count in session.execute(
            sa.select(kind, sa.func.count()).where(key > mark).group_by(kind).order_by(kind)
        )
    }


def compare(current: Figures, proposed: Figures) -> list[tuple[str, int, int]]:
    """Side by side: each figure's name with its current and proposed value, in one order."""
    rows: list[tuple[str, int, int]] = [
        (name, current.counts[name], proposed.counts[name]) for name in COUNTS
    ]
    for line in sorted(set(current.cases) | set(proposed.cases)):
        name = " ".join(part for part in (line.area, line.kind, line.stage, line.change) if part)
        rows.append((name, current.cases.get(line, 0), proposed.cases.get(line, 0)))
    for title, now, then in (
        ("callback", current.callbacks, proposed.callbacks),
        ("notification", current.notifications, proposed.notifications),
    ):
        for name in sorted(set(now) | set(then)):
            rows.append((f"{title} {name}", now.get(name, 0), then.get(name, 0)))
    return rows
