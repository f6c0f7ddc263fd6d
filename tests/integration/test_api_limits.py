"""What one caller may send: body size, batch size, unknown fields, requests per key.

The stacks' own API runs with a rate far above what tests reach; these tests
start a second API on the same database and broker (and so the same rate
limiter: the database's row, or Redis on the Redis stack) with small limits.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from sqlmodel import func, select

from notifier.accounts.models import Account
from notifier.app import create_app
from notifier.auth import keys
from notifier.events.models import Event
from notifier.runtime import Runtime
from notifier.settings import ApiRate
from tests.support import events
from tests.support.stack import Stack, free_port, wait_until

MAX_BODY = 64 * 1024
PRODUCER_RATE = ApiRate(per_second=2, burst=3)


class LimitedApi:
    """A second API on a stack's backends, with small limits, on a real port."""

    def __init__(self, stack: Stack) -> None:
        self.settings = stack.settings.model_copy(
            update={
                "max_body_bytes": MAX_BODY,
                "api_rate_limits": {
                    "producer": PRODUCER_RATE,
                    # One request a 20 s: the second of two comes before a refill even when
                    # the first takes seconds on a loaded machine (1 a second failed so).
                    "default": ApiRate(per_second=0.05, burst=1),
                },
            }
        )
        self.runtime = Runtime(self.settings)
        port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(
                create_app(self.settings, runtime=self.runtime),
                host="127.0.0.1",
                port=port,
                log_config=None,
            )
        )
        threading.Thread(target=self.server.run, name="limited-api", daemon=True).start()
        wait_until(lambda: self.server.started, timeout=30, what="the limited API")
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)

    def key(self, role: keys.Role = "producer") -> dict[str, str]:
        """A fresh key, so that each test starts with its whole burst."""
        with self.runtime.db.session() as session:
            _, key = keys.create_key(session, role=role, name=f"limits {role}")
        return {"Authorization": f"Bearer {key}"}

    def close(self) -> None:
        self.client.close()
        self.server.should_exit = True
        self.runtime.close()


@pytest.fixture
def limited(stack: Stack) -> Iterator[LimitedApi]:
    api = LimitedApi(stack)
    yield api
    api.close()


def _stored(stack: Stack, event_id: str) -> int:
    with stack.db() as session:
        return session.exec(select(func.count()).where(Event.event_id == event_id)).one()


def test_a_body_over_the_limit_is_refused_before_it_is_read(
    stack: Stack, limited: LimitedApi
) -> None:
    event = events.unpaid(events.account())
    event["account"]["address"] = "x" * MAX_BODY  # declared by Content-Length: over
    answer = limited.client.post("/v1/events", json=event, headers=limited.key())
    assert answer.status_code == 413, answer.text
    assert answer.json() == {
        "detail": "request body over the limit of 65,536 bytes (NOTIFIER_MAX_BODY_BYTES)"
    }
    assert _stored(stack, event["event_id"]) == 0


def test_a_chunked_body_is_cut_off_when_it_crosses_the_limit(limited: LimitedApi) -> None:
    sent = 0

    def chunks() -> Iterator[bytes]:
        # No Content-Length: the size shows only as the chunks arrive.
        nonlocal sent
        for _ in range(64):
            sent += 1
            yield b'{"padding": "' + b"x" * 16_384 + b'"}'

    answer = limited.client.post(
        "/v1/events",
        content=chunks(),
        headers={**limited.key(), "Content-Type": "application/json"},
    )
    assert answer.status_code == 413, answer.text
    assert "65,536 bytes" in answer.json()["detail"]


def test_a_body_under_the_limit_goes_on_to_validation(limited: LimitedApi) -> None:
    answer = limited.client.post(
        "/v1/events",
        content=b"{" + b" " * (MAX_BODY - 2) + b"}",
        headers={**limited.key(), "Content-Type": "application/json"},
    )
    assert answer.status_code == 422, answer.text


def test_a_key_over_its_rate_gets_429_with_retry_after(limited: LimitedApi) -> None:
    key, other = limited.key(), limited.key()
    codes = [limited.client.get("/v1/events/none", headers=key).status_code for _ in range(4)]
    assert codes == [404] * PRODUCER_RATE.burst + [429]
    refused = limited.client.get("/v1/events/none", headers=key)
    assert refused.status_code == 429
    retry_after = refused.headers["Retry-After"]
    assert retry_after.isdigit() and int(retry_after) >= 1
    assert "2 requests/s (burst 3)" in refused.json()["detail"]
    # Per key: another producer key still has its own burst.
    assert limited.client.get("/v1/events/none", headers=other).status_code == 404
    # A refused request spends nothing: after one interval the key has a slot again.
    time.sleep(1 / PRODUCER_RATE.per_second + 0.1)
    assert limited.client.get("/v1/events/none", headers=key).status_code == 404


def test_roles_not_listed_get_the_default_rate(limited: LimitedApi) -> None:
    ops = limited.key("ops")
    codes = [limited.client.get("/v1/deliveries", headers=ops).status_code for _ in range(2)]
    assert codes == [200, 429]


def test_requests_without_a_valid_key_are_not_counted(limited: LimitedApi) -> None:
    bad = {"Authorization": "Bearer ntf_not-a-key"}
    codes = {limited.client.get("/v1/deliveries", headers=bad).status_code for _ in range(5)}
    assert codes == {401}


def test_a_batch_over_1000_events_is_refused_naming_the_limit(stack: Stack) -> None:
    answer = stack.client.post(
        "/v1/events/batch", json={"events": [{}] * 1001}, headers=stack.producer
    )
    assert answer.status_code == 422, answer.text
    [error] = answer.json()["errors"]
    assert error["field"] == "events"
    assert "at most 1000 items" in error["message"]


def test_unknown_fields_are_refused_at_every_level(stack: Stack) -> None:
    event: dict[str, Any] = events.unpaid(events.account())
    event["account"]["nickname"] = "小明"
    answer = stack.post(event)
    assert answer.status_code == 422
    assert [e["field"] for e in answer.json()["errors"]] == ["account.nickname"]
    batch = stack.client.post(
        "/v1/events/batch",
        json={"events": [], "callback": "https://example.com"},
        headers=stack.producer,
    )
    assert batch.status_code == 422
    assert [e["field"] for e in batch.json()["errors"]] == ["callback"]


def test_a_body_of_many_unknown_fields_gets_one_short_answer(stack: Stack) -> None:
    event: dict[str, Any] = events.unpaid(events.account())
    event["account"].update({f"k{i:06d}": "x" * 10 for i in range(75_000)})  # 1.8 MB

    answer = stack.post(event)

    assert answer.status_code == 422
    assert len(answer.content) < 2_000  # was 5.5 MB: one error per unknown field
    [error] = answer.json()["errors"]
    assert error["field"] == "account"
    assert "75000 unknown fields (first: 'k000000'" in error["message"]


def test_at_most_50_errors_are_reported_per_event_and_per_batch(stack: Stack) -> None:
    event: dict[str, Any] = events.unpaid(events.account())
    event["account"]["push_tokens"] = ["bad token"] * 20  # 20 errors
    event["account"].update({f"extra{i}": 1 for i in range(40)})  # 40 more
    single = stack.post(event)
    assert single.status_code == 422
    errors = single.json()["errors"]
    assert len(errors) == 50 and errors[-1]["message"] == "11 more errors"

    batch = stack.client.post(
        "/v1/events/batch", json={"events": [event] * 10}, headers=stack.producer
    )
    assert batch.status_code == 200, batch.text
    results = batch.json()["results"]
    assert [r["status"] for r in results] == ["invalid"] * 10
    assert len(results[0]["errors"]) == 50
    assert [len(r["errors"]) for r in results[1:]] == [1] * 9
    assert "details left out past 50 errors" in results[1]["errors"][0]["message"]


@pytest.mark.parametrize(
    ("where", "value", "field"),
    [
        (("bill", "amount"), True, "bill.amount"),  # was stored as 1
        (("bill", "amount"), "1830", "bill.amount"),
        (("bill", "due_date"), 1_764_000_000, "bill.due_date"),
        (("bill", "due_date"), "2040-01-01", "bill.due_date"),  # past ±5 years
        (("occurred_at",), 1_764_000_000, "occurred_at"),  # was a Unix time
        (("level",), True, "level"),
        (("account", "vulnerable"), "yes", "account.vulnerable"),
        (("bill", "bill_no"), "B1\r\nX-Injected: 1", "bill.bill_no"),
        (("bill", "bill_no"), "B1\u202egnp.exe", "bill.bill_no"),
        (("account", "push_tokens"), ["tok\nen"], "account.push_tokens[0]"),
        (("account", "push_tokens"), ["tok\u2066en"], "account.push_tokens[0]"),
    ],
)
def test_values_of_the_wrong_type_or_shape_are_refused_naming_the_field(
    stack: Stack, where: tuple[str, ...], value: Any, field: str
) -> None:
    event: dict[str, Any] = events.unpaid(events.account())
    *parents, leaf = where
    target = event
    for name in parents:
        target = target[name]
    target[leaf] = value

    answer = stack.post(event)

    assert answer.status_code == 422, answer.text
    assert [e["field"] for e in answer.json()["errors"]] == [field]


def test_a_usage_reading_is_finite_and_bounded(stack: Stack) -> None:
    acct = events.account()
    usage = {
        "event_id": f"u-{acct['account_no']}",
        "type": "usage.abnormal",
        "occurred_at": "2026-11-27T09:00:00+08:00",
        "account": acct,
        "usage": {
            "period_start": "2026-10-01",
            "period_end": "2026-10-31",
            "kwh": 1e308,  # finite, and no notice can print it
            "baseline_kwh": 300,
            "reason": "spike\u0007",
        },
    }

    answer = stack.post(usage)

    assert answer.status_code == 422
    assert sorted(e["field"] for e in answer.json()["errors"]) == ["usage.kwh", "usage.reason"]


def test_odd_unicode_in_a_name_is_refused_or_cleaned(stack: Stack) -> None:
    acct = events.account()
    bidi = events.unpaid({**acct, "name": "王小明\u202e"})
    answer = stack.post(bidi)
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == "account.name"
    # A lone surrogate is legal JSON (an escape) but not text.
    raw = json.dumps(events.unpaid({**acct, "name": "王\ud800"}))
    answer = stack.client.post(
        "/v1/events",
        content=raw,
        headers={**stack.producer, "Content-Type": "application/json"},
    )
    assert answer.status_code == 422
    assert "lone surrogate" in answer.json()["errors"][0]["message"]
    cleaned = events.unpaid({**acct, "name": "王\u200b小明", "address": "苗栗縣\n頭份市"})
    assert stack.post(cleaned).status_code == 202

    def stored() -> Account | None:
        # The worker writes the account when it processes the event.
        with stack.db() as session:
            return session.get(Account, acct["account_no"])

    account = wait_until(stored, timeout=60, what="the account")
    assert (account.name, account.address) == ("王小明", "苗栗縣 頭份市")


def test_a_batch_item_id_that_is_not_text_is_answered_not_crashed_on(stack: Stack) -> None:
    raw = json.dumps({"events": [{"event_id": "e-\ud800", "type": "bill.paid"}]})
    answer = stack.client.post(
        "/v1/events/batch",
        content=raw,
        headers={**stack.producer, "Content-Type": "application/json"},
    )
    assert answer.status_code == 200, answer.text
    [item] = answer.json()["results"]
    assert (item["event_id"], item["status"]) == ("e-\\ud800", "invalid")


@pytest.mark.parametrize(
    "url",
    [
        "/v1/deliveries/99999999999999999999",  # past SQLite's 64-bit integers
        "/v1/deliveries?cursor=7457016921",  # past PostgreSQL's 32-bit ids
        "/v1/deliveries?account_no=0123%00",  # PostgreSQL text cannot hold a NUL
        "/v1/deliveries?since=9999-12-31T23:59:59-14:00",  # UTC is past year 9999
    ],
)
def test_values_the_database_cannot_take_are_a_422_not_a_500(stack: Stack, url: str) -> None:
    answer = stack.client.get(url, headers=stack.ops)
    assert answer.status_code in {200, 404, 422}, answer.text
    if answer.status_code == 422:
        assert answer.json()["errors"][0]["field"] == "(request)"
