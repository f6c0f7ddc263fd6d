"""What a Twilio status callback costs the API, run by hand.

    python bench/callbacks.py [--deliveries 2000] [--clients 8] [--batches 20]
                              [--database postgresql+psycopg://postgres@127.0.0.1:5432/postgres]
                              [--sqlite]

It makes a fresh database (PostgreSQL, or SQLite with --sqlite), writes
--deliveries SMS deliveries already ``sent`` through Twilio (as a worker
leaves them), starts `notifier api` on it and posts, with --clients threads,
the two signed status callbacks Twilio makes for each SMS (``sent``, then
``delivered``). It waits until every delivery is ``delivered`` (the reports
may be applied after the answer) and prints callbacks/s, the API process's
CPU ms per callback and per delivery, and the rows the reports wrote per
delivery (timeline rows, producer callbacks owed, the delivery's update). Then it posts --batches ``POST /v1/events/batch`` requests of 500
events and prints the API's CPU ms per request. The load average is printed
beside the figures: the machine is shared and the figures are noisy.
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from tempfile import TemporaryDirectory

import httpx
import sqlalchemy as sa
from sqlmodel import Session
from twilio.request_validator import RequestValidator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from notifier.accounts.models import Account  # noqa: E402
from notifier.db import utcnow  # noqa: E402
from notifier.deliveries import callback_tokens  # noqa: E402
from notifier.deliveries.models import Delivery, DeliveryChange, Notification  # noqa: E402
from notifier.events.models import Event  # noqa: E402
from notifier.settings import Settings  # noqa: E402
from tests.support import events  # noqa: E402
from tests.support.stack import free_port, http_ok  # noqa: E402

AUTH_TOKEN = "bench-auth-token"


def cpu_seconds(pid: int) -> float:
    """User + system CPU of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rows_written(engine: sa.Engine) -> int:
    """Rows the reports wrote so far: timeline rows, producer callbacks owed, and the
    deliveries moved on from ``sent`` (each one update)."""
    with engine.connect() as conn:
        return int(
            conn.execute(
                sa.text(
                    "SELECT (SELECT count(*) FROM delivery_changes)"
                    " + (SELECT count(*) FROM producer_callbacks)"
                    " + (SELECT count(*) FROM deliveries WHERE status <> 'sent')"
                )
            ).scalar_one()
        )


def seed(engine: sa.Engine, count: int) -> list[tuple[int, str]]:
    """``count`` SMS deliveries ``sent`` through Twilio: ``(delivery_id, message sid)``."""
    now = utcnow()
    with Session(engine) as session:
        session.add(Account(account_no="01234567890", phone="+886912345678"))
        event = Event(
            event_id="bench-1",
            type="bill.unpaid",
            occurred_at=now,
            account_no="01234567890",
            payload={},
        )
        session.add(event)
        session.flush()
        assert event.id is not None
        notes = [
            Notification(
                event_pk=event.id,
                account_no="01234567890",
                type="bill.unpaid",
                dedup_key=f"bench-{i}",
            )
            for i in range(count)
        ]
        session.add_all(notes)
        session.flush()
        sent = [
            Delivery(
                notification_id=note.id or 0,
                account_no="01234567890",
                event_type="bill.unpaid",
                channel="sms",
                status="sent",
                recipients=["+886912345678"],
                provider="twilio",
                provider_id="SM" + secrets.token_hex(16),
                attempts=1,
            )
            for note in notes
        ]
        session.add_all(sent)
        session.flush()
        session.add_all(
            DeliveryChange(
                delivery_id=d.id or 0, status="sent", at=now, detail={"provider_id": d.provider_id}
            )
            for d in sent
        )
        session.commit()
        return [(d.id or 0, d.provider_id or "") for d in sent]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--deliveries", type=int, default=2_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument(
        "--database", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    )
    parser.add_argument("--sqlite", action="store_true")
    args = parser.parse_args()
    admin = sa.create_engine(args.database, isolation_level="AUTOCOMMIT")
    name = f"notifier_bench_{secrets.token_hex(3)}"
    with TemporaryDirectory() as data:
        if args.sqlite:
            url = f"sqlite:///{data}/notifier.db"
        else:
            with admin.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
            url = args.database.rsplit("/", 1)[0] + f"/{name}"
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "NOTIFIER_DATA_DIR": data,
            "NOTIFIER_DATABASE_URL": url,
            "NOTIFIER_BROKER_URL": "",
            "NOTIFIER_PUBLIC_URL": base,
            "NOTIFIER_TWILIO__ACCOUNT_SID": "AC" + "0" * 32,
            "NOTIFIER_TWILIO__AUTH_TOKEN": AUTH_TOKEN,
            "NOTIFIER_CALLBACK_KEY": "bench-callback-key",
            "NOTIFIER_CALLBACK_ALLOW_PRIVATE": "true",
            "NOTIFIER_LOG_LEVEL": "WARNING",
        }
        try:
            measure(env, url, base, port, args)
        finally:
            if not args.sqlite:
                with admin.connect() as conn:
                    conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def measure(env: dict[str, str], url: str, base: str, port: int, args: argparse.Namespace) -> None:
    notifier = [sys.executable, "-m", "notifier"]
    subprocess.run([*notifier, "migrate"], env=env, check=True, capture_output=True)
    key = subprocess.run(
        [*notifier, "keys", "create", "--role", "producer", "--name", "bench"],
        env=env, check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    engine = sa.create_engine(url)
    sent = seed(engine, args.deliveries)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        settings = Settings()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    signing = callback_tokens.signing_key(settings)
    validator = RequestValidator(AUTH_TOKEN)
    posts: list[tuple[str, dict[str, str], dict[str, str], dict[str, str], dict[str, str]]] = []
    for delivery_id, sid in sent:
        path = "/v1/callbacks/twilio/status/" + callback_tokens.issue(
            signing, delivery_id, purpose="status", now=utcnow()
        )
        first = {"MessageSid": sid, "MessageStatus": "sent"}
        then = {"MessageSid": sid, "MessageStatus": "delivered"}
        posts.append(
            (
                path,
                first,
                {"X-Twilio-Signature": validator.compute_signature(base + path, first)},
                then,
                {"X-Twilio-Signature": validator.compute_signature(base + path, then)},
            )
        )
    api = subprocess.Popen(
        [*notifier, "api", "--port", str(port), "--host", "127.0.0.1"],
        env=env,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not http_ok(f"{base}/healthz"):
            if time.monotonic() > deadline:
                raise SystemExit("the API did not start")
            time.sleep(0.2)
        with httpx.Client(
            base_url=base, timeout=60, limits=httpx.Limits(max_connections=args.clients)
        ) as client:

            def report(post: tuple[str, dict[str, str], ...]) -> tuple[int, int]:  # type: ignore[misc]
                path, first, first_headers, then, then_headers = post
                a = client.post(path, data=first, headers=first_headers).status_code
                b = client.post(path, data=then, headers=then_headers).status_code
                return a, b

            rows_before = rows_written(engine)
            cpu_before = cpu_seconds(api.pid)
            started = time.perf_counter()
            with ThreadPoolExecutor(args.clients) as pool:
                codes = {code for pair in pool.map(report, posts) for code in pair}
            answered = time.perf_counter() - started
            while True:
                with engine.connect() as conn:
                    left = conn.execute(
                        sa.text("SELECT count(*) FROM deliveries WHERE status <> 'delivered'")
                    ).scalar_one()
                if not left:
                    break
                if time.perf_counter() - started > 120:
                    raise SystemExit(f"{left} deliveries never became delivered")
                time.sleep(0.05)
            applied = time.perf_counter() - started
            cpu = cpu_seconds(api.pid) - cpu_before
            rows = rows_written(engine) - rows_before
            assert codes == {204}, sorted(codes)
            callbacks = 2 * len(posts)
            load = os.getloadavg()
            print(
                f"callbacks: {callbacks} in {answered:.2f} s answered ({callbacks / answered:.0f}/s), "
                f"all applied after {applied:.2f} s; API CPU {1000 * cpu / callbacks:.2f} ms per "
                f"callback, {1000 * cpu / len(posts):.2f} ms per delivery; "
                f"{rows / len(posts):.2f} rows written per delivery "
                f"({'PostgreSQL' if engine.dialect.name == 'postgresql' else 'SQLite'}); "
                f"load {load[0]:.2f} {load[1]:.2f}"
            )
            batch_cpu_before = cpu_seconds(api.pid)
            started = time.perf_counter()
            for _ in range(args.batches):
                batch = [events.unpaid(events.account()) for _ in range(500)]
                answer = client.post(
                    "/v1/events/batch",
                    json={"events": batch},
                    headers={"Authorization": f"Bearer {key}"},
                )
                assert answer.status_code in (200, 202, 207), answer.status_code
            took = time.perf_counter() - started
            batch_cpu = cpu_seconds(api.pid) - batch_cpu_before
            load = os.getloadavg()
            print(
                f"events/batch: {args.batches} x 500 in {took:.2f} s "
                f"({500 * args.batches / took:.0f} events/s); API CPU "
                f"{1000 * batch_cpu / args.batches:.1f} ms per request; "
                f"load {load[0]:.2f} {load[1]:.2f}"
            )
    finally:
        api.terminate()
        api.wait(timeout=30)
        engine.dispose()


if __name__ == "__main__":
    main()
