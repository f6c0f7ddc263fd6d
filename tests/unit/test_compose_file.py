"""docker-compose.yml against the code: every queue consumed, every command real, every setting known.

There is no Docker engine in CI, so the deployed layout is checked here by
reading it: a queue the code routes tasks to with no worker listening would
fill up silently in production; a command or a setting that does not exist
would fail only on the day someone deploys; a healthcheck that pings a node
name the process does not use would mark a healthy worker unhealthy.
"""

from __future__ import annotations

import re
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from celery.beat import beat_nodename
from celery.utils.nodenames import default_nodename
from pydantic import BaseModel
from typer.main import get_command
from typer.testing import CliRunner

from channels import CHANNEL_NAMES
from notifier.api.health import router as health_router
from notifier.cli import app as cli_app
from notifier.queues.celery_config import ALL_QUEUES, make_celery
from notifier.settings import Settings, get_settings

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"
ONE_SHOT = {"migrate"}
"""Services that run to completion; every other service runs for good."""


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


def workers(compose: dict[str, Any]) -> dict[str, list[str]]:
    """Each `notifier worker` service and the queues it consumes."""
    found: dict[str, list[str]] = {}
    for name, service in notifier_services(compose).items():
        command = service.get("command", [])
        if command[:1] == ["worker"]:
            found[name] = command[command.index("-Q") + 1].split(",")
    return found


def healthcheck_shell(service: dict[str, Any]) -> str:
    """A CMD-SHELL healthcheck as the shell gets it (Compose turns ``$$`` into ``$``)."""
    test = service["healthcheck"]["test"]
    assert test[0] == "CMD-SHELL", test
    return str(test[1]).replace("$$", "$")


def default_of(value: str) -> str:
    """``${NAME:-default}`` → ``default``: what Compose substitutes when .env sets nothing."""
    match = re.fullmatch(r"\$\{[A-Z0-9_]+:-(.*)\}", value)
    return match.group(1) if match else value


def seconds(duration: str) -> float:
    """A Compose duration such as ``60s``, ``5m`` or ``1m30s``, in seconds."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|m|s|us)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    unit = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6}
    return sum(float(n) * unit[u] for n, u in parts)


@pytest.fixture
def exec_argv(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Callable[[list[str]], list[str]]]:
    """The command line `notifier <command>` replaces itself with (os.execv), not run."""
    monkeypatch.setenv("NOTIFIER_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()

    def run(command: list[str]) -> list[str]:
        seen: list[list[str]] = []
        monkeypatch.setattr("os.execv", lambda _path, argv: seen.append(list(argv)))
        result = CliRunner().invoke(cli_app, command)
        assert result.exit_code == 0, result.output
        assert len(seen) == 1, f"`notifier {' '.join(command)}` did not exec a process"
        return seen[0]

    yield run
    get_settings.cache_clear()


def test_every_queue_the_code_routes_to_has_a_worker(compose: dict[str, Any]) -> None:
    routed = {route["queue"] for route in make_celery(Settings()).conf.task_routes.values()}
    routed |= set(ALL_QUEUES)
    consumed = {queue for queues in workers(compose).values() for queue in queues}
    assert routed - consumed == set(), f"queues with no worker service: {routed - consumed}"
    assert consumed - routed == set(), f"workers on queues nothing routes to: {consumed - routed}"


def test_every_channel_queue_has_a_worker_service_of_its_own(compose: dict[str, Any]) -> None:
    # One service per channel, so each scales alone (`--scale worker-sms=3`) and a
    # slow provider holds up no other channel.
    for_channels = {
        name: queues for name, queues in workers(compose).items() if set(queues) & {*CHANNEL_NAMES}
    }
    assert for_channels == {f"worker-{channel}": [channel] for channel in CHANNEL_NAMES}


def test_every_command_exists_in_the_cli(compose: dict[str, Any]) -> None:
    commands = get_command(cli_app).commands  # type: ignore[attr-defined]
    for name, service in notifier_services(compose).items():
        command = service.get("command", [])
        assert command and command[0] in commands, f"{name}: no `notifier {command[:1]}` command"


def test_every_setting_named_exists(compose: dict[str, Any]) -> None:
    def known(model: type[BaseModel], path: list[str]) -> bool:
        # NOTIFIER_TWILIO__AUTH_TOKEN: the field auth_token of the model in Settings.twilio
        field = model.model_fields.get(path[0].lower())
        if field is None:
            return False
        if len(path) == 1:
            return True
        nested = field.annotation
        return (
            isinstance(nested, type) and issubclass(nested, BaseModel) and known(nested, path[1:])
        )

    named = set(re.findall(r"\bNOTIFIER_[A-Z0-9_]+", COMPOSE.read_text()))
    unknown = {name for name in named if not known(Settings, name[len("NOTIFIER_") :].split("__"))}
    assert unknown == set(), (
        f"settings in docker-compose.yml that Settings does not have: {unknown}"
    )


def test_exactly_one_beat(compose: dict[str, Any]) -> None:
    # Two would send every scheduled sweep, reconcile and print batch twice.
    beats = [
        (name, service.get("deploy", {}).get("replicas", 1))
        for name, service in notifier_services(compose).items()
        if service.get("command", [])[:1] == ["beat"]
    ]
    assert beats == [("beat", 1)]


def test_the_api_runs_two_replicas_checked_on_a_real_route(compose: dict[str, Any]) -> None:
    api = compose["services"]["api"]
    assert api["command"][0] == "api"
    assert api["deploy"]["replicas"] == 2
    checked = re.findall(r"http://127\.0\.0\.1:8000(/\w+)", " ".join(api["healthcheck"]["test"]))
    assert checked == ["/readyz"]
    assert "/readyz" in {route.path for route in health_router.routes}  # type: ignore[attr-defined]


def test_long_running_services_have_healthchecks_and_restart(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        if name in ONE_SHOT:
            continue
        assert "healthcheck" in service, f"{name} has no healthcheck"
        assert service.get("restart") == "unless-stopped", f"{name} is not restarted"


def test_migrate_runs_once_and_the_rest_waits_for_it(compose: dict[str, Any]) -> None:
    services = notifier_services(compose)
    migrate = services.pop("migrate")
    assert migrate["command"] == ["migrate"]
    assert migrate["restart"] == "no"
    for name, service in services.items():
        assert service["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"
        }, name


def test_the_rate_limits_are_shared_through_redis(compose: dict[str, Any]) -> None:
    # Every process must read and take the same slots, or each worker would
    # send at the full provider rate on its own.
    for name, service in notifier_services(compose).items():
        url = urlsplit(default_of(service["environment"]["NOTIFIER_RATE_LIMIT_URL"]))
        assert url.scheme == "redis" and url.hostname == "redis", name
        if name not in ONE_SHOT:
            assert service["depends_on"]["redis"] == {"condition": "service_healthy"}, name
    assert "redis" in compose["services"]


def test_workers_stop_gracefully(compose: dict[str, Any]) -> None:
    # SIGTERM is Celery's warm shutdown: the sends in flight finish first.
    for name in workers(compose):
        service = compose["services"][name]
        assert service["stop_signal"] == "SIGTERM", name
        assert seconds(service["stop_grace_period"]) >= 60, name


def test_worker_healthchecks_ping_the_node_each_worker_runs_as(
    compose: dict[str, Any], exec_argv: Callable[[list[str]], list[str]]
) -> None:
    for name in workers(compose):
        service = compose["services"][name]
        argv = exec_argv(service["command"])
        options = argv[argv.index("worker") + 1 :]
        # No -n/--hostname: the node is Celery's default, celery@<hostname>,
        # and in a container HOSTNAME is that hostname.
        assert not [o for o in options if o.split("=")[0] in ("-n", "--hostname")], argv
        assert default_nodename(None) == f"celery@{socket.gethostname()}"
        app = argv[argv.index("-A") + 1]
        assert f"celery -A {app} inspect ping -d celery@$HOSTNAME " in healthcheck_shell(service)


def test_beat_healthcheck_pings_the_node_beat_answers_on(
    compose: dict[str, Any],
    exec_argv: Callable[[list[str]], list[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    beat = compose["services"]["beat"]
    argv = exec_argv(beat["command"])
    # Parse that command line as `celery` does, in beat's environment, and see
    # how beat would start: it answers `inspect ping` only with remote control on.
    started: dict[str, Any] = {}

    def run(self: Any) -> None:
        started.update(remote_control=self.remote_control, hostname=self.hostname)

    monkeypatch.setattr("celery.apps.beat.Beat.run", run)
    for key, value in beat["environment"].items():
        if key.startswith("CELERY_"):
            monkeypatch.setenv(key, str(value))
    monkeypatch.setattr(sys, "argv", ["celery", *argv[argv.index("celery") + 1 :]])
    from celery.bin.celery import main as celery_main

    with pytest.raises(SystemExit) as exited:
        celery_main()
    assert exited.value.code == 0
    assert started["remote_control"] is True
    assert beat_nodename(started["hostname"]) == f"celerybeat@{socket.gethostname()}"
    app = argv[argv.index("-A") + 1]
    assert f"celery -A {app} inspect ping -d celerybeat@$HOSTNAME " in healthcheck_shell(beat)


def test_flower_watches_the_workers_broker(compose: dict[str, Any]) -> None:
    flower = compose["services"]["flower"]
    assert flower["image"].startswith("mher/flower:")
    broker = compose["services"]["worker-events"]["environment"]["NOTIFIER_BROKER_URL"]
    assert flower["environment"]["CELERY_BROKER_URL"] == broker


def test_data_lives_in_named_volumes(compose: dict[str, Any]) -> None:
    mounts = {
        name: {str(volume).split(":")[0] for volume in service.get("volumes", [])}
        for name, service in compose["services"].items()
    }
    assert "postgres-data" in mounts["postgres"]
    assert "rabbitmq-data" in mounts["rabbitmq"]
    for name in notifier_services(compose):
        assert "notifier-data" in mounts[name], name  # beat's schedule, print batches
    assert {"postgres-data", "rabbitmq-data", "notifier-data"} <= set(compose["volumes"])
