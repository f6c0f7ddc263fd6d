"""Ambiguous sends: the provider may have the message, so find out before sending again.

A send that timed out or lost its connection after the request left
(:class:`~channels.AmbiguousChannelError`) is recorded ``ambiguous``
(flows/deliver.py) with ``available_at`` at the end of
``NOTIFIER_AMBIGUOUS_WAIT_SECONDS``; so is a ``sending`` row whose lease
expired (flows/reconcile.py): its worker died, or sent and could not record.
:func:`resolve` (the ``resolve_ambiguous`` task, scheduled by the worker and
re-enqueued by the reconciler when its task was lost) settles it:

* a provider report that came for it (the callback token names the
  delivery; flows/reports.py settles one that comes later) → ``sent`` with
  that provider id;
* the provider's own records (:meth:`~channels.Channel.lookup`: Twilio lists
  the messages or calls to the number since the attempt) → ``sent`` with the
  provider id, as an accepted send; the status report then finishes it, or
  the record itself when it says the SMS was delivered (a report posted while
  our API was away is lost: Twilio does not post it again);
* past the wait, a provider that says it has no such send → ``queued``, sent
  again (within the policy's attempts, else ``failed`` and the fallback);
* past the wait, a provider that cannot be asked (FCM) → sent again once
  (a push carries its notice's collapse key, so a late duplicate replaces
  the first on the device); ambiguous a second time → ``unknown``, not
  proven served (a dunning notice starts its fallback, as flows/receipts.py).

Every step is guarded by the row being ``ambiguous`` still, so a task run
twice, a report and the reconciler never settle one row twice; a worker or a
database that dies in between leaves the row ``ambiguous`` for the next pass.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlmodel import Session, col, select

from channels import ChannelError, Message, SendResult
from notifier.deliveries import service as deliveries
from notifier.deliveries.models import Delivery, DeliveryChange, DeliveryStatus, Notification
from notifier.flows.deliver import REPORTING_PROVIDERS, BatchOutcome
from notifier.flows.fallback import start_fallback
from notifier.flows.receipts import DUNNING_TYPES
from notifier.flows.reports import apply_report, record_report
from notifier.runtime import Runtime
from notifier.webhooks import service as webhooks

__all__ = ["overdue", "resolve"]

log = logging.getLogger(__name__)
LOOKUP_FAILED_RETRY = 30.0
"""Seconds before asking again a provider whose lookup itself failed."""
SERVED_RECORDS = frozenset({"delivered", "read"})
"""Twilio Message statuses that prove the SMS served (as its status callback would)."""


def resolve(rt: Runtime, delivery_ids: Sequence[int]) -> BatchOutcome:
    """Settle the ``ambiguous`` deliveries among ``delivery_ids`` that can be settled now."""
    outcome = BatchOutcome()
    for delivery_id in delivery_ids:
        outcome.merge(_resolve_one(rt, delivery_id))
    return outcome


def overdue(rt: Runtime, session: Session, *, limit: int) -> list[tuple[int, str]]:
    """Ambiguous rows whose resolution should have run by now (for the reconciler)."""
    return deliveries.ambiguous_overdue(
        session, now=rt.clock(), grace=rt.settings.redispatch_after_seconds, limit=limit
    )


def _resolve_one(rt: Runtime, delivery_id: int) -> BatchOutcome:
    outcome = BatchOutcome()
    now = rt.clock()
    with rt.db.session() as session:
        delivery = session.get(Delivery, delivery_id)
        if delivery is None or delivery.status != DeliveryStatus.AMBIGUOUS:
            return outcome
        history = deliveries.timeline(session, delivery_id)
        began = _attempt_began(history, fallback=delivery.updated_at)
        known = _known_ids(session, delivery, history)
        message = Message(
            delivery_id=delivery_id,
            channel=delivery.channel,
            to=tuple(delivery.recipients),
            body=delivery.content.get("body") or "",
            subject=delivery.content.get("subject"),
            language=delivery.language,
        )
        due = delivery.available_at <= now
        resent_once = any(change.detail.get("ambiguous_resend") for change in history)
        channel_name, attempts = delivery.channel, delivery.attempts
    reported = _reported(history)
    if reported is not None:
        return _found(rt, delivery_id, reported)
    looked: Sequence[SendResult] | None
    try:
        looked = rt.run_async(rt.channel(channel_name).lookup(message, since=began))
    except ChannelError as exc:
        # Cannot tell now; not a reason to send again. Ask again soon.
        log.warning(
            "delivery %s: looking the ambiguous send up failed: %s",
            delivery_id,
            exc,
            extra={"delivery_id": delivery_id},
        )
        outcome.resolve.setdefault(LOOKUP_FAILED_RETRY, []).append((delivery_id, channel_name))
        return outcome
    found = [r for r in looked or () if r.provider_id not in known]
    if found:
        return _found(rt, delivery_id, found[0])
    if not due:
        with rt.db.session() as session:
            fresh = session.get(Delivery, delivery_id)
            if fresh is not None and fresh.status == DeliveryStatus.AMBIGUOUS:
                left = (fresh.available_at - now).total_seconds()
                outcome.resolve.setdefault(float(max(1, round(left + 0.5))), []).append(
                    (delivery_id, channel_name)
                )
        return outcome
    if looked is None and resent_once:
        return _unknown(rt, delivery_id, reason="ambiguous again after one resend")
    if attempts >= rt.policy.retry.max_attempts:
        return _give_up(rt, delivery_id, attempts, looked=looked is not None)
    return _send_again(rt, delivery_id, channel_name, looked=looked is not None)


def _attempt_began(history: list[DeliveryChange], *, fallback: datetime) -> datetime:
    """When the ambiguous attempt was claimed (the latest ``sending`` entry)."""
    claims = [change.at for change in history if change.status == DeliveryStatus.SENDING]
    began = claims[-1] if claims else fallback
    return began if began.tzinfo else began.replace(tzinfo=UTC)


def _reported(history: list[DeliveryChange]) -> SendResult | None:
    """The send a provider reported on since the latest claim (a report that came while
    the row was ``sending``, before the worker knew the answer was lost)."""
    last_claim = max(
        (i for i, change in enumerate(history) if change.status == DeliveryStatus.SENDING),
        default=-1,
    )
    for change in history[last_claim + 1 :]:
        provider, sid = change.detail.get("report"), change.detail.get("sid")
        if provider and sid:
            return SendResult(
                provider=str(provider),
                provider_id=str(sid),
                detail={"found_by": "report"},
            )
    return None


def _known_ids(session: Session, delivery: Delivery, history: list[DeliveryChange]) -> set[str]:
    """Provider ids already accounted for: this delivery's earlier sends and other
    deliveries' sends to the same recipients (a lookup match on them is not this send)."""
    known = {str(c.detail["provider_id"]) for c in history if c.detail.get("provider_id")}
    others = session.exec(
        select(Delivery.provider_id).where(
            col(Delivery.account_no) == delivery.account_no,
            col(Delivery.channel) == delivery.channel,
            col(Delivery.id) != delivery.id,
            col(Delivery.provider_id).is_not(None),
        )
    ).all()
    return known | {provider_id for provider_id in others if provider_id}


def _found(rt: Runtime, delivery_id: int, result: SendResult) -> BatchOutcome:
    """The provider has it: record it as an accepted send (its report finishes it)."""
    outcome = BatchOutcome()
    now = rt.clock()
    with rt.db.session() as session:
        delivery = session.get(Delivery, delivery_id, with_for_update=True)
        if delivery is None:
            return outcome
        settled = deliveries.settle_ambiguous(
            session,
            delivery_id,
            result.status,
            now=now,
            provider=result.provider,
            provider_id=result.provider_id,
            last_error=None,
            detail={
                "provider": result.provider,
                "provider_id": result.provider_id,
                **result.detail,
            },
        )
        if not settled:
            return outcome
        outcome.statuses[delivery_id] = result.status
        if result.provider not in REPORTING_PROVIDERS:
            webhooks.delivery_outcomes(session, [delivery_id], result.status, now=now)
        early = deliveries.early_report(session, delivery)
        channel = delivery.channel
    log.info(
        "delivery %s: the ambiguous send was found at %s",
        delivery_id,
        result.provider,
        extra={"delivery_id": delivery_id, "provider_id": result.provider_id},
    )
    if early is not None:  # a report that came while the row was sending or ambiguous
        after = apply_report(rt, delivery_id, early)
    elif channel == "sms" and result.detail.get("twilio_status") in SERVED_RECORDS:
        # The provider's record is its report: one posted while our API was away is lost.
        after = record_report(
            rt,
            delivery_id,
            DeliveryStatus.DELIVERED,
            provider=result.provider,
            sid=result.provider_id,
            provider_status=str(result.detail["twilio_status"]),
            found_by="lookup",
        )
    else:
        return outcome
    if after.status is not None:
        outcome.statuses[delivery_id] = after.status
    outcome.enqueue.extend(after.enqueue)
    return outcome


def _send_again(rt: Runtime, delivery_id: int, channel: str, *, looked: bool) -> BatchOutcome:
    outcome = BatchOutcome()
    now = rt.clock()
    reason = (
        "the provider has no record of the ambiguous send: sent again"
        if looked
        else "the provider cannot be asked; the wait is over: sent again once"
    )
    with rt.db.session() as session:
        if deliveries.settle_ambiguous(
            session,
            delivery_id,
            DeliveryStatus.QUEUED,
            now=now,
            available_at=now,
            detail={"reason": reason, "ambiguous_resend": True},
        ):
            outcome.statuses[delivery_id] = DeliveryStatus.QUEUED
            outcome.enqueue.append((delivery_id, channel))
    return outcome


def _give_up(rt: Runtime, delivery_id: int, attempts: int, *, looked: bool) -> BatchOutcome:
    """No attempts left: ``failed`` if the provider has no record, else ``unknown``."""
    if not looked:
        return _unknown(rt, delivery_id, reason=f"no attempts left after {attempts}")
    outcome = BatchOutcome()
    now = rt.clock()
    with rt.db.session() as session:
        delivery = session.get(Delivery, delivery_id, with_for_update=True)
        if delivery is None or not deliveries.settle_ambiguous(
            session,
            delivery_id,
            DeliveryStatus.FAILED,
            now=now,
            last_error=f"gave up after {attempts} attempts",
            detail={"reason": f"the provider has no record; gave up after {attempts} attempts"},
        ):
            return outcome
        outcome.statuses[delivery_id] = DeliveryStatus.FAILED
        webhooks.delivery_outcomes(session, [delivery_id], DeliveryStatus.FAILED, now=now)
        outcome.enqueue.extend(start_fallback(rt, session, delivery, frozenset()))
    return outcome


def _unknown(rt: Runtime, delivery_id: int, *, reason: str) -> BatchOutcome:
    """Not sent again: maybe served, not proven (a dunning notice goes on down the chain)."""
    outcome = BatchOutcome()
    now = rt.clock()
    with rt.db.session() as session:
        delivery = session.get(Delivery, delivery_id, with_for_update=True)
        if delivery is None or not deliveries.settle_ambiguous(
            session,
            delivery_id,
            DeliveryStatus.UNKNOWN,
            now=now,
            detail={"reason": f"{reason}: not sent again, not proven served"},
        ):
            return outcome
        outcome.statuses[delivery_id] = DeliveryStatus.UNKNOWN
        webhooks.delivery_outcomes(session, [delivery_id], DeliveryStatus.UNKNOWN, now=now)
        notification = session.get(Notification, delivery.notification_id)
        if notification is not None and notification.type in DUNNING_TYPES:
            outcome.enqueue.extend(
                start_fallback(rt, session, delivery, frozenset(), noted_as=DeliveryStatus.UNKNOWN)
            )
    return outcome
