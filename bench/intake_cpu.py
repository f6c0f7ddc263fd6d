"""CPU per accepted event of ``POST /v1/events/batch``, in one process, without a server.

    python bench/intake_cpu.py [--events 10000] [--batch-size 500] [--database URL]
                               [--profile DIR]

On a fresh PostgreSQL database (migrated), with a producer key, it measures:

* parse: the batch route's parse step over N events as bench/intake.py posts
  them (a new account each, with every contact point), and ``parse_event`` one
  event at a time beside it;
* accept: whole requests of --batch-size such events through the API's ASGI app
  in this process (the body's JSON, the key check, parse, the owner checks, the
  insert, the answer's JSON; middleware included), this process's CPU and
  PostgreSQL's per event accepted;
* accept, one bad item: the same, with one invalid event (a phone that is no
  number) in each request, so the cost of a batch that does not parse at once.

The dispatcher only collects the event ids it is handed (no broker), so what
is measured is the API's own work per event. CPU time does not move with the
machine's load as wall time does, so figures from before and after a change
are comparable within minutes; bench/intake.py gives the events/s of a real
``notifier api`` beside a worker. ``--profile DIR`` writes a pyinstrument profile
of the accept there (pyinstrument is not a dependency: ``pip install pyinstrument``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._processes import (  # noqa: E402
    POSTGRES,
    BenchDatabase,
    CollectingDispatcher,
    ResourceMeter,
    fresh_database,
)
from tests.support import events  # noqa: E402

WARM_REQUESTS = 4
"""Requests run first and not measured: imports, plans, psycopg's prepared statements."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument(
        "--database", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
        help="the server's maintenance database; the bench makes and drops its own",
    )  # fmt: skip
    parser.add_argument("--profile", type=Path, help="write a pyinstrument profile here")
    return parser.parse_args(argv)


@contextmanager
def measured(label: str, count: int, *, pg: bool = True) -> Iterator[None]:
    """Print this process's CPU (and PostgreSQL's) over the block, per event."""
    with ResourceMeter([POSTGRES] if pg else [], interval=0.25) as meter:
        started, wall = time.process_time(), time.monotonic()
        yield
        cpu, wall = time.process_time() - started, time.monotonic() - wall
    line = f"  {label:<22} {1000 * cpu / count:6.3f} ms this process"
    if pg:
        line += f" + {1000 * meter.usage['postgres'].cpu / count:6.3f} ms PostgreSQL"
    print(f"{line} per event ({cpu:.2f} CPU s, {wall:.2f} s wall, {count} events)")


def run(args: argparse.Namespace) -> None:
    with (
        TemporaryDirectory(prefix="notifier-intake-") as folder,
        fresh_database(args.database) as db,
    ):
        os.environ.update(
            NOTIFIER_DATA_DIR=folder,
            NOTIFIER_DATABASE_URL=db.url,
            NOTIFIER_LOG_LEVEL="WARNING",  # as bench/intake.py runs the API
        )
        log = Path(folder) / "notifier.log"
        with log.open("w") as stream:
            saved, sys.stderr = sys.stderr, stream  # the notifier's log lines, not the figures
            try:
                from notifier.observability.logs import configure_logging

                configure_logging()
                measure(args, db)
            finally:
                sys.stderr = saved


def batch_parser() -> Callable[[list[dict[str, Any]]], object]:
    """What the batch route parses a batch with."""
    from notifier.events import schema

    # Before the batch parse existed, the route called parse_event once per item.
    batch: Callable[[list[dict[str, Any]]], object] | None = getattr(schema, "parse_events", None)
    return batch or (lambda raws: [_try_parse(raw) for raw in raws])


def _try_parse(raw: dict[str, Any]) -> object:
    from pydantic import ValidationError

    from notifier.events.schema import parse_event

    try:
        return parse_event(raw)
    except ValidationError as exc:
        return exc


def measure(args: argparse.Namespace, db: BenchDatabase) -> None:
    # Imported once the environment names the database: settings read it.
    from notifier.app import create_app
    from notifier.auth import keys
    from notifier.events.schema import parse_event
    from notifier.migrations import upgrade
    from notifier.runtime import Runtime
    from notifier.settings import Settings

    settings = Settings()
    upgrade(settings.resolved_database_url)
    rt = Runtime(settings)
    collected = CollectingDispatcher()
    rt.__dict__["dispatcher"] = collected  # a cached_property: the instance's value wins
    with rt.db.session() as session:
        _, key = keys.create_key(session, role="producer", name="bench")
    app = create_app(runtime=rt)
    size = args.batch_size
    print(
        f"{args.events} events into {db.name}, {size} a request "
        f"(and {WARM_REQUESTS} requests first, unmeasured); no broker"
    )

    parse_batch = batch_parser()
    raw = [events.unpaid(events.account()) for _ in range(args.events)]
    # Both ways over all of it once first: the first pass over new input is slower (the
    # collector's passes over it), and would count against whichever way went first.
    for start in range(0, len(raw), size):
        parse_batch(raw[start : start + size])
    for item in raw:
        parse_event(item)
    with measured("parse (batch route)", len(raw), pg=False):
        for start in range(0, len(raw), size):
            parse_batch(raw[start : start + size])
    with measured("parse_event, one each", len(raw), pg=False):
        for item in raw:
            parse_event(item)

    post = Poster(app, key)
    for _ in range(WARM_REQUESTS):
        _check(post.batch(_body(size)), size)
    requests = max(1, args.events // size)
    # Encoded before and read after the timed block: the caller's work, not the API's.
    bodies = [_body(size) for _ in range(requests)]
    profiler = _profiler(args.profile)
    with measured("accept", size * requests):
        answers = [post.batch(body) for body in bodies]
    if profiler is not None:
        _write_profile(profiler, args.profile)
    for answer in answers:
        _check(answer, size)
    bodies = [_body(size, bad=1) for _ in range(requests)]
    with measured("accept, one bad item", (size - 1) * requests):
        answers = [post.batch(body) for body in bodies]
    for answer in answers:
        _check(answer, size - 1)
    handed = (WARM_REQUESTS + requests) * size + requests * (size - 1)
    if len(collected.events) != handed:
        raise SystemExit(f"{len(collected.events)} events handed to the dispatcher, not {handed}")
    rt.close()


def _body(size: int, *, bad: int = 0) -> bytes:
    """A batch of ``size`` new accounts' unpaid bills, the last ``bad`` with a phone no number."""
    items = [events.unpaid(events.account()) for _ in range(size - bad)]
    items += [events.unpaid(events.account(phone="12")) for _ in range(bad)]
    return json.dumps({"events": items}).encode()


def _check(answer: tuple[int, bytes], accepted: int) -> None:
    status, body = answer
    if status != 200 or json.loads(body)["accepted"] != accepted:
        raise SystemExit(f"POST /v1/events/batch answered {status}: {body[:300]!r}")


class Poster:
    """POSTs to the ASGI app directly: no server, no socket, no HTTP client in the figures."""

    def __init__(self, app: Any, key: str) -> None:
        self.app = app
        self.headers = [
            (b"authorization", f"Bearer {key}".encode()),
            (b"content-type", b"application/json"),
        ]
        self.loop = asyncio.new_event_loop()

    def batch(self, body: bytes) -> tuple[int, bytes]:
        """The status and body of the answer to one POST of a batch's JSON."""
        return self.loop.run_until_complete(self._post("/v1/events/batch", body))

    async def _post(self, path: str, body: bytes) -> tuple[int, bytes]:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [*self.headers, (b"content-length", str(len(body)).encode())],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
        }
        sent = False
        status = 0
        chunks: list[bytes] = []

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                await asyncio.sleep(3600)  # no disconnect while the answer is made
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, send)
        return status, b"".join(chunks)


def _profiler(folder: Path | None) -> Any:
    if folder is None:
        return None
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0005, async_mode="disabled")
    profiler.start()
    return profiler


def _write_profile(profiler: Any, folder: Path | None) -> None:
    assert folder is not None
    profiler.stop()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "accept.html").write_text(profiler.output_html())
    (folder / "accept.txt").write_text(profiler.output_text(unicode=True, show_all=False))


def main(argv: list[str] | None = None) -> int:
    run(parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
