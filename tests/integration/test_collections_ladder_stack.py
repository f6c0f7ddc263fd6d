"""One account through every stage of the collections ladder on a real stack: the API, a
``celery worker`` with beat, the sandbox channels, a producer's callback URL.

The bills fall due counted back from today in Asia/Taipei (the API works on the
business date it is); the sweeps are asked for over the API, for today and then for
the day after the final demand's deadline, and run by the worker.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import col, select

from notifier.auth import keys
from notifier.deliveries.models import Delivery, DeliveryStatus, Notification
from notifier.escalation.agents import add_agent
from notifier.escalation.models import Escalation
from notifier.events.models import Event, EventStatus
from notifier.webhooks.service import signature_header
from tests.support import events
from tests.support.stack import Stack, wait_until

TODAY = datetime.now(ZoneInfo("Asia/Taipei")).date()


@dataclass
class Receiver:
    """The billing side's callback URL: records each signed POST, answers 200."""

    seen: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # FIELD-NOTES: or each request stalls ~40 ms

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    receiver.seen.append((dict(self.headers.items()), body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/billing"

    def of(self, type_: str, secret: str) -> list[dict[str, Any]]:
        """The callbacks of ``type_`` received, each checked against its signature, once each
        (delivery is at-least-once) in the order they were written (POSTs run in parallel)."""
        with self.lock:
            seen = list(self.seen)
        found = []
        for headers, body in seen:
            parsed: dict[str, Any] = json.loads(body)
            if parsed["type"] != type_:
                continue
            signature = headers["X-Notifier-Signature"]
            timestamp = int(signature.split(",")[0].removeprefix("t="))
            assert signature == signature_header(secret, body, timestamp)
            found.append(parsed)
        return sorted({c["id"]: c for c in found}.values(), key=lambda c: c["id"])


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    running.start()
    yield running
    running.server.shutdown()


def key(stack: Stack, role: keys.Role) -> dict[str, str]:
    with stack.db() as session:
        _, secret = keys.create_key(session, role=role, name=f"{role} {secrets.token_hex(3)}")
    return {"Authorization": f"Bearer {secret}"}


def processed(stack: Stack, event_ids: list[str]) -> None:
    def done() -> bool:
        with stack.db() as session:
            statuses = session.exec(
                select(Event.status).where(col(Event.event_id).in_(event_ids))
            ).all()
        return len(statuses) == len(event_ids) and all(s == EventStatus.PROCESSED for s in statuses)

    wait_until(done, timeout=60, what=f"events {event_ids} processed")


def delivered_sms(stack: Stack, account_no: str, type_: str) -> None:
    def done() -> bool:
        with stack.db() as session:
            return (
                session.exec(
                    select(Delivery.id)
                    .join(Notification, col(Notification.id) == col(Delivery.notification_id))
                    .where(
                        Delivery.account_no == account_no,
                        Notification.type == type_,
                        Delivery.channel == "sms",
                        Delivery.status == DeliveryStatus.DELIVERED,
                    )
                ).first()
                is not None
            )

    wait_until(done, timeout=90, what=f"the {type_} SMS of {account_no} delivered")


def case_of(stack: Stack, account_no: str) -> Escalation:
    with stack.db() as session:
        [case] = session.exec(select(Escalation).where(Escalation.account_no == account_no))
        return case


def at_stage(stack: Stack, account_no: str, stage: str) -> Escalation:
    wait_until(
        lambda: case_of(stack, account_no).stage == stage,
        timeout=90,
        what=f"{account_no} at {stage}",
    )
    return case_of(stack, account_no)


def swept(stack: Stack, admin: dict[str, str], as_of: date) -> None:
    started = stack.client.post(
        "/v1/escalations/sweeps", json={"as_of": as_of.isoformat()}, headers=admin
    )
    assert started.status_code == 202, started.text
    run = started.json()["id"]
    wait_until(
        lambda: (
            stack.client.get(f"/v1/escalations/sweeps/{run}", headers=admin).json()["status"]
            == "done"
        ),
        timeout=90,
        what=f"sweep {run} as of {as_of}",
    )


@pytest.mark.stack
def test_one_account_through_every_stage_with_a_real_worker_and_beat(
    stack: Stack, receiver: Receiver
) -> None:
    producer, admin, supervisor = (
        key(stack, "producer"),
        key(stack, "admin"),
        key(stack, "supervisor"),
    )
    registered = stack.client.put(
        "/v1/producer/callback", json={"url": receiver.url()}, headers=producer
    )
    assert registered.status_code == 201, registered.text
    secret = registered.json()["secret"]
    area = f"area-{secrets.token_hex(4)}"
    with stack.db() as session:
        add_agent(session, name="陳志明", area=area, kind="field")
    acct = events.account(area=area, vulnerable=True)
    no = acct["account_no"]

    def post(event: dict[str, Any]) -> None:
        answer = stack.client.post("/v1/events", json=event, headers=producer)
        assert answer.status_code == 202, answer.text
        processed(stack, [event["event_id"]])

    # Two bills, the older unpaid when the newer fell due yesterday; a second notice.
    bills = []
    for months_back, period in ((2, "2026-07"), (0, "2026-09")):
        due = TODAY - timedelta(days=1 + 61 * months_back // 2)
        issued = events.unpaid(acct, period=period, due=due)
        issued["type"] = "bill.issued"
        issued.pop("level")
        post(issued)
        bills.append(issued["bill"])
    second = events.unpaid(acct, period="2026-07", due=TODAY - timedelta(days=62), level=2)
    post(second)
    delivered_sms(stack, no, "bill.unpaid")  # the proof of service the demand rests on

    # The case, a refused visit, and the final demand on the next sweep.
    swept(stack, admin, TODAY)
    case = case_of(stack, no)
    assert case.kind == "visit"
    refused = stack.client.post(
        f"/v1/escalations/{case.id}/outcome", json={"outcome": "refused"}, headers=supervisor
    )
    assert refused.status_code == 200, refused.text
    swept(stack, admin, TODAY)
    case = at_stage(stack, no, "final_demand")
    assert case.stage_on == TODAY and case.stage_deadline is not None
    delivered_sms(stack, no, "collection.final_demand")
    listed = stack.client.get("/v1/ladder", params={"stage": "final_demand"}, headers=supervisor)
    [row] = [r for r in listed.json()["cases"] if r["account_no"] == no]
    assert row["state"] == "final_demand" and row["proofs"][0]["how"] == "delivered"

    # Past the deadline unpaid: the producer is told to suspend, signed.
    swept(stack, admin, case.stage_deadline + timedelta(days=1))
    at_stage(stack, no, "suspension_due")
    wait_until(
        lambda: receiver.of("collection.suspension_due", secret),
        timeout=60,
        what="collection.suspension_due received",
    )
    [due] = receiver.of("collection.suspension_due", secret)
    assert (due["account_no"], due["escalation_id"]) == (no, case.id)

    # The billing side cut the supply; the customer pays everything; the supply comes back.
    post({
        "event_id": f"test-{secrets.token_hex(8)}", "type": "account.suspended",
        "occurred_at": datetime.now(ZoneInfo("Asia/Taipei")).isoformat(),
        "account": {"account_no": no},
    })  # fmt: skip
    at_stage(stack, no, "suspended")
    for bill in bills:
        paid = events.paid(acct)
        paid["bill"] = bill
        post(paid)
    closed = at_stage(stack, no, "reconnection_due")
    assert (closed.status, closed.outcome) == ("done", "paid")
    delivered_sms(stack, no, "collection.reconnected")  # rendered by the reconciler
    wait_until(
        lambda: receiver.of("collection.reconnection_due", secret),
        timeout=60,
        what="collection.reconnection_due received",
    )
    post({
        "event_id": f"test-{secrets.token_hex(8)}", "type": "account.reconnected",
        "occurred_at": datetime.now(ZoneInfo("Asia/Taipei")).isoformat(),
        "account": {"account_no": no},
    })  # fmt: skip
    at_stage(stack, no, "reconnected")
    wait_until(
        lambda: (
            [c["stage"] for c in receiver.of("collection.stage_changed", secret)]
            == ["final_demand", "suspension_due", "suspended", "reconnection_due", "reconnected"]
        ),
        timeout=60,
        what="a collection.stage_changed callback for every stage",
    )
