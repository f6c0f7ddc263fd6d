"""Notices that reached nobody: told to their producer, so someone fixes the contact data.

A notification ends ``unreachable`` when the policy allows channels for it
but none reaches the account (no usable contact, every channel opted out, no
template). No delivery is made, so no delivery callback will ever tell the
producer; this flow owes a ``notification.unreachable`` callback instead, in
the transaction that stored the notification. The ops page and its export
(``notifier.web.ops``) list the same notifications.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel import Session, col, select

from notifier.accounts.models import Account
from notifier.deliveries.models import Notification, NotificationStatus
from notifier.policy.local_time import local_naive
from notifier.policy.routing import why_unreachable
from notifier.privacy.masking import mask_address, mask_email, mask_phone
from notifier.runtime import Runtime
from notifier.webhooks import service as webhooks

__all__ = ["UnreachableRow", "export_table", "list_unreachable", "reason_of", "report"]


@dataclass(frozen=True)
class UnreachableRow:
    """One notice that reached nobody, with the account's contact data as it is now, masked."""

    notification_id: int
    created_at: datetime
    account_no: str
    event_type: str
    about: str
    """The bill number, or the usage period."""
    level: int
    reason: str | None
    """Why it reaches nobody now (``UNREACHABLE_REASONS``); None once the data is fixed."""
    phone: str
    email: str
    address: str
    push_tokens: int
    opt_outs: tuple[str, ...]


def reason_of(rt: Runtime, notification: Notification, account: Account) -> str | None:
    """Why ``notification`` reaches nobody with the account as it is now; None if it would."""
    return why_unreachable(
        rt.policy,
        account,
        notification.type,
        notification.level,
        rt.has_template(notification.type),
        urgent=notification.urgent,
    )


def report(
    rt: Runtime, session: Session, notices: Sequence[tuple[Notification, Account]]
) -> list[int]:
    """Owe the producer a callback for each unreachable notification among ``notices``."""
    reasons = {
        notification.id: reason_of(rt, notification, account) or "no_channel"
        for notification, account in notices
        if notification.status == NotificationStatus.UNREACHABLE and notification.id is not None
    }
    return webhooks.unreachable_notifications(session, reasons, now=rt.clock())


def list_unreachable(
    rt: Runtime, session: Session, *, before_id: int | None, limit: int
) -> list[UnreachableRow]:
    """Unreachable notifications, newest first, keyset-paged on id; contact data masked."""
    query = (
        select(Notification, Account)
        .join(Account, col(Account.account_no) == col(Notification.account_no))
        .where(Notification.status == NotificationStatus.UNREACHABLE)
        .order_by(col(Notification.id).desc())
        .limit(limit)
    )
    if before_id is not None:
        query = query.where(col(Notification.id) < before_id)
    rows = []
    for notification, account in session.exec(query):
        assert notification.id is not None
        rows.append(
            UnreachableRow(
                notification_id=notification.id,
                created_at=notification.created_at,
                account_no=notification.account_no,
                event_type=notification.type,
                about=notification.bill_no or notification.usage_period or "",
                level=notification.level,
                reason=reason_of(rt, notification, account),
                phone=mask_phone(account.phone) if account.phone else "",
                email=mask_email(account.email) if account.email else "",
                address=mask_address(account.address) if account.address else "",
                push_tokens=len(account.push_tokens),
                opt_outs=tuple(account.opt_outs),
            )
        )
    return rows


EXPORT_HEADERS = (
    "notification", "created", "account", "event", "about", "level", "reason now",
    "phone", "email", "address", "push tokens", "opted out",
)  # fmt: skip


def export_table(
    rows: Sequence[UnreachableRow], *, tz: ZoneInfo
) -> tuple[list[str], list[list[Any]]]:
    """Headers and rows for CSV/XLSX/ODS; times on the wall clock of ``tz``, named in the header."""
    headers = [f"created ({tz.key})" if h == "created" else h for h in EXPORT_HEADERS]
    table: list[list[Any]] = [
        [
            r.notification_id, local_naive(r.created_at, tz), r.account_no, r.event_type,
            r.about, r.level, r.reason or "reachable now", r.phone, r.email, r.address,
            r.push_tokens, ", ".join(r.opt_outs),
        ]
        for r in rows
    ]  # fmt: skip
    return headers, table
