"""0018: the provider circuits table, added to a database in use and taken away again."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command

from notifier.migrations import alembic_config, upgrade


def test_0018_adds_an_empty_circuits_table_beside_the_rates_and_downgrades_cleanly(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'in-use.db'}"
    upgrade(url, "0016")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO provider_rates (provider, next_at) VALUES ('twilio', 1)"))

    upgrade(url, "0018")
    with engine.connect() as conn:
        columns = {c["name"] for c in sa.inspect(conn).get_columns("provider_circuits")}
        assert columns == {"provider", "opened_at", "probe_at", "reason", "openings"}
        assert conn.execute(sa.text("SELECT count(*) FROM provider_circuits")).scalar() == 0
        assert conn.execute(sa.text("SELECT count(*) FROM provider_rates")).scalar() == 1

    command.downgrade(alembic_config(url), "0016")
    with engine.connect() as conn:
        assert "provider_circuits" not in sa.inspect(conn).get_table_names()
        assert conn.execute(sa.text("SELECT count(*) FROM provider_rates")).scalar() == 1
    engine.dispose()
