"""0023: the accounts already stored get their phone and email lookup hashes; deliveries a
``quiet_hours_waived`` flag, false for every one already there."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command

from notifier.migrations import alembic_config, upgrade
from notifier.privacy import lookup
from notifier.settings import get_settings


def test_0023_hashes_the_contacts_of_accounts_in_use_and_downgrades_cleanly(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'in-use.db'}"
    upgrade(url, "0022")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO accounts (account_no, language, phone, email, push_tokens, "
                "vulnerable, protections, protections_added, prefers_paper, prefers_voice, "
                "opt_outs, created_at, updated_at) VALUES "
                "(:no, 'zh-TW', :phone, :email, '[]', 0, '[]', '[]', 0, 0, '[]', "
                "'2026-12-01 00:00:00', '2026-12-01 00:00:00')"
            ),
            [
                {"no": "01234567890", "phone": "+886912345678", "email": "A@Example.com"},
                {"no": "01234567891", "phone": None, "email": None},
            ],
        )

    upgrade(url, "0023")
    key = get_settings().resolved_lookup_key
    with engine.connect() as conn:
        rows = dict(
            conn.execute(
                sa.text("SELECT account_no, phone_hash || '/' || email_hash FROM accounts")
            ).all()
        )
        indexes = {i["name"] for i in sa.inspect(conn).get_indexes("accounts")}
    assert rows["01234567890"] == (
        f"{lookup.phone_hash('0912-345-678', key)}/{lookup.email_hash('a@example.com', key)}"
    )
    assert rows["01234567891"] is None
    assert {"ix_accounts_phone_hash", "ix_accounts_email_hash"} <= indexes

    command.downgrade(alembic_config(url), "0022")
    with engine.connect() as conn:
        columns = {c["name"] for c in sa.inspect(conn).get_columns("accounts")}
        assert "phone_hash" not in columns
        delivery_columns = {c["name"] for c in sa.inspect(conn).get_columns("deliveries")}
        assert "quiet_hours_waived" not in delivery_columns
    engine.dispose()
