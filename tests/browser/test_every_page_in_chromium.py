"""Every page, as people see it: each at a phone's width (390 px) and a desk's (1366 px), in
zh-TW and in English, screenshotted into ``test-output/screenshots/every-*.png`` for a
person to look at; and no zh-TW page shows a raw code of the service (``RAW_CODES``) in
its visible text: statuses, channels, event types, reasons, areas, queues, audit actions
and timeline details are all words of the page's language.

The data is a day's worth as the billing system would send it: notices sent, one refused
for good (a permanent failure in its timeline), a printed postcard, a customer no channel
reaches, and escalation cases of the toufen area after the sweep.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from notifier.escalation.agents import add_agent
from tests.browser.test_pages_in_chromium import viewport
from tests.integration.test_escalation_api import in_arrears, sweep_now
from tests.support import events
from tests.support.stack import Stack, wait_until
from tests.support.web import PASSWORD, Browser, new_user

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

FAILS_FOR_GOOD = "+886900000001"
WIDTHS = {"phone": (390, 844), "desk": (1366, 768)}
RAW_CODES = (
    "bill.unpaid", "bill.issued", "bill.paid", "usage.abnormal", "account.suspended",
    "toufen", "note:", "planned by policy", "permanent: True", "pii.view",
    "delivery.retry", "delivery.cancel", "user.sign_in", "retried_as", "retry_of",
    "no_contact", "opted_out", "no_template", "quiet hours", "None", "True", "False",
    "template_sha256", "pdf_sha256", "found_by",
)  # fmt: skip
"""What the issue found on the zh-TW pages, and their kin: none may be read there."""


def _sign_in(driver: WebDriver, stack: Stack, role: str, **kw: object) -> None:
    """Sign in over HTTP (with the TOTP step a supervisor has) and hand the browser the
    session cookie: the sign-in form itself is tested elsewhere."""
    user = new_user(stack, role, **kw)
    with Browser(stack.base_url) as http:
        assert http.sign_in(user.username, PASSWORD).status_code == 303
        token = http.client.cookies["notifier_session"]
    driver.get(stack.base_url + "/sign-in")
    driver.delete_all_cookies()
    driver.add_cookie({"name": "notifier_session", "value": token, "path": "/"})


def _language(driver: WebDriver, lang: str) -> None:
    driver.add_cookie({"name": "lang", "value": lang, "path": "/"})


def _visible_codes(text: str) -> list[str]:
    return [c for c in RAW_CODES if re.search(rf"(?<![\w.]){re.escape(c)}(?![\w])", text)]


def _day_of_data(stack: Stack) -> dict[str, str]:
    """The pages' data, and the paths of the pages that show one thing of it."""
    sent = events.account(push_tokens=None)
    refused = events.account(phone=FAILS_FOR_GOOD, push_tokens=None, email=None, address=None)
    paper = events.account(phone=None, push_tokens=None, email=None)
    nobody = events.account(phone=None, push_tokens=None, email=None, address=None)
    for acct in (sent, refused, paper, nobody):
        assert stack.post(events.unpaid(acct)).status_code == 202
    [sms, _] = sorted(stack.settled(sent["account_no"], count=2), key=lambda d: d.channel)
    [failed] = stack.settled(refused["account_no"], count=1)
    wait_until(lambda: stack.deliveries(paper["account_no"]) or None, timeout=30, what="card")
    stack.print_postcards()
    [card] = stack.settled(paper["account_no"], count=1)
    with stack.db() as session:
        caller = add_agent(session, name="林建宏", area="toufen", kind="caller")
        add_agent(session, name="陳志明", area="toufen", kind="field")
    in_arrears(stack, "toufen", name="張家豪")
    in_arrears(stack, "toufen", name="黃淑芬", phone=None)
    sweep_now(stack)
    return {
        "notification": f"/ops/notifications/{sms.notification_id}",
        "failed": f"/ops/notifications/{failed.notification_id}",
        "batch": f"/ops/print-batches/{card.provider_id}",
        "caller": str(caller.id),
    }


@pytest.mark.parametrize("stack", ["postgres-redis"], indirect=True)
def test_every_page_in_both_languages_at_both_widths(
    stack: Stack, driver: WebDriver, screenshot: Callable[[str], Path]
) -> None:
    one = _day_of_data(stack)
    pages = {
        "ops-log": "/ops", "ops-notification": one["notification"],
        "ops-failed": one["failed"], "ops-dashboard": "/ops/dashboard",
        "ops-audit": "/ops/audit", "ops-unreachable": "/ops/unreachable",
        "ops-print-batches": "/ops/print-batches", "ops-print-batch": one["batch"],
        "ops-sweeps": "/ops/sweeps", "ops-dead-letters": "/ops/dead-letters",
        "agent": "/agent", "holds": "/agent/holds", "ladder": "/agent/ladder", "agent-table": "/agent?view=table",
        "not-found": "/ops/notifications/999999999",
    }  # fmt: skip
    found: dict[str, list[str]] = {}

    def sweep(name: str, path: str, lang: str) -> None:
        for width_name, size in WIDTHS.items():
            viewport(driver, *size)
            driver.get(stack.base_url + path)
            screenshot(f"every-{name}-{lang}-{width_name}")
            if lang == "zh-TW" and width_name == "desk":
                text = driver.execute_script("return document.body.innerText;")
                codes = _visible_codes(text)
                if codes:
                    found[name] = codes

    for lang in ("zh-TW", "en"):
        driver.get(stack.base_url + "/sign-in")
        driver.delete_all_cookies()
        _language(driver, lang)
        sweep("sign-in", "/sign-in", lang)
        _sign_in(driver, stack, "supervisor")
        _language(driver, lang)
        for name, path in pages.items():
            sweep(name, path, lang)
        _sign_in(driver, stack, "agent", agent_id=int(one["caller"]))
        _language(driver, lang)
        sweep("agent-own-list", "/agent", lang)
        sweep("forbidden", "/ops", lang)

    assert not found, f"raw codes on zh-TW pages: {found}"


def test_the_raw_code_check_finds_a_code_and_spares_words() -> None:
    assert _visible_codes("事件 bill.unpaid · 區域 toufen · permanent: True") == [
        "bill.unpaid", "toufen", "permanent: True", "True",
    ]  # fmt: skip
    assert _visible_codes("欠費通知 · 頭份服務所 · 永久失敗 是 · Nonesuch") == []
