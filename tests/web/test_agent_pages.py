"""Agents and supervisors on the web pages: today's list, an outcome, exports, notices, reassigning."""

from __future__ import annotations

import io
import re

from pypdf import PdfReader

from notifier.escalation.agents import add_agent
from tests.integration.test_escalation_api import case_of, in_arrears, new_area, sweep_now
from tests.support.stack import Stack
from tests.support.tables import read_table
from tests.support.web import PASSWORD, Browser, csrf_token, new_user


def agent_browser(stack: Stack, area: str, kind: str) -> tuple[int, Browser]:
    with stack.db() as session:
        agent = add_agent(session, name="林建宏", area=area, kind=kind)
    assert agent.id is not None
    user = new_user(stack, "agent", agent_id=agent.id)
    browser = Browser(stack.base_url)
    assert browser.sign_in(user.username, PASSWORD).status_code == 303
    return agent.id, browser


def test_an_agent_records_an_outcome_and_the_case_leaves_the_list(stack: Stack) -> None:
    area = new_area()
    _, browser = agent_browser(stack, area, "caller")
    first = in_arrears(stack, area, name="王小明")
    second = in_arrears(stack, area, name="李美玲")
    sweep_now(stack)
    case = case_of(stack, first["account_no"])

    with browser:
        page = browser.get("/agent")
        assert page.status_code == 200, page.text
        assert "王小明" in page.text and "李美玲" in page.text
        assert 'href="tel:+886912345678"' in page.text

        saved = browser.post(
            f"/agent/cases/{case.id}/outcome",
            {"csrf_token": csrf_token(page.text), "outcome": "refused", "note": "說電表有問題"},
        )
        assert saved.status_code == 303, saved.text
        after = browser.get(saved.headers["location"])
        assert f'id="case-{case.id}"' not in after.text
        assert second["account_no"] in after.text

        forged = browser.post(f"/agent/cases/{case.id}/outcome", {"outcome": "paid"})
        assert forged.status_code == 403


def test_a_promise_without_a_date_is_not_saved_and_says_why(stack: Stack) -> None:
    area = new_area()
    _, browser = agent_browser(stack, area, "caller")
    acct = in_arrears(stack, area)
    sweep_now(stack)
    case = case_of(stack, acct["account_no"])

    with browser:
        page = browser.get("/agent")
        answer = browser.post(
            f"/agent/cases/{case.id}/outcome",
            {"csrf_token": csrf_token(page.text), "outcome": "promised"},
        )
        shown = browser.get(answer.headers["location"])
    assert "problem=promise_date" in answer.headers["location"]
    assert 'role="alert"' in shown.text and f'id="case-{case.id}"' in shown.text
    assert case_of(stack, acct["account_no"]).attempts == 0


def test_an_agent_downloads_the_list_and_prints_the_notices(stack: Stack) -> None:
    area = new_area()
    _, browser = agent_browser(stack, area, "field")
    acct = in_arrears(stack, area, vulnerable=True)
    sweep_now(stack)

    with browser:
        xlsx = browser.get("/agent/export.xlsx")
        pdf = browser.get("/agent/notices.pdf")
    header, *rows = read_table(xlsx.content, "xlsx")
    assert header[:5] == ["case", "account", "name", "area", "address"]
    assert [r[1] for r in rows] == [acct["account_no"]]
    assert pdf.headers["content-type"] == "application/pdf"
    assert len(PdfReader(io.BytesIO(pdf.content)).pages) == 1


def test_a_supervisor_sees_the_unassigned_and_reassigns(stack: Stack) -> None:
    area = new_area()
    acct = in_arrears(stack, area)
    sweep_now(stack)
    case = case_of(stack, acct["account_no"])
    agent_id, agents_browser = agent_browser(stack, area, "caller")
    supervisor = new_user(stack, "supervisor")

    with Browser(stack.base_url) as browser:
        browser.sign_in(supervisor.username, PASSWORD)
        waiting = browser.get("/agent", params={"unassigned": "true", "area": area})
        assert f'id="case-{case.id}"' in waiting.text
        moved = browser.post(
            f"/agent/cases/{case.id}/assign",
            {"csrf_token": csrf_token(waiting.text), "agent_id": str(agent_id)},
        )
        assert moved.status_code == 303, moved.text

    with agents_browser:
        assert f'id="case-{case.id}"' in agents_browser.get("/agent").text


def test_a_form_sent_twice_records_the_outcome_once(stack: Stack) -> None:
    area = new_area()
    _, browser = agent_browser(stack, area, "caller")
    acct = in_arrears(stack, area)
    sweep_now(stack)
    case = case_of(stack, acct["account_no"])

    with browser:
        page = browser.get("/agent")
        attempt = re.search(r'name="attempt" value="([^"]+)"', page.text)
        assert attempt is not None
        form = {"csrf_token": csrf_token(page.text), "outcome": "no_answer", "attempt": attempt[1]}
        first = browser.post(f"/agent/cases/{case.id}/outcome", form)
        second = browser.post(f"/agent/cases/{case.id}/outcome", form)  # a double tap

    assert (first.status_code, second.status_code) == (303, 303)
    assert case_of(stack, acct["account_no"]).attempts == 1


def test_a_supervisor_opens_the_service_record_from_a_case_card(stack: Stack) -> None:
    area = new_area()
    acct = in_arrears(stack, area)
    sweep_now(stack)
    case = case_of(stack, acct["account_no"])
    _, agents_browser = agent_browser(stack, area, "caller")
    supervisor = new_user(stack, "supervisor")
    link = f"/agent/accounts/{acct['account_no']}/service-record.pdf"

    with Browser(stack.base_url) as browser:
        browser.sign_in(supervisor.username, PASSWORD)
        card = browser.get("/agent", params={"area": area}).text
        assert f'id="case-{case.id}"' in card and f'href="{link}"' in card
        printed = browser.get(link)
        assert printed.status_code == 200, printed.text
        assert printed.headers["content-type"] == "application/pdf"
        text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(printed.content)).pages)
        assert acct["account_no"] in text and f"#{case.id}" in text
        assert acct["name"] not in text

    with agents_browser:
        assert link not in agents_browser.get("/agent").text
        assert agents_browser.get(link).status_code == 403
