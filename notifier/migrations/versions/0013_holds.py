"""holds (dunning locks) on an account, a bill or an area; notifications a hold kept back

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 10:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import notifier.db

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "holds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("account_no", sa.String(length=11), nullable=True),
        sa.Column("bill_no", sa.String(length=64), nullable=True),
        sa.Column("area", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("starts_on", sa.Date(), nullable=False),
        sa.Column("ends_on", sa.Date(), nullable=True),
        sa.Column("note", sa.String(length=2000), nullable=True),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", notifier.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("released_at", notifier.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("released_by", sa.String(length=200), nullable=True),
        sa.Column("release_queued_at", notifier.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("release_accounts", sa.Integer(), nullable=False),
        sa.Column("release_checked", sa.Integer(), nullable=False),
        sa.Column("release_notified", sa.Integer(), nullable=False),
        sa.Column("release_cursor", sa.String(length=11), nullable=True),
        sa.Column("release_done_at", notifier.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["account_no"], ["accounts.account_no"]),
        sa.ForeignKeyConstraint(["bill_no"], ["bills.bill_no"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("holds", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_holds_account_no"), ["account_no"], unique=False)
        batch_op.create_index(batch_op.f("ix_holds_area"), ["area"], unique=False)
        batch_op.create_index(batch_op.f("ix_holds_bill_no"), ["bill_no"], unique=False)
        batch_op.create_index(
            "ix_holds_unreleased",
            ["scope", "starts_on"],
            unique=False,
            sqlite_where=sa.text("released_at IS NULL"),
            postgresql_where=sa.text("released_at IS NULL"),
        )
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.add_column(sa.Column("held_by", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_notifications_held_by"), ["held_by"], unique=False)
        batch_op.create_foreign_key("fk_notifications_held_by", "holds", ["held_by"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_constraint("fk_notifications_held_by", type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_notifications_held_by"))
        batch_op.drop_column("held_by")
    with op.batch_alter_table("holds", schema=None) as batch_op:
        batch_op.drop_index("ix_holds_unreleased")
        batch_op.drop_index(batch_op.f("ix_holds_bill_no"))
        batch_op.drop_index(batch_op.f("ix_holds_area"))
        batch_op.drop_index(batch_op.f("ix_holds_account_no"))
    op.drop_table("holds")
