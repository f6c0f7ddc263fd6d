"""ops pages: keyed hashes of accounts' phone and email (indexed for the log's search), and
deliveries' quiet_hours_waived ("send now")

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-02 17:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from notifier.privacy import lookup
from notifier.settings import get_settings

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BATCH = 2_000


def upgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("phone_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("email_hash", sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f("ix_accounts_phone_hash"), ["phone_hash"], unique=False)
        batch_op.create_index(batch_op.f("ix_accounts_email_hash"), ["email_hash"], unique=False)
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("quiet_hours_waived", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    _backfill()


def _backfill() -> None:
    # The key is the one this environment's settings name: the service computes new
    # hashes with the same one, so old and new rows match alike.
    key = get_settings().resolved_lookup_key
    bind = op.get_bind()
    accounts = sa.table(
        "accounts",
        sa.column("account_no", sa.String),
        sa.column("phone", sa.String),
        sa.column("email", sa.String),
        sa.column("phone_hash", sa.String),
        sa.column("email_hash", sa.String),
    )
    after = ""
    while True:
        rows = bind.execute(
            sa.select(accounts.c.account_no, accounts.c.phone, accounts.c.email)
            .where(accounts.c.account_no > after)
            .where(sa.or_(accounts.c.phone.is_not(None), accounts.c.email.is_not(None)))
            .order_by(accounts.c.account_no)
            .limit(_BATCH)
        ).all()
        if not rows:
            return
        bind.execute(
            accounts.update()
            .where(accounts.c.account_no == sa.bindparam("no"))
            .values(phone_hash=sa.bindparam("ph"), email_hash=sa.bindparam("eh")),
            [
                {
                    "no": no,
                    "ph": lookup.phone_hash(phone, key),
                    "eh": lookup.email_hash(email, key),
                }
                for no, phone, email in rows
            ],
        )
        after = rows[-1][0]


def downgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_column("quiet_hours_waived")
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_accounts_email_hash"))
        batch_op.drop_index(batch_op.f("ix_accounts_phone_hash"))
        batch_op.drop_column("email_hash")
        batch_op.drop_column("phone_hash")
