"""ledger payments and bill kinds

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 10:00:00.000000

Payments of a bill (partial ones add up; a reversal reopens what it settled),
the bill's kind (only a regular bill sets the second billing date) and what
each delivery stated of the ledger (compared when it is claimed).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import notifier.db

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("bills", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("kind", sa.String(length=16), nullable=False, server_default="regular")
        )
        batch_op.add_column(
            sa.Column("paid_amount", sa.Integer(), nullable=False, server_default="0")
        )
    # A bill settled before payments were kept was paid in full.
    op.execute("UPDATE bills SET paid_amount = amount WHERE paid_at IS NOT NULL")
    with op.batch_alter_table("bills", schema=None) as batch_op:
        batch_op.alter_column("kind", server_default=None)
        batch_op.alter_column("paid_amount", server_default=None)

    op.create_table(
        "payments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("bill_no", sa.String(length=64), nullable=False),
        sa.Column("account_no", sa.String(length=11), nullable=False),
        sa.Column("event_pk", sa.Integer(), nullable=False),
        sa.Column("amount", sa.Integer(), nullable=False),
        sa.Column("paid_at", notifier.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("method", sa.String(length=32), nullable=True),
        sa.Column("reversed_at", notifier.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("reversed_by", sa.Integer(), nullable=True),
        sa.Column("created_at", notifier.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["bill_no"], ["bills.bill_no"]),
        sa.ForeignKeyConstraint(["event_pk"], ["events.id"]),
        sa.ForeignKeyConstraint(["reversed_by"], ["events.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.create_index("ix_payments_bill_no", ["bill_no"], unique=False)
        batch_op.create_index("ix_payments_event_pk", ["event_pk"], unique=False)

    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("stated", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_column("stated")
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_index("ix_payments_event_pk")
        batch_op.drop_index("ix_payments_bill_no")
    op.drop_table("payments")
    with op.batch_alter_table("bills", schema=None) as batch_op:
        batch_op.drop_column("paid_amount")
        batch_op.drop_column("kind")
