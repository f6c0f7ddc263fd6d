"""API keys on a SQLite database of their own: revoked at once or after a grace, rotated with
the same name, role and agent, ``last_used_at`` written once a minute, each change audited."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from notifier.audit import service as audit
from notifier.auth import keys
from notifier.auth.models import ApiKey
from notifier.db import Database
from notifier.escalation.agents import add_agent
from notifier.migrations import upgrade


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    upgrade(url)
    database = Database(url)
    yield database
    database.dispose()


def trail(db: Database) -> list[tuple[str, str, str | None]]:
    with db.session() as session:
        page = audit.list_entries(session)
    return [(e.actor, e.action, e.target) for e in reversed(page.entries)]


def test_a_key_is_stored_hashed_and_refused_from_the_moment_it_is_revoked(db: Database) -> None:
    with db.session() as session:
        row, key = keys.create_key(session, role="ops", name="alice")
    assert key.startswith("ntf_") and row.key_hash == keys.hash_key(key) and key not in row.prefix
    with db.session() as session:
        assert keys.verify(session, key) is not None
        assert keys.revoke(session, row.id or 0, actor="cli") is not None
    with db.session() as session:
        assert keys.verify(session, key) is None
        assert keys.revoke(session, row.id or 0) is None  # no longer live
    assert trail(db) == [
        ("cli", "key.created", f"key {row.id} (alice)"),
        ("cli", "key.revoked", f"key {row.id} (alice)"),
    ]


def test_an_expired_key_is_refused(db: Database) -> None:
    with db.session() as session:
        row, key = keys.create_key(
            session, role="producer", name="billing", expires_in=timedelta(days=1)
        )
    assert row.expires_at is not None
    with db.session() as session:
        assert keys.verify(session, key, now=row.expires_at - timedelta(seconds=1)) is not None
        assert keys.verify(session, key, now=row.expires_at) is None
        assert keys.state_of(row, row.expires_at) == "expired"


def test_a_rotation_keeps_name_role_and_agent_and_the_old_key_works_through_its_grace(
    db: Database,
) -> None:
    with db.session() as session:
        agent = add_agent(session, name="林建宏", area="toufen", kind="caller")
        old, old_key = keys.create_key(
            session, role="agent", name="lin", agent_id=agent.id, expires_in=timedelta(days=90)
        )
    now = datetime.now(UTC)
    with db.session() as session:
        new, new_key, _ = keys.rotate(session, old.id or 0, grace=timedelta(hours=2), now=now)
    assert (new.name, new.role, new.agent_id) == ("lin", "agent", agent.id)
    assert new.expires_at is not None and abs(
        (new.expires_at - new.created_at) - timedelta(days=90)
    ) < timedelta(seconds=5)  # the old key's lifetime
    with db.session() as session:
        assert keys.verify(session, new_key) is not None
        assert keys.verify(session, old_key, now=now + timedelta(hours=1)) is not None
        assert keys.verify(session, old_key, now=now + timedelta(hours=2)) is None
    with db.session() as session, pytest.raises(ValueError, match="no active key"):
        keys.rotate(session, 999)
    assert [action for _, action, _ in trail(db)] == [
        "key.created",
        "key.created",
        "key.revoked",
        "key.rotated",
    ]


def test_last_used_is_written_at_most_once_a_minute(db: Database) -> None:
    with db.session() as session:
        row, _ = keys.create_key(session, role="ops", name="alice")
    t0 = datetime(2026, 11, 27, 1, 0, tzinfo=UTC)
    with db.session() as session:
        assert keys.touch(session, row, now=t0)
        assert not keys.touch(session, row, now=t0 + timedelta(seconds=59))
        assert keys.touch(session, row, now=t0 + keys.LAST_USED_EVERY)
    with db.session() as session:
        stored = session.get(ApiKey, row.id)
        assert stored is not None and stored.last_used_at == t0 + keys.LAST_USED_EVERY
