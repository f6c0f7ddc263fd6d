"""What ops staff may do to a delivery by hand: retry a failed one, cancel a waiting one.

Both leave the original's history as it was (a failed delivery stays failed:
states only move forward); a retry is a new delivery of the same rendered
notice, linked both ways in the timelines. A delivery is retried once (a double
click, or two people at once, make one retry: the second waits on the row lock and
finds the first), and not at all once another delivery of the notice reached the
customer (the fallback did its work). Each action is written to the audit trail
with who did it, in the same transaction.
"""

from __future__ import annotations

from sqlmodel import Session, col, select

from notifier.audit import service as audit
from notifier.deliveries import service as deliveries
from notifier.deliveries.models import Delivery, DeliveryChange, DeliveryStatus
from notifier.runtime import Runtime

__all__ = ["RETRYABLE", "ActionRefused", "cancel", "retry", "retry_refusal"]

RETRYABLE = frozenset({DeliveryStatus.FAILED, DeliveryStatus.UNDELIVERED})
REACHED = frozenset({DeliveryStatus.SENT, DeliveryStatus.DELIVERED})


class ActionRefused(Exception):
    """The delivery is not in a state that allows the action."""


def retry_refusal(
    delivery: Delivery, timeline: list[DeliveryChange], siblings: list[Delivery]
) -> str | None:
    """Why ``delivery`` may not be retried (its ``timeline``; ``siblings``: every delivery
    of its notification), or None."""
    if delivery.purged_at is not None:
        return f"delivery {delivery.id} is past retention: its notice and address were purged"
    if delivery.status not in RETRYABLE:
        return (
            f"delivery {delivery.id} is {delivery.status}; only failed or undelivered "
            "deliveries can be retried"
        )
    again = next((c.detail["retried_as"] for c in timeline if "retried_as" in c.detail), None)
    if again is not None:
        return f"delivery {delivery.id} was retried already, as delivery {again}"
    reached = next((d for d in siblings if d.id != delivery.id and d.status in REACHED), None)
    if reached is not None:
        return f"the notice reached the customer by {reached.channel} (delivery {reached.id})"
    return None


def _siblings(session: Session, delivery: Delivery) -> list[Delivery]:
    return list(
        session.exec(
            select(Delivery)
            .where(Delivery.notification_id == delivery.notification_id)
            .order_by(col(Delivery.id))
        )
    )


def retry(rt: Runtime, delivery_id: int, *, actor: str) -> Delivery:
    """A new delivery of a failed one's notice, queued now; returns it."""
    now = rt.clock()
    with rt.db.session() as session:
        failed = session.get(Delivery, delivery_id, with_for_update=True)
        if failed is None:
            raise LookupError(f"no delivery {delivery_id}")
        why = retry_refusal(
            failed, deliveries.timeline(session, delivery_id), _siblings(session, failed)
        )
        if why is not None:
            raise ActionRefused(why)
        again = Delivery(
            notification_id=failed.notification_id, account_no=failed.account_no,
            event_type=failed.event_type, channel=failed.channel, status=DeliveryStatus.QUEUED,
            recipients=list(failed.recipients), address_masked=failed.address_masked,
            language=failed.language, language_fallback=failed.language_fallback,
            content=dict(failed.content), segments=failed.segments, created_at=now,
            updated_at=now, available_at=now,
        )  # fmt: skip
        session.add(again)
        session.flush()
        assert again.id is not None
        deliveries.record_change(
            session, again.id, DeliveryStatus.QUEUED, at=now, retry_of=delivery_id, by=actor
        )
        deliveries.record_change(
            session, delivery_id, failed.status, at=now, retried_as=again.id, by=actor
        )
        audit.record(
            session, actor=actor, action="delivery.retry", target=f"delivery {delivery_id}",
            detail={"new_delivery": again.id, "channel": failed.channel},
        )  # fmt: skip
    rt.dispatcher.deliver([(again.id, again.channel)])
    return again


def cancel(rt: Runtime, delivery_id: int, *, actor: str) -> Delivery:
    """Cancel a delivery still queued or deferred; returns it as it was."""
    with rt.db.session() as session:
        delivery = session.get(Delivery, delivery_id)
        if delivery is None:
            raise LookupError(f"no delivery {delivery_id}")
        if not deliveries.cancel_pending(
            session, delivery_id, now=rt.clock(), reason=f"cancelled by {actor}"
        ):
            raise ActionRefused(
                f"delivery {delivery_id} is {delivery.status}; only queued or deferred "
                "deliveries can be cancelled"
            )
        audit.record(
            session, actor=actor, action="delivery.cancel", target=f"delivery {delivery_id}",
            detail={"channel": delivery.channel, "was": delivery.status},
        )  # fmt: skip
    return delivery
