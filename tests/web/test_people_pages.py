"""Protected customers and spoken languages on the agents' cards and downloads; supervisors
see who waits for capacity and add a protection."""

from __future__ import annotations

import re

from sqlmodel import select

from notifier.audit.models import AuditEntry
from notifier.escalation.agents import add_agent
from tests.integration.test_escalation_api import case_of, in_arrears, new_area, sweep_now
from tests.support.stack import Stack
from tests.support.tables import read_table
from tests.support.web import PASSWORD, Browser, csrf_token, new_user
from tests.web.test_agent_pages import agent_browser


def card(html: str, case_id: int | None) -> str:
    """The one case's card of a list page."""
    found = re.search(rf'<li class="card case" id="case-{case_id}">.*?</li>', html, re.S)
    assert found, f"no card for case {case_id}"
    return found.group(0)


def test_the_card_and_the_download_show_the_protection_and_the_language(stack: Stack) -> None:
    area = new_area()
    _, browser = agent_browser(stack, area, "field")
    acct = in_arrears(stack, area, protections=["life_support"], spoken_language="nan")
    plain = in_arrears(stack, area, phone=None)
    sweep_now(stack)
    case, other = case_of(stack, acct["account_no"]), case_of(stack, plain["account_no"])

    with browser:
        page = browser.get("/agent")
        xlsx = browser.get("/agent/export.xlsx")
        browser.client.cookies.set("lang", "en")
        english = browser.get("/agent")

    shown = card(page.text, case.id)
    assert '<span class="protection protection-life_support">維生器材</span>' in shown
    assert '<dd class="spoken-language">台語</dd>' in shown
    assert "保護對象" in shown
    assert "protection" not in card(page.text, other.id)
    assert "life support" in card(english.text, case.id)
    assert "Taiwanese Hokkien" in card(english.text, case.id)
    header, *rows = read_table(xlsx.content, "xlsx")
    assert header[-2:] == ["protections", "spoken language"]
    by_account = {r[1]: r for r in rows}
    assert by_account[acct["account_no"]][-2:] == ["維生器材", "台語"]
    assert by_account[plain["account_no"]][-2:] == ["", ""]


def test_a_supervisor_sees_who_waits_for_capacity_and_adds_a_protection(stack: Stack) -> None:
    area = new_area()
    with stack.db() as session:
        add_agent(session, name="林建宏", area=area, kind="caller", daily_capacity=1)
    in_arrears(stack, area, amounts=(9000, 1000))  # the larger debt takes today's one place
    waiting = in_arrears(stack, area)
    sweep_now(stack)
    case = case_of(stack, waiting["account_no"])
    assert case.assignee_id is None and case.capacity_wait_since is not None
    supervisor = new_user(stack, "supervisor")

    with Browser(stack.base_url) as browser:
        browser.sign_in(supervisor.username, PASSWORD)
        page = browser.get("/agent", params={"waiting": "true", "area": area})
        assert [int(n) for n in re.findall(r'id="case-(\d+)"', page.text)] == [case.id]
        since = case.capacity_wait_since.isoformat()
        assert f"自 {since} 起等待人力" in card(page.text, case.id)

        added = browser.post(
            f"/agent/accounts/{waiting['account_no']}/protections",
            {"csrf_token": csrf_token(page.text), "protection": "elderly",
             "case_id": str(case.id), "back": f"/agent?waiting=true&area={area}"},
        )  # fmt: skip
        assert added.status_code == 303, added.text
        after = browser.get(added.headers["location"])
        refused = browser.post(
            f"/agent/accounts/{waiting['account_no']}/protections",
            {"csrf_token": csrf_token(page.text), "protection": "vip", "case_id": str(case.id)},
        )
    assert f"帳號 {waiting['account_no']} 已新增保護類別" in after.text
    assert "高齡" in card(after.text, case.id)
    assert "problem=protection" in refused.headers["location"]
    with stack.db() as session:
        [entry] = session.exec(
            select(AuditEntry).where(
                AuditEntry.action == "account.protections",
                AuditEntry.target == f"account {waiting['account_no']}",
            )
        ).all()
    assert entry.actor == f"user {supervisor.id} ({supervisor.username})"
    assert entry.detail is not None and entry.detail["added"] == ["elderly"]
