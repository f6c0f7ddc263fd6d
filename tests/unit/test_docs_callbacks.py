"""The callbacks page (docs/callbacks.md) shows every callback type the code sends, each
with an example whose fields are those of the body the code writes: the bodies here are
made by the real functions, on a SQLite database, for one producer with a URL."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, SQLModel, select

import notifier.models  # noqa: F401  (every table, for create_all)
from notifier.accounts.models import Account
from notifier.auth import keys
from notifier.billing.models import Bill
from notifier.db import Database
from notifier.deliveries.models import Delivery, Notification
from notifier.escalation import callbacks as case_callbacks
from notifier.escalation.models import Escalation, EscalationBill
from notifier.events.models import Event
from notifier.settings import PROJECT_ROOT
from notifier.webhooks import service as webhooks
from notifier.webhooks.models import ProducerCallback, ProducerEndpoint

PAGE = PROJECT_ROOT / "docs" / "callbacks.md"
NOW = datetime(2027, 1, 21, 2, 31, 15, tzinfo=UTC)


def documented() -> dict[str, dict[str, Any]]:
    """``type → example`` of the page's "Every callback type"."""
    text = PAGE.read_text(encoding="utf-8").split("## Every callback type", 1)[1]
    sections = re.split(r"^### `([a-z._]+)`\n", text, flags=re.M)[1:]
    found = {}
    for kind, body in zip(sections[::2], sections[1::2], strict=True):
        block = re.search(r"^```json\n(.*?)^```", body, re.S | re.M)
        assert block, f"no example for {kind}"
        found[kind] = json.loads(block.group(1))
    return found


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    db = Database(f"sqlite:///{tmp_path / 'callbacks.db'}")
    SQLModel.metadata.create_all(db.engine)
    with db.session() as session:
        yield session
    db.dispose()


def _world(session: Session) -> tuple[Delivery, Escalation]:
    """The quickstart's account, bill, notice and case, posted by a producer with a URL."""
    key, _ = keys.create_key(session, role="producer", name="billing")
    assert key.id is not None
    session.add(ProducerEndpoint(key_id=key.id, url="https://billing.example/cb", secret="whsec_x"))
    session.add(Account(account_no="01234567890", producer_key_id=key.id, area="toufen"))
    session.flush()
    session.add(
        Bill(
            bill_no="B202609-01234567890", account_no="01234567890", producer_key_id=key.id,
            period="2026-09", amount=1830, due_date=date(2026, 11, 20),
        )
    )  # fmt: skip
    event = Event(
        event_id="billing-20261127-000123", type="bill.unpaid", account_no="01234567890",
        occurred_at=NOW - timedelta(days=55), payload={}, producer_key_id=key.id,
    )  # fmt: skip
    session.add(event)
    session.flush()
    assert event.id is not None
    notice = Notification(
        event_pk=event.id, account_no="01234567890", type="bill.unpaid",
        bill_no="B202609-01234567890", level=1, dedup_key="quickstart",
    )  # fmt: skip
    session.add(notice)
    session.flush()
    assert notice.id is not None
    delivery = Delivery(
        notification_id=notice.id, account_no="01234567890", event_type="bill.unpaid",
        channel="sms", attempts=1,
    )  # fmt: skip
    case = Escalation(
        account_no="01234567890", area="toufen", kind="call", opened_on=date(2027, 1, 20)
    )
    session.add_all([delivery, case])
    session.flush()
    assert case.id is not None
    session.add(
        EscalationBill(
            escalation_id=case.id, bill_no="B202609-01234567890", added_on=date(2027, 1, 20)
        )
    )
    session.flush()
    return delivery, case


def _bodies(session: Session) -> dict[str, dict[str, Any]]:
    """What the code sends, by type, as POSTed (``encode``: the id first)."""
    delivery, case = _world(session)
    assert delivery.id is not None and case.id is not None
    for status in webhooks.DELIVERY_TYPES:
        webhooks.delivery_outcomes(session, [delivery.id], status, now=NOW)
    webhooks.unreachable_notifications(session, {delivery.notification_id: "no_contact"}, now=NOW)
    case_callbacks.escalation_outcome(
        session, case, outcome="promised", now=NOW, promise_date=date(2027, 1, 28)
    )
    case.status, case.outcome = "done", "paid"
    session.add(case)
    session.flush()
    case_callbacks.escalations_closed(session, [case.id], now=NOW)
    case_callbacks.contact_invalid(
        session,
        "01234567890",
        contact="phone",
        reason="wrong_number",
        now=NOW,
        escalation_id=case.id,
    )
    case.stage, case.stage_deadline = "final_demand", date(2027, 3, 11)
    for kind in case_callbacks.COLLECTION_TYPES:
        case_callbacks.collection(
            session, case, [kind], now=NOW, previous=None, on=date(2027, 2, 25), amount=1830
        )
    bodies: dict[str, dict[str, Any]] = {}
    for callback in session.exec(select(ProducerCallback).order_by(ProducerCallback.id)):
        bodies.setdefault(callback.type, json.loads(webhooks.encode(callback)))
    return bodies


def test_the_page_shows_every_callback_type_the_code_sends(session: Session) -> None:
    sent = _bodies(session)
    shown = documented()
    assert set(shown) == set(sent), "add or remove a section of docs/callbacks.md"
    for kind, example in shown.items():
        assert example["type"] == kind
        assert list(example) == list(sent[kind]), (
            f"{kind}: the example's fields, in the body's order"
        )


def test_no_callback_example_carries_personal_data() -> None:
    text = json.dumps(documented(), ensure_ascii=False)
    for leak in ("+886", "@", "王小明", "苗栗縣"):
        assert leak not in text
