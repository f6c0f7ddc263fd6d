"""An escalation day from the shell: agents, keys, the sweep, lists and notices."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from pypdf import PdfReader

from tests.integration.test_escalation_api import TODAY, in_arrears, new_area
from tests.support.stack import Stack
from tests.support.tables import read_table

pytestmark = pytest.mark.parametrize("stack", ["sqlite-filesystem"], indirect=True)


def test_a_supervisor_sets_up_agents_sweeps_and_pulls_lists(stack: Stack, tmp_path: Path) -> None:
    area = new_area()
    added = stack.cli("agents", "add", "--name", "林建宏", "--area", area, "--kind", "caller")
    assert added.returncode == 0, added.stderr
    caller = int(added.stdout.strip())
    field = stack.cli("agents", "add", "--name", "陳志明", "--area", area, "--kind", "field")
    field_id = int(field.stdout.strip())
    key = stack.cli("keys", "create", "--role", "agent", "--agent", str(caller))
    assert key.returncode == 0 and key.stdout.startswith("ntf_"), key.stderr
    call_acct = in_arrears(stack, area)
    visit_acct = in_arrears(stack, area, vulnerable=True)

    swept = stack.cli("escalate", "--as-of", TODAY.isoformat())
    assert swept.returncode == 0, swept.stderr
    assert "cases opened" in swept.stdout
    again = stack.cli("escalate", "--as-of", TODAY.isoformat())
    assert "0 cases opened" in again.stdout  # idempotent

    out = tmp_path / "calls.xlsx"
    pulled = stack.cli("calls", "pull", "--agent", str(caller), "--format", "xlsx", "-o", str(out))
    assert pulled.returncode == 0, pulled.stderr
    header, *rows = read_table(out.read_bytes(), "xlsx")
    assert header[1] == "account" and [r[1] for r in rows] == [call_acct["account_no"]]

    visits = stack.cli("visits", "pull", "--agent", str(field_id))  # CSV on stdout
    assert visit_acct["account_no"] in visits.stdout and "area" in visits.stdout
    pdf = tmp_path / "notices.pdf"
    printed = stack.cli("visits", "notices", "--agent", str(field_id), "-o", str(pdf))
    assert printed.returncode == 0, printed.stderr
    assert len(PdfReader(io.BytesIO(pdf.read_bytes())).pages) == 1

    listed = stack.cli("agents", "list", "--area", area)
    assert f"{caller}\t林建宏\t{area}\tcaller\tactive\t1" in listed.stdout
    disabled = stack.cli("agents", "disable", str(caller))
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
    answer = stack.cli(*args)
    assert answer.returncode != 0
    assert message in answer.stderr
