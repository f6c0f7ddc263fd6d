"""Escalation benchmark: the daily sweep over a utility's ledger, and agents' list pulls.

    python bench/escalation.py [--accounts 1000000] [--list-cases 10000]
                               [--database postgresql+psycopg://postgres@127.0.0.1:5432/postgres]
                               [--keep]

It makes a fresh PostgreSQL database next to --database, runs the migrations,
seeds it with COPY (each account with three bimonthly bills: 2026-05, 2026-07
and 2026-09, due 2026-07-20, 2026-09-20 and 2026-11-20) in this mix:

* ~85% paid all but the latest bill (in arrears on 2026-11-21, not escalable);
* ~10% also owe 2026-07 (its second billing date, 2026-11-20, has come);
* ~3% owe all three; ~2% paid everything;

~3% vulnerable, ~1% preferring paper and ~2% without a phone (visits), 30
areas with 2 callers and 1 field agent each but one with none (unassigned).
Then, in the same run:

* baseline: a bare count of the overdue bills and a full fetch of all bills;
* the sweep as of 2026-11-21, then again (idempotent: the daily steady state),
  with the SQL time of each statement it ran and EXPLAIN (ANALYZE, BUFFERS) of
  its hot queries;
* one caller given --list-cases open call cases: their list as JSON (as the
  API answers it), CSV, XLSX and ODS, median of 3 pulls each.

The figure to compare across machines is the sweep's ratio to the full fetch.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import re
import secrets
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Engine

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from notifier.api.escalations import CaseList, CaseOut  # noqa: E402
from notifier.db import Database  # noqa: E402
from notifier.escalation import lists  # noqa: E402
from notifier.escalation.agents import add_agent  # noqa: E402
from notifier.escalation.models import SweepRun  # noqa: E402
from notifier.escalation.sweep import CHUNK, sweep  # noqa: E402
from notifier.exports import tables as exports  # noqa: E402
from notifier.migrations import upgrade  # noqa: E402
from notifier.policy.rules import load_policy  # noqa: E402

AS_OF = date(2026, 11, 21)
PERIODS = (("2026-05", date(2026, 7, 20)), ("2026-07", date(2026, 9, 20)), ("2026-09", date(2026, 11, 20)))  # fmt: skip
# (share of accounts, how many of the latest bills are unpaid)
MIX = {"latest unpaid": (0.85, 1), "2026-07 too": (0.10, 2), "all three": (0.03, 3), "all paid": (0.02, 0)}  # fmt: skip
AREAS = 30
"""The last area has no agents: its cases stay unassigned."""
STAMP = "2026-11-01 00:00:00+00"
SURNAMES = "陳林黃張李王吳劉蔡楊許鄭謝郭洪"
GIVEN = ("志明", "淑芬", "家豪", "雅婷", "俊傑", "美玲", "建宏", "怡君", "宗翰", "佳穎")
STREETS = ("中正路", "民生路", "中山路", "復興路", "和平東路", "信義路", "光復南路", "忠孝東路")
RUNS = 3
TZ = ZoneInfo("Asia/Taipei")


def main() -> None:
    # SIGTERM unwinds like Ctrl-C, so the bench database is still dropped.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--accounts", type=int, default=1_000_000)
    parser.add_argument("--list-cases", type=int, default=10_000)
    parser.add_argument(
        "--database",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
        help="a database on the server to make the bench database next to",
    )
    parser.add_argument("--keep", action="store_true", help="keep the bench database")
    parser.add_argument("--seed", type=int, default=20261121)
    parser.add_argument(
        "--profile", action="store_true", help="profile the first sweep's Python with pyinstrument"
    )
    args = parser.parse_args()

    admin = sa.create_engine(args.database, isolation_level="AUTOCOMMIT")
    name = f"notifier_bench_{secrets.token_hex(3)}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = args.database.rsplit("/", 1)[0] + f"/{name}"
    db: Database | None = None
    try:
        upgrade(url)
        db = Database(url)
        _run(db, args)
    finally:
        if db is not None:
            db.dispose()
        if args.keep:
            print(f"kept {url}")
        else:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _run(db: Database, args: argparse.Namespace) -> None:
    engine = db.engine
    n = args.accounts

    print(f"code    {_version()}; {_server(engine)}")
    print(f"server  {_settings(engine)}")
    print(f"load    {_load()} (before)")

    # --- seed -----------------------------------------------------------------------------
    started = time.perf_counter()
    mix = _seed(engine, n, random.Random(args.seed))
    copied = time.perf_counter() - started
    with db.session() as session:
        for k in range(AREAS - 1):
            add_agent(session, name=f"caller {k}a", area=_area(k), kind="caller")
            add_agent(session, name=f"caller {k}b", area=_area(k), kind="caller")
            add_agent(session, name=f"field {k}", area=_area(k), kind="field")
    # Only the seeded tables, as after a restore: the sweep analyzes the case
    # tables it fills itself (statistics saying "empty" made its foreign-key
    # checks scan them).
    _maintain(engine, "VACUUM (ANALYZE) accounts, bills, agents")
    print("vacuum  VACUUM (ANALYZE) accounts, bills, agents after seeding (autovacuum is off)")
    seeded = time.perf_counter() - started
    counts = _scalars(
        engine,
        "SELECT count(*) FROM accounts",
        "SELECT count(*) FROM bills",
        f"SELECT count(*) FROM bills WHERE paid_at IS NULL AND due_date < '{AS_OF}'",
        "SELECT count(*) FROM agents",
        "SELECT count(DISTINCT account_no) FROM bills"
        f" WHERE paid_at IS NULL AND due_date < '{AS_OF}'",
    )
    in_arrears = counts[4]
    print(
        f"seed    {counts[0]:,} accounts ({in_arrears:,} in arrears on {AS_OF}), {counts[1]:,} "
        f"bills ({counts[2]:,} overdue), {counts[3]} agents in {seeded:.1f} s (COPY {copied:.1f} s, "
        f"{(counts[0] + counts[1]) / copied:,.0f} rows/s; then agents, VACUUM ANALYZE)"
    )
    print("mix     " + ", ".join(f"{k} {v:,}" for k, v in mix.items()))

    # --- baseline -------------------------------------------------------------------------
    overdue_sql = f"SELECT count(*) FROM bills WHERE paid_at IS NULL AND due_date < '{AS_OF}'"
    fetch_sql = "SELECT account_no, bill_no, due_date, amount, paid_at FROM bills"
    count_s = _median(lambda: _scalars(engine, overdue_sql))
    fetch_s = _median(lambda: _fetch_all(engine, fetch_sql))
    print(f"base    count(*) of overdue bills      {count_s:8.2f} s   (median of {RUNS})")
    print(f"base    fetch all {counts[1]:,} bills     {fetch_s:8.2f} s   (median of {RUNS})")

    # --- sweeps ---------------------------------------------------------------------------
    policy = load_policy(ROOT / "config" / "policy.yaml").escalation
    recorders: list[Recorder] = []
    timings: list[tuple[float, SweepRun]] = []
    for label in ("sweep", "again"):
        profiler = _profiler() if args.profile and label == "sweep" else None
        with Recorder(engine) as recorder:
            started = time.perf_counter()
            if profiler is not None:
                profiler.start()
            run = sweep(db, policy, AS_OF, trigger="bench", progress=_progress(started))
            elapsed = time.perf_counter() - started
            if profiler is not None:
                profiler.stop()
                print(profiler.output_text(show_all=False, short_mode=True))
        recorders.append(recorder)
        timings.append((elapsed, run))
        print(
            f"{label:7} {elapsed:8.1f} s  {in_arrears / elapsed:,.0f} accounts in arrears/s; "
            f"{run.accounts:,} checked in {-(-run.accounts // CHUNK):,} chunks of {CHUNK}; "
            f"SweepRun: accounts {run.accounts:,} opened {run.opened:,} joined {run.joined:,} "
            f"closed {run.closed:,} assigned {run.assigned:,} unassigned {run.unassigned:,}"
        )
        recorder.report(elapsed)
        if label == "sweep":
            # autovacuum is off here: without this the second sweep reads the first's dead rows.
            _maintain(engine, f"VACUUM (ANALYZE) {_SWEPT}")
            print(f"vacuum  VACUUM (ANALYZE) {_SWEPT} between the sweeps")
    (first_s, first), (again_s, again) = timings
    if again.opened:
        print(f"WRONG   the second sweep opened {again.opened:,} cases; it must open none")
    print(
        f"ratio   sweep / full fetch of bills {first_s / fetch_s:6.1f}×   "
        f"again / full fetch {again_s / fetch_s:6.1f}×"
    )
    print(f"load    {_load()} (after the sweeps)")
    print(f"target  ≤ 60 s per 1,000,000 accounts: projected {first_s * 1_000_000 / n:.0f} s")

    # --- EXPLAIN of the sweep's hot queries ------------------------------------------------
    # Found by what they touch, not by their text, which changes as the sweep does.
    swept = recorders[0].merged(recorders[1])
    swept.explain("candidates (the first SELECT of bills)", lambda s: s.verb == "SELECT" and "bills" in s.tables)  # fmt: skip
    swept.explain("per chunk: accounts locked", lambda s: s.tables == ["accounts"] and s.locks)
    swept.explain("per chunk: bills", lambda s: s.tables == ["bills"] and not s.nested)
    swept.explain("per chunk: cases", lambda s: s.tables == ["escalations", "escalation_bills"] and not s.nested)  # fmt: skip
    swept.explain("close_paid_cases", lambda s: s.verb == "UPDATE" and "bills" in s.tables)

    # --- list pulls -----------------------------------------------------------------------
    agent_id, moved = _give_calls(engine, args.list_cases)
    _maintain(engine, "ANALYZE escalations")
    pulls: dict[str, list[tuple[float, float, float, int]]] = defaultdict(list)
    with Recorder(engine) as list_sql:
        for fmt in ("json", *exports.FORMATS):
            for _ in range(RUNS):
                # The ODS writer leaves heaps of cyclic garbage: without this the pull
                # after an ODS export measured twice as slow.
                gc.collect()
                pulls[fmt].append(_pull(db, agent_id, fmt))
    size = len(_list(db, agent_id))
    print(f"list    agent {agent_id} given {moved:,} open call cases; today's list: {size:,} cases")
    totals: dict[str, float] = {}
    for fmt, runs in pulls.items():
        totals[fmt] = statistics.median(p + t + w for p, t, w, _ in runs)
        pull, table, write = (statistics.median(r[i] for r in runs) for i in range(3))
        what = "CaseOut + dump" if fmt == "json" else "export_table + write_table"
        print(
            f"list    {fmt:4} {totals[fmt]:6.2f} s  = agent_list {pull:.2f} + {what} "
            f"{table:.2f} + {write:.2f}   ({runs[0][3] / 1e6:.1f} MB, median of {RUNS})"
        )
    list_sql.report(sum(sum(p + t + w for p, t, w, _ in r) for r in pulls.values()))
    list_sql.explain("list: cases", lambda s: s.tables[:2] == ["escalations", "accounts"])
    list_sql.explain("list: bills", lambda s: s.tables[:2] == ["escalation_bills", "bills"])
    list_sql.explain("list: attempts", lambda s: s.tables[:1] == ["escalation_attempts"])

    print(
        f"escalation: {n:,} accounts · sweep {first_s:.1f} s ({in_arrears:,} in arrears, "
        f"{in_arrears / first_s:,.0f}/s; {first.accounts:,} checked, {first.opened:,} opened) · "
        f"again {again_s:.1f} s ({again.accounts:,} checked) · "
        f"list {size:,} cases "
        + " / ".join(f"{totals[f]:.2f} s {f}" for f in ("json", *exports.FORMATS))
        + f" · {first_s / fetch_s:.1f}× a bare fetch of all bills"
    )


# --- seeding ------------------------------------------------------------------------------


def _area(k: int) -> str:
    return f"A{k:02d}"


def _seed(engine: Engine, n: int, rng: random.Random) -> dict[str, int]:
    """Accounts and their bills by COPY; how many accounts of each kind of the mix."""
    unpaid = bytearray(n)
    mix: Counter[str] = Counter()
    shares = [(sum(s for s, _ in list(MIX.values())[: i + 1]), k) for i, k in enumerate(MIX)]

    def accounts() -> Iterator[str]:
        for i in range(n):
            r = rng.random()
            kind = next((k for edge, k in shares if r < edge), "all paid")
            mix[kind] += 1
            unpaid[i] = MIX[kind][1]
            flags = rng.random()
            vulnerable = "t" if flags < 0.03 else "f"
            paper = "t" if 0.03 <= flags < 0.04 else "f"
            phone = r"\N" if 0.04 <= flags < 0.06 else f"+8869{rng.randrange(10**8):08d}"
            name = rng.choice(SURNAMES) + rng.choice(GIVEN)
            area = rng.randrange(AREAS)
            address = (
                f"臺北市{rng.choice(STREETS)}{rng.randrange(1, 400)}號{rng.randrange(1, 12)}樓"
            )
            cycle = r"\N" if i % 5 == 0 else "2"
            yield (
                f"{10_000_000_000 + i}\t{name}\tzh-TW\t{phone}\t\\N\t[]\t{address}\t{_area(area)}"
                f"\t{vulnerable}\t{paper}\tf\t[]\t{cycle}\t{STAMP}\t{STAMP}\n"
            )

    def bills() -> Iterator[str]:
        for i in range(n):
            account_no = 10_000_000_000 + i
            for j, (period, due) in enumerate(PERIODS):
                owed = j >= len(PERIODS) - unpaid[i]
                paid = r"\N" if owed else f"{due - timedelta(days=6)} 02:00:00+00"
                amount = rng.randrange(150, 4000)
                yield (
                    f"{account_no}-{period}\t{account_no}\t{period}\t{amount}\t{0 if owed else amount}"
                    f"\tregular\t{due}\t{due - timedelta(days=30)} 01:00:00+00\t{paid}\t{STAMP}\t{STAMP}\n"
                )

    raw = engine.raw_connection()
    try:
        conn = raw.driver_connection
        assert conn is not None
        with conn.cursor() as cursor:
            # Rows are consistent by construction: skip the per-row foreign-key
            # triggers (3 million lookups of accounts) as a restore would.
            cursor.execute("SET session_replication_role = replica")
            _copy(
                cursor,
                "COPY accounts (account_no, name, language, phone, email, push_tokens, address, "
                "area, vulnerable, prefers_paper, prefers_voice, opt_outs, billing_cycle_months, "
                "created_at, updated_at) FROM STDIN",
                accounts(),
            )
            _copy(
                cursor,
                "COPY bills (bill_no, account_no, period, amount, paid_amount, kind, due_date, issued_at, "
                "paid_at, "
                "created_at, updated_at) FROM STDIN",
                bills(),
            )
            cursor.execute("SET session_replication_role = DEFAULT")
        conn.commit()
    finally:
        raw.close()
    return {k: mix[k] for k in MIX}


def _copy(cursor: Any, sql: str, lines: Iterator[str], block: int = 50_000) -> None:
    with cursor.copy(sql) as copy:
        buffer: list[str] = []
        for line in lines:
            buffer.append(line)
            if len(buffer) == block:
                copy.write("".join(buffer))
                buffer.clear()
        if buffer:
            copy.write("".join(buffer))


# --- measuring ----------------------------------------------------------------------------


def _maintain(engine: Engine, sql: str) -> None:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text(sql))


def _profiler() -> Any:
    # Only a bench extra: imported when asked for, so the bench runs without it.
    from pyinstrument import Profiler

    return Profiler(interval=0.005)


def _version() -> str:
    """The commit measured, and whether the escalation code differs from it."""
    git = ["git", "-C", str(ROOT)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(
        [*git, "status", "--porcelain", "notifier/escalation"], capture_output=True, text=True
    )
    state = "modified" if dirty.stdout.strip() else "as committed"
    return f"commit {head.stdout.strip() or '?'}, notifier/escalation {state}"


def _server(engine: Engine) -> str:
    with engine.connect() as conn:
        version = conn.execute(sa.text("SHOW server_version")).scalar_one()
        autovacuum = conn.execute(sa.text("SHOW autovacuum")).scalar_one()
        buffers = conn.execute(sa.text("SHOW shared_buffers")).scalar_one()
    return f"PostgreSQL {version}, shared_buffers {buffers}, autovacuum {autovacuum}; {_load()}"


_SWEPT = "escalations, escalation_bills, escalation_changes, sweep_runs, collection_stages"
SETTINGS = (
    "work_mem", "shared_buffers", "effective_cache_size", "random_page_cost",
    "synchronous_commit", "max_parallel_workers_per_gather", "jit", "autovacuum",
)  # fmt: skip
"""The server settings that move this bench's figures, printed beside them."""


def _settings(engine: Engine) -> str:
    with engine.connect() as conn:
        return ", ".join(
            f"{name} {conn.execute(sa.text(f'SHOW {name}')).scalar_one()}" for name in SETTINGS
        )


def _load() -> str:
    """The machine's load: other work skews every figure on a 2-core box."""
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min) {five:.1f} (5 min) on {os.cpu_count()} cores"


def _median(work: Callable[[], object]) -> float:
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _scalars(engine: Engine, *queries: str) -> list[int]:
    with engine.connect() as conn:
        return [conn.execute(sa.text(q)).scalar_one() for q in queries]


def _fetch_all(engine: Engine, query: str) -> int:
    with engine.connect() as conn:
        return len(conn.execute(sa.text(query)).all())


def _progress(started: float) -> Callable[[SweepRun], None]:
    last = [started]

    def report(run: SweepRun) -> None:
        now = time.perf_counter()
        if now - last[0] >= 15:
            last[0] = now
            print(
                f"  ... {now - started:5.0f} s  checked {run.checked:,}/{run.accounts:,}, "
                f"opened {run.opened:,}",
                flush=True,
            )

    return report


@dataclass
class Shape:
    """What a statement does, whatever its text: its verb and the tables it reads or writes."""

    verb: str
    tables: list[str]
    nested: bool
    """It has subqueries or a UNION."""
    locks: bool

    @classmethod
    def of(cls, statement: str) -> Shape:
        verb = statement.split(None, 1)[0].upper()
        tables = re.findall(r"\b(?:FROM|JOIN|INTO|UPDATE) (\w+)", statement)
        if verb not in {"SELECT", "INSERT", "UPDATE", "DELETE"}:
            tables = [statement[len(verb) :].strip()[:60]]  # ANALYZE escalations, ...
        nested = "(SELECT" in statement or " UNION " in statement
        return cls(verb, list(dict.fromkeys(tables)), nested, "FOR UPDATE" in statement)

    def __str__(self) -> str:
        how = " (nested)" if self.nested else ""
        return f"{self.verb} {', '.join(self.tables)}{how}{' FOR UPDATE' if self.locks else ''}"


@dataclass
class _Seen:
    shape: Shape
    statement: str
    parameters: Any
    seconds: float = 0.0
    count: int = 0


class Recorder:
    """The SQL time of each statement an engine runs, by text, and the first of each to EXPLAIN.

    The time is from execute to the rows fetched by the driver (psycopg reads
    a whole result on execute); building ORM objects from them is not in it.
    Expanded IN lists make one text per list length, so texts are grouped by
    shape in the report.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.seen: dict[str, _Seen] = {}
        """By statement text, in the order first run."""

    def __enter__(self) -> Recorder:
        sa.event.listen(self.engine, "before_cursor_execute", self._before)
        sa.event.listen(self.engine, "after_cursor_execute", self._after)
        return self

    def __exit__(self, *exc: object) -> None:
        sa.event.remove(self.engine, "before_cursor_execute", self._before)
        sa.event.remove(self.engine, "after_cursor_execute", self._after)

    def _before(self, conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        conn.info["bench_started"] = time.perf_counter()

    def _after(
        self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        elapsed = time.perf_counter() - conn.info.pop("bench_started")
        seen = self.seen.get(statement)
        if seen is None:
            seen = self.seen[statement] = _Seen(
                Shape.of(statement), statement, None if many else parameters
            )
        seen.seconds += elapsed
        seen.count += 1

    def merged(self, other: Recorder) -> Recorder:
        """Both recorders' statements: this one's first, the same text's times added up."""
        both = Recorder(self.engine)
        for recorder in (self, other):
            for text, seen in recorder.seen.items():
                into = both.seen.setdefault(text, _Seen(seen.shape, text, seen.parameters))
                into.parameters = into.parameters or seen.parameters
                into.seconds += seen.seconds
                into.count += seen.count
        return both

    def report(self, wall: float) -> None:
        by_shape: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
        for seen in self.seen.values():
            by_shape[str(seen.shape)][0] += seen.seconds
            by_shape[str(seen.shape)][1] += seen.count
        total = sum(seconds for seconds, _ in by_shape.values())
        print(
            f"        SQL {total:.1f} s of {wall:.1f} s ({total / wall:.0%}); the rest is Python and commits:"
        )
        for shape, (seconds, count) in sorted(by_shape.items(), key=lambda kv: -kv[1][0])[:8]:
            print(f"          {seconds:7.2f} s  {count:6,.0f}×  {shape}")

    def explain(self, why: str, which: Callable[[Shape], bool]) -> None:
        """EXPLAIN (ANALYZE, BUFFERS) the first statement run that ``which`` picks; one line."""
        found = [s for s in self.seen.values() if which(s.shape) and s.parameters is not None]
        if not found:
            print(f"explain {why}: not run")
            return
        seen = found[0]
        found = [s for s in found if str(s.shape) == str(seen.shape)]
        runs = sum(s.count for s in found)
        seconds = sum(s.seconds for s in found)
        raw = self.engine.raw_connection()
        try:
            conn = raw.driver_connection
            assert conn is not None
            with conn.cursor() as cursor:
                cursor.execute(
                    "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + seen.statement, seen.parameters
                )
                row = cursor.fetchone()
                assert row is not None
                plan = row[0][0]
            conn.rollback()  # EXPLAIN ANALYZE runs an UPDATE for real
        finally:
            raw.close()
        root = plan["Plan"]
        scans = [
            f"{node['Node Type']}"
            + (f" using {node['Index Name']}" if "Index Name" in node else "")
            + f" on {node['Relation Name']}"
            + (f" ×{node['Actual Loops']:,}" if node["Actual Loops"] > 1 else "")
            for node in _nodes(root)
            if "Relation Name" in node
        ]
        top = root["Node Type"] + (f" ({root['Strategy']})" if "Strategy" in root else "")
        print(
            f"explain {why}: {top}, {root['Actual Rows']:,} rows, "
            f"{plan['Execution Time']:.1f} ms (+{plan['Planning Time']:.1f} planning), "
            f"buffers hit {root.get('Shared Hit Blocks', 0):,} read {root.get('Shared Read Blocks', 0):,}"
            f"; {' · '.join(scans)}   [{runs:,}× in the run, {seconds:.2f} s]"
        )


def _nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)


# --- lists --------------------------------------------------------------------------------


def _give_calls(engine: Engine, count: int) -> tuple[int, int]:
    """One caller gets ``count`` open call cases (their area's first); (agent id, cases moved)."""
    with engine.begin() as conn:
        agent_id, area = conn.execute(
            sa.text("SELECT id, area FROM agents WHERE kind = 'caller' ORDER BY id LIMIT 1")
        ).one()
        moved = conn.execute(
            sa.text(
                "UPDATE escalations SET assignee_id = :agent WHERE id IN ("
                " SELECT id FROM escalations WHERE status = 'open' AND kind = 'call'"
                " ORDER BY area = :area DESC, id LIMIT :count)"
            ),
            {"agent": agent_id, "area": area, "count": count},
        ).rowcount
    return agent_id, moved


def _list(db: Database, agent_id: int) -> list[lists.CaseRow]:
    with db.session() as session:
        return lists.agent_list(session, agent_id, "call", today=AS_OF)


def _pull(db: Database, agent_id: int, fmt: str) -> tuple[float, float, float, int]:
    """(agent_list, to table or models, to bytes) seconds and the body's size, as the API does."""
    started = time.perf_counter()
    rows = _list(db, agent_id)
    pulled = time.perf_counter()
    if fmt == "json":
        answer = CaseList(
            kind="call", agent_id=agent_id, day=AS_OF, count=len(rows),
            total=sum(r.total for r in rows), items=[CaseOut.of(r) for r in rows],
        )  # fmt: skip
        tabled = time.perf_counter()
        body = answer.model_dump_json().encode()
    else:
        headers, table = lists.export_table(rows, "call", tz=TZ)
        tabled = time.perf_counter()
        body = exports.write_table(headers, table, fmt, sheet=f"calls {AS_OF}")  # type: ignore[arg-type]
    written = time.perf_counter()
    return pulled - started, tabled - pulled, written - tabled, len(body)


if __name__ == "__main__":
    main()
