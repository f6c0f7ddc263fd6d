"""Alembic migrations, shipped inside the package and run by ``notifier migrate``.

``versions/`` holds one script per schema change, in order; :func:`upgrade`
brings a database to the newest. ``env.py`` imports the table registry
(``notifier.models``) so autogenerate sees every table; the scripts themselves
import nothing of the domains (they are history, written against the schema
of their day), only ``notifier.db``'s column types.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

__all__ = ["alembic_config", "upgrade"]

_HERE = Path(__file__).resolve().parent


def alembic_config(database_url: str) -> Config:
    """An Alembic config for ``database_url`` with no ini file needed."""
    config = Config()
    config.set_main_option("script_location", str(_HERE))
    # ConfigParser interpolation would eat a '%' in a password.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the schema at ``database_url`` up to ``revision``."""
    command.upgrade(alembic_config(database_url), revision)
