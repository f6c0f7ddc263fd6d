"""A billing run's deliveries go out in batches: claimed together, sent together, recorded together.

Scenarios on SQLite and PostgreSQL (the ``ledger`` fixture), with the
sandbox providers, calling the delivery flow as the ``deliver_batch`` task
does.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import col, select

from notifier.db import utcnow
from notifier.deliveries import service as deliveries
from notifier.deliveries.models import Delivery, DeliveryChange
from notifier.flows import deliver as deliver_flow
from notifier.flows.deliver import LeaseKeeper, deliver_batch
from tests.support import events
from tests.support.ledger import Ledger


def billing_run(ledger: Ledger, accounts: int, **contact: Any) -> list[dict[str, Any]]:
    """``accounts`` unpaid-bill events for new accounts, accepted and processed."""
    accts = [events.account(**contact) for _ in range(accounts)]
    ledger.post(*(events.unpaid(acct) for acct in accts))
    return accts


def queued(ledger: Ledger, accts: list[dict[str, Any]], channel: str) -> list[int]:
    with ledger.db() as session:
        return [
            i
            for i in session.exec(
                select(Delivery.id)
                .where(
                    col(Delivery.account_no).in_([a["account_no"] for a in accts]),
                    Delivery.channel == channel,
                    Delivery.status == "queued",
                )
                .order_by(col(Delivery.id))
            )
            if i is not None
        ]


def statuses(ledger: Ledger, ids: list[int]) -> dict[int, str]:
    with ledger.db() as session:
        rows = session.exec(select(Delivery.id, Delivery.status).where(col(Delivery.id).in_(ids)))
        return {i: status for i, status in rows if i is not None}


@contextmanager
def counting_statements(ledger: Ledger) -> Iterator[list[str]]:
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    engine = ledger.runtime.db.engine
    sa.event.listen(engine, "before_cursor_execute", seen)
    try:
        yield statements
    finally:
        sa.event.remove(engine, "before_cursor_execute", seen)


def test_a_batch_costs_the_same_statements_for_ten_deliveries_as_for_forty(
    ledger: Ledger,
) -> None:
    accts = billing_run(ledger, 50, email=None, push_tokens=None)
    sms = queued(ledger, accts, "sms")
    assert len(sms) == 50

    with counting_statements(ledger) as ten:
        outcome = deliver_batch(ledger.runtime, sms[:10])
    with counting_statements(ledger) as forty:
        deliver_batch(ledger.runtime, sms[10:])

    assert set(outcome.statuses.values()) == {"delivered"}  # the sandbox reports at once
    assert set(statuses(ledger, sms).values()) == {"delivered"}
    assert len(forty) == len(ten), "a statement per delivery crept into the batch path"


def test_two_workers_given_the_same_batch_send_each_delivery_once(ledger: Ledger) -> None:
    accts = billing_run(ledger, 5, phone=None, push_tokens=None)
    email = queued(ledger, accts, "email")

    first = deliver_batch(ledger.runtime, email)
    second = deliver_batch(ledger.runtime, email)  # a redelivered task, or a second worker

    assert set(first.statuses.values()) == {"sent"}
    assert second.statuses == {}
    with ledger.db() as session:
        sends = session.exec(
            select(DeliveryChange.delivery_id).where(
                col(DeliveryChange.delivery_id).in_(email), DeliveryChange.status == "sent"
            )
        ).all()
    assert sorted(sends) == sorted(email)


def test_a_worker_that_lost_its_lease_records_nothing_over_the_worker_that_took_over(
    ledger: Ledger,
) -> None:
    accts = billing_run(ledger, 3, phone=None, push_tokens=None)
    email = queued(ledger, accts, "email")
    now = utcnow()
    with ledger.db() as session:
        slow = deliveries.claim_many(
            session, email, token=uuid.uuid4().hex, now=now, lease_seconds=1
        )
    later = now + timedelta(seconds=5)  # the slow worker's lease ran out
    with ledger.db() as session:
        taken = deliveries.claim_many(
            session, email, token=uuid.uuid4().hex, now=later, lease_seconds=60
        )
    assert [c.delivery.id for c in taken] == email

    with ledger.db() as session:
        late = deliveries.record_sends(
            session,
            [(claim, "sent", "smtp", f"late-{claim.delivery.id}", {}) for claim in slow],
            now=later,
        )
    with ledger.db() as session:
        fresh = deliveries.record_sends(
            session,
            [(claim, "sent", "smtp", f"ok-{claim.delivery.id}", {}) for claim in taken],
            now=later,
        )

    assert late == []
    assert fresh == email
    with ledger.db() as session:
        rows = session.exec(select(Delivery).where(col(Delivery.id).in_(email))).all()
    assert {row.provider_id for row in rows} == {f"ok-{i}" for i in email}
    assert {row.attempts for row in rows} == {1}


def test_one_refused_recipient_fails_alone_and_falls_back_while_the_batch_goes_out(
    ledger: Ledger,
) -> None:
    accts = billing_run(ledger, 4, phone=None, push_tokens=None)
    refused = billing_run(ledger, 1, phone=None, push_tokens=None, email="fail-permanent@x.tw")
    email = queued(ledger, accts + refused, "email")

    outcome = deliver_batch(ledger.runtime, email)

    assert sorted(outcome.statuses.values()) == ["failed", "sent", "sent", "sent", "sent"]
    assert [channel for _, channel in outcome.enqueue] == ["postcard"]


def test_a_transient_failure_is_retried_later_in_a_batch_of_its_own(ledger: Ledger) -> None:
    accts = billing_run(ledger, 3, phone=None, push_tokens=None)
    busy = billing_run(ledger, 1, phone=None, push_tokens=None, email="fail-transient-1@x.tw")
    email = queued(ledger, accts + busy, "email")

    outcome = deliver_batch(ledger.runtime, email)

    [(delay, again)] = outcome.later.items()
    assert delay >= 1 and [channel for _, channel in again] == ["email"]
    [(busy_id, _)] = again
    assert statuses(ledger, email)[busy_id] == "queued"
    with ledger.db() as session:
        row = session.get(Delivery, busy_id)
        assert row is not None and row.attempts == 1
        row.available_at = utcnow()  # the backoff has passed
        session.add(row)
    assert deliver_batch(ledger.runtime, [busy_id]).statuses == {busy_id: "sent"}


def test_a_batch_beyond_the_providers_rate_sends_what_fits_and_gives_the_rest_back(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    accts = billing_run(ledger, 6, phone=None, push_tokens=None)
    email = queued(ledger, accts, "email")
    provider = ledger.runtime.channel("email").provider
    monkeypatch.setitem(ledger.runtime.settings.rate_limits, provider, 8.0)
    monkeypatch.setattr(deliver_flow, "MAX_RATE_WAIT", 0.5)  # 4 slots fit in the wait

    outcome = deliver_batch(ledger.runtime, email)

    sent = [i for i, status in outcome.statuses.items() if status == "sent"]
    assert sent == email[:4]
    [(_, again)] = outcome.later.items()
    assert [i for i, _ in again] == email[4:]
    with ledger.db() as session:
        details = session.exec(
            select(DeliveryChange.detail).where(
                col(DeliveryChange.delivery_id).in_(email[4:]), DeliveryChange.status == "queued"
            )
        ).all()
    assert [d["reason"] for d in details if "reason" in d] == [f"{provider} rate limit"] * 2


def test_a_batch_working_longer_than_its_lease_keeps_its_rows_until_it_records(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    accts = billing_run(ledger, 3, phone=None, push_tokens=None)
    email = queued(ledger, accts, "email")
    monkeypatch.setattr(ledger.runtime.settings, "lease_seconds", 1.0)
    started = time.monotonic()
    with ledger.db() as session:
        claims = deliveries.claim_many(
            session, email, token=uuid.uuid4().hex, now=utcnow(), lease_seconds=1
        )
    with LeaseKeeper(ledger.runtime, claims, claimed_at=started) as keeper:
        time.sleep(2.5)  # two and a half leases: a slow batch
        with ledger.db() as session:
            requeued = deliveries.requeue_due(session, now=utcnow(), redispatch_after=60, limit=100)
            second = deliveries.claim_many(
                session, email, token=uuid.uuid4().hex, now=utcnow(), lease_seconds=60
            )
        assert [c.delivery.id for c in keeper.held(claims)] == email
    with ledger.db() as session:
        recorded = deliveries.record_sends(
            session, [(c, "sent", "smtp", f"id-{c.delivery.id}", {}) for c in claims], now=utcnow()
        )

    assert requeued == [] and second == [], "a live batch's rows were taken over"
    assert recorded == email


def test_a_batch_that_lost_its_lease_sends_none_of_the_rows_taken_over(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    accts = billing_run(ledger, 3, phone=None, push_tokens=None)
    email = queued(ledger, accts, "email")
    monkeypatch.setattr(ledger.runtime.settings, "lease_seconds", 1.0)
    started = time.monotonic()
    now = utcnow()
    with ledger.db() as session:
        stalled = deliveries.claim_many(
            session, email, token=uuid.uuid4().hex, now=now, lease_seconds=1
        )
    with ledger.db() as session:  # the stalled worker's lease ran out: another takes one row
        taken = deliveries.claim_many(
            session,
            email[:1],
            token=uuid.uuid4().hex,
            now=now + timedelta(seconds=5),
            lease_seconds=60,
        )
    time.sleep(1.0)  # the stall, past a renewal period

    with LeaseKeeper(ledger.runtime, stalled, claimed_at=started) as keeper:
        held = [c.delivery.id for c in keeper.held(stalled)]

    assert [c.delivery.id for c in taken] == email[:1]
    assert held == email[1:]


def test_outcomes_wait_for_a_database_that_is_briefly_away_instead_of_sending_again(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    accts = billing_run(ledger, 3, phone=None, push_tokens=None)
    email = queued(ledger, accts, "email")
    record = deliver_flow.record_outcomes
    attempts: list[int] = []

    def database_restarting(rt: Any, sends: Any) -> Any:
        attempts.append(len(sends))
        if len(attempts) < 3:
            raise sa.exc.OperationalError("UPDATE deliveries", {}, ConnectionError("restarting"))
        return record(rt, sends)

    monkeypatch.setattr(deliver_flow, "record_outcomes", database_restarting)

    outcome = deliver_batch(ledger.runtime, email)

    assert attempts == [3, 3, 3]
    assert set(outcome.statuses.values()) == {"sent"}
    assert set(statuses(ledger, email).values()) == {"sent"}


def test_a_print_batch_records_only_the_postcards_it_still_holds(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    from notifier.flows import postcards

    accts = billing_run(ledger, 3, phone=None, push_tokens=None, email=None)
    cards = queued(ledger, accts, "postcard")
    write_batch = postcards.write_batch

    def slow_printer(*args: Any, **kwargs: Any) -> Any:
        # The batch's lease ran out while the printer worked; another batch took one card.
        with ledger.db() as session:
            row = session.get(Delivery, cards[0])
            assert row is not None
            row.claim_token = "another-batch"
            session.add(row)
        return write_batch(*args, **kwargs)

    monkeypatch.setattr(postcards, "write_batch", slow_printer)
    tomorrow = (utcnow() + timedelta(days=1)).date()

    report = postcards.print_postcards(ledger.runtime, day=tomorrow)

    assert report is not None
    assert statuses(ledger, cards) == {cards[0]: "sending", cards[1]: "sent", cards[2]: "sent"}
    with ledger.db() as session:
        recorded = session.exec(
            select(DeliveryChange.delivery_id).where(
                col(DeliveryChange.delivery_id).in_(cards), DeliveryChange.status == "sent"
            )
        ).all()
    assert sorted(recorded) == cards[1:]


def test_a_print_run_with_only_postcards_not_yet_due_prints_nothing_and_fails_nothing(
    ledger: Ledger,
) -> None:
    from notifier.flows import postcards

    accts = billing_run(ledger, 2, phone=None, push_tokens=None, email=None)
    cards = queued(ledger, accts, "postcard")
    later = utcnow() + timedelta(hours=6)  # a retry's delay, say: queued, not due yet
    with ledger.db() as session:
        session.execute(
            sa.update(Delivery).where(col(Delivery.id).in_(cards)).values(available_at=later)
        )
    tomorrow = (utcnow() + timedelta(days=1)).date()

    assert postcards.print_postcards(ledger.runtime, day=tomorrow) is None
    assert set(statuses(ledger, cards).values()) == {"queued"}
