"""The proposal run: what the sweep would do, under the policy in force or a proposed one.

Proof that nothing changed: every table the sweep (and the ladder after it)
writes is counted before and after, and the cases are compared row by row,
since closing a case is an UPDATE that no count shows. The producer's outbox
(``producer_callbacks``) is one of them.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from notifier import models
from notifier.app import create_app
from notifier.auth import keys
from notifier.escalation.proposal import COUNTS, Figures, Line, compare, dry_run
from notifier.escalation.sweep import sweep
from notifier.webhooks import service as webhooks
from tests.support import events
from tests.support.ledger import Ledger

JUL_20, SEP_20, NOV_20, NOV_21, NOV_23 = date(2026, 7, 20), date(2026, 9, 20), date(2026, 11, 20), date(2026, 11, 21), date(2026, 11, 23)  # fmt: skip
TABLES = [
    models.Escalation, models.EscalationBill, models.EscalationChange, models.EscalationAttempt,
    models.SweepRun, models.ProducerCallback, models.Notification, models.Delivery,
    models.AuditEntry,
]  # fmt: skip


def snapshot(ledger: Ledger) -> dict[str, Any]:
    """Row counts of what a sweep may write, and every case as it stands."""
    with ledger.db() as session:
        counts = {
            table.__tablename__: session.execute(  # type: ignore[attr-defined]
                sa.select(sa.func.count()).select_from(table)
            ).scalar_one()
            for table in TABLES
        }
        cases = session.execute(
            sa.select(
                models.Escalation.id, models.Escalation.status, models.Escalation.outcome,  # type: ignore[arg-type]
                models.Escalation.kind, models.Escalation.assignee_id, models.Escalation.stage,  # type: ignore[arg-type]
                models.Escalation.updated_at,  # type: ignore[arg-type]
            ).order_by(models.Escalation.id)  # type: ignore[arg-type]
        ).all()  # fmt: skip
    return {"counts": counts, "cases": [tuple(row) for row in cases]}


def of_area(figures: Figures, area: str) -> dict[Line, int]:
    return {line: count for line, count in figures.cases.items() if line.area == area}


def a_producer(ledger: Ledger, area: str) -> int:
    """A producer key with a callback URL: the sweep owes it callbacks about its accounts."""
    with ledger.db() as session:
        producer, _ = keys.create_key(session, role="producer", name=f"billing {area}")
        assert producer.id is not None
        webhooks.register(
            session, producer.id, "http://127.0.0.1:9/billing", deployed=False, allow_private=True,
            now=ledger.runtime.clock(),
        )  # fmt: skip
        return producer.id


def test_a_dry_run_tells_what_the_sweep_would_do_and_changes_nothing(ledger: Ledger) -> None:
    area = ledger.new_area()
    ledger.add_agent(area, "caller")
    called, visited = events.account(area=area), events.account(area=area, vulnerable=True)
    for acct in (called, visited):
        ledger.issue(acct, "2026-07", SEP_20)
        ledger.issue(acct, "2026-09", NOV_20)
    before = snapshot(ledger)

    figures = dry_run(ledger.runtime.db, ledger.policy, NOV_20)

    assert snapshot(ledger) == before
    assert ledger.cases(called["account_no"]) == []
    assert of_area(figures, area) == {
        Line(area, "call", "", "opened"): 1,
        Line(area, "call", "", "assigned"): 1,  # to the area's caller
        Line(area, "visit", "", "opened"): 1,
        Line(area, "visit", "", "unassigned"): 1,  # no field agent in the area
    }
    # The sweep itself, on the same ledger, does what the dry run said.
    run = ledger.sweep(NOV_20)
    assert {name: getattr(run, name) for name in COUNTS} == figures.counts
    assert ledger.open_case(called["account_no"]) is not None


def test_a_proposed_policy_is_seen_before_it_is_made(ledger: Ledger) -> None:
    area = ledger.new_area()
    producer = a_producer(ledger, area)
    acct = events.account(area=area)
    b05 = events.unpaid(acct, period="2026-05", due=JUL_20)
    b07 = events.unpaid(acct, period="2026-07", due=SEP_20)
    b09 = events.unpaid(acct, period="2026-09", due=NOV_20)
    ledger.post(b05, b07, b09, producer_key_id=producer)
    ledger.sweep(NOV_20)
    ledger.pay(
        acct, b05["bill"], on=NOV_21, producer_key_id=producer
    )  # B07 and B09 (NT$3,660) still owed: the case stands
    assert ledger.open_case(acct["account_no"]) is not None
    stricter = ledger.policy.model_copy(update={"min_arrears": 5000})
    before = snapshot(ledger)

    current = dry_run(ledger.runtime.db, ledger.policy, NOV_23)
    proposed = dry_run(ledger.runtime.db, stricter, NOV_23)

    assert snapshot(ledger) == before  # the outbox too: no escalation.closed was kept
    # Now: B09, overdue since 20 Nov, joins the case. Proposed: NT$3,660 is under the
    # minimum, the case closes and the producer is told.
    assert of_area(current, area) == {Line(area, "call", "", "bills joined"): 1}
    assert of_area(proposed, area) == {Line(area, "call", "", "closed (paid)"): 1}
    assert proposed.callbacks.get("escalation.closed", 0) >= 1
    side_by_side = compare(current, proposed)
    assert (f"{area} call bills joined", 1, 0) in side_by_side
    assert (f"{area} call closed (paid)", 0, 1) in side_by_side
    # Made, the change does what was seen.
    sweep(ledger.runtime.db, stricter, NOV_23, trigger="test")
    assert ledger.open_case(acct["account_no"]) is None


@pytest.fixture
def api(ledger: Ledger) -> tuple[TestClient, dict[str, str]]:
    with ledger.db() as session:
        _, token = keys.create_key(session, role="admin", name="proposal admin")
    client = TestClient(create_app(ledger.runtime.settings, runtime=ledger.runtime))
    return client, {"Authorization": f"Bearer {token}"}


def test_the_api_answers_a_dry_run_with_the_figures(
    ledger: Ledger, api: tuple[TestClient, dict[str, str]]
) -> None:
    client, admin = api
    area = ledger.new_area()
    acct = events.account(area=area)
    ledger.issue(acct, "2026-07", SEP_20)
    ledger.issue(acct, "2026-09", NOV_20)
    before = snapshot(ledger)

    answer = client.post(
        "/v1/escalations/sweeps",
        json={"as_of": "2026-11-20", "dry_run": True, "policy": {"escalation": {"min_arrears": 5000}}},
        headers=admin,
    )  # fmt: skip

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert snapshot(ledger) == before
    mine = [line for line in body["current"]["cases"] if line["area"] == area]
    assert mine == [
        {"area": area, "kind": "call", "stage": None, "change": "opened", "cases": 1},
        {"area": area, "kind": "call", "stage": None, "change": "unassigned", "cases": 1},
    ]
    assert [line for line in body["proposed"]["cases"] if line["area"] == area] == []
    assert body["current"]["counts"]["opened"] >= 1 and body["current"]["as_of"] == "2026-11-20"


@pytest.mark.parametrize(
    ("sent", "field"),
    [
        ({"as_of": "2026-02-30", "dry_run": True}, "as_of"),
        ({"dry_run": True, "policy": {"escalation": {"min_arrears": -1}}}, "policy.escalation.min_arrears"),
        ({"dry_run": True, "policy": {"escalation": {"calendar": "XX"}}}, "policy.escalation.calendar"),
        ({"policy": {"escalation": {"min_arrears": 5}}}, "policy"),  # a real sweep takes none
    ],
)  # fmt: skip
def test_a_bad_date_or_policy_is_refused_by_name(
    ledger: Ledger, api: tuple[TestClient, dict[str, str]], sent: dict[str, Any], field: str
) -> None:
    client, admin = api
    before = snapshot(ledger)
    answer = client.post("/v1/escalations/sweeps", json=sent, headers=admin)
    assert answer.status_code == 422, answer.text
    assert field in [error["field"] for error in answer.json()["errors"]], answer.text
    assert snapshot(ledger) == before


def test_the_cli_prints_current_and_proposed_side_by_side(ledger: Ledger, tmp_path: Path) -> None:
    from notifier.cli import app
    from notifier.settings import get_settings

    area = ledger.new_area()
    acct = events.account(area=area)
    ledger.issue(acct, "2026-07", SEP_20)
    ledger.issue(acct, "2026-09", NOV_20)
    settings = ledger.runtime.settings
    raw = yaml.safe_load(settings.policy_file.read_text(encoding="utf-8"))
    raw["escalation"]["min_arrears"] = 5000
    proposal = tmp_path / "proposed.yaml"
    proposal.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**raw, "escalation": {**raw["escalation"], "grace_days": -2}}))
    env = {
        "NOTIFIER_DATABASE_URL": settings.database_url,
        "NOTIFIER_DATA_DIR": str(settings.data_dir),
        "NOTIFIER_POLICY_FILE": str(settings.policy_file),
        "NOTIFIER_BROKER_URL": "",
    }
    before = snapshot(ledger)
    runner = CliRunner()
    get_settings.cache_clear()
    try:
        shown = runner.invoke(
            app, ["escalate", "--as-of", "2026-11-20", "--dry-run", "--policy", str(proposal)], env=env
        )  # fmt: skip
        as_json = runner.invoke(
            app, ["escalate", "--as-of", "2026-11-20", "--dry-run", "--json"], env=env
        )
        refused = runner.invoke(
            app, ["escalate", "--as-of", "2026-11-20", "--dry-run", "--policy", str(bad)], env=env
        )
    finally:
        get_settings.cache_clear()

    assert shown.exit_code == 0, shown.output
    assert "nothing was changed" in shown.output
    [line] = [row for row in shown.output.splitlines() if row.startswith(f"{area} call opened")]
    assert line.split()[-3:] == ["1", "0", "-1"]  # current, proposed, change
    assert as_json.exit_code == 0, as_json.output
    figures = json.loads(as_json.output)
    assert figures["proposed"] is None
    assert {"area": area, "kind": "call", "stage": None, "change": "opened", "cases": 1} in figures[
        "current"
    ]["cases"]
    assert refused.exit_code == 2 and "escalation.grace_days" in refused.output
    assert snapshot(ledger) == before
