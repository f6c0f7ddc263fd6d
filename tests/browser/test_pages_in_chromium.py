"""The web pages in a real browser: headless Chromium signs in, searches, clicks and submits.

Each test is what a person does on the pages, on the real stack (API, worker,
PostgreSQL, Redis): ops staff find a customer's notice and retry a failed one;
an agent records an outcome, downloads the day's list and works from a phone;
a forged form and a page of the wrong section get the 403 page; the language
switcher; the dashboard's charts. Data is set up as the billing system would
send it (through the API) and checked in the database; every step a person
takes goes through the browser. Full-page screenshots land in
``test-output/screenshots/`` (conftest.py), for a person to look at.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from notifier.escalation.agents import add_agent
from notifier.escalation.models import CaseStatus
from notifier.users.models import User
from tests.integration.test_escalation_api import case_of, in_arrears, new_area, sweep_now
from tests.support import events
from tests.support.stack import Stack
from tests.support.tables import read_table
from tests.support.web import PASSWORD, new_user

try:
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.select import Select
    from selenium.webdriver.support.wait import WebDriverWait
except ImportError:  # the driver fixture skips (or, under CI, fails) and says why
    pass

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.remote.webelement import WebElement

pytestmark = pytest.mark.parametrize("stack", ["postgres-redis"], indirect=True)

FAILS_FOR_GOOD = "+886900000001"  # the sandbox refuses this number permanently
WAIT = 20  # seconds, for a page or a download; a step normally takes well under one
DESKTOP = (1280, 900)
PHONE = (390, 844)
TAP = 44  # px, the smallest comfortable touch target (app.css --tap)


# --- the browser, as a person uses it -------------------------------------------------------


@pytest.fixture(autouse=True)
def fresh(driver: WebDriver) -> WebDriver:
    """Each test starts signed out, in zh-TW, on a desktop screen."""
    driver.get("about:blank")
    driver.execute_cdp_cmd("Network.clearBrowserCookies", {})
    viewport(driver, *DESKTOP)
    return driver


def viewport(driver: WebDriver, width: int, height: int) -> None:
    driver.set_window_size(width, height)
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        # Not "mobile": a mobile viewport widens itself to fit content that is too
        # wide, hiding the very overflow a test looks for.
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
    )


def visit(driver: WebDriver, stack: Stack, path: str) -> None:
    driver.get(stack.base_url + path)


def shown(driver: WebDriver, css: str) -> WebElement:
    """The element, once it is displayed."""
    return WebDriverWait(driver, WAIT).until(
        EC.visibility_of_element_located((By.CSS_SELECTOR, css)), f"nothing shows {css!r}"
    )


def submit(driver: WebDriver, button: WebElement) -> None:
    """Click a form's button and wait until the browser has left the page."""
    page = driver.find_element(By.TAG_NAME, "html")
    button.click()
    WebDriverWait(driver, WAIT).until(_gone(page), "the form did not leave the page")


def _gone(element: WebElement) -> Callable[[WebDriver], bool]:
    """Like ``EC.staleness_of``; but asked in the middle of a navigation, chromedriver
    may answer with the inspector's "does not belong to the document" instead of a
    stale-element error (seen in CI): that means gone too."""

    def check(_: WebDriver) -> bool:
        try:
            element.is_enabled()
        except StaleElementReferenceException:
            return True
        except WebDriverException as exc:
            if "does not belong to the document" in str(exc):
                return True
            raise
        return False

    return check


def http_status(driver: WebDriver) -> int:
    """The status code the page now shown was answered with."""
    return int(
        driver.execute_script(
            "return performance.getEntriesByType('navigation')[0].responseStatus;"
        )
    )


def sign_in(driver: WebDriver, stack: Stack, user: User) -> None:
    """Type the name and password into the sign-in form and land on the role's home page."""
    visit(driver, stack, "/sign-in")
    shown(driver, "#username").send_keys(user.username)
    shown(driver, "#password").send_keys(PASSWORD)
    submit(driver, driver.find_element(By.CSS_SELECTOR, "form[action='/sign-in'] button"))
    WebDriverWait(driver, WAIT).until(
        lambda d: "/sign-in" not in d.current_url, "still on the sign-in page"
    )


def agent_user(stack: Stack, area: str) -> User:
    """A caller of ``area`` and the user they sign in as."""
    with stack.db() as session:
        agent = add_agent(session, name="林建宏", area=area, kind="caller")
    return new_user(stack, "agent", agent_id=agent.id)


def page_width(driver: WebDriver) -> tuple[int, int]:
    """The width of the page's content and of the window."""
    width, inner = driver.execute_script(
        "return [document.documentElement.scrollWidth, window.innerWidth];"
    )
    return int(width), int(inner)


def sticking_out(driver: WebDriver) -> list[str]:
    """The elements reaching past the window's right edge (tag, id or class, right edge),
    the outermost first: what to fix when a page scrolls sideways."""
    found: list[str] = driver.execute_script(
        """
        const inner = window.innerWidth, out = [];
        for (const el of document.body.querySelectorAll('*')) {
          const right = el.getBoundingClientRect().right;
          if (right > inner + 0.5 && !(el.parentElement && out.includes(el.parentElement)))
            out.push(el);
        }
        return out.slice(0, 5).map(el => `${el.tagName.toLowerCase()}#${el.id}.${el.className} ` +
          `${Math.round(el.getBoundingClientRect().right)}px`);
        """
    )
    return found


# --- ops ------------------------------------------------------------------------------------


def test_ops_finds_an_accounts_notice_in_the_log_and_reads_it(
    stack: Stack, driver: WebDriver, screenshot: Callable[[str], Path]
) -> None:
    acct = events.account(push_tokens=None, email=None)
    other = events.account(push_tokens=None, email=None)
    for account in (acct, other):
        assert stack.post(events.unpaid(account)).status_code == 202
    [sms] = stack.settled(acct["account_no"], count=1)
    stack.settled(other["account_no"], count=1)

    sign_in(driver, stack, new_user(stack, "ops"))
    shown(driver, "form[role=search] input[name=q]").send_keys(acct["account_no"])
    submit(driver, driver.find_element(By.CSS_SELECTOR, "form[role=search] button[type=submit]"))

    shown(driver, "#deliveries")
    accounts = driver.find_elements(By.CSS_SELECTOR, "#deliveries tbody td:nth-child(2)")
    assert [a.text for a in accounts] == [acct["account_no"]]
    assert other["account_no"] not in driver.find_element(By.TAG_NAME, "main").text

    driver.find_element(By.CSS_SELECTOR, "#deliveries tbody td:first-child a").click()
    card = shown(driver, f"#delivery-{sms.id}")
    assert f"/ops/notifications/{sms.notification_id}" in driver.current_url
    assert "+886 912 ***678" in card.text
    timeline = card.find_elements(By.CSS_SELECTOR, "table.timeline tbody tr")
    assert len(timeline) >= 3, [row.text for row in timeline]  # queued → sending → sent

    card.find_element(By.CSS_SELECTOR, "details summary").click()  # "內容"
    sms_text = shown(driver, f"#delivery-{sms.id} pre.content").text
    assert "NT$1,830" in sms_text
    screenshot("notification")


def test_ops_retries_a_failed_delivery_and_the_audit_trail_names_it(
    stack: Stack, driver: WebDriver
) -> None:
    acct = events.account(phone=FAILS_FOR_GOOD, push_tokens=None, email=None, address=None)
    assert stack.post(events.unpaid(acct)).status_code == 202
    [failed] = stack.settled(acct["account_no"], count=1)  # no other channel to fall back to
    assert failed.status == "failed"

    sign_in(driver, stack, new_user(stack, "ops"))
    visit(driver, stack, f"/ops/notifications/{failed.notification_id}")
    submit(driver, shown(driver, f"#delivery-{failed.id} form[action$='/retry'] button"))

    assert "已重送" in shown(driver, ".notice[role=status]").text
    retry = stack.deliveries(acct["account_no"])[-1]
    assert retry.id != failed.id
    shown(driver, f"#delivery-{retry.id}")

    visit(driver, stack, "/ops/audit")
    Select(shown(driver, "select[name=action]")).select_by_value("delivery.retry")
    submit(driver, driver.find_element(By.CSS_SELECTOR, "form[action='/ops/audit'] button"))
    shown(driver, "#audit")
    entries = [
        [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
        for row in driver.find_elements(By.CSS_SELECTOR, "#audit tbody tr")
    ]
    assert any(e[2:4] == ["重送", f"delivery {failed.id}"] for e in entries), entries


def test_the_dashboard_draws_its_charts_at_desktop_width(
    stack: Stack, driver: WebDriver, screenshot: Callable[[str], Path]
) -> None:
    sent = events.account(push_tokens=None, email=None)
    refused = events.account(phone=FAILS_FOR_GOOD, push_tokens=None, email=None, address=None)
    for account in (sent, refused):
        assert stack.post(events.unpaid(account)).status_code == 202
    for account in (sent, refused):
        stack.settled(account["account_no"], count=1)

    sign_in(driver, stack, new_user(stack, "ops"))
    visit(driver, stack, "/ops/dashboard")

    shown(driver, "#queues")
    # Full-width charts are drawn twice (wide and narrow): count the ones shown.
    charts = [
        c for c in driver.find_elements(By.CSS_SELECTOR, "main svg.chart") if c.is_displayed()
    ]
    assert len(charts) == 6  # per hour, per day, by channel twice, failure reasons, latency
    for chart in charts:
        # A ranked-bars chart of one failure reason is one 36 px row high.
        assert chart.size["width"] > 200 and chart.size["height"] > 30
    assert shown(driver, "#failures tbody tr")
    width, inner = page_width(driver)
    assert inner == DESKTOP[0] and width <= inner, f"{width}px of content in {inner}px"
    screenshot("dashboard")


# --- agents ---------------------------------------------------------------------------------


def test_an_agent_records_an_outcome_and_the_case_leaves_the_list(
    stack: Stack, driver: WebDriver
) -> None:
    area = new_area()
    user = agent_user(stack, area)
    first = in_arrears(stack, area, name="王小明")
    second = in_arrears(stack, area, name="李美玲")
    sweep_now(stack)
    case, other = case_of(stack, first["account_no"]), case_of(stack, second["account_no"])

    sign_in(driver, stack, user)
    card = shown(driver, f"#case-{case.id}")
    Select(card.find_element(By.NAME, "outcome")).select_by_value("refused")
    card.find_element(By.NAME, "note").send_keys("說電表有問題")
    submit(driver, card.find_element(By.CSS_SELECTOR, "form.outcome button[type=submit]"))

    assert str(case.id) in shown(driver, ".notice[role=status]").text  # "案件 N 已儲存。"
    assert driver.find_elements(By.ID, f"case-{case.id}") == []
    assert second["account_no"] in shown(driver, f"#case-{other.id}").text
    # A refusal is never the end of a case: the call becomes a visit (off the caller's list).
    moved = case_of(stack, first["account_no"])
    assert (moved.status, moved.kind, moved.outcome) == (CaseStatus.OPEN, "visit", "refused")


def test_an_agent_downloads_todays_list_as_xlsx(
    stack: Stack, driver: WebDriver, tmp_path: Path
) -> None:
    area = new_area()
    user = agent_user(stack, area)
    acct = in_arrears(stack, area)
    sweep_now(stack)
    downloads = tmp_path / "downloads"
    downloads.mkdir()

    sign_in(driver, stack, user)
    driver.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    shown(driver, "a[href='/agent/export.xlsx']").click()

    def downloaded(_: Any) -> list[Path]:
        # Chromium writes "<name>.crdownload" and renames it when the file is whole.
        return list(downloads.glob("*.xlsx"))

    [xlsx] = WebDriverWait(driver, WAIT).until(downloaded, "no XLSX was downloaded")
    header, *rows = read_table(xlsx.read_bytes(), "xlsx")
    assert header[:2] == ["case", "account"]
    assert [row[1] for row in rows] == [acct["account_no"]]


def test_the_agent_list_fits_a_phone_screen(
    stack: Stack, driver: WebDriver, screenshot: Callable[[str], Path]
) -> None:
    area = new_area()
    user = agent_user(stack, area)
    in_arrears(stack, area, name="歐陽娜娜")
    in_arrears(stack, area, name="李美玲")
    sweep_now(stack)

    sign_in(driver, stack, user)
    viewport(driver, *PHONE)
    visit(driver, stack, "/agent")

    save = shown(driver, "li.case form.outcome button[type=submit]")
    width, inner = page_width(driver)
    assert inner == PHONE[0]
    assert width <= inner, f"the list scrolls sideways: {width}px of content in {inner}px"
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", save)
    box = driver.execute_script(
        "const r = arguments[0].getBoundingClientRect();"
        "const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);"
        "return {left: r.left, right: r.right, height: r.height,"
        " onTop: arguments[0].contains(hit)};",
        save,
    )
    assert save.is_displayed() and box["onTop"], box
    assert box["height"] >= TAP and box["left"] >= 0 and box["right"] <= inner, box
    screenshot("agent-list-phone")


# --- what is refused ------------------------------------------------------------------------


def test_a_form_without_its_csrf_token_is_refused_and_changes_nothing(
    stack: Stack, driver: WebDriver
) -> None:
    area = new_area()
    user = agent_user(stack, area)
    acct = in_arrears(stack, area)
    sweep_now(stack)
    case = case_of(stack, acct["account_no"])

    sign_in(driver, stack, user)
    form = shown(driver, f"#case-{case.id} form.outcome")
    # A WebDriver script is not the page's: the CSP that forbids inline scripts allows it.
    driver.execute_script("arguments[0].querySelector('[name=csrf_token]').remove();", form)
    assert form.find_elements(By.NAME, "csrf_token") == []
    Select(form.find_element(By.NAME, "outcome")).select_by_value("paid")
    submit(driver, form.find_element(By.CSS_SELECTOR, "button[type=submit]"))

    assert shown(driver, "main h1").text == "無法開啟"
    assert "此表單已過期，因此未執行任何動作" in driver.find_element(By.TAG_NAME, "main").text
    assert http_status(driver) == 403
    unchanged = case_of(stack, acct["account_no"])
    assert (unchanged.status, unchanged.attempts, unchanged.outcome) == (CaseStatus.OPEN, 0, None)


def test_an_agent_opening_the_ops_pages_gets_the_403_page(stack: Stack, driver: WebDriver) -> None:
    sign_in(driver, stack, agent_user(stack, new_area()))
    assert driver.find_elements(By.CSS_SELECTOR, "header nav a[href='/ops']") == []

    visit(driver, stack, "/ops")

    assert shown(driver, "main h1").text == "無法開啟"
    assert "您的角色無權開啟此頁面。" in driver.find_element(By.TAG_NAME, "main").text
    assert http_status(driver) == 403
    driver.find_element(By.CSS_SELECTOR, "main a[href='/']").click()  # "回到首頁"
    WebDriverWait(driver, WAIT).until(EC.url_to_be(f"{stack.base_url}/agent"))


# --- language -------------------------------------------------------------------------------


def test_the_pages_are_in_chinese_until_english_is_chosen(stack: Stack, driver: WebDriver) -> None:
    sign_in(driver, stack, new_user(stack, "ops"))

    assert shown(driver, "main h1").text == "發送紀錄"
    html = driver.find_element(By.TAG_NAME, "html")
    assert html.get_attribute("lang") == "zh-TW"
    english = driver.find_element(By.CSS_SELECTOR, "button[name=lang][value=en]")
    assert (english.text, english.get_attribute("aria-pressed")) == ("English", "false")

    submit(driver, english)

    assert shown(driver, "main h1").text == "Delivery log"
    assert driver.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en"
    assert driver.current_url == f"{stack.base_url}/ops"  # back where the switch was pressed
    nav = [a.text for a in driver.find_elements(By.CSS_SELECTOR, "header nav a")]
    assert nav[:2] == ["Delivery log", "Dashboard"] and "Audit" in nav
    assert shown(driver, "form[role=search] button[type=submit]").text == "Search"
    pressed = driver.find_element(By.CSS_SELECTOR, "button[name=lang][aria-pressed=true]")
    assert pressed.text == "English"
