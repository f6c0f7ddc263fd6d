"""Provider reports (status callbacks): forward-only, in any order, any number of times.

A report is always written to the delivery's timeline. It moves the delivery
only from ``sent``: a late ``sent`` never overwrites ``delivered``, and a
report that beats the worker's own record of the send (still ``sending``) is
applied by the worker right after it records the send.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from sqlmodel import Session

from notifier.deliveries import service as deliveries
from notifier.deliveries.models import Delivery, DeliveryStatus
from notifier.flows.fallback import retry_delay, start_fallback
from notifier.flows.outcome import DeliverOutcome
from notifier.runtime import Runtime

__all__ = ["apply_report", "record_report"]

log = logging.getLogger(__name__)
_FINAL = {
    "delivered": DeliveryStatus.DELIVERED,
    "undelivered": DeliveryStatus.UNDELIVERED,
    "failed": DeliveryStatus.FAILED,
}
_TRY_AGAIN = {"busy", "no-answer"}


def record_report(
    rt: Runtime, delivery_id: int, status: str, *, provider: str, **detail: Any
) -> DeliverOutcome:
    """Record one provider report and apply it if the delivery is ready for it."""
    with rt.db.session() as session:
        delivery = session.get(Delivery, delivery_id, with_for_update=True)
        if delivery is None:
            return DeliverOutcome(status=None)
        deliveries.record_change(session, delivery_id, status, report=provider, **detail)
        if delivery.status == DeliveryStatus.SENDING:
            return DeliverOutcome(status=delivery.status)  # the worker applies it once it records
        return _apply(rt, session, delivery, status)


def apply_report(rt: Runtime, delivery_id: int, status: str) -> DeliverOutcome:
    """Apply a report already in the timeline (one that arrived while sending)."""
    with rt.db.session() as session:
        delivery = session.get(Delivery, delivery_id, with_for_update=True)
        if delivery is None:
            return DeliverOutcome(status=None)
        return _apply(rt, session, delivery, status)


def _apply(rt: Runtime, session: Session, delivery: Delivery, status: str) -> DeliverOutcome:
    assert delivery.id is not None
    if delivery.status != DeliveryStatus.SENT:
        log.info(
            "delivery %s: report %r left as history; the delivery is already %s",
            delivery.id,
            status,
            delivery.status,
        )
        return DeliverOutcome(status=delivery.status)
    now = rt.clock()
    if status == "delivered":
        deliveries.settle_sent(session, delivery.id, DeliveryStatus.DELIVERED, now=now)
        return DeliverOutcome(status=DeliveryStatus.DELIVERED)
    if status in _TRY_AGAIN and delivery.attempts < rt.policy.retry.max_attempts:
        delay = retry_delay(rt, delivery.attempts)
        deliveries.settle_sent(
            session,
            delivery.id,
            DeliveryStatus.QUEUED,
            now=now,
            available_at=now + timedelta(seconds=delay),
            last_error=f"call {status}",
        )
        deliveries.record_change(
            session, delivery.id, DeliveryStatus.QUEUED, retry_in=round(delay, 1)
        )
        return DeliverOutcome(
            status=DeliveryStatus.QUEUED, retry_in=delay, channel=delivery.channel
        )
    final = _FINAL.get(status, DeliveryStatus.FAILED if status in _TRY_AGAIN else None)
    if final is None:
        return DeliverOutcome(status=delivery.status)  # progress only (queued, ringing, sent)
    deliveries.settle_sent(session, delivery.id, final, now=now, last_error=f"provider: {status}")
    # A notice we cannot show was served does not count as served.
    return DeliverOutcome(status=final, enqueue=start_fallback(rt, session, delivery, frozenset()))
