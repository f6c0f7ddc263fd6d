"""An ambiguous send is settled by its report, its lookup or the wait; never sent blindly again.

Scenarios on SQLite and PostgreSQL (the ``ledger`` fixture, sandbox providers,
which cannot be asked): a claimed SMS's send ends in an
:class:`~channels.AmbiguousChannelError`, recorded as the worker records it;
then the report, the resolution task or the reconciler's sweep comes, as
each does in the running service.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, select

from channels import AmbiguousChannelError
from notifier.deliveries import service as deliveries
from notifier.deliveries.models import Delivery, DeliveryChange
from notifier.flows.ambiguous import overdue, resolve
from notifier.flows.deliver import BatchOutcome, record_outcomes
from notifier.flows.reports import record_report
from tests.support import events
from tests.support.ledger import Ledger


def ambiguous_sms(ledger: Ledger, *, reported: str | None = None) -> tuple[Delivery, BatchOutcome]:
    """A phone-only account's dunning SMS, claimed and sent; the answer was lost.

    ``reported``: Twilio's id of the message, reported (``delivered``) while the send
    was still waiting for its answer."""
    acct = events.account(email=None, push_tokens=None)
    ledger.post(events.unpaid(acct))
    rt = ledger.runtime
    with ledger.db() as session:
        [sms] = session.exec(
            select(Delivery).where(Delivery.account_no == acct["account_no"])
        ).all()
        assert sms.id is not None
        claims = deliveries.claim_many(
            session, [sms.id], token=uuid.uuid4().hex, now=rt.clock(), lease_seconds=60
        )
    if reported:
        record_report(
            rt, sms.id, "delivered", provider="twilio", sid=reported, provider_status="delivered"
        )
    lost = AmbiguousChannelError("read timeout after the request left", code="no_answer")
    outcome = record_outcomes(rt, [(claims[0], lost)])
    return current(ledger, sms.id), outcome


def current(ledger: Ledger, delivery_id: int | None) -> Delivery:
    with ledger.db() as session:
        row = session.get(Delivery, delivery_id)
        assert row is not None
        session.expunge(row)
        return row


def changes(ledger: Ledger, delivery_id: int | None) -> list[tuple[str, dict[str, Any]]]:
    with ledger.db() as session:
        found = session.exec(
            select(DeliveryChange)
            .where(DeliveryChange.delivery_id == delivery_id)
            .order_by(col(DeliveryChange.id))
        ).all()
        return [(c.status, c.detail) for c in found]


def wait_over(ledger: Ledger, delivery_id: int | None) -> None:
    """The clock past the ambiguous wait: its ``available_at`` moved into the past."""
    with ledger.db() as session:
        session.execute(
            sa.update(Delivery)
            .where(col(Delivery.id) == delivery_id)
            .values(available_at=ledger.runtime.clock() - timedelta(minutes=5))
        )


def test_an_ambiguous_send_counts_an_attempt_and_waits_for_its_resolution(
    ledger: Ledger,
) -> None:
    sms, outcome = ambiguous_sms(ledger)

    assert (sms.status, sms.attempts, sms.claim_token, sms.lease_until) == (
        "ambiguous", 1, None, None,
    )  # fmt: skip
    assert sms.last_error is not None and "read timeout" in sms.last_error
    assert outcome.later == {} and outcome.enqueue == [], "nothing is sent again"
    wait = ledger.runtime.settings.ambiguous_wait_seconds
    assert outcome.resolve == {float(wait): [(sms.id, "sms")]}, "sandbox: no lookup, the wait"
    [(_, detail)] = [c for c in changes(ledger, sms.id) if c[0] == "ambiguous"]
    assert "provider may have it" in detail["reason"]


def test_a_status_report_settles_an_ambiguous_sms_as_sent_with_its_id(ledger: Ledger) -> None:
    sms, _ = ambiguous_sms(ledger)
    assert sms.id is not None

    after = record_report(
        ledger.runtime,
        sms.id,
        "delivered",
        provider="twilio",
        sid="SM" + "7" * 32,
        provider_status="delivered",
    )

    assert after.status == "delivered"
    settled = current(ledger, sms.id)
    assert (settled.status, settled.provider_id, settled.attempts) == (
        "delivered", "SM" + "7" * 32, 1,
    )  # fmt: skip
    statuses = [status for status, _ in changes(ledger, sms.id)]
    assert statuses[-2:] == ["sent", "delivered"]
    assert resolve(ledger.runtime, [sms.id]).statuses == {}, "already settled: left alone"


def test_a_report_that_came_while_sending_settles_it_at_the_first_resolution(
    ledger: Ledger,
) -> None:
    sid = "SM" + "8" * 32
    sms, _ = ambiguous_sms(ledger, reported=sid)
    assert sms.status == "ambiguous"

    outcome = resolve(ledger.runtime, [sms.id or 0])

    assert outcome.statuses == {sms.id: "delivered"} and outcome.enqueue == []
    settled = current(ledger, sms.id)
    assert (settled.status, settled.provider_id) == ("delivered", sid)
    [(_, found)] = [c for c in changes(ledger, sms.id) if c[0] == "sent"]
    assert found["found_by"] == "report"


def test_before_the_wait_is_over_nothing_is_sent_again(ledger: Ledger) -> None:
    sms, _ = ambiguous_sms(ledger)

    outcome = resolve(ledger.runtime, [sms.id or 0])

    assert current(ledger, sms.id).status == "ambiguous"
    assert outcome.enqueue == [] and outcome.statuses == {}
    [(delay, items)] = outcome.resolve.items()
    assert items == [(sms.id, "sms")] and delay <= ledger.runtime.settings.ambiguous_wait_seconds


def test_a_lost_resolution_is_found_by_the_sweep_and_the_sms_sent_again_once(
    ledger: Ledger,
) -> None:
    sms, _ = ambiguous_sms(ledger)
    wait_over(ledger, sms.id)

    with ledger.db() as session:
        owed = overdue(ledger.runtime, session, limit=1000)
    assert (sms.id, "sms") in owed
    first = resolve(ledger.runtime, [sms.id or 0])
    again = resolve(ledger.runtime, [sms.id or 0])  # a redelivered task, or the sweep's

    assert first.enqueue == [(sms.id, "sms")]
    assert again.enqueue == [] and again.statuses == {}
    resent = current(ledger, sms.id)
    assert (resent.status, resent.attempts) == ("queued", 1)
    [(_, detail)] = [c for c in changes(ledger, sms.id) if c[1].get("ambiguous_resend")]
    assert "sent again once" in detail["reason"]


def test_ambiguous_again_after_the_one_resend_ends_unknown_and_falls_back(
    ledger: Ledger,
) -> None:
    sms, _ = ambiguous_sms(ledger)
    wait_over(ledger, sms.id)
    resolve(ledger.runtime, [sms.id or 0])  # sent again once
    rt = ledger.runtime
    with ledger.db() as session:
        claims = deliveries.claim_many(
            session, [sms.id or 0], token=uuid.uuid4().hex, now=rt.clock(), lease_seconds=60
        )
    record_outcomes(rt, [(claims[0], AmbiguousChannelError("reset", code="no_answer"))])
    wait_over(ledger, sms.id)

    outcome = resolve(rt, [sms.id or 0])

    assert current(ledger, sms.id).status == "unknown"
    assert [channel for _, channel in outcome.enqueue] == ["voice"], "a dunning notice goes on"
    with ledger.db() as session:
        fallback = session.exec(select(Delivery).where(Delivery.fallback_of == sms.id)).one()
    assert fallback.channel == "voice"


def claimed_sms(ledger: Ledger) -> tuple[Delivery, deliveries.Claim]:
    """A phone-only account's dunning SMS, claimed by a worker that then stopped renewing
    its lease (it died, or sent and could not record): the lease is over."""
    acct = events.account(email=None, push_tokens=None)
    ledger.post(events.unpaid(acct))
    rt = ledger.runtime
    with ledger.db() as session:
        [sms] = session.exec(
            select(Delivery).where(Delivery.account_no == acct["account_no"])
        ).all()
        assert sms.id is not None
        [claim] = deliveries.claim_many(
            session, [sms.id], token=uuid.uuid4().hex, now=rt.clock(), lease_seconds=60
        )
        session.execute(
            sa.update(Delivery)
            .where(col(Delivery.id) == sms.id)
            .values(lease_until=rt.clock() - timedelta(seconds=1))
        )
    return current(ledger, sms.id), claim


def test_a_send_whose_lease_ran_out_is_held_ambiguous_not_queued_again(ledger: Ledger) -> None:
    sms, claim = claimed_sms(ledger)
    rt = ledger.runtime
    wait = rt.settings.ambiguous_wait_seconds

    with ledger.db() as session:
        requeued = deliveries.requeue_due(session, now=rt.clock(), redispatch_after=60, limit=100)
        held = deliveries.hold_expired_leases(session, now=rt.clock(), wait=wait, limit=100)
    with ledger.db() as session:  # the worker that sent it comes back too late to record it
        late = deliveries.record_sends(
            session, [(claim, "sent", "twilio", "SM" + "9" * 32, {})], now=rt.clock()
        )

    assert (sms.id, "sms") not in requeued, "not sent again blindly"
    assert held == [(sms.id, "sms")] and late == []
    row = current(ledger, sms.id)
    assert (row.status, row.attempts, row.claim_token, row.lease_until) == (
        "ambiguous", 1, None, None,
    )  # fmt: skip
    [(_, detail)] = [c for c in changes(ledger, sms.id) if c[0] == "ambiguous"]
    assert detail["lease_expired"] and "may have sent it" in detail["reason"]


def test_a_send_whose_lease_ran_out_goes_again_once_after_the_wait(ledger: Ledger) -> None:
    sms, _ = claimed_sms(ledger)
    rt = ledger.runtime
    with ledger.db() as session:
        deliveries.hold_expired_leases(
            session, now=rt.clock(), wait=rt.settings.ambiguous_wait_seconds, limit=100
        )

    early = resolve(rt, [sms.id or 0])
    assert early.enqueue == [] and current(ledger, sms.id).status == "ambiguous"
    wait_over(ledger, sms.id)
    late = resolve(rt, [sms.id or 0])

    assert late.enqueue == [(sms.id, "sms")], "sandbox: cannot be asked, sent again once"
    assert current(ledger, sms.id).status == "queued"


def test_a_report_that_came_before_the_lease_ran_out_settles_it_without_a_resend(
    ledger: Ledger,
) -> None:
    sms, _ = claimed_sms(ledger)
    rt = ledger.runtime
    sid = "SM" + "6" * 32
    record_report(rt, sms.id or 0, "delivered", provider="twilio", sid=sid,
                  provider_status="delivered")  # fmt: skip
    with ledger.db() as session:
        deliveries.hold_expired_leases(
            session, now=rt.clock(), wait=rt.settings.ambiguous_wait_seconds, limit=100
        )

    outcome = resolve(rt, [sms.id or 0])

    assert outcome.statuses == {sms.id: "delivered"} and outcome.enqueue == []
    assert (current(ledger, sms.id).provider_id) == sid
