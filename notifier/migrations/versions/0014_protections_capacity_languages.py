"""protected customers, spoken languages, agents' daily capacity and languages

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02 03:10:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("protections", sa.JSON(), nullable=False, server_default="[]")
        )
        batch_op.add_column(
            sa.Column("protections_added", sa.JSON(), nullable=False, server_default="[]")
        )
        batch_op.add_column(sa.Column("spoken_language", sa.String(length=16), nullable=True))
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("daily_capacity", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("languages", sa.JSON(), nullable=False, server_default="[]"))
    with op.batch_alter_table("escalations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("assigned_on", sa.Date(), nullable=True))
        batch_op.add_column(sa.Column("capacity_wait_since", sa.Date(), nullable=True))
        batch_op.create_index("ix_escalations_assigned_on", ["assigned_on"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("escalations", schema=None) as batch_op:
        batch_op.drop_index("ix_escalations_assigned_on")
        batch_op.drop_column("capacity_wait_since")
        batch_op.drop_column("assigned_on")
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.drop_column("languages")
        batch_op.drop_column("daily_capacity")
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("spoken_language")
        batch_op.drop_column("protections_added")
        batch_op.drop_column("protections")
