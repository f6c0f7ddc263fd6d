"""``notifier up``: the whole service on one machine with nothing installed.

SQLite in the data dir, kombu's filesystem transport as the broker, sandbox
providers, one Celery worker (with the scheduler inside), the message bus's
consumer (``notifier ingest``) and the bounce receiver (``notifier bounces``)
beside the API. With the simulators, mail to a
``dead.example`` address bounces back to it as a real MTA's would.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from datetime import UTC, datetime

import typer
import uvicorn

from channels import CHANNEL_NAMES
from notifier.app import create_app
from notifier.auth import keys
from notifier.migrations import upgrade
from notifier.providers.selection import provider_for
from notifier.providers.simulated import Simulators
from notifier.queues.celery_config import ALL_QUEUES
from notifier.runtime import Runtime
from notifier.settings import Settings, get_settings

__all__ = ["run_embedded"]


def run_embedded(*, host: str, port: int, simulate: bool = True) -> None:
    """Migrate, make a producer key, start the worker and serve the API until Ctrl-C.

    Unless real provider credentials are configured (or ``simulate`` is off,
    leaving the recording sandboxes), the provider simulators run too and the
    real adapters talk to them.
    """
    data_dir = get_settings().data_dir.resolve()
    simulators: Simulators | None = None
    # Mitake is only ever chosen by name: it is real once its credentials are set too.
    real_mitake = bool(get_settings().mitake.username)
    if simulate and not any(
        (chosen := provider_for(get_settings(), channel)) in {"twilio", "smtp", "fcm"}
        or (chosen == "mitake" and real_mitake)
        for channel in ("sms", "email", "push")
    ):
        simulators = Simulators(maildir=data_dir / "mail")
        os.environ.update(simulators.start())
    # Where Twilio (here: its simulator) sends status callbacks.
    os.environ.setdefault("NOTIFIER_PUBLIC_URL", f"http://{host}:{port}")
    # Every email gets a bounce address; the worker (a child) reads the same domain.
    os.environ.setdefault("NOTIFIER_BOUNCES__DOMAIN", "bounces.localhost")
    # Only the local simulators send to it: any free port, so two instances never collide.
    os.environ.setdefault("NOTIFIER_BOUNCES__PORT", str(_free_port()))
    get_settings.cache_clear()
    settings = _absolute(get_settings())
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url)
    runtime = Runtime(settings)
    runtime.renderer.check_all()
    with runtime.db.session() as session:
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        _, key = keys.create_key(session, role="producer", name=f"embedded-{stamp}")
    worker = _start_worker(settings)
    ingest = _start_ingest()
    bounces = _start_bounces()
    bounce_host, bounce_port = settings.bounces.host, settings.bounces.port
    if simulators is not None:
        simulators.smtp.bounce_to = (bounce_host, bounce_port)  # the bounce domain's "MX"
    base = f"http://{host}:{port}"
    providers = ", ".join(f"{c} → {provider_for(settings, c)}" for c in CHANNEL_NAMES)
    typer.echo(
        "\n".join(
            [
                "notifier is running (embedded: SQLite, filesystem broker)",
                f"  providers  {providers}" + ("  (local simulators)" if simulators else ""),
                f"  API        {base}/v1/events",
                f"  bus        `notifier events publish FILE.csv|FILE.jsonl` (exchange "
                f"{settings.ingest.exchange}; `notifier events dlq list` shows refusals)",
                f"  docs       {base}/docs",
                f"  producer key (shown once): {key}",
                f"  data       {settings.data_dir}",
                f"  sandbox    {settings.sandbox_dir}  (what the recording sandboxes got)",
                f"  mail       {data_dir / 'mail'}  (what the SMTP catcher got)",
                f"  bounces    {bounce_host}:{bounce_port}  (DSNs for "
                f"{settings.bounces.local_part}+*@{settings.bounces.domain})",
                f"  postcards  {settings.data_dir / 'print'}  (`notifier postcards batch` prints now)",
                "Ctrl-C stops it.",
            ]
        )
    )
    # uvicorn re-raises the signal that stopped it once it is done; make
    # SIGTERM unwind like Ctrl-C does, so the worker is stopped too.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        uvicorn.run(
            create_app(settings, runtime=runtime),
            host=host,
            port=port,
            log_config=None,
            proxy_headers=False,  # NOTIFIER_TRUST_FORWARDED_HEADERS decides, not uvicorn
        )
    finally:
        _stop(bounces)
        _stop(ingest)
        _stop(worker)
        if simulators is not None:
            simulators.stop()


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _absolute(settings: Settings) -> Settings:
    # The worker is a child process started elsewhere: give it absolute paths.
    data_dir = settings.data_dir.resolve()
    os.environ["NOTIFIER_DATA_DIR"] = str(data_dir)
    return settings.model_copy(update={"data_dir": data_dir})


def _start_worker(settings: Settings) -> subprocess.Popen[bytes]:
    argv = [
        sys.executable, "-m", "celery", "-A", "notifier.worker.app", "worker",
        "--beat", "--schedule", str(settings.data_dir / "celerybeat-schedule"),
        "-Q", ",".join(ALL_QUEUES), "--pool", "threads", "--concurrency", "8",
        "--loglevel", "WARNING", "--without-heartbeat", "--without-gossip", "--without-mingle",
    ]  # fmt: skip
    # Its own session, so Ctrl-C reaches the API first and we stop the worker in order.
    return subprocess.Popen(argv, start_new_session=True)


def _start_ingest() -> subprocess.Popen[bytes]:
    """``notifier ingest``: events published on the (filesystem) message bus."""
    argv = [sys.executable, "-m", "notifier", "ingest"]
    # As quiet as the worker: dead letters (warnings) still show.
    env = {**os.environ, "NOTIFIER_LOG_LEVEL": os.environ.get("NOTIFIER_LOG_LEVEL", "WARNING")}
    return subprocess.Popen(argv, env=env, start_new_session=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_bounces() -> subprocess.Popen[bytes]:
    """``notifier bounces``: the SMTP receiver of the DSNs for the emails' bounce addresses."""
    argv = [sys.executable, "-m", "notifier", "bounces"]
    env = {**os.environ, "NOTIFIER_LOG_LEVEL": os.environ.get("NOTIFIER_LOG_LEVEL", "WARNING")}
    return subprocess.Popen(argv, env=env, start_new_session=True)


def _stop(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is not None:
        return
    worker.send_signal(signal.SIGTERM)
    try:
        worker.wait(timeout=15)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()
