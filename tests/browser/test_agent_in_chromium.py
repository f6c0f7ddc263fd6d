"""Agents and supervisors on the case pages, in real Chromium.

An agent types a note on a card far down the list, picks "promised" and
forgets the date: the browser comes back on that card, the error on it and
the note, the outcome still there; with the date it is saved. The table view
sorts by what is owed; a supervisor's table carries the counts per agent and
the boxes to reassign. Screenshots at 390 and 1366 px, zh-TW and en, go to
``test-output/screenshots/agent-*.png`` for a person to look at.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from notifier.escalation.models import CaseStatus
from notifier.users.models import User
from tests.browser.test_pages_in_chromium import (
    http_status,
    page_width,
    shown,
    sign_in,
    submit,
    viewport,
)
from tests.integration.test_escalation_api import TODAY, case_of, in_arrears, new_area, sweep_now
from tests.support import events
from tests.support.stack import Stack
from tests.support.web import AUTHENTICATORS, PASSWORD, new_user

try:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.select import Select
    from selenium.webdriver.support.wait import WebDriverWait
except ImportError:  # the driver fixture skips (or, under CI, fails) and says why
    pass

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

pytestmark = pytest.mark.parametrize("stack", ["postgres-redis"], indirect=True)

DESKTOP = (1366, 768)
PHONE = (390, 844)
WAIT = 20


@pytest.fixture(autouse=True)
def fresh(driver: WebDriver) -> WebDriver:
    """Each test starts signed out, in zh-TW, on a 1366 px screen."""
    driver.get("about:blank")
    driver.execute_cdp_cmd("Network.clearBrowserCookies", {})
    viewport(driver, *DESKTOP)
    return driver


def choose_language(driver: WebDriver, code: str) -> None:
    submit(driver, shown(driver, f"form.languages button[value='{code}']"))


def in_view(driver: WebDriver, css: str) -> bool:
    """Whether the element's top is inside the window now (the browser scrolled to it)."""
    return bool(
        driver.execute_script(
            "const r = document.querySelector(arguments[0]).getBoundingClientRect();"
            "return r.top >= -1 && r.top < window.innerHeight;",
            css,
        )
    )


def both_widths(driver: WebDriver, screenshot: Callable[[str], Path], name: str) -> None:
    """Screenshots at 1366 and 390 px; neither scrolls sideways."""
    for label, size in (("1366", DESKTOP), ("390", PHONE)):
        viewport(driver, *size)
        width, inner = page_width(driver)
        assert width <= inner, f"{name} at {label} px: {width}px of content in {inner}px"
        screenshot(f"{name}-{label}")
    viewport(driver, *DESKTOP)


def test_a_refused_outcome_lands_on_its_card_with_the_note_kept_then_is_saved(
    stack: Stack, driver: WebDriver, screenshot: Callable[[str], Path]
) -> None:
    area = new_area()
    user = new_user(stack, "agent", agent_id=_new_caller(stack, area))
    for amounts in ((9000, 1000), (5000, 1000), (3000, 900)):
        in_arrears(stack, area, amounts=amounts, name="陳美玉")
    last = in_arrears(stack, area, amounts=(500, 600), name="歐陽娜娜", spoken_language="nan")
    sweep_now(stack)
    case = case_of(stack, last["account_no"])  # the smallest arrears: last on the list
    typed = "客戶說月底領薪後去超商繳清，請勿再打"

    sign_in(driver, stack, user)
    card = shown(driver, f"#case-{case.id}")
    assert not in_view(driver, f"#case-{case.id}"), "the card should start below the fold"
    driver.execute_script("arguments[0].scrollIntoView();", card)
    Select(card.find_element(By.NAME, "outcome")).select_by_value("promised")
    card.find_element(By.NAME, "note").send_keys(typed)
    submit(driver, card.find_element(By.CSS_SELECTOR, "form.outcome button[type=submit]"))

    assert driver.current_url.endswith(f"/agent/cases/{case.id}/outcome#case-{case.id}")
    assert http_status(driver) == 422
    card = shown(driver, f"#case-{case.id}")
    assert in_view(driver, f"#case-{case.id}") or in_view(driver, f"#problem-{case.id}")
    error = card.find_element(By.CSS_SELECTOR, ".error[role=alert]")
    assert "未儲存：請檢查「承諾繳費日」" in error.text
    assert card.find_element(By.NAME, "note").get_attribute("value") == typed
    assert Select(card.find_element(By.NAME, "outcome")).first_selected_option.text == "承諾繳費"
    assert case_of(stack, last["account_no"]).attempts == 0
    screenshot("agent-refused-on-card-zh-1366")
    viewport(driver, *PHONE)
    driver.execute_script("arguments[0].scrollIntoView();", card)
    screenshot("agent-refused-on-card-zh-390")
    viewport(driver, *DESKTOP)

    promised = (TODAY + timedelta(days=2)).isoformat()
    date_input = card.find_element(By.NAME, "promise_date")
    # The date picker's typed format follows the OS locale; the value is what the form sends.
    driver.execute_script("arguments[0].value = arguments[1];", date_input, promised)
    submit(driver, card.find_element(By.CSS_SELECTOR, "form.outcome button[type=submit]"))

    assert str(case.id) in shown(driver, "#saved").text
    stored = case_of(stack, last["account_no"])
    assert (stored.status, stored.outcome, stored.attempts) == (CaseStatus.OPEN, "promised", 1)
    assert stored.follow_up_on is not None


def test_the_table_view_sorts_by_what_is_owed(
    stack: Stack, driver: WebDriver, screenshot: Callable[[str], Path]
) -> None:
    area = new_area()
    user = new_user(stack, "agent", agent_id=_new_caller(stack, area))
    owed = {}
    for amounts in ((500, 600), (9000, 1000), (2000, 1000)):
        acct = in_arrears(stack, area, amounts=amounts, name="林建宏")
        owed[acct["account_no"]] = sum(amounts)
    sweep_now(stack)

    sign_in(driver, stack, user)
    shown(driver, "nav.view-switch a[href='/agent?view=table']").click()
    shown(driver, "#case-table")
    shown(driver, "#case-table th[aria-sort] a[href*='sort=owed']").click()
    WebDriverWait(driver, WAIT).until(lambda d: "sort=owed" in d.current_url)

    def owed_column() -> list[int]:
        cells = driver.find_elements(By.CSS_SELECTOR, "#case-table tbody td.number:nth-of-type(6)")
        return [int(c.text.removeprefix("NT$").replace(",", "")) for c in cells]

    assert owed_column() == sorted(owed.values())
    shown(driver, "#case-table th[aria-sort=ascending] a").click()  # the same column again
    WebDriverWait(driver, WAIT).until(lambda d: "sort=-owed" in d.current_url)
    assert owed_column() == sorted(owed.values(), reverse=True)
    both_widths(driver, screenshot, "agent-table-zh")
    choose_language(driver, "en")
    assert "sort=-owed" in driver.current_url and shown(driver, "#case-table")
    both_widths(driver, screenshot, "agent-table-en")

    driver.get(f"{stack.base_url}/agent/no-such-page")
    assert shown(driver, "main h1").text == "Page not found" and http_status(driver) == 404
    both_widths(driver, screenshot, "error-404-en")
    choose_language(driver, "zh-TW")
    assert shown(driver, "main h1").text == "找不到此頁面"
    both_widths(driver, screenshot, "error-404-zh")


def test_a_supervisor_sees_counts_per_agent_and_the_cards_in_both_languages(
    stack: Stack, driver: WebDriver, screenshot: Callable[[str], Path]
) -> None:
    area = new_area()
    _new_caller(stack, area)
    in_arrears(stack, area, name="王小明", protections=["elderly"], spoken_language="hak")
    emailed = in_arrears(stack, area, name="李美玲", phone=None, push_tokens=None)
    # An email reminder (never held by quiet hours): the card lists it.
    reminder = events.unpaid(emailed, period="2026-07", due=TODAY - timedelta(days=120))
    assert stack.post(reminder).status_code == 202
    stack.settled(emailed["account_no"], count=1)
    sweep_now(stack)
    case = case_of(stack, emailed["account_no"])

    supervisor_signs_in(driver, stack, new_user(stack, "supervisor"))
    driver.get(f"{stack.base_url}/agent?area={area}&view=table")
    loads = shown(driver, "#loads table.loads")
    assert "林建宏" in loads.text
    shown(driver, "#bulk input[type=checkbox][name=case_id]")
    both_widths(driver, screenshot, "agent-supervisor-table-zh")
    driver.get(f"{stack.base_url}/agent?area={area}")
    [sent] = shown(driver, f"#case-{case.id} .sent-notices").find_elements(By.TAG_NAME, "li")
    assert "Asia/Taipei · 欠費催繳通知 (第 1 級) · 電子郵件 · " in sent.text, sent.text
    both_widths(driver, screenshot, "agent-supervisor-cards-zh")
    choose_language(driver, "en")
    [sent] = shown(driver, f"#case-{case.id} .sent-notices").find_elements(By.TAG_NAME, "li")
    assert "Asia/Taipei · Unpaid bill reminder (level 1) · email · " in sent.text, sent.text
    both_widths(driver, screenshot, "agent-supervisor-cards-en")


def supervisor_signs_in(driver: WebDriver, stack: Stack, user: User) -> None:
    """The name and password, then the code of the authenticator on their phone."""
    driver.get(f"{stack.base_url}/sign-in")
    shown(driver, "#username").send_keys(user.username)
    shown(driver, "#password").send_keys(PASSWORD)
    submit(driver, driver.find_element(By.CSS_SELECTOR, "form[action='/sign-in'] button"))
    shown(driver, "#code").send_keys(AUTHENTICATORS[user.username].code())
    submit(driver, driver.find_element(By.CSS_SELECTOR, "main form button[type=submit]"))
    WebDriverWait(driver, WAIT).until(lambda d: "/sign-in" not in d.current_url, "not signed in")


def _new_caller(stack: Stack, area: str) -> int:
    from notifier.escalation.agents import add_agent

    with stack.db() as session:
        agent = add_agent(session, name="林建宏", area=area, kind="caller")
    assert agent.id is not None
    return agent.id
