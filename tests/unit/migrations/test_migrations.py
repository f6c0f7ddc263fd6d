"""The shipped migrations build exactly the schema the models describe."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

import notifier.models
from notifier.migrations import upgrade


def test_migrating_a_new_database_gives_the_models_schema(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    upgrade(url)
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), notifier.models.metadata)
    engine.dispose()
    assert diff == [], "models and migrations differ: write a migration (notifier/migrations)"


def test_0019_adds_the_bounced_address_and_keeps_the_accounts(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'before-0019.db'}"
    upgrade(url, revision="0016")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO accounts (account_no, language, email, push_tokens, vulnerable,"
                " prefers_paper, prefers_voice, opt_outs, protections, protections_added,"
                " created_at, updated_at) VALUES ('01234567890', 'zh-TW', 'a@example.com',"
                " '[]', 0, 0, 0, '[]', '[]', '[]', '2026-12-01 00:00:00', '2026-12-01 00:00:00')"
            )
        )
    upgrade(url, revision="0019")
    with engine.connect() as conn:
        row = conn.execute(
            sa.text("SELECT email, invalid_email, email_invalid_reason FROM accounts")
        ).one()
    engine.dispose()
    assert tuple(row) == ("a@example.com", None, None)  # nobody's address is marked by it


def test_0021_keeps_the_users_and_sessions_it_finds_and_goes_back(tmp_path: Path) -> None:
    """Sign-in hardening: existing users are local, password-only; existing sessions full."""
    from alembic import command

    from notifier.migrations import alembic_config

    url = f"sqlite:///{tmp_path / 'before.db'}"
    upgrade(url, "0016")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO users (username, display_name, password_hash, role, language,"
                " active, failed_logins, created_at)"
                " VALUES ('alice', 'Alice', 'h', 'admin', 'en', 1, 0, '2026-12-01 00:00:00')"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO user_sessions (id, user_id, csrf_token, created_at, expires_at,"
                " last_seen_at) VALUES ('s', 1, 'c', '2026-12-01 00:00:00',"
                " '2026-12-01 08:00:00', '2026-12-01 00:00:00')"
            )
        )
    upgrade(url, "0021")
    with engine.connect() as conn:
        user = conn.execute(
            sa.text("SELECT directory_subject, totp_secret, totp_confirmed_at FROM users")
        ).one()
        stage = conn.execute(sa.text("SELECT stage FROM user_sessions")).scalar_one()
    assert tuple(user) == (None, None, None) and stage == "full"

    command.downgrade(alembic_config(url), "0016")
    with engine.connect() as conn:
        assert "sign_in_throttle" not in sa.inspect(conn).get_table_names()
        columns = {c["name"] for c in sa.inspect(conn).get_columns("users")}
    engine.dispose()
    assert "totp_secret" not in columns and "directory_subject" not in columns
