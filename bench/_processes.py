"""Shared by the benches: a fresh database and broker namespace, the notifier's
processes started and stopped like a deployment, and their CPU and memory.

Everything here talks to real servers on this machine (PostgreSQL, RabbitMQ or
Redis) and starts real processes (`python -m notifier ...`, `celery worker`),
each in a session of its own so that Ctrl-C reaches the bench alone, which then
stops them in order (FIELD-NOTES: SIGTERM to a prefork worker's main process
only).

Process statistics are read from /proc (Linux), so no extra dependency is needed.
"""

from __future__ import annotations

import os
import secrets
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import redis
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
NOTIFIER = [sys.executable, "-m", "notifier"]
T = TypeVar("T")


class BenchError(Exception):
    """A bench could not measure what it set out to; the message says why."""


def wait_until(
    predicate: Callable[[], T],
    *,
    timeout: float,
    what: str,
    alive: Iterable[subprocess.Popen[bytes]] = (),
    interval: float = 0.2,
) -> T:
    """Poll ``predicate`` until it is truthy; fail naming ``what`` (or the process that died)."""
    deadline = time.monotonic() + timeout
    watched = list(alive)
    while True:
        value = predicate()
        if value:
            return value
        for process in watched:
            if process.poll() is not None:
                raise BenchError(f"{_argv(process)} exited ({process.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def _argv(process: subprocess.Popen[bytes]) -> str:
    args = process.args if isinstance(process.args, list) else [str(process.args)]
    return " ".join(str(a) for a in args[1:4])


# -- database -----------------------------------------------------------------


@dataclass(frozen=True)
class BenchDatabase:
    url: str
    name: str
    admin: sa.Engine
    """Connected to the server's maintenance database, in autocommit."""

    def tuples_written(self) -> int:
        """Rows inserted, updated and deleted in this database so far (pg_stat_database).

        Backends report their counts when a transaction ends at most once a
        second, and idle ones up to 10 s later; a backend that exits reports at
        once. Read it after the writers have exited.
        """
        with self.admin.connect() as conn:
            written = conn.execute(
                sa.text(
                    "SELECT tup_inserted + tup_updated + tup_deleted "
                    "FROM pg_stat_database WHERE datname = :name"
                ),
                {"name": self.name},
            ).scalar_one()
        return int(written)


_AUTOVACUUM_SETTINGS = (
    "autovacuum_naptime", "autovacuum_vacuum_threshold", "autovacuum_vacuum_scale_factor",
    "autovacuum_vacuum_insert_threshold", "autovacuum_vacuum_insert_scale_factor",
    "autovacuum_analyze_threshold", "autovacuum_analyze_scale_factor",
)  # fmt: skip
_TABLE_STATE = """
    SELECT s.relname, greatest(c.reltuples, 0), s.n_dead_tup, s.n_ins_since_vacuum,
           s.n_mod_since_analyze
    FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
"""


class AutovacuumStandIn:
    """What autovacuum would do to one database, for servers that run with it off.

    Deployed, autovacuum ANALYZEs a table once the rows changed since its last
    analyze pass ``autovacuum_analyze_threshold + autovacuum_analyze_scale_factor
    * reltuples``, and VACUUMs it past the dead-row and inserted-row thresholds,
    looking once every ``autovacuum_naptime``. With it off, the statistics stay
    those of the first plans: psycopg prepares a statement after its fifth run and
    PostgreSQL keeps the generic plan made while the tables were small until an
    ANALYZE of them (at 100,000 events the events worker's keyed SELECTs took
    150-460 ms a batch so). This thread applies the server's own thresholds and
    naptime, so the figures are those of a deployment; its passes run in a
    backend of the database's server, so their CPU is PostgreSQL's.
    """

    def __init__(self, db: BenchDatabase) -> None:
        self.db = db
        self.engine = sa.create_engine(db.url, isolation_level="AUTOCOMMIT")
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT name, setting FROM pg_settings WHERE name = ANY(:names)"),
                {"names": list(_AUTOVACUUM_SETTINGS)},
            ).all()
        self.settings = {name: float(setting) for name, setting in rows}
        self.naptime = self.settings.get("autovacuum_naptime", 60.0)
        self.analyzed: list[str] = []
        self.vacuumed: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="autovacuum-stand-in", daemon=True)

    def describe(self) -> str:
        s = self.settings
        return (
            f"autovacuum stand-in (autovacuum is off here): every {self.naptime:g} s, ANALYZE a "
            f"table past {s.get('autovacuum_analyze_threshold', 50):g} + "
            f"{s.get('autovacuum_analyze_scale_factor', 0.1):g} x its rows changed, VACUUM past "
            f"{s.get('autovacuum_vacuum_threshold', 50):g} + "
            f"{s.get('autovacuum_vacuum_scale_factor', 0.2):g} x dead or "
            f"{s.get('autovacuum_vacuum_insert_threshold', 1000):g} + "
            f"{s.get('autovacuum_vacuum_insert_scale_factor', 0.2):g} x inserted; its passes' "
            "CPU is PostgreSQL's"
        )

    def summary(self) -> str:
        def counted(names: list[str]) -> str:
            tally: dict[str, int] = {}
            for name in names:
                tally[name] = tally.get(name, 0) + 1
            return ", ".join(f"{name} {n}" for name, n in sorted(tally.items())) or "none"

        return (
            f"autovacuum stand-in: {len(self.analyzed)} ANALYZE ({counted(self.analyzed)}), "
            f"{len(self.vacuumed)} VACUUM ({counted(self.vacuumed)})"
        )

    def __enter__(self) -> AutovacuumStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.engine.dispose()

    def _run(self) -> None:
        while not self._stop.wait(self.naptime):
            try:
                self.once()
            except sa.exc.DBAPIError as error:
                # A pass that failed (a table dropped meanwhile) is tried again next nap.
                print(f"  autovacuum stand-in: {type(error.orig).__name__}: {error.orig}")

    def _past(self, what: str, count: int, tuples: float) -> bool:
        """autovacuum's test: ``count`` beyond ``<what>_threshold + <what>_scale_factor * rows``."""
        threshold = self.settings.get(f"autovacuum_{what}_threshold", 50)
        return (
            count > threshold + self.settings.get(f"autovacuum_{what}_scale_factor", 0.2) * tuples
        )

    def once(self) -> None:
        """One pass over the tables, as an autovacuum worker makes one per naptime."""
        with self.engine.connect() as conn:
            for name, tuples, dead, inserted, modified in conn.execute(sa.text(_TABLE_STATE)):
                vacuum = self._past("vacuum", dead, tuples) or self._past(
                    "vacuum_insert", inserted, tuples
                )
                analyze = self._past("analyze", modified, tuples)
                if self._stop.is_set() or not (vacuum or analyze):
                    continue
                verb = ("VACUUM (ANALYZE)" if analyze else "VACUUM") if vacuum else "ANALYZE"
                conn.execute(sa.text(f'{verb} "{name}"'))
                if vacuum:
                    self.vacuumed.append(name)
                if analyze:
                    self.analyzed.append(name)


@contextmanager
def fresh_database(admin_url: str) -> Iterator[BenchDatabase]:
    """A new PostgreSQL database ``notifier_bench_<hex>``, dropped WITH (FORCE) afterwards."""
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"notifier_bench_{secrets.token_hex(3)}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield BenchDatabase(admin_url.rsplit("/", 1)[0] + f"/{name}", name, admin)
    finally:
        _drop_database(admin, name)
        admin.dispose()


def _drop_database(admin: sa.Engine, name: str, attempts: int = 10) -> None:
    """Drop it, waiting out a server that is restarting; say so if it stays behind.

    A failed drop must not hide why the bench stopped.
    """
    for attempt in range(attempts):
        try:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            return
        except sa.exc.OperationalError as exc:
            error = exc
            if attempt < attempts - 1:
                time.sleep(3)
    print(f"could not drop database {name}: {error.orig}; drop it by hand", file=sys.stderr)


# -- broker -------------------------------------------------------------------


@contextmanager
def broker_namespace(url: str, queues: Iterable[str]) -> Iterator[tuple[str, str]]:
    """A broker URL the bench has to itself, and how it got it (for the printed parameters).

    RabbitMQ: a fresh vhost (deleted afterwards) when rabbitmqctl can make one
    here, otherwise ``queues`` purged on the vhost given. Redis: the db number
    in the URL, flushed before and after; without one, an empty db of 1..15.
    Left-over tasks from an earlier run would otherwise be counted as work.
    """
    if url.startswith(("redis://", "rediss://")):
        with _redis_db(url) as claimed:
            yield claimed
    elif url.startswith(("amqp://", "pyamqp://")) and _local_rabbitmqctl(url):
        with _rabbit_vhost(url) as claimed:
            yield claimed
    else:
        _purge(url, queues)
        yield url, f"queues purged on {url}"


def _local_rabbitmqctl(url: str) -> bool:
    return shutil.which("rabbitmqctl") is not None and urlsplit(url).hostname in {
        "127.0.0.1",
        "localhost",
    }


@contextmanager
def _rabbit_vhost(url: str) -> Iterator[tuple[str, str]]:
    parts = urlsplit(url)
    vhost = f"notifier-bench-{secrets.token_hex(3)}"
    user = parts.username or "guest"
    subprocess.run(["rabbitmqctl", "-q", "add_vhost", vhost], check=True)
    try:
        subprocess.run(
            ["rabbitmqctl", "-q", "set_permissions", "-p", vhost, user, ".*", ".*", ".*"],
            check=True,
        )
        yield urlunsplit(parts._replace(path=f"/{vhost}")), f"fresh RabbitMQ vhost {vhost}"
    finally:
        deleted = subprocess.run(
            ["rabbitmqctl", "-q", "delete_vhost", vhost], capture_output=True, text=True
        )
        if deleted.returncode != 0:
            print(
                f"could not delete vhost {vhost}: {deleted.stderr.strip()[:300]}", file=sys.stderr
            )


@contextmanager
def _redis_db(url: str) -> Iterator[tuple[str, str]]:
    parts = urlsplit(url)
    named = parts.path.strip("/")
    if named:
        client = redis.Redis.from_url(url)
        client.flushdb()
        how = f"Redis db {named}, flushed"
    else:
        client = _claim_redis_db(url)
        number = client.connection_pool.connection_kwargs["db"]
        url = urlunsplit(parts._replace(path=f"/{number}"))
        how = f"empty Redis db {number}"
    try:
        yield url, how
    finally:
        client.flushdb()


def _claim_redis_db(url: str) -> redis.Redis:
    """An empty Redis db among 1..15, marked ours (the marker expires if we crash)."""
    base = url.rstrip("/")
    for number in range(1, 16):
        client = redis.Redis.from_url(f"{base}/{number}")
        if client.dbsize() == 0 and client.set(
            "notifier-bench:owner", os.getpid(), nx=True, ex=3600
        ):
            return client
    raise BenchError("no empty Redis db among 1..15: name one in --broker")


def _purge(url: str, queues: Iterable[str]) -> None:
    from kombu.connection import Connection
    from kombu.entity import Exchange, Queue

    with Connection(url) as conn:
        channel = conn.default_channel
        for name in queues:
            # Declared as Celery declares them, so an existing queue is not refused.
            queue = Queue(name, Exchange(name, type="direct"), routing_key=name)(channel)
            queue.declare()
            queue.purge()


# -- processes ----------------------------------------------------------------


@dataclass
class Processes:
    """The bench's child processes, each logging to a file in ``logs``; stopped on close()."""

    logs: Path
    started: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(
        self, name: str, argv: list[str], env: dict[str, str], *, stdout: int | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` in a session of its own; stderr (and stdout unless piped) to a log."""
        with (self.logs / f"{name}.log").open("wb") as log:
            process = subprocess.Popen(
                argv,
                env=env,
                cwd=ROOT,
                stdout=log if stdout is None else stdout,
                stderr=log,
                start_new_session=True,
            )
        self.started[name] = process
        return process

    def stop(self, *names: str, timeout: float = 30) -> None:
        """SIGTERM each main process (not its group: a prefork pool hangs on that), then kill."""
        running = [(n, self.started.pop(n)) for n in names if n in self.started]
        for _, process in running:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for name, process in running:
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                print(f"  {name} did not stop in {timeout:.0f} s: killed", file=sys.stderr)
                with suppress(ProcessLookupError):  # it may have gone meanwhile
                    os.killpg(process.pid, signal.SIGKILL)  # with its pool children
                process.wait()
            if process.stdout is not None:
                process.stdout.close()

    def close(self) -> None:
        """Stop everything still running, the last started first."""
        self.stop(*reversed(list(self.started)))

    def tail(self, name: str, lines: int = 15) -> str:
        path = self.logs / f"{name}.log"
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def log_names(self) -> list[str]:
        return sorted(p.stem for p in self.logs.glob("*.log"))


def read_exports(
    process: subprocess.Popen[bytes], wanted: Iterable[str], timeout: float = 30
) -> dict[str, str]:
    """The ``export NAME=VALUE`` lines ``process`` prints, once each of ``wanted`` is among them.

    The lines come one write at a time: after the last wanted name, reading
    goes on until the output pauses, so that settings printed after it (say,
    ``NOTIFIER_SMTP__STARTTLS`` after ``NOTIFIER_SMTP__HOST``) are not lost.
    """
    assert process.stdout is not None
    missing = set(wanted)
    found: dict[str, str] = {}
    buffer = b""
    deadline = time.monotonic() + timeout
    while True:
        # select + os.read, not readline: a silent child must not hang the bench.
        wait = 0.5 if not missing else deadline - time.monotonic()
        if wait <= 0 or not select.select([process.stdout], [], [], wait)[0]:
            if not missing:
                return found
            raise BenchError(f"no {sorted(missing)} from {_argv(process)} in {timeout:.0f} s")
        chunk = os.read(process.stdout.fileno(), 65536)
        if not chunk:
            if not missing:
                return found
            raise BenchError(f"{_argv(process)} exited before printing {sorted(missing)}")
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            words = shlex.split(line.decode())
            if len(words) == 2 and words[0] == "export" and "=" in words[1]:
                name, _, value = words[1].partition("=")
                found[name] = value
                missing.discard(name)


def read_tally(
    process: subprocess.Popen[bytes], last: str = "sends", timeout: float = 30
) -> dict[str, str]:
    """SIGUSR1 ``process`` and read the ``word rest`` lines it prints up to the ``last`` word's.

    The provider fakes and ``notifier simulators`` both print their tally
    this way (``counts {...}`` and ``sends [...]``); the values are JSON.
    """
    assert process.stdout is not None
    os.kill(process.pid, signal.SIGUSR1)
    deadline = time.monotonic() + timeout
    buffer = b""
    lines: dict[str, str] = {}
    while last not in lines:
        wait = deadline - time.monotonic()
        if wait <= 0 or not select.select([process.stdout], [], [], wait)[0]:
            raise BenchError(f"no tally from {_argv(process)} in {timeout:.0f} s")
        chunk = os.read(process.stdout.fileno(), 1 << 20)
        if not chunk:
            raise BenchError(f"{_argv(process)} exited before printing its tally")
        buffer += chunk
        *complete, buffer = buffer.split(b"\n")
        for line in complete:
            word, _, rest = line.decode().partition(" ")
            lines[word] = rest
    return lines


def run_notifier(env: dict[str, str], *args: str) -> str:
    """Run ``notifier ARGS`` to completion; its stdout, or BenchError with its stderr."""
    done = subprocess.run([*NOTIFIER, *args], env=env, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise BenchError(f"notifier {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return done.stdout.strip()


def worker_hostname(prefix: str) -> str:
    """A unique Celery node name; `%h` in --hostname expands to this host's name."""
    return f"{prefix}-{secrets.token_hex(3)}@{socket.gethostname()}"


def wait_celery_ready(
    broker_url: str, hostnames: Iterable[str], processes: Iterable[subprocess.Popen[bytes]]
) -> None:
    """Wait until every named worker answers a ping (its consumers are running by then).

    Workers log "ready." only at INFO, and INFO would log every task; a ping
    works the same on RabbitMQ and Redis.
    """
    from celery import Celery

    wanted = set(hostnames)
    pinger = Celery("bench-ping", broker=broker_url)

    def all_answer() -> bool:
        replies = pinger.control.ping(destination=sorted(wanted), timeout=0.5)
        return wanted <= {name for reply in replies for name in reply}

    try:
        wait_until(all_answer, timeout=90, what="the Celery workers to answer", alive=processes)
    finally:
        pinger.close()


# -- CPU and memory from /proc ------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class ProcStat:
    pid: int
    ppid: int
    name: str
    own_cpu: float
    """utime + stime, seconds."""
    reaped_cpu: float
    """cutime + cstime: children that exited and were waited for, seconds."""
    rss: int
    """Resident bytes (pages shared with other processes counted in each)."""


def scan_proc() -> dict[int, ProcStat]:
    """Every process on the machine, from /proc/PID/stat."""
    found: dict[int, ProcStat] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue  # exited between listdir and read
        # The name is in parentheses and may hold spaces or ")": split at the last one.
        name = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
        found[int(entry)] = ProcStat(
            pid=int(entry),
            ppid=int(fields[1]),
            name=name,
            own_cpu=(utime + stime) / _TICK,
            reaped_cpu=(cutime + cstime) / _TICK,
            rss=int(fields[21]) * _PAGE,
        )
    return found


def descendants(procs: dict[int, ProcStat], roots: Iterable[int]) -> set[int]:
    """``roots`` (those alive) and every process below them."""
    children: dict[int, list[int]] = {}
    for stat in procs.values():
        children.setdefault(stat.ppid, []).append(stat.pid)
    tree: set[int] = set()
    todo = [pid for pid in roots if pid in procs]
    while todo:
        pid = todo.pop()
        if pid not in tree:
            tree.add(pid)
            todo.extend(children.get(pid, ()))
    return tree


def named_roots(procs: dict[int, ProcStat], name: str) -> list[int]:
    """Processes called ``name`` whose parent is not: a server's main process (postmaster, beam.smp)."""
    roots = []
    for stat in procs.values():
        parent = procs.get(stat.ppid)
        if stat.name == name and (parent is None or parent.name != name):
            roots.append(stat.pid)
    return roots


@dataclass(frozen=True)
class Kind:
    """A kind of process measured together: its roots, and whether their trees count."""

    name: str
    roots: Callable[[dict[int, ProcStat]], Iterable[int]]
    tree: bool = True
    """False: the roots alone, without children's CPU (the bench counts its children apart)."""

    def members(self, procs: dict[int, ProcStat]) -> set[int]:
        roots = self.roots(procs)
        return descendants(procs, roots) if self.tree else {p for p in roots if p in procs}

    def cpu(self, procs: dict[int, ProcStat], members: set[int]) -> float:
        # Children that exited inside the tree are in their parent's reaped CPU,
        # so the sum over the live members stays right as workers come and go.
        reaped = self.tree
        return sum(procs[p].own_cpu + (procs[p].reaped_cpu if reaped else 0.0) for p in members)


POSTGRES = Kind("postgres", lambda procs: named_roots(procs, "postgres"))
"""The PostgreSQL server, whole: every backend is a child of its postmaster."""


class CollectingDispatcher:
    """Stands for a runtime's dispatcher in an in-process bench: keeps the event ids and
    deliveries it is handed, and drops any other message (producer callbacks, ambiguous
    sends), which the figures are not about."""

    def __init__(self) -> None:
        self.events: list[int] = []
        self.deliveries: list[tuple[int, str]] = []

    def process_events(self, event_pks: Sequence[int]) -> bool:
        self.events.extend(event_pks)
        return True

    def deliver(self, deliveries: Iterable[tuple[int, str]], **_: Any) -> bool:
        self.deliveries.extend(deliveries)
        return True

    def __getattr__(self, name: str) -> Callable[..., bool]:
        return lambda *args, **kwargs: True


@dataclass
class Usage:
    cpu_start: float = 0.0
    cpu_end: float = 0.0
    peak_rss: int = 0

    @property
    def cpu(self) -> float:
        return max(self.cpu_end - self.cpu_start, 0.0)


class ResourceMeter:
    """CPU seconds and peak RSS of each kind of process over a window, sampled every ``interval``."""

    def __init__(self, kinds: list[Kind], interval: float = 0.5) -> None:
        self.kinds = kinds
        self.interval = interval
        self.usage = {kind.name: Usage() for kind in kinds}
        self.wall = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="resource-meter", daemon=True)
        self._started = 0.0

    def __enter__(self) -> ResourceMeter:
        self._sample(first=True)
        self._started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample(first=False)
        self.wall = time.monotonic() - self._started

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample(first=False)

    def _sample(self, *, first: bool) -> None:
        procs = scan_proc()
        for kind in self.kinds:
            members = kind.members(procs)
            usage = self.usage[kind.name]
            cpu = kind.cpu(procs, members)
            if first:
                usage.cpu_start = cpu
            usage.cpu_end = cpu
            usage.peak_rss = max(usage.peak_rss, sum(procs[p].rss for p in members))

    def table(self) -> list[str]:
        """One line per kind: CPU seconds, share of one core over the window, peak RSS."""
        lines = [f"  {'process':<12} {'CPU s':>8} {'% core':>7} {'peak RSS MB':>12}"]
        for name, usage in self.usage.items():
            share = 100 * usage.cpu / self.wall if self.wall else 0.0
            lines.append(
                f"  {name:<12} {usage.cpu:8.1f} {share:7.0f} {usage.peak_rss / 2**20:12.0f}"
            )
        total = sum(u.cpu for u in self.usage.values())
        lines.append(
            f"  {'total':<12} {total:8.1f} {100 * total / self.wall if self.wall else 0:7.0f}"
            f"   (of {100 * (os.cpu_count() or 1)}% on {os.cpu_count()} cores, {self.wall:.1f} s)"
        )
        return lines
