"""What the per-key rate limit costs on POST /v1/events, run by hand.

    python bench/api_limits.py [--requests 2000] [--clients 8] [--rounds 3]
                               [--database postgresql+psycopg://postgres@127.0.0.1:5432/postgres]
                               [--redis redis://127.0.0.1:6379/9]

It makes a fresh PostgreSQL database and, in the same run, starts `notifier
api` three times on it: with no API rate limit, with the limit kept in the
database (a row per key, updated under a lock), and with the limit in Redis.
Each time --clients threads post --requests single events with one producer
key, under a limit far above what they reach, and it prints events/s side by
side; then the same on SQLite (the embedded mode), without a limit and with
it in the database. The configurations take turns for --rounds rounds and
the median of each is printed, so that a busy machine slows all of them alike.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from tempfile import TemporaryDirectory

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support import events  # noqa: E402
from tests.support.stack import free_port, http_ok  # noqa: E402

HIGH = json.dumps({"default": {"per_second": 1_000_000, "burst": 1_000_000}})


def run(env: dict[str, str], *, requests: int, clients: int) -> float:
    """Events/s accepted by a fresh `notifier api` process with ``env``."""
    notifier = [sys.executable, "-m", "notifier"]
    subprocess.run([*notifier, "migrate"], env=env, check=True, capture_output=True)
    key = subprocess.run(
        [*notifier, "keys", "create", "--role", "producer", "--name", "bench"],
        env=env, check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    port = free_port()
    api = subprocess.Popen(
        [*notifier, "api", "--port", str(port), "--host", "127.0.0.1"],
        env=env,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while not http_ok(f"{base}/healthz"):
            if time.monotonic() > deadline:
                raise SystemExit("the API did not start")
            time.sleep(0.2)
        posts = [events.unpaid(events.account()) for _ in range(requests)]
        with httpx.Client(
            base_url=base,
            headers={"Authorization": f"Bearer {key}"},
            timeout=60,
            limits=httpx.Limits(max_connections=clients),
        ) as client:
            client.post("/v1/events", json=events.unpaid(events.account()))  # warm up
            started = time.perf_counter()
            with ThreadPoolExecutor(clients) as pool:
                codes = list(
                    pool.map(lambda e: client.post("/v1/events", json=e).status_code, posts)
                )
            rate = requests / (time.perf_counter() - started)
        assert set(codes) == {202}, sorted(set(codes))
        return rate
    finally:
        api.terminate()
        api.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=2_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument(
        "--database", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    )
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/9")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    import redis

    admin = sa.create_engine(args.database, isolation_level="AUTOCOMMIT")
    configurations = (
        ("PostgreSQL, no limit", "pg", "{}", ""),
        ("PostgreSQL, limit in the database", "pg", HIGH, ""),
        ("PostgreSQL, limit in Redis", "pg", HIGH, args.redis),
        ("SQLite, no limit", "sqlite", "{}", ""),
        ("SQLite, limit in the database", "sqlite", HIGH, ""),
    )
    rates: dict[str, list[float]] = {label: [] for label, *_ in configurations}
    for _round, (label, database, limits, limiter) in itertools.product(
        range(args.rounds), configurations
    ):
        redis.Redis.from_url(args.redis).flushdb()
        with TemporaryDirectory() as data:
            name = f"notifier_bench_{secrets.token_hex(3)}"
            if database == "pg":
                with admin.connect() as conn:
                    conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
                url = args.database.rsplit("/", 1)[0] + f"/{name}"
            else:
                url = f"sqlite:///{data}/notifier.db"
            env = {
                **os.environ,
                "NOTIFIER_DATA_DIR": data,
                "NOTIFIER_DATABASE_URL": url,
                # The filesystem broker in every run (no worker takes the tasks), so
                # that the limiter is in the database unless NOTIFIER_RATE_LIMIT_URL says Redis.
                "NOTIFIER_BROKER_URL": "",
                "NOTIFIER_API_RATE_LIMITS": limits,
                "NOTIFIER_RATE_LIMIT_URL": limiter,
                "NOTIFIER_LOG_LEVEL": "WARNING",
            }
            try:
                rate = run(env, requests=args.requests, clients=args.clients)
            finally:
                if database == "pg":
                    with admin.connect() as conn:
                        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        rates[label].append(rate)
    redis.Redis.from_url(args.redis).flushdb()
    for label, seen in rates.items():
        runs = " ".join(f"{r:.0f}" for r in seen)
        print(f"{label:36} {statistics.median(seen):6.0f} events/s  (runs: {runs})")


if __name__ == "__main__":
    main()
