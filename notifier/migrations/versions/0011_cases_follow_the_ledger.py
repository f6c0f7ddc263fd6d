"""cases follow the ledger: a phone marked invalid, call spacing, ladder stage, reopened runs

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-10 10:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import notifier.db

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("invalid_phone", sa.String(length=20), nullable=True))
        batch_op.add_column(
            sa.Column("phone_invalid_at", notifier.db.UTCDateTime(timezone=True), nullable=True)
        )
    with op.batch_alter_table("escalations", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("next_call_at", notifier.db.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("stage", sa.String(length=32), nullable=True))
    with op.batch_alter_table("sweep_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reopened", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("sweep_runs", schema=None) as batch_op:
        batch_op.drop_column("reopened")
    with op.batch_alter_table("escalations", schema=None) as batch_op:
        batch_op.drop_column("stage")
        batch_op.drop_column("next_call_at")
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("phone_invalid_at")
        batch_op.drop_column("invalid_phone")
