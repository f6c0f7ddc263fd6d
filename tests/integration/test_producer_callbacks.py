"""Producer callbacks: outcomes POSTed, signed, to the URL a producer registered.

A small HTTP receiver on 127.0.0.1 stands in for the billing system: it keeps
every request and answers what each test scripts for its own path (200 unless
told otherwise). The worker of each stack posts to it from the ``webhooks``
queue.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

import pytest
from sqlmodel import select

from notifier.accounts.models import Account
from notifier.auth import keys
from notifier.billing.models import Bill
from notifier.db import utcnow
from notifier.escalation import service as cases
from notifier.escalation.models import Escalation, EscalationBill
from notifier.events.models import Event
from notifier.webhooks.models import ProducerCallback, ProducerEndpoint
from tests.support import events
from tests.support.stack import Stack, wait_until

T = TypeVar("T")


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


@dataclass
class Receiver:
    """Records each POST; answers the codes scripted for its path, then 200."""

    seen: list[Seen] = field(default_factory=list)
    scripts: dict[str, list[int]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # FIELD-NOTES: or each request stalls ~40 ms

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    receiver.seen.append(
                        Seen(self.path, dict(self.headers.items()), body, time.time())
                    )
                    script = receiver.scripts.get(self.path, [])
                    code = script.pop(0) if script else 200
                reply = b'{"ok": true}' if code < 300 else b'{"error": "scripted"}'
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *_: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 128
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def at(self, path: str) -> list[Seen]:
        with self.lock:
            return [request for request in self.seen if request.path == path]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    running.start()
    yield running
    running.server.shutdown()


def _producer(stack: Stack) -> dict[str, str]:
    """A producer key of its own, so tests and stacks never share a callback URL."""
    with stack.db() as session:
        _, key = keys.create_key(session, role="producer", name=f"billing {secrets.token_hex(3)}")
    return {"Authorization": f"Bearer {key}"}


def _register(stack: Stack, receiver: Receiver, producer: dict[str, str]) -> tuple[str, str]:
    """Register a fresh path of the receiver; (path, secret)."""
    path = f"/notifier-events/{secrets.token_hex(4)}"
    answer = stack.client.put(
        "/v1/producer/callback", json={"url": receiver.url(path)}, headers=producer
    )
    assert answer.status_code == 201, answer.text
    secret = answer.json()["secret"]
    assert secret.startswith("whsec_")
    return path, secret


def _visit_delivered(stack: Stack, account_no: str, bill_no: str) -> int:
    """A visit case over ``bill_no``, its notice recorded handed over (which closes it)."""
    opened_on = date(2027, 1, 21)
    with stack.db() as session:
        case = Escalation(account_no=account_no, kind="visit", opened_on=opened_on)
        session.add(case)
        session.flush()
        assert case.id is not None
        session.add(EscalationBill(escalation_id=case.id, bill_no=bill_no, added_on=opened_on))
        case_id = case.id
    with stack.db() as session:
        cases.record_outcome(
            session,
            case_id,
            cases.Actor(name="test supervisor", supervisor=True),
            outcome="notice_delivered",
            today=opened_on,
            policy=stack.runtime.policy.escalation,
            now=utcnow(),
        )
    return case_id


def _verify(secret: str, seen: Seen, *, tolerance: float = 120) -> dict[str, Any]:
    """The recipe of docs/callbacks.md: check the signature and the timestamp, then parse."""
    parts = dict(item.split("=", 1) for item in seen.headers["X-Notifier-Signature"].split(","))
    timestamp = int(parts["t"])
    expected = hmac.new(
        secret.encode(), f"{timestamp}.".encode() + seen.body, hashlib.sha256
    ).hexdigest()
    assert hmac.compare_digest(expected, parts["v1"]), "bad signature"
    assert abs(time.time() - timestamp) <= tolerance, "stale timestamp"
    body = seen.json()
    assert seen.headers["X-Notifier-Callback-Id"] == str(body["id"])
    return body


def _at_least(count: int, read: Callable[[], list[T]]) -> Callable[[], list[T] | None]:
    """A predicate for wait_until: what ``read`` gives, once it has ``count`` items."""

    def check() -> list[T] | None:
        found = read()
        return found if len(found) >= count else None

    return check


def _listed(stack: Stack, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    answer = stack.client.get("/v1/producer/callbacks", params=params, headers=headers)
    assert answer.status_code == 200, answer.text
    listed: list[dict[str, Any]] = answer.json()["callbacks"]
    return listed


def test_a_producer_gets_a_signed_callback_for_each_delivery(
    stack: Stack, receiver: Receiver
) -> None:
    producer = _producer(stack)
    path, secret = _register(stack, receiver, producer)
    shown = stack.client.get("/v1/producer/callback", headers=producer).json()
    assert shown["url"] == receiver.url(path) and shown["secret"] is None
    again = stack.client.put(
        "/v1/producer/callback", json={"url": receiver.url(path)}, headers=producer
    )
    assert again.status_code == 200 and again.json()["secret"] is None  # the same secret
    acct = events.account()  # push, SMS and email
    event = events.unpaid(acct)
    assert stack.client.post("/v1/events", json=event, headers=producer).status_code == 202
    stack.settled(acct["account_no"], count=3)
    seen = wait_until(
        _at_least(3, lambda: receiver.at(path)),
        timeout=60,
        what="three callbacks",
    )
    bodies = [_verify(secret, request) for request in seen]
    by_channel = {body["channel"]: body for body in bodies}
    assert {c: b["type"] for c, b in by_channel.items()} == {
        "push": "delivery.delivered",
        "sms": "delivery.delivered",
        "email": "delivery.sent",  # SMTP never reports delivery
    }
    for body in bodies:
        assert body["event_id"] == event["event_id"]
        assert body["account_no"] == acct["account_no"]
        assert body["bill_no"] == event["bill"]["bill_no"]
        assert body["status"] == body["type"].removeprefix("delivery.")
    raw = b"".join(request.body for request in seen).decode()
    for personal in (acct["phone"], acct["email"], acct["name"], acct["address"]):
        assert personal not in raw
    listed = wait_until(
        _at_least(3, lambda: _listed(stack, producer, status="sent")),
        timeout=30,
        what="three callbacks listed as sent",
    )
    assert all(row["attempts"] == 1 and row["last_status_code"] == 200 for row in listed)


def test_a_5xx_is_retried_with_backoff_until_the_producer_takes_it(
    stack: Stack, receiver: Receiver
) -> None:
    producer = _producer(stack)
    path, secret = _register(stack, receiver, producer)
    receiver.scripts[path] = [500, 503]
    acct = events.account(phone=None, push_tokens=None)  # email alone: one delivery
    stack.client.post("/v1/events", json=events.unpaid(acct), headers=producer)
    [row] = wait_until(
        lambda: _listed(stack, producer, status="sent") or None,
        timeout=60,
        what="the callback to be sent",
    )
    assert row["attempts"] == 3 and row["last_status_code"] == 200
    seen = receiver.at(path)
    assert len(seen) == 3
    assert len({request.body for request in seen}) == 1  # the same callback each time
    for request in seen:
        _verify(secret, request)
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(seen)]
    assert gaps[0] >= 0.4 and gaps[1] >= 0.9, gaps  # ½–1 s, then 1–2 s (base 1 s in tests)


def test_a_4xx_is_never_retried(stack: Stack, receiver: Receiver) -> None:
    producer = _producer(stack)
    path, _ = _register(stack, receiver, producer)
    receiver.scripts[path] = [400, 400, 400]
    acct = events.account(phone=None, push_tokens=None)
    stack.client.post("/v1/events", json=events.unpaid(acct), headers=producer)
    [row] = wait_until(
        lambda: _listed(stack, producer, status="failed") or None,
        timeout=60,
        what="the callback to fail",
    )
    assert (row["attempts"], row["last_status_code"]) == (1, 400)
    assert row["last_error"] == "http 4xx"  # a category: never the answer's body
    time.sleep(3)  # longer than the first two backoffs together
    assert len(receiver.at(path)) == 1
    assert _listed(stack, producer, status="pending") == []


def test_a_url_that_resolves_to_this_machine_at_send_time_is_not_posted_to(
    stack: Stack, receiver: Receiver
) -> None:
    producer = _producer(stack)
    path, _ = _register(stack, receiver, producer)  # taken: this stack lets 127.0.0.1 in

    # As deployed: the host is resolved and checked again before each POST (a name
    # registered while public may resolve to this machine later).
    with stack.worker_with(
        NOTIFIER_CALLBACK_ALLOW_PRIVATE="false", NOTIFIER_WEBHOOK_MAX_ATTEMPTS="1"
    ):
        acct = events.account(phone=None, push_tokens=None)
        stack.client.post("/v1/events", json=events.unpaid(acct), headers=producer)
        [row] = wait_until(
            lambda: _listed(stack, producer, status="failed") or None,
            timeout=60,
            what="the callback to fail",
        )

    assert (row["last_status_code"], row["last_error"]) == (None, "blocked address")
    assert receiver.at(path) == []


def test_another_producers_events_never_reach_this_url(stack: Stack, receiver: Receiver) -> None:
    mine, theirs = _producer(stack), _producer(stack)
    my_path, _ = _register(stack, receiver, mine)
    their_path, _ = _register(stack, receiver, theirs)
    mine_acct = events.account(phone=None, push_tokens=None)
    their_acct = events.account(phone=None, push_tokens=None)
    stack.client.post("/v1/events", json=events.unpaid(their_acct), headers=theirs)
    stack.client.post("/v1/events", json=events.unpaid(mine_acct), headers=mine)
    wait_until(
        lambda: receiver.at(my_path) and receiver.at(their_path),
        timeout=60,
        what="a callback to each producer",
    )
    stack.settled(their_acct["account_no"], count=1)
    time.sleep(1)
    assert {r.json()["account_no"] for r in receiver.at(my_path)} == {mine_acct["account_no"]}
    assert {r.json()["account_no"] for r in receiver.at(their_path)} == {their_acct["account_no"]}
    # Each producer lists its own; ops see both.
    assert {row["body"]["account_no"] for row in _listed(stack, mine)} == {mine_acct["account_no"]}
    everyone = {row["body"]["account_no"] for row in _listed(stack, stack.ops, limit=500)}
    assert {mine_acct["account_no"], their_acct["account_no"]} <= everyone


def test_an_escalation_outcome_reaches_the_producer_of_the_account(
    stack: Stack, receiver: Receiver
) -> None:
    producer = _producer(stack)
    path, secret = _register(stack, receiver, producer)
    acct = events.account(email=None, push_tokens=None)
    event = events.unpaid(acct)
    stack.client.post("/v1/events", json=event, headers=producer)
    stack.settled(acct["account_no"], count=1)
    bill_no = event["bill"]["bill_no"]
    with stack.db() as session:
        assert session.get(Bill, bill_no) is not None
    case_id = _visit_delivered(stack, acct["account_no"], bill_no)
    seen = wait_until(
        _at_least(2, lambda: [r for r in receiver.at(path) if r.json()["type"].startswith("esc")]),
        timeout=60,
        what="the escalation's callbacks",
    )
    bodies = {body["type"]: body for body in (_verify(secret, request) for request in seen)}
    assert set(bodies) == {"escalation.outcome", "escalation.closed"}
    for body in bodies.values():
        assert body["escalation_id"] == case_id
        assert (body["outcome"], body["status"], body["kind"]) == (
            "notice_delivered", "done", "visit",
        )  # fmt: skip
        assert body["account_no"] == acct["account_no"] and body["bill_nos"] == [bill_no]
        assert acct["phone"] not in json.dumps(body, ensure_ascii=False)


def test_an_event_id_is_each_producers_own(stack: Stack) -> None:
    mine, theirs = _producer(stack), _producer(stack)
    event_id = f"shared-{secrets.token_hex(4)}"
    my_acct, their_acct = events.account(), events.account()

    first = stack.client.post(
        "/v1/events", json=events.unpaid(my_acct, event_id=event_id), headers=mine
    )
    # Pre-posting the same id cannot make the real event a duplicate, nor reveal it exists.
    second = stack.client.post(
        "/v1/events", json=events.unpaid(their_acct, event_id=event_id), headers=theirs
    )

    assert (first.status_code, second.status_code) == (202, 202), second.text
    assert second.json()["status"] == "accepted"
    stack.settled(my_acct["account_no"], count=3)
    stack.settled(their_acct["account_no"], count=3)
    for key in (mine, theirs):
        assert stack.client.get(f"/v1/events/{event_id}", headers=key).status_code == 200
    with stack.db() as session:
        rows = session.exec(select(Event).where(Event.event_id == event_id)).all()
    assert sorted(row.account_no for row in rows) == sorted(
        [my_acct["account_no"], their_acct["account_no"]]
    )


def test_another_producer_may_not_change_the_contact_data_or_the_bills_of_an_account(
    stack: Stack,
) -> None:
    mine, theirs = _producer(stack), _producer(stack)
    acct = events.account(push_tokens=None, email=None)
    event = events.unpaid(acct)
    assert stack.client.post("/v1/events", json=event, headers=mine).status_code == 202
    stack.settled(acct["account_no"], count=1)

    hijack = events.unpaid({**acct, "phone": "+886987654321"}, period="2026-10")
    refused = stack.client.post("/v1/events", json=hijack, headers=theirs)
    assert refused.status_code == 422
    [error] = refused.json()["errors"]
    assert error["field"] == "account.name" and "send account_no alone" in error["message"]
    their_copy = events.unpaid({"account_no": acct["account_no"]})
    their_copy["bill"] = {**their_copy["bill"], "bill_no": event["bill"]["bill_no"], "amount": 1}
    refused = stack.client.post("/v1/events", json=their_copy, headers=theirs)
    assert refused.status_code == 422
    assert [e["field"] for e in refused.json()["errors"]] == ["bill.bill_no"]

    # Its own bill of the same account, with account_no alone, is taken.
    own = events.unpaid({"account_no": acct["account_no"]}, period="2026-10")
    assert stack.client.post("/v1/events", json=own, headers=theirs).status_code == 202
    stack.settled(acct["account_no"], count=2)
    with stack.db() as session:
        account = session.get(Account, acct["account_no"])
        first, second = (session.get(Bill, e["bill"]["bill_no"]) for e in (event, own))
    assert account is not None and account.phone == acct["phone"]
    assert first is not None and first.amount == event["bill"]["amount"]
    assert second is not None and second.producer_key_id != first.producer_key_id


def test_a_case_is_told_only_to_the_producer_of_its_bills(stack: Stack, receiver: Receiver) -> None:
    mine, theirs = _producer(stack), _producer(stack)
    my_path, _ = _register(stack, receiver, mine)
    their_path, _ = _register(stack, receiver, theirs)
    acct = events.account(email=None, push_tokens=None)
    event = events.unpaid(acct)
    first = stack.client.post("/v1/events", json=event, headers=mine)
    assert first.status_code == 202, first.text
    # The account's phone first: an account_no-only event processed before it reaches nobody.
    stack.settled(acct["account_no"], count=1)
    theirs_too = events.unpaid({"account_no": acct["account_no"]}, period="2026-10")
    assert stack.client.post("/v1/events", json=theirs_too, headers=theirs).status_code == 202
    stack.settled(acct["account_no"], count=2)
    case_id = _visit_delivered(stack, acct["account_no"], event["bill"]["bill_no"])

    def about_cases(path: str) -> list[Seen]:
        return [r for r in receiver.at(path) if r.json()["type"].startswith("escalation.")]

    seen = wait_until(_at_least(2, lambda: about_cases(my_path)), timeout=60, what="the callbacks")
    assert {r.json()["escalation_id"] for r in seen} == {case_id}
    time.sleep(1)  # the other producer's, were any owed, would be out by now
    assert about_cases(their_path) == []


def test_a_wrong_number_tells_the_producer_the_phone_is_invalid(
    stack: Stack, receiver: Receiver
) -> None:
    producer = _producer(stack)
    path, secret = _register(stack, receiver, producer)
    acct = events.account(email=None, push_tokens=None)
    event = events.unpaid(acct)
    stack.client.post("/v1/events", json=event, headers=producer)
    stack.settled(acct["account_no"], count=1)
    with stack.db() as session:
        case = Escalation(account_no=acct["account_no"], kind="call", opened_on=date(2027, 1, 21))
        session.add(case)
        session.flush()
        assert case.id is not None
        session.add(
            EscalationBill(
                escalation_id=case.id, bill_no=event["bill"]["bill_no"], added_on=case.opened_on
            )
        )
        case_id = case.id
    with stack.db() as session:
        cases.record_outcome(
            session,
            case_id,
            cases.Actor(name="test supervisor", supervisor=True),
            outcome="wrong_number",
            today=date(2027, 1, 21),
            policy=stack.runtime.policy.escalation,
            now=utcnow(),
        )

    seen = wait_until(
        _at_least(
            2,
            lambda: [r for r in receiver.at(path) if not r.json()["type"].startswith("delivery.")],
        ),
        timeout=60,
        what="the outcome's callbacks",
    )
    bodies = {body["type"]: body for body in (_verify(secret, request) for request in seen)}
    assert set(bodies) >= {"escalation.outcome", "account.contact_invalid"}
    invalid = bodies["account.contact_invalid"]
    assert (invalid["account_no"], invalid["contact"], invalid["reason"]) == (
        acct["account_no"], "phone", "wrong_number",
    )  # fmt: skip
    assert invalid["escalation_id"] == case_id
    assert bodies["escalation.outcome"]["kind"] == "visit"  # no caller dials it again
    for body in bodies.values():
        assert acct["phone"] not in json.dumps(body, ensure_ascii=False)


def test_a_callback_whose_task_was_lost_is_sent_by_the_reconciler(
    stack: Stack, receiver: Receiver
) -> None:
    producer = _producer(stack)
    path, secret = _register(stack, receiver, producer)
    with stack.db() as session:
        key_id = session.exec(
            select(ProducerEndpoint.key_id).where(ProducerEndpoint.url == receiver.url(path))
        ).one()
        # Written but never enqueued, as if the broker had lost the message.
        lost = ProducerCallback(
            key_id=key_id,
            type="delivery.sent",
            body={"type": "delivery.sent", "delivery_id": 0, "status": "sent"},
            next_at=utcnow() - timedelta(seconds=stack.settings.redispatch_after_seconds + 1),
        )
        session.add(lost)
    [seen] = wait_until(lambda: receiver.at(path), timeout=60, what="the lost callback")
    assert _verify(secret, seen)["id"] == lost.id
