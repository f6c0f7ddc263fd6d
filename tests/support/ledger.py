"""A bill ledger on a real database, fed with producer events, for calendar scenarios.

Events go through the same validation, intake and processing code as
``POST /v1/events`` (without HTTP and the worker, so a scenario with a moving
calendar takes milliseconds); the sweep and outcomes are called as the beat
job and the API call them.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sqlmodel import Session, col, select

from notifier.escalation import service as cases
from notifier.escalation.agents import add_agent
from notifier.escalation.models import Escalation, EscalationBill, SweepRun
from notifier.escalation.sweep import sweep
from notifier.events.schema import parse_event
from notifier.events.service import accept
from notifier.flows.ladder import write_stage_notices
from notifier.flows.process_event import process_events
from notifier.migrations import upgrade
from notifier.runtime import Runtime
from notifier.settings import Settings
from tests.support import events
from tests.support.stack import fast_retry_policy, need, postgres_database

SUPERVISOR = cases.Actor(name="test supervisor", supervisor=True)


class Ledger:
    def __init__(self, database_url: str, folder: Path) -> None:
        upgrade(database_url)
        saved = dict(os.environ)
        os.environ.update(
            NOTIFIER_DATA_DIR=str(folder),
            NOTIFIER_DATABASE_URL=database_url,
            NOTIFIER_BROKER_URL="",
            NOTIFIER_POLICY_FILE=str(fast_retry_policy(folder)),
            # Scenarios send at whatever hour the suite runs: with Taipei's quiet hours on,
            # an SMS batch is deferred from 13:00 to 00:00 UTC and the test depends on the clock.
            NOTIFIER_QUIET_HOURS=os.environ.get("NOTIFIER_QUIET_HOURS", "off"),
        )
        try:
            self.runtime = Runtime(Settings())
        finally:
            os.environ.clear()
            os.environ.update(saved)
        self.policy = self.runtime.policy.escalation

    def new_area(self) -> str:
        """An area of its own, so that agents and loads of one test never meet another's."""
        return f"area-{secrets.token_hex(4)}"

    # -- the producer ---------------------------------------------------------------------

    def post(self, *posted: dict[str, Any], producer_key_id: int | None = None) -> None:
        """Accept and process events as the API and the worker would (from that producer)."""
        parsed = [(parse_event(event), event) for event in posted]
        with self.runtime.db.session() as session:
            created = accept(session, parsed, producer_key_id=producer_key_id)
        process_events(self.runtime, [pk for pk in created.values() if pk is not None])
        write_stage_notices(self.runtime)  # a payment's reconnection notice, as the reconciler

    def issue(
        self, acct: dict[str, Any], period: str, due: date, amount: int = 1830
    ) -> dict[str, Any]:
        """Post ``bill.issued`` for a bill of ``acct``; returns the bill."""
        event = events.unpaid(acct, period=period, due=due, amount=amount)
        event["type"] = "bill.issued"
        event.pop("level")
        self.post(event)
        bill: dict[str, Any] = event["bill"]
        return bill

    def pay(
        self,
        acct: dict[str, Any],
        bill: dict[str, Any],
        on: date,
        *,
        producer_key_id: int | None = None,
    ) -> None:
        """``bill.paid`` from the producer that owns the bill (another's would be refused)."""
        event = events.paid(acct)
        event["bill"] = bill
        event["occurred_at"] = f"{on.isoformat()}T10:00:00+08:00"
        self.post(event, producer_key_id=producer_key_id)

    # -- the service ----------------------------------------------------------------------

    def sweep(self, as_of: date) -> SweepRun:
        """The sweep as the beat's task runs it: the ladder's notices rendered after it."""
        run = sweep(self.runtime.db, self.policy, as_of, trigger="test", clock=self.runtime.clock)
        write_stage_notices(self.runtime)
        return run

    def add_agent(
        self, area: str, kind: str = "caller", name: str = "林建宏", **details: Any
    ) -> int:
        """An agent's id; ``details`` may give ``daily_capacity`` and ``languages``."""
        with self.runtime.db.session() as session:
            agent = add_agent(session, name=name, area=area, kind=kind, **details)
        assert agent.id is not None
        return agent.id

    def record(
        self,
        case_id: int,
        outcome: str,
        *,
        today: date,
        actor: cases.Actor = SUPERVISOR,
        at: datetime | None = None,
        **kw: Any,
    ) -> Escalation:
        """Record an outcome on business date ``today``, at ``at`` (default: this instant)."""
        with self.runtime.db.session() as session:
            return cases.record_outcome(
                session,
                case_id,
                actor,
                outcome=outcome,
                today=today,
                policy=self.policy,
                now=at or datetime.now().astimezone(),
                **kw,
            )

    @contextmanager
    def db(self) -> Iterator[Session]:
        with self.runtime.db.session() as session:
            yield session

    def cases(self, account_no: str) -> list[tuple[Escalation, list[str]]]:
        """The account's cases, oldest first, each with its bill numbers."""
        with self.db() as session:
            found = session.exec(
                select(Escalation)
                .where(Escalation.account_no == account_no)
                .order_by(col(Escalation.id))
            ).all()
            return [
                (
                    case,
                    sorted(
                        session.exec(
                            select(EscalationBill.bill_no).where(
                                EscalationBill.escalation_id == case.id
                            )
                        )
                    ),
                )
                for case in found
            ]

    def open_case(self, account_no: str) -> Escalation | None:
        open_ = [case for case, _ in self.cases(account_no) if case.status == "open"]
        assert len(open_) <= 1, "two open cases for one account"
        return open_[0] if open_ else None

    def close(self) -> None:
        self.runtime.close()


@contextmanager
def opened(database: str, folder: Path) -> Iterator[Ledger]:
    """A ledger on a database of its own: ``sqlite`` (a file in ``folder``) or ``postgres``
    (a fresh database, dropped afterwards)."""
    if database == "sqlite":
        url, drop = f"sqlite:///{folder / 'ledger.db'}", None
    else:
        need("PostgreSQL", "127.0.0.1", 5432)
        url, drop = postgres_database()
    book = Ledger(url, folder)
    try:
        yield book
    finally:
        book.close()
        if drop is not None:
            drop()
