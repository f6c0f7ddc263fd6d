"""Errors in the browser are pages in the page's language; the API keeps its JSON.

A browser (``Accept: text/html``) that opens an unknown page, sends a form with
bad data, acts on a case closed meanwhile or uses the wrong method gets the
site's own page, in zh-TW or in the language the switcher chose, with a way
back; ``/v1/…`` and a caller asking for JSON get the JSON they always got.
"""

from __future__ import annotations

import httpx

from notifier.escalation.models import CaseStatus
from tests.integration.test_escalation_api import (
    case_of,
    in_arrears,
    new_area,
    processed,
    sweep_now,
)
from tests.support import events
from tests.support.stack import Stack
from tests.support.web import PASSWORD, Browser, csrf_token, new_user
from tests.web.test_agent_pages import agent_browser

HTML = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


def test_an_unknown_page_is_the_404_page_in_chinese_and_in_english(stack: Stack) -> None:
    with Browser(stack.base_url) as browser:
        zh = browser.get("/agent/no-such-page", headers=HTML)
        browser.client.cookies.set("lang", "en")
        en = browser.get(
            "/agent/no-such-page", headers={**HTML, "Referer": f"{stack.base_url}/ops"}
        )

    assert zh.status_code == 404 and zh.headers["content-type"].startswith("text/html")
    assert '<html lang="zh-TW">' in zh.text
    assert "<h1>找不到此頁面</h1>" in zh.text and 'href="/">回到首頁</a>' in zh.text
    assert "Content-Security-Policy" in zh.headers  # a page like the others
    assert en.status_code == 404 and "<h1>Page not found</h1>" in en.text
    assert 'href="/ops" id="back">Back to the previous page</a>' in en.text


def test_the_api_and_callers_asking_for_json_keep_json(stack: Stack) -> None:
    api = httpx.get(f"{stack.base_url}/v1/no-such-thing", headers=HTML)
    asked = httpx.get(
        f"{stack.base_url}/agent/no-such-page", headers={"Accept": "application/json"}
    )
    invalid = stack.client.post("/v1/events", json={"type": "bill.unpaid"})

    assert api.status_code == 404 and api.json() == {"detail": "Not Found"}
    assert asked.status_code == 404 and asked.json() == {"detail": "Not Found"}
    assert invalid.status_code in (401, 422)
    assert invalid.headers["content-type"] == "application/json"


def test_a_signed_in_user_sees_the_404_page_with_their_own_header(stack: Stack) -> None:
    ops = new_user(stack, "ops")
    with Browser(stack.base_url) as browser:
        browser.sign_in(ops.username, PASSWORD)
        page = browser.get("/ops/nothing-here", headers=HTML)
    assert page.status_code == 404
    assert ops.display_name in page.text and 'href="/ops"' in page.text


def test_a_form_with_bad_data_is_the_422_page_naming_the_field(stack: Stack) -> None:
    area = new_area()
    _, browser = agent_browser(stack, area, "caller")
    acct = in_arrears(stack, area)
    sweep_now(stack)
    case = case_of(stack, acct["account_no"])

    with browser:
        page = browser.get("/agent")
        too_long = browser.client.post(
            f"/agent/cases/{case.id}/outcome",
            data={"csrf_token": csrf_token(page.text), "outcome": "refused", "note": "長" * 2001},
            headers=HTML,
        )
    assert too_long.status_code == 422, too_long.text
    assert "<h1>未儲存：有資料需要更正</h1>" in too_long.text
    assert "請檢查: <strong>備註</strong>" in too_long.text
    assert case_of(stack, acct["account_no"]).attempts == 0


def test_an_outcome_on_a_case_closed_meanwhile_is_the_409_page(stack: Stack) -> None:
    area = new_area()
    _, browser = agent_browser(stack, area, "caller")
    acct = in_arrears(stack, area)
    sweep_now(stack)
    case = case_of(stack, acct["account_no"])

    with browser:
        page = browser.get("/agent")
        # Meanwhile the customer pays both bills: the billing system says so, the case closes.
        paid = [events.paid(acct, period=period) for period in ("2026-09", "2026-11")]
        for event in paid:
            assert stack.post(event).status_code == 202
        processed(stack, [e["event_id"] for e in paid])
        assert case_of(stack, acct["account_no"]).status != CaseStatus.OPEN
        form = {"csrf_token": csrf_token(page.text), "outcome": "no_answer"}
        again = browser.client.post(f"/agent/cases/{case.id}/outcome", data=form, headers=HTML)
        wrong_method = browser.get(f"/agent/cases/{case.id}/outcome", headers=HTML)

    assert again.status_code == 409 and "<h1>資料已被變更</h1>" in again.text
    assert wrong_method.status_code == 405 and "<h1>此處無法執行這個動作</h1>" in wrong_method.text
    assert "POST" in wrong_method.headers["allow"]
