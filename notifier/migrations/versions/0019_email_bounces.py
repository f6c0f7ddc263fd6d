"""email bounces: the address a hard bounce marked as taking no mail, when and why

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-02 14:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import notifier.db

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("invalid_email", sa.String(length=320), nullable=True))
        batch_op.add_column(
            sa.Column("email_invalid_at", notifier.db.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("email_invalid_reason", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("email_invalid_reason")
        batch_op.drop_column("email_invalid_at")
        batch_op.drop_column("invalid_email")
