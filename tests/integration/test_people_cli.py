"""Agents' capacity and languages from the shell: added, changed, listed; mistakes named."""

from __future__ import annotations

import pytest
from sqlmodel import select

from notifier.escalation.models import Agent
from tests.integration.test_escalation_api import new_area
from tests.support.stack import Stack

pytestmark = pytest.mark.parametrize("stack", ["sqlite-filesystem"], indirect=True)


def test_an_admin_adds_an_agent_with_capacity_and_languages_and_changes_them(stack: Stack) -> None:
    area = new_area()
    added = stack.cli(
        "agents", "add", "--name", "阮氏蘭", "--area", area, "--kind", "caller",
        "--capacity", "40", "--languages", "vi,zh-TW",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    agent_id = int(added.stdout.strip())
    listed = stack.cli("agents", "list", "--area", area)
    assert f"{agent_id}\t阮氏蘭\t{area}\tcaller\tactive\t0\t40\tzh-TW,vi" in listed.stdout

    changed = stack.cli("agents", "update", str(agent_id), "--unlimited", "--languages", "nan")
    assert changed.returncode == 0, changed.stderr
    assert "capacity unlimited, languages nan" in changed.stdout
    with stack.db() as session:
        agent = session.get(Agent, agent_id)
        assert agent is not None and (agent.daily_capacity, agent.languages) == (None, ["nan"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--capacity", "0"], "--capacity"),
        (["--languages", "zh-TW,fr"], "'fr': use zh-TW, nan, hak, en, vi, id"),
    ],
)
def test_a_bad_capacity_or_language_is_named_and_adds_nobody(
    stack: Stack, args: list[str], message: str
) -> None:
    area = new_area()
    answer = stack.cli("agents", "add", "--name", "x", "--area", area, "--kind", "caller", *args)
    assert answer.returncode != 0
    assert message in answer.stderr
    with stack.db() as session:
        assert session.exec(select(Agent).where(Agent.area == area)).all() == []
