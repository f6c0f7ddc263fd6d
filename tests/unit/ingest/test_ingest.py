"""The message bus way in, on the embedded (filesystem) broker and SQLite: files, checks, consumer, DLQ."""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from notifier.events.schema import field_errors, parse_event
from notifier.ingest import bus, dlq
from notifier.ingest.consumer import IngestConsumer, check
from notifier.ingest.files import CSV_COLUMNS, FileError, file_format, read_events
from notifier.ingest.producer import InvalidEvent, Publisher, validate
from notifier.migrations import upgrade
from notifier.runtime import Runtime
from notifier.settings import IngestSettings, Settings
from tests.support import events

HEADER = "event_id,account_no,name,phone,email,bill_no,period,amount,due_date,level,occurred_at"
ROW = (
    "e-1,01234567890,王小明,0912 345 678,a@example.com,B1,2026-09,1830,2026-11-20,2,"
    "2026-11-27T09:00:00+08:00"
)


def _csv(tmp_path: Path, *lines: str) -> list[Any]:
    path = tmp_path / "export.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return list(read_events(path, file_format(path)))


def test_a_csv_row_becomes_the_event_the_api_would_take(tmp_path: Path) -> None:
    [row] = _csv(tmp_path, HEADER, ROW)
    assert row.errors == [] and row.line == 2
    assert row.event.model_dump(mode="json", exclude_unset=True) == {
        "event_id": "e-1",
        "type": "bill.unpaid",
        "occurred_at": "2026-11-27T09:00:00+08:00",
        "account": {
            "account_no": "01234567890",
            "name": "王小明",
            "phone": "+886912345678",
            "email": "a@example.com",
        },
        "bill": {"bill_no": "B1", "period": "2026-09", "amount": 1830, "due_date": "2026-11-20"},
        "level": 2,
    }


def test_empty_cells_keep_stored_values_and_lists_split_on_bars(tmp_path: Path) -> None:
    header = (
        "event_id,account_no,phone,push_tokens,opt_outs,bill_no,period,amount,due_date,occurred_at"
    )
    line = "e-2,01234567890,,t1 | t2,sms|voice,B1,2026-09,1,2026-11-20,2026-11-27T09:00:00+08:00"
    [row] = _csv(tmp_path, header, line)
    account = row.event.model_dump(mode="json", exclude_unset=True)["account"]
    assert account == {
        "account_no": "01234567890",
        "push_tokens": ["t1", "t2"],
        "opt_outs": ["sms", "voice"],
    }


def test_protections_split_on_bars_and_an_unknown_one_names_its_column(tmp_path: Path) -> None:
    header = (
        "event_id,account_no,protections,spoken_language,bill_no,period,amount,due_date,occurred_at"
    )
    good = (
        "e-5,01234567890,elderly|life_support,nan,B1,2026-09,1,2026-11-20,2026-11-27T09:00:00+08:00"
    )
    bad = good.replace("e-5", "e-6").replace("elderly|", "elderly|vip|")
    ok, refused = _csv(tmp_path, header, good, bad)
    account = ok.event.model_dump(mode="json", exclude_unset=True)["account"]
    assert (account["protections"], account["spoken_language"]) == (
        ["life_support", "elderly"], "nan",
    )  # fmt: skip
    assert [e.field for e in refused.errors] == ["protections"]


def test_a_bad_row_names_its_line_and_column_and_the_others_pass(tmp_path: Path) -> None:
    bad = (
        ROW.replace("e-1", "e-3").replace("0912 345 678", "+88691234").replace("2026-09", "9/2026")
    )
    rows = _csv(tmp_path, HEADER, ROW, "", bad, "e-4,1")
    assert [r.line for r in rows] == [2, 4, 5]
    assert rows[0].errors == []
    assert {(e.field, e.message) for e in rows[1].errors} == {
        ("phone", "not a valid phone number"),
        ("period", "String should match pattern '^[0-9]{4}-(0[1-9]|1[0-2])$'"),
    }
    assert rows[1].event_id == "e-3"
    assert [(e.field, e.message) for e in rows[2].errors] == [
        ("(row)", "2 cells, the header has 11")
    ]


def test_an_unknown_column_refuses_the_whole_file(tmp_path: Path) -> None:
    with pytest.raises(FileError, match=r"unknown column.*'amount_due'"):
        _csv(tmp_path, HEADER.replace("amount", "amount_due"), ROW)
    assert "event_id" in CSV_COLUMNS and "due_date" in CSV_COLUMNS


def test_json_lines_and_json_files(tmp_path: Path) -> None:
    event = events.unpaid(events.account())
    lines = tmp_path / "feed.jsonl"
    lines.write_text(json.dumps(event) + "\n\nnot json\n", encoding="utf-8")
    rows = list(read_events(lines, file_format(lines)))
    assert [r.line for r in rows] == [1, 3]
    assert rows[0].event is not None and rows[1].errors[0].field == "(line)"
    whole = tmp_path / "feed.json"
    whole.write_text(json.dumps([event, {**event, "type": "bill.late"}]), encoding="utf-8")
    rows = list(read_events(whole, file_format(whole)))
    assert rows[0].event is not None and rows[1].errors[0].field == "type"


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        (b"\xff\xfe", "(body)", "not JSON"),
        (b"{not json", "(body)", "not JSON"),
        (b"[1, 2]", "(body)", "Input should be a valid dictionary"),
        (b"x" * 2048, "(body)", "larger than 1024 bytes"),
    ],
)
def test_a_body_that_is_no_event_is_refused_naming_why(
    body: bytes, field: str, message: str
) -> None:
    verdict = check(body, max_bytes=1024)
    assert verdict.event is None
    assert verdict.errors[0].field == field and message in verdict.errors[0].message


def test_a_message_is_checked_exactly_as_the_api_checks_a_body() -> None:
    event = events.unpaid(events.account(phone="+88691234", email="not-an-email"))
    verdict = check(json.dumps(event).encode(), max_bytes=2**20)
    try:
        parse_event(event)
    except Exception as exc:
        expected = field_errors(exc)  # type: ignore[arg-type]
    assert verdict.errors == expected and verdict.event_id == event["event_id"]
    with pytest.raises(InvalidEvent) as refused:
        validate(event)
    assert refused.value.errors == expected


# -- the consumer, on the embedded broker (kombu's filesystem transport) ----------


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    """SQLite and the filesystem broker in this test's own folder."""
    name = f"t{secrets.token_hex(4)}"
    url = f"sqlite:///{tmp_path / 'notifier.db'}"
    upgrade(url)
    yield Settings(
        data_dir=tmp_path,
        database_url=url,
        broker_url="",
        ingest=IngestSettings(
            exchange=f"{name}.events",
            queue=f"{name}.ingest",
            dlq=f"{name}.dead",
            batch_wait_seconds=0.05,
        ),
    )


def _consume(settings: Settings, messages: int) -> tuple[Any, Runtime]:
    """Run the consumer until it has taken ``messages``; return its totals."""
    import notifier.models  # noqa: F401

    rt = Runtime(settings)
    consumer = IngestConsumer(rt, batch_size=3)
    consumer.on_batch = lambda _c: consumer.stop() if consumer.counts.messages >= messages else None
    thread = threading.Thread(target=consumer.run)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive(), "the consumer did not take every message"
    return consumer.counts, rt


def test_the_consumer_stores_once_and_dead_letters_with_the_errors(settings: Settings) -> None:
    good = [events.unpaid(events.account()) for _ in range(4)]
    bad = events.unpaid(events.account(phone="+88691234"))
    with Publisher(settings=settings) as publisher:
        for event in [*good, good[0]]:
            publisher.publish(event)
        publisher.publish_raw(json.dumps(bad).encode(), message_id=bad["event_id"])
        publisher.publish_raw(b"\xffjunk", message_id=None, content_type="text/plain")
    counts, rt = _consume(settings, 7)
    assert (counts.accepted, counts.duplicate, counts.invalid) == (4, 1, 2)
    with rt.db.engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT event_id FROM events ORDER BY id")).scalars().all()
    # (the filesystem broker keeps no order inside a millisecond)
    assert sorted(stored) == sorted(e["event_id"] for e in good)
    rt.close()

    total, letters = dlq.peek(settings)
    assert total == 2
    [first] = [x for x in letters if x.message_id == bad["event_id"]]
    [second] = [x for x in letters if x is not first]
    assert first.message_id == bad["event_id"] and json.loads(first.body) == bad
    assert json.loads(first.headers[bus.ERRORS_HEADER]) == [
        {"field": "account.phone", "message": "not a valid phone number"}
    ]
    assert first.headers[bus.REPLAYS_HEADER] == 0 and first.dead_lettered_at
    assert second.body == b"\xffjunk" and second.message_id.startswith("dead-")
    assert second.errors[0].field == "(body)"
    assert dlq.count(settings) == 2, "peeking leaves the letters in the queue"

    fixed = events.unpaid(events.account(bad["account"]["account_no"]), event_id=bad["event_id"])
    report = dlq.replay(
        settings,
        select=lambda letter: letter.message_id == bad["event_id"],
        fixes={bad["event_id"]: validate(fixed)},
    )
    assert report.replayed == report.corrected == [bad["event_id"]]
    assert dlq.drop(settings, select=lambda _letter: True) == [second.message_id]
    counts, rt = _consume(settings, 1)
    assert counts.accepted == 1 and dlq.count(settings) == 0
    rt.close()


def test_an_exchange_with_no_queue_bound_is_told_apart(settings: Settings) -> None:
    # On Redis a message to it would vanish: the publisher refuses to start instead.
    with bus.connect(settings) as conn:
        assert not bus.bound(conn.default_channel, settings.ingest)


def test_a_failed_commit_acknowledges_nothing_and_the_batch_comes_back(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from notifier.events import service

    accept = service.accept
    failures = [sa.exc.OperationalError("INSERT", {}, Exception("the database went away"))]

    def flaky(*args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop()
        return accept(*args, **kwargs)

    monkeypatch.setattr(service, "accept", flaky)
    batch = [events.unpaid(events.account()) for _ in range(5)]
    with Publisher(settings=settings) as publisher:
        for event in batch:
            publisher.publish(event)
    counts, rt = _consume(settings, 5)
    assert not failures, "the first commit failed"
    assert (counts.accepted, counts.duplicate) == (5, 0)
    with rt.db.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM events")).scalar_one() == 5
    rt.close()
