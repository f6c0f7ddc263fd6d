"""the collections ladder: case stages with their dates, the stage history

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02 03:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import notifier.db

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("escalations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("stage_on", sa.Date(), nullable=True))
        batch_op.add_column(sa.Column("stage_deadline", sa.Date(), nullable=True))
        batch_op.add_column(sa.Column("stage_waiting", sa.String(length=64), nullable=True))
    op.create_table(
        "collection_stages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("escalation_id", sa.Integer(), nullable=False),
        sa.Column("account_no", sa.String(length=11), nullable=False),
        sa.Column("stage", sa.String(length=32), nullable=False),
        sa.Column("previous", sa.String(length=32), nullable=True),
        sa.Column("on", sa.Date(), nullable=False),
        sa.Column("at", notifier.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("deadline", sa.Date(), nullable=True),
        sa.Column("notification_id", sa.Integer(), nullable=True),
        sa.Column("amount", sa.Integer(), nullable=True),
        sa.Column("proofs", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["escalation_id"], ["escalations.id"]),
        sa.ForeignKeyConstraint(["notification_id"], ["notifications.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_collection_stages_escalation_id", "collection_stages", ["escalation_id"])
    op.create_index("ix_collection_stages_account_no", "collection_stages", ["account_no"])
    op.create_index(
        "ix_collection_stages_notification_id", "collection_stages", ["notification_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_collection_stages_notification_id", table_name="collection_stages")
    op.drop_index("ix_collection_stages_account_no", table_name="collection_stages")
    op.drop_index("ix_collection_stages_escalation_id", table_name="collection_stages")
    op.drop_table("collection_stages")
    with op.batch_alter_table("escalations", schema=None) as batch_op:
        batch_op.drop_column("stage_waiting")
        batch_op.drop_column("stage_deadline")
        batch_op.drop_column("stage_on")
