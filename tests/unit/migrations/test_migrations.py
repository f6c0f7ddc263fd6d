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
