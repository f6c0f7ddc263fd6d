"""db.insert_objects: the rows ``Model(**row)`` and a flush would write, the instances back in
order, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import select

from notifier.accounts.models import Account
from notifier.db import Database, insert_objects, utcnow
from notifier.deliveries.models import Notification, NotificationStatus
from notifier.events.models import Event
from notifier.migrations import upgrade
from tests.support.stack import need, postgres_database


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        url, drop = f"sqlite:///{tmp_path / 'objects.db'}", None
    else:
        need("PostgreSQL", "127.0.0.1", 5432)
        url, drop = postgres_database()
    upgrade(url)
    database = Database(url)
    yield database
    database.dispose()
    if drop is not None:
        drop()


def _event(no: int) -> Event:
    return Event(
        event_id=f"objects-{no}",
        type="bill.unpaid",
        occurred_at=utcnow(),
        account_no="00000000001",
        payload={},
    )


def test_the_rows_as_init_and_a_flush_would_write_them_in_order(db: Database) -> None:
    with db.session() as session:
        session.add(Account(account_no="00000000001"))
        events = [_event(n) for n in range(3)]
        session.add_all(events)
        session.flush()
        rows = [
            {"event_pk": e.id, "account_no": "00000000001", "type": "bill.unpaid", "dedup_key": k}
            for e, k in zip(events, ["c", "a", "b"], strict=True)
        ]
        rows[1]["status"] = NotificationStatus.SUPPRESSED
        made = insert_objects(session, Notification, rows)
        built = Notification(**rows[0])  # what __init__ would have made of the first

        assert [n.dedup_key for n in made] == ["c", "a", "b"]
        assert all(n.id is not None and n in session for n in made)
        assert [n.status for n in made] == ["active", "suppressed", "active"]
        first = made[0]
        for name in Notification.model_fields:
            if name not in ("id", "created_at"):
                assert getattr(first, name) == getattr(built, name), name
        assert first.created_at is not None and first.created_at.tzinfo is not None
    with db.session() as session:
        stored = session.exec(select(Notification).order_by(Notification.id)).all()  # type: ignore[arg-type]
        assert [(n.id, n.dedup_key, n.status, n.level, n.urgent) for n in stored] == [
            (n.id, n.dedup_key, n.status, 1, False) for n in made
        ]


def test_a_missing_required_value_or_an_unknown_name_is_refused(db: Database) -> None:
    with db.session() as session:
        with pytest.raises(TypeError, match="dedup_key"):
            insert_objects(session, Notification, [{"event_pk": 1, "account_no": "1", "type": "x"}])
        with pytest.raises(TypeError, match="colour"):
            insert_objects(
                session,
                Notification,
                [{"event_pk": 1, "account_no": "1", "type": "x", "dedup_key": "k", "colour": 1}],
            )
