"""The dashboard in a real browser, on a phone (390 px) and a laptop (1366 px), in zh-TW and en.

What is measured is what a person reads: the lettering of every chart as
Chromium draws it (its computed font size times the drawing's scale on the
screen) must be at least 11 px, and no label or legend may run out of its
chart's box, where the browser would cut it off. Full-page screenshots land
in ``test-output/screenshots/dashboard-<width>-<lang>.png``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import select

from notifier.deliveries.models import Delivery
from tests.browser.test_pages_in_chromium import (
    FAILS_FOR_GOOD,
    page_width,
    shown,
    sign_in,
    sticking_out,
    viewport,
    visit,
)
from tests.support import events
from tests.support.stack import Stack, wait_until
from tests.support.web import new_user

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

pytestmark = pytest.mark.parametrize("stack", ["postgres-redis"], indirect=True)

SMALLEST_TEXT = 11.0  # px on the screen
SCREENS = {"phone": (390, 844), "laptop": (1366, 768)}

# Every <text> of every chart shown: its size on the screen and whether it
# stays inside its <svg>'s box (half a pixel of antialiasing allowed).
MEASURE = """
const found = [];
for (const svg of document.querySelectorAll('main svg.chart')) {
  const box = svg.getBoundingClientRect();
  if (box.width === 0 || getComputedStyle(svg.parentElement).display === 'none') continue;
  for (const text of svg.querySelectorAll('text')) {
    const r = text.getBoundingClientRect();
    const scale = text.getScreenCTM().a;
    found.push({
      chart: svg.getAttribute('aria-label'),
      text: text.textContent,
      px: parseFloat(getComputedStyle(text).fontSize) * scale,
      inside: r.left >= box.left - 0.5 && r.right <= box.right + 0.5
        && r.top >= box.top - 0.5 && r.bottom <= box.bottom + 0.5,
    });
  }
}
return found;
"""


@pytest.fixture
def busy_day(stack: Stack) -> Iterator[None]:
    """A day with a notice sent, one refused for good and one held by quiet hours."""
    sent = events.account(push_tokens=None, email=None)
    refused = events.account(phone=FAILS_FOR_GOOD, push_tokens=None, email=None, address=None)
    for account in (sent, refused):
        assert stack.post(events.unpaid(account)).status_code == 202
    for account in (sent, refused):
        stack.settled(account["account_no"], count=1)
    now = datetime.now(ZoneInfo("Asia/Taipei"))
    hours = f"{(now - timedelta(hours=1)):%H:%M}-{(now + timedelta(hours=1)):%H:%M}"
    held = events.account(push_tokens=None, email=None)
    with stack.worker_with(NOTIFIER_QUIET_HOURS=hours):
        assert stack.post(events.unpaid(held)).status_code == 202
        wait_until(
            lambda: [d.status for d in stack.deliveries(held["account_no"])] == ["deferred"],
            timeout=30,
            what="the SMS held by quiet hours",
        )
    yield
    # The window opens: the held SMS goes, and no later test finds it waiting.
    with stack.db() as session:
        for row in session.exec(select(Delivery).where(Delivery.account_no == held["account_no"])):
            row.available_at = datetime.now(UTC) - timedelta(seconds=1)
            session.add(row)
    stack.settled(held["account_no"], count=1)


@pytest.mark.parametrize("language", ["zh-TW", "en"])
@pytest.mark.parametrize("screen", list(SCREENS))
def test_every_chart_reads_whole_at_11px_or_more(
    stack: Stack,
    driver: WebDriver,
    screenshot: Callable[[str], Path],
    busy_day: None,
    screen: str,
    language: str,
) -> None:
    driver.get("about:blank")
    driver.execute_cdp_cmd("Network.clearBrowserCookies", {})
    viewport(driver, *SCREENS[screen])
    sign_in(driver, stack, new_user(stack, "ops"))
    driver.add_cookie({"name": "lang", "value": language, "path": "/"})
    visit(driver, stack, "/ops/dashboard")
    shown(driver, "#queues")
    assert driver.find_element("tag name", "html").get_attribute("lang") == language
    screenshot(f"dashboard-{SCREENS[screen][0]}-{language}")

    texts: list[dict[str, Any]] = driver.execute_script(MEASURE)
    charts = {t["chart"] for t in texts}
    # per hour, per day, by channel twice, failure reasons, latency, waiting now
    assert len(charts) == 7, charts
    small = [(t["chart"], t["text"], round(t["px"], 1)) for t in texts if t["px"] < SMALLEST_TEXT]
    assert small == [], f"chart text under {SMALLEST_TEXT} px: {small[:10]}"
    cut = [(t["chart"], t["text"]) for t in texts if not t["inside"]]
    assert cut == [], f"chart text running out of its chart: {cut[:10]}"
    width, inner = page_width(driver)
    assert width <= inner, f"{width}px of content in a {inner}px window: {sticking_out(driver)}"
    sizes = sorted({round(t["px"], 1) for t in texts})
    print(f"{screen} {language}: {len(texts)} texts in {len(charts)} charts, sizes {sizes} px")
