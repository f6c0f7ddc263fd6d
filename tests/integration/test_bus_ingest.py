"""Producers on the message bus: a nightly CSV, dead letters, a killed consumer, a broker restart.

Each broker (RabbitMQ: a vhost of its own; Redis: a database of its own) gets
a PostgreSQL database of its own, and `notifier ingest` runs as a real
subprocess on them. No Celery worker runs: the tests count events stored;
the processing the consumer enqueues stays in the broker namespace, which is
deleted afterwards (the embedded test follows one bus event to its deliveries).
"""

from __future__ import annotations

import csv
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from notifier.db import Database
from notifier.ingest import bus as bus_entities
from notifier.ingest import dlq
from notifier.ingest.producer import Publisher
from notifier.migrations import upgrade
from notifier.settings import Settings
from tests.support import events
from tests.support.stack import (
    RABBIT_URL,
    REDIS_URL,
    _claim_redis_db,
    need,
    postgres_database,
    wait_until,
)

BROKERS = ("rabbitmq", "redis")
CSV_HEADER = [
    "event_id", "account_no", "name", "phone", "email", "address", "area", "language",
    "bill_no", "period", "amount", "due_date", "level", "occurred_at",
]  # fmt: skip


@dataclass
class Bus:
    """One broker namespace and one database, and `notifier` commands on them."""

    name: str
    folder: Path
    env: dict[str, str]
    database: Database
    vhost: str | None = None
    redis: Any = None
    logs: list[Path] = field(default_factory=list)

    @property
    def settings(self) -> Settings:
        saved = dict(os.environ)
        os.environ.update(self.env)
        try:
            return Settings()
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def consumer(self, *args: str) -> subprocess.Popen[bytes]:
        """Start `notifier ingest` and wait until it consumes."""
        log = self.folder / f"ingest-{len(self.logs)}.log"
        self.logs.append(log)
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "notifier", "ingest", *args],
                env={**os.environ, **self.env},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_until(
            lambda: b"ingest: consuming" in log.read_bytes() or process.poll() is not None,
            timeout=30,
            what="the consumer to start",
        )
        assert process.poll() is None, log.read_text()
        return process

    def stop(self, process: subprocess.Popen[bytes]) -> str:
        """SIGTERM: it finishes the batch in hand; return its last log line of totals."""
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        text = self.logs[-1].read_text()
        found = re.findall(r"ingest: stopped; (.*)", text)
        assert found, text[-3000:]
        return str(found[-1])

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "notifier", *args],
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check:
            assert done.returncode == 0, f"{args}: {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done

    def stored(self, prefix: str) -> tuple[int, int]:
        """Rows and distinct event_ids whose event_id starts with ``prefix``."""
        with self.database.engine.connect() as conn:
            rows, distinct = conn.execute(
                sa.text(
                    "SELECT count(*), count(DISTINCT event_id) FROM events WHERE event_id LIKE :p"
                ),
                {"p": prefix + "%"},
            ).one()
        return int(rows), int(distinct)

    def waiting(self) -> int:
        """Messages in the ingest queue, ready or held by a consumer."""
        queue = self.settings.ingest.queue
        if self.redis is not None:
            return int(self.redis.llen(queue)) + int(self.redis.hlen(f"{queue}.unacked"))
        listed = subprocess.run(
            ["rabbitmqctl", "-q", "list_queues", "-p", str(self.vhost), "--no-table-headers",
             "name", "messages_ready", "messages_unacknowledged"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        for line in listed.splitlines():
            name, ready, unacked = line.split()
            if name == queue:
                return int(ready) + int(unacked)
        return 0

    def drained(self, timeout: float = 60) -> None:
        wait_until(
            lambda: self.waiting() == 0, timeout=timeout, interval=0.5, what="an empty queue"
        )


@pytest.fixture(scope="module", params=BROKERS)
def bus(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bus]:
    need("PostgreSQL", "127.0.0.1", 5432)
    folder = tmp_path_factory.mktemp(f"bus-{request.param}")
    database_url, drop = postgres_database()
    upgrade(database_url)
    vhost, client = None, None
    if request.param == "rabbitmq":
        need("RabbitMQ", "127.0.0.1", 5672)
        vhost = f"notifier-test-bus-{secrets.token_hex(4)}"
        subprocess.run(["rabbitmqctl", "-q", "add_vhost", vhost], check=True)
        subprocess.run(
            ["rabbitmqctl", "-q", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"],
            check=True,
        )
        broker_url = f"{RABBIT_URL}/{vhost}"
    else:
        need("Redis", "127.0.0.1", 6379)
        client = _claim_redis_db()
        broker_url = f"{REDIS_URL}/{client.connection_pool.connection_kwargs['db']}"
    env = {
        "NOTIFIER_DATA_DIR": str(folder),
        "NOTIFIER_DATABASE_URL": database_url,
        "NOTIFIER_BROKER_URL": broker_url,
        "NOTIFIER_LOG_LEVEL": "INFO",
        "NOTIFIER_PUBLISH_TIMEOUT_SECONDS": "1",
        # Redis: what a killed consumer held comes back after 5 s, not 5 minutes.
        "NOTIFIER_INGEST__VISIBILITY_TIMEOUT": "5",
    }
    found = Bus(request.param, folder, env, Database(database_url), vhost=vhost, redis=client)
    yield found
    found.database.dispose()
    drop()
    if vhost is not None:
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], check=False)
    if client is not None:
        client.flushdb()


def unpaid_bills_csv(
    path: Path, count: int, prefix: str, *, bad_phone: set[int] = frozenset()
) -> None:  # type: ignore[assignment]
    """A nightly export of ``count`` unpaid bills, as the billing system writes it."""
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(CSV_HEADER)
        for i in range(count):
            no = events.new_account_no()
            out.writerow([
                f"{prefix}-{i:06d}", no, "王小明", "+88691234" if i in bad_phone else "0912345678",
                f"c{no}@example.com", "苗栗縣頭份市中正路1號", "toufen", "zh-TW",
                f"B202609-{no}", "2026-09", 1830, "2026-11-20", 1, "2026-11-27T09:00:00+08:00",
            ])  # fmt: skip


def test_a_nightly_csv_is_ingested_once_even_when_published_twice(bus: Bus, tmp_path: Path) -> None:
    prefix = f"nightly-{secrets.token_hex(3)}"
    export = tmp_path / "unpaid.csv"
    unpaid_bills_csv(export, 10_000, prefix)
    consumer = bus.consumer()
    try:
        started = time.monotonic()
        first = bus.cli("events", "publish", str(export))
        assert "10000 valid, 0 repeated in the file, 0 invalid; 10000 published" in first.stdout
        wait_until(lambda: bus.stored(prefix)[0] == 10_000, timeout=60, what="10,000 events")
        seconds = time.monotonic() - started
        print(f"\n[{bus.name}] 10,000 CSV rows published and stored in {seconds:.1f} s "
              f"({10_000 / seconds:.0f} messages/s, CLI start-up included)")  # fmt: skip

        again = bus.cli("events", "publish", str(export))
        assert "10000 published" in again.stdout
        bus.drained()
        assert bus.stored(prefix) == (10_000, 10_000)
    finally:
        totals = bus.stop(consumer)
    assert "20000 messages" in totals and "10000 accepted, 10000 duplicate, 0 dead-lettered" in (
        totals
    ), totals


def test_a_malformed_row_is_dead_lettered_listed_and_replayed_after_the_fix(
    bus: Bus, tmp_path: Path
) -> None:
    prefix = f"dlq-{secrets.token_hex(3)}"
    export = tmp_path / "unpaid.csv"
    unpaid_bills_csv(export, 3, prefix, bad_phone={1})
    consumer = bus.consumer()
    try:
        # The CLI refuses the row itself, naming its line and column.
        local = bus.cli("events", "publish", str(export), check=False)
        assert local.returncode == 1
        assert f"line 3 ({prefix}-000001): phone: not a valid phone number" in local.stdout
        assert "2 valid, 0 repeated in the file, 1 invalid; 2 published" in local.stdout

        # A producer that does not validate (another language, an old library) sends it anyway.
        with export.open(encoding="utf-8") as f:
            row = list(csv.DictReader(f))[1]
        bad = events.unpaid(
            events.account(row["account_no"], phone=row["phone"]), event_id=row["event_id"]
        )
        with Publisher(settings=bus.settings) as raw:
            raw.publish_raw(json.dumps(bad).encode(), message_id=bad["event_id"])
            raw.publish_raw(b"\xffnot json", message_id=None, content_type="text/plain")
        wait_until(lambda: dlq.count(bus.settings) == 2, timeout=30, what="two dead letters")
        assert bus.stored(prefix) == (2, 2)

        listed = bus.cli("events", "dlq", "list").stdout
        assert listed.startswith("2 dead-lettered message(s)"), listed
        assert f"{bad['event_id']}  dead-lettered" in listed
        assert "    account.phone: not a valid phone number" in listed
        assert "    (body): not JSON" in listed
        assert "+88691234" not in listed  # errors never echo the value; --body shows it
        assert dlq.count(bus.settings) == 2, "listing must leave the messages in the queue"

        # The letter as the consumer left it: body unchanged, errors in a header.
        _, letters = dlq.peek(bus.settings)
        letter = next(x for x in letters if x.message_id == bad["event_id"])
        assert json.loads(letter.body) == bad
        assert json.loads(letter.headers[bus_entities.ERRORS_HEADER]) == [
            {"field": "account.phone", "message": "not a valid phone number"}
        ]
        assert letter.headers[bus_entities.REPLAYS_HEADER] == 0
        junk = next(x for x in letters if x.message_id != bad["event_id"])

        # Corrected in the export and replayed: accepted.
        fixed = tmp_path / "fixed.csv"
        text = export.read_text(encoding="utf-8").splitlines()
        fixed.write_text(
            "\n".join([text[0], text[2].replace("+88691234", "0912345679")]) + "\n",
            encoding="utf-8",
        )
        replayed = bus.cli("events", "dlq", "replay", "--id", bad["event_id"], "--fix", str(fixed))
        assert f"replayed {bad['event_id']} (corrected)" in replayed.stdout
        wait_until(lambda: bus.stored(prefix) == (3, 3), timeout=30, what="the corrected event")
        with bus.database.engine.connect() as conn:
            payload = conn.execute(
                sa.text("SELECT payload FROM events WHERE event_id = :id"), {"id": bad["event_id"]}
            ).scalar_one()
        assert (payload if isinstance(payload, dict) else json.loads(payload))["account"][
            "phone"
        ] == "+886912345679"

        # Replayed as it is, the junk comes back, counted; then it is dropped.
        bus.cli("events", "dlq", "replay", "--id", junk.message_id)
        wait_until(
            lambda: [x.replays for x in dlq.peek(bus.settings)[1]] == [1],
            timeout=30,
            what="the junk back in the DLQ, replayed once",
        )
        dropped = bus.cli("events", "dlq", "drop", "--id", junk.message_id)
        assert f"dropped {junk.message_id}" in dropped.stdout
        assert dlq.count(bus.settings) == 0
    finally:
        totals = bus.stop(consumer)
    assert "3 accepted, 0 duplicate, 3 dead-lettered" in totals, totals  # the junk twice


def _publish_in_background(
    bus: Bus,
    batch: list[dict[str, Any]],
    published: list[int],
    failed: list[BaseException],
    *,
    pause: float = 0,
) -> threading.Thread:
    def run() -> None:
        try:
            with Publisher(settings=bus.settings) as publisher:
                for event in batch:
                    publisher.publish(event)
                    published[0] += 1
                    if pause:
                        time.sleep(pause)
        except BaseException as exc:  # reported by the test
            failed.append(exc)

    thread = threading.Thread(target=run, name="publisher")
    thread.start()
    return thread


def test_a_consumer_killed_mid_batch_loses_nothing_and_duplicates_nothing(bus: Bus) -> None:
    prefix = f"kill-{secrets.token_hex(3)}"
    batch = [events.unpaid(events.account(), event_id=f"{prefix}-{i:05d}") for i in range(5_000)]
    published, failed = [0], []
    consumer = bus.consumer("--batch-size", "100")
    thread = _publish_in_background(bus, batch, published, failed)
    try:
        wait_until(
            lambda: bus.stored(prefix)[0] >= 500, timeout=60, interval=0.02, what="500 stored"
        )
        os.killpg(consumer.pid, signal.SIGKILL)  # mid-batch, while messages flow
        consumer.wait(timeout=30)
        at_kill = bus.stored(prefix)[0]
        thread.join(timeout=120)
        assert not failed, failed
        consumer = bus.consumer()
        wait_until(lambda: bus.stored(prefix)[0] == 5_000, timeout=90, what="all 5,000 events")
        bus.drained()
    finally:
        thread.join(timeout=120)
        totals = bus.stop(consumer)
    assert bus.stored(prefix) == (5_000, 5_000)
    print(f"\n[{bus.name}] killed at {at_kill} stored; after the restart: {totals}")


# RabbitMQ only: the Redis here keeps no data across a restart (no persistence
# configured), so a restart there is a flush, not a fault to come through.
@pytest.mark.machine  # RabbitMQ itself stops: every other stack on the machine would lose it
@pytest.mark.parametrize("bus", ["rabbitmq"], indirect=True)
def test_the_broker_restarted_mid_publish_loses_nothing(bus: Bus) -> None:
    prefix = f"restart-{secrets.token_hex(3)}"
    batch = [events.unpaid(events.account(), event_id=f"{prefix}-{i:05d}") for i in range(3_000)]
    published, failed = [0], []
    consumer = bus.consumer()
    # Paced (about 400/s), so that the broker stops while it publishes.
    thread = _publish_in_background(bus, batch, published, failed, pause=0.002)
    try:
        wait_until(lambda: published[0] >= 500, timeout=60, interval=0.01, what="500 sent")
        subprocess.run(["rabbitmqctl", "-q", "stop_app"], check=True)
        try:
            stopped_at = published[0]
            time.sleep(1)
        finally:
            subprocess.run(["rabbitmqctl", "-q", "start_app"], check=True)
            subprocess.run(["rabbitmqctl", "-q", "await_startup"], check=True)
        thread.join(timeout=120)
        assert not thread.is_alive() and not failed, failed
        assert stopped_at < 3_000, "the publisher finished before the broker stopped"
        wait_until(lambda: bus.stored(prefix)[0] == 3_000, timeout=90, what="all 3,000 events")
        bus.drained()
    finally:
        thread.join(timeout=120)
        totals = bus.stop(consumer)
    assert bus.stored(prefix) == (3_000, 3_000)
    print(f"\n[{bus.name}] broker stopped after {stopped_at} sent; consumer: {totals}")


def test_a_producer_account_needs_only_write_on_the_exchange(bus: Bus) -> None:
    prefix = f"perm-{secrets.token_hex(3)}"
    user, password = f"billing-{secrets.token_hex(3)}", secrets.token_hex(8)
    settings = bus.settings
    consumer = bus.consumer()  # it declares everything
    try:
        if bus.name == "rabbitmq":
            subprocess.run(["rabbitmqctl", "-q", "add_user", user, password], check=True)
            subprocess.run(
                ["rabbitmqctl", "-q", "set_permissions", "-p", str(bus.vhost), user,
                 "^$", r"^notifier\.events$", "^$"],
                check=True,
            )  # fmt: skip
            url = f"amqp://{user}:{password}@127.0.0.1:5672/{bus.vhost}"
        else:
            queue, exchange = settings.ingest.queue, settings.ingest.exchange
            bus.redis.execute_command(
                "ACL", "SETUSER", user, "on", f">{password}", "resetkeys", "resetchannels",
                f"~{queue}", f"~_kombu.binding.{exchange}",
                "-@all", "+ping", "+select", "+lpush", "+smembers",
            )  # fmt: skip
            db = bus.redis.connection_pool.connection_kwargs["db"]
            url = f"redis://{user}:{password}@127.0.0.1:6379/{db}"
        try:
            with Publisher(url, settings=settings) as publisher:
                for i in range(3):
                    publisher.publish(events.unpaid(events.account(), event_id=f"{prefix}-{i}"))
            wait_until(lambda: bus.stored(prefix) == (3, 3), timeout=30, what="3 events")
            # ...and nothing else: it cannot read the queue.
            from kombu.connection import Connection

            with Connection(url) as conn, pytest.raises(Exception):  # noqa: B017
                conn.default_channel.basic_get(settings.ingest.queue)
        finally:
            if bus.name == "rabbitmq":
                subprocess.run(["rabbitmqctl", "-q", "delete_user", user], check=False)
            else:
                bus.redis.execute_command("ACL", "DELUSER", user)
    finally:
        bus.stop(consumer)
