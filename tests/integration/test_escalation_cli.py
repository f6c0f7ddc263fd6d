"""An escalation day from the shell: agents, keys, the sweep, lists and notices."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
from pypdf import PdfReader

from tests.integration.test_escalation_api import TODAY, in_arrears, new_area
from tests.support.stack import Stack
from tests.support.tables import read_table

pytestmark = pytest.mark.parametrize("stack", ["sqlite-filesystem"], indirect=True)


def notifier(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "notifier", *args],
        env=stack.env_for_cli(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_supervisor_sets_up_agents_sweeps_and_pulls_lists(stack: Stack, tmp_path: Path) -> None:
    area = new_area()
    added = notifier(stack, "agents", "add", "--name", "林建宏", "--area", area, "--kind", "caller")
    assert added.returncode == 0, added.stderr
    caller = int(added.stdout.strip())
    field = notifier(stack, "agents", "add", "--name", "陳志明", "--area", area, "--kind", "field")
    field_id = int(field.stdout.strip())
    key = notifier(stack, "keys", "create", "--role", "agent", "--agent", str(caller))
    assert key.returncode == 0 and key.stdout.startswith("ntf_"), key.stderr
    call_acct = in_arrears(stack, area)
    visit_acct = in_arrears(stack, area, vulnerable=True)

    swept = notifier(stack, "escalate", "--as-of", TODAY.isoformat())
    assert swept.returncode == 0, swept.stderr
    assert "cases opened" in swept.stdout
    again = notifier(stack, "escalate", "--as-of", TODAY.isoformat())
    assert "0 cases opened" in again.stdout  # idempotent

    out = tmp_path / "calls.xlsx"
    pulled = notifier(
        stack, "calls", "pull", "--agent", str(caller), "--format", "xlsx", "-o", str(out)
    )
    assert pulled.returncode == 0, pulled.stderr
    header, *rows = read_table(out.read_bytes(), "xlsx")
    assert header[1] == "account" and [r[1] for r in rows] == [call_acct["account_no"]]

    visits = notifier(stack, "visits", "pull", "--agent", str(field_id))  # CSV on stdout
    assert visit_acct["account_no"] in visits.stdout and "area" in visits.stdout
    pdf = tmp_path / "notices.pdf"
    printed = notifier(stack, "visits", "notices", "--agent", str(field_id), "-o", str(pdf))
    assert printed.returncode == 0, printed.stderr
    assert len(PdfReader(io.BytesIO(pdf.read_bytes())).pages) == 1

    listed = notifier(stack, "agents", "list", "--area", area)
    assert f"{caller}\t林建宏\t{area}\tcaller\tactive\t1" in listed.stdout
    disabled = notifier(stack, "agents", "disable", str(caller))
    assert "1 left unassigned" in disabled.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["agents", "add", "--name", "x", "--area", "a", "--kind", "driver"], "caller, field"),
        (["keys", "create", "--role", "agent", "--agent", "999999"], "no active agent 999999"),
        (["calls", "pull", "--agent", "999999"], "no agent 999999"),
        (["escalate", "--as-of", "2026-13-01"], "2026-13-01"),
    ],
)
def test_mistakes_are_named_and_change_nothing(stack: Stack, args: list[str], message: str) -> None:
    answer = notifier(stack, *args)
    assert answer.returncode != 0
    assert message in answer.stderr
