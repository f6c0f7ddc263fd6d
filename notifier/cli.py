"""The ``notifier`` command: run the service, migrate, manage keys."""

from __future__ import annotations

import os
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from notifier.db import Database
from notifier.escalation.cli import agents_app, calls_app, escalate, visits_app
from notifier.settings import get_settings
from notifier.users.cli import users_app

__all__ = ["app"]

app = typer.Typer(
    help="Multichannel customer notifications for an electric utility.", no_args_is_help=True
)
keys_app = typer.Typer(help="API keys: create, list, revoke.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
postcards_app = typer.Typer(help="Printed postcards: the daily print batch.", no_args_is_help=True)
app.add_typer(postcards_app, name="postcards")

app.command()(escalate)
app.add_typer(agents_app, name="agents")
app.add_typer(calls_app, name="calls")
app.add_typer(visits_app, name="visits")
app.add_typer(users_app, name="users")

Port = Annotated[int, typer.Option(help="port the API listens on")]
Host = Annotated[str, typer.Option(help="address the API binds to")]


@app.command()
def migrate() -> None:
    """Bring the database schema up to date."""
    from notifier.migrations import upgrade

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url)
    typer.echo(f"database is up to date: {_safe_url(settings.resolved_database_url)}")


@app.command()
def up(
    port: Port = 8000,
    host: Host = "127.0.0.1",
    simulators: Annotated[
        bool, typer.Option(help="run the provider simulators (off: recording sandboxes)")
    ] = True,
) -> None:
    """Run everything in one process group: API, worker and scheduler (embedded mode)."""
    from notifier.embedded import run_embedded

    run_embedded(host=host, port=port, simulate=simulators)


@app.command()
def api(port: Port = 8000, host: Host = "0.0.0.0", workers: int = 1) -> None:
    """Run the HTTP API (deployed mode)."""
    import uvicorn

    from notifier.logs import configure_logging

    configure_logging()  # before uvicorn's first lines, so they are in our format too
    uvicorn.run("notifier.api.main:app", host=host, port=port, workers=workers, log_config=None)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def worker(
    ctx: typer.Context,
    queues: Annotated[
        str, typer.Option("-Q", "--queues", help="comma-separated queues")
    ] = "events,maintenance,push,sms,email,voice,postcard",
    concurrency: Annotated[int, typer.Option("-c", "--concurrency")] = 4,
    pool: str = "prefork",
) -> None:
    """Run a Celery worker on some queues; extra options go to ``celery worker``."""
    argv = [
        sys.executable, "-m", "celery", "-A", "notifier.worker.app", "worker",
        "-Q", queues, "-c", str(concurrency), "-P", pool, "--loglevel", "INFO", *ctx.args,
    ]  # fmt: skip
    os.execv(sys.executable, argv)


@app.command()
def beat() -> None:
    """Run the scheduler (one per deployment)."""
    settings = get_settings()
    schedule = settings.data_dir / "celerybeat-schedule"
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "notifier.worker.app",
        "beat",
        "-s",
        str(schedule),
    ]
    os.execv(sys.executable, argv)


@app.command()
def reconcile() -> None:
    """Re-enqueue, once, whatever the database says is owed."""
    from notifier.flows.reconcile import reconcile as run
    from notifier.runtime import Runtime

    report = run(Runtime(get_settings()))
    typer.echo(f"enqueued again: {report.events} events, {report.deliveries} deliveries")


@app.command()
def simulators(
    latency_ms: Annotated[float, typer.Option(help="each provider answers after this long")] = 0.0,
    maildir: Annotated[str, typer.Option(help="where the SMTP catcher keeps .eml files")] = "",
) -> None:
    """Run the Twilio, FCM and SMTP simulators alone; print the settings that use them."""
    import time

    from notifier.simulated import Simulators

    sims = Simulators(maildir=Path(maildir) if maildir else None, latency_ms=latency_ms)
    for name, value in sims.start().items():
        typer.echo(f"export {name}={value}")
    typer.echo("# also set NOTIFIER_PUBLIC_URL to where the API listens; Ctrl-C stops", err=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        sims.stop()


@app.command()
def preview(
    event: Annotated[str, typer.Argument(help="bill.unpaid, bill.paid, usage.abnormal, …")],
    channel: Annotated[str, typer.Option(help="sms, voice, email, push, postcard")] = "sms",
    lang: Annotated[str | None, typer.Option(help="zh-TW, en, …")] = None,
    level: Annotated[int, typer.Option(min=1, max=9)] = 1,
    account: Annotated[str | None, typer.Option(help="use this account's name and bills")] = None,
    html: Annotated[bool, typer.Option(help="print the HTML of an email too")] = False,
) -> None:
    """Print a notice exactly as it would be sent (with the SMS segment count)."""
    from notifier.previews import UnknownAccount
    from notifier.previews import preview as render_preview
    from notifier.rendering import TemplateError
    from notifier.runtime import Runtime

    rt = Runtime(get_settings())
    try:
        with rt.db.session() as session:
            shown = render_preview(
                rt, session, event, channel, language=lang, level=level, account_no=account
            )
    except (UnknownAccount, TemplateError, ValueError) as exc:
        raise typer.BadParameter(str(exc)) from None
    content = shown.content
    fallback = " (fallback: no template in the asked language)" if content.language_fallback else ""
    typer.echo(f"# {event} · {channel} · {content.language}{fallback}")
    if shown.segments is not None:
        typer.echo(f"# {len(content.body)} characters, {shown.segments} SMS segment(s)")
    if content.subject:
        typer.echo(f"Subject: {content.subject}\n")
    typer.echo(content.body)
    if html and content.html:
        typer.echo("\n" + content.html)


@postcards_app.command("batch")
def postcards_batch(
    day: Annotated[
        datetime | None,
        typer.Option("--date", formats=["%Y-%m-%d"], help="business day (default: today)"),
    ] = None,
) -> None:
    """Print now the postcards queued before the day's cut-off: one PDF and a manifest."""
    from notifier.flows.postcards import print_postcards
    from notifier.runtime import Runtime

    report = print_postcards(Runtime(get_settings()), day=day.date() if day else None)
    if report is None:
        typer.echo("no postcards waiting")
        return
    typer.echo(f"batch {report.batch_id}: {report.cards} cards")
    typer.echo(f"  {report.pdf}")
    typer.echo(f"  {report.manifest}")


@keys_app.command("create")
def keys_create(
    role: Annotated[str, typer.Option(help="producer | ops | agent | supervisor | admin")],
    name: Annotated[str, typer.Option(help="who or what uses the key")] = "",
    agent: Annotated[int | None, typer.Option(help="agent id, for --role agent")] = None,
    expires_days: Annotated[int | None, typer.Option(help="days until the key expires")] = None,
) -> None:
    """Create a key and print it once; only its hash is stored."""
    from notifier.auth import keys

    if role not in keys.ROLES:
        raise typer.BadParameter(
            f"unknown role {role!r}; roles: {', '.join(keys.ROLES)}", param_hint="--role"
        )
    db = _database()
    try:
        with db.session() as session:
            row, key = keys.create_key(
                session,
                role=role,
                name=name or role,
                agent_id=agent,
                expires_in=timedelta(days=expires_days) if expires_days else None,
            )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    typer.echo(key)
    typer.echo(f"key {row.id} ({row.role}, {row.name}) created; it is not shown again", err=True)


@keys_app.command("list")
def keys_list() -> None:
    """List keys (never the keys themselves)."""
    from notifier.auth import keys

    with _database().session() as session:
        for row in keys.list_keys(session):
            state = "revoked" if row.revoked_at else "active"
            typer.echo(f"{row.id}\t{row.prefix}…\t{row.role}\t{row.name}\t{state}")


@keys_app.command("revoke")
def keys_revoke(key_id: int) -> None:
    """Revoke a key at once."""
    from notifier.auth import keys

    with _database().session() as session:
        if not keys.revoke(session, key_id):
            raise typer.BadParameter(f"no active key {key_id}", param_hint="KEY_ID")
    typer.echo(f"key {key_id} revoked")


def _database() -> Database:
    """The configured database, with every table known (foreign keys span domains)."""
    import notifier.models  # noqa: F401

    return Database(get_settings().resolved_database_url)


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
