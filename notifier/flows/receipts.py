"""Receipts that never came: ``sent`` through a reporting provider for too long → ``unknown``.

Twilio reports on each SMS and call; until it does, the delivery is ``sent``,
not final in fact. Past ``NOTIFIER_RECEIPT_TIMEOUT_SECONDS`` the reconciler
calls :func:`expire_receipts`: the delivery becomes ``unknown`` (final), and a
dunning notice (``bill.unpaid``) starts its fallback, since a notice we cannot
prove served does not count as served. A late report may still settle it
forward (flows/reports.py).
"""

from __future__ import annotations

import logging

from sqlmodel import Session, col, select

from notifier.deliveries import service as deliveries
from notifier.deliveries.models import Delivery, DeliveryStatus, Notification
from notifier.flows.deliver import REPORTING_PROVIDERS
from notifier.flows.fallback import start_fallback
from notifier.runtime import Runtime
from notifier.webhooks import service as webhooks

__all__ = ["DUNNING_TYPES", "expire_receipts"]

log = logging.getLogger(__name__)
DUNNING_TYPES = frozenset({"bill.unpaid"})


def expire_receipts(rt: Runtime, session: Session, *, limit: int) -> list[tuple[int, str]]:
    """Move up to ``limit`` unreceipted sends to ``unknown``; the fallbacks to enqueue."""
    now = rt.clock()
    moved = deliveries.expire_unreceipted(
        session,
        now=now,
        timeout=rt.settings.receipt_timeout_seconds,
        providers=REPORTING_PROVIDERS,
        limit=limit,
    )
    if not moved:
        return []
    webhooks.delivery_outcomes(session, moved, DeliveryStatus.UNKNOWN, now=now)
    dunning = session.exec(
        select(Delivery)
        .join(Notification, col(Notification.id) == col(Delivery.notification_id))
        .where(col(Delivery.id).in_(moved), col(Notification.type).in_(DUNNING_TYPES))
        .order_by(col(Delivery.id))
    ).all()
    enqueue: list[tuple[int, str]] = []
    for delivery in dunning:
        enqueue.extend(
            start_fallback(rt, session, delivery, frozenset(), noted_as=DeliveryStatus.UNKNOWN)
        )
    log.warning(
        "%d deliveries had no receipt in %.0f s and are unknown; %d fallbacks started",
        len(moved),
        rt.settings.receipt_timeout_seconds,
        len(enqueue),
    )
    return enqueue
