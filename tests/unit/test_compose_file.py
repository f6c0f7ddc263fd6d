"""docker-compose.yml against the code: every queue consumed, every command real, every setting known.

There is no Docker engine in CI, so the deployed layout is checked here by
reading it: a queue the code routes tasks to with no worker listening would
fill up silently in production; a command or a setting that does not exist
would fail only on the day someone deploys.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.main import get_command

from notifier.celery_config import ALL_QUEUES, make_celery
from notifier.cli import app as cli_app
from notifier.settings import Settings

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def notifier_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services that run the project's image (with ``notifier`` as the entry point)."""
    return {
        name: service
        for name, service in compose["services"].items()
        if service.get("image", "").startswith("notifier") or "build" in service
    }


def test_every_queue_the_code_routes_to_has_a_worker(compose: dict[str, Any]) -> None:
    routed = {route["queue"] for route in make_celery(Settings()).conf.task_routes.values()}
    routed |= set(ALL_QUEUES)
    consumed: set[str] = set()
    for service in notifier_services(compose).values():
        command = service.get("command", [])
        if command[:1] == ["worker"]:
            consumed |= set(command[command.index("-Q") + 1].split(","))
    assert routed - consumed == set(), f"queues with no worker service: {routed - consumed}"
    assert consumed - routed == set(), f"workers on queues nothing routes to: {consumed - routed}"


def test_every_command_exists_in_the_cli(compose: dict[str, Any]) -> None:
    commands = get_command(cli_app).commands  # type: ignore[attr-defined]
    for name, service in notifier_services(compose).items():
        command = service.get("command", [])
        assert command and command[0] in commands, f"{name}: no `notifier {command[:1]}` command"


def test_exactly_one_beat(compose: dict[str, Any]) -> None:
    beats = [
        (name, service.get("deploy", {}).get("replicas", 1))
        for name, service in notifier_services(compose).items()
        if service.get("command", [])[:1] == ["beat"]
    ]
    assert beats == [("beat", 1)]


def test_every_setting_named_exists(compose: dict[str, Any]) -> None:
    text = COMPOSE.read_text()
    named = set(re.findall(r"\bNOTIFIER_[A-Z0-9_]+", text))
    known = {f"NOTIFIER_{name.upper()}" for name in Settings.model_fields}
    unknown = {
        name
        for name in named
        # a nested one: NOTIFIER_TWILIO__AUTH_TOKEN belongs to NOTIFIER_TWILIO
        if name.split("__")[0] not in known
    }
    assert unknown == set(), (
        f"settings in docker-compose.yml that Settings does not have: {unknown}"
    )


def test_servers_have_healthchecks_and_services_restart(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("postgres", "rabbitmq", "redis", "api"):
        assert "healthcheck" in services[name], f"{name} has no healthcheck"
    for name, service in notifier_services(compose).items():
        expected = '"no"' if name == "migrate" else "unless-stopped"
        assert str(service.get("restart")).strip('"') == expected.strip('"'), name
