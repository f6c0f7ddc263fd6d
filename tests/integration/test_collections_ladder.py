"""The collections ladder on the calendar: from the first unpaid bill to suspension and
reconnection, each step proven before the next (DESIGN.md, "The collections ladder").

Bimonthly bills fall due on the 20th of odd months: B07 on 20 Sep 2026, B09 on 20 Nov.
The service's clock is 10:00 in Taipei on each day a scenario names. Notices are sent
through the sandbox channels (an SMS or push is reported delivered at once, an email is
only ``sent``), postcards through the day's print batch.
"""

from __future__ import annotations

import io
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pyotp
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from pypdf import PdfReader
from sqlmodel import col, select

from notifier.accounts import service as accounts_service
from notifier.app import create_app
from notifier.audit.models import AuditEntry
from notifier.auth import keys
from notifier.db import utcnow
from notifier.deliveries import service as deliveries_service
from notifier.deliveries.models import Delivery, DeliveryStatus, Notification
from notifier.escalation import holds, ladder, proof
from notifier.escalation.models import CollectionStage, Escalation, EscalationChange
from notifier.events.models import Event
from notifier.flows.deliver import deliver_batch
from notifier.flows.postcards import print_postcards
from notifier.flows.reports import record_report
from notifier.users import service as users
from notifier.users import totp
from notifier.webhooks import service as webhooks
from notifier.webhooks.models import ProducerCallback
from tests.support import events
from tests.support.ledger import Ledger
from tests.support.web import PASSWORD, csrf_token

TAIPEI = ZoneInfo("Asia/Taipei")
SEP_20, OCT_5, NOV_20 = date(2026, 9, 20), date(2026, 10, 5), date(2026, 11, 20)
NOV_23, NOV_24, NOV_25 = date(2026, 11, 23), date(2026, 11, 24), date(2026, 11, 25)
DEADLINE = date(2026, 12, 9)  # 10 business days after Wed 25 Nov
DEC_1 = date(2026, 12, 1)
DEC_10, DEC_11, DEC_14 = date(2026, 12, 10), date(2026, 12, 11), date(2026, 12, 14)


class Calendar:
    """The service's clock, moved to 10:00 Taipei on the day a scenario names."""

    def __init__(self) -> None:
        self.now = datetime.combine(OCT_5, time(10), tzinfo=TAIPEI)

    def on(self, day: date) -> datetime:
        self.now = datetime.combine(day, time(10), tzinfo=TAIPEI)
        return self.now


@pytest.fixture
def calendar(ledger: Ledger) -> Iterator[Calendar]:
    cal = Calendar()
    ledger.runtime.clock = lambda: cal.now.astimezone(UTC)
    yield cal
    ledger.runtime.clock = utcnow


class Book:
    """One account's ladder, posted by its own producer (whose callbacks are read back)."""

    def __init__(self, ledger: Ledger, calendar: Calendar, **account: Any) -> None:
        self.ledger, self.calendar = ledger, calendar
        self.acct = events.account(area=ledger.new_area(), **account)
        self.no: str = self.acct["account_no"]
        with ledger.db() as session:
            key, _ = keys.create_key(
                session, role="producer", name=f"billing {secrets.token_hex(3)}"
            )
            assert key.id is not None
            webhooks.register(  # nothing listens there: the outbox rows are what is read
                session, key.id, "http://127.0.0.1:9/cb", deployed=False, allow_private=True,
                now=utcnow(),
            )  # fmt: skip
        self.key_id = key.id

    def post(self, event: dict[str, Any]) -> None:
        self.ledger.post(event, producer_key_id=self.key_id)

    def issue(self, period: str, due: date) -> dict[str, Any]:
        event = events.unpaid(self.acct, period=period, due=due)
        event["type"] = "bill.issued"
        event.pop("level")
        self.post(event)
        bill: dict[str, Any] = event["bill"]
        return bill

    def second_notice(self, period: str, due: date, on: date) -> None:
        self.calendar.on(on)
        self.post(events.unpaid(self.acct, period=period, due=due, level=2))

    def pay(self, bill: dict[str, Any], on: date) -> None:
        self.calendar.on(on)
        event = events.paid(self.acct)
        event["bill"] = bill
        event["occurred_at"] = f"{on.isoformat()}T10:00:00+08:00"
        self.post(event)

    def confirm(self, kind: str, on: date) -> None:
        self.calendar.on(on)
        self.post(
            {
                "event_id": f"test-{secrets.token_hex(8)}",
                "type": kind,
                "occurred_at": f"{on.isoformat()}T09:00:00+08:00",
                "account": {"account_no": self.no},
            }
        )

    def sweep(self, on: date) -> None:
        self.calendar.on(on)
        self.ledger.sweep(on)

    def record(self, outcome: str, on: date) -> Escalation:
        case = self.case()
        assert case.id is not None
        return self.ledger.record(case.id, outcome, today=on, at=self.calendar.on(on))

    def protect(self, *protections: str) -> None:
        """A supervisor adds protections to the account, as the agent pages do."""
        with self.ledger.db() as session:
            added = accounts_service.add_protections(
                session, self.no, protections, actor="test supervisor", now=utcnow()
            )
            assert added is not None

    # -- what the service did --------------------------------------------------------------

    def case(self) -> Escalation:
        [(case, _)] = self.ledger.cases(self.no)
        return case

    def deliveries(self, type_: str) -> list[Delivery]:
        with self.ledger.db() as session:
            return list(
                session.exec(
                    select(Delivery)
                    .join(Notification, col(Notification.id) == col(Delivery.notification_id))
                    .where(Delivery.account_no == self.no, Notification.type == type_)
                    .order_by(col(Delivery.id))
                )
            )

    def send(self, type_: str, *channels: str) -> dict[int, str]:
        """Run the queue for the account's ``type_`` deliveries on ``channels``."""
        ids = [d.id for d in self.deliveries(type_) if d.channel in channels and d.id]
        with self.ledger.db() as session:
            # Rows are stamped by the wall clock; on the scenario's calendar they are due now.
            session.execute(
                sa.update(Delivery)
                .where(col(Delivery.id).in_(ids))
                .values(available_at=self.ledger.runtime.clock())
            )
        return deliver_batch(self.ledger.runtime, ids).statuses

    def print_batch(self, on: date) -> str:
        """The day's print batch, with the account's postcards in it; the batch id."""
        self.calendar.on(on)
        with self.ledger.db() as session:
            # Stamped by the wall clock; on the scenario's calendar they were queued today.
            session.execute(
                sa.update(Delivery)
                .where(Delivery.account_no == self.no, Delivery.channel == "postcard")
                .values(
                    created_at=self.ledger.runtime.clock(),
                    available_at=self.ledger.runtime.clock(),
                )
            )
        report = print_postcards(self.ledger.runtime, day=on)
        assert report is not None
        return report.batch_id

    def steps(self) -> list[CollectionStage]:
        with self.ledger.db() as session:
            return list(
                session.exec(
                    select(CollectionStage)
                    .where(CollectionStage.account_no == self.no)
                    .order_by(col(CollectionStage.id))
                )
            )

    def callbacks(self, type_: str) -> list[dict[str, Any]]:
        with self.ledger.db() as session:
            return [
                c.body
                for c in session.exec(
                    select(ProducerCallback)
                    .where(ProducerCallback.key_id == self.key_id, ProducerCallback.type == type_)
                    .order_by(col(ProducerCallback.id))
                )
            ]

    def changes(self) -> list[str]:
        case = self.case()
        with self.ledger.db() as session:
            return list(
                session.exec(
                    select(EscalationChange.change)
                    .where(EscalationChange.escalation_id == case.id)
                    .order_by(col(EscalationChange.id))
                )
            )


def visited_and_refused(ledger: Ledger, calendar: Calendar, **account: Any) -> Book:
    """A vulnerable account (a visit case) with a second notice queued, refused at the door."""
    book = Book(ledger, calendar, vulnerable=True, **account)
    ledger.add_agent(book.acct["area"], "field", name="陳志明")
    book.b07 = book.issue("2026-07", SEP_20)  # type: ignore[attr-defined]
    book.b09 = book.issue("2026-09", NOV_20)  # type: ignore[attr-defined]
    book.second_notice("2026-07", SEP_20, on=OCT_5)
    book.sweep(NOV_20)
    assert book.case().kind == "visit"
    book.record("refused", NOV_23)
    return book


def test_an_account_climbs_the_whole_ladder_each_step_proven(
    ledger: Ledger, calendar: Calendar
) -> None:
    book = visited_and_refused(ledger, calendar)
    case = book.case()
    assert (case.status, case.stage, case.stage_on) == ("open", "final_demand", None)

    # The second notice went out by email only: "sent" proves nothing. The case waits.
    assert set(book.send("bill.unpaid", "email").values()) == {DeliveryStatus.SENT}
    book.sweep(NOV_24)
    case = book.case()
    assert (case.stage, case.stage_on, case.stage_waiting) == (
        "final_demand", None, "proof of service",
    )  # fmt: skip
    assert book.deliveries("collection.final_demand") == []
    assert "waiting for proof of service" in book.changes()

    # The SMS of the second notice is reported delivered: the final demand goes out.
    assert set(book.send("bill.unpaid", "sms").values()) == {DeliveryStatus.DELIVERED}
    book.sweep(NOV_25)
    case = book.case()
    assert (case.stage, case.stage_on, case.stage_deadline, case.stage_waiting) == (
        "final_demand", NOV_25, DEADLINE, None,
    )  # fmt: skip
    [step] = book.steps()
    assert (step.stage, step.deadline, step.amount) == ("final_demand", DEADLINE, 3660)
    assert [(p["how"], p["channel"]) for p in step.proofs] == [("delivered", "sms")]
    demand = book.deliveries("collection.final_demand")
    assert sorted(d.channel for d in demand) == ["email", "postcard", "push", "sms", "voice"]

    # What the customer reads is what the ledger says as it goes out: B07 and B09 overdue.
    book.send("collection.final_demand", "sms", "email")
    sms = next(d for d in book.deliveries("collection.final_demand") if d.channel == "sms")
    assert "NT$3,660" in sms.content["body"] and "115年12月9日" in sms.content["body"]
    assert "停止供電" in sms.content["body"]
    [changed] = book.callbacks("collection.stage_changed")
    assert (changed["stage"], changed["deadline"], changed["amount"]) == (
        "final_demand", "2026-12-09", 3660,
    )  # fmt: skip

    # On the deadline nothing moves. The demand's SMS was reported delivered: it is
    # proven served, so the day after the deadline the suspension is due.
    book.sweep(DEADLINE)
    assert book.case().stage == "final_demand"
    with ledger.db() as session:
        assert step.notification_id is not None
        served = proof.served(session, step.notification_id)
    assert served is not None and served.how == "delivered"
    book.sweep(DEC_10)
    case = book.case()
    assert (case.stage, case.stage_on) == ("suspension_due", DEC_10)
    [due] = book.callbacks("collection.suspension_due")
    assert (due["account_no"], due["stage"], due["amount"]) == (book.no, "suspension_due", 3660)
    assert sorted(due["bill_nos"]) == sorted([book.b07["bill_no"], book.b09["bill_no"]])  # type: ignore[attr-defined]

    # The billing side confirms it cut the supply; then the customer pays everything.
    book.confirm("account.suspended", DEC_11)
    assert (book.case().stage, book.case().stage_on) == ("suspended", DEC_11)
    book.pay(book.b07, DEC_14)  # type: ignore[attr-defined]
    book.pay(book.b09, DEC_14)  # type: ignore[attr-defined]
    case = book.case()
    assert (case.status, case.outcome, case.stage) == ("done", "paid", "reconnection_due")
    [reconnect] = book.callbacks("collection.reconnection_due")
    assert reconnect["stage"] == "reconnection_due"
    reconnected = book.deliveries("collection.reconnected")
    assert sorted(d.channel for d in reconnected) == ["email", "push", "sms"]
    assert set(book.send("collection.reconnected", "sms").values()) == {DeliveryStatus.DELIVERED}
    sms = next(d for d in book.deliveries("collection.reconnected") if d.channel == "sms")
    assert "恢復供電" in sms.content["body"] and "115年12月14日" in sms.content["body"]

    book.confirm("account.reconnected", DEC_14)
    assert book.case().stage == "reconnected"
    assert [s.stage for s in book.steps()] == [
        "final_demand", "suspension_due", "suspended", "reconnection_due", "reconnected",
    ]  # fmt: skip
    assert [c["stage"] for c in book.callbacks("collection.stage_changed")] == [
        s.stage for s in book.steps()
    ]
    with ledger.db() as session:
        audited = session.exec(
            select(AuditEntry).where(
                AuditEntry.action == "collection.stage", AuditEntry.target == f"case {case.id}"
            )
        ).all()
    assert [a.detail["stage"] for a in audited if a.detail] == [s.stage for s in book.steps()]


def test_the_final_demand_waits_for_its_own_proof_before_the_suspension(
    ledger: Ledger, calendar: Calendar
) -> None:
    book = visited_and_refused(ledger, calendar, push_tokens=None, prefers_paper=True)
    book.send("bill.unpaid", "email")
    book.sweep(NOV_24)
    assert book.case().stage_waiting == "proof of service"

    # The customer prefers paper: the second notice's postcard is posted in a print batch.
    batch = book.print_batch(NOV_24)
    book.sweep(NOV_25)
    [step] = book.steps()
    assert [(p["how"], p["channel"]) for p in step.proofs] == [("posted", "postcard")]
    assert step.proofs[0]["reference"] == batch

    # The demand went out by email (sent) and a postcard still queued: not proven yet.
    book.send("collection.final_demand", "email")
    book.sweep(DEC_10)
    case = book.case()
    assert (case.stage, case.stage_waiting) == ("final_demand", "proof of service")
    assert book.callbacks("collection.suspension_due") == []

    book.print_batch(DEC_10)
    book.sweep(DEC_11)
    assert (book.case().stage, book.case().stage_waiting) == ("suspension_due", None)
    assert [p["how"] for p in book.steps()[-1].proofs] == ["posted"]


def test_a_dispute_hold_keeps_the_ladder_where_it_is_until_released(
    ledger: Ledger, calendar: Calendar
) -> None:
    book = visited_and_refused(ledger, calendar)
    book.send("bill.unpaid", "sms")
    book.sweep(NOV_25)
    assert book.case().stage == "final_demand"
    book.send("collection.final_demand", "sms")  # proven served: delivered

    # The customer disputes the bills before the deadline: a hold on the account.
    with ledger.db() as session:
        hold = holds.create_hold(
            session, scope="account", reason="dispute", account_no=book.no,
            starts_on=DEC_1, ends_on=None, note="meter reading disputed",
            actor="test supervisor", supervisor=True, today=DEC_1,
        )  # fmt: skip
        hold_id = hold.id
    assert hold_id is not None

    # Past the deadline, held: no suspension, no callback, nothing moves.
    book.sweep(DEC_10)
    book.sweep(DEC_11)
    case = book.case()
    assert (case.stage, case.stage_on) == ("final_demand", NOV_25)
    assert book.callbacks("collection.suspension_due") == []

    # The dispute is settled against the customer: released, the ladder goes on.
    with ledger.db() as session:
        holds.release_hold(session, hold_id, actor="test supervisor", now=calendar.on(DEC_11))
    book.sweep(DEC_14)
    assert book.case().stage == "suspension_due"
    assert len(book.callbacks("collection.suspension_due")) == 1


def test_payment_at_the_final_demand_stops_the_ladder(ledger: Ledger, calendar: Calendar) -> None:
    book = visited_and_refused(ledger, calendar)
    book.send("bill.unpaid", "sms")
    book.sweep(NOV_25)
    assert book.case().stage == "final_demand"

    book.pay(book.b07, DEC_10)  # type: ignore[attr-defined]
    book.sweep(DEC_10)
    book.sweep(DEC_11)

    case = book.case()
    assert (case.status, case.outcome, case.stage) == ("done", "paid", None)
    assert [(s.stage, s.previous) for s in book.steps()] == [
        ("final_demand", None), ("stopped", "final_demand"),
    ]  # fmt: skip
    assert book.callbacks("collection.suspension_due") == []
    assert book.callbacks("collection.stage_changed")[-1]["stage"] == "stopped"


def test_a_life_support_account_becomes_a_supervisor_case_never_suspended(
    ledger: Ledger, calendar: Calendar
) -> None:
    book = visited_and_refused(ledger, calendar)
    book.protect("life_support")
    book.send("bill.unpaid", "sms")
    book.sweep(NOV_25)
    book.send("collection.final_demand", "sms")
    book.sweep(DEC_10)

    case = book.case()
    assert (case.status, case.stage) == ("open", "supervisor")
    assert book.callbacks("collection.suspension_due") == []
    assert book.callbacks("collection.stage_changed")[-1]["stage"] == "supervisor"
    with ledger.db() as session:
        assert ladder.refusal(session, "account.suspended", book.no) is not None


def test_a_protected_call_account_gets_a_visit_before_any_final_demand(
    ledger: Ledger, calendar: Calendar
) -> None:
    # No address to visit: used-up calls would go straight to the final demand…
    book = Book(ledger, calendar, address=None)
    ledger.add_agent(book.acct["area"], "caller")
    book.issue("2026-07", SEP_20)
    book.issue("2026-09", NOV_20)
    book.second_notice("2026-07", SEP_20, on=OCT_5)
    book.send("bill.unpaid", "sms")
    book.sweep(NOV_20)
    for hour in (9, 14, 19):
        case = book.case()
        assert case.id is not None
        ledger.record(
            case.id, "no_answer", today=NOV_23,
            at=datetime.combine(NOV_23, time(hour), tzinfo=TAIPEI),
        )  # fmt: skip
    assert (book.case().kind, book.case().stage) == ("call", "final_demand")

    # …but an elderly customer is visited first.
    book.protect("elderly")
    book.sweep(NOV_24)
    case = book.case()
    assert (case.kind, case.stage, case.status) == ("visit", None, "open")
    assert book.deliveries("collection.final_demand") == []
    assert "became a visit" in book.changes()


def test_an_unprotected_call_account_without_an_address_goes_to_the_final_demand(
    ledger: Ledger, calendar: Calendar
) -> None:
    book = Book(ledger, calendar, address=None)
    book.issue("2026-07", SEP_20)
    book.issue("2026-09", NOV_20)
    book.second_notice("2026-07", SEP_20, on=OCT_5)
    book.send("bill.unpaid", "sms")
    book.sweep(NOV_20)
    case = book.case()
    assert case.id is not None
    ledger.record(case.id, "wrong_number", today=NOV_23, at=calendar.on(NOV_23))
    book.sweep(NOV_24)
    case = book.case()
    assert (case.kind, case.stage, case.stage_on) == ("call", "final_demand", NOV_24)
    # No address: the demand goes on the channels left, without a postcard.
    assert "postcard" not in {d.channel for d in book.deliveries("collection.final_demand")}


def test_nobody_home_twice_goes_to_the_final_demand(ledger: Ledger, calendar: Calendar) -> None:
    book = Book(ledger, calendar, vulnerable=True)
    book.issue("2026-07", SEP_20)
    book.issue("2026-09", NOV_20)
    book.second_notice("2026-07", SEP_20, on=OCT_5)
    book.sweep(NOV_20)
    book.record("nobody_home", NOV_23)
    assert book.case().stage is None
    book.record("nobody_home", NOV_24)
    assert book.case().stage == "final_demand"


def test_a_visit_notice_handed_over_and_unpaid_past_its_days_leads_to_the_final_demand(
    ledger: Ledger, calendar: Calendar
) -> None:
    book = Book(ledger, calendar, vulnerable=True, phone=None, push_tokens=None, email=None)
    book.issue("2026-07", SEP_20)
    book.issue("2026-09", NOV_20)
    book.sweep(NOV_20)
    book.record("notice_delivered", NOV_23)  # 7 business days: paid by 2 Dec, or else
    assert book.case().status == "done"

    book.sweep(date(2026, 12, 2))
    assert book.case().status == "done"
    book.sweep(date(2026, 12, 3))
    case = book.case()
    assert (case.status, case.stage, case.stage_on) == ("open", "final_demand", date(2026, 12, 3))
    [step] = book.steps()
    assert [(p["how"], p["channel"]) for p in step.proofs] == [("notice_delivered", "visit")]
    assert [d.channel for d in book.deliveries("collection.final_demand")] == ["postcard"]


def test_account_suspended_is_refused_unless_the_account_is_suspension_due(
    ledger: Ledger, calendar: Calendar
) -> None:
    book = visited_and_refused(ledger, calendar)
    with ledger.db() as session:
        why = ladder.refusal(session, "account.suspended", book.no)
        assert why is not None and "suspension_due" in why
        assert ladder.refusal(session, "account.reconnected", book.no) is not None
        assert ladder.refusal(session, "bill.unpaid", book.no) is None
    # Posted anyway (past the API's check): recorded as ignored, the case unmoved.
    book.confirm("account.suspended", NOV_24)
    assert (book.case().stage, book.case().stage_on) == ("final_demand", None)
    assert [s.stage for s in book.steps()] == []


# -- over HTTP: the producer's confirmation, the supervisors' list, page and letter ------------


@pytest.fixture
def api(ledger: Ledger) -> TestClient:
    """The API and pages on the ledger's own runtime, so the calendar drives both. No
    lifespan: the runtime is the ledger's, and stays open."""
    return TestClient(create_app(runtime=ledger.runtime), follow_redirects=False)


def key_of(ledger: Ledger, role: keys.Role) -> dict[str, str]:
    with ledger.db() as session:
        _, key = keys.create_key(session, role=role, name=f"test {role} {secrets.token_hex(3)}")
    return {"Authorization": f"Bearer {key}"}


def suspended_event(account_no: str) -> dict[str, Any]:
    return {
        "event_id": f"test-{secrets.token_hex(8)}",
        "type": "account.suspended",
        "occurred_at": "2026-12-11T09:00:00+08:00",
        "account": {"account_no": account_no},
    }


def test_account_suspended_before_suspension_due_is_a_422_naming_the_account(
    ledger: Ledger, calendar: Calendar, api: TestClient
) -> None:
    book = visited_and_refused(ledger, calendar)
    producer = key_of(ledger, "producer")
    event = suspended_event(book.no)

    answer = api.post("/v1/events", json=event, headers=producer)
    assert answer.status_code == 422, answer.text
    [error] = answer.json()["errors"]
    assert error["field"] == "account.account_no"
    assert "suspension_due" in error["message"]

    batch = api.post("/v1/events/batch", json={"events": [event]}, headers=producer).json()
    assert (batch["accepted"], batch["invalid"]) == (0, 1)
    assert batch["results"][0]["errors"][0]["field"] == "events[0].account.account_no"
    with ledger.db() as session:
        assert session.exec(select(Event).where(Event.event_id == event["event_id"])).all() == []

    # Once the account is suspension_due, the same event is taken.
    book.send("bill.unpaid", "sms")
    book.sweep(NOV_25)
    book.send("collection.final_demand", "sms")
    book.sweep(DEC_10)
    calendar.on(DEC_11)
    answer = api.post("/v1/events", json=suspended_event(book.no), headers=producer)
    assert answer.status_code == 202, answer.text


def test_supervisors_see_the_ladder_and_print_the_final_demand(
    ledger: Ledger, calendar: Calendar, api: TestClient, tmp_path: Path
) -> None:
    book = visited_and_refused(ledger, calendar, name="陳美玲")
    book.send("bill.unpaid", "email")
    book.sweep(NOV_24)
    supervisor = key_of(ledger, "supervisor")

    listed = api.get("/v1/ladder", params={"stage": "final_demand"}, headers=supervisor)
    assert listed.status_code == 200, listed.text
    [row] = [c for c in listed.json()["cases"] if c["account_no"] == book.no]
    assert (row["state"], row["deadline"], row["owed"]) == (
        "waiting for proof of service", None, 3660,
    )  # fmt: skip
    case_id = row["case_id"]
    assert api.get(f"/v1/ladder/{case_id}/final-demand.pdf", headers=supervisor).status_code == 404
    assert api.get("/v1/ladder", headers=key_of(ledger, "producer")).status_code == 403

    book.send("bill.unpaid", "sms")
    book.sweep(NOV_25)
    [row] = [c for c in api.get("/v1/ladder", headers=supervisor).json()["cases"]
             if c["case_id"] == case_id]  # fmt: skip
    assert (row["state"], row["reached_on"], row["deadline"]) == (
        "final_demand", "2026-11-25", "2026-12-09",
    )  # fmt: skip
    assert [(p["how"], p["channel"]) for p in row["proofs"]] == [("delivered", "sms")]

    # The page shows the same, in Chinese.
    now = ledger.runtime.clock()  # the calendar's: the TOTP codes are of its time
    with ledger.db() as session:
        user = users.create_user(
            session, username=f"sup-{secrets.token_hex(3)}", password=PASSWORD,
            role="supervisor", actor="test",
        )  # fmt: skip
        phone = pyotp.TOTP(totp.begin_enrolment(session, user))  # a supervisor needs a key
        assert totp.confirm(session, user, phone.at(now - timedelta(seconds=30)), now=now)
    form = api.get("/sign-in")
    signed = api.post(
        "/sign-in",
        data={"username": user.username, "password": PASSWORD, "next": "",
              "csrf_token": csrf_token(form.text)},
    )  # fmt: skip
    assert signed.headers["location"] == "/sign-in/totp", signed.text
    code_page = api.get("/sign-in/totp")
    signed = api.post(
        "/sign-in/totp",
        data={"code": phone.at(now), "csrf_token": csrf_token(code_page.text), "next": ""},
    )
    assert signed.status_code == 303, signed.text
    page = api.get("/agent/ladder", params={"stage": "final_demand"})
    assert page.status_code == 200, page.text
    assert f'id="case-{case_id}"' in page.text
    assert "限期催繳" in page.text and "2026-12-09" in page.text and "NT$3,660" in page.text
    # Ops see the demand like any notice, with its deliveries.
    notice = api.get(f"/ops/notifications/{row['notification_id']}")
    assert notice.status_code == 200, notice.text
    assert "collection.final_demand" in notice.text

    # The printed letter: A4, what the ledger says today, the deadline, the warning.
    calendar.on(NOV_25)
    letter = api.get(f"/v1/ladder/{case_id}/final-demand.pdf", headers=supervisor)
    assert letter.status_code == 200, letter.text
    assert letter.headers["content-type"] == "application/pdf"
    pdf = PdfReader(io.BytesIO(letter.content))
    [page_one] = pdf.pages
    assert (round(float(page_one.mediabox.width)), round(float(page_one.mediabox.height))) == (
        595, 842,
    )  # fmt: skip
    text = page_one.extract_text()
    for words in ("限期催繳通知書", book.no, "陳美玲", "NT$1,830", "NT$3,660", "115年12月9日",
                  "停止供電", "115年11月25日"):  # fmt: skip
        assert words in text, words
    png = render_png(letter.content, tmp_path)
    if keep := os.environ.get("NOTIFIER_KEEP_PNG"):  # to look at it
        shutil.copy(png, keep)
    with ledger.db() as session:
        assert session.exec(
            select(AuditEntry).where(
                AuditEntry.action == "notices.export", AuditEntry.target == f"case {case_id}"
            )
        ).first()


def render_png(pdf: bytes, folder: Path) -> Path:
    """The first page at 80 dpi, checked for ink: glyphs, not a blank page or boxes."""
    if shutil.which("pdftoppm") is None:
        if os.environ.get("CI"):
            pytest.fail("pdftoppm (Debian poppler-utils) is needed to render the letter")
        pytest.skip("pdftoppm (Debian poppler-utils) is not installed")
    source = folder / "letter.pdf"
    source.write_bytes(pdf)
    subprocess.run(
        ["pdftoppm", "-png", "-r", "80", "-singlefile", str(source), str(folder / "letter")],
        check=True,
    )
    subprocess.run(
        ["pdftoppm", "-gray", "-r", "40", "-singlefile", str(source), str(folder / "gray")],
        check=True,
    )
    data = (folder / "gray.pgm").read_bytes()
    _, pixels = data.split(b"\n255\n", 1)
    dark = sum(1 for value in pixels if value < 128) / len(pixels)
    assert 0.01 < dark < 0.2, dark
    return folder / "letter.png"


def test_a_visit_notice_paid_within_its_days_leaves_the_ladder(
    ledger: Ledger, calendar: Calendar
) -> None:
    book = Book(ledger, calendar, vulnerable=True)
    b07 = book.issue("2026-07", SEP_20)
    book.issue("2026-09", NOV_20)
    book.sweep(NOV_20)
    book.record("notice_delivered", NOV_23)
    assert (book.case().stage, book.case().stage_deadline) == ("final_demand", date(2026, 12, 2))

    book.pay(b07, date(2026, 11, 30))
    book.sweep(date(2026, 12, 3))
    case = book.case()
    assert (case.status, case.outcome, case.stage) == ("done", "notice_delivered", None)
    assert book.steps() == []


def test_a_notice_counts_as_served_only_when_proven(ledger: Ledger, calendar: Calendar) -> None:
    book = Book(ledger, calendar)
    book.second_notice("2026-07", SEP_20, on=OCT_5)
    with ledger.db() as session:
        [notice_id] = session.exec(
            select(Notification.id).where(Notification.account_no == book.no)
        ).all()
    assert notice_id is not None

    def served() -> proof.ServedProof | None:
        with ledger.db() as session:
            return proof.served(session, notice_id)

    assert served() is None  # queued: nothing yet
    # An email handed to the server is only sent; a call the sandbox "completed" may have
    # reached a voicemail: neither proves anything.
    book.send("bill.unpaid", "email", "voice")
    assert served() is None

    # No receipt in time: unknown (the receipt sweep's own function, for this provider).
    [email] = [d for d in book.deliveries("bill.unpaid") if d.channel == "email"]
    assert email.id is not None and email.provider_id is not None
    with ledger.db() as session:
        moved = deliveries_service.expire_unreceipted(
            session, now=utcnow() + timedelta(days=1), timeout=3600,
            providers=[email.provider or ""], limit=10,
        )  # fmt: skip
    assert email.id in moved
    assert served() is None

    # A late report through the path Twilio's callback takes: delivered, proven at last.
    record_report(
        ledger.runtime, email.id, "delivered", provider=email.provider or "",
        sid=email.provider_id, provider_status="delivered",
    )  # fmt: skip
    found = served()
    assert found is not None and (found.how, found.channel) == ("delivered", "email")
    assert found.reference == email.provider_id and found.notification_id == notice_id

    # A call a person answered (Twilio's AnsweredBy) counts too.
    [call] = [d for d in book.deliveries("bill.unpaid") if d.channel == "voice"]
    assert call.id is not None and call.provider_id is not None
    record_report(
        ledger.runtime, call.id, "delivered", provider=call.provider or "", sid=call.provider_id,
        provider_status="completed", answered_by="human",
    )  # fmt: skip
    with ledger.db() as session:
        assert {(p.how, p.channel) for p in proof.proofs(session, notice_id)} == {
            ("delivered", "email"), ("delivered", "voice"),
        }  # fmt: skip
