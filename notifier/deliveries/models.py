"""Notifications, their per-channel deliveries, and each delivery's timeline."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from notifier.db import UTCDateTime, utcnow

__all__ = [
    "FINAL_STATUSES",
    "Delivery",
    "DeliveryChange",
    "DeliveryStatus",
    "Notification",
    "NotificationStatus",
]


class NotificationStatus:
    ACTIVE = "active"
    SUPPRESSED = "suppressed"
    """A repeat of a notice already sent inside the dedup window."""
    UNREACHABLE = "unreachable"
    """No channel the policy allows can reach the account."""
    SKIPPED = "skipped"
    """Nothing to tell (e.g. the bill was paid before the notice was due)."""


class DeliveryStatus:
    QUEUED = "queued"
    SENDING = "sending"
    DEFERRED = "deferred"
    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"
    UNDELIVERED = "undelivered"
    CANCELLED = "cancelled"
    SUPPRESSED = "suppressed"
    AMBIGUOUS = "ambiguous"
    """The send may have reached the provider (a timeout or a lost connection after the
    request left): not final, never sent again blindly. Settled by asking the provider
    or by its report, else sent again after ``NOTIFIER_AMBIGUOUS_WAIT_SECONDS``
    (notifier.flows.ambiguous)."""
    UNKNOWN = "unknown"
    """Sent through a provider that reports receipts, and none came in time
    (``NOTIFIER_RECEIPT_TIMEOUT_SECONDS``): not proven served. A late receipt
    may still settle it (delivered, undelivered, failed)."""


FINAL_STATUSES = frozenset(
    {
        DeliveryStatus.SENT,
        DeliveryStatus.DELIVERED,
        DeliveryStatus.FAILED,
        DeliveryStatus.UNDELIVERED,
        DeliveryStatus.CANCELLED,
        DeliveryStatus.SUPPRESSED,
        DeliveryStatus.UNKNOWN,
    }
)


class Notification(SQLModel, table=True):
    __tablename__ = "notifications"
    __table_args__ = (
        # The unreachable customers' page and the dashboard's count: one status, newest first.
        sa.Index("ix_notifications_status_id", "status", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    event_pk: int = Field(foreign_key="events.id", index=True)
    account_no: str = Field(foreign_key="accounts.account_no", index=True, max_length=11)
    type: str = Field(max_length=32)
    bill_no: str | None = Field(default=None, index=True, max_length=64)
    usage_period: str | None = Field(default=None, max_length=32)
    level: int = 1
    dedup_key: str = Field(index=True, max_length=200)
    status: str = Field(default=NotificationStatus.ACTIVE, max_length=16)
    duplicate_of: int | None = None
    held_by: int | None = Field(default=None, foreign_key="holds.id", index=True)
    """The hold that kept it from being sent (``suppressed``, reason held)."""
    urgent: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    """A suspected leak (policy ``usage``): says what to do now, and its call is not held
    by quiet hours."""
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Delivery(SQLModel, table=True):
    __tablename__ = "deliveries"
    __table_args__ = (
        sa.Index("ix_deliveries_status_available_at", "status", "available_at"),
        sa.Index("ix_deliveries_account_no_id", "account_no", "id"),
        # The delivery log filtered by status or channel, newest first, a page at a time.
        sa.Index("ix_deliveries_status_id", "status", "id"),
        sa.Index("ix_deliveries_channel_id", "channel", "id"),
        # The receipt sweep: sends of one provider still waiting for its report, oldest first.
        sa.Index("ix_deliveries_status_provider_updated_at", "status", "provider", "updated_at"),
        # Retention reads the rows not purged yet, oldest first; a purged row leaves the index.
        sa.Index(
            "ix_deliveries_unpurged",
            "created_at",
            "id",
            sqlite_where=sa.text("purged_at IS NULL"),
            postgresql_where=sa.text("purged_at IS NULL"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    notification_id: int = Field(foreign_key="notifications.id", index=True)
    account_no: str = Field(max_length=11)
    event_type: str = Field(max_length=32)
    channel: str = Field(max_length=16)
    status: str = Field(default=DeliveryStatus.QUEUED, max_length=16)
    recipients: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    address_masked: str = Field(default="", max_length=500)
    language: str = Field(default="zh-TW", max_length=16)
    language_fallback: bool = False
    content: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    """Rendered ``subject``, ``body`` and ``html``, as the customer gets them."""
    segments: int | None = None
    stated: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON)
    """What ``content`` says of the ledger (notifier.notices.content.statement): compared
    with the ledger when the delivery is claimed, and read by correction notices."""
    provider: str | None = Field(default=None, max_length=32)
    provider_id: str | None = Field(default=None, index=True, max_length=128)
    attempts: int = 0
    last_error: str | None = Field(default=None, max_length=1000)
    available_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    """When the row may next be claimed (retry backoff, quiet hours, redispatch)."""
    quiet_hours_waived: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    """Someone in ops chose "send now" for this deferred delivery: quiet hours no longer
    hold it (``flows.ops_actions.send_now``, written to the audit trail)."""
    lease_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    claim_token: str | None = Field(default=None, max_length=64)
    fallback_of: int | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    purged_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    """When retention emptied ``content`` and ``recipients`` (notifier.flows.retention)."""


class DeliveryChange(SQLModel, table=True):
    """One entry of a delivery's timeline: a status change or a provider report."""

    __tablename__ = "delivery_changes"

    id: int | None = Field(default=None, primary_key=True)
    delivery_id: int = Field(foreign_key="deliveries.id", index=True)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    status: str = Field(max_length=16)
    detail: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
