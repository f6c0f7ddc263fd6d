"""An SMS or call whose receipt never comes becomes ``unknown``; a dunning notice falls back.

Scenarios on SQLite and PostgreSQL (the ``ledger`` fixture): the send is
recorded as Twilio's, the clock moves past the receipt timeout, and the
reconciler's sweep runs as it does every few seconds.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlmodel import col, select

from notifier.db import utcnow
from notifier.deliveries.models import Delivery, DeliveryChange
from notifier.flows.receipts import expire_receipts
from notifier.flows.reports import record_report
from tests.support import events
from tests.support.ledger import Ledger


def sent_long_ago(ledger: Ledger, event: dict[str, Any]) -> Delivery:
    """Post ``event`` for a phone-only account; its SMS handed to Twilio hours ago, no receipt."""
    ledger.post(event)
    hours = ledger.runtime.settings.receipt_timeout_seconds / 3600 + 1
    with ledger.db() as session:
        [sms] = session.exec(
            select(Delivery).where(Delivery.account_no == event["account"]["account_no"])
        ).all()
        sms.status, sms.provider, sms.provider_id = "sent", "twilio", f"SM{sms.id:032d}"
        sms.attempts, sms.updated_at = 1, utcnow() - timedelta(hours=hours)
        session.add(sms)
        session.flush()
        session.refresh(sms)
        session.expunge(sms)
    return sms


def sweep(ledger: Ledger) -> list[tuple[int, str]]:
    with ledger.db() as session:
        return expire_receipts(ledger.runtime, session, limit=100)


def rows(ledger: Ledger, account_no: str) -> list[tuple[str, str, int | None]]:
    with ledger.db() as session:
        found = session.exec(
            select(Delivery).where(Delivery.account_no == account_no).order_by(col(Delivery.id))
        ).all()
        return [(d.channel, d.status, d.fallback_of) for d in found]


def changes(ledger: Ledger, delivery_id: int | None) -> list[tuple[str, dict[str, Any]]]:
    with ledger.db() as session:
        found = session.exec(
            select(DeliveryChange)
            .where(DeliveryChange.delivery_id == delivery_id)
            .order_by(col(DeliveryChange.id))
        ).all()
        return [(c.status, c.detail) for c in found]


def report(ledger: Ledger, sms: Delivery, status: str) -> str | None:
    assert sms.id is not None and sms.provider_id is not None
    return record_report(
        ledger.runtime,
        sms.id,
        status,
        provider="twilio",
        sid=sms.provider_id,
        provider_status=status,
    ).status


def test_an_unreceipted_dunning_sms_is_unknown_and_falls_back(ledger: Ledger) -> None:
    acct = events.account(email=None, push_tokens=None)
    sms = sent_long_ago(ledger, events.unpaid(acct))
    enqueued = sweep(ledger)
    assert rows(ledger, acct["account_no"]) == [
        ("sms", "unknown", None),
        ("voice", "queued", sms.id),
    ]
    assert [channel for _, channel in enqueued] == ["voice"]
    unknown = [detail for status, detail in changes(ledger, sms.id) if status == "unknown"]
    assert "no receipt" in unknown[0]["reason"]
    assert unknown[1]["fallback"].startswith("voice delivery")
    assert sweep(ledger) == []  # once only


def test_a_late_receipt_settles_unknown_forward_but_never_back(ledger: Ledger) -> None:
    acct = events.account(email=None, push_tokens=None)
    sms = sent_long_ago(ledger, events.unpaid(acct))
    sweep(ledger)
    assert report(ledger, sms, "sent") == "unknown"  # progress: no change
    assert report(ledger, sms, "delivered") == "delivered"
    assert report(ledger, sms, "undelivered") == "delivered"  # never back
    assert rows(ledger, acct["account_no"])[0] == ("sms", "delivered", None)


def test_a_late_failure_after_unknown_starts_no_second_fallback(ledger: Ledger) -> None:
    acct = events.account(email=None, push_tokens=None)
    sms = sent_long_ago(ledger, events.unpaid(acct))
    sweep(ledger)
    assert report(ledger, sms, "undelivered") == "undelivered"
    assert rows(ledger, acct["account_no"]) == [
        ("sms", "undelivered", None),
        ("voice", "queued", sms.id),
    ]


def test_an_unreceipted_usage_alert_is_unknown_without_a_fallback(ledger: Ledger) -> None:
    acct = events.account(email=None, push_tokens=None)
    sms = sent_long_ago(ledger, events.abnormal_usage(acct))
    assert sweep(ledger) == []
    assert rows(ledger, acct["account_no"]) == [("sms", "unknown", None)]
    # Its failure reported late still looks for a fallback: a call, now that usage
    # alerts have a voice notice (they reach everyone, issue 17).
    assert report(ledger, sms, "failed") == "failed"
    assert rows(ledger, acct["account_no"]) == [
        ("sms", "failed", None),
        ("voice", "queued", sms.id),
    ]


def test_a_recent_send_and_a_non_reporting_provider_are_left_alone(ledger: Ledger) -> None:
    acct = events.account(email=None, push_tokens=None)
    sms = sent_long_ago(ledger, events.unpaid(acct))
    with ledger.db() as session:
        row = session.get(Delivery, sms.id)
        assert row is not None
        row.provider = "smtp"  # SMTP's sent is final already
        session.add(row)
    other = events.account(email=None, push_tokens=None)
    fresh = sent_long_ago(ledger, events.unpaid(other))
    with ledger.db() as session:
        row = session.get(Delivery, fresh.id)
        assert row is not None
        row.updated_at = utcnow()
        session.add(row)
    sweep(ledger)
    assert rows(ledger, acct["account_no"]) == [("sms", "sent", None)]
    assert rows(ledger, other["account_no"]) == [("sms", "sent", None)]
