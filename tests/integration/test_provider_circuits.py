"""Our provider account is broken, not the customer: sends wait, nothing falls back, one probe.

Scenarios on SQLite and PostgreSQL, the real Twilio adapter against the
simulator (told to refuse at account level, as a wrong auth token or a
suspended account does), calling the delivery flow as the ``deliver_batch``
task does, on a clock the test moves (the circuit's probe time, the rows'
due times and the receipt stall all read it).
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select

from channels.simulators.twilio import TwilioSimulator
from notifier.accounts.models import Account
from notifier.db import utcnow
from notifier.deliveries.models import Delivery, DeliveryChange
from notifier.flows.deliver import deliver_batch
from notifier.flows.receipts import expire_receipts
from notifier.runtime import Runtime
from tests.support import events
from tests.support.ledger import Ledger
from tests.support.stack import need, postgres_database

OPEN_SECONDS = 300
_numbers = itertools.count(1000)


class Clock:
    """The runtime's clock: real time, plus however far the test moved it on.

    Real time under it, because rows are created at the real time (their due time).
    """

    def __init__(self) -> None:
        self.ahead = timedelta(0)

    def __call__(self) -> datetime:
        return utcnow() + self.ahead

    def advance(self, seconds: float) -> None:
        self.ahead += timedelta(seconds=seconds)


@pytest.fixture(scope="module")
def sim() -> Iterator[TwilioSimulator]:
    with TwilioSimulator(callback_delay=0.0) as simulator:
        yield simulator


def _ledger(database: str, folder: Path, sim: TwilioSimulator, sms: str, **extra: str) -> Ledger:
    env = {
        "NOTIFIER_TWILIO__ACCOUNT_SID": sim.account_sid,
        "NOTIFIER_TWILIO__AUTH_TOKEN": sim.auth_token,
        "NOTIFIER_TWILIO__FROM_NUMBER": "+886900000000",
        "NOTIFIER_TWILIO__BASE_URL": sim.base_url,
        # Nobody listens there: the sends' receipts never come (the stall scenario wants that).
        "NOTIFIER_PUBLIC_URL": "http://127.0.0.1:9",
        "NOTIFIER_PROVIDERS": json.dumps(
            {"sms": sms, "voice": "sandbox", "email": "sandbox", "push": "sandbox"}
        ),
        "NOTIFIER_RATE_LIMITS": "{}",
        "NOTIFIER_CIRCUIT_OPEN_SECONDS": str(OPEN_SECONDS),
        **extra,
    }
    if database == "sqlite":
        url = f"sqlite:///{folder / 'circuits.db'}"
    else:
        need("PostgreSQL", "127.0.0.1", 5432)
        url, drop = postgres_database()
        _drops.append(drop)
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        book = Ledger(url, folder)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    book.runtime.close()
    book.runtime = Runtime(book.runtime.settings, clock=Clock())
    return book


_drops: list[Any] = []


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest) -> Iterator[str]:
    yield request.param
    while _drops:
        _drops.pop()()


def clock(ledger: Ledger) -> Clock:
    tick = ledger.runtime.clock
    assert isinstance(tick, Clock)
    return tick


def sms_notices(ledger: Ledger, count: int) -> list[int]:
    """``count`` unpaid-bill notices to new accounts with a mobile only; their SMS ids."""
    accts = [
        events.account(phone=f"+88691234{next(_numbers):04d}", email=None, push_tokens=None)
        for _ in range(count)
    ]
    ledger.post(*(events.unpaid(acct) for acct in accts))
    with ledger.db() as session:
        return [
            i
            for i in session.exec(
                select(Delivery.id)
                .where(col(Delivery.account_no).in_([a["account_no"] for a in accts]))
                .order_by(col(Delivery.id))
            )
            if i is not None
        ]


def rows(ledger: Ledger, ids: list[int]) -> list[Delivery]:
    with ledger.db() as session:
        return list(
            session.exec(
                select(Delivery).where(col(Delivery.id).in_(ids)).order_by(col(Delivery.id))
            )
        )


def last_detail(ledger: Ledger, delivery_id: int | None) -> dict[str, Any]:
    with ledger.db() as session:
        change = session.exec(
            select(DeliveryChange)
            .where(DeliveryChange.delivery_id == delivery_id)
            .order_by(col(DeliveryChange.id).desc())
        ).first()
    assert change is not None
    return change.detail


def accepted_sends(ledger: Ledger, ids: list[int]) -> dict[int, int]:
    """Accepted sends per delivery, from each timeline (the service record of what went out)."""
    with ledger.db() as session:
        changes = session.exec(
            select(DeliveryChange).where(col(DeliveryChange.delivery_id).in_(ids))
        ).all()
    counts = dict.fromkeys(ids, 0)
    for change in changes:
        if change.detail.get("provider_id") and change.status in ("sent", "delivered"):
            counts[change.delivery_id] += 1
    return counts


def test_a_wrong_auth_token_holds_the_sms_without_fallback_until_the_probe_closes_the_circuit(
    database: str, tmp_path: Path, sim: TwilioSimulator
) -> None:
    sim.reset()
    ledger = _ledger(database, tmp_path, sim, "twilio")
    rt = ledger.runtime
    sim.refuse_account(20003)
    held = sms_notices(ledger, 3)

    deliver_batch(rt, held)

    assert sim.refused_requests == 3 and sim.messages == []
    for row in rows(ledger, held):
        assert (row.status, row.attempts) == ("queued", 0), "no attempt counted"
        reason = last_detail(ledger, row.id)["reason"]
        assert reason.startswith("provider twilio circuit open: 20003")
    accounts = {d.account_no for d in rows(ledger, held)}
    with ledger.db() as session:
        found = session.exec(select(Account).where(col(Account.account_no).in_(accounts))).all()
        assert all(a.phone and a.phone_invalid_reason is None for a in found), "no number blamed"
        others = session.exec(
            select(Delivery).where(
                col(Delivery.account_no).in_(accounts), col(Delivery.id).not_in(held)
            )
        ).all()
        assert others == [], "nothing fell back to voice or a postcard"
    [circuit] = rt.circuits.states()
    assert (circuit.provider, circuit.open, circuit.openings) == ("twilio", True, 1)
    assert "20003" in circuit.reason and sim.auth_token not in circuit.reason

    # While it is open, a new notice waits too, and Twilio is not asked.
    clock(ledger).advance(OPEN_SECONDS / 2)
    later = sms_notices(ledger, 1)
    deliver_batch(rt, later)
    assert sim.refused_requests == 3
    assert rows(ledger, later)[0].status == "queued"
    assert last_detail(ledger, later[0])["reason"].startswith("provider twilio circuit open")

    # At the probe time, still broken: one probe is refused, the others wait another period.
    clock(ledger).advance(OPEN_SECONDS)
    everyone = held + later
    deliver_batch(rt, everyone)
    assert sim.refused_requests == 4, "one probe send, not four"
    assert {r.status for r in rows(ledger, everyone)} == {"queued"}
    [circuit] = rt.circuits.states()
    assert (circuit.open, circuit.openings) == (True, 1)

    # The credential is fixed: the next probe goes through, closes it, and the rest follow.
    sim.refuse_account(None)
    clock(ledger).advance(OPEN_SECONDS)
    deliver_batch(rt, everyone)
    assert not rt.circuits.states()[0].open
    assert {r.status for r in rows(ledger, everyone)} == {"sent"}
    assert all(r.provider == "twilio" and r.attempts == 1 for r in rows(ledger, everyone))
    assert accepted_sends(ledger, everyone) == dict.fromkeys(everyone, 1)
    assert len(sim.messages) == len(everyone), "each exactly once"


def test_the_next_provider_takes_the_sms_while_the_first_ones_circuit_is_open_and_back_after(
    database: str, tmp_path: Path, sim: TwilioSimulator
) -> None:
    sim.reset()
    ledger = _ledger(database, tmp_path, sim, "twilio,sandbox")
    rt = ledger.runtime
    sim.refuse_account(20005)  # the account ran out of funds
    first = sms_notices(ledger, 2)

    deliver_batch(rt, first)  # refused: held, and due again at once
    assert {r.status for r in rows(ledger, first)} == {"queued"}
    deliver_batch(rt, first)  # re-routed to the standby
    assert [r.provider for r in rows(ledger, first)] == ["sandbox", "sandbox"]
    assert {r.status for r in rows(ledger, first)} == {"delivered"}  # the sandbox says so at once
    assert sim.refused_requests == 2 and sim.messages == []

    # Twilio works again: at the probe time one notice goes to it, the rest to the standby.
    sim.refuse_account(None)
    clock(ledger).advance(OPEN_SECONDS)
    second = sms_notices(ledger, 3)
    deliver_batch(rt, second)
    providers = sorted(r.provider or "" for r in rows(ledger, second))
    assert providers == ["sandbox", "sandbox", "twilio"]
    assert not rt.circuits.states()[0].open

    third = sms_notices(ledger, 2)
    deliver_batch(rt, third)
    assert [r.provider for r in rows(ledger, third)] == ["twilio", "twilio"], "traffic is back"
    everyone = first + second + third
    assert accepted_sends(ledger, everyone) == dict.fromkeys(everyone, 1)
    assert len(sim.messages) == 3


def test_receipts_that_stall_move_the_sms_to_the_next_provider_until_they_clear(
    database: str, tmp_path: Path, sim: TwilioSimulator
) -> None:
    sim.reset()
    ledger = _ledger(
        database,
        tmp_path,
        sim,
        "twilio,sandbox",
        NOTIFIER_RECEIPT_STALL_COUNT="2",
        NOTIFIER_RECEIPT_STALL_SECONDS="600",
    )
    rt = ledger.runtime
    unreported = sms_notices(ledger, 2)
    deliver_batch(rt, unreported)
    assert [r.status for r in rows(ledger, unreported)] == ["sent", "sent"]  # no report comes

    clock(ledger).advance(601)
    during = sms_notices(ledger, 2)
    deliver_batch(rt, during)
    assert [r.provider for r in rows(ledger, during)] == ["sandbox", "sandbox"]

    # The receipt sweep gives the two up (unknown): twilio's reports no longer stall.
    clock(ledger).advance(rt.settings.receipt_timeout_seconds)
    with ledger.db() as session:
        expire_receipts(rt, session, limit=100)
    after = sms_notices(ledger, 1)
    deliver_batch(rt, after)
    assert [r.provider for r in rows(ledger, after)] == ["twilio"]


def test_weights_share_the_sms_among_healthy_providers_and_a_dead_ones_share_moves(
    database: str, tmp_path: Path, sim: TwilioSimulator
) -> None:
    sim.reset()
    ledger = _ledger(database, tmp_path, sim, "twilio:1,sandbox:1")
    rt = ledger.runtime
    shared = sms_notices(ledger, 4)

    deliver_batch(rt, shared)
    providers = [r.provider for r in rows(ledger, shared)]
    assert sorted(p or "" for p in providers) == ["sandbox", "sandbox", "twilio", "twilio"]

    sim.refuse_account(21606)  # our sender number lost its SMS capability
    refused = sms_notices(ledger, 4)
    deliver_batch(rt, refused)  # twilio's half is refused and held, due again at once
    deliver_batch(rt, refused)
    assert [r.provider for r in rows(ledger, refused)] == ["sandbox"] * 4
    assert accepted_sends(ledger, shared + refused) == dict.fromkeys(shared + refused, 1)
