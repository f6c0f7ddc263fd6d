"""What every command shares: help options, the settings, and the database it finds.

Light on purpose: ``notifier --help`` imports this and every command module,
so the heavy stack (pydantic-settings, SQLAlchemy, Celery, the domains) is
imported inside the functions that need it, never at the top of a module.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer

if TYPE_CHECKING:
    from notifier.db import Database
    from notifier.runtime import Runtime
    from notifier.settings import Settings

__all__ = ["CONTEXT", "database", "fail", "no_database", "runtime", "settings"]

CONTEXT: dict[str, Any] = {"help_option_names": ["-h", "--help"]}
"""Click context settings: ``-h`` as well as ``--help`` (subcommands inherit them)."""

EXIT_NO_DATABASE = 3


def settings() -> Settings:
    """The process's settings (read from the environment once); invalid ones in one line."""
    from pydantic import ValidationError

    from notifier.settings import get_settings

    try:
        return get_settings()
    except ValidationError as exc:
        bad = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'settings'}: {error['msg']}"
            for error in exc.errors()
        )
        fail(f"invalid settings (NOTIFIER_* variables, .env): {bad}", 2)


def fail(message: str, code: int = 1) -> NoReturn:
    """One line on stderr and the exit code: no traceback, no box."""
    typer.echo(f"notifier: {message}", err=True)
    raise typer.Exit(code)


def no_database(found: Settings) -> str | None:
    """Why the configured database cannot serve a command (one line), or None if it can.

    Nothing is created: opening a missing SQLite file would leave an empty one behind,
    and the next command would fail further in with "no such table".
    """
    import sqlalchemy as sa

    from notifier.db import Database

    data_dir = Path(found.data_dir).resolve()
    url = found.resolved_database_url
    if not found.database_url and not (data_dir / "notifier.db").is_file():
        return (
            f"no database in NOTIFIER_DATA_DIR={data_dir} (no notifier.db there): run this "
            "from the project folder (`make run` keeps its data in ./var), set "
            "NOTIFIER_DATA_DIR, or run `notifier migrate` to start an empty one there"
        )
    where = f"NOTIFIER_DATA_DIR={data_dir}" if not found.database_url else _safe_url(url)
    db = Database(url)
    try:
        with db.engine.connect() as conn:
            migrated = sa.inspect(conn).has_table("alembic_version")
    except sa.exc.SQLAlchemyError as exc:
        reason = str(exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc).splitlines()[0]
        return f"cannot open the database of {where}: {reason}"
    finally:
        db.dispose()
    if not migrated:
        return f"the database of {where} has no tables yet; run `notifier migrate`"
    return None


def database() -> Database:
    """The configured database, with every table known (foreign keys span domains)."""
    import notifier.models  # noqa: F401
    from notifier.db import Database

    found = settings()
    if (why := no_database(found)) is not None:
        fail(why, EXIT_NO_DATABASE)
    return Database(found.resolved_database_url)


def runtime() -> Runtime:
    """The process's wiring over a database that is there."""
    from notifier.runtime import Runtime

    found = settings()
    if (why := no_database(found)) is not None:
        fail(why, EXIT_NO_DATABASE)
    return Runtime(found)


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
