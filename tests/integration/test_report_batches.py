"""Provider reports buffered by the API and applied in batches (flows/report_buffer.py).

Scenarios on SQLite and PostgreSQL (the ``ledger`` fixture): SMS deliveries
handed to Twilio, reports about them put in a buffer as the callback routes
put them, and the buffer flushed as its thread or the lifespan's shutdown
flushes it. A batch must end as the same reports applied one at a time would.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import col, select

from notifier.app import create_app
from notifier.deliveries.models import Delivery, DeliveryChange
from notifier.flows import reports as report_flow
from notifier.flows.report_buffer import ReportBuffer, buffer_of
from notifier.flows.reports import ForeignReport, Report, apply_reports
from notifier.runtime import Runtime
from tests.support import events
from tests.support.ledger import Ledger


def sent_sms(ledger: Ledger) -> Delivery:
    """A dunning SMS (its account has no other contact) as the worker leaves it: ``sent``."""
    acct = events.account(email=None, push_tokens=None)
    ledger.post(events.unpaid(acct))
    with ledger.db() as session:
        [sms] = session.exec(select(Delivery).where(Delivery.account_no == acct["account_no"]))
        sms.status, sms.provider, sms.provider_id = "sent", "twilio", f"SM{sms.id:032d}"
        sms.attempts = 1
        session.add(sms)
        session.flush()
        session.refresh(sms)
        session.expunge(sms)
    return sms


def twilio(sms: Delivery, provider_status: str, *, sid: str | None = None) -> Report:
    """Twilio's report ``provider_status`` about the SMS, as the callback route reads it."""
    assert sms.id is not None
    ours = {"delivered": "delivered", "undelivered": "undelivered", "failed": "failed"}
    return Report(
        sms.id,
        ours.get(provider_status, "report"),
        provider="twilio",
        sid=sms.provider_id if sid is None else sid,
        provider_status=provider_status,
    )


def state(ledger: Ledger, sms: Delivery) -> tuple[str, list[tuple[str, Any]]]:
    """The delivery's status and the provider reports in its timeline."""
    with ledger.db() as session:
        row = session.get(Delivery, sms.id)
        assert row is not None
        changes = session.exec(
            select(DeliveryChange)
            .where(DeliveryChange.delivery_id == sms.id)
            .order_by(col(DeliveryChange.id))
        ).all()
        return row.status, [
            (c.status, c.detail.get("provider_status")) for c in changes if c.detail.get("report")
        ]


def fallbacks(ledger: Ledger, sms: Delivery) -> list[str]:
    with ledger.db() as session:
        return list(
            session.exec(select(Delivery.channel).where(Delivery.fallback_of == sms.id)).all()
        )


@pytest.fixture
def enqueued(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, str]]:
    """What the reports' outcomes enqueued after their commit."""
    seen: list[tuple[int, str]] = []

    def deliver(pairs: Any, *, countdown: float | None = None) -> bool:
        seen.extend(pairs)
        return True

    monkeypatch.setattr(ledger.runtime.dispatcher, "deliver", deliver)
    return seen


@pytest.fixture
def buffer(ledger: Ledger) -> Iterator[ReportBuffer]:
    """A running buffer whose thread never flushes on its own: the test flushes it."""
    running = ReportBuffer(ledger.runtime, flush_seconds=3600, batch=10_000)
    running.start()
    yield running
    running.stop()


def test_a_batch_ends_as_its_reports_one_at_a_time_would(
    ledger: Ledger, enqueued: list[tuple[int, str]]
) -> None:
    served, twice, failed, foreign = (sent_sms(ledger) for _ in range(4))
    results = apply_reports(
        ledger.runtime,
        [
            twilio(served, "sent"),
            twilio(served, "delivered"),
            twilio(twice, "delivered"),
            twilio(twice, "delivered"),  # Twilio's retry of the same report
            twilio(failed, "undelivered"),
            twilio(failed, "delivered"),  # after the final one: history only
            twilio(foreign, "delivered", sid="SM" + "9" * 32),  # not a message it sent
        ],
    )
    assert state(ledger, served) == ("delivered", [("delivered", "delivered")])
    assert state(ledger, twice) == ("delivered", [("delivered", "delivered")])
    assert state(ledger, failed) == (
        "undelivered",
        [("undelivered", "undelivered"), ("delivered", "delivered")],
    )
    assert fallbacks(ledger, failed) == ["voice"]
    assert state(ledger, foreign) == ("sent", [])
    refused = [outcome for _, outcome in results if isinstance(outcome, ForeignReport)]
    assert len(refused) == 1 and f"delivery {foreign.id}" in str(refused[0])


def test_a_sent_report_after_our_own_sent_records_nothing(ledger: Ledger) -> None:
    sms = sent_sms(ledger)
    apply_reports(ledger.runtime, [twilio(sms, "queued"), twilio(sms, "sent")])
    assert state(ledger, sms) == ("sent", [])
    # About an earlier message of the delivery, or a call ringing, it still tells something.
    apply_reports(ledger.runtime, [twilio(sms, "sent", sid="SM" + "1" * 32)])
    assert state(ledger, sms) == ("sent", [])  # refused: the delivery never sent that one
    apply_reports(ledger.runtime, [twilio(sms, "read")])
    assert state(ledger, sms) == ("sent", [("report", "read")])


def test_the_buffer_applies_what_it_took_and_enqueues_the_fallbacks_it_started(
    ledger: Ledger, buffer: ReportBuffer, enqueued: list[tuple[int, str]]
) -> None:
    served, failed = sent_sms(ledger), sent_sms(ledger)
    enqueued.clear()  # the SMS themselves
    assert buffer.put(twilio(served, "delivered")) and buffer.put(twilio(failed, "failed"))
    assert state(ledger, served)[0] == "sent"  # answered, not applied yet
    assert buffer.flush()
    assert state(ledger, served)[0] == "delivered" and state(ledger, failed)[0] == "failed"
    [(fallback_id, channel)] = enqueued
    assert channel == "voice"
    with ledger.db() as session:
        assert session.get(Delivery, fallback_id).fallback_of == failed.id  # type: ignore[union-attr]


def test_a_report_that_fails_is_tried_alone_and_the_others_are_applied(
    ledger: Ledger,
    buffer: ReportBuffer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    good, bad = sent_sms(ledger), sent_sms(ledger)
    record = report_flow._record

    def breaks_on_bad(*args: Any, **kwargs: Any) -> Any:
        if args[4].delivery_id == bad.id:
            raise ValueError("a report this code cannot apply")
        return record(*args, **kwargs)

    monkeypatch.setattr(report_flow, "_record", breaks_on_bad)
    caplog.set_level(logging.WARNING, logger="notifier.flows.report_buffer")
    buffer.put(twilio(good, "delivered"))
    buffer.put(twilio(bad, "delivered"))
    assert not buffer.flush()  # the bad one waits to be tried again
    assert state(ledger, good)[0] == "delivered" and state(ledger, bad)[0] == "sent"
    assert buffer.pending() == 1
    while buffer.pending():  # it gives up after a few tries, naming the delivery
        buffer.flush()
    [given_up] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert f"delivery {bad.id}" in given_up.getMessage()
    assert state(ledger, bad)[0] == "sent"  # left to the receipt timeout
    monkeypatch.setattr(report_flow, "_record", record)
    # Once the database answers again, a report that failed for it is applied after all.
    again = sent_sms(ledger)
    calls = {"n": 0}

    def down_once(rt: Any, batch: Any) -> Any:
        calls["n"] += 1
        if calls["n"] <= 2:  # the batch, then the report alone
            from sqlalchemy.exc import OperationalError

            raise OperationalError("SELECT", {}, Exception("the database is away"))
        return apply_reports(rt, batch)

    monkeypatch.setattr("notifier.flows.report_buffer.apply_reports", down_once)
    buffer.put(twilio(again, "delivered"))
    assert not buffer.flush() and state(ledger, again)[0] == "sent"
    assert buffer.flush() and state(ledger, again)[0] == "delivered"


def test_stopping_the_buffer_applies_everything_it_took(ledger: Ledger) -> None:
    sms = sent_sms(ledger)
    buffer = ReportBuffer(ledger.runtime, flush_seconds=3600)
    assert not buffer.put(twilio(sms, "delivered"))  # not running: the caller applies it
    buffer.start()
    assert buffer.put(twilio(sms, "delivered"))
    buffer.stop()  # as the lifespan stops it
    assert state(ledger, sms) == ("delivered", [("delivered", "delivered")])
    assert not buffer.put(twilio(sms, "delivered"))


def test_the_thread_applies_a_full_batch_without_waiting_for_the_interval(
    ledger: Ledger,
) -> None:
    first, second = sent_sms(ledger), sent_sms(ledger)
    buffer = ReportBuffer(ledger.runtime, flush_seconds=3600, batch=2)
    buffer.start()
    try:
        buffer.put(twilio(first, "delivered"))
        buffer.put(twilio(second, "delivered"))
        # Taking the flush lock waits for the batch the thread is applying, if it started.
        while buffer.pending():
            time.sleep(0.01)
        assert buffer.flush()
        assert state(ledger, first)[0] == state(ledger, second)[0] == "delivered"
    finally:
        buffer.stop()


def test_the_api_lifespan_starts_the_buffer_and_drains_it_at_shutdown(ledger: Ledger) -> None:
    sms = sent_sms(ledger)
    app = create_app(runtime=Runtime(ledger.runtime.settings))
    buffer = buffer_of(app.state)
    assert buffer is not None
    with TestClient(app):
        assert buffer.put(twilio(sms, "delivered"))  # as the status route puts it
    assert state(ledger, sms) == ("delivered", [("delivered", "delivered")])
