"""Agents and supervisors over HTTP: lists, exports, outcomes, notices, the sweep on demand.

The billing system posts the bills through the real stack (API → broker →
worker); dates are counted back from today in Asia/Taipei, because the API
works on the business date it is.
"""

from __future__ import annotations

import io
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pypdf import PdfReader
from sqlmodel import col, select

from notifier.auth import keys
from notifier.escalation.agents import add_agent
from notifier.escalation.models import Escalation
from notifier.escalation.sweep import sweep
from notifier.events.models import Event, EventStatus
from tests.support import events
from tests.support.stack import Stack, wait_until
from tests.support.tables import read_table

TODAY = datetime.now(ZoneInfo("Asia/Taipei")).date()


def auth(stack: Stack, role: keys.Role, agent_id: int | None = None) -> dict[str, str]:
    with stack.db() as session:
        _, key = keys.create_key(session, role=role, name=f"test {role}", agent_id=agent_id)
    return {"Authorization": f"Bearer {key}"}


def new_agent(
    stack: Stack, area: str, kind: str, name: str = "林建宏"
) -> tuple[int, dict[str, str]]:
    """An agent of ``area`` and a key tied to them."""
    with stack.db() as session:
        agent = add_agent(session, name=name, area=area, kind=kind)
    assert agent.id is not None
    return agent.id, auth(stack, "agent", agent.id)


def in_arrears(
    stack: Stack, area: str, *, amounts: tuple[int, int] = (1830, 2140), **account: Any
) -> dict[str, Any]:
    """An account whose older bill was still unpaid when the newer one fell due yesterday."""
    acct = events.account(area=area, **account)
    posted = []
    for months_back, amount in zip((2, 0), amounts, strict=True):
        due = TODAY - timedelta(days=1 + 61 * months_back // 2)
        event = events.unpaid(acct, period=f"2026-{11 - months_back:02d}", due=due, amount=amount)
        event["type"] = "bill.issued"
        event.pop("level")
        assert stack.post(event).status_code == 202
        posted.append(event["event_id"])
    processed(stack, posted)
    return acct


def processed(stack: Stack, event_ids: list[str]) -> None:
    def done() -> bool:
        with stack.db() as session:
            statuses = session.exec(
                select(Event.status).where(col(Event.event_id).in_(event_ids))
            ).all()
        return len(statuses) == len(event_ids) and all(s == EventStatus.PROCESSED for s in statuses)

    wait_until(done, timeout=60, what=f"events {event_ids} processed")


def sweep_now(stack: Stack) -> None:
    rt = stack.runtime
    sweep(rt.db, rt.policy.escalation, TODAY, trigger="test")


def case_of(stack: Stack, account_no: str) -> Escalation:
    with stack.db() as session:
        return session.exec(
            select(Escalation)
            .where(Escalation.account_no == account_no)
            .order_by(col(Escalation.id).desc())
        ).first()  # type: ignore[return-value]


def new_area() -> str:
    return f"area-{events.new_account_no()}"


def test_an_agent_pulls_the_call_list_largest_arrears_first(stack: Stack) -> None:
    area = new_area()
    agent_id, agent = new_agent(stack, area, "caller")
    small = in_arrears(stack, area, amounts=(500, 600))
    large = in_arrears(stack, area, amounts=(9000, 1000))
    sweep_now(stack)

    answer = stack.client.get("/v1/escalations/mine", params={"kind": "call"}, headers=agent)

    assert answer.status_code == 200, answer.text
    listed = answer.json()
    assert (listed["agent_id"], listed["day"], listed["count"]) == (agent_id, TODAY.isoformat(), 2)
    first, second = listed["items"]
    assert [first["account_no"], second["account_no"]] == [large["account_no"], small["account_no"]]
    assert (first["total"], first["phone"], first["address"]) == (10000, "+886912345678", None)
    assert [b["amount"] for b in first["bills"]] == [9000, 1000]
    assert first["days_overdue"] == (TODAY - date.fromisoformat(first["bills"][0]["due_date"])).days
    assert first["attempts"] == []


@pytest.mark.parametrize("fmt", ["csv", "xlsx", "ods"])
def test_the_exports_hold_the_same_rows_as_the_json(stack: Stack, fmt: str) -> None:
    area = new_area()
    _, agent = new_agent(stack, area, "caller")
    for amounts in ((700, 800), (5000, 100), (2500, 2500)):
        in_arrears(stack, area, amounts=amounts, name='=HYPERLINK("http://x")')
    sweep_now(stack)
    listed = stack.client.get("/v1/escalations/mine", params={"kind": "call"}, headers=agent)

    answer = stack.client.get(
        "/v1/escalations/mine", params={"kind": "call", "format": fmt}, headers=agent
    )

    assert answer.status_code == 200, answer.text
    assert f".{fmt}" in answer.headers["content-disposition"]
    header, *rows = read_table(answer.content, fmt)  # type: ignore[arg-type]
    assert header[:4] == ["case", "account", "name", "phone"]
    items = listed.json()["items"]
    assert [(int(r[0]), r[1], r[3], int(float(r[5]))) for r in rows] == [
        (i["id"], i["account_no"], "0912 345 678", i["total"]) for i in items
    ]
    # A name that looks like a formula is text in every format, never evaluated.
    assert all(r[2] == '\'=HYPERLINK("http://x")' for r in rows)


def test_outcomes_move_the_case_and_only_its_agent_may_record_them(stack: Stack) -> None:
    area = new_area()
    _, mine = new_agent(stack, area, "caller")
    _, other = new_agent(stack, new_area(), "caller")
    field_id, _ = new_agent(stack, area, "field", name="陳志明")
    acct = in_arrears(stack, area)
    sweep_now(stack)
    case = case_of(stack, acct["account_no"])
    url = f"/v1/escalations/{case.id}/outcome"

    assert stack.client.post(url, json={"outcome": "no_answer"}, headers=other).status_code == 403
    bad = stack.client.post(url, json={"outcome": "notice_delivered"}, headers=mine)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "outcome"
    no_date = stack.client.post(url, json={"outcome": "promised"}, headers=mine)
    assert no_date.status_code == 422 and no_date.json()["errors"][0]["field"] == "promise_date"

    too_far = (TODAY + timedelta(days=60)).isoformat()  # past 14 business days
    far = stack.client.post(
        url, json={"outcome": "promised", "promise_date": too_far}, headers=mine
    )
    assert far.status_code == 422 and far.json()["errors"][0]["field"] == "promise_date"

    flipped = stack.client.post(
        url, json={"outcome": "no_answer", "note": "響鈴\u202e無人接"}, headers=mine
    )  # a bidi override turns what the next reader sees around
    assert flipped.status_code == 422 and flipped.json()["errors"][0]["field"] == "note"

    for outcome in ("no_answer", "no_answer"):  # twice in a moment: one try
        answer = stack.client.post(
            url, json={"outcome": outcome, "note": "響鈴無人接"}, headers=mine
        )
        assert answer.status_code == 200, answer.text
    call = answer.json()
    assert (call["kind"], call["failed_calls"], call["next_call_at"] is not None) == (
        "call", 1, True,
    )  # fmt: skip
    answer = stack.client.post(url, json={"outcome": "wrong_number"}, headers=mine)
    visit = answer.json()
    assert (visit["kind"], visit["assignee_id"], visit["failed_calls"]) == ("visit", field_id, 2)
    assert [a["outcome"] for a in visit["attempts"]] == ["no_answer", "no_answer", "wrong_number"]
    assert visit["phone_invalid"] is True
    # Now a field agent's case: the caller may no longer touch it.
    assert stack.client.post(url, json={"outcome": "refused"}, headers=mine).status_code == 403

    supervisor = auth(stack, "supervisor")
    seen = stack.client.get(f"/v1/escalations/{case.id}", headers=supervisor).json()
    assert (seen["phone"], seen["phone_invalid"]) == (acct["phone"], True)
    done = stack.client.post(url, json={"outcome": "notice_delivered"}, headers=supervisor)
    assert (done.status_code, done.json()["status"]) == (200, "done")
    again = stack.client.post(url, json={"outcome": "paid"}, headers=supervisor)
    assert again.status_code == 409


def test_a_payment_posted_by_billing_closes_the_case(stack: Stack) -> None:
    area = new_area()
    _, agent = new_agent(stack, area, "caller")
    acct = in_arrears(stack, area, amounts=(1830, 2140))
    sweep_now(stack)
    with stack.db() as session:
        from notifier.billing.models import Bill

        bills = session.exec(
            select(Bill).where(Bill.account_no == acct["account_no"]).order_by(col(Bill.due_date))
        ).all()
    for bill in bills:
        paid = events.paid(acct)
        paid["bill"] = {
            "bill_no": bill.bill_no, "period": bill.period, "amount": bill.amount,
            "due_date": bill.due_date.isoformat(),
        }  # fmt: skip
        assert stack.post(paid).status_code == 202
        processed(stack, [paid["event_id"]])

    case = case_of(stack, acct["account_no"])
    assert (case.status, case.outcome) == ("done", "paid")
    listed = stack.client.get("/v1/escalations/mine", params={"kind": "call"}, headers=agent)
    assert listed.json()["items"] == []


def test_supervisors_see_the_unassigned_reassign_and_count(stack: Stack) -> None:
    area = new_area()
    acct = in_arrears(stack, area)
    sweep_now(stack)
    supervisor = auth(stack, "supervisor")
    case = case_of(stack, acct["account_no"])

    waiting = stack.client.get(
        "/v1/escalations", params={"unassigned": "true", "area": area}, headers=supervisor
    )
    assert [c["id"] for c in waiting.json()["items"]] == [case.id]
    stats = stack.client.get("/v1/escalations/stats", headers=supervisor).json()
    assert stats["open_by_area"][area] == {
        "call": 1, "visit": 0, "unassigned": 1, "waiting_for_capacity": 0,
    }  # fmt: skip

    agent_id, agent = new_agent(stack, area, "caller")
    field_id, _ = new_agent(stack, area, "field")
    wrong_kind = stack.client.post(
        f"/v1/escalations/{case.id}/assign", json={"agent_id": field_id}, headers=supervisor
    )
    assert wrong_kind.status_code == 422 and wrong_kind.json()["errors"][0]["field"] == "agent_id"
    moved = stack.client.post(
        f"/v1/escalations/{case.id}/assign", json={"agent_id": agent_id}, headers=supervisor
    )
    assert moved.status_code == 200 and moved.json()["assignee_id"] == agent_id

    mine = stack.client.get("/v1/escalations/mine", params={"kind": "call"}, headers=agent)
    assert [c["id"] for c in mine.json()["items"]] == [case.id]
    detail = stack.client.get(f"/v1/escalations/{case.id}", headers=supervisor).json()
    assert [h["change"] for h in detail["history"]] == ["opened", "reassigned"]
    agents = stack.client.get("/v1/agents", params={"area": area}, headers=supervisor).json()
    assert {(a["id"], a["open_cases"]) for a in agents} == {(agent_id, 1), (field_id, 0)}


def test_field_agents_print_their_days_notices(stack: Stack) -> None:
    area = new_area()
    _, agent = new_agent(stack, area, "field", name="陳志明")
    first = in_arrears(stack, area, vulnerable=True, name="王小明")
    second = in_arrears(stack, area, phone=None, name="李美玲")
    sweep_now(stack)

    day = stack.client.get("/v1/escalations/mine/notices.pdf", headers=agent)

    assert day.status_code == 200, day.text
    assert day.headers["content-type"] == "application/pdf"
    pages = [page.extract_text() for page in PdfReader(io.BytesIO(day.content)).pages]
    assert len(pages) == 2
    text = "\n".join(pages)
    assert "王小明" in text and "李美玲" in text and "陳志明" in text
    assert "NT$3,970" in text  # 1,830 + 2,140: the total of the two bills

    assert first["account_no"] in text and second["account_no"] in text

    case = case_of(stack, first["account_no"])
    one = stack.client.get(f"/v1/escalations/{case.id}/notice.pdf", headers=agent)
    assert one.status_code == 200 and len(PdfReader(io.BytesIO(one.content)).pages) == 1
    for day in (TODAY - timedelta(days=1), TODAY + timedelta(days=8)):
        late = stack.client.get(
            "/v1/escalations/mine/notices.pdf", params={"day": day.isoformat()}, headers=agent
        )
        assert late.status_code == 422, late.text
        assert late.json()["errors"][0]["field"] == "query.day"
    week = (TODAY + timedelta(days=7)).isoformat()
    ahead = stack.client.get(
        f"/v1/escalations/{case.id}/notice.pdf", params={"day": week}, headers=agent
    )
    assert ahead.status_code == 200


def test_an_admin_runs_the_sweep_over_http_and_watches_it(stack: Stack) -> None:
    area = new_area()
    acct = in_arrears(stack, area)
    admin = auth(stack, "admin")

    started = stack.client.post(
        "/v1/escalations/sweeps", json={"as_of": TODAY.isoformat()}, headers=admin
    )

    assert started.status_code == 202, started.text
    run_id = started.json()["id"]
    finished = wait_until(
        lambda: (
            (r := stack.client.get(f"/v1/escalations/sweeps/{run_id}", headers=admin).json())[
                "status"
            ]
            in {"done", "failed"}
            and r
        ),
        timeout=60,
        what=f"sweep run {run_id}",
    )
    assert finished["status"] == "done", finished
    assert finished["accounts"] >= 1 and finished["checked"] == finished["accounts"]
    assert case_of(stack, acct["account_no"]) is not None


@pytest.mark.parametrize(
    ("role", "method", "path"),
    [
        ("producer", "GET", "/v1/escalations/mine?kind=call"),
        ("ops", "GET", "/v1/escalations"),
        ("agent", "GET", "/v1/escalations"),
        ("agent", "POST", "/v1/escalations/sweeps"),
        ("supervisor", "POST", "/v1/escalations/sweeps"),
        ("agent", "GET", "/v1/agents"),
    ],
)
def test_keys_without_the_role_are_refused(
    stack: Stack, role: keys.Role, method: str, path: str
) -> None:
    agent_id = new_agent(stack, new_area(), "caller")[0] if role == "agent" else None
    headers = auth(stack, role, agent_id)
    answer = stack.client.request(
        method, path, headers=headers, json={} if method == "POST" else None
    )
    assert answer.status_code == 403, answer.text


def test_a_retried_outcome_with_the_same_idempotency_key_counts_once(stack: Stack) -> None:
    area = new_area()
    _, agent = new_agent(stack, area, "caller")
    acct = in_arrears(stack, area)
    sweep_now(stack)
    case = case_of(stack, acct["account_no"])
    url = f"/v1/escalations/{case.id}/outcome"
    retried = {**agent, "Idempotency-Key": "call-2026-11-27-0001"}

    first = stack.client.post(url, json={"outcome": "no_answer"}, headers=retried)
    again = stack.client.post(url, json={"outcome": "no_answer"}, headers=retried)
    other = stack.client.post(url, json={"outcome": "no_answer"}, headers=agent)

    assert [r.status_code for r in (first, again, other)] == [200, 200, 200]
    assert [len(r.json()["attempts"]) for r in (first, again, other)] == [1, 1, 2]
    # Two calls recorded, but the second came within call_retry_hours: one try counted.
    case = case_of(stack, acct["account_no"])
    assert (case.attempts, case.failed_calls) == (2, 1)
