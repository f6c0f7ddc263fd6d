"""``notifier ingest`` and ``notifier events publish|dlq …``: the message bus from the command line."""

from __future__ import annotations

import contextlib
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from notifier.cli.common import settings as get_settings

if TYPE_CHECKING:
    from notifier.events.schema import EventIn
    from notifier.ingest.dlq import DeadLetter
    from notifier.ingest.files import Row

__all__ = ["events_app", "ingest_command"]

events_app = typer.Typer(
    help="Events on the message bus: publish a file, inspect the dead-letter queue.",
    no_args_is_help=True,
)
dlq_app = typer.Typer(
    help="The dead-letter queue: messages the consumer refused, with the reasons.",
    no_args_is_help=True,
)
events_app.add_typer(dlq_app, name="dlq")

Broker = Annotated[
    str | None,
    typer.Option(
        "--broker",
        help="broker URL (default: NOTIFIER_INGEST__BROKER_URL, else NOTIFIER_BROKER_URL)",
    ),
]
Ids = Annotated[
    list[str] | None, typer.Option("--id", help="a message id (the event_id); repeatable")
]
All = Annotated[bool, typer.Option("--all", help="every message in the queue")]
EXIT_INVALID_ROWS = 1
EXIT_BROKER = 3


def ingest_command(
    batch_size: Annotated[
        int | None,
        typer.Option(min=1, help="messages per transaction (default: NOTIFIER_INGEST__BATCH_SIZE)"),
    ] = None,
    broker: Broker = None,
) -> None:
    """Store the events published on the message bus (runs until SIGTERM or Ctrl-C)."""
    import notifier.models  # noqa: F401  (every table: foreign keys span domains)
    from notifier.cli.common import runtime
    from notifier.ingest.consumer import IngestConsumer
    from notifier.observability.logs import configure_logging

    configure_logging()
    rt = runtime()
    consumer = IngestConsumer(rt, url=broker, batch_size=batch_size)

    def stop(_signum: int, _frame: object) -> None:
        consumer.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        consumer.run()
    finally:
        rt.close()


@events_app.command("publish")
def publish_command(
    path: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="a .csv or .jsonl file of events")
    ],
    broker: Broker = None,
    fmt: Annotated[
        str | None, typer.Option("--format", help="csv, jsonl or json (default: by the extension)")
    ] = None,
    encoding: Annotated[str, typer.Option(help="the file's text encoding")] = "utf-8-sig",
    check: Annotated[bool, typer.Option("--check", help="validate only; publish nothing")] = False,
    quiet: Annotated[bool, typer.Option(help="no progress, only the summary")] = False,
) -> None:
    """Validate each event of a file and publish the valid ones on the bus.

    Invalid rows are listed with their line and field errors, and are not
    published. Whether an event_id was seen before is decided by the
    consumer: publishing the same file again creates nothing new. Exit code
    1 when some rows are invalid, 3 when the broker failed (publishing the
    file again is safe).
    """
    from notifier.ingest.files import FileError, count_rows, file_format, read_events
    from notifier.ingest.producer import ProducerError, Publisher

    try:
        kind = file_format(path, fmt)
        total = count_rows(path, kind, encoding=encoding)
    except (FileError, LookupError) as exc:
        raise typer.BadParameter(str(exc), param_hint="PATH") from None
    invalid: list[Row] = []
    repeated: list[Row] = []
    seen: set[str] = set()
    published = 0
    started = time.monotonic()
    try:
        with contextlib.ExitStack() as stack:
            # Entered first, left last: its end waits for the broker's last confirms.
            publisher = None if check else stack.enter_context(Publisher(broker))
            progress = stack.enter_context(_progress(total, quiet=quiet))
            for row in read_events(path, kind, encoding=encoding):
                progress(1)
                if row.event is None:
                    invalid.append(row)
                elif row.event.event_id in seen:
                    repeated.append(row)
                else:
                    seen.add(row.event.event_id)
                    if publisher is not None:
                        publisher.publish(row.event)
                        published += 1
    except FileError as exc:
        raise typer.BadParameter(str(exc), param_hint="PATH") from None
    except ProducerError as exc:
        typer.echo(f"error: {exc}", err=True)
        _summary(path, seen, repeated, invalid, published, started, check=check)
        typer.echo("not all of it reached the broker: publishing the file again is safe", err=True)
        raise typer.Exit(EXIT_BROKER) from None
    _summary(path, seen, repeated, invalid, published, started, check=check)
    if invalid:
        raise typer.Exit(EXIT_INVALID_ROWS)


def _summary(
    path: Path,
    seen: set[str],
    repeated: list[Row],
    invalid: list[Row],
    published: int,
    started: float,
    *,
    check: bool,
) -> None:
    for row in invalid:
        detail = "; ".join(f"{e.field}: {e.message}" for e in row.errors)
        typer.echo(f"line {row.line}{f' ({row.event_id})' if row.event_id else ''}: {detail}")
    for row in repeated:
        typer.echo(f"line {row.line} ({row.event_id}): event_id repeated in the file; skipped")
    seconds = time.monotonic() - started
    rate = f", {published / seconds:.0f}/s" if published and seconds > 0 else ""
    typer.echo(
        f"{path.name}: {len(seen)} valid, {len(repeated)} repeated in the file, "
        f"{len(invalid)} invalid; "
        + ("nothing published (--check)" if check else f"{published} published{rate}")
    )


@contextlib.contextmanager
def _progress(total: int, *, quiet: bool) -> Iterator[Any]:
    """A progress bar on a terminal, a line every tenth of the way in a log."""
    if quiet or not total:
        yield lambda _n: None
        return
    if sys.stderr.isatty():
        with typer.progressbar(length=total, label="publishing", file=sys.stderr) as bar:
            yield bar.update
        return
    done = [0, 0]  # rows, rows at the last line

    def step(n: int) -> None:
        done[0] += n
        if done[0] - done[1] >= total / 10 or done[0] == total:
            typer.echo(f"{done[0]} of {total} rows", err=True)
            done[1] = done[0]

    yield step


@dlq_app.command("list")
def dlq_list(
    limit: Annotated[int, typer.Option(min=1, help="show at most this many")] = 50,
    body: Annotated[
        bool, typer.Option("--body", help="print each body too (it holds personal data)")
    ] = False,
    broker: Broker = None,
) -> None:
    """Show the dead-lettered messages and why each was refused; they stay in the queue."""
    from notifier.ingest import dlq

    total, letters = dlq.peek(get_settings(), broker, limit=limit)
    typer.echo(f"{total} dead-lettered message(s)" + (f", first {len(letters)}:" if total else ""))
    for letter in letters:
        typer.echo(_describe(letter))
        for error in letter.errors:
            typer.echo(f"    {error.field}: {error.message}")
        if body:
            typer.echo("    body: " + letter.body.decode("utf-8", "backslashreplace"))


def _describe(letter: DeadLetter) -> str:
    when = letter.dead_lettered_at or "?"
    replays = f", replayed {letter.replays}×" if letter.replays else ""
    return f"{letter.message_id}  dead-lettered {when}{replays}"


@dlq_app.command("replay")
def dlq_replay(
    ids: Ids = None,
    all_: All = False,
    fix: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="corrected events (.csv or .jsonl): a message whose id is there is replaced",
        ),
    ] = None,
    broker: Broker = None,
) -> None:
    """Send dead letters back to the consumer, as they are or corrected (--fix FILE)."""
    from notifier.ingest import dlq

    selected = _selection(ids, all_)
    fixes = _fixes(fix) if fix else {}
    if ids:
        strays = sorted(set(fixes) - set(ids))
        if strays:
            raise typer.BadParameter(
                f"{fix} corrects {', '.join(strays)}, not selected with --id", param_hint="--fix"
            )
    report = dlq.replay(get_settings(), broker, select=selected, fixes=fixes)
    for message_id in report.replayed:
        how = "corrected" if message_id in report.corrected else "as it was"
        typer.echo(f"replayed {message_id} ({how})")
    _missing(ids, report.replayed)
    typer.echo(f"{len(report.replayed)} replayed ({len(report.corrected)} corrected)")


@dlq_app.command("drop")
def dlq_drop(ids: Ids = None, all_: All = False, broker: Broker = None) -> None:
    """Remove dead letters for good."""
    from notifier.ingest import dlq

    dropped = dlq.drop(get_settings(), broker, select=_selection(ids, all_))
    for message_id in dropped:
        typer.echo(f"dropped {message_id}")
    _missing(ids, dropped)
    typer.echo(f"{len(dropped)} dropped")


def _selection(ids: list[str] | None, all_: bool) -> Any:
    if bool(ids) == all_:
        raise typer.BadParameter("name messages with --id, or take them all with --all")
    wanted = set(ids or ())
    return lambda letter: all_ or letter.message_id in wanted


def _missing(ids: list[str] | None, done: list[str]) -> None:
    for message_id in sorted(set(ids or ()) - set(done)):
        typer.echo(f"not in the dead-letter queue: {message_id}", err=True)


def _fixes(path: Path) -> dict[str, EventIn]:
    """The corrected events of a file, by event_id; the file must be valid as a whole."""
    from notifier.ingest.files import FileError, file_format, read_events

    fixes: dict[str, EventIn] = {}
    try:
        rows = list(read_events(path, file_format(path)))
    except FileError as exc:
        raise typer.BadParameter(str(exc), param_hint="--fix") from None
    bad = [row for row in rows if row.event is None]
    if bad:
        lines = "; ".join(
            f"line {row.line}: " + ", ".join(f"{e.field}: {e.message}" for e in row.errors)
            for row in bad
        )
        raise typer.BadParameter(f"the corrections are invalid too ({lines})", param_hint="--fix")
    for row in rows:
        assert row.event is not None
        fixes[row.event.event_id] = row.event
    return fixes
