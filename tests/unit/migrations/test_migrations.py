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
