"""phone reports: why a number was marked wrong, and a number that takes no SMS

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-02 04:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("phone_invalid_reason", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("sms_unable_phone", sa.String(length=20), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("sms_unable_phone")
        batch_op.drop_column("phone_invalid_reason")
