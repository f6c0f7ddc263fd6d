"""The ``notifier`` command: run the service, migrate, manage keys."""

from __future__ import annotations

import os
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from notifier.cli.audit import audit_command
from notifier.cli.bounces import bounces_command
from notifier.cli.common import CONTEXT, EXIT_NO_DATABASE, database, fail, runtime
from notifier.cli.common import settings as get_settings
from notifier.cli.escalation import agents_app, calls_app, escalate, visits_app
from notifier.cli.ingest import events_app, ingest_command
from notifier.cli.users import users_app

__all__ = ["app"]


class _Commands(TyperGroup):
    """The root group: a database that is missing or not migrated is one line, not a traceback.

    Commands check for their database first (notifier.cli.common); this catches
    what reaches one some other way.
    """

    def invoke(self, ctx: Any) -> Any:  # typer's own click.Context is a private module's
        try:
            return super().invoke(ctx)
        except Exception as exc:
            if type(exc).__module__.startswith("sqlalchemy") and type(exc).__name__ in (
                "OperationalError",
                "ProgrammingError",
            ):
                from notifier.cli.common import no_database

                why = no_database(get_settings())
                reason = str(getattr(exc, "orig", exc)).splitlines()[0]
                fail(
                    why or f"the database refused: {reason} (an older schema? `notifier migrate`)",
                    EXIT_NO_DATABASE,
                )
            raise


app = typer.Typer(
    help="Multichannel customer notifications for an electric utility.",
    no_args_is_help=True,
    context_settings=CONTEXT,
    cls=_Commands,
)
PRIVATE_UMASK = 0o077
"""Files this service writes hold personal data (the SQLite database, print PDFs and their
manifests, outboxes, the file broker's messages): readable by its own user only."""


@app.callback()
def _private_files() -> None:
    # Every process (up, api, worker, bounces, the commands) starts here; its children inherit.
    os.umask(PRIVATE_UMASK)


keys_app = typer.Typer(help="API keys: create, list, revoke, rotate.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
postcards_app = typer.Typer(help="Printed postcards: the daily print batch.", no_args_is_help=True)
app.add_typer(postcards_app, name="postcards")
producer_key_app = typer.Typer(
    help="The embedded mode's producer key, kept in NOTIFIER_DATA_DIR: show, rotate.",
    no_args_is_help=True,
)
app.add_typer(producer_key_app, name="producer-key")

app.command()(escalate)
app.add_typer(agents_app, name="agents")
app.add_typer(calls_app, name="calls")
app.add_typer(visits_app, name="visits")
app.add_typer(users_app, name="users")
app.command("audit")(audit_command)
app.command("ingest")(ingest_command)
app.command("bounces")(bounces_command)
app.add_typer(events_app, name="events")

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
    verbose: Annotated[
        bool,
        typer.Option("--verbose", "-v", help="show Celery's banner, INFO logs and warnings"),
    ] = False,
    new_producer_key: Annotated[
        bool,
        typer.Option(
            "--new-producer-key", help="replace the kept producer key (the old one stops working)"
        ),
    ] = False,
) -> None:
    """Run everything in one process group: API, worker and scheduler (embedded mode).

    The producer key is kept in NOTIFIER_DATA_DIR and is the same at every start.
    """
    from notifier.embedded import run_embedded

    run_embedded(
        host=host,
        port=port,
        simulate=simulators,
        verbose=verbose,
        new_producer_key=new_producer_key,
    )


@producer_key_app.command("show")
def producer_key_show() -> None:
    """Print the embedded producer key kept in NOTIFIER_DATA_DIR (what `notifier up` showed)."""
    from notifier.embedded import KEY_FILE

    path = get_settings().data_dir.resolve() / KEY_FILE
    if not path.is_file():
        fail(f"no producer key kept in {path}; `notifier up` makes one")
    typer.echo(path.read_text(encoding="utf-8").strip())


@producer_key_app.command("rotate")
def producer_key_rotate() -> None:
    """Make a new embedded producer key and print it; the old one stops working at once."""
    from notifier.embedded import KEY_FILE, producer_key

    settings = get_settings()
    if settings.mode != "embedded":
        fail("the kept producer key is the embedded mode's; rotate a deployed one with "
             "`notifier keys rotate KEY_ID`")  # fmt: skip
    db = database()
    data_dir = settings.data_dir.resolve()
    key, note = producer_key(db, data_dir, new=True)
    typer.echo(key)
    typer.echo(f"{note}; kept in {data_dir / KEY_FILE}", err=True)


@app.command()
def api(
    port: Port = 8000,
    host: Host = "0.0.0.0",
    workers: int = 1,
    root_path: Annotated[
        str,
        typer.Option(
            help="the path prefix a proxy in front strips (/notifier); "
            "NOTIFIER_PUBLIC_URL must end in it too"
        ),
    ] = "",
) -> None:
    """Run the HTTP API (deployed mode)."""
    import uvicorn

    from notifier.observability.logs import configure_logging

    configure_logging()  # before uvicorn's first lines, so they are in our format too
    uvicorn.run(
        "notifier.app:app",
        host=host,
        port=port,
        workers=workers,
        root_path=root_path,
        log_config=None,
        # Which X-Forwarded-* to believe is NOTIFIER_TRUST_FORWARDED_HEADERS' call
        # (sign-in throttle, audit trail, callback URLs), not uvicorn's.
        proxy_headers=False,
    )


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def worker(
    ctx: typer.Context,
    queues: Annotated[
        str, typer.Option("-Q", "--queues", help="comma-separated queues")
    ] = "events,maintenance,webhooks,push,sms,email,voice,postcard",
    concurrency: Annotated[int, typer.Option("-c", "--concurrency")] = 4,
    pool: str = "prefork",
) -> None:
    """Run a Celery worker on some queues; extra options go to `celery worker`."""
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

    report = run(runtime())
    typer.echo(
        f"enqueued again: {report.events} events, {report.deliveries} deliveries, "
        f"{report.callbacks} producer callbacks"
    )


@app.command()
def purge(
    days: Annotated[
        int | None,
        typer.Option(min=1, help="older than this many days [default: NOTIFIER_RETENTION_DAYS]"),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="count what would be purged; change nothing")
    ] = False,
    quiet: Annotated[bool, typer.Option(help="no progress, only the counts")] = False,
) -> None:
    """Purge personal data of old finished deliveries, events, case notes and idle accounts."""
    import contextlib
    import time

    from notifier.audit.service import CLI
    from notifier.db import utcnow
    from notifier.flows.retention import purge as run_purge

    keep = days or get_settings().retention_days
    started = time.monotonic()
    with contextlib.ExitStack() as bars:
        shown: list[tuple[str, Any]] = []  # (kind, typer's progress bar: its class is private)
        reported: dict[str, int] = {}

        def progress(kind: str, done: int, total: int) -> None:
            if quiet or not total:
                return
            if sys.stderr.isatty():
                if not shown or shown[-1][0] != kind:
                    bars.close()  # the previous kind's bar is complete
                    label = f"{kind}: {total}"
                    bar = typer.progressbar(length=total, label=label, file=sys.stderr)
                    shown.append((kind, bars.enter_context(bar)))
                bar = shown[-1][1]
                bar.update(done - bar.pos)
            elif done == total or done - reported.get(kind, 0) >= total / 10:
                # A log, not a terminal: a line every tenth of the way.
                typer.echo(f"{kind}: {done} of {total}", err=True)
                reported[kind] = done

        report = run_purge(
            database(), days=keep, now=utcnow(), actor=CLI, dry_run=dry_run, progress=progress,
            print_dir=get_settings().data_dir / "print",
        )  # fmt: skip
    verb = "would purge (dry run, nothing changed)" if dry_run else "purged"
    typer.echo(
        f"{verb}: personal data older than {keep} days (before {report.cutoff:%Y-%m-%d %H:%M} "
        f"UTC), in {time.monotonic() - started:.1f} s"
    )
    for kind, count in report.counts().items():
        typer.echo(f"  {kind:<17} {count}")


@app.command()
def simulators(
    latency_ms: Annotated[float, typer.Option(help="each provider answers after this long")] = 0.0,
    maildir: Annotated[str, typer.Option(help="where the SMTP catcher keeps .eml files")] = "",
    mitake_points: Annotated[
        int, typer.Option(help="SMS Mitake's prepaid account pays for; then it refuses (s)")
    ] = 100_000,
) -> None:
    """Run the Twilio, Mitake, FCM and SMTP simulators alone; print the settings that use them.

    On SIGUSR1 it prints one line, ``sends [[delivery_id, recipient, count], ...]``:
    the sends accepted so far, which a benchmark compares with the delivery log
    to count duplicate sends.
    """
    import json
    import signal
    import time

    from notifier.providers.simulated import Simulators

    sims = Simulators(
        maildir=Path(maildir) if maildir else None,
        latency_ms=latency_ms,
        mitake_points=mitake_points,
    )

    def tally(_signum: int, _frame: object) -> None:
        rows = [[delivery_id, to, n] for (delivery_id, to), n in sorted(sims.sends().items())]
        typer.echo(f"sends {json.dumps(rows)}")

    signal.signal(signal.SIGUSR1, tally)
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
    from notifier.notices.previews import UnknownAccount
    from notifier.notices.previews import preview as render_preview
    from notifier.notices.rendering import TemplateError
    from notifier.runtime import Runtime

    rt = Runtime(get_settings())
    try:
        with rt.db.session() as session:
            shown = render_preview(
                rt.renderer,
                rt.settings,
                session,
                event,
                channel,
                language=lang,
                level=level,
                account_no=account,
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

    report = print_postcards(runtime(), day=day.date() if day else None)
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
    db = database()
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
    """List keys (never the keys themselves): name, role, created, expires, last used, state."""
    from notifier.auth import keys
    from notifier.db import utcnow

    def when(at: datetime | None, never: str = "-") -> str:
        return f"{at:%Y-%m-%d %H:%M}" if at else never

    now = utcnow()
    with database().session() as session:
        typer.echo("id\tprefix\tname\trole\tagent\tcreated\texpires\tlast used\tstate")
        for row in keys.list_keys(session):
            state = keys.state_of(row, now)
            if state == "active" and row.revoked_at is not None:
                state = f"active until {when(row.revoked_at)} (rotated)"
            agent = row.agent_id if row.agent_id is not None else "-"
            typer.echo(
                f"{row.id}\t{row.prefix}…\t{row.name}\t{row.role}\t{agent}\t{when(row.created_at)}"
                f"\t{when(row.expires_at, 'never')}\t{when(row.last_used_at, 'never')}\t{state}"
            )
    typer.echo("times in UTC", err=True)


KeyId = Annotated[int, typer.Argument(help="the key's id (notifier keys list)")]


@keys_app.command("revoke")
def keys_revoke(key_id: KeyId) -> None:
    """Revoke a key at once."""
    from notifier.auth import keys

    with database().session() as session:
        if keys.revoke(session, key_id) is None:
            raise typer.BadParameter(f"no active key {key_id}", param_hint="KEY_ID")
    typer.echo(f"key {key_id} revoked")


@keys_app.command("rotate")
def keys_rotate(
    key_id: KeyId,
    expires_days: Annotated[
        int | None, typer.Option(help="days until the new key expires (default: as the old one)")
    ] = None,
    grace_hours: Annotated[
        float, typer.Option(min=0, help="hours the old key keeps working (0: revoked at once)")
    ] = 0,
) -> None:
    """A new key with the same name, role and agent, printed once; the old one is revoked."""
    from notifier.auth import keys

    try:
        with database().session() as session:
            new, key, old = keys.rotate(
                session,
                key_id,
                expires_in=timedelta(days=expires_days) if expires_days else None,
                grace=timedelta(hours=grace_hours),
            )
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="KEY_ID") from None
    typer.echo(key)
    ending = f"after {grace_hours:g} hours" if grace_hours else "now"
    typer.echo(
        f"key {new.id} ({new.role}, {new.name}) replaces key {old.id}, which stops working "
        f"{ending}; the new key is not shown again",
        err=True,
    )


@keys_app.command("callback")
def keys_callback(
    key_id: KeyId,
    url: Annotated[str | None, typer.Option(help="where the key's callbacks are POSTed")] = None,
    clear: Annotated[bool, typer.Option("--clear", help="stop the key's callbacks")] = False,
    rotate_secret: Annotated[
        bool, typer.Option("--rotate-secret", help="a new signing secret, printed once")
    ] = False,
) -> None:
    """Set a producer key's callback URL; a new signing secret is printed once."""
    from notifier.audit.service import CLI
    from notifier.audit.service import record as audit
    from notifier.auth.models import ApiKey
    from notifier.db import utcnow
    from notifier.webhooks import service as webhooks

    settings = get_settings()
    with database().session() as session:
        key = session.get(ApiKey, key_id)
        if key is None or key.role not in ("producer", "admin"):
            raise typer.BadParameter(f"no producer key {key_id}", param_hint="KEY_ID")
        if clear:
            if not webhooks.clear(session, key_id):
                raise typer.BadParameter(f"key {key_id} has no callback URL", param_hint="KEY_ID")
            audit(session, actor=CLI, action="callback.clear", target=f"key {key_id}")
            typer.echo(f"key {key_id}: callbacks stopped")
            return
        if url is None:
            endpoint = webhooks.get_endpoint(session, key_id)
            typer.echo(endpoint.url if endpoint else f"key {key_id} has no callback URL")
            return
        try:
            endpoint, secret = webhooks.register(
                session,
                key_id,
                url,
                deployed=settings.mode != "embedded",
                allow_private=settings.callback_allow_private,
                now=utcnow(),
                rotate_secret=rotate_secret,
            )
        except webhooks.InvalidUrl as exc:
            raise typer.BadParameter(str(exc), param_hint="--url") from None
        audit(
            session,
            actor=CLI,
            action="callback.register",
            target=f"key {key_id}",
            detail={"url": endpoint.url, "new_secret": secret is not None},
        )
    if secret is not None:
        typer.echo(secret)
        shown = f"key {key_id}: callbacks go to {endpoint.url}; the secret is not shown again"
        typer.echo(shown, err=True)
    else:
        typer.echo(f"key {key_id}: callbacks go to {endpoint.url} (same secret)", err=True)


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
