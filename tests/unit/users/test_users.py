"""Users, passwords, lockout, sessions and the audit trail, on a SQLite database of their own."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from sqlmodel import Session

from notifier.audit import service as audit
from notifier.db import Database
from notifier.escalation.agents import add_agent, disable_agent
from notifier.migrations import upgrade
from notifier.users import service as users
from notifier.users import sessions
from notifier.users.models import User

PASSWORD = "correct horse battery"
NEW_PASSWORD = "lantern orbit pebble"
T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
IDLE = timedelta(hours=8)
MAX_AGE = timedelta(hours=12)
RULES: dict[str, Any] = {
    "rules": users.SignInRules(
        idle=IDLE,
        max_age=MAX_AGE,
        max_failures=5,
        lockout=timedelta(minutes=15),
        throttle_failures=20,
        throttle_window=timedelta(minutes=10),
    )
}


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    url = f"sqlite:///{tmp_path / 'users.db'}"
    upgrade(url)
    database = Database(url)
    yield database
    database.dispose()


def add(session: Session, username: str = "alice", role: str = "ops", **kw: Any) -> User:
    return users.create_user(
        session,
        username=username,
        password=kw.pop("password", PASSWORD),
        role=role,
        actor="cli",
        **kw,
    )


def test_usernames_are_unique_whatever_their_case(db: Database) -> None:
    with db.session() as session:
        user = add(session, " Alice ")
        assert user.username == "alice" and user.display_name == "alice"
        with pytest.raises(users.InvalidInput, match="'alice' is taken") as taken:
            add(session, "ALICE")
        assert taken.value.field == "username"
        assert users.sign_in(session, "ALICE", PASSWORD, now=T0, **RULES) is not None


@pytest.mark.parametrize(
    ("kw", "field", "message"),
    [
        ({"password": "short pw"}, "password", "at least 10 characters"),
        ({"username": "a"}, "username", "2 to 64 letters"),
        ({"username": "al ice"}, "username", "2 to 64 letters"),
        ({"role": "producer"}, "role", "ops, agent, supervisor, admin"),
        ({"role": "agent"}, "agent", "needs the agent they are"),
        ({"role": "agent", "agent_id": 999}, "agent", "no active agent 999"),
        ({"language": "fr"}, "language", "zh-TW, en"),
    ],
)
def test_bad_input_is_refused_naming_the_field(
    db: Database, kw: dict[str, Any], field: str, message: str
) -> None:
    with db.session() as session, pytest.raises(users.InvalidInput, match=message) as refused:
        add(session, **{"username": "bob", **kw})
    assert refused.value.field == field


def test_an_agent_user_is_an_active_agent(db: Database) -> None:
    with db.session() as session:
        agent = add_agent(session, name="林建宏", area="toufen", kind="caller")
        assert agent.id is not None
        user = add(session, "lin", role="agent", agent_id=agent.id, display_name="林建宏")
        assert user.agent_id == agent.id
        disable_agent(session, agent.id, now=T0, actor="cli")
        with pytest.raises(users.InvalidInput, match=f"no active agent {agent.id}"):
            add(session, "lin2", role="agent", agent_id=agent.id)


def test_five_wrong_passwords_lock_the_account_for_a_while(db: Database) -> None:
    with db.session() as session:
        user = add(session)
        for _ in range(5):
            assert users.sign_in(session, "alice", "wrong password", now=T0, **RULES) is None
        assert user.locked_until == T0 + timedelta(minutes=15)
        assert (
            users.sign_in(session, "alice", PASSWORD, now=T0 + timedelta(minutes=14), **RULES)
            is None
        )
        later = T0 + timedelta(minutes=15, seconds=1)
        assert users.sign_in(session, "alice", PASSWORD, now=later, **RULES) is not None
        assert (user.failed_logins, user.locked_until, user.last_login_at) == (0, None, later)
        actions = [
            e.action for e in audit.list_entries(session, target=users.actor_of(user)).entries
        ]
    assert actions.count("user.sign_in_failed") == 6
    assert actions.count("user.locked") == 1


def test_a_success_forgives_earlier_failures(db: Database) -> None:
    with db.session() as session:
        user = add(session)
        for _ in range(4):
            users.sign_in(session, "alice", "wrong password", now=T0, **RULES)
        assert users.sign_in(session, "alice", PASSWORD, now=T0, **RULES) is not None
        users.sign_in(session, "alice", "wrong password", now=T0, **RULES)
        assert (user.failed_logins, user.locked_until) == (1, None)


def test_a_hash_with_old_parameters_is_replaced_at_sign_in(db: Database) -> None:
    with db.session() as session:
        user = add(session)
        user.password_hash = PasswordHasher(time_cost=1, memory_cost=8192).hash(PASSWORD)
        old = user.password_hash
        assert users.sign_in(session, "alice", PASSWORD, now=T0, **RULES) is not None
        assert user.password_hash != old and "m=65536,t=3" in user.password_hash
        assert users.sign_in(session, "alice", PASSWORD, now=T0, **RULES) is not None


def test_disabled_users_and_new_passwords_end_sessions(db: Database) -> None:
    with db.session() as session:
        alice, bob = add(session), add(session, "bob")
        assert alice.id is not None and bob.id is not None
        first = users.sign_in(session, "alice", PASSWORD, now=T0, **RULES)
        second = users.sign_in(session, "bob", PASSWORD, now=T0, **RULES)
        assert first is not None and second is not None
        users.set_password(session, alice.id, NEW_PASSWORD, actor="cli")
        assert sessions.resume(session, first.token, now=T0, idle=IDLE, max_age=MAX_AGE) is None
        assert users.sign_in(session, "alice", PASSWORD, now=T0, **RULES) is None
        assert users.sign_in(session, "alice", NEW_PASSWORD, now=T0, **RULES) is not None
        users.disable_user(session, bob.id, actor="cli")
        assert sessions.resume(session, second.token, now=T0, idle=IDLE, max_age=MAX_AGE) is None
        assert users.sign_in(session, "bob", PASSWORD, now=T0, **RULES) is None


def test_a_session_ends_after_the_idle_timeout_and_lives_while_used(db: Database) -> None:
    days = timedelta(days=2)  # the absolute lifetime is not what this test is about
    with db.session() as session:
        add(session)
        signed_in = users.sign_in(session, "alice", PASSWORD, now=T0, **RULES)
        assert signed_in is not None
        token = signed_in.token
        seven = T0 + timedelta(hours=7)  # each use pushes the end 8 hours on
        assert sessions.resume(session, token, now=seven, idle=IDLE, max_age=days) is not None
        fourteen = seven + timedelta(hours=7)
        assert sessions.resume(session, token, now=fourteen, idle=IDLE, max_age=days) is not None
        assert sessions.resume(session, token, now=fourteen + IDLE, idle=IDLE, max_age=days) is None
        assert (
            sessions.resume(session, token, now=fourteen, idle=IDLE, max_age=days) is None
        )  # gone
        assert sessions.resume(session, "not a token", now=T0, idle=IDLE, max_age=days) is None


def test_a_session_ends_at_its_absolute_lifetime_however_busy(db: Database) -> None:
    with db.session() as session:
        add(session)
        signed_in = users.sign_in(session, "alice", PASSWORD, now=T0, **RULES)
        assert signed_in is not None
        at = T0
        while at + timedelta(hours=1) < T0 + MAX_AGE:  # a request every hour, never idle
            at += timedelta(hours=1)
            live = sessions.resume(session, signed_in.token, now=at, idle=IDLE, max_age=MAX_AGE)
            assert live is not None, at
        assert (
            sessions.resume(session, signed_in.token, now=T0 + MAX_AGE, idle=IDLE, max_age=MAX_AGE)
            is None
        )
        assert (
            sessions.resume(session, signed_in.token, now=at, idle=IDLE, max_age=MAX_AGE) is None
        )  # deleted, not merely refused


@pytest.mark.parametrize(
    ("password", "message"),
    [
        (" " * 10, "more than blanks"),
        ("1234567890", "most common passwords"),
        ("password123", "most common passwords"),
        ("qwertyuiop", "most common passwords"),
        ("aaaaaaaaaaaa", "too easy to guess"),
        ("aliceAlice123", "too easy to guess"),
        ("Password2026", "too easy to guess"),
    ],
)
def test_weak_passwords_are_refused_naming_the_field(
    db: Database, password: str, message: str
) -> None:
    with db.session() as session:
        with pytest.raises(users.InvalidInput, match=message) as refused:
            add(session, password=password)
        assert refused.value.field == "password"
        user = add(session, "carol")
        assert user.id is not None
        with pytest.raises(users.InvalidInput, match=message):
            users.set_password(session, user.id, password, actor="cli")


def test_one_client_failing_too_often_waits_whatever_account_it_tries(db: Database) -> None:
    rules = RULES["rules"]
    with db.session() as session:
        add(session)
        add(session, "bob")
        for n in range(20):  # spread over accounts: no account lock is reached
            name = ("alice", "bob")[n] if n < 2 else f"nobody{n}"
            assert (
                users.sign_in(
                    session, name, "wrong password", now=T0, rules=rules, client="203.0.113.9"
                )
                is None
            )
        with pytest.raises(users.Throttled) as throttled:
            users.sign_in(
                session,
                "alice",
                PASSWORD,
                now=T0 + timedelta(minutes=4),
                **RULES,
                client="203.0.113.9",
            )
        assert throttled.value.retry_after == 6 * 60
        # Another address is not held up, and the right password still works there.
        assert users.sign_in(session, "alice", PASSWORD, now=T0, **RULES, client="198.51.100.7")
        later = T0 + timedelta(minutes=10)
        assert users.sign_in(session, "bob", PASSWORD, now=later, **RULES, client="203.0.113.9")


def test_the_audit_trail_filters_and_pages_newest_first(db: Database) -> None:
    with db.session() as session:
        for n in range(5):
            audit.record(session, actor="cli", action="delivery.retry", target=f"delivery {n}")
        audit.record(session, actor="user 1 (alice)", action="delivery.cancel", detail={"why": "x"})
        first = audit.list_entries(session, actor="cli", limit=3)
        assert [e.target for e in first.entries] == ["delivery 4", "delivery 3", "delivery 2"]
        rest = audit.list_entries(session, actor="cli", limit=3, before=first.next_before)
        assert [e.target for e in rest.entries] == ["delivery 1", "delivery 0"]
        assert rest.next_before is None
        (cancel,) = audit.list_entries(session, action="delivery.cancel").entries
        assert cancel.detail == {"why": "x"}
        assert audit.list_entries(session, since=cancel.at + timedelta(seconds=1)).entries == []
