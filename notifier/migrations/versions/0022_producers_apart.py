"""producers apart: event ids per producer, accounts and bills owned by their producer

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-02 14:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# SQLite's copy of the table names its reflected (unnamed) unique constraint by this.
_NAMING = {"uq": "uq_%(table_name)s_%(column_0_name)s"}


def _old_unique() -> str:
    return (
        "events_event_id_key"
        if op.get_bind().dialect.name == "postgresql"
        else "uq_events_event_id"
    )


def upgrade() -> None:
    op.execute("UPDATE events SET producer_key_id = 0 WHERE producer_key_id IS NULL")
    with op.batch_alter_table("events", schema=None, naming_convention=_NAMING) as batch_op:
        batch_op.drop_constraint(_old_unique(), type_="unique")
        batch_op.alter_column("producer_key_id", existing_type=sa.Integer(), nullable=False)
        batch_op.create_unique_constraint(
            "uq_events_producer_event", ["producer_key_id", "event_id"]
        )
        batch_op.create_index(batch_op.f("ix_events_event_id"), ["event_id"], unique=False)
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("producer_key_id", sa.Integer(), nullable=True))
    with op.batch_alter_table("bills", schema=None) as batch_op:
        batch_op.add_column(sa.Column("producer_key_id", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("bills", schema=None) as batch_op:
        batch_op.drop_column("producer_key_id")
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("producer_key_id")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_events_event_id"))
        batch_op.drop_constraint("uq_events_producer_event", type_="unique")
        batch_op.alter_column("producer_key_id", existing_type=sa.Integer(), nullable=True)
        batch_op.create_unique_constraint(_old_unique(), ["event_id"])
    op.execute("UPDATE events SET producer_key_id = NULL WHERE producer_key_id = 0")
