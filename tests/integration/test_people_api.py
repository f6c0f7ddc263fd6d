"""Protections, spoken languages and agents' capacity over HTTP: what the producer sends, what
supervisors add and see, what admins set; bad input is a 422 naming the field."""

from __future__ import annotations

from sqlmodel import select

from notifier.accounts.models import Account
from notifier.audit.models import AuditEntry
from notifier.escalation.models import Agent
from tests.integration.test_escalation_api import (
    auth,
    case_of,
    in_arrears,
    new_agent,
    new_area,
    sweep_now,
)
from tests.support import events
from tests.support.stack import Stack


def test_the_producers_protections_and_language_reach_the_case_json(stack: Stack) -> None:
    area = new_area()
    _, agent = new_agent(stack, area, "field")
    acct = in_arrears(stack, area, protections=["elderly", "life_support"], spoken_language="hak")
    sweep_now(stack)
    case = case_of(stack, acct["account_no"])

    mine = stack.client.get("/v1/escalations/mine", params={"kind": "visit"}, headers=agent)
    one = stack.client.get(f"/v1/escalations/{case.id}", headers=agent)

    [item] = mine.json()["items"]
    # Stored in the vocabulary's order whatever order the producer used; a protection is a visit.
    assert (item["kind"], item["protections"], item["spoken_language"]) == (
        "visit", ["life_support", "elderly"], "hak",
    )  # fmt: skip
    assert one.json()["protections"] == ["life_support", "elderly"]


def test_an_unknown_protection_or_language_is_a_422_and_nothing_is_stored(stack: Stack) -> None:
    for field, value, path in (
        ("protections", ["life_support", "vip"], "account.protections[1]"),
        ("spoken_language", "tw", "account.spoken_language"),
    ):
        acct = events.account(area=new_area(), **{field: value})
        answer = stack.post(events.unpaid(acct))
        assert answer.status_code == 422, answer.text
        assert [e["field"] for e in answer.json()["errors"]] == [path]
        with stack.db() as session:
            assert session.get(Account, acct["account_no"]) is None


def test_a_supervisor_adds_a_protection_and_it_is_audited(stack: Stack) -> None:
    area = new_area()
    acct = in_arrears(stack, area)
    supervisor, ops = auth(stack, "supervisor"), auth(stack, "ops")
    url = f"/v1/accounts/{acct['account_no']}/protections"

    added = stack.client.post(url, json={"protections": ["disabled"]}, headers=supervisor)
    unknown = stack.client.post(url, json={"protections": ["vip"]}, headers=supervisor)
    nobody = stack.client.post(
        f"/v1/accounts/{events.new_account_no()}/protections",
        json={"protections": ["elderly"]},
        headers=supervisor,
    )
    not_allowed = stack.client.post(url, json={"protections": ["elderly"]}, headers=ops)

    assert added.status_code == 200, added.text
    assert added.json() == {
        "account_no": acct["account_no"], "protections": ["disabled"],
        "added_by_supervisors": ["disabled"],
    }  # fmt: skip
    assert unknown.status_code == 422
    assert [e["field"] for e in unknown.json()["errors"]] == ["protections[0]"]
    assert (nobody.status_code, not_allowed.status_code) == (404, 403)
    shown = stack.client.get(f"/v1/accounts/{acct['account_no']}", headers=ops)
    assert shown.json()["protections"] == ["disabled"]
    with stack.db() as session:
        [entry] = session.exec(
            select(AuditEntry).where(
                AuditEntry.action == "account.protections",
                AuditEntry.target == f"account {acct['account_no']}",
            )
        ).all()
    assert entry.detail is not None and entry.detail["added"] == ["disabled"]


def test_admins_add_and_change_agents_with_capacity_and_languages(stack: Stack) -> None:
    admin, supervisor = auth(stack, "admin"), auth(stack, "supervisor")
    area = new_area()
    body = {"name": "阮氏蘭", "area": area, "kind": "caller", "daily_capacity": 40,
            "languages": ["vi", "zh-TW"]}  # fmt: skip

    created = stack.client.post("/v1/agents", json=body, headers=admin)
    assert created.status_code == 201, created.text
    agent = created.json()
    assert (agent["daily_capacity"], agent["languages"]) == (40, ["zh-TW", "vi"])
    changed = stack.client.patch(
        f"/v1/agents/{agent['id']}", json={"daily_capacity": None}, headers=admin
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["daily_capacity"], changed.json()["languages"]) == (
        None,
        ["zh-TW", "vi"],
    )
    listed = stack.client.get("/v1/agents", params={"area": area}, headers=supervisor).json()
    assert [(a["id"], a["daily_capacity"]) for a in listed] == [(agent["id"], None)]

    for bad, field in (
        ({**body, "languages": ["fr"]}, "languages[0]"),
        ({**body, "daily_capacity": 0}, "daily_capacity"),
    ):
        refused = stack.client.post("/v1/agents", json=bad, headers=admin)
        assert refused.status_code == 422, refused.text
        assert [e["field"] for e in refused.json()["errors"]] == [field]
    assert stack.client.post("/v1/agents", json=body, headers=supervisor).status_code == 403
    # The same person posted twice (a script run again) is refused; a namesake is let in.
    again = stack.client.post("/v1/agents", json=body, headers=admin)
    assert again.status_code == 422 and again.json()["errors"][0]["field"] == "name", again.text
    assert f"agent {agent['id']} has that name" in again.text
    namesake = stack.client.post(
        "/v1/agents", json={**body, "allow_duplicate": True}, headers=admin
    )
    assert namesake.status_code == 201, namesake.text
    missing = stack.client.patch("/v1/agents/999999", json={"languages": ["en"]}, headers=admin)
    assert missing.status_code == 404
    with stack.db() as session:
        # The first and the namesake; nothing of the refused posts.
        assert len(session.exec(select(Agent).where(Agent.area == area)).all()) == 2
