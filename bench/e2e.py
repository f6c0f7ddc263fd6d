"""End-to-end delivery throughput beside its ceiling and its floor, in one run.

    python bench/e2e.py --events N [--latency-ms 50] [--broker URL] [--database URL]
                        [--workers K] [--concurrency C] [--worker-sweep 1,2,4]
                        [--fakes lean|simulators] [--batch-size 1000]
                        [--floor-count M] [--ceiling-events E] [--skip-baselines]

It makes a broker namespace of its own (a fresh RabbitMQ vhost, or a Redis db
number, flushed), starts the provider fakes (each answering after
--latency-ms): by default the lean ones (bench/_fakes.py: one asyncio process
keeping counts, Twilio's two status callbacks per SMS included), or with
``--fakes simulators`` the full ones (``notifier simulators``, which keep every
message, and the only ones with Mitake); then, on a fresh PostgreSQL database
(``notifier_bench_<hex>``, migrated, dropped at the end),
``notifier api`` and K ``notifier worker`` processes (prefork, C processes
each) as a deployment would, and measures:

* e2e: N unpaid-bill events of distinct accounts, each routed to push, SMS and
  email, posted to ``POST /v1/events/batch`` by a few concurrent clients while
  the workers run; the accept rate (events/s over the posting), deliveries/s
  from the first event accepted to the last delivery final, the seconds from
  an event's acceptance to its delivery's first ``sent``/``delivered`` entry
  (p50/p95/p99 per channel), rows written per delivery (in all and per table),
  the CPU seconds and peak RSS of each kind of process, and the CPU per
  delivery of the API, workers, PostgreSQL, broker and Redis (the fakes and
  the bench left out). ``--worker-sweep 1,2,4`` runs it once per channel-worker
  process count, each on a fresh database, and prints one table of them;
* ceiling: a bare asyncio client (aiohttp, aiosmtplib over reused
  connections) sending the same mix to the same fakes with no database
  and no broker: what the providers and this machine allow;
* floor: one Celery task per delivery making one blocking provider call
  (bench/floor_tasks.py), prefork with as many processes as the notifier's
  workers have: what the naive design gives.

It prints the PostgreSQL settings that move the figures and the load average
at the start and the end. The last line is one summary line with the three
rates and their ratios; with a sweep, its e2e is the run with the most processes.

What the figures include and leave out:

* "final" is any status but queued, sending and deferred: an SMS is final
  once Twilio accepted it (``sent``); the bench then waits a little for the
  fakes' status reports so that the rows they write are counted too.
* The provider rate limits stay on, in Redis as deployed, but high
  (``--provider-rate``, 5,000 sends/s per provider): every batch takes its
  slots, and the limiter's cost is in the figures. The per-key API limits are
  off.
* No beat runs: the reconciler would re-send rows queued longer than
  ``NOTIFIER_REDISPATCH_AFTER_SECONDS``, which a large backlog is by design.
  Rows a failed task left claimed are taken back by no one, then: a run in
  which no delivery becomes final for 300 s stops, saying what waits, with the
  processes' last log lines.
* PostgreSQL's, the broker's and Redis's CPU are their whole servers', other
  databases and vhosts included: run the bench on a quiet machine (load is printed).
* autovacuum is off on these machines: each e2e run starts on a fresh database,
  deliberately not analyzed (ANALYZE of its empty tables once made every
  foreign-key check of the deliveries' INSERT a sequential scan of the
  notifications, 0.2 ms a row at the start and 1.9 ms at 140,000 rows), and a
  thread does what autovacuum would while the run goes on
  (``_processes.AutovacuumStandIn``: the server's thresholds and naptime; its
  passes are counted in PostgreSQL's CPU and printed); the dead rows left are
  printed per table.
* RSS is summed over a kind's processes, so pages they share (prefork's
  copy-on-write, PostgreSQL's shared buffers) count once per process.
* The ceiling's SMS name no status callback (there is no API to take them);
  its emails get a third of its in-flight sends as SMTP connections: SMTP
  sends one message at a time per connection, so at 50 ms a handful of
  connections would measure the latency, not the machine.

Other ``NOTIFIER_*`` settings in the bench's environment reach the notifier's
processes (``NOTIFIER_SMTP__CONNECTIONS=16 python bench/e2e.py ...``), except
the ones the bench sets itself (database, broker, fakes, limits, logs).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import aiohttp
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import floor_tasks  # noqa: E402
from bench._ceiling import SMS_BODY, Targets, flood  # noqa: E402
from bench._processes import (  # noqa: E402
    NOTIFIER,
    POSTGRES,
    AutovacuumStandIn,
    BenchDatabase,
    BenchError,
    Kind,
    Processes,
    ResourceMeter,
    broker_namespace,
    fresh_database,
    named_roots,
    read_exports,
    read_tally,
    run_notifier,
    wait_celery_ready,
    wait_until,
    worker_hostname,
)
from channels import CHANNEL_NAMES  # noqa: E402
from notifier.policy.rules import load_policy  # noqa: E402
from notifier.providers.circuits import RedisCircuits  # noqa: E402
from notifier.queues.celery_config import (  # noqa: E402
    ALL_QUEUES,
    EVENTS_QUEUE,
    MAINTENANCE_QUEUE,
    WEBHOOKS_QUEUE,
)
from notifier.settings import PROJECT_ROOT  # noqa: E402
from tests.support import events  # noqa: E402
from tests.support.stack import free_port, http_ok  # noqa: E402

DEFAULT_DATABASE = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
DEFAULT_BROKER = "amqp://guest:guest@127.0.0.1:5672//"
NOT_FINAL = ("queued", "sending", "deferred")
SENT = ("sent", "delivered")
REPORTING_PROVIDERS = ("twilio", "mitake")
"""Providers whose status reports come in after the send (they write rows too)."""
SIMULATOR_SETTINGS = [
    f"NOTIFIER_{name}"
    for name in (
        "TWILIO__ACCOUNT_SID", "TWILIO__AUTH_TOKEN", "TWILIO__FROM_NUMBER", "TWILIO__BASE_URL",
        "FCM__PROJECT_ID", "FCM__ACCESS_TOKEN", "FCM__BASE_URL", "SMTP__HOST", "SMTP__PORT",
        "MITAKE__USERNAME", "MITAKE__PASSWORD", "MITAKE__BASE_URL",
    )
]  # fmt: skip
"""What the bench itself uses of the settings `notifier simulators` prints (it takes them all)."""
PROGRESS_EVERY = 5.0
STALLED_AFTER = 300.0
"""Seconds with no delivery becoming final before the bench gives up and says what waits.
No beat runs here, so rows a failed task left claimed are taken back by no one (the
reconciler would, deployed): once a Redis restarted under a run left 6,750 so."""
EVENT_QUEUES = ",".join((EVENTS_QUEUE, MAINTENANCE_QUEUE, WEBHOOKS_QUEUE))
BENCH_KIND = Kind("bench", lambda _: [os.getpid()], tree=False)
"""This process alone: its children are measured as kinds of their own."""
FAKES_KIND = "fakes"
LEAN_FAKES = ROOT / "bench" / "_fakes.py"
NOT_THE_NOTIFIERS = (FAKES_KIND, BENCH_KIND.name)
"""Kinds left out of the CPU per delivery: what stands in for the providers and the clients."""
PG_SETTINGS = (
    "shared_buffers", "work_mem", "effective_cache_size", "synchronous_commit", "fsync",
    "wal_level", "max_wal_size", "checkpoint_timeout", "random_page_cost", "jit",
    "autovacuum", "max_connections",
)  # fmt: skip
"""The PostgreSQL settings that move the figures, printed beside them."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--events", type=int, required=True, help="unpaid-bill events posted (N)")
    add("--latency-ms", type=float, default=50.0, help="each simulated provider answers after this")
    add("--broker", default=DEFAULT_BROKER, help="RabbitMQ (amqp://) or Redis (redis://) URL")
    add("--database", default=DEFAULT_DATABASE, help="PostgreSQL server (its maintenance db)")
    add("--workers", type=int, default=1, help="`notifier worker` processes (K)")
    add("--concurrency", type=int, default=3, help="prefork processes per worker")
    add(
        "--event-concurrency",
        type=int,
        default=1,
        help="prefork processes of a worker of its own on the events queues, beside each "
        "channel worker, as docker-compose runs them (0: one worker on every queue)",
    )
    add(
        "--provider-rate",
        type=float,
        default=5000.0,
        help="sends/s allowed per provider, held in Redis (0: no provider rate limit)",
    )
    add("--rate-redis", default="redis://127.0.0.1:6379/11", help="where the rate limits live")
    add(
        "--sms-providers",
        default="twilio",
        help="NOTIFIER_PROVIDERS__SMS: e.g. mitake,twilio (Mitake first, Twilio when its "
        "circuit opens)",
    )
    add(
        "--mitake-points",
        type=int,
        default=100_000,
        help="SMS Mitake's simulated prepaid account pays for; past them it refuses with "
        "'s' (no points left: an account fault), e.g. half of --events",
    )
    add("--batch-size", type=int, default=1000, help="events per POST /v1/events/batch")
    add("--clients", type=int, default=4, help="concurrent HTTP clients posting batches")
    add(
        "--pace",
        type=float,
        default=0.0,
        help="post at this many events/s (0: a burst, as fast as the API accepts)",
    )
    add(
        "--timeout",
        type=float,
        help="seconds for every delivery to be final (default: 600 + 1 per 25)",
    )
    add("--floor-count", type=int, default=1000, help="tasks of the floor (M)")
    add("--ceiling-events", type=int, help="events' worth of sends of the ceiling (default: N)")
    add(
        "--in-flight",
        type=int,
        help="sends in flight in the ceiling (default: 1000 to the lean fakes, so that the "
        "latency does not bound it; 200 to the simulators, a thread each)",
    )
    # At 50 ms per message one SMTP connection carries 20 emails/s: a handful of
    # connections would make the ceiling SMTP's latency, not what the machine allows.
    add("--smtp-connections", type=int, help="of --in-flight, SMTP connections (default: a third)")
    add("--skip-baselines", action="store_true", help="measure e2e only")
    add(
        "--fakes",
        choices=("lean", "simulators"),
        default="lean",
        help="the providers: lean (bench/_fakes.py: counts only, one asyncio process) or "
        "simulators (`notifier simulators`, which keep every message; Mitake needs them)",
    )
    add(
        "--worker-sweep",
        help="channel-worker processes to run e2e with in turn, e.g. 1,2,4 (each on a fresh "
        "database; overrides --concurrency), printed in one table",
    )
    args = parser.parse_args(argv)
    if args.fakes == "lean" and "mitake" in args.sms_providers.split(","):
        parser.error(
            "the lean fakes serve no Mitake: with --sms-providers naming mitake, "
            "add --fakes simulators"
        )
    try:
        args.sweep = [int(n) for n in args.worker_sweep.split(",")] if args.worker_sweep else []
    except ValueError:
        parser.error("--worker-sweep takes process counts, e.g. 1,2,4")
    if any(n < 1 for n in args.sweep):
        parser.error("--worker-sweep: each count must be positive")
    if args.events < 1 or not 1 <= args.batch_size <= 1000:
        parser.error("--events must be positive and --batch-size 1..1000 (the API's limit)")
    args.ceiling_events = args.ceiling_events or args.events
    args.in_flight = args.in_flight or (1000 if args.fakes == "lean" else 200)
    args.smtp_connections = args.smtp_connections or max(1, args.in_flight // 3)
    if args.smtp_connections >= args.in_flight:
        parser.error("--smtp-connections must leave some of --in-flight to HTTP")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # A SIGTERM stops the bench like Ctrl-C, through the same cleanup.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        summary = run(args)
    except BenchError as exc:
        print(f"\ne2e: FAILED: {exc}", file=sys.stderr)
        return 1
    except sa.exc.OperationalError as exc:
        # A server restarted under the bench (a fault test, say): no figure holds.
        print(f"\ne2e: FAILED: lost the database: {exc.orig}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ne2e: interrupted; processes, database and broker namespace cleaned up")
        return 130
    print(summary)
    return 0


# -- the run ------------------------------------------------------------------


@dataclass
class Setup:
    """What every phase shares: the broker's namespace and the running provider fakes."""

    args: argparse.Namespace
    folder: Path
    broker_url: str
    broker_kind: str
    procs: Processes
    simulators: dict[str, str] = field(default_factory=dict)
    """The NOTIFIER_* settings that point the service at the fakes."""

    @property
    def notifier_processes(self) -> int:
        return int(self.args.workers * (self.args.concurrency + self.args.event_concurrency))

    def fakes_kind(self) -> Kind:
        """The provider fakes (lean or simulators): what the notifier sends to, measured apart."""
        pid = self.procs.started["fakes"].pid
        return Kind(FAKES_KIND, lambda _: [pid])

    def server_kinds(self) -> list[Kind]:
        """The fakes, PostgreSQL, the broker and Redis (whole servers, found by name)."""
        kinds = [
            self.fakes_kind(),
            POSTGRES,
        ]
        if self.broker_kind == "redis":
            kinds.append(Kind("broker", lambda procs: named_roots(procs, "redis-server")))
        else:
            kinds.append(Kind("broker", lambda procs: named_roots(procs, "beam.smp")))
            # The provider rate limits live in Redis.
            kinds.append(Kind("redis", lambda procs: named_roots(procs, "redis-server")))
        return kinds


def run(args: argparse.Namespace) -> str:
    """Every phase, with cleanup on any exit; the summary line."""
    print_parameters(args)
    with ExitStack() as stack:
        folder = Path(stack.enter_context(TemporaryDirectory(prefix="notifier-e2e-")))
        broker_url, how = stack.enter_context(
            broker_namespace(args.broker, [*ALL_QUEUES, floor_tasks.QUEUE])
        )
        procs = Processes(folder)
        stack.callback(procs.close)  # before the namespaces go: LIFO
        print(f"broker: {how}")
        kind = "redis" if broker_url.startswith("redis") else "rabbitmq"
        setup = Setup(args, folder, broker_url, kind, procs)
        try:
            setup.simulators = start_fakes(setup)
            print_fakes(setup)
            results: list[E2eResult] = []
            for processes in args.sweep or [args.concurrency]:
                # Each run on a database of its own: no run inherits another's dead rows.
                args.concurrency = processes
                with fresh_database(args.database) as db:
                    print(f"\ndatabase: {db.name}")
                    if not results:
                        print_pg_settings(db)
                    results.append(measure_e2e(setup, db))
            if args.sweep:
                print_sweep(results)
            # The summary's e2e is the run with the most processes; the floor gets as many.
            e2e = results[-1]
            ceiling = floor = None
            if not args.skip_baselines:
                ceiling = measure_ceiling(setup)
                floor = measure_floor(setup)
        except BenchError:
            print_logs(procs)
            raise
    print_load("end")
    return summary_line(e2e, ceiling, floor)


def print_fakes(setup: Setup) -> None:
    if setup.args.fakes == "lean":
        print(
            f"fakes: lean ({LEAN_FAKES.relative_to(ROOT)}: Twilio SMS with its two status "
            "callbacks, FCM, SMTP; counts only), measured apart as 'fakes'"
        )
    else:
        print("fakes: simulators (`notifier simulators`, keeping every message)")


def print_pg_settings(db: BenchDatabase) -> None:
    """The server's settings that move the figures; autovacuum is off on these machines."""
    with db.admin.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT name, setting, unit FROM pg_settings WHERE name = ANY(:names)"),
            {"names": list(PG_SETTINGS)},
        ).all()
        version = conn.execute(sa.text("SHOW server_version")).scalar_one()
    shown = {name: f"{setting}{' ' + unit if unit else ''}" for name, setting, unit in rows}
    print(
        f"PostgreSQL {version}: "
        + ", ".join(f"{name} {shown[name]}" for name in PG_SETTINGS if name in shown)
    )
    if shown.get("autovacuum") == "off":
        print(
            "  autovacuum is off: each run starts on a fresh database, not analyzed (statistics "
            "of its empty tables would have the planner scan them as they fill: the "
            "foreign-key checks keep such a plan); within a run the bench does what "
            "autovacuum would (below)"
        )


def worker_layout(args: argparse.Namespace) -> str:
    if not args.event_concurrency:
        return f"{args.workers} worker(s) x {args.concurrency} processes on every queue"
    return (
        f"{args.workers} x (a channel worker of {args.concurrency} processes + an events worker "
        f"of {args.event_concurrency})"
    )


def print_parameters(args: argparse.Namespace) -> None:
    print_load("start")
    print(
        f"parameters: {args.events} events, latency {args.latency_ms:g} ms, "
        f"{worker_layout(args)}, batches of {args.batch_size} by {args.clients} clients, timeout "
        f"{'auto' if args.timeout is None else f'{args.timeout:g} s'}"
    )
    print(f"  database server {args.database}; broker {args.broker}")
    rate = f"{args.provider_rate:g}/s each, in {args.rate_redis}" if args.provider_rate else "off"
    print(f"  provider rate limits: {rate}; API rate limits: off")
    if args.sms_providers != "twilio":
        print(
            f"  SMS providers: {args.sms_providers}; Mitake's simulated account pays for "
            f"{args.mitake_points} SMS, then answers 's' (no points left)"
        )
    if args.skip_baselines:
        print("  baselines skipped")
    else:
        print(
            f"  ceiling: {args.ceiling_events} events' worth of sends, {args.in_flight} in flight "
            f"({args.smtp_connections} of them SMTP connections); floor: {args.floor_count} tasks"
        )


def print_load(when: str) -> None:
    one, five, fifteen = os.getloadavg()
    print(f"load average at {when} (1, 5, 15 min): {one:.2f} {five:.2f} {fifteen:.2f}")


def print_logs(procs: Processes) -> None:
    for name in procs.log_names():
        print(f"\n--- last lines of {name}.log ---\n{procs.tail(name)}", file=sys.stderr)


def start_fakes(setup: Setup) -> dict[str, str]:
    """The provider fakes in their own process; the settings they print."""
    if setup.args.fakes == "lean":
        argv = [sys.executable, str(LEAN_FAKES), "--latency-ms", str(setup.args.latency_ms)]
        wanted = [name for name in SIMULATOR_SETTINGS if "MITAKE" not in name]
    else:
        argv = [
            *NOTIFIER, "simulators", "--latency-ms", str(setup.args.latency_ms),
            "--mitake-points", str(setup.args.mitake_points),
        ]  # fmt: skip
        wanted = SIMULATOR_SETTINGS
    # Unbuffered: its stdout is a pipe, and it prints once then sleeps.
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = setup.procs.start("fakes", argv, env, stdout=subprocess.PIPE)
    return read_exports(process, wanted)


# -- e2e ----------------------------------------------------------------------


@dataclass
class AcceptResult:
    events: int
    requests: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.events / self.seconds


@dataclass
class E2eResult:
    accept: AcceptResult
    deliveries: int
    seconds: float
    """From the first event accepted to the last delivery final (database times)."""
    p99: float = 0.0
    """Seconds from an event accepted to its delivery's first sent, all channels."""
    processes: int = 0
    """Channel-worker processes (per worker)."""
    rows: int = 0
    """Rows written (pg_stat_database)."""
    cpu: float = 0.0
    """CPU seconds of the API, the workers, PostgreSQL, the broker and Redis."""

    @property
    def rate(self) -> float:
        return self.deliveries / self.seconds

    @property
    def cpu_per_delivery(self) -> float:
        return self.cpu / self.deliveries


def notifier_env(setup: Setup, db: BenchDatabase, api_url: str) -> dict[str, str]:
    """The environment of every notifier process (settings names from notifier/settings.py)."""
    return {
        **os.environ,
        **setup.simulators,
        "NOTIFIER_DATA_DIR": str(setup.folder / "data"),
        "NOTIFIER_DATABASE_URL": db.url,
        "NOTIFIER_BROKER_URL": setup.broker_url,
        "NOTIFIER_PUBLIC_URL": api_url,  # where Twilio's status callbacks go
        "NOTIFIER_QUIET_HOURS": "off",
        "NOTIFIER_LOG_LEVEL": "WARNING",
        "NOTIFIER_PROVIDERS__SMS": setup.args.sms_providers,
        "NOTIFIER_RATE_LIMITS": json.dumps(
            dict.fromkeys(("twilio", "mitake", "smtp", "fcm"), setup.args.provider_rate)
            if setup.args.provider_rate
            else {}
        ),
        "NOTIFIER_RATE_LIMIT_URL": setup.args.rate_redis if setup.args.provider_rate else "",
        "NOTIFIER_API_RATE_LIMITS": "{}",
    }


def measure_e2e(setup: Setup, db: BenchDatabase) -> E2eResult:
    args = setup.args
    port = free_port()
    api_url = f"http://127.0.0.1:{port}"
    env = notifier_env(setup, db, api_url)
    if args.provider_rate:
        # The circuits live beside the rate limits, in Redis, and outlast a run: Mitake
        # run out of points in one run kept its circuit open (300 s) into the next.
        circuits = RedisCircuits(args.rate_redis)
        for state in circuits.states():
            circuits.close(state.provider)
    run_notifier(env, "migrate")
    key = run_notifier(env, "keys", "create", "--role", "producer", "--name", "bench")
    api = setup.procs.start(
        "api", [*NOTIFIER, "api", "--host", "127.0.0.1", "--port", str(port)], env
    )
    workers = start_workers(setup, env)
    wait_until(lambda: http_ok(f"{api_url}/healthz"), timeout=60, what="the API", alive=[api])

    channels = load_policy(PROJECT_ROOT / "config" / "policy.yaml").channels_for("bill.unpaid", 1)
    expected = args.events * len(channels)
    batches = build_batches(args.events, args.batch_size)
    timeout = args.timeout if args.timeout is not None else 600 + expected / 25
    print(
        f"e2e: {args.events} events x ({', '.join(channels)}) = {expected} deliveries expected, "
        f"{worker_layout(args)}"
    )
    written_before = db.tuples_written()
    tables_before = table_writes(db)
    tally_before = FakesTally.read(setup)
    engine = sa.create_engine(db.url)
    kinds = [
        Kind("api", lambda _: [api.pid]),
        Kind("worker", lambda _: [w.pid for w in workers]),
        *setup.server_kinds(),
        BENCH_KIND,
    ]
    autovacuum = AutovacuumStandIn(db)
    print(f"  {autovacuum.describe()}")
    try:
        with ResourceMeter(kinds) as meter, autovacuum:
            accept = asyncio.run(post_batches(api_url, key, batches, args.clients, args.pace))
            print(
                f"  accept   {accept.rate:8.0f} events/s  ({accept.events} events in "
                f"{accept.requests} requests, {accept.seconds:.2f} s)"
                + (f", paced at {args.pace:g} events/s" if args.pace else "")
            )
            wait_final(engine, args.events, expected, timeout)
        print(f"  {autovacuum.summary()}")
        settle_reports(engine)
        tally = FakesTally.read(setup) - tally_before
        duplicates = duplicate_sends(tally, engine)
        # Their backends report their row counts to pg_stat_database as they exit.
        setup.procs.stop("api", *(f"worker-{i}" for i in range(len(workers))))
        time.sleep(1.0)
        written = db.tuples_written() - written_before
        tables = table_writes(db)
        result = report_e2e(engine, accept, expected)
    finally:
        engine.dispose()
    result.processes = args.concurrency
    result.rows = written
    result.cpu = sum(u.cpu for name, u in meter.usage.items() if name not in NOT_THE_NOTIFIERS)
    print(
        f"  rows written per delivery: {written / expected:.1f} ({written} rows: pg_stat_database "
        f"tup_inserted + tup_updated + tup_deleted of {db.name}, read after the API and "
        f"workers exited); by table (pg_stat_all_tables):"
    )
    lines, in_tables = table_lines(tables_before, tables, expected)
    print("\n".join(lines))
    if written != in_tables:
        print(
            f"    {written - in_tables} of the rows written are in no table listed (tables "
            "dropped meanwhile: temporary ones)"
        )
    print("  CPU and memory from the first POST to the last delivery final:")
    print("\n".join(meter.table()))
    counted = ", ".join(n for n in meter.usage if n not in NOT_THE_NOTIFIERS)
    print(
        f"  CPU per delivery, fakes and bench excluded: {1000 * result.cpu_per_delivery:.2f} ms "
        f"({result.cpu:.1f} CPU s of {counted} / {expected} deliveries; PostgreSQL, the broker "
        f"and Redis are whole servers)"
    )
    if duplicates:
        # No worker died and no server stopped: every send beyond the log is a bug.
        raise BenchError(f"{duplicates} duplicate sends (sends the log does not record)")
    return result


# Every table, the system catalogs and TOAST tables too (named after their owner's
# table), so that the rows add up to pg_stat_database's.
_TABLE_WRITES = """
    SELECT CASE WHEN s.schemaname = 'pg_toast' THEN coalesce(o.relname, s.relname) || ' (TOAST)'
                WHEN s.schemaname = 'public' THEN s.relname
                ELSE s.schemaname || '.' || s.relname END,
           s.n_tup_ins, s.n_tup_upd, s.n_tup_del, s.n_dead_tup
    FROM pg_stat_all_tables s
    JOIN pg_class c ON c.oid = s.relid
    LEFT JOIN pg_class o ON o.reltoastrelid = s.relid
    WHERE NOT c.relisshared  -- shared catalogs count every database's writes
"""


def table_writes(db: BenchDatabase) -> dict[str, tuple[int, int, int, int]]:
    """Rows inserted, updated, deleted and dead per table so far (pg_stat_all_tables)."""
    engine = sa.create_engine(db.url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text(_TABLE_WRITES)).all()
    finally:
        engine.dispose()
    return {name: (ins, upd, dele, dead) for name, ins, upd, dele, dead in rows}


def table_lines(
    before: dict[str, tuple[int, int, int, int]],
    after: dict[str, tuple[int, int, int, int]],
    deliveries: int,
) -> tuple[list[str], int]:
    """Per table: inserted, updated, deleted over the run, per delivery; dead rows at the end.

    Also the rows written in all of them.
    """
    lines = [
        f"    {'table':<24} {'inserted':>9} {'updated':>9} {'deleted':>9} {'per delivery':>13}"
        f" {'dead rows':>10}"
    ]
    zero = (0, 0, 0, 0)
    deltas = {
        name: tuple(a - b for a, b in zip(row[:3], before.get(name, zero)[:3], strict=True))
        for name, row in after.items()
    }
    for name, (ins, upd, dele) in sorted(deltas.items(), key=lambda kv: -sum(kv[1])):
        if ins or upd or dele:
            per = (ins + upd + dele) / deliveries
            dead = after[name][3]
            lines.append(f"    {name:<24} {ins:9d} {upd:9d} {dele:9d} {per:13.2f} {dead:10d}")
    total = [sum(d[i] for d in deltas.values()) for i in range(3)]
    lines.append(
        f"    {'all':<24} {total[0]:9d} {total[1]:9d} {total[2]:9d} {sum(total) / deliveries:13.2f}"
    )
    return lines, sum(total)


@dataclass
class FakesTally:
    """What the fakes counted: sends per (delivery, recipient) and, lean, their counters."""

    sends: Counter[tuple[int, str]]
    counts: Counter[str]

    @classmethod
    def read(cls, setup: Setup) -> FakesTally:
        """Both fakes print it on SIGUSR1 (``notifier simulators`` only the sends)."""
        lines = read_tally(setup.procs.started["fakes"])
        sends = Counter({(d, to): n for d, to, n in json.loads(lines["sends"])})
        counts: Counter[str] = Counter()
        for name, value in json.loads(lines.get("counts", "{}")).items():
            if isinstance(value, dict):  # callbacks by HTTP status or by failure
                counts.update({f"{name} {k}": v for k, v in value.items()})
            else:
                counts[name] = value
        return cls(sends, counts)

    def __sub__(self, earlier: FakesTally) -> FakesTally:
        # The fakes count from their start; a sweep's runs take the difference.
        pending = self.counts["callbacks_pending"]
        counts = self.counts - earlier.counts
        counts["callbacks_pending"] = pending
        return FakesTally(self.sends - earlier.sends, counts)


# Sends each delivery's timeline records (one entry with the provider's id per send).
_RECORDED = """
    SELECT delivery_id, count(*) FROM delivery_changes
    WHERE jsonb_exists(detail::jsonb, 'provider_id') GROUP BY delivery_id
"""


def duplicate_sends(tally: FakesTally, engine: sa.Engine) -> int:
    """Sends the fakes accepted beyond those the deliveries recorded, printed.

    A recipient sent to more often than its delivery recorded a send got a
    duplicate. With the lean fakes, the status callbacks they posted too.
    """
    with engine.connect() as conn:
        recorded: dict[int, int] = {d: n for d, n in conn.execute(sa.text(_RECORDED)).all()}
    duplicates = sum(
        max(0, count - recorded.get(delivery_id, 0))
        for (delivery_id, _), count in tally.sends.items()
    )
    print(
        f"  duplicate sends: {duplicates} ({tally.sends.total()} sends received by the "
        f"fakes, {sum(recorded.values())} recorded in the deliveries' timelines)"
    )
    counts = tally.counts
    if "sms" in counts or "push" in counts or "email" in counts:
        answered = {k.split()[-1]: n for k, n in counts.items() if k.startswith("callbacks_answ")}
        failed = {k.split(" ", 1)[1]: n for k, n in counts.items() if k.startswith("callbacks_f")}
        # A non-2xx answer is counted as answered and as failed; a lost one only as failed.
        unanswered = sum(n for reason, n in failed.items() if not reason.startswith("HTTP"))
        print(
            f"  fakes: sms {counts['sms']}, push {counts['push']}, email {counts['email']}; "
            f"status callbacks posted {sum(answered.values()) + unanswered}, "
            f"answered {_counts(answered) or 'none'}, failed {_counts(failed) or 'none'}, "
            f"retried {counts['callbacks_retried']}, still pending {counts['callbacks_pending']}"
        )
    return duplicates


def start_workers(setup: Setup, env: dict[str, str]) -> list[subprocess.Popen[bytes]]:
    """K `notifier worker` processes (prefork, no beat), ready to take tasks.

    With ``--event-concurrency``, each on the channel queues beside one on the
    events queues, as docker-compose runs them: event processing then never
    waits behind a batch of slow sends.
    """
    args = setup.args
    every = ",".join(ALL_QUEUES)
    plan: list[tuple[str, str, int]] = []
    for i in range(args.workers):
        if args.event_concurrency:
            plan.append((f"bench-w{i}", ",".join(CHANNEL_NAMES), args.concurrency))
            plan.append((f"bench-e{i}", EVENT_QUEUES, args.event_concurrency))
        else:
            plan.append((f"bench-w{i}", every, args.concurrency))
    names = [worker_hostname(prefix) for prefix, _, _ in plan]
    workers = []
    for i, (name, (_, queues, concurrency)) in enumerate(zip(names, plan, strict=True)):
        argv = [
            *NOTIFIER, "worker", "-Q", queues, "--concurrency", str(concurrency),
            "--without-gossip", "--without-mingle", "--without-heartbeat", "--hostname", name,
        ]  # fmt: skip
        workers.append(setup.procs.start(f"worker-{i}", argv, env))
    wait_celery_ready(setup.broker_url, names, workers)
    return workers


def build_batches(count: int, size: int) -> list[tuple[int, bytes]]:
    """``count`` unpaid-bill events of distinct accounts, JSON-encoded ``size`` per request.

    The accounts have a phone, an email address and a push token but no
    postal address, so each event makes exactly the policy's push, SMS and
    email deliveries. Encoded before the clock starts, to keep the client light.
    """
    batches = []
    for start in range(0, count, size):
        chunk = [
            # Numbered here: tests.support.events numbers 99,999 accounts per process.
            events.unpaid(events.account(f"{n:011d}", address=None))
            for n in range(start + 1, min(start + size, count) + 1)
        ]
        batches.append((len(chunk), json.dumps({"events": chunk}).encode()))
    return batches


async def post_batches(
    api_url: str, key: str, batches: list[tuple[int, bytes]], clients: int, pace: float = 0.0
) -> AcceptResult:
    """POST every batch with ``clients`` concurrent clients; fail on anything not accepted.

    ``pace``: events/s to post at (0: as fast as the API takes them). A burst
    measures what the API accepts; a pace below the drain rate measures the
    latency of a pipeline that keeps up.
    """
    todo = iter(enumerate(batches))
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    timeout = aiohttp.ClientTimeout(total=600)
    size = batches[0][0] if batches else 1
    began = time.perf_counter()

    async def client(session: aiohttp.ClientSession) -> None:
        for index, (count, body) in todo:  # one iterator shared by the clients
            if pace:
                await asyncio.sleep(max(0.0, began + index * size / pace - time.perf_counter()))
            async with session.post("/v1/events/batch", data=body) as reply:
                text = await reply.text()
            answer = json.loads(text) if reply.status == 200 else {}
            if answer.get("accepted") != count:
                refused = [r for r in answer.get("results", []) if r.get("status") != "accepted"]
                raise BenchError(
                    f"batch of {count}: HTTP {reply.status} "
                    + (f"{len(refused)} refused, first: {refused[0]}" if refused else text[:500])
                )

    async with aiohttp.ClientSession(api_url, headers=headers, timeout=timeout) as session:
        started = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(clients)))
        seconds = time.perf_counter() - started
    return AcceptResult(sum(c for c, _ in batches), len(batches), seconds)


@dataclass(frozen=True)
class Progress:
    """One look at the database: deliveries by (channel, status), events by status."""

    deliveries: Counter[tuple[str, str]]
    events: Counter[str]

    @classmethod
    def read(cls, engine: sa.Engine) -> Progress:
        with engine.connect() as conn:
            deliveries = conn.execute(
                sa.text("SELECT channel, status, count(*) FROM deliveries GROUP BY 1, 2")
            ).all()
            events = conn.execute(sa.text("SELECT status, count(*) FROM events GROUP BY 1")).all()
        return cls(
            Counter({(channel, status): n for channel, status, n in deliveries}),
            Counter({status: n for status, n in events}),
        )

    @property
    def total(self) -> int:
        return sum(self.deliveries.values())

    def waiting(self, *, by_channel: bool = False) -> Counter[str]:
        """Deliveries not final, by status (or by ``channel status``)."""
        counts: Counter[str] = Counter()
        for (channel, status), n in self.deliveries.items():
            if status in NOT_FINAL:
                counts[f"{channel} {status}" if by_channel else status] += n
        return counts

    @property
    def unprocessed(self) -> int:
        return self.events["received"]


def wait_final(engine: sa.Engine, event_count: int, expected: int, timeout: float) -> None:
    """Until every event is processed and ``expected`` deliveries are final; progress meanwhile."""
    started = time.monotonic()
    last_print = started
    mismatch_since: float | None = None
    final_seen, moved_at = -1, started
    while True:
        polled = time.monotonic()
        seen = Progress.read(engine)
        # The counts scan both tables, longer as they grow (and autovacuum is off): at
        # 300,000 deliveries a poll took 0.2 s of PostgreSQL, and a poll every 0.5 s took
        # a third of a core from the run it measures. Waiting 20x a poll's cost keeps the
        # bench's share near 5%, at the price of seeing the end up to that much late.
        pause = max(0.5, 20 * (time.monotonic() - polled))
        waiting = seen.waiting()
        if seen.total == expected and not waiting and not seen.unprocessed:
            return
        now = time.monotonic()
        if seen.total - waiting.total() != final_seen:
            final_seen, moved_at = seen.total - waiting.total(), now
        elif now - moved_at > STALLED_AFTER:
            raise BenchError(
                f"no delivery became final in {STALLED_AFTER:.0f} s: {final_seen} of "
                f"{expected} final, waiting {_counts(seen.waiting(by_channel=True))}; no beat "
                "runs in the bench, so rows a failed task left claimed wait for no one (the "
                "workers' last log lines, below, say why it failed)"
            )
        if not waiting and not seen.unprocessed:
            # Every event processed, nothing in flight, and still not the count
            # the policy gives: wait a little for stragglers, then say so.
            mismatch_since = mismatch_since or now
            if now - mismatch_since > 10:
                raise BenchError(
                    f"{seen.total} deliveries once every event was processed, {expected} "
                    f"expected (deliveries: {_counts(seen.deliveries)}; events: "
                    f"{_counts(seen.events)})"
                )
        if now - started > timeout:
            raise BenchError(
                f"timed out after {timeout:.0f} s: {waiting.total()} of {seen.total} deliveries "
                f"not final ({_counts(seen.waiting(by_channel=True))}; {expected} expected), "
                f"{seen.unprocessed} of {event_count} events not processed"
            )
        if now - last_print >= PROGRESS_EVERY:
            print(
                f"  ... {now - started:5.0f} s  {seen.total - waiting.total()}/{expected} "
                f"deliveries final; waiting: {_counts(waiting) or 'none'}; "
                f"events not processed: {seen.unprocessed}",
                flush=True,
            )
            last_print = now
        time.sleep(pause)


def _counts(counts: Mapping[Any, int]) -> str:
    """``a 3, b 1``; tuple keys joined by spaces."""
    named = {" ".join(k) if isinstance(k, tuple) else str(k): n for k, n in counts.items()}
    return ", ".join(f"{name} {n}" for name, n in sorted(named.items()))


def settle_reports(engine: sa.Engine, timeout: float = 15.0) -> None:
    """Wait (briefly) for the status reports of sends that are still only ``sent``.

    They arrive a fraction of a second after the send and write rows, which
    belong in the rows-per-delivery figure.
    """
    query = sa.text(
        "SELECT count(*) FROM deliveries WHERE status = 'sent' AND provider = ANY(:providers)"
    )
    started = time.monotonic()
    pending = 0
    while time.monotonic() - started < timeout:
        with engine.connect() as conn:
            pending = conn.execute(query, {"providers": list(REPORTING_PROVIDERS)}).scalar_one()
        if pending == 0:
            break
        time.sleep(0.5)
    if pending:
        print(f"  {pending} sends still without their provider's report after {timeout:.0f} s")


# Per delivery: its event's acceptance, its first sent/delivered entry and its
# first final one (the timeline's, or the row's last update if it has none).
_TIMES = """
    SELECT d.channel,
           e.received_at,
           min(c.at) FILTER (WHERE c.status = ANY(:sent)) AS sent_at,
           coalesce(min(c.at) FILTER (WHERE c.status <> ALL(:not_final)), d.updated_at) AS final_at
    FROM deliveries d
    JOIN notifications n ON n.id = d.notification_id
    JOIN events e ON e.id = n.event_pk
    LEFT JOIN delivery_changes c ON c.delivery_id = d.id
    GROUP BY d.id, d.channel, e.received_at, d.updated_at
"""
_LATENCY = f"""
    SELECT coalesce(channel, 'all'), count(*), count(sent_at),
           percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP
               (ORDER BY extract(epoch FROM sent_at - received_at)::float8),
           min(received_at), max(final_at)
    FROM ({_TIMES}) AS t
    GROUP BY ROLLUP (channel)
    ORDER BY channel NULLS LAST
"""

# The commonest reasons of failed deliveries, so that a broken channel shows.
_FAILURES = """
    SELECT channel, status, left(coalesce(last_error, '(no error recorded)'), 160), count(*)
    FROM deliveries WHERE status = ANY(:final)
    GROUP BY 1, 2, 3 ORDER BY 4 DESC LIMIT 5
"""


_BY_PROVIDER = """
SELECT channel, coalesce(provider, '-'), count(*) FROM deliveries
GROUP BY channel, provider ORDER BY channel, provider
"""


def report_e2e(engine: sa.Engine, accept: AcceptResult, expected: int) -> E2eResult:
    with engine.connect() as conn:
        times = {"sent": list(SENT), "not_final": list(NOT_FINAL)}
        rows = conn.execute(sa.text(_LATENCY), times).all()
        failures = conn.execute(sa.text(_FAILURES), {"final": ["failed", "undelivered"]}).all()
    *channels, overall = rows
    first_accept, last_final = overall[4], overall[5]
    seconds = (last_final - first_accept).total_seconds()
    result = E2eResult(accept, expected, seconds, p99=overall[3][2] if overall[2] else 0.0)
    print(
        f"  e2e      {result.rate:8.0f} deliveries/s  ({expected} final in {result.seconds:.1f} s "
        f"from the first event accepted to the last delivery final)"
    )
    print(f"  statuses: {_counts(Progress.read(engine).deliveries)}")
    with engine.connect() as conn:
        by_provider = conn.execute(sa.text(_BY_PROVIDER)).all()
    print(
        "  sent by: "
        + ", ".join(f"{channel} {provider} {count}" for channel, provider, count in by_provider)
    )
    for channel, status, error, count in failures:
        print(f"  {count} {channel} {status}: {error}")
    print("  seconds from an event accepted to its delivery's first sent/delivered:")
    print(f"    {'channel':<8} {'sent':>7} {'p50':>7} {'p95':>7} {'p99':>7}")
    for channel, _, sent, quantiles, *_ in [*channels, overall]:
        shown = " ".join(f"{q:7.2f}" for q in quantiles) if sent else f"{'-':>7}"
        print(f"    {channel:<8} {sent:7d} {shown}")
    return result


# -- ceiling ------------------------------------------------------------------


def measure_ceiling(setup: Setup) -> float:
    args = setup.args
    count = args.ceiling_events
    http_slots = args.in_flight - args.smtp_connections
    print(
        f"\nceiling: bare asyncio client, no database, no broker: {count} each of sms, push, "
        f"email; {http_slots} HTTP requests and {args.smtp_connections} SMTP connections in flight"
    )
    kinds = [setup.fakes_kind(), BENCH_KIND]
    targets = Targets(setup.simulators)
    with ResourceMeter(kinds) as meter:
        tally = asyncio.run(flood(targets, count, http_slots, args.smtp_connections))
    print(f"  all      {tally.rate():8.0f} sends/s  ({sum(tally.sent.values())} sends)")
    for channel in ("sms", "push", "email"):
        print(f"  {channel:<8} {tally.rate(channel):8.0f} sends/s")
    if tally.errors:
        print(f"  errors: {_counts(tally.errors)}")
    print("\n".join(meter.table()))
    return tally.rate()


# -- floor --------------------------------------------------------------------


def measure_floor(setup: Setup) -> float:
    args = setup.args
    processes = setup.notifier_processes
    targets = Targets(setup.simulators)
    done = setup.folder / "floor-done"
    env = {
        **os.environ,
        floor_tasks.BROKER_ENV: setup.broker_url,
        floor_tasks.MESSAGES_URL_ENV: targets.twilio_messages,
        floor_tasks.AUTH_ENV: f"{targets['TWILIO__ACCOUNT_SID']}:{targets['TWILIO__AUTH_TOKEN']}",
        floor_tasks.DONE_ENV: str(done),
    }
    name = worker_hostname("bench-floor")
    worker = setup.procs.start(
        "floor-worker",
        [
            sys.executable, "-m", "celery", "-A", "bench.floor_tasks", "worker",
            "-Q", floor_tasks.QUEUE, "-P", "prefork", "-c", str(processes), "--loglevel", "WARNING",
            "--without-gossip", "--without-mingle", "--without-heartbeat", "--hostname", name,
        ],
        env,
    )  # fmt: skip
    wait_celery_ready(setup.broker_url, [name], [worker])
    print(
        f"\nfloor: one Celery task per delivery, one blocking POST to the Twilio fake, "
        f"prefork x {processes}, {args.floor_count} tasks"
    )
    kinds = [Kind("floor-worker", lambda _: [worker.pid]), *setup.server_kinds(), BENCH_KIND]
    app = floor_tasks.make_app(setup.broker_url)
    try:
        with ResourceMeter(kinds) as meter:
            started = time.time()
            with app.producer_or_acquire() as producer:
                for _ in range(args.floor_count):
                    task_args = ("+886912345678", targets["TWILIO__FROM_NUMBER"], SMS_BODY)
                    app.send_task(floor_tasks.TASK, args=task_args, producer=producer)
            wait_until(
                lambda: _lines(done) >= args.floor_count,
                timeout=120 + args.floor_count * args.latency_ms / 1000,
                what=f"{args.floor_count} floor tasks",
                alive=[worker],
                interval=0.1,
            )
    finally:
        app.close()
        setup.procs.stop("floor-worker")
    finished = [line.split() for line in done.read_text().splitlines()]
    rate = len(finished) / (max(float(at) for at, _ in finished) - started)
    errors = sum(1 for _, outcome in finished if outcome != "ok")
    print(f"  floor    {rate:8.0f} tasks/s" + (f"  ({errors} failed)" if errors else ""))
    print("\n".join(meter.table()))
    return rate


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


# -- summary ------------------------------------------------------------------


def print_sweep(results: list[E2eResult]) -> None:
    print("\ne2e by channel-worker processes (each on a fresh database):")
    print(
        f"  {'processes':>9} {'deliveries/s':>13} {'CPU ms/delivery':>16} {'rows/delivery':>14} "
        f"{'p99 s':>8}"
    )
    for r in results:
        print(
            f"  {r.processes:9d} {r.rate:13.0f} {1000 * r.cpu_per_delivery:16.2f} "
            f"{r.rows / r.deliveries:14.1f} {r.p99:8.2f}"
        )
    print("  (CPU: API, workers, PostgreSQL, broker and Redis; the fakes and the bench excluded)")


def summary_line(e2e: E2eResult, ceiling: float | None, floor: float | None) -> str:
    parts = [
        f"e2e {e2e.rate:.0f} deliveries/s ({e2e.processes} channel-worker processes)",
        f"{1000 * e2e.cpu_per_delivery:.2f} ms CPU/delivery without the fakes",
    ]
    if ceiling is not None and floor is not None:
        parts += [
            f"ceiling {ceiling:.0f}/s",
            f"floor {floor:.0f}/s",
            f"e2e/ceiling {e2e.rate / ceiling:.2f}",
            f"e2e/floor {e2e.rate / floor:.1f}",
        ]
    parts.append(f"accept {e2e.accept.rate:.0f} events/s")
    return "summary: " + " · ".join(parts)


if __name__ == "__main__":
    sys.exit(main())
