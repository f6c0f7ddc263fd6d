"""``notifier up``: the whole service on one machine with nothing installed.

SQLite in the data dir, kombu's filesystem transport as the broker, sandbox
providers, one Celery worker (with the scheduler inside), the message bus's
consumer (``notifier ingest``) and the bounce receiver (``notifier bounces``)
beside the API. With the simulators, mail to a
``dead.example`` address bounces back to it as a real MTA's would.

The producer key is kept in the data dir (``producer-key``, mode 0600) and
stays the same across restarts; ``notifier up --new-producer-key`` or
``notifier producer-key rotate`` replaces it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import typer
import uvicorn
from sqlmodel import select

from channels import CHANNEL_NAMES
from notifier.app import create_app
from notifier.auth import keys
from notifier.db import Database
from notifier.migrations import upgrade
from notifier.providers.selection import provider_for
from notifier.providers.simulated import Simulators
from notifier.queues.celery_config import ALL_QUEUES
from notifier.runtime import Runtime
from notifier.settings import Settings, get_settings
from notifier.users.models import User

__all__ = ["KEY_FILE", "producer_key", "run_embedded"]


KEY_FILE = "producer-key"
"""The embedded producer key, in the data folder: the same key across restarts."""


def run_embedded(
    *,
    host: str,
    port: int,
    simulate: bool = True,
    verbose: bool = False,
    new_producer_key: bool = False,
) -> None:
    """Migrate, find the producer key, start the worker and serve the API until Ctrl-C.

    Unless real provider credentials are configured (or ``simulate`` is off,
    leaving the recording sandboxes), the provider simulators run too and the
    real adapters talk to them. The banner is the last thing printed: the
    children are quiet (Celery's banner, library warnings, the receivers' own
    lines) unless ``verbose``.
    """
    if not verbose:
        # Deprecation and "running as root" warnings are for whoever upgrades
        # the libraries, not for someone trying the service; children inherit it.
        warnings.simplefilter("ignore")
        os.environ["PYTHONWARNINGS"] = "ignore"
        # Warnings and errors only (the access lines, the SMTP catcher's dialogue: not).
        os.environ.setdefault("NOTIFIER_LOG_LEVEL", "WARNING")
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
    # A host in the URL: without one kombu warns "No hostname was supplied" on every
    # connection. The filesystem transport reads only its folders (transport options).
    os.environ.setdefault("NOTIFIER_BROKER_URL", "filesystem://localhost//")
    get_settings.cache_clear()
    settings = _absolute(get_settings())
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url)
    runtime = Runtime(settings)
    runtime.renderer.check_all()
    key, key_note = producer_key(runtime.db, settings.data_dir, new=new_producer_key)
    with runtime.db.session() as session:
        nobody_signs_in = session.exec(select(User.id).limit(1)).first() is None
    worker = _start_worker(settings, verbose=verbose)
    ingest = _start_ingest(verbose=verbose)
    bounces = _start_bounces(verbose=verbose)
    bounce_host, bounce_port = settings.bounces.host, settings.bounces.port
    if simulators is not None:
        simulators.smtp.bounce_to = (bounce_host, bounce_port)  # the bounce domain's "MX"
    base = f"http://{host}:{port}"
    providers = ", ".join(f"{c} → {provider_for(settings, c)}" for c in CHANNEL_NAMES)
    first_user = "  (no user yet: `notifier users add --username NAME --role admin`)"
    banner = "\n".join(
        [
            "",
            "notifier is running (embedded: SQLite, filesystem broker)",
            f"  providers    {providers}" + ("  (local simulators)" if simulators else ""),
            f"  bus          `notifier events publish FILE.csv|FILE.jsonl` (exchange "
            f"{settings.ingest.exchange}; `notifier events dlq list` shows refusals)",
            f"  data         {settings.data_dir}",
            f"  sandbox      {settings.sandbox_dir}  (what the recording sandboxes got)",
            f"  mail         {data_dir / 'mail'}  (what the SMTP catcher got)",
            f"  bounces      {bounce_host}:{bounce_port}  (DSNs for "
            f"{settings.bounces.local_part}+*@{settings.bounces.domain})",
            f"  postcards    {settings.data_dir / 'print'}  (`notifier postcards batch` prints now)",
            f"  API          {base}/v1/events",
            f"  sign in      {base}/sign-in" + (first_user if nobody_signs_in else ""),
            f"  docs         {base}/docs",
            f"  producer key {key}",
            f"               {key_note}; kept in {settings.data_dir / KEY_FILE}",
            "Ctrl-C stops it." + ("" if verbose else " (--verbose shows the worker's own lines)"),
        ]
    )
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, runtime=runtime),
            host=host,
            port=port,
            log_config=None,
            log_level=None if verbose else "warning",
            proxy_headers=False,  # NOTIFIER_TRUST_FORWARDED_HEADERS decides, not uvicorn
        )
    )
    # Printed once the API answers, so nothing of the start-up scrolls it away.
    threading.Thread(target=_announce, args=(server, banner), daemon=True).start()
    # uvicorn re-raises the signal that stopped it once it is done; make
    # SIGTERM unwind like Ctrl-C does, so the worker is stopped too.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        server.run()
    except KeyboardInterrupt:
        pass  # uvicorn re-raises the Ctrl-C it handled: the shutdown is done
    finally:
        _stop(bounces)
        _stop(ingest)
        _stop(worker)
        if simulators is not None:
            simulators.stop()


def producer_key(db: Database, data_dir: Path, *, new: bool = False) -> tuple[str, str]:
    """The embedded producer key and how it came: kept from the last run, or a new one.

    The key lives in ``data_dir/producer-key`` (mode 0600, like the database beside it),
    so a producer configured once keeps working after a restart. A new one is made
    only when asked (``new``: the old one is revoked at once), or when the kept one
    no longer works (revoked, or the database was replaced).
    """
    path = data_dir / KEY_FILE
    kept = path.read_text(encoding="utf-8").strip() if path.is_file() else ""
    with db.session() as session:
        row = keys.verify(session, kept) if kept else None
        if row is not None and row.role != "producer":
            row = None
        if row is not None and not new:
            return kept, "the same key as the last run"
        if row is not None:
            assert row.id is not None
            _, key, _ = keys.rotate(session, row.id)
            note = "a new key, as asked; the old one no longer works"
        else:
            _, key = keys.create_key(session, role="producer", name="embedded")
            note = f"a new key (the one in {path.name} no longer works)" if kept else "a new key"
        # Written inside the transaction: a key that could not be kept is not created.
        _write_private(path, key + "\n")
    return key, note


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    os.chmod(partial, 0o600)  # an old partial file keeps its mode otherwise
    os.replace(partial, path)


def _announce(server: uvicorn.Server, banner: str) -> None:
    while not server.started and not server.should_exit:
        time.sleep(0.05)
    if server.started:
        typer.echo(banner)


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _absolute(settings: Settings) -> Settings:
    # The worker is a child process started elsewhere: give it absolute paths.
    data_dir = settings.data_dir.resolve()
    os.environ["NOTIFIER_DATA_DIR"] = str(data_dir)
    return settings.model_copy(update={"data_dir": data_dir})


def _start_worker(settings: Settings, *, verbose: bool) -> subprocess.Popen[bytes]:
    argv = [
        sys.executable, "-m", "celery", "-A", "notifier.worker.app",
        *([] if verbose else ["--quiet"]),  # no banner
        "worker",
        "--beat", "--schedule", str(settings.data_dir / "celerybeat-schedule"),
        "-Q", ",".join(ALL_QUEUES), "--pool", "threads", "--concurrency", "8",
        "--loglevel", "INFO" if verbose else "WARNING",
        "--without-heartbeat", "--without-gossip", "--without-mingle",
    ]  # fmt: skip
    # Its own session, so Ctrl-C reaches the API first and we stop the worker in order.
    return subprocess.Popen(argv, start_new_session=True, stdout=_quiet(verbose))


def _quiet(verbose: bool) -> int | None:
    """The children's stdout: their own start-up lines, which the banner says already.

    Their logs (stderr) stay: a warning or an error there is something to see.
    """
    return None if verbose else subprocess.DEVNULL


def _start_ingest(*, verbose: bool) -> subprocess.Popen[bytes]:
    """``notifier ingest``: events published on the (filesystem) message bus."""
    argv = [sys.executable, "-m", "notifier", "ingest"]
    # As quiet as the worker: dead letters (warnings) still show.
    env = {**os.environ, "NOTIFIER_LOG_LEVEL": os.environ.get("NOTIFIER_LOG_LEVEL", "WARNING")}
    return subprocess.Popen(argv, env=env, start_new_session=True, stdout=_quiet(verbose))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_bounces(*, verbose: bool) -> subprocess.Popen[bytes]:
    """``notifier bounces``: the SMTP receiver of the DSNs for the emails' bounce addresses."""
    argv = [sys.executable, "-m", "notifier", "bounces"]
    env = {**os.environ, "NOTIFIER_LOG_LEVEL": os.environ.get("NOTIFIER_LOG_LEVEL", "WARNING")}
    return subprocess.Popen(argv, env=env, start_new_session=True, stdout=_quiet(verbose))


def _stop(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is not None:
        return
    worker.send_signal(signal.SIGTERM)
    try:
        worker.wait(timeout=15)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()
