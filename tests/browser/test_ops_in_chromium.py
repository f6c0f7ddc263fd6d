"""The ops pages in a real browser, as ops staff use them on a desk screen (1366×768).

The delivery log must hold a screenful of rows (20 and more, one line each: measured in
the DOM), find a customer by the phone number they read out over the phone, and retry
many failed deliveries at once only after a confirmation page.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.browser.test_pages_in_chromium import shown, sign_in, submit, viewport, visit
from tests.support import events
from tests.support.stack import Stack
from tests.support.web import new_user

try:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.select import Select
except ImportError:  # the driver fixture skips (or, under CI, fails) and says why
    pass

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

pytestmark = pytest.mark.parametrize("stack", ["postgres-redis"], indirect=True)

DESK = (1366, 768)
FAILS_FOR_GOOD = "+886900000001"  # the sandbox refuses this number permanently


@pytest.fixture(autouse=True)
def fresh(driver: WebDriver) -> WebDriver:
    driver.get("about:blank")
    driver.execute_cdp_cmd("Network.clearBrowserCookies", {})
    viewport(driver, *DESK)
    return driver


def _many_sent(stack: Stack, n: int) -> list[str]:
    accounts = [events.account(push_tokens=None, email=None, address=None) for _ in range(n)]
    answer = stack.post_batch([events.unpaid(a) for a in accounts])
    assert answer.status_code in (200, 202), answer.text
    for a in accounts:
        stack.settled(a["account_no"], count=1)
    return [a["account_no"] for a in accounts]


def test_the_log_shows_twenty_rows_one_line_each_on_a_desk_screen(
    stack: Stack, driver: WebDriver, screenshot: Callable[[str], Path]
) -> None:
    _many_sent(stack, 30)

    sign_in(driver, stack, new_user(stack, "ops"))
    visit(driver, stack, "/ops")
    shown(driver, "#deliveries")
    rows = driver.execute_script(
        """
        const inner = window.innerHeight;
        return [...document.querySelectorAll('#deliveries tbody tr')].map(r => {
          const box = r.getBoundingClientRect();
          const time = r.querySelector('time').getBoundingClientRect();
          return {top: box.top, bottom: box.bottom, height: box.height,
                  timeHeight: time.height, inView: box.bottom <= inner};
        });
        """
    )
    line = driver.execute_script(
        "const t = document.querySelector('#deliveries tbody time');"
        "return parseFloat(getComputedStyle(t).lineHeight);"
    )
    screenshot("ops-log-1366x768")
    in_view = [r for r in rows if r["inView"]]
    assert len(in_view) >= 20, f"{len(in_view)} rows in the first screen: {rows[:3]}"
    # One line per row: no row (and no timestamp) taller than one line and its padding.
    assert max(r["height"] for r in rows) < 2 * line, (line, max(r["height"] for r in rows))
    assert max(r["timeHeight"] for r in rows) < 1.5 * line
    heading = driver.find_element(By.CSS_SELECTOR, "#deliveries thead th").text
    assert "Asia/Taipei" in heading
    assert "第 1 頁" in driver.find_element(By.CSS_SELECTOR, ".pager").text


def test_ops_finds_a_customer_by_the_phone_number_they_read_out(
    stack: Stack, driver: WebDriver, screenshot: Callable[[str], Path]
) -> None:
    acct = events.account(phone="+886955123456", push_tokens=None, email=None, address=None)
    assert stack.post(events.unpaid(acct)).status_code == 202
    stack.settled(acct["account_no"], count=1)
    _many_sent(stack, 2)

    sign_in(driver, stack, new_user(stack, "ops"))
    shown(driver, "form[role=search] input[name=q]").send_keys("0955-123-456")
    submit(driver, driver.find_element(By.CSS_SELECTOR, "form[role=search] button[type=submit]"))

    shown(driver, "#deliveries")
    accounts = driver.find_elements(By.CSS_SELECTOR, "#deliveries tbody td:nth-child(2)")
    assert [a.text for a in accounts] == [acct["account_no"]]
    assert "q=0955-123-456" in driver.current_url  # the search is in the URL, to share
    screenshot("ops-log-search-by-phone")


def test_ops_retries_two_failed_deliveries_at_once_after_confirming(
    stack: Stack, driver: WebDriver, screenshot: Callable[[str], Path]
) -> None:
    failed = []
    for _ in range(2):
        acct = events.account(phone=FAILS_FOR_GOOD, push_tokens=None, email=None, address=None)
        assert stack.post(events.unpaid(acct)).status_code == 202
        [one] = stack.settled(acct["account_no"], count=1)
        failed.append(one)

    sign_in(driver, stack, new_user(stack, "ops"))
    visit(driver, stack, "/ops?status=failed")
    for d in failed:
        shown(driver, f"#row-{d.id} input[type=checkbox]").click()
    Select(driver.find_element(By.CSS_SELECTOR, "#bulk select[name=action]")).select_by_value(
        "retry"
    )
    submit(driver, driver.find_element(By.CSS_SELECTOR, "#bulk button[type=submit]"))

    review = shown(driver, "#bulk-review")
    assert len(review.find_elements(By.CSS_SELECTOR, "tbody tr")) == 2
    screenshot("ops-bulk-retry-review")
    for d in failed:  # nothing done before the confirmation
        assert len(stack.deliveries(d.account_no)) == 1
    submit(driver, driver.find_element(By.CSS_SELECTOR, "form[action='/ops/bulk/confirm'] button"))

    assert "已完成 2 筆發送" in shown(driver, "#bulk-done").text
    for d in failed:
        assert len(stack.deliveries(d.account_no)) == 2
    screenshot("ops-bulk-retry-done")
