"""Intake and end-to-end benchmark, run by hand against real servers.

    python bench/intake.py [--events 10000] [--single 1000] [--batch-size 500]
                           [--database postgresql+psycopg://postgres@127.0.0.1:5432/postgres]
                           [--broker redis://127.0.0.1:6379/9] [--concurrency 4]

It makes a fresh PostgreSQL database, starts `notifier api` (uvicorn) and a
`notifier worker` on the broker, then measures in the same run:

* single: events/s accepted by POST /v1/events, one request at a time;
* batch: events/s accepted by POST /v1/events/batch in batches of --batch-size
  (the ratio batch/single is the figure to compare across machines);
* end to end: seconds from the first batch accepted to the last sandbox
  delivery final, for the --events batch events (push, SMS and email each).
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support import events  # noqa: E402
from tests.support.stack import free_port, http_ok  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--single", type=int, default=1_000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument(
        "--database", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    )
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/9")
    parser.add_argument("--concurrency", type=int, default=4, help="worker processes")
    args = parser.parse_args()

    admin = sa.create_engine(args.database, isolation_level="AUTOCOMMIT")
    name = f"notifier_bench_{secrets.token_hex(3)}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = args.database.rsplit("/", 1)[0] + f"/{name}"
    processes: list[subprocess.Popen[bytes]] = []
    try:
        with TemporaryDirectory() as data:
            env = {
                **os.environ,
                "NOTIFIER_DATA_DIR": data,
                "NOTIFIER_DATABASE_URL": url,
                "NOTIFIER_BROKER_URL": args.broker,
                "NOTIFIER_QUIET_HOURS": "off",
                "NOTIFIER_LOG_LEVEL": "WARNING",
            }
            if args.broker.startswith("redis"):
                import redis

                redis.Redis.from_url(args.broker).flushdb()
            notifier = [sys.executable, "-m", "notifier"]
            subprocess.run([*notifier, "migrate"], env=env, check=True, capture_output=True)
            key = subprocess.run(
                [*notifier, "keys", "create", "--role", "producer", "--name", "bench"],
                env=env, check=True, capture_output=True, text=True,
            ).stdout.strip()  # fmt: skip
            port = free_port()
            processes.append(
                subprocess.Popen(
                    [*notifier, "api", "--port", str(port), "--host", "127.0.0.1"],
                    env=env,
                    stderr=subprocess.DEVNULL,
                )
            )
            base = f"http://127.0.0.1:{port}"
            _wait(lambda: http_ok(f"{base}/healthz"), 30)
            client = httpx.Client(
                base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=60
            )

            # Single events, measured before any worker runs, so intake alone is timed.
            singles = [events.unpaid(events.account()) for _ in range(args.single)]
            started = time.perf_counter()
            for event in singles:
                assert client.post("/v1/events", json=event).status_code == 202
            single_rate = args.single / (time.perf_counter() - started)

            batch = [events.unpaid(events.account()) for _ in range(args.events)]
            first_accept = time.time()
            started = time.perf_counter()
            for i in range(0, len(batch), args.batch_size):
                answer = client.post(
                    "/v1/events/batch", json={"events": batch[i : i + args.batch_size]}
                )
                assert answer.status_code == 200 and answer.json()["invalid"] == 0, answer.text[
                    :500
                ]
            batch_rate = args.events / (time.perf_counter() - started)
            print(
                f"single  POST /v1/events        {single_rate:8.0f} events/s  ({args.single} events)"
            )
            print(
                f"batch   POST /v1/events/batch  {batch_rate:8.0f} events/s  ({args.events} events, {args.batch_size} per request)"
            )
            print(f"ratio   batch / single         {batch_rate / single_rate:8.1f}x")

            processes.append(
                subprocess.Popen(
                    [
                        *notifier,
                        "worker",
                        "-c",
                        str(args.concurrency),
                        "--loglevel",
                        "WARNING",
                        "--without-gossip",
                        "--without-mingle",
                        "--without-heartbeat",
                    ],
                    env=env,
                    stderr=subprocess.DEVNULL,
                )
            )
            engine = sa.create_engine(url)
            expected = (args.events + args.single) * 3
            pending_sql = sa.text(
                "SELECT count(*) FILTER (WHERE status IN ('queued','sending','deferred')), count(*), "
                "max(updated_at) FROM deliveries"
            )
            last_report = 0.0
            while True:
                with engine.connect() as conn:
                    pending, total, last = conn.execute(pending_sql).one()
                if total >= expected and pending == 0:
                    break
                if time.time() - last_report > 5:
                    print(f"  ... {total - pending}/{expected} deliveries final", flush=True)
                    last_report = time.time()
                time.sleep(0.5)
            elapsed = last.timestamp() - first_accept
            print(
                f"e2e     {args.events + args.single} events → {expected} sandbox deliveries final in "
                f"{elapsed:.1f} s from the first batch accepted ({expected / elapsed:.0f} deliveries/s, "
                f"{args.concurrency} worker processes)"
            )
            engine.dispose()
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _wait(predicate: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit("the API did not start")
        time.sleep(0.2)


if __name__ == "__main__":
    main()
