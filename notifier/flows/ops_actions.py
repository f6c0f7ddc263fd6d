"""What ops staff may do to a delivery by hand: retry a failed one, cancel a waiting one,
send a deferred one now (quiet hours waived for it), and any of these to many at once.

Both leave the original's history as it was (a failed delivery stays failed:
states only move forward); a retry is a new delivery of the same rendered
notice, linked both ways in the timelines. A delivery is retried once (a double
click, or two people at once, make one retry: the second waits on the row lock and
finds the first), and not at all once another delivery of the notice reached the
customer (the fallback did its work). Each action is written to the audit trail
with who did it, in the same transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session, col, select

from notifier.audit import service as audit
from notifier.deliveries import service as deliveries
from notifier.deliveries.models import Delivery, DeliveryChange, DeliveryStatus
from notifier.runtime import Runtime

__all__ = [
    "ACTIONS",
    "RETRYABLE",
    "ActionRefused",
    "BulkResult",
    "bulk",
    "cancel",
    "refusal",
    "retry",
    "retry_refusal",
    "send_now",
]

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
        again = _again(session, failed, now=now, actor=actor)
        audit.record(
            session, actor=actor, action="delivery.retry", target=f"delivery {delivery_id}",
            detail={"new_delivery": again.id, "channel": failed.channel},
        )  # fmt: skip
    assert again.id is not None
    rt.dispatcher.deliver([(again.id, again.channel)])
    return again


def _again(session: Session, source: Delivery, *, now: datetime, actor: str) -> Delivery:
    """A new queued delivery of ``source``'s rendered notice, linked both ways."""
    assert source.id is not None
    again = Delivery(
        notification_id=source.notification_id, account_no=source.account_no,
        event_type=source.event_type, channel=source.channel, status=DeliveryStatus.QUEUED,
        recipients=list(source.recipients), address_masked=source.address_masked,
        language=source.language, language_fallback=source.language_fallback,
        content=dict(source.content), segments=source.segments, created_at=now,
        updated_at=now, available_at=now,
    )  # fmt: skip
    session.add(again)
    session.flush()
    assert again.id is not None
    deliveries.record_change(
        session, again.id, DeliveryStatus.QUEUED, at=now, retry_of=source.id, by=actor
    )
    deliveries.record_change(
        session, source.id, source.status, at=now, retried_as=again.id, by=actor
    )
    return again


def reprint(rt: Runtime, delivery_id: int, *, actor: str) -> Delivery:
    """A printed postcard queued again for the next print batch (lost or spoiled in the
    post); returns the new delivery. A card is reprinted once: its copy can be reprinted."""
    now = rt.clock()
    with rt.db.session() as session:
        printed = session.get(Delivery, delivery_id, with_for_update=True)
        if printed is None:
            raise LookupError(f"no delivery {delivery_id}")
        if printed.channel != "postcard" or printed.status not in REACHED:
            raise ActionRefused(f"delivery {delivery_id} is not a printed postcard")
        if printed.purged_at is not None:
            raise ActionRefused(f"delivery {delivery_id} is past retention: nothing to print")
        timeline = deliveries.timeline(session, delivery_id)
        again_id = next(
            (c.detail["retried_as"] for c in timeline if "retried_as" in c.detail), None
        )
        if again_id is not None:
            raise ActionRefused(f"delivery {delivery_id} was reprinted already, as {again_id}")
        again = _again(session, printed, now=now, actor=actor)
        audit.record(
            session, actor=actor, action="postcard.reprint", target=f"delivery {delivery_id}",
            detail={"new_delivery": again.id, "batch": printed.provider_id},
        )  # fmt: skip
    assert again.id is not None
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


def send_now(rt: Runtime, delivery_id: int, *, actor: str) -> Delivery:
    """A deferred delivery queued for now, quiet hours waived for it; returns it."""
    now = rt.clock()
    with rt.db.session() as session:
        delivery = session.get(Delivery, delivery_id, with_for_update=True)
        if delivery is None:
            raise LookupError(f"no delivery {delivery_id}")
        if delivery.status != DeliveryStatus.DEFERRED:
            raise ActionRefused(
                f"delivery {delivery_id} is {delivery.status}; only deferred deliveries "
                "can be sent now"
            )
        session.execute(
            sa.update(Delivery)
            .where(col(Delivery.id) == delivery_id)
            .values(
                status=DeliveryStatus.QUEUED, available_at=now, updated_at=now,
                quiet_hours_waived=True,
            )
            .execution_options(synchronize_session=False)
        )  # fmt: skip
        deliveries.record_change(
            session, delivery_id, DeliveryStatus.QUEUED, at=now, sent_now=True, by=actor
        )
        audit.record(
            session, actor=actor, action="delivery.send_now", target=f"delivery {delivery_id}",
            detail={"channel": delivery.channel},
        )  # fmt: skip
        channel = delivery.channel
    rt.dispatcher.deliver([(delivery_id, channel)])
    return delivery


ACTIONS: dict[str, Callable[..., Delivery]] = {
    "retry": retry,
    "cancel": cancel,
    "send_now": send_now,
}
"""The actions ops may take on many deliveries at once, by name."""


@dataclass
class BulkResult:
    done: list[int] = field(default_factory=list)
    refused: dict[int, str] = field(default_factory=dict)
    """Delivery id → why it was left as it was."""


def bulk(rt: Runtime, action: str, delivery_ids: Sequence[int], *, actor: str) -> BulkResult:
    """``action`` on each delivery in its own transaction (each audited as one alone would
    be); the ones that refuse are reported, not fatal: the rest go ahead."""
    act = ACTIONS[action]
    result = BulkResult()
    for delivery_id in dict.fromkeys(delivery_ids):
        try:
            act(rt, delivery_id, actor=actor)
        except (LookupError, ActionRefused) as exc:
            result.refused[delivery_id] = str(exc).strip("'\"")
        else:
            result.done.append(delivery_id)
    return result


def refusal(delivery: Delivery, action: str, session: Session) -> str | None:
    """Why ``action`` would refuse ``delivery`` now (for the confirmation step), or None."""
    if action == "retry":
        return retry_refusal(
            delivery, deliveries.timeline(session, delivery.id or 0), _siblings(session, delivery)
        )
    if action == "cancel" and delivery.status not in (
        DeliveryStatus.QUEUED,
        DeliveryStatus.DEFERRED,
    ):
        return f"delivery {delivery.id} is {delivery.status}; only queued or deferred ones"
    if action == "send_now" and delivery.status != DeliveryStatus.DEFERRED:
        return f"delivery {delivery.id} is {delivery.status}; only deferred ones"
    return None
