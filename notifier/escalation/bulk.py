"""Many rows in one statement: the sweep's inserts and updates, set-based on PostgreSQL.

A list of rows sent as ``executemany`` (or SQLAlchemy's multi-row VALUES) costs
PostgreSQL a parse and plan of thousands of parameters per page and psycopg a
round of adaptation per value; one array per column, unnested by the server,
is one small statement whatever the number of rows. SQLite has no arrays: it
takes the rows as before, which is fast there (one process, no round trips).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlmodel import Session

__all__ = ["insert_rows", "is_postgresql", "update_by_id"]

_PG = postgresql.dialect()  # type: ignore[no-untyped-call]


def is_postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _unnest(table: sa.Table, columns: Sequence[str], prefix: str = "c") -> str:
    """``unnest(CAST(:c0 AS type[]), ...)`` for ``columns`` of ``table``, as the server types them."""
    arrays = ", ".join(
        f"CAST(:{prefix}{i} AS {table.c[name].type.compile(dialect=_PG)}[])"
        for i, name in enumerate(columns)
    )
    return f"unnest({arrays})"


def _arrays(
    columns: Sequence[str], rows: Sequence[Mapping[str, Any]], prefix: str = "c"
) -> dict[str, list[Any]]:
    return {f"{prefix}{i}": [row[name] for row in rows] for i, name in enumerate(columns)}


def insert_rows(
    session: Session,
    table: sa.Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    suffix: str = "",
    returning: Sequence[str] = (),
) -> list[tuple[Any, ...]]:
    """Insert ``rows`` (dicts with the same keys) into ``table``; the ``returning`` columns of
    the rows inserted. ``suffix`` (PostgreSQL only) goes before RETURNING, e.g. an ON
    CONFLICT clause; SQLite callers pass theirs as a statement of their own."""
    if not rows:
        return []
    columns = list(rows[0])
    if not is_postgresql(session):
        statement = sa.insert(table)
        if returning:
            found = session.execute(statement.returning(*(table.c[c] for c in returning)), rows)
            return [tuple(row) for row in found]
        session.execute(statement, rows)
        return []
    sql = (
        f"INSERT INTO {table.name} ({', '.join(columns)}) SELECT * FROM {_unnest(table, columns)}"
        f" {suffix}" + (f" RETURNING {', '.join(returning)}" if returning else "")
    )
    result = session.connection().execute(sa.text(sql), _arrays(columns, rows))
    return [tuple(row) for row in result] if returning else []


def update_by_id(
    session: Session,
    table: sa.Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    values: Mapping[str, Any],
) -> None:
    """``UPDATE table SET ... WHERE id = row["id"]`` for each of ``rows``: each row's other keys
    are its own values, ``values`` the same for all."""
    if not rows:
        return
    own = [name for name in rows[0] if name != "id"]
    if not is_postgresql(session):
        # One statement run per row: a list of ids as long as a bad day's cases would pass
        # SQLite's limit on parameters.
        session.connection().execute(
            sa.update(table)
            .where(table.c.id == sa.bindparam("b_id"))
            .values({**{name: sa.bindparam(f"b_{name}") for name in own}, **values}),
            [{f"b_{k}": v for k, v in row.items()} for row in rows],
        )
        return
    columns = ["id", *own]
    shared = {f"s_{name}": value for name, value in values.items()}
    sets = [f"{name} = v.{name}" for name in own] + [f"{name} = :s_{name}" for name in values]
    sql = (
        f"UPDATE {table.name} SET {', '.join(sets)} FROM {_unnest(table, columns)}"
        f" AS v({', '.join(columns)}) WHERE {table.name}.id = v.id"
    )
    statement = sa.text(sql).bindparams(
        *(sa.bindparam(f"s_{name}", type_=table.c[name].type) for name in values)
    )
    session.connection().execute(statement, {**_arrays(columns, rows), **shared})
