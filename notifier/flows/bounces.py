"""Email bounces and complaints: one report from the bounce receiver applied to its delivery.

Which delivery: the signed token of the bounce address the report came to
(notifier.bounces.verp), else the original Message-ID the report returned
(our Message-IDs are random and the delivery's ``provider_id``). A report
that names no delivery of ours (a forged or expired token, a Message-ID we
never sent) is logged, masked, and dropped.

What it does, for the recipient it names:

* hard bounce (``Action: failed``, ``5.x.x``): the email is ``undelivered``
  (from ``sent``, or ``delivered``), the producer is owed a
  ``delivery.undelivered`` callback, the address is marked as taking no mail
  on the account (while it is still the account's: routing then skips it,
  as it skips a wrong phone) and the fallback starts;
* a final failure with ``4.x.x`` (the remote MTA's retries ran out): the
  email is ``undelivered`` and the fallback starts, but the address is not
  marked: a full mailbox or a remote outage says nothing lasting of it;
* soft (``Action: delayed``, or any other ``4.x.x``): a timeline entry only.
  The remote MTA keeps the message and retries it itself; resending would
  double it. Its final word comes later as another report;
* complaint (ARF ``Feedback-Type: abuse`` or ``fraud``): an opt-out of email
  for the account, in the timeline; the email did arrive, so nothing falls
  back (the other channels of the notice went anyway);
* the same report again (same report id, action, status and recipient) is
  ignored, and a hard bounce of a delivery already settled changes nothing:
  no second callback, no second fallback.

A report that comes while its delivery is still ``sending`` (the worker has
not yet recorded the send) is :class:`NotYet`: the receiver answers 451 and
the reporting MTA delivers it again later. The service record never counts
an email as served (notifier.escalation.proof): ``sent`` proves nothing,
``undelivered`` less.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlmodel import Session, col, select

from notifier.accounts import service as accounts
from notifier.bounces import verp
from notifier.bounces.reports import RecipientStatus, Report
from notifier.deliveries import service as deliveries
from notifier.deliveries.callback_tokens import TokenRefused
from notifier.deliveries.models import Delivery, DeliveryStatus
from notifier.escalation import callbacks as case_callbacks
from notifier.flows.fallback import record_opt_out, start_fallback
from notifier.privacy.masking import mask_email, redact_echo
from notifier.runtime import Runtime
from notifier.webhooks import service as webhooks

__all__ = ["BounceOutcome", "NotYet", "apply_report", "find_delivery"]

log = logging.getLogger(__name__)
_OPT_OUT_FEEDBACK = frozenset({"abuse", "fraud"})
_REPORT = "report"
"""The timeline status of an entry that moves nothing (as Twilio's progress reports)."""


class NotYet(Exception):
    """The delivery is still being sent: the report must come again later."""


@dataclass(frozen=True, slots=True)
class BounceOutcome:
    """What a report did."""

    result: Literal["undelivered", "recorded", "opted_out", "duplicate", "settled", "unmatched"]
    delivery_id: int | None = None
    enqueue: tuple[tuple[int, str], ...] = ()
    """Fallback deliveries to enqueue once committed."""


def find_delivery(
    rt: Runtime, session: Session, report: Report, tokens: Sequence[str]
) -> int | None:
    """The email delivery a report is about: by bounce token, else by Message-ID."""
    now = rt.clock()
    for token in tokens:
        if not token:
            continue
        try:
            return verp.read_address(rt.settings, token, now=now).delivery_id
        except TokenRefused as exc:
            log.warning(
                "bounce: refused the token of a bounce address (%s)",
                exc.reason,
                extra={"delivery_id": exc.delivery_id, "report_id": report.report_id},
            )
    if report.original_message_id:
        found = session.exec(
            select(Delivery.id).where(
                col(Delivery.provider_id) == report.original_message_id,
                Delivery.channel == "email",
            )
        ).first()
        if found is not None:
            return found
    return None


def apply_report(rt: Runtime, report: Report, tokens: Sequence[str]) -> BounceOutcome:
    """Apply ``report`` (that came to the bounce addresses of ``tokens``) and commit."""
    with rt.db.session() as session:
        delivery_id = find_delivery(rt, session, report, tokens)
        delivery = (
            session.get(Delivery, delivery_id, with_for_update=True)
            if delivery_id is not None
            else None
        )
        if delivery is None or delivery.channel != "email":
            log.warning(
                "bounce: a %s for %s names no email of ours, dropped",
                report.kind,
                ", ".join(mask_email(r.recipient) for r in report.recipients) or "nobody",
                extra={"report_id": report.report_id, "reporting_mta": report.reporting_mta},
            )
            return BounceOutcome(result="unmatched")
        assert delivery.id is not None
        if delivery.status in (DeliveryStatus.SENDING, DeliveryStatus.QUEUED):
            raise NotYet(f"delivery {delivery.id} is {delivery.status}")
        if report.kind == "complaint":
            return _complaint(session, delivery, report)
        return _dsn(rt, session, delivery, report)


def _worst(report: Report, delivery: Delivery) -> RecipientStatus:
    """The recipient entry about this delivery's address (else any), the most final first."""
    ours = {address.lower() for address in delivery.recipients}
    named = [r for r in report.recipients if r.recipient.lower() in ours] or list(report.recipients)
    return min(named, key=lambda r: (not r.hard, not r.final, r.action != "delayed"))


def _seen(session: Session, delivery_id: int, key: dict[str, Any]) -> bool:
    return any(
        all(change.detail.get(name) == value for name, value in key.items())
        for change in deliveries.timeline(session, delivery_id)
    )


def _dsn(rt: Runtime, session: Session, delivery: Delivery, report: Report) -> BounceOutcome:
    assert delivery.id is not None
    entry = _worst(report, delivery)
    key: dict[str, Any] = {
        "report": "dsn",
        "report_id": report.report_id,
        "action": entry.action,
        "dsn_status": entry.status,
    }
    if _seen(session, delivery.id, key):
        log.info("delivery %s: the same DSN again, ignored", delivery.id)
        return BounceOutcome(result="duplicate", delivery_id=delivery.id)
    # The remote server's words quote the address: masked, as everything stored or logged.
    diagnostic = redact_echo(entry.diagnostic, entry.recipient)
    detail: dict[str, Any] = {
        **key,
        "recipient": mask_email(entry.recipient),
        "diagnostic": diagnostic,
        "reporting_mta": report.reporting_mta,
    }
    if not entry.final:
        if entry.action == "delayed" or entry.status.startswith("4."):
            # The remote MTA holds the message and retries it; its last word comes as another DSN.
            detail["note"] = "remote MTA retries it itself"
        deliveries.record_change(session, delivery.id, _REPORT, **detail)
        return BounceOutcome(result="recorded", delivery_id=delivery.id)
    now = rt.clock()
    previous = delivery.status
    if previous not in (
        DeliveryStatus.SENT,
        DeliveryStatus.DELIVERED,
    ) or not deliveries.settle_sent(
        session,
        delivery.id,
        DeliveryStatus.UNDELIVERED,
        now=now,
        previous=previous,
        last_error=f"bounce: {entry.status} {diagnostic}"[:1000],
    ):
        log.info("delivery %s: a bounce after it was already %s, left alone", delivery.id, previous)
        return BounceOutcome(result="settled", delivery_id=delivery.id)
    deliveries.record_change(session, delivery.id, DeliveryStatus.UNDELIVERED, **detail)
    webhooks.delivery_outcomes(session, [delivery.id], DeliveryStatus.UNDELIVERED, now=now)
    if entry.hard and delivery.recipients:
        reason = f"bounce {entry.status}"
        if accounts.mark_email_invalid(
            session, delivery.account_no, delivery.recipients[0], now=now, reason=reason
        ):
            # The producer holds the contact data: only it can send a better address.
            case_callbacks.contact_invalid(
                session, delivery.account_no, contact="email", reason=reason, now=now
            )
            log.info(
                "delivery %s: hard bounce %s, the account's email is marked invalid",
                delivery.id,
                entry.status,
                extra={"delivery_id": delivery.id},
            )
    enqueue = start_fallback(
        rt, session, delivery, frozenset(delivery.recipients), noted_as=DeliveryStatus.UNDELIVERED
    )
    return BounceOutcome(result="undelivered", delivery_id=delivery.id, enqueue=enqueue)


def _complaint(session: Session, delivery: Delivery, report: Report) -> BounceOutcome:
    assert delivery.id is not None
    key: dict[str, Any] = {"report": "complaint", "report_id": report.report_id}
    if _seen(session, delivery.id, key):
        return BounceOutcome(result="duplicate", delivery_id=delivery.id)
    feedback = report.feedback_type or ""
    opted_out = feedback in _OPT_OUT_FEEDBACK
    if opted_out:
        # "This is spam" is the customer's no to email; the opt-out holds for later notices.
        record_opt_out(session, delivery)
    deliveries.record_change(
        session,
        delivery.id,
        _REPORT,
        **key,
        feedback_type=feedback,
        reporting_mta=report.reporting_mta,
        opt_out=opted_out,
    )
    return BounceOutcome(result="opted_out" if opted_out else "recorded", delivery_id=delivery.id)
