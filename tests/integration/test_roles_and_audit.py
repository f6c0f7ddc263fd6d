"""What each role sees once let in, and the audit trail of it; keys over HTTP; 422s masked.

The access matrix (``test_access_matrix.py``) says who passes each route's
check; these are the data rules inside: a producer's own events, an agent's
own cases with the contact each needs, personal data masked for ops and
unmasked, audited, for supervisors; the audit trail of exports, reassignments
and supervisors' outcomes; keys created, rotated and revoked from the shell.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from sqlmodel import col, select

from notifier.audit.models import AuditEntry
from notifier.auth import keys
from notifier.auth.models import ApiKey
from notifier.deliveries.models import Delivery, DeliveryChange
from notifier.escalation.agents import add_agent
from tests.integration.test_escalation_api import (
    auth,
    case_of,
    in_arrears,
    new_agent,
    new_area,
    processed,
    sweep_now,
)
from tests.support import events
from tests.support.stack import Stack
from tests.support.web import PASSWORD, Browser, csrf_token, new_user

pytestmark = pytest.mark.parametrize("stack", ["sqlite-filesystem"], indirect=True)


def key_of(stack: Stack, role: keys.Role, agent_id: int | None = None) -> tuple[str, str]:
    """A new key's header value and its audit name."""
    with stack.db() as session:
        row, key = keys.create_key(session, role=role, name=f"test {role}", agent_id=agent_id)
        return f"Bearer {key}", keys.actor_of(row)


def entries(stack: Stack, *, actor: str | None = None, after: int = 0) -> list[tuple[str, str]]:
    """(action, target) of the entries after id ``after``, oldest first."""
    with stack.db() as session:
        query = select(AuditEntry).where(col(AuditEntry.id) > after).order_by(col(AuditEntry.id))
        if actor is not None:
            query = query.where(AuditEntry.actor == actor)
        return [(e.action, e.target or "") for e in session.exec(query)]


def last_entry_id(stack: Stack) -> int:
    with stack.db() as session:
        return session.exec(select(AuditEntry.id).order_by(col(AuditEntry.id).desc())).first() or 0


# --- producers ------------------------------------------------------------------------------


def test_a_producer_reads_only_its_own_events(stack: Stack) -> None:
    mine, _ = key_of(stack, "producer")
    theirs, _ = key_of(stack, "producer")
    admin, _ = key_of(stack, "admin")
    event = events.unpaid(events.account())
    assert (
        stack.client.post("/v1/events", json=event, headers={"Authorization": mine}).status_code
        == 202
    )
    url = f"/v1/events/{event['event_id']}"

    assert stack.client.get(url, headers={"Authorization": mine}).status_code == 200
    # 404, as for an id never posted: another producer's ids are not even confirmed.
    assert stack.client.get(url, headers={"Authorization": theirs}).status_code == 404
    assert stack.client.get(url, headers={"Authorization": admin}).status_code == 200


# --- agents: own cases, the contact each needs ------------------------------------------------


def test_agents_work_only_their_own_cases_and_see_the_contact_each_needs(stack: Stack) -> None:
    area = new_area()
    caller_id, caller = new_agent(stack, area, "caller")
    field_id, field = new_agent(stack, area, "field", name="陳志明")
    call_acct = in_arrears(stack, area)
    visit_acct = in_arrears(stack, area, vulnerable=True)
    sweep_now(stack)
    call, visit = case_of(stack, call_acct["account_no"]), case_of(stack, visit_acct["account_no"])
    assert (call.assignee_id, visit.assignee_id) == (caller_id, field_id)

    own_call = stack.client.get(f"/v1/escalations/{call.id}", headers=caller).json()
    own_visit = stack.client.get(f"/v1/escalations/{visit.id}", headers=field).json()
    assert (own_call["phone"], own_call["address"]) == ("+886912345678", None)
    assert (own_visit["phone"], own_visit["address"]) == (None, "苗栗縣頭份市中正路1號")

    for method, path, body in (
        ("GET", f"/v1/escalations/{visit.id}", None),
        ("GET", f"/v1/escalations/{visit.id}/notice.pdf", None),
        ("POST", f"/v1/escalations/{visit.id}/outcome", {"outcome": "nobody_home"}),
    ):
        answer = stack.client.request(method, path, json=body, headers=caller)
        assert answer.status_code == 403, (path, answer.text)

    # An outcome's answer keeps to the contact the case needs, too.
    recorded = stack.client.post(
        f"/v1/escalations/{call.id}/outcome", json={"outcome": "no_answer"}, headers=caller
    ).json()
    assert (recorded["phone"], recorded["address"]) == ("+886912345678", None)

    # The same on the pages: another agent's case is refused.
    user = new_user(stack, "agent", agent_id=caller_id)
    with Browser(stack.base_url) as browser:
        browser.sign_in(user.username, PASSWORD)
        page = browser.get("/agent")
        assert "苗栗縣頭份市中正路1號" not in page.text  # a caller's list shows no addresses
        refused = browser.post(
            f"/agent/cases/{visit.id}/outcome",
            {"csrf_token": csrf_token(page.text), "outcome": "nobody_home"},
        )
        assert refused.status_code == 403
    assert case_of(stack, visit_acct["account_no"]).attempts == 0


def test_own_lists_need_a_linked_agent(stack: Stack) -> None:
    supervisor = {"Authorization": key_of(stack, "supervisor")[0]}
    mine = stack.client.get("/v1/escalations/mine", params={"kind": "call"}, headers=supervisor)
    assert mine.status_code == 403 and "not tied to an agent" in mine.text
    user = new_user(stack, "supervisor")
    with Browser(stack.base_url) as browser:
        browser.sign_in(user.username, PASSWORD)
        assert browser.get("/agent/export.csv").status_code == 403
        assert browser.get("/agent").status_code == 200  # every open case instead


# --- masked for ops, unmasked and audited for supervisors -------------------------------------


def test_ops_see_an_account_masked_and_supervisors_unmasked_each_view_audited(
    stack: Stack,
) -> None:
    acct = events.account(phone="+886912345678", email="wang.xiaoming@example.com")
    event = events.unpaid(acct)
    assert stack.post(event).status_code == 202
    processed(stack, [event["event_id"]])
    url = f"/v1/accounts/{acct['account_no']}"
    ops = {"Authorization": key_of(stack, "ops")[0]}
    header, supervisor_name = key_of(stack, "supervisor")
    supervisor = {"Authorization": header}
    before = last_entry_id(stack)

    masked = stack.client.get(url, headers=ops).json()
    assert (masked["phone"], masked["email"], masked["address"]) == (
        "+886 912 ***678",
        "w***@example.com",
        "苗栗縣頭份市…",
    )
    assert stack.client.get(url, params={"unmasked": "true"}, headers=ops).status_code == 403
    assert stack.client.get(url, headers=supervisor).json()["phone"] == "+886 912 ***678"
    assert entries(stack, after=before) == []

    full = stack.client.get(url, params={"unmasked": "true"}, headers=supervisor).json()
    assert (full["phone"], full["email"], full["address"]) == (
        "+886912345678",
        "wang.xiaoming@example.com",
        "苗栗縣頭份市中正路1號",
    )
    assert entries(stack, after=before) == [("pii.view", f"account {acct['account_no']}")]
    assert entries(stack, actor=supervisor_name, after=before) == [
        ("pii.view", f"account {acct['account_no']}")
    ]


def test_ops_see_provider_errors_with_numbers_and_emails_masked(stack: Stack) -> None:
    acct = events.account()
    event = events.unpaid(acct)
    assert stack.post(event).status_code == 202
    processed(stack, [event["event_id"]])
    quoted = "21211: The 'To' number +886912345678 is not valid; nor is wang.xiaoming@example.com"
    with stack.db() as session:
        delivery = session.exec(
            select(Delivery).where(Delivery.account_no == acct["account_no"])
        ).first()
        assert delivery is not None
        delivery.last_error = quoted
        session.add(delivery)
        session.add(
            DeliveryChange(
                delivery_id=delivery.id or 0,
                status="report",
                detail={"error": quoted, "provider_id": "<m1@mail.example>"},
            )
        )
    ops = {"Authorization": key_of(stack, "ops")[0]}

    shown = stack.client.get(f"/v1/deliveries/{delivery.id}", headers=ops).json()
    assert shown["last_error"] == (
        "21211: The 'To' number +886 912 ***678 is not valid; nor is w***@example.com"
    )
    assert shown["timeline"][-1]["detail"] == {
        "error": shown["last_error"],
        "provider_id": "<m1@mail.example>",  # an id, not a person
    }
    user = new_user(stack, "ops")
    with Browser(stack.base_url) as browser:
        browser.sign_in(user.username, PASSWORD)
        page = browser.get(f"/ops/notifications/{delivery.notification_id}").text
        log = browser.get("/ops", params={"q": acct["account_no"]}).text
    for text in (page, log):
        assert "+886912345678" not in text and "wang.xiaoming" not in text
        assert "+886 912 ***678" in text


def test_supervisors_views_exports_reassignments_and_outcomes_are_audited(stack: Stack) -> None:
    area = new_area()
    field_id, field = new_agent(stack, area, "field", name="陳志明")
    acct = in_arrears(stack, area, vulnerable=True)
    second = in_arrears(stack, area, vulnerable=True)
    sweep_now(stack)
    with stack.db() as session:
        other = add_agent(session, name="林建宏", area=area, kind="field")
    case, case2 = case_of(stack, acct["account_no"]), case_of(stack, second["account_no"])
    header, supervisor_name = key_of(stack, "supervisor")
    supervisor = {"Authorization": header}
    before = last_entry_id(stack)

    # The agent: its own case and list are not audited; downloads and notices are.
    assert stack.client.get(f"/v1/escalations/{case.id}", headers=field).status_code == 200
    listed = stack.client.get("/v1/escalations/mine", params={"kind": "visit"}, headers=field)
    assert listed.status_code == 200
    assert entries(stack, after=before) == []
    csv = stack.client.get(
        "/v1/escalations/mine", params={"kind": "visit", "format": "csv"}, headers=field
    )
    assert csv.status_code == 200
    assert stack.client.get("/v1/escalations/mine/notices.pdf", headers=field).status_code == 200
    assert (
        stack.client.get(f"/v1/escalations/{case.id}/notice.pdf", headers=field).status_code == 200
    )
    exports = entries(stack, after=before)
    assert exports == [
        ("list.export", f"agent {field_id}"),
        ("notices.export", f"agent {field_id}"),
        ("notices.export", f"case {case.id}"),
    ]

    # A supervisor: every unmasked view, reassignment and outcome on another's case.
    mark = last_entry_id(stack)
    assert (
        stack.client.get("/v1/escalations", params={"area": area}, headers=supervisor).status_code
        == 200
    )
    assert stack.client.get(f"/v1/escalations/{case.id}", headers=supervisor).status_code == 200
    moved = stack.client.post(
        f"/v1/escalations/{case2.id}/assign", json={"agent_id": other.id}, headers=supervisor
    )
    assert moved.status_code == 200, moved.text
    done = stack.client.post(
        f"/v1/escalations/{case.id}/outcome",
        json={"outcome": "notice_delivered"},
        headers=supervisor,
    )
    assert done.status_code == 200, done.text
    assert entries(stack, actor=supervisor_name, after=mark) == [
        ("pii.view", "escalations"),
        ("pii.view", f"case {case.id}"),
        ("case.reassigned", f"case {case2.id}"),
        ("case.outcome", f"case {case.id}"),
    ]
    # An agent's outcome on its own case is not.
    others = auth(stack, "agent", other.id)
    mark = last_entry_id(stack)
    own = stack.client.post(
        f"/v1/escalations/{case2.id}/outcome", json={"outcome": "nobody_home"}, headers=others
    )
    assert own.status_code == 200, own.text
    assert entries(stack, after=mark) == []


def test_the_pages_audit_supervisors_lists_downloads_notices_and_reassignments(
    stack: Stack,
) -> None:
    area = new_area()
    with stack.db() as session:
        field = add_agent(session, name="陳志明", area=area, kind="field")
    acct = in_arrears(stack, area, vulnerable=True)
    sweep_now(stack)
    with stack.db() as session:
        spare = add_agent(session, name="林建宏", area=area, kind="field")
    case = case_of(stack, acct["account_no"])
    agent_user = new_user(stack, "agent", agent_id=field.id)
    supervisor_user = new_user(stack, "supervisor")
    before = last_entry_id(stack)

    with Browser(stack.base_url) as browser:
        browser.sign_in(agent_user.username, PASSWORD)
        assert browser.get("/agent").status_code == 200
        assert browser.get("/agent/export.xlsx").status_code == 200
        assert browser.get("/agent/notices.pdf").status_code == 200
    with Browser(stack.base_url) as browser:
        browser.sign_in(supervisor_user.username, PASSWORD)
        page = browser.get("/agent", params={"area": area})
        assert "苗栗縣頭份市中正路1號" in page.text
        moved = browser.post(
            f"/agent/cases/{case.id}/assign",
            {"csrf_token": csrf_token(page.text), "agent_id": str(spare.id)},
        )
        assert moved.status_code == 303
        bad = browser.post(
            f"/agent/cases/{case.id}/assign",
            {"csrf_token": csrf_token(page.text), "agent_id": "not a number"},
        )
        assert bad.status_code == 303 and "problem=agent_id" in bad.headers["location"]

    got = [
        (action, target)
        for action, target in entries(stack, after=before)
        if not action.startswith("user.")
    ]
    assert got == [
        ("list.export", f"agent {field.id}"),
        ("notices.export", f"agent {field.id}"),
        ("pii.view", f"cases of area {area}"),
        ("case.reassigned", f"case {case.id}"),
    ]


# --- keys from the shell, over HTTP -----------------------------------------------------------


def test_keys_are_listed_rotated_and_revoked_at_once_and_each_change_audited(
    stack: Stack,
) -> None:
    created = stack.cli("keys", "create", "--role", "ops", "--name", "rotating ops")
    assert created.returncode == 0, created.stderr
    old_key = created.stdout.strip()
    old = {"Authorization": f"Bearer {old_key}"}
    with stack.db() as session:
        old_row = session.exec(
            select(ApiKey).where(ApiKey.key_hash == keys.hash_key(old_key))
        ).one()
    assert old_row.last_used_at is None
    assert stack.client.get("/v1/deliveries", headers=old).status_code == 200
    with stack.db() as session:
        used = session.get(ApiKey, old_row.id)
        assert used is not None and used.last_used_at is not None
        first_use = used.last_used_at
    assert stack.client.get("/v1/deliveries", headers=old).status_code == 200
    with stack.db() as session:
        assert session.get(ApiKey, old_row.id).last_used_at == first_use  # type: ignore[union-attr]

    listed = stack.cli("keys", "list")
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split("\t") == [
        "id", "prefix", "name", "role", "agent", "created", "expires", "last used", "state",
    ]  # fmt: skip
    mine = next(r.split("\t") for r in rows if r.startswith(f"{old_row.id}\t"))
    assert mine[2:5] == ["rotating ops", "ops", "-"] and mine[6] == "never"
    assert mine[7] != "never" and mine[8] == "active"

    # A rotation with a grace period: both work, until the old one's hour is up.
    graced = stack.cli("keys", "rotate", str(old_row.id), "--grace-hours", "1")
    assert graced.returncode == 0, graced.stderr
    second = {"Authorization": f"Bearer {graced.stdout.strip()}"}
    assert stack.client.get("/v1/deliveries", headers=second).status_code == 200
    assert stack.client.get("/v1/deliveries", headers=old).status_code == 200
    listed = stack.cli("keys", "list").stdout
    assert f"{old_row.id}\t" in listed and "(rotated)" in listed

    # Revoked: refused at the very next request.
    revoked = stack.cli("keys", "revoke", str(old_row.id))
    assert revoked.returncode == 0, revoked.stderr
    assert stack.client.get("/v1/deliveries", headers=old).status_code == 401

    # A rotation at once: the new key works, the one it replaces does not.
    with stack.db() as session:
        second_id = session.exec(
            select(ApiKey.id).where(ApiKey.key_hash == keys.hash_key(graced.stdout.strip()))
        ).one()
    rotated = stack.cli("keys", "rotate", str(second_id), "--expires-days", "30")
    assert rotated.returncode == 0, rotated.stderr
    third = {"Authorization": f"Bearer {rotated.stdout.strip()}"}
    assert stack.client.get("/v1/deliveries", headers=second).status_code == 401
    assert stack.client.get("/v1/deliveries", headers=third).status_code == 200
    assert stack.cli("keys", "rotate", str(second_id)).returncode != 0  # no longer live

    trail = stack.cli("audit", "--actor", "cli", "--action", "key.rotated", "--limit", "2")
    assert trail.returncode == 0, trail.stderr
    lines = [line.split("\t") for line in trail.stdout.splitlines()[1:]]
    assert [(line[2], line[3], line[4]) for line in lines] == [
        ("cli", "key.rotated", f"key {second_id} (rotating ops)"),
        ("cli", "key.rotated", f"key {old_row.id} (rotating ops)"),
    ]
    assert int(lines[0][0]) > int(lines[1][0])  # newest first
    actions = [a for a, t in entries(stack, actor="cli") if "(rotating ops)" in t]
    assert actions == [
        "key.created",
        "key.created", "key.revoked", "key.rotated",
        "key.revoked",
        "key.created", "key.revoked", "key.rotated",
    ]  # fmt: skip


def test_list_pulls_from_the_shell_are_audited(stack: Stack) -> None:
    area = new_area()
    agent_id, _ = new_agent(stack, area, "caller")
    before = last_entry_id(stack)
    pulled = stack.cli("calls", "pull", "--agent", str(agent_id))
    assert pulled.returncode == 0, pulled.stderr
    assert entries(stack, actor="cli", after=before) == [("list.export", f"agent {agent_id}")]
    since = stack.cli("audit", "--action", "list.export", "--since", "2000-01-01")
    assert f"\tcli\tlist.export\tagent {agent_id}\t" in since.stdout


# --- 422s echo no personal data ---------------------------------------------------------------

BAD_PHONE = "+886 912 345 678 999"
BAD_EMAIL = "wang.xiaoming@@example.com"


@pytest.mark.parametrize(
    ("fields", "bad"),
    [({"phone": BAD_PHONE}, BAD_PHONE), ({"email": BAD_EMAIL}, BAD_EMAIL)],
    ids=["phone", "email"],
)
def test_a_refused_phone_or_email_is_not_echoed_in_the_answer_or_the_log(
    stack: Stack, fields: dict[str, Any], bad: str, caplog: pytest.LogCaptureFixture
) -> None:
    event = events.unpaid(events.account(**fields))
    caplog.set_level(logging.DEBUG)

    single = stack.post(event)
    batch = stack.post_batch([event])

    assert single.status_code == 422
    field = f"account.{next(iter(fields))}"
    assert [e["field"] for e in single.json()["errors"]] == [field]
    assert batch.status_code == 200
    assert [e["field"] for e in batch.json()["results"][0]["errors"]] == [f"events[0].{field}"]
    for text in (single.text, batch.text, caplog.text):
        assert bad not in text
        assert bad.replace(" ", "") not in text
        assert "wang.xiaoming" not in text
