"""The ledger as the collection staff live it: payments, reversals, corrections, bill
kinds, and notices that state only what the ledger says when they go out.

One account at a time, on named dates (the service's clock is set to 10:00 in
Taipei on each): bills issued, notices queued, payments posted, the queue sent
through the sandbox channels (whose outbox records what the customer got).
Bimonthly bills fall due on the 20th of odd months: B07 on 20 Sep, B09 on
20 Nov, B11 on 20 Jan.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlmodel import col, select

from notifier.billing.models import Bill, Payment
from notifier.db import utcnow
from notifier.deliveries.models import Delivery, Notification
from notifier.deliveries.service import timeline
from notifier.flows.deliver import deliver_batch
from tests.support import events
from tests.support.ledger import Ledger

TAIPEI = ZoneInfo("Asia/Taipei")
SEP_20, OCT_5, NOV_19, NOV_20 = date(2026, 9, 20), date(2026, 10, 5), date(2026, 11, 19), date(2026, 11, 20)  # fmt: skip
NOV_27, DEC_20 = date(2026, 11, 27), date(2026, 12, 20)


class Calendar:
    """The service's clock, moved to 10:00 Taipei on the day a scenario names."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.now = datetime.combine(NOV_27, time(10), tzinfo=TAIPEI)

    def on(self, day: date) -> None:
        self.now = datetime.combine(day, time(10), tzinfo=TAIPEI)


@pytest.fixture
def calendar(ledger: Ledger) -> Iterator[Calendar]:
    cal = Calendar(ledger)
    ledger.runtime.clock = lambda: cal.now.astimezone(UTC)
    yield cal
    ledger.runtime.clock = utcnow


# -- the producer, as the billing system posts ------------------------------------------


def unpaid(
    ledger: Ledger, acct: dict[str, Any], period: str, due: date, amount: int = 1830, level: int = 1
) -> dict[str, Any]:
    event = events.unpaid(acct, period=period, due=due, amount=amount, level=level)
    ledger.post(event)
    bill: dict[str, Any] = event["bill"]
    return bill


def issue(
    ledger: Ledger, acct: dict[str, Any], period: str, due: date, amount: int = 1830,
    kind: str = "regular",
) -> dict[str, Any]:  # fmt: skip
    event = events.unpaid(acct, period=period, due=due, amount=amount)
    event["type"] = "bill.issued"
    event.pop("level")
    event["bill"]["kind"] = kind
    if kind != "regular":
        event["bill"]["bill_no"] += f"-{kind[:3].upper()}"
    ledger.post(event)
    bill: dict[str, Any] = event["bill"]
    return bill


def pay(
    ledger: Ledger,
    acct: dict[str, Any],
    bill: dict[str, Any],
    amount: int | None,
    on: date,
    *,
    reverse: bool = False,
) -> dict[str, Any] | None:
    """``bill.paid`` (``amount`` None: in full) or ``bill.payment_reversed``; the payment."""
    event = events.paid(acct)
    event["bill"] = bill
    event["occurred_at"] = f"{on.isoformat()}T10:00:00+08:00"
    payment = None
    if amount is not None:
        payment = {"amount": amount, "paid_at": f"{on}T09:30:00+08:00", "method": "超商"}
        event["payment"] = payment
    if reverse:
        event["type"] = "bill.payment_reversed"
    ledger.post(event)
    return payment


# -- what the service did ----------------------------------------------------------------


def the_bill(ledger: Ledger, bill: dict[str, Any]) -> Bill:
    with ledger.db() as session:
        found = session.get(Bill, bill["bill_no"])
        assert found is not None
        return found


def deliveries(ledger: Ledger, acct: dict[str, Any], type_: str = "bill.unpaid") -> list[Delivery]:
    with ledger.db() as session:
        return list(
            session.exec(
                select(Delivery)
                .join(Notification, col(Notification.id) == col(Delivery.notification_id))
                .where(Delivery.account_no == acct["account_no"], Notification.type == type_)
                .order_by(col(Delivery.id))
            )
        )


def one(rows: list[Delivery], channel: str) -> Delivery:
    [row] = [d for d in rows if d.channel == channel]
    return row


def send(ledger: Ledger, *rows: Delivery) -> dict[int, str]:
    """Run the queue for these deliveries as a worker would; the status each was left in."""
    ids = [d.id for d in rows if d.id is not None]
    with ledger.db() as session:
        # Rows are stamped by the wall clock; on the scenario's calendar they are due now.
        session.execute(
            sa.update(Delivery)
            .where(col(Delivery.id).in_(ids))
            .values(available_at=ledger.runtime.clock())
        )
    return deliver_batch(ledger.runtime, ids).statuses


def outbox(ledger: Ledger, channel: str, delivery_id: int | None) -> str:
    """The body the sandbox provider got for ``delivery_id`` (what the customer read)."""
    path = ledger.runtime.settings.sandbox_dir / f"{channel}.jsonl"
    sent = [json.loads(line) for line in path.read_text().splitlines()]
    [body] = [m["body"] for m in sent if m["delivery_id"] == delivery_id]
    return str(body)


def reloaded(ledger: Ledger, row: Delivery) -> Delivery:
    with ledger.db() as session:
        found = session.get(Delivery, row.id)
        assert found is not None
        return found


def account(ledger: Ledger) -> dict[str, Any]:
    # No email: the SMTP catcher is not part of this ledger; SMS and push go to the sandbox.
    return events.account(area=ledger.new_area(), email=None)


# -- 1. partial payments and reversals ---------------------------------------------------


def test_a_partial_payment_leaves_the_rest_owed_and_the_level_2_sms_says_830(
    ledger: Ledger, calendar: Calendar
) -> None:
    acct = account(ledger)
    calendar.on(NOV_27)
    b09 = unpaid(ledger, acct, "2026-09", NOV_20, level=2)
    sms = one(deliveries(ledger, acct), "sms")
    assert "NT$1,830" in sms.content["body"]

    pay(ledger, acct, b09, 1000, NOV_27)

    bill = the_bill(ledger, b09)
    assert (bill.amount, bill.paid_amount, bill.owed, bill.paid_at) == (1830, 1000, 830, None)
    assert send(ledger, sms)[sms.id or 0] == "delivered"
    said = outbox(ledger, "sms", sms.id)
    assert "NT$830" in said and "NT$1,830" not in said
    assert "115年11月20日已過" in said
    assert reloaded(ledger, sms).content["body"] == said


def test_two_partial_payments_add_up_and_settle_the_bill(
    ledger: Ledger, calendar: Calendar
) -> None:
    acct = account(ledger)
    calendar.on(NOV_27)
    b09 = unpaid(ledger, acct, "2026-09", NOV_20, level=2)

    pay(ledger, acct, b09, 1000, NOV_27)
    assert the_bill(ledger, b09).paid_at is None
    calendar.on(date(2026, 11, 30))
    pay(ledger, acct, b09, 830, date(2026, 11, 30))

    bill = the_bill(ledger, b09)
    assert (bill.paid_amount, bill.owed) == (1830, 0)
    assert bill.paid_at == datetime(2026, 11, 30, 9, 30, tzinfo=TAIPEI)
    # Settled: what was still waiting to go out about it is cancelled.
    assert {d.status for d in deliveries(ledger, acct)} == {"cancelled"}


def test_an_overpayment_is_recorded_as_a_credit(ledger: Ledger, calendar: Calendar) -> None:
    acct = account(ledger)
    b09 = unpaid(ledger, acct, "2026-09", NOV_20)

    pay(ledger, acct, b09, 2000, NOV_27)

    bill = the_bill(ledger, b09)
    assert (bill.paid_amount, bill.owed, bill.credit) == (2000, 0, 170)
    assert bill.paid_at is not None


def test_a_reversal_reopens_what_the_payment_settled(ledger: Ledger, calendar: Calendar) -> None:
    acct = account(ledger)
    calendar.on(NOV_19)
    b09 = unpaid(ledger, acct, "2026-09", NOV_20)
    pay(ledger, acct, b09, None, NOV_19)  # in full
    assert the_bill(ledger, b09).paid_at is not None

    calendar.on(NOV_27)  # the auto-debit bounced
    pay(ledger, acct, b09, 1830, NOV_19, reverse=True)

    bill = the_bill(ledger, b09)
    assert (bill.paid_amount, bill.owed, bill.paid_at) == (0, 1830, None)
    with ledger.db() as session:
        [payment] = session.exec(select(Payment).where(Payment.bill_no == b09["bill_no"])).all()
    assert payment.reversed_at is not None and payment.reversed_by is not None
    # Owed again: a new reminder tells the whole amount.
    unpaid(ledger, acct, "2026-09", NOV_20, level=2)
    sms = [d for d in deliveries(ledger, acct) if d.channel == "sms" and d.status == "queued"]
    assert "NT$1,830" in sms[0].content["body"]


def test_a_reversal_of_one_of_two_partials_reopens_only_that_part(
    ledger: Ledger, calendar: Calendar
) -> None:
    acct = account(ledger)
    b09 = unpaid(ledger, acct, "2026-09", NOV_20)
    pay(ledger, acct, b09, 1000, NOV_20)
    pay(ledger, acct, b09, 830, NOV_27)
    assert the_bill(ledger, b09).paid_at is not None

    pay(ledger, acct, b09, 830, NOV_27, reverse=True)

    bill = the_bill(ledger, b09)
    assert (bill.paid_amount, bill.owed, bill.paid_at) == (1000, 830, None)


# -- 2. corrections ----------------------------------------------------------------------


def test_a_corrected_amount_is_sent_as_a_correction_where_the_old_one_went_out(
    ledger: Ledger, calendar: Calendar
) -> None:
    acct = account(ledger)
    calendar.on(NOV_19)
    unpaid(ledger, acct, "2026-09", NOV_20, amount=1830)
    sent = deliveries(ledger, acct)
    send(ledger, *sent)
    assert {d.channel for d in sent} == {"sms", "push"}

    unpaid(ledger, acct, "2026-09", NOV_20, amount=1530)  # the billing side fixed it

    assert the_bill(ledger, {"bill_no": f"B202609-{acct['account_no']}"}).amount == 1530
    corrections = deliveries(ledger, acct, "bill.corrected")
    assert {d.channel for d in corrections} == {"sms", "push"}
    send(ledger, *corrections)
    said = outbox(ledger, "sms", one(corrections, "sms").id)
    assert said.startswith("【電費更正】王小明您好，電號") and "NT$1,530" in said
    assert "NT$1,830" in one(corrections, "push").content["body"]  # the old amount, named


def test_a_correction_re_renders_a_queued_notice_and_sends_no_correction(
    ledger: Ledger, calendar: Calendar
) -> None:
    acct = account(ledger)
    calendar.on(NOV_19)
    unpaid(ledger, acct, "2026-09", NOV_20, amount=1830)
    unpaid(ledger, acct, "2026-09", date(2026, 11, 30), amount=1530)
    # The corrected event is a repeat of the notice (suppressed); the queued one stands.
    rows = deliveries(ledger, acct)
    assert sorted(d.status for d in rows if d.channel == "sms") == ["queued", "suppressed"]
    queued = one([d for d in rows if d.status == "queued"], "sms")
    assert "NT$1,830" in queued.content["body"]

    send(ledger, queued)

    said = outbox(ledger, "sms", queued.id)
    assert "NT$1,530" in said and "115年11月30日" in said and "NT$1,830" not in said
    assert reloaded(ledger, queued).content["body"] == said
    assert deliveries(ledger, acct, "bill.corrected") == []


def test_corrections_can_be_switched_off(ledger: Ledger, calendar: Calendar) -> None:
    acct = account(ledger)
    unpaid(ledger, acct, "2026-09", NOV_20, amount=1830)
    send(ledger, *deliveries(ledger, acct))
    ledger.runtime.policy.corrections.notify = False
    try:
        unpaid(ledger, acct, "2026-09", NOV_20, amount=1530)
    finally:
        ledger.runtime.policy.corrections.notify = True
    assert deliveries(ledger, acct, "bill.corrected") == []


# -- 3. no stale text --------------------------------------------------------------------


def test_a_queued_notice_whose_other_bill_was_paid_since_is_rendered_again(
    ledger: Ledger, calendar: Calendar
) -> None:
    acct = account(ledger)
    calendar.on(NOV_27)
    b07 = issue(ledger, acct, "2026-07", SEP_20, amount=2100)
    unpaid(ledger, acct, "2026-09", NOV_20, amount=1830, level=2)
    sms = one(deliveries(ledger, acct), "sms")
    assert "有2期電費共NT$3,930未繳" in sms.content["body"]

    pay(ledger, acct, b07, None, NOV_27)
    send(ledger, sms)

    said = outbox(ledger, "sms", sms.id)
    assert "115年9月電費NT$1,830，期限115年11月20日已過" in said
    assert "NT$3,930" not in said and "2期" not in said
    stored = reloaded(ledger, sms)
    assert stored.content["body"] == said
    with ledger.db() as session:
        notes = [c.detail.get("reason") for c in timeline(session, stored.id or 0)]
    assert "the ledger changed since it was rendered: rendered again" in notes


def test_an_unchanged_ledger_sends_the_text_as_rendered(ledger: Ledger, calendar: Calendar) -> None:
    acct = account(ledger)
    unpaid(ledger, acct, "2026-09", NOV_20, level=2)
    sms = one(deliveries(ledger, acct), "sms")

    send(ledger, sms)

    assert outbox(ledger, "sms", sms.id) == sms.content["body"]
    with ledger.db() as session:
        notes = [c.detail.get("reason") for c in timeline(session, sms.id or 0)]
    assert not any("rendered again" in str(note) for note in notes)


# -- 4. only overdue bills are called overdue --------------------------------------------


def test_a_level_2_notice_lists_only_the_overdue_bill_in_its_total(
    ledger: Ledger, calendar: Calendar
) -> None:
    acct = account(ledger)
    calendar.on(NOV_27)
    issue(ledger, acct, "2026-11", DEC_20, amount=2000)
    unpaid(ledger, acct, "2026-09", NOV_20, amount=1830, level=2)
    rows = deliveries(ledger, acct)

    sms = one(rows, "sms").content["body"]
    assert sms.startswith("【電費催繳】王小明您好，電號")
    assert "115年9月電費NT$1,830，期限115年11月20日已過" in sms
    assert "NT$3,830" not in sms and "NT$2,000" not in sms

    push = one(rows, "push").content["body"]
    assert "NT$1,830" in push and "NT$3,830" not in push
    assert "尚未到期：115年11月電費NT$2,000，期限115年12月20日" in push


def test_a_bill_due_tomorrow_is_not_called_overdue(ledger: Ledger, calendar: Calendar) -> None:
    acct = account(ledger)
    calendar.on(NOV_19)
    unpaid(ledger, acct, "2026-09", NOV_20, level=2)

    sms = one(deliveries(ledger, acct), "sms").content["body"]
    assert "已過" not in sms and "催繳" not in sms
    assert "115年11月20日" in sms


# -- 5. bill kinds -----------------------------------------------------------------------


def test_a_supplementary_bill_is_not_the_next_bill_a_later_regular_one_is(
    ledger: Ledger, calendar: Calendar
) -> None:
    acct = events.account(area=ledger.new_area())
    issue(ledger, acct, "2026-07", SEP_20)
    issue(ledger, acct, "2026-07", OCT_5, amount=420, kind="supplementary")  # 追補, 15 days on

    ledger.sweep(OCT_5)
    ledger.sweep(NOV_19)
    assert ledger.cases(acct["account_no"]) == []

    issue(ledger, acct, "2026-09", NOV_20)
    ledger.sweep(NOV_20)
    [(case, bills)] = ledger.cases(acct["account_no"])
    assert case.opened_on == NOV_20
    assert f"B202607-{acct['account_no']}" in bills


def test_a_final_bill_does_not_set_the_second_billing_date(
    ledger: Ledger, calendar: Calendar
) -> None:
    acct = events.account(area=ledger.new_area())
    issue(ledger, acct, "2026-07", SEP_20)
    issue(ledger, acct, "2026-09", date(2026, 10, 10), amount=500, kind="final")

    ledger.sweep(date(2026, 10, 10))
    assert ledger.cases(acct["account_no"]) == []
    ledger.sweep(NOV_20)  # due date plus the two-month cycle
    assert ledger.open_case(acct["account_no"]) is not None
