"""The two ways in, measured in the same run: the message bus beside POST /v1/events/batch.

    python bench/bus.py [--events 10000] [--batch-size 500]
                        [--broker amqp://guest:guest@127.0.0.1:5672 | redis://127.0.0.1:6379/9]
                        [--database postgresql+psycopg://postgres@127.0.0.1:5432/postgres]

It makes a fresh PostgreSQL database (and, on RabbitMQ, a vhost of its own),
starts `notifier api` and `notifier ingest` (no Celery worker: intake alone is
timed, as in bench/intake.py), then prints:

* batch HTTP: events/s accepted by POST /v1/events/batch, --batch-size per request;
* bus publish: messages/s published by notifier.ingest.producer.Publisher (validated,
  confirmed on RabbitMQ) while the consumer is stopped;
* bus ingest: messages/s the consumer stores draining that backlog (first to
  last commit);
* bus end to end: messages/s from the first publish to the last commit, with
  the consumer running, which is what a producer sees.
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
from typing import Any

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from notifier.ingest.producer import Publisher  # noqa: E402
from notifier.settings import Settings  # noqa: E402
from tests.support import events  # noqa: E402
from tests.support.stack import free_port, http_ok  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument(
        "--database", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    )
    parser.add_argument("--broker", default="amqp://guest:guest@127.0.0.1:5672")
    args = parser.parse_args()

    admin = sa.create_engine(args.database, isolation_level="AUTOCOMMIT")
    name = f"notifier_bench_{secrets.token_hex(3)}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = args.database.rsplit("/", 1)[0] + f"/{name}"
    broker, vhost = args.broker, None
    if broker.startswith("amqp"):
        vhost = f"notifier-bench-{secrets.token_hex(3)}"
        subprocess.run(["rabbitmqctl", "-q", "add_vhost", vhost], check=True)
        subprocess.run(
            ["rabbitmqctl", "-q", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"],
            check=True,
        )
        broker = f"{broker.rstrip('/')}/{vhost}"
    else:
        import redis

        redis.Redis.from_url(broker).flushdb()
    processes: dict[str, subprocess.Popen[bytes]] = {}
    engine = sa.create_engine(url)
    try:
        with TemporaryDirectory() as data:
            env = {
                **os.environ,
                "NOTIFIER_DATA_DIR": data,
                "NOTIFIER_DATABASE_URL": url,
                "NOTIFIER_BROKER_URL": broker,
                "NOTIFIER_LOG_LEVEL": "WARNING",
                # Intake alone: no limit on the one benchmark key.
                "NOTIFIER_API_RATE_LIMITS": "{}",
            }
            notifier = [sys.executable, "-m", "notifier"]
            subprocess.run([*notifier, "migrate"], env=env, check=True, capture_output=True)
            key = subprocess.run(
                [*notifier, "keys", "create", "--role", "producer", "--name", "bench"],
                env=env, check=True, capture_output=True, text=True,
            ).stdout.strip()  # fmt: skip
            port = free_port()
            processes["api"] = subprocess.Popen(
                [*notifier, "api", "--port", str(port), "--host", "127.0.0.1"],
                env=env,
                stderr=subprocess.DEVNULL,
            )
            # Started once so that it declares the exchange and queues, then stopped.
            processes["ingest"] = subprocess.Popen([*notifier, "ingest"], env=env)
            base = f"http://127.0.0.1:{port}"
            _wait(lambda: http_ok(f"{base}/healthz"), 30, "the API")
            client = httpx.Client(
                base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=60
            )
            settings = _settings(env)
            _wait(lambda: _bound(settings), 30, "the consumer to declare the bus")
            _stop(processes.pop("ingest"))

            http_rate = _batch_http(client, args.events, args.batch_size)
            print(
                f"batch HTTP  POST /v1/events/batch  {http_rate:8.0f} events/s    "
                f"({args.events} events, {args.batch_size} per request)"
            )

            backlog = [events.unpaid(events.account()) for _ in range(args.events)]
            started = time.perf_counter()
            with Publisher(settings=settings) as publisher:
                for event in backlog:
                    publisher.publish(event)
            publish_rate = args.events / (time.perf_counter() - started)
            how = "confirmed" if broker.startswith("amqp") else "no confirms on Redis"
            print(f"bus publish (consumer stopped)   {publish_rate:8.0f} messages/s  ({how})")

            processes["ingest"] = subprocess.Popen([*notifier, "ingest"], env=env)
            ids = [e["event_id"] for e in backlog]
            _wait(lambda: _stored(engine, ids) == len(ids), 300, "the backlog")
            ingest_rate = _ingest_rate(engine, ids)
            print(
                f"bus ingest (draining a backlog)  {ingest_rate:8.0f} messages/s  (between batches' commits)"
            )

            flow = [events.unpaid(events.account()) for _ in range(args.events)]
            started_at = time.time()
            with Publisher(settings=settings) as publisher:
                for event in flow:
                    publisher.publish(event)
            ids = [e["event_id"] for e in flow]
            _wait(lambda: _stored(engine, ids) == len(ids), 300, "the flow", interval=0.02)
            e2e_rate = args.events / (time.time() - started_at)
            print(
                f"bus end to end (consumer running){e2e_rate:8.0f} messages/s  (first publish to last commit)"
            )
            print(
                f"ratio  bus ingest / batch HTTP   {ingest_rate / http_rate:8.1f}x;  "
                f"end to end / batch HTTP {e2e_rate / http_rate:.1f}x"
            )
    finally:
        for process in processes.values():
            _stop(process)
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        if vhost:
            subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], check=False)


def _batch_http(client: httpx.Client, count: int, size: int) -> float:
    batch = [events.unpaid(events.account()) for _ in range(count)]
    started = time.perf_counter()
    for i in range(0, count, size):
        answer = client.post("/v1/events/batch", json={"events": batch[i : i + size]})
        assert answer.status_code == 200 and answer.json()["accepted"] == len(
            batch[i : i + size]
        ), answer.text[:500]
    return count / (time.perf_counter() - started)


def _settings(env: dict[str, str]) -> Settings:
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        return Settings()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _bound(settings: Settings) -> bool:
    from notifier.ingest import bus

    try:
        with bus.connect(settings) as conn:
            channel = conn.default_channel
            if conn.transport.driver_type == "amqp":
                channel.queue_declare(queue=settings.ingest.queue, passive=True)
                return True
            return bus.bound(channel, settings.ingest)
    except Exception:
        return False


def _stored(engine: sa.Engine, ids: list[str]) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                sa.text("SELECT count(*) FROM events WHERE event_id = ANY(:ids)"), {"ids": ids}
            ).scalar_one()
        )


def _ingest_rate(engine: sa.Engine, ids: list[str]) -> float:
    """Events stored per second: those of all batches but the last, over the time their
    batches took (each batch's rows carry the time its transaction began)."""
    with engine.connect() as conn:
        first, last = conn.execute(
            sa.text(
                "SELECT min(received_at), max(received_at) FROM events WHERE event_id = ANY(:ids)"
            ),
            {"ids": ids},
        ).one()
        before_last = conn.execute(
            sa.text(
                "SELECT count(*) FROM events WHERE event_id = ANY(:ids) AND received_at < :last"
            ),
            {"ids": ids, "last": last},
        ).scalar_one()
    return float(before_last) / max((last - first).total_seconds(), 1e-3)


def _wait(predicate: Any, timeout: float, what: str, *, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(interval)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


if __name__ == "__main__":
    main()
