"""CPU per delivery of the notifier's own code, in one process, without broker or providers.

    python bench/pipeline_cpu.py [--events 2000] [--database URL] [--profile DIR]

On a fresh PostgreSQL database (migrated), it accepts N unpaid-bill events
(push, SMS and email each, as bench/e2e.py posts them) through
``events.accept``, then runs the two flows a worker runs, in this process:
``process_events`` over chunks of the size the API enqueues, and
``deliver_batch`` over the deliveries they made, per channel, in batches of
the size the dispatcher sends. The channels are the recording sandbox (no
network, no latency), and the dispatcher only collects what it is handed, so
what is measured is our code, SQLAlchemy and psycopg, and PostgreSQL's server
(whole server: run it on a quiet machine) for each flow apart.

It prints, per flow, this process's CPU and PostgreSQL's per delivery, and the
rows written per delivery. ``--profile DIR`` writes a pyinstrument profile of
each flow there (pyinstrument is not a dependency: ``pip install pyinstrument``).
CPU time does not move with the machine's load as wall time does, so figures
from before and after a change are comparable within minutes; they are not the
end-to-end figures (bench/e2e.py), which add the API, Celery and the network.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._processes import (  # noqa: E402
    POSTGRES,
    BenchDatabase,
    CollectingDispatcher,
    ResourceMeter,
    fresh_database,
)
from tests.support import events  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument(
        "--database", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
        help="the server's maintenance database; the bench makes and drops its own",
    )  # fmt: skip
    parser.add_argument("--profile", type=Path, help="write pyinstrument profiles here")
    return parser.parse_args(argv)


@contextmanager
def measured(label: str, count: int, profile: Path | None, *, quiet: bool) -> Iterator[None]:
    """This process's CPU and PostgreSQL's over the block, per delivery; a profile if asked."""
    profiler = None
    if profile is not None:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005)
        profiler.start()
    with ResourceMeter([POSTGRES], interval=0.25) as meter:
        started, wall = time.process_time(), time.monotonic()
        yield
        cpu, wall = time.process_time() - started, time.monotonic() - wall
    if profiler is not None:
        assert profile is not None
        profiler.stop()
        profile.mkdir(parents=True, exist_ok=True)
        (profile / f"{label}.html").write_text(profiler.output_html())
        (profile / f"{label}.txt").write_text(profiler.output_text(unicode=True, show_all=False))
    pg = meter.usage["postgres"].cpu
    if quiet:
        return
    print(
        f"  {label:<10} {1000 * cpu / count:6.3f} ms this process + {1000 * pg / count:6.3f} ms "
        f"PostgreSQL per delivery ({cpu:.2f} + {pg:.2f} CPU s, {wall:.2f} s wall)"
    )


def run(args: argparse.Namespace) -> None:
    with TemporaryDirectory(prefix="notifier-cpu-") as folder, fresh_database(args.database) as db:
        os.environ.update(
            NOTIFIER_DATA_DIR=folder,
            NOTIFIER_DATABASE_URL=db.url,
            NOTIFIER_LOG_LEVEL="WARNING",  # as bench/e2e.py runs the workers
            NOTIFIER_QUIET_HOURS="off",  # as bench/e2e.py: nothing deferred to the morning
        )
        log = Path(folder) / "notifier.log"
        with log.open("w") as stream:
            saved, sys.stderr = sys.stderr, stream  # the notifier's log lines, not the figures
            try:
                from notifier.observability.logs import configure_logging

                configure_logging()
                measure(args, db)
            finally:
                sys.stderr = saved


def measure(args: argparse.Namespace, db: BenchDatabase) -> None:
    # Imported once the environment names the database: settings read it.
    from notifier.events import service as events_service
    from notifier.events.schema import parse_event
    from notifier.migrations import upgrade
    from notifier.queues.dispatch import EVENTS_PER_TASK
    from notifier.runtime import Runtime
    from notifier.settings import Settings

    settings = Settings()
    upgrade(settings.resolved_database_url)
    rt = Runtime(settings)
    collected = CollectingDispatcher()
    rt.__dict__["dispatcher"] = collected  # a cached_property: the instance's value wins
    warm = EVENTS_PER_TASK  # imports, the policy, templates, plans: a worker's first task
    raw = [
        events.unpaid(events.account(f"{n:011d}", address=None))
        for n in range(1, warm + args.events + 1)
    ]
    with rt.db.session() as session:
        ids = events_service.accept(
            session, [(parse_event(item), item) for item in raw], producer_key_id=None
        )
    event_pks = sorted(pk for pk in ids.values() if pk is not None)
    print(
        f"{args.events} events accepted into {db.name} (and {warm} more run first, unmeasured); "
        "sandbox channels, no broker"
    )
    flows(rt, collected, event_pks[:warm], None, shown=False)
    written = db.tuples_written()
    flows(rt, collected, event_pks[warm:], args.profile, shown=True)
    rt.close()
    time.sleep(1.5)  # backends report their row counts at most once a second
    rows = db.tuples_written() - written
    print(f"  rows written per delivery by the two flows: {rows / (3 * args.events):.2f}")


def flows(
    rt: Any,
    collected: CollectingDispatcher,
    event_pks: Sequence[int],
    profile: Path | None,
    *,
    shown: bool,
) -> None:
    """Both flows over ``event_pks``, in the task sizes the dispatcher uses; figures if ``shown``."""
    from notifier.flows.deliver import deliver_batch
    from notifier.flows.process_event import process_events
    from notifier.queues.dispatch import DELIVERIES_PER_TASK, EVENTS_PER_TASK

    expected = 3 * len(event_pks)
    collected.deliveries.clear()
    with measured("events", expected, profile, quiet=not shown):
        for chunk in _chunks(event_pks, EVENTS_PER_TASK):
            process_events(rt, chunk)
    made = list(collected.deliveries)
    if len(made) != expected:
        raise SystemExit(f"{len(made)} deliveries made, {expected} expected")
    by_channel: dict[str, list[int]] = {}
    for delivery_id, channel in made:
        by_channel.setdefault(channel, []).append(delivery_id)
    with measured("deliver", expected, profile, quiet=not shown):
        for ids_of_channel in by_channel.values():
            for batch in _chunks(ids_of_channel, DELIVERIES_PER_TASK):
                deliver_batch(rt, batch)


def _chunks(items: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def main(argv: list[str] | None = None) -> int:
    run(parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
