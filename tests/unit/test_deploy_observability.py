"""deploy/ against the code: Prometheus's rules and Grafana's dashboard ask only for metrics
notifier exports, and docker-compose.yml mounts files that exist.

A misspelt metric in an alert rule is an alert that never fires, and
Prometheus says nothing about it; a panel on a metric that is not there is
an empty chart. Both would be found on the day they were needed. The names
are checked against what ``GET /metrics`` really writes (counters with
``_total``, histograms with ``_bucket``, ``_count`` and ``_sum``), from a
snapshot holding a sample of every family. With ``promtool`` on the PATH (the
Debian package prometheus), the configuration and rules go through it too.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from sqlmodel import select

from notifier.deliveries.models import Delivery
from notifier.observability.metrics import (
    Histogram,
    Snapshot,
    Timeline,
    families,
    read_receipts,
)
from notifier.providers.circuits import CircuitState
from tests.support import events
from tests.support.stack import Stack

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = ROOT / "docker-compose.yml"
RULES = DEPLOY / "prometheus" / "alerts.yml"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "notifier.json"
# A metric name in PromQL (no label or function of ours starts with notifier_).
METRIC = re.compile(r"\b(notifier_[a-z0-9_]+)\b")


class _Every(Collector):
    def collect(self) -> Any:
        histogram = Histogram()
        histogram.count = 1
        yield from families(
            Snapshot(
                deliveries={("sms", "sent"): 1},
                retries={"sms": 1},
                escalations_open={("call", "toufen"): 1},
                timeline=Timeline(
                    errors={("sms", "21211"): 1},
                    time_to_sent={"sms": histogram},
                    time_to_delivered={"sms": histogram},
                ),
                queue_depths={"sms": 1},
                circuits=[
                    CircuitState(
                        provider="twilio",
                        open=True,
                        opened_at=1.0,
                        probe_at=None,
                        reason="",
                        openings=1,
                    )
                ],
                receipts_overdue={"twilio": 1},
            )
        )


@pytest.fixture(scope="module")
def exported() -> set[str]:
    """Every sample name ``GET /metrics`` writes."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Every())
    text = generate_latest(registry).decode()
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


def _rule_exprs() -> dict[str, str]:
    loaded = yaml.safe_load(RULES.read_text())
    return {rule["alert"]: rule["expr"] for group in loaded["groups"] for rule in group["rules"]}


def _panel_exprs() -> dict[str, list[str]]:
    loaded = json.loads(DASHBOARD.read_text())
    return {
        panel["title"]: [target["expr"] for target in panel["targets"]]
        for panel in loaded["panels"]
    }


def test_every_snapshot_family_has_a_sample_so_the_names_below_are_complete(
    exported: set[str],
) -> None:
    families_written = {
        name.removesuffix(suffix)
        for name in exported
        for suffix in ("_total", "_bucket", "_count", "_sum", "")
        if name.endswith(suffix)
    }
    assert {
        "notifier_deliveries",
        "notifier_queue_depth",
        "notifier_provider_circuit_open",
        "notifier_receipts_overdue",
        "notifier_time_to_sent_seconds",
    } <= families_written


def test_the_alerts_the_issue_asks_for_are_there() -> None:
    exprs = _rule_exprs()
    wanted = {
        "failure rate": "notifier_deliveries",
        "queue depth": "notifier_queue_depth",
        "receipts stalled": "notifier_receipts_overdue",
        "circuit open": "notifier_provider_circuit_open",
    }
    for what, metric in wanted.items():
        assert any(metric in expr for expr in exprs.values()), what
    for name in exprs:
        assert name.startswith("Notifier"), name


def test_every_metric_in_the_alert_rules_is_exported(exported: set[str]) -> None:
    for alert, expr in _rule_exprs().items():
        named = set(METRIC.findall(expr))
        # The one rule on Prometheus's own series: the scrape itself failing.
        assert named or 'up{job="notifier"}' in expr, f"{alert} names no notifier metric"
        assert named <= exported, f"{alert}: not exported: {named - exported}"


def test_every_metric_on_the_dashboard_is_exported(exported: set[str]) -> None:
    panels = _panel_exprs()
    titles = " ".join(panels).lower()
    for needed in ("status", "failure rate", "p95", "queue depth", "circuit"):
        assert needed in titles, needed
    for title, exprs in panels.items():
        named = {name for expr in exprs for name in METRIC.findall(expr)}
        assert named, f"panel {title!r} names no notifier metric"
        assert named <= exported, f"panel {title!r}: not exported: {named - exported}"
    # The channel variable's query, too.
    dashboard = json.loads(DASHBOARD.read_text())
    for variable in dashboard["templating"]["list"]:
        assert set(METRIC.findall(variable["definition"])) <= exported


def test_prometheus_scrapes_the_api_with_its_token_and_loads_the_rules() -> None:
    config = yaml.safe_load(PROMETHEUS.read_text())
    [job] = [job for job in config["scrape_configs"] if job["job_name"] == "notifier"]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"] == [{"targets": ["api:8000"]}]
    assert job["authorization"]["type"] == "Bearer"
    token_file = job["authorization"]["credentials_file"]
    assert "credentials" not in job["authorization"]  # no token in the repository
    compose = yaml.safe_load(COMPOSE.read_text())
    prometheus = compose["services"]["prometheus"]
    assert {"source": "metrics_token", "target": token_file} in prometheus["configs"]
    assert "NOTIFIER_METRICS_TOKEN" in compose["configs"]["metrics_token"]["content"]
    api_env = compose["services"]["api"]["environment"]
    assert api_env["NOTIFIER_METRICS_TOKEN"] == compose["configs"]["metrics_token"]["content"]
    mounted = {v.split(":")[1] for v in prometheus["volumes"] if v.startswith("./")}
    assert set(config["rule_files"]) <= mounted


def test_compose_mounts_only_files_that_exist() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    binds = [
        (name, str(volume).split(":")[0])
        for name, service in compose["services"].items()
        for volume in service.get("volumes", [])
        if str(volume).startswith("./")
    ]
    assert {name for name, _ in binds} >= {"prometheus", "grafana"}
    missing = [(name, path) for name, path in binds if not (ROOT / path).exists()]
    assert missing == []
    assert "mher/flower" in compose["services"]["flower"]["image"]  # Flower stays


def test_grafana_is_provisioned_with_the_datasource_and_the_dashboard() -> None:
    provisioning = DEPLOY / "grafana" / "provisioning"
    [source] = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    [provider] = yaml.safe_load((provisioning / "dashboards" / "notifier.yml").read_text())[
        "providers"
    ]
    grafana = yaml.safe_load(COMPOSE.read_text())["services"]["grafana"]
    mounts = dict(str(v).split(":")[:2] for v in grafana["volumes"])
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    dashboard = json.loads(DASHBOARD.read_text())
    uids = {
        target["datasource"]["uid"] for panel in dashboard["panels"] for target in panel["targets"]
    }
    assert uids == {source["uid"]}
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_accepts_the_rules() -> None:
    checked = subprocess.run(
        ["promtool", "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_send_waiting_past_the_stall_time_for_its_receipt_is_overdue(stack: Stack) -> None:
    acct = events.account(push_tokens=None, email=None)
    assert stack.post(events.unpaid(acct)).status_code == 202
    [sms] = stack.settled(acct["account_no"], count=1)
    provider = f"reporting-{sms.id}"  # a provider of this test's own: no other row counts
    now = datetime.now(UTC)
    with stack.db() as session:
        row = session.exec(select(Delivery).where(Delivery.id == sms.id)).one()
        row.status, row.provider, row.updated_at = "sent", provider, now - timedelta(hours=1)
        session.add(row)
    with stack.db() as session:
        late = read_receipts(session, providers=[provider], older_than=now.timestamp() - 900)
        early = read_receipts(session, providers=[provider], older_than=now.timestamp() - 7200)
    assert late == {provider: 1}
    assert early == {provider: 0}
