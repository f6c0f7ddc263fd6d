"""How long the ops pages take over a large delivery log, on PostgreSQL.

    python bench/ops_log.py [--deliveries 1000000] [--database URL] [--keep]

Seeds a fresh PostgreSQL database with COPY (accounts, events, notifications,
deliveries with a realistic mix of channels and statuses, one timeline entry
each), starts the API in this process on a free port, signs in as an ops
user and times, over real HTTP, median of 5 each: the log's first page, a
page filtered by status, by channel, by an account number, by the first
digits of one, a page 200 pages deep (keyset), a notification's page and
the dashboard. The baseline, measured in the same run, is the health check
(`/healthz`): the cost of a request that touches nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import secrets
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
import uvicorn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from notifier.app import create_app  # noqa: E402
from notifier.migrations import upgrade  # noqa: E402
from notifier.runtime import Runtime  # noqa: E402
from notifier.settings import Settings  # noqa: E402
from notifier.users import service as users  # noqa: E402
from tests.support.stack import free_port, wait_until  # noqa: E402
from tests.support.web import PASSWORD, csrf_token  # noqa: E402

ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
CHANNELS = (("sms", 0.35), ("push", 0.3), ("email", 0.3), ("voice", 0.03), ("postcard", 0.02))
STATUSES = (("delivered", 0.82), ("sent", 0.1), ("failed", 0.04), ("undelivered", 0.02),
            ("cancelled", 0.015), ("queued", 0.005))  # fmt: skip
ERRORS = ("21211: invalid number", "UNREGISTERED: token not registered", "550: mailbox unavailable")


def pick(weighted: tuple[tuple[str, float], ...], r: float) -> str:
    for value, weight in weighted:
        if r < weight:
            return value
        r -= weight
    return weighted[-1][0]


def copy(conn: Any, table: str, columns: str, lines: Iterator[str]) -> int:
    n = 0
    with conn.cursor() as cur, cur.copy(f"COPY {table} ({columns}) FROM STDIN") as out:
        block: list[str] = []
        for line in lines:
            block.append(line)
            n += 1
            if len(block) >= 50_000:
                out.write("".join(block))
                block.clear()
        out.write("".join(block))
    return n


def seed(url: str, deliveries: int) -> dict[str, int]:
    """Accounts, events, notifications, deliveries and a timeline entry each, over 30 days."""
    rng = random.Random(7)
    now = datetime.now(UTC)
    accounts = max(1, deliveries // 5)
    notifications = deliveries // 2  # two channels per notice, on average
    engine = sa.create_engine(url)
    raw = engine.raw_connection()
    try:
        conn = raw.driver_connection
        stamp = now.isoformat()

        def account_lines() -> Iterator[str]:
            for i in range(accounts):
                yield f"{i:011d}\t王小明\tzh-TW\t+886912{i % 1000000:06d}\t[]\t[]\tarea-{i % 30}\tf\tf\tf\t{stamp}\t{stamp}\n"

        copy(conn, "accounts", "account_no, name, language, phone, push_tokens, opt_outs, area, "
             "vulnerable, prefers_paper, prefers_voice, created_at, updated_at", account_lines())  # fmt: skip
        payload = json.dumps({"type": "bill.unpaid"})
        times = [now - timedelta(seconds=rng.uniform(0, 30 * 86400)) for _ in range(notifications)]
        times.sort()

        def event_lines() -> Iterator[str]:
            for n, at in enumerate(times, start=1):
                yield (f"{n}\tbench-{n}\tbill.unpaid\t{at.isoformat()}\t{n % accounts:011d}\t"
                       f"{payload}\t{at.isoformat()}\tprocessed\t0\n")  # fmt: skip

        copy(conn, "events", "id, event_id, type, occurred_at, account_no, payload, received_at, "
             "status, attempts", event_lines())  # fmt: skip

        def notification_lines() -> Iterator[str]:
            for n, at in enumerate(times, start=1):
                yield (
                    f"{n}\t{n}\t{n % accounts:011d}\tbill.unpaid\t1\tk{n}\tactive\t{at.isoformat()}\n"
                )

        copy(conn, "notifications", "id, event_pk, account_no, type, level, dedup_key, status, "
             "created_at", notification_lines())  # fmt: skip

        def delivery_lines() -> Iterator[str]:
            for d in range(1, deliveries + 1):
                n = min(notifications, (d + 1) // 2)
                at = times[n - 1].isoformat()
                channel = pick(CHANNELS, rng.random())
                status = pick(STATUSES, rng.random())
                error = rng.choice(ERRORS) if status in {"failed", "undelivered"} else "\\N"
                provider_id = f"SM{secrets.token_hex(8)}"
                yield (f"{d}\t{n}\t{n % accounts:011d}\tbill.unpaid\t{channel}\t{status}\t[]\t"
                       f"+886 912 ***678\tzh-TW\tf\t{{\"body\": \"...\"}}\tsandbox\t{provider_id}\t1\t"
                       f"{error}\t{at}\t{at}\t{at}\n")  # fmt: skip

        copy(conn, "deliveries", "id, notification_id, account_no, event_type, channel, status, "
             "recipients, address_masked, language, language_fallback, content, provider, "
             "provider_id, attempts, last_error, available_at, created_at, updated_at",
             delivery_lines())  # fmt: skip

        def change_lines() -> Iterator[str]:
            for d in range(1, deliveries + 1):
                yield f"{d}\tqueued\t{{}}\t{stamp}\n"

        copy(conn, "delivery_changes", "delivery_id, status, detail, at", change_lines())
        with conn.cursor() as cur:
            for table in ("events", "notifications", "deliveries"):
                cur.execute(f"SELECT setval('{table}_id_seq', (SELECT max(id) FROM {table}))")
        conn.commit()
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("VACUUM ANALYZE")
    finally:
        raw.close()
        engine.dispose()
    return {"accounts": accounts, "notifications": notifications, "deliveries": deliveries}


def timed(client: httpx.Client, path: str, params: dict[str, Any] | None = None) -> float:
    """Median seconds of 5 requests (after one warm-up)."""
    client.get(path, params=params).raise_for_status()
    runs = []
    for _ in range(5):
        start = time.perf_counter()
        answer = client.get(path, params=params)
        runs.append(time.perf_counter() - start)
        answer.raise_for_status()
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deliveries", type=int, default=1_000_000)
    parser.add_argument("--database", help="an empty PostgreSQL database (default: a new one)")
    parser.add_argument("--keep", action="store_true", help="keep the database made for the run")
    args = parser.parse_args()

    name = f"notifier_bench_{secrets.token_hex(3)}"
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    url = args.database
    if url is None:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        upgrade(url)
        start = time.perf_counter()
        counts = seed(url, args.deliveries)
        print(f"seed    {counts} in {time.perf_counter() - start:.1f} s")
        run(url, args.deliveries)
    finally:
        if args.database is None and not args.keep:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def run(url: str, deliveries: int) -> None:
    port = free_port()
    settings = Settings(database_url=url, data_dir=Path("/tmp") / "notifier-ops-bench")
    runtime = Runtime(settings)
    with runtime.db.session() as session:
        user = users.create_user(
            session, username=f"bench-{secrets.token_hex(3)}", password=PASSWORD, role="ops",
            actor="bench",
        )  # fmt: skip
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, runtime=runtime), port=port, log_level="warning", access_log=False
        )
    )
    logging.getLogger("notifier.access").disabled = True  # a line per request would time the log
    logging.getLogger("httpx").setLevel(logging.WARNING)
    threading.Thread(target=server.run, daemon=True).start()
    wait_until(lambda: server.started, timeout=30, what="the API")
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
        page = client.get("/sign-in")
        signed = client.post(
            "/sign-in",
            data={"username": user.username, "password": PASSWORD, "next": "",
                  "csrf_token": csrf_token(page.text)},
        )  # fmt: skip
        assert signed.status_code == 303, signed.text
        account = f"{12345:011d}"
        deep_before = deliveries - 200 * 50
        figures = {
            "health (baseline)": timed(client, "/healthz"),
            "log, first page": timed(client, "/ops"),
            "log, status=failed": timed(client, "/ops", {"status": "failed"}),
            "log, channel=voice": timed(client, "/ops", {"channel": "voice"}),
            "log, one account": timed(client, "/ops", {"q": account}),
            "log, account prefix": timed(client, "/ops", {"q": account[:7]}),
            "log, 200 pages deep": timed(client, "/ops", {"before": deep_before}),
            "log, failed + last 7 days": timed(
                client,
                "/ops",
                {
                    "status": "failed",
                    "since": (datetime.now(UTC) - timedelta(days=7)).date().isoformat(),
                },
            ),
            "a notification's page": timed(client, "/ops/notifications/4242"),
            "dashboard": timed(client, "/ops/dashboard"),
        }
    server.should_exit = True
    runtime.close()
    base = figures["health (baseline)"]
    for what, seconds in figures.items():
        print(f"{what:28} {seconds * 1000:8.1f} ms   {seconds / base:6.1f}× health")
    print(
        f"ops log: {deliveries:,} deliveries · first page {figures['log, first page'] * 1000:.0f} ms"
        f" · filtered {figures['log, status=failed'] * 1000:.0f} ms (status)"
        f" / {figures['log, one account'] * 1000:.0f} ms (account)"
        f" · deep {figures['log, 200 pages deep'] * 1000:.0f} ms"
        f" · dashboard {figures['dashboard'] * 1000:.0f} ms · health {base * 1000:.1f} ms"
    )


if __name__ == "__main__":
    main()
