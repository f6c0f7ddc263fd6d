"""A real notifier stack for scenario tests: database, broker, worker process, API.

Each stack gets its own database (a fresh SQLite file or PostgreSQL database),
its own broker namespace (a RabbitMQ vhost, a Redis db number, a folder) and a
real ``celery worker`` subprocess with the scheduler inside; the API runs in
the test process (uvicorn in a thread, on a real port, so that provider
simulators can call back) on the same settings.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import uvicorn
import yaml
from sqlmodel import Session, col, select

from notifier.app import create_app
from notifier.auth import keys
from notifier.deliveries.models import FINAL_STATUSES, Delivery, DeliveryChange
from notifier.migrations import upgrade
from notifier.queues.celery_config import ALL_QUEUES
from notifier.runtime import Runtime
from notifier.settings import PROJECT_ROOT, Settings

T = TypeVar("T")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
PG_ADMIN_URL = os.environ.get(
    "NOTIFIER_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
RABBIT_URL = os.environ.get("NOTIFIER_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672")
REDIS_URL = os.environ.get("NOTIFIER_TEST_REDIS", "redis://127.0.0.1:6379")

STACKS = ("sqlite-filesystem", "postgres-rabbitmq", "postgres-redis")
REAL_BROKER_STACKS = ("postgres-rabbitmq", "postgres-redis")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_ok(url: str) -> bool:
    """Whether ``url`` answers 200 now."""
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def answers(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether something listens on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def need(service: str, host: str, port: int) -> None:
    """Skip (on a laptop) or fail (under CI=true) when a service does not answer."""
    if answers(host, port):
        return
    reason = f"{service} does not answer on {host}:{port}"
    if IN_CI:
        pytest.fail(f"{reason}; CI must exercise it (.ci/run starts it)")
    print(f"\nSKIP: {reason}", file=sys.stderr)
    pytest.skip(reason)


def wait_until(
    predicate: Callable[[], T], *, timeout: float, interval: float = 0.2, what: str
) -> T:
    """Poll until ``predicate`` returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timing failure: timed out after {timeout:.0f}s waiting for {what}"
            )
        time.sleep(interval)


def fast_retry_policy(folder: Path) -> Path:
    """The shipped policy with short retry delays, so retries take seconds in tests."""
    policy = yaml.safe_load((PROJECT_ROOT / "config" / "policy.yaml").read_text())
    policy["retry"] = {"max_attempts": 4, "base_seconds": 1, "max_seconds": 2}
    # The copy lives elsewhere: its calendar file is the shipped one, named in full.
    calendar_file = policy["escalation"].get("calendar_file")
    if calendar_file:
        policy["escalation"]["calendar_file"] = str(PROJECT_ROOT / "config" / calendar_file)
    path = folder / "policy.yaml"
    path.write_text(yaml.safe_dump(policy, allow_unicode=True))
    return path


@dataclass
class Stack:
    name: str
    folder: Path
    database_url: str
    broker_url: str
    cleanups: list[Callable[[], None]] = field(default_factory=list)
    worker: subprocess.Popen[bytes] | None = None
    worker_log: Path | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    worker_cpus: list[int] | None = None
    """Pin the worker and its pool to these cores (tests/support/slowdown.py); None: anywhere."""

    def __post_init__(self) -> None:
        port = free_port()
        self.base_url = f"http://127.0.0.1:{port}"
        self.env = {
            "NOTIFIER_DATA_DIR": str(self.folder),
            "NOTIFIER_DATABASE_URL": self.database_url,
            "NOTIFIER_BROKER_URL": self.broker_url,
            "NOTIFIER_POLICY_FILE": str(fast_retry_policy(self.folder)),
            # Tests must not depend on the hour CI runs at; one test turns them on.
            "NOTIFIER_QUIET_HOURS": "off",
            "NOTIFIER_LEASE_SECONDS": "10",
            "NOTIFIER_REDISPATCH_AFTER_SECONDS": "3",
            "NOTIFIER_RECONCILE_INTERVAL_SECONDS": "1",
            "NOTIFIER_PUBLISH_TIMEOUT_SECONDS": "1",
            # Producer callbacks retried after ½–1 s, then 1–2 s, …
            "NOTIFIER_WEBHOOK_RETRY_BASE_SECONDS": "1",
            "NOTIFIER_PUBLIC_URL": self.base_url,
            # The tests' callback receivers listen on 127.0.0.1, which a deployment refuses.
            "NOTIFIER_CALLBACK_ALLOW_PRIVATE": "true",
            # The recording sandboxes, whose magic recipients script failures;
            # postcards still go through the print batch.
            "NOTIFIER_PROVIDERS": json.dumps(
                dict.fromkeys(("sms", "voice", "email", "push"), "sandbox")
            ),
            # Tests call faster than any real caller: each key's rate is still counted
            # (on the stack's limiter), but far above what a test reaches. The limit
            # itself is tested on an app of its own (tests/integration/test_api_limits.py).
            "NOTIFIER_API_RATE_LIMITS": json.dumps(
                {"default": {"per_second": 100_000, "burst": 100_000}}
            ),
            # Every sign-in of the tests comes from 127.0.0.1: the per-client throttle
            # would soon hold them all up. Its own test sets it back to the default.
            "NOTIFIER_LOGIN_THROTTLE_FAILURES": "100000",
            **self.extra_env,
        }
        upgrade(self.database_url)
        self.settings = self._settings(self.env)
        self.runtime = Runtime(self.settings)
        self.api = uvicorn.Server(
            uvicorn.Config(
                create_app(self.settings, runtime=self.runtime),
                host="127.0.0.1",
                port=port,
                log_config=None,
                proxy_headers=False,  # as `notifier api` runs it
            )
        )
        threading.Thread(target=self.api.run, name=f"api-{self.name}", daemon=True).start()
        wait_until(lambda: self.api.started, timeout=30, what=f"{self.name} API")
        self.client = httpx.Client(base_url=self.base_url, timeout=30)
        with self.runtime.db.session() as session:
            _, producer = keys.create_key(session, role="producer", name="test producer")
            _, ops = keys.create_key(session, role="ops", name="test ops")
        self.producer = {"Authorization": f"Bearer {producer}"}
        self.ops = {"Authorization": f"Bearer {ops}"}

    @staticmethod
    def _settings(env: dict[str, str]) -> Settings:
        # Through the environment, exactly as the worker process reads it.
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            return Settings()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    # -- the worker process -------------------------------------------------

    def start_worker(self, **extra_env: str) -> None:
        """Start a real ``celery worker`` (prefork, with beat) and wait until it is ready."""
        assert self.worker is None, "a worker is already running"
        self.worker_log = self.folder / f"worker-{uuid.uuid4().hex[:6]}.log"
        env = {**os.environ, **self.env, **extra_env, "NOTIFIER_LOG_LEVEL": "INFO"}
        # Through the `notifier worker` command, as deployments run it; it execs celery.
        argv = [
            sys.executable, "-m", "notifier", "worker",
            "-Q", ",".join(ALL_QUEUES), "--pool", "prefork", "--concurrency", "2",
            "--beat", "--schedule", str(self.folder / "beat-schedule"),
            "--without-gossip", "--without-mingle", "--without-heartbeat",
            "--hostname", f"{self.name}-{uuid.uuid4().hex[:6]}@%h",
        ]  # fmt: skip
        if self.worker_cpus:
            # taskset execs the worker: the pid is the worker's, and the pool inherits the pinning.
            argv = ["taskset", "-c", ",".join(map(str, self.worker_cpus)), *argv]
        with self.worker_log.open("wb") as log:
            self.worker = subprocess.Popen(
                argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        wait_until(
            lambda: b"ready." in self.worker_log.read_bytes() or self._worker_died(),  # type: ignore[union-attr]
            timeout=60,
            what=f"{self.name} worker to be ready",
        )
        self._worker_died()

    def _worker_died(self) -> bool:
        if self.worker is not None and self.worker.poll() is not None:
            raise AssertionError(f"worker exited: {self.worker_log_tail()}")
        return False

    def worker_log_tail(self, lines: int = 40) -> str:
        if self.worker_log is None or not self.worker_log.exists():
            return "(no log)"
        return "\n".join(self.worker_log.read_text(errors="replace").splitlines()[-lines:])

    def stop_worker(self) -> None:
        """Warm shutdown: SIGTERM to the main process only (see FIELD-NOTES)."""
        if self.worker is None:
            return
        self.worker.send_signal(signal.SIGTERM)
        try:
            self.worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill_worker()
        self.worker = None

    def kill_worker(self) -> None:
        """SIGKILL the worker and its pool, as a crashed host would."""
        if self.worker is None:
            return
        os.killpg(self.worker.pid, signal.SIGKILL)
        self.worker.wait(timeout=30)
        self.worker = None

    @contextmanager
    def worker_with(self, **extra_env: str) -> Iterator[None]:
        """Swap the worker for one with other settings, then put the usual one back."""
        self.stop_worker()
        self.start_worker(**extra_env)
        try:
            yield
        finally:
            self.stop_worker()
            self.start_worker()

    # -- talking to it ------------------------------------------------------

    def post(self, event: dict[str, Any]) -> Any:
        return self.client.post("/v1/events", json=event, headers=self.producer)

    def post_batch(self, events: list[dict[str, Any]]) -> Any:
        return self.client.post("/v1/events/batch", json={"events": events}, headers=self.producer)

    @contextmanager
    def db(self) -> Iterator[Session]:
        with self.runtime.db.session() as session:
            yield session

    def deliveries(self, account_no: str) -> list[Delivery]:
        with self.db() as session:
            return list(
                session.exec(
                    select(Delivery)
                    .where(Delivery.account_no == account_no)
                    .order_by(col(Delivery.id))
                )
            )

    def timeline(self, delivery_id: int | None) -> list[tuple[str, dict[str, Any]]]:
        """A delivery's timeline as (status, detail) pairs, oldest first."""
        with self.db() as session:
            rows = session.exec(
                select(DeliveryChange)
                .where(DeliveryChange.delivery_id == delivery_id)
                .order_by(col(DeliveryChange.id))
            ).all()
        return [(row.status, row.detail) for row in rows]

    def settled(self, account_no: str, *, count: int, timeout: float = 60) -> list[Delivery]:
        """Wait until the account has ``count`` deliveries, all in a final state."""

        def done() -> list[Delivery] | None:
            rows = self.deliveries(account_no)
            if len(rows) >= count and all(d.status in FINAL_STATUSES for d in rows):
                return rows
            waiting = [d for d in rows if d.status not in FINAL_STATUSES]
            if len(rows) >= count and all(
                d.channel == "postcard" and d.status == "queued" for d in waiting
            ):
                self.print_postcards()  # the day's cut-off, brought forward
            return None

        try:
            return wait_until(
                done, timeout=timeout, what=f"{count} final deliveries of {account_no}"
            )
        except AssertionError as exc:
            states = [(d.id, d.channel, d.status) for d in self.deliveries(account_no)]
            raise AssertionError(
                f"{exc}; now: {states}\nworker log:\n{self.worker_log_tail()}"
            ) from None

    def reach(
        self, account_no: str, expected: list[tuple[str, str]], *, timeout: float = 60
    ) -> list[Delivery]:
        """Wait until the account's deliveries are exactly ``expected`` (channel, status), in order.

        Unlike :meth:`settled`, this waits past ``sent`` for the provider's report.
        """

        def seen() -> list[Delivery] | None:
            rows = self.settled(account_no, count=len(expected), timeout=timeout)
            return rows if [(d.channel, d.status) for d in rows] == expected else None

        try:
            return wait_until(seen, timeout=timeout, what=f"{expected} for {account_no}")
        except AssertionError as exc:
            states = [(d.channel, d.status) for d in self.deliveries(account_no)]
            raise AssertionError(
                f"{exc}; now: {states}\nworker log:\n{self.worker_log_tail()}"
            ) from None

    def env_for_cli(self) -> dict[str, str]:
        """The environment a `notifier` command needs to act on this stack."""
        return {**os.environ, **self.env}

    def cli(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        """Run ``notifier ARGS…`` on this stack, as an operator would from a shell."""
        return subprocess.run(
            [sys.executable, "-m", "notifier", *args],
            input=stdin,
            env=self.env_for_cli(),
            capture_output=True,
            text=True,
            timeout=120,
        )

    def print_postcards(self) -> None:
        """Run the print batch now, as the cut-off job would."""
        from notifier.flows.postcards import print_postcards

        # Tomorrow's batch takes every postcard queued so far: after today's
        # cut-off (16:00 Taipei) today's batch would leave the new ones out.
        rt = self.runtime
        print_postcards(rt, day=rt.policy.business_date(rt.clock()) + timedelta(days=1))

    def close(self) -> None:
        self.stop_worker()
        self.client.close()
        self.api.should_exit = True
        self.runtime.close()
        for cleanup in reversed(self.cleanups):
            try:
                cleanup()
            except Exception as exc:
                print(f"cleanup of {self.name} failed: {exc}", file=sys.stderr)


def build_stack(
    name: str,
    folder: Path,
    extra_env: dict[str, str] | None = None,
    *,
    worker_cpus: list[int] | None = None,
) -> Stack:
    """Create the database and broker namespace for ``name`` and start its worker."""
    database, broker = name.split("-")[:2]
    cleanups: list[Callable[[], None]] = []
    if database == "sqlite":
        database_url = f"sqlite:///{folder / 'notifier.db'}"
    else:
        need("PostgreSQL", "127.0.0.1", 5432)
        database_url, drop = postgres_database()
        cleanups.append(drop)
    if broker == "filesystem":
        broker_url = ""
    elif broker == "rabbitmq":
        need("RabbitMQ", "127.0.0.1", 5672)
        vhost = f"notifier-test-{secrets.token_hex(4)}"
        subprocess.run(["rabbitmqctl", "-q", "add_vhost", vhost], check=True)
        subprocess.run(
            ["rabbitmqctl", "-q", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"],
            check=True,
        )
        cleanups.append(
            lambda: subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], check=False)
        )
        broker_url = f"{RABBIT_URL}/{vhost}"
    else:
        need("Redis", "127.0.0.1", 6379)
        client = _claim_redis_db()
        cleanups.append(client.flushdb)
        broker_url = f"{REDIS_URL}/{client.connection_pool.connection_kwargs['db']}"
    stack = Stack(
        name,
        folder,
        database_url,
        broker_url,
        cleanups=cleanups,
        extra_env=extra_env or {},
        worker_cpus=worker_cpus,
    )
    stack.start_worker()
    return stack


def _claim_redis_db() -> Any:
    """An empty Redis database of our own: two stacks on one db would take each other's tasks."""
    import redis

    for number in range(1, 16):
        client = redis.Redis.from_url(f"{REDIS_URL}/{number}")
        # The marker expires, so a crashed run does not hold a db for long.
        if client.dbsize() == 0 and client.set(
            "notifier-test:owner", os.getpid(), nx=True, ex=3600
        ):
            return client
    raise RuntimeError("no free Redis database among 1..15; FLUSHALL if these are leftovers")


def postgres_database() -> tuple[str, Callable[[], None]]:
    """A fresh PostgreSQL database of our own, and the function that drops it."""
    import sqlalchemy as sa

    name = f"notifier_test_{secrets.token_hex(4)}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}", drop
