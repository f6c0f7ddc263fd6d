"""What ops staff may do to a delivery by hand: retry a failed one, cancel a waiting one.

Both leave the original's history as it was (a failed delivery stays failed:
states only move forward); a retry is a new delivery of the same rendered
notice, linked both ways in the timelines. Each action is written to the
audit trail with who did it, in the same transaction.
"""

from __future__ import annotations

from notifier.audit import service as audit
from notifier.deliveries import service as deliveries
from notifier.deliveries.models import Delivery, DeliveryStatus
from notifier.runtime import Runtime

__all__ = ["RETRYABLE", "ActionRefused", "cancel", "retry"]

RETRYABLE = frozenset({DeliveryStatus.FAILED, DeliveryStatus.UNDELIVERED})


class ActionRefused(Exception):
    """The delivery is not in a state that allows the action."""


def retry(rt: Runtime, delivery_id: int, *, actor: str) -> Delivery:
    """A new delivery of a failed one's notice, queued now; returns it."""
    now = rt.clock()
    with rt.db.session() as session:
        failed = session.get(Delivery, delivery_id, with_for_update=True)
        if failed is None:
            raise LookupError(f"no delivery {delivery_id}")
        if failed.purged_at is not None:
            raise ActionRefused(
                f"delivery {delivery_id} is past retention: its notice and address were purged"
            )
        if failed.status not in RETRYABLE:
            raise ActionRefused(
                f"delivery {delivery_id} is {failed.status}; only failed or undelivered "
                "deliveries can be retried"
            )
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
