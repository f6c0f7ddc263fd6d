"""The producer contract at the door: keys, bad input, duplicates under concurrency."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlmodel import func, select

from notifier.accounts.models import Account
from notifier.events.models import Event
from tests.support import events
from tests.support.stack import Stack


def _set(event: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    target = event
    *parents, last = path.split(".")
    for part in parents:
        target = target[part]
    if value is _DROP:
        target.pop(last)
    else:
        target[last] = value
    return event


_DROP = object()
BAD_INPUT = [
    ("account.phone", "12345"),
    ("account.email", "not-an-email"),
    ("account.account_no", "12-34"),
    ("bill.due_date", "2026-13-40"),
    ("bill.amount", -5),
    ("type", "bill.forgotten"),
    ("bill", _DROP),
    ("occurred_at", "2026-11-27T09:00:00"),
]


@pytest.mark.parametrize(("field", "value"), BAD_INPUT, ids=[f for f, _ in BAD_INPUT])
def test_bad_input_is_refused_naming_the_field_and_nothing_is_stored(
    stack: Stack, field: str, value: Any
) -> None:
    acct = events.account()
    event = _set(events.unpaid(acct), field, value)
    answer = stack.post(event)
    assert answer.status_code == 422, answer.text
    assert field in [error["field"] for error in answer.json()["errors"]]
    with stack.db() as session:
        assert (
            session.exec(select(func.count()).where(Event.event_id == event["event_id"])).one() == 0
        )
        assert session.get(Account, acct["account_no"]) is None


def test_concurrent_posts_of_one_event_accept_it_once(stack: Stack) -> None:
    event = events.unpaid(events.account(push_tokens=None, email=None))
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda _: stack.post(event), range(16)))
    codes = sorted(a.status_code for a in answers)
    assert codes == [200] * 15 + [202]
    stack.settled(event["account"]["account_no"], count=1)
    assert len(stack.deliveries(event["account"]["account_no"])) == 1


def test_keys_are_checked_and_roles_kept_apart(stack: Stack) -> None:
    event = events.unpaid(events.account())
    assert stack.client.post("/v1/events", json=event).status_code == 401
    wrong = {"Authorization": "Bearer ntf_not-a-key"}
    assert stack.client.post("/v1/events", json=event, headers=wrong).status_code == 401
    # ops reads the log but cannot post; a producer posts but cannot read the log
    assert stack.client.post("/v1/events", json=event, headers=stack.ops).status_code == 403
    assert stack.client.get("/v1/deliveries", headers=stack.producer).status_code == 403
    assert stack.client.get("/v1/deliveries", headers=stack.ops).status_code == 200


def test_the_delivery_log_pages_and_filters(stack: Stack) -> None:
    acct = events.account()
    stack.post(events.unpaid(acct, level=2))
    stack.settled(acct["account_no"], count=4)
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"account_no": acct["account_no"], "limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = stack.client.get("/v1/deliveries", params=params, headers=stack.ops).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 4 and seen == sorted(seen, reverse=True)
    voice = stack.client.get(
        "/v1/deliveries",
        params={"account_no": acct["account_no"], "channel": "voice"},
        headers=stack.ops,
    ).json()["items"]
    assert [item["channel"] for item in voice] == ["voice"]
    detail = stack.client.get(f"/v1/deliveries/{voice[0]['id']}", headers=stack.ops).json()
    assert [change["status"] for change in detail["timeline"]] == ["queued", "sending", "delivered"]
    assert detail["to"] == "+886 912 ***678"
    account = stack.client.get(f"/v1/accounts/{acct['account_no']}", headers=stack.ops).json()
    assert account["arrears"] == 1830 and account["email"].startswith("c***@")
