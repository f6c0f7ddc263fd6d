"""Dates in the utility's time zone: what a person reads is the Asia/Taipei business date.

An attempt recorded at 20:41 UTC on 2026-12-01 happened at 04:41 on 2026-12-02
in Taipei: the agent's page ("2026-12-02 04:41 Asia/Taipei"), the CSV, XLSX and
ODS exports say 2026-12-02, the ops pages name the zone of every time they show, and the JSON API keeps UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from notifier.escalation import service as cases
from notifier.policy.local_time import local_date, shown
from tests.integration.test_escalation_api import TODAY, auth, case_of, in_arrears, sweep_now
from tests.support import events
from tests.support.stack import Stack
from tests.support.tables import read_table
from tests.support.web import PASSWORD, Browser, new_user
from tests.web.test_agent_pages import agent_browser

TAIPEI = ZoneInfo("Asia/Taipei")
EARLY_MORNING = datetime(2026, 12, 1, 20, 41, tzinfo=UTC)  # 04:41 on 12-02 in Taipei


def test_the_helper_reads_a_utc_instant_as_the_taipei_business_date() -> None:
    assert local_date(EARLY_MORNING, TAIPEI).isoformat() == "2026-12-02"
    assert shown(EARLY_MORNING, TAIPEI) == "2026-12-02 04:41:00 Asia/Taipei"
    # A naive value is UTC that lost its zone, never the machine's local time.
    naive = EARLY_MORNING.replace(tzinfo=None)
    assert local_date(naive, TAIPEI).isoformat() == "2026-12-02"


@pytest.mark.parametrize("fmt", ["csv", "xlsx", "ods"])
def test_an_early_morning_attempt_shows_its_taipei_date(stack: Stack, fmt: str) -> None:
    area = f"area-{events.new_account_no()}"
    agent_id, browser = agent_browser(stack, area, "field")
    acct = in_arrears(stack, area, vulnerable=True)
    sweep_now(stack)
    case = case_of(stack, acct["account_no"])
    assert case.id is not None and case.kind == "visit"
    with stack.db() as session:
        cases.record_outcome(
            session, case.id, cases.Actor(name="test", agent_id=agent_id),
            outcome="nobody_home", today=TODAY, policy=stack.runtime.policy.escalation,
            now=EARLY_MORNING,
        )  # fmt: skip

    with browser:
        page = browser.get("/agent")
        download = browser.get(f"/agent/export.{fmt}")
    assert page.status_code == 200, page.text
    # The agent's page names the zone too, as the ops pages do.
    assert "2026-12-02 04:41 Asia/Taipei · " in page.text and "2026-12-01 20:41" not in page.text
    header, *rows = read_table(download.content, fmt)
    [row] = [r for r in rows if r[1] == acct["account_no"]]
    attempts = row[header.index("attempts")]
    assert attempts == "2026-12-02 nobody_home", attempts
    if fmt == "csv":  # the CLI hands out the same file
        pulled = stack.cli("visits", "pull", "--agent", str(agent_id))
        assert pulled.returncode == 0, pulled.stderr
        assert "2026-12-02 nobody_home" in pulled.stdout
        assert "2026-12-01 nobody_home" not in pulled.stdout

    # The JSON API keeps the instant in UTC, with its offset.
    answer = stack.client.get(
        "/v1/escalations/mine", params={"kind": "visit"}, headers=auth(stack, "agent", agent_id)
    )
    assert answer.status_code == 200, answer.text
    [listed] = [c for c in answer.json()["items"] if c["account_no"] == acct["account_no"]]
    at = listed["attempts"][0]["at"]
    assert datetime.fromisoformat(at) == EARLY_MORNING and at.endswith(("+00:00", "Z")), at


def test_ops_pages_name_the_zone_of_every_time(stack: Stack) -> None:
    acct = events.account(push_tokens=None, email=None)
    stack.post(events.unpaid(acct))
    [sms] = stack.settled(acct["account_no"], count=1)
    user = new_user(stack, "ops")
    with Browser(stack.base_url) as browser:
        assert browser.sign_in(user.username, PASSWORD).status_code == 303
        log = browser.get("/ops", params={"q": acct["account_no"]})
        story = browser.get(f"/ops/notifications/{sms.notification_id}")
        dashboard = browser.get("/ops/dashboard")
    assert shown(sms.created_at, TAIPEI) in log.text
    times = story.text.count("<time ")
    # A time in a table is written without its zone, which the column's heading names (and
    # the time's title repeats); any other time names its zone itself.
    in_tables = story.text.count(' Asia/Taipei">')
    assert times >= 3 and story.text.count(" Asia/Taipei</time>") + in_tables == times
    assert in_tables == 0 or "(Asia/Taipei)" in story.text
    assert 'id="zone"' in dashboard.text and "Asia/Taipei" in dashboard.text
