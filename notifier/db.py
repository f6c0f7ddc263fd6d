"""Engines and sessions for SQLite (embedded) and PostgreSQL (deployed)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Dialect, Engine
from sqlmodel import Session, SQLModel, select

__all__ = ["Database", "UTCDateTime", "insert_many", "insert_objects", "utcnow"]

M = TypeVar("M", bound=SQLModel)


def utcnow() -> datetime:
    """The current instant, timezone-aware UTC."""
    return datetime.now(UTC)


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite stores no offset)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where an aware one is required")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def insert_many(
    session: Session,
    table: sa.Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    conflict: Sequence[str] = (),
    returning: Sequence[str] = (),
) -> list[sa.Row[Any]]:
    """Insert ``rows`` (dicts of column values) in one statement whatever their number.

    On PostgreSQL the rows travel as one JSON document, unpacked by
    ``json_to_recordset``: the statement's text is the same for 10 rows or 1,000,
    the driver parses it once, and the values are encoded by ``json`` in C.
    SQLAlchemy's "insertmanyvalues" writes a ``VALUES`` list with a placeholder per
    value instead, which psycopg cannot cache past 50 parameters and splits again
    for every batch (17% of the events worker's CPU on the accounts' 28 columns);
    array parameters (``unnest``) cost as much again in psycopg's escaping of each
    element. Elsewhere (SQLite) it is an ordinary executemany.

    A column some row leaves out gets its Python-side default there (NULL without one), as
    the ORM would.
    ``conflict``: ``ON CONFLICT (these) DO NOTHING``. ``returning``: the columns
    of the rows inserted, in no promised order (map them back by a key).
    """
    if not rows:
        return []
    names = list(dict.fromkeys(name for row in rows for name in row))
    names += [
        c.name for c in table.c if c.name not in names and isinstance(c.default, sa.ColumnDefault)
    ]
    full = [
        {name: row[name] if name in row else _default(table.c[name]) for name in names}
        for row in rows
    ]
    dialect = session.get_bind().dialect
    if dialect.name == "postgresql":
        sql = _recordset_insert(dialect, table, names, conflict=conflict, returning=returning)
        result = session.execute(sa.text(sql), {"rows": _json_rows(full)})
        return list(result.all()) if returning else []
    statement: Any = sa.insert(table)
    if conflict:
        from sqlalchemy.dialects import sqlite

        statement = sqlite.insert(table).on_conflict_do_nothing(index_elements=list(conflict))
    if returning:
        statement = statement.returning(*(table.c[name] for name in returning))
        return list(session.execute(statement, full).all())
    session.execute(statement, full)
    return []


def _recordset_insert(
    dialect: Dialect,
    table: sa.Table,
    names: Sequence[str],
    *,
    conflict: Sequence[str] = (),
    returning: Sequence[str] = (),
    order: str | None = None,
) -> str:
    """PostgreSQL's INSERT of the rows of the JSON parameter ``rows`` (see insert_many);
    ``order``: a key of each row, an integer, the rows go in by."""
    quote = dialect.identifier_preparer.quote
    columns = ", ".join(quote(name) for name in names)
    record = ", ".join(
        f"{quote(name)} {table.c[name].type.compile(dialect=dialect)}" for name in names
    )
    if order is not None:
        record += f", {quote(order)} integer"
    sql = (
        f"INSERT INTO {quote(table.name)} ({columns}) SELECT {columns} "
        f"FROM json_to_recordset(CAST(:rows AS json)) AS r({record})"
    )
    if order is not None:
        sql += f" ORDER BY {quote(order)}"
    if conflict:
        sql += f" ON CONFLICT ({', '.join(quote(name) for name in conflict)}) DO NOTHING"
    if returning:
        sql += f" RETURNING {', '.join(quote(name) for name in returning)}"
    return sql


def _json_rows(rows: Sequence[Mapping[str, Any]]) -> str:
    return json.dumps(rows, default=_json_value, ensure_ascii=False)


_ORDER = "insert_objects_order"


def insert_objects(session: Session, model: type[M], rows: Sequence[Mapping[str, Any]]) -> list[M]:
    """``model(**row)`` for each row, added and flushed, in one statement: the persistent
    instances, in the rows' order.

    A table model built by its ``__init__`` goes through pydantic's and SQLAlchemy's
    machinery for each field (a default factory's signature inspected every time), and
    its flush through the unit of work: for the events worker's notifications and bills
    that was as much CPU as the rest of their handling. Here a field left out gets the
    default ``__init__`` would give it, the rows go in as one statement, and the instances
    come back loaded from RETURNING, as a query loads them. A primary key left None is the
    database's to assign. On PostgreSQL the statement is insert_many's (one JSON
    parameter: psycopg parses a VALUES list of a placeholder per value again each time);
    elsewhere SQLAlchemy's ORM bulk INSERT.
    """
    if not rows:
        return []
    keys = {column.name for column in model.__table__.primary_key.columns}  # type: ignore[attr-defined]
    fields = model.model_fields
    full = []
    for row in rows:
        values = {}
        for name, field in fields.items():
            if name in row:
                values[name] = row[name]
            elif field.is_required():
                raise TypeError(f"{model.__name__}: no value for {name}")
            else:
                values[name] = field.get_default(call_default_factory=True)
        unknown = row.keys() - fields.keys()
        if unknown:
            raise TypeError(f"{model.__name__}: no fields {', '.join(sorted(unknown))}")
        full.append({n: v for n, v in values.items() if v is not None or n not in keys})
    table: sa.Table = model.__table__  # type: ignore[attr-defined]
    dialect = session.get_bind().dialect
    names = list(full[0])
    pk = sorted(keys)
    given = keys <= set(names)
    if (
        dialect.name != "postgresql"
        or any(list(row) != names for row in full)
        or not (given or len(pk) == 1)
    ):
        statement = sa.insert(model).returning(model, sort_by_parameter_order=True)
        return list(session.scalars(statement, full).all())
    sql = _recordset_insert(
        dialect, table, names, returning=[c.name for c in table.c], order=_ORDER
    )
    loaded = session.scalars(
        select(model).from_statement(sa.text(sql).columns(*table.c)),
        {"rows": _json_rows([{**row, _ORDER: i} for i, row in enumerate(full)])},
    ).all()
    if len(loaded) != len(full):
        raise RuntimeError(f"{model.__name__}: {len(full)} rows inserted, {len(loaded)} returned")
    if given:
        by_key = {tuple(getattr(obj, k) for k in pk): obj for obj in loaded}
        return [by_key[tuple(row[k] for k in pk)] for row in full]
    # A key the database assigns (a sequence) is drawn in the order the SELECT gives the rows,
    # its ORDER BY: what SQLAlchemy's own ordered bulk INSERT relies on for PostgreSQL.
    return sorted(loaded, key=lambda obj: getattr(obj, pk[0]))


def _default(column: sa.Column[Any]) -> Any:
    default = column.default
    if not isinstance(default, sa.ColumnDefault):
        return None
    return default.arg(None) if default.is_callable else default.arg


def _json_value(value: object) -> str:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime given where an aware one is required")
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} has no JSON form for insert_many")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the API read while a worker writes; NORMAL sync was ~20x faster
    # per transaction here than the default journal, and busy_timeout makes a
    # second writer wait instead of failing with "database is locked".
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin(conn: Any) -> None:
    # Take the write lock at BEGIN so two writers queue up instead of deadlocking
    # on a read-to-write upgrade.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


class Database:
    """One engine and its sessions."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        kwargs: dict[str, Any] = {"echo": echo, "future": True}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {
                "check_same_thread": False,
                "timeout": 30,
                "isolation_level": None,
            }
        else:
            kwargs.update(pool_pre_ping=True, pool_size=10, max_overflow=20)
        self.engine: Engine = sa.create_engine(url, **kwargs)
        if self.is_sqlite:
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
            sa.event.listen(self.engine, "begin", _sqlite_begin)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on error."""
        with Session(self.engine, expire_on_commit=False) as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def ping(self) -> None:
        """Raise if the database does not answer."""
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    def dispose(self) -> None:
        self.engine.dispose()
