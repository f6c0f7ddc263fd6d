"""Provider reports (status callbacks): forward-only, in any order, any number of times.

A report is written to the delivery's timeline once: the same report again
(same provider message id and provider status, as a provider's retry or a
replayed request brings it) is ignored. It moves the delivery only from
``sent`` (or ``unknown``, after the receipt timeout, to a final report
only): a late ``sent`` never overwrites ``delivered``, and a report that
beats the worker's own record of the send (still ``sending``) is applied by
the worker right after it records the send. A report must name a message the
delivery sent (its provider id now or in an earlier attempt); one about
another message is refused with :class:`ForeignReport`. A report for an
``ambiguous`` delivery (its send's answer was lost; the callback token names
it) settles it: the send went out as that message, recorded ``sent`` first.

A call's ``completed`` is not yet proof that a person heard it
(:func:`call_heard`): if answering-machine detection reported a machine, it is
recorded as ``voicemail``; a person who hung up before the policy's
``voice.min_served_seconds`` gives ``short_call``. Both are ``undelivered``
and go on down the fallback like a failed call. The detection's own report
(``answered_by``) stays in the timeline for the ladder's proof
(notifier/escalation/proof.py).

A failed report's ``error_code`` says what is wrong with the number, and is
acted on before the fallback is chosen: Twilio's 30003/30005 and Mitake's 6 (unreachable,
unknown destination) mark the phone invalid on the account (no SMS, no call
to it, and the fallback skips it); 30006 (a landline) marks it as taking no
SMS, so the fallback and later notices call it instead
(https://www.twilio.com/docs/api/errors).

Progress that says nothing new is not recorded: a ``sent`` (``queued``,
``sending``, a call's ``initiated``, Mitake's 0-2) about the very message the
delivery already records as sent adds no timeline row and changes nothing.
While the delivery is ``sending`` or ``ambiguous`` such a report still tells
which message went out, and is kept.

:func:`apply_reports` applies many reports in one transaction (the API's
buffer, flows/report_buffer.py): one select of the deliveries, one of their
timelines, one insert of the new timeline rows and one update of those that
reached ``delivered``; the rarer outcomes (a failure and its fallback, a
busy line's retry, an ``unknown`` or ``ambiguous`` delivery settled) take
their own statements in that transaction, as :func:`record_report` does for
one report.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, col, select

from notifier.accounts import service as accounts
from notifier.db import utcnow
from notifier.deliveries import service as deliveries
from notifier.deliveries.models import Delivery, DeliveryChange, DeliveryStatus
from notifier.escalation import callbacks as case_callbacks
from notifier.flows.fallback import retry_delay, start_fallback
from notifier.flows.outcome import DeliverOutcome
from notifier.runtime import Runtime
from notifier.webhooks import service as webhooks

__all__ = [
    "ForeignReport",
    "Report",
    "apply_report",
    "apply_reports",
    "call_heard",
    "is_machine",
    "record_report",
]

log = logging.getLogger(__name__)
_FINAL = {
    "delivered": DeliveryStatus.DELIVERED,
    "undelivered": DeliveryStatus.UNDELIVERED,
    "failed": DeliveryStatus.FAILED,
    "voicemail": DeliveryStatus.UNDELIVERED,
    "short_call": DeliveryStatus.UNDELIVERED,
}
_TRY_AGAIN = {"busy", "no-answer"}
UNREACHABLE_CODES = {
    "30003": "unreachable",
    "30005": "unknown_destination",
    "mitake:6": "unknown_destination",  # Mitake's StatusFlag 6: no such subscriber
}
"""Twilio's codes that say the number reaches nobody, and the reason marked on the account."""
NO_SMS_CODES = frozenset({"30006"})
"""Twilio: landline or unreachable carrier; the number may still take a call."""
NOTHING_NEW = {
    "twilio": frozenset({"accepted", "scheduled", "queued", "sending", "sent", "initiated"}),
    "mitake": frozenset({"0", "1", "2"}),
}
"""Progress a provider reports that our own record of the send already says."""


def is_machine(answered_by: str) -> bool:
    """Whether Twilio's ``AnsweredBy`` names no person (``machine_*``, ``fax``)."""
    return answered_by.startswith("machine") or answered_by == "fax"


def call_heard(
    timeline: list[DeliveryChange], *, call_duration: str | None, min_served_seconds: int
) -> str:
    """What a completed call was: ``delivered``, ``voicemail`` or ``short_call``."""
    answers = [c.detail["answered_by"] for c in timeline if c.detail.get("answered_by")]
    if answers and is_machine(str(answers[-1])):
        return "voicemail"
    try:
        seconds = int(call_duration) if call_duration is not None else None
    except ValueError:
        seconds = None
    if seconds is not None and seconds < min_served_seconds:
        return "short_call"
    return "delivered"


class ForeignReport(Exception):
    """A report about a provider message that the delivery did not send."""


@dataclass(frozen=True, slots=True)
class Report:
    """One provider report as a callback brought it, before it is applied."""

    delivery_id: int
    status: str
    """Our word for it: ``delivered``, ``failed``, ``busy`` … or ``report`` (progress)."""
    provider: str
    sid: str
    provider_status: str
    detail: Mapping[str, str] = field(default_factory=dict)
    attempt: int = 0
    """How many times applying it failed (flows/report_buffer.py retries it)."""


@dataclass
class _Bulk:
    """What a batch of reports writes at its end in one statement each."""

    now: datetime
    changes: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)
    delivered: list[int] = field(default_factory=list)

    def write(self, session: Session) -> None:
        """Write what is pending; before any statement that must see it."""
        if self.changes:
            # Stamped as record_change stamps a report alone: when it was written.
            deliveries.record_changes(session, self.changes, at=utcnow())
            self.changes = []
        if self.delivered:
            settled = list(
                session.execute(
                    sa.update(Delivery)
                    .where(
                        col(Delivery.id).in_(self.delivered),
                        col(Delivery.status) == DeliveryStatus.SENT,
                    )
                    .values(status=DeliveryStatus.DELIVERED, updated_at=self.now)
                    .returning(col(Delivery.id))
                    .execution_options(synchronize_session=False)
                ).scalars()
            )
            # The rows are locked (PostgreSQL) or the database is (SQLite's BEGIN
            # IMMEDIATE): every one was ``sent`` when read, so none is refused here.
            for refused in sorted(set(self.delivered) - set(settled)):
                log.warning(
                    "delivery %s: refused delivered, it is no longer sent",
                    refused,
                    extra={"delivery_id": refused, "status": DeliveryStatus.DELIVERED},
                )
            webhooks.delivery_outcomes(session, settled, DeliveryStatus.DELIVERED, now=self.now)
            self.delivered = []


def record_report(
    rt: Runtime,
    delivery_id: int,
    status: str,
    *,
    provider: str,
    sid: str,
    provider_status: str,
    **detail: Any,
) -> DeliverOutcome:
    """Record one provider report about message ``sid`` and apply it if the delivery is ready."""
    report = Report(delivery_id, status, provider, sid, provider_status, detail)
    with rt.db.session() as session:
        delivery = session.get(Delivery, delivery_id, with_for_update=True)
        if delivery is None:
            return DeliverOutcome(status=None)
        earlier = deliveries.timeline(session, delivery_id)
        return _record(rt, session, delivery, earlier, report, bulk=None)


def apply_reports(
    rt: Runtime, reports: Sequence[Report]
) -> list[tuple[Report, DeliverOutcome | ForeignReport]]:
    """Record and apply ``reports``, in order, in one transaction; each with its outcome, or
    the :class:`ForeignReport` it was refused with. Raises (and writes nothing) if any fails."""
    ids = sorted({report.delivery_id for report in reports})
    results: list[tuple[Report, DeliverOutcome | ForeignReport]] = []
    with rt.db.session() as session:
        # In id order, so that two API processes' batches lock shared rows in one order.
        rows = session.exec(
            select(Delivery)
            .where(col(Delivery.id).in_(ids))
            .order_by(col(Delivery.id))
            .with_for_update()
        ).all()
        found = {row.id: row for row in rows}
        timelines: dict[int, list[DeliveryChange]] = {delivery_id: [] for delivery_id in ids}
        for change in session.exec(
            select(DeliveryChange)
            .where(col(DeliveryChange.delivery_id).in_(ids))
            .order_by(col(DeliveryChange.at), col(DeliveryChange.id))
        ):
            timelines[change.delivery_id].append(change)
        bulk = _Bulk(now=rt.clock())
        for report in reports:
            delivery = found.get(report.delivery_id)
            if delivery is None:
                results.append((report, DeliverOutcome(status=None)))
                continue
            try:
                outcome = _record(
                    rt, session, delivery, timelines[report.delivery_id], report, bulk=bulk
                )
            except ForeignReport as exc:
                results.append((report, exc))
                continue
            results.append((report, outcome))
        bulk.write(session)
    return results


def _record(
    rt: Runtime,
    session: Session,
    delivery: Delivery,
    earlier: list[DeliveryChange],
    report: Report,
    *,
    bulk: _Bulk | None,
) -> DeliverOutcome:
    """:func:`record_report` on a locked delivery and its timeline, which it extends.

    With ``bulk``, the timeline row and a settled ``delivered`` wait for the
    batch's end; a rarer outcome first writes what waits, then goes on as alone.
    """
    assert delivery.id is not None
    delivery_id, status, provider, sid = (
        report.delivery_id,
        report.status,
        report.provider,
        report.sid,
    )
    provider_status, detail = report.provider_status, dict(report.detail)
    if not _sent_by(delivery, earlier, sid):
        raise ForeignReport(f"delivery {delivery_id} sent no provider message {sid or '(none)'}")
    if status == "delivered" and delivery.channel == "voice":
        status = call_heard(
            earlier,
            call_duration=detail.get("call_duration"),
            min_served_seconds=rt.policy.voice.min_served_seconds,
        )
    if any(
        change.status == status
        and change.detail.get("report") == provider
        and change.detail.get("sid") == sid
        and change.detail.get("provider_status") == provider_status
        for change in earlier
    ):
        log.info(
            "delivery %s: report %r again, ignored",
            delivery_id,
            provider_status,
            extra={"delivery_id": delivery_id, "provider_status": provider_status},
        )
        return DeliverOutcome(status=delivery.status)
    if (
        status == "report"
        and provider_status in NOTHING_NEW.get(provider, ())
        and delivery.status not in (DeliveryStatus.SENDING, DeliveryStatus.AMBIGUOUS)
        and sid == delivery.provider_id
    ):
        log.debug(
            "delivery %s: report %r says what we recorded, not kept",
            delivery_id,
            provider_status,
            extra={"delivery_id": delivery_id, "provider_status": provider_status},
        )
        return DeliverOutcome(status=delivery.status)
    if delivery.status == DeliveryStatus.AMBIGUOUS:
        if bulk is not None:
            bulk.write(session)
        _settle_by_report(rt, session, delivery, provider, sid)
    change: dict[str, Any] = {
        "report": provider,
        "provider_status": provider_status,
        "sid": sid,
        **detail,
    }
    if bulk is None:
        deliveries.record_change(session, delivery_id, status, **change)
    else:
        bulk.changes.append((delivery_id, status, change))
    # Later reports of the batch about this delivery see it, as they would in the table.
    earlier.append(DeliveryChange(delivery_id=delivery_id, status=status, detail=change))
    if delivery.status == DeliveryStatus.SENDING:
        return DeliverOutcome(status=delivery.status)  # the worker applies it once it records
    if bulk is not None and delivery.status == DeliveryStatus.SENT:
        if status == "delivered":
            bulk.delivered.append(delivery_id)
            set_committed_value(delivery, "status", DeliveryStatus.DELIVERED)
            return DeliverOutcome(status=DeliveryStatus.DELIVERED)
        if status not in _FINAL and status not in _TRY_AGAIN:
            return DeliverOutcome(status=delivery.status)  # progress only, as _apply leaves it
    if bulk is not None and delivery.status in (DeliveryStatus.SENT, DeliveryStatus.UNKNOWN):
        bulk.write(session)  # what follows reads and writes through its own statements
    return _apply(rt, session, delivery, status, detail.get("error_code"))


def _settle_by_report(
    rt: Runtime, session: Session, delivery: Delivery, provider: str, sid: str
) -> None:
    assert delivery.id is not None
    if deliveries.settle_ambiguous(
        session,
        delivery.id,
        DeliveryStatus.SENT,
        now=rt.clock(),
        provider=provider,
        provider_id=sid,
        last_error=None,
        detail={"provider": provider, "provider_id": sid, "found_by": "report"},
    ):
        # The send whose answer was lost reports: it went out as ``sid``. The row was
        # updated above; the loaded object follows without being flushed again.
        for name, value in (
            ("status", DeliveryStatus.SENT),
            ("provider", provider),
            ("provider_id", sid),
        ):
            set_committed_value(delivery, name, value)


def _sent_by(delivery: Delivery, timeline: list[DeliveryChange], sid: str) -> bool:
    """Whether provider message ``sid`` is one of this delivery's sends.

    While the delivery is ``sending`` its newest provider id is not recorded
    yet, and a report may beat the record (see the module docstring).
    """
    if delivery.status in (DeliveryStatus.SENDING, DeliveryStatus.AMBIGUOUS):
        return True
    if sid and sid == delivery.provider_id:
        return True
    return bool(sid) and any(change.detail.get("provider_id") == sid for change in timeline)


def apply_report(rt: Runtime, delivery_id: int, status: str) -> DeliverOutcome:
    """Apply a report already in the timeline (one that arrived while sending)."""
    with rt.db.session() as session:
        delivery = session.get(Delivery, delivery_id, with_for_update=True)
        if delivery is None:
            return DeliverOutcome(status=None)
        reported = [
            change
            for change in deliveries.timeline(session, delivery_id)
            if change.status == status and change.detail.get("report")
        ]
        error_code = reported[-1].detail.get("error_code") if reported else None
        return _apply(rt, session, delivery, status, error_code)


def _apply(
    rt: Runtime, session: Session, delivery: Delivery, status: str, error_code: str | None
) -> DeliverOutcome:
    assert delivery.id is not None
    if delivery.status == DeliveryStatus.UNKNOWN:
        return _settle_unknown(rt, session, delivery, status, error_code)
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
        if deliveries.settle_sent(session, delivery.id, DeliveryStatus.DELIVERED, now=now):
            webhooks.delivery_outcomes(session, [delivery.id], DeliveryStatus.DELIVERED, now=now)
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
    if deliveries.settle_sent(
        session, delivery.id, final, now=now, last_error=f"provider: {status}"
    ):
        webhooks.delivery_outcomes(session, [delivery.id], final, now=now)
    refused = _act_on_error_code(session, delivery, error_code, now=now)
    # A notice we cannot show was served does not count as served.
    return DeliverOutcome(status=final, enqueue=start_fallback(rt, session, delivery, refused))


def _settle_unknown(
    rt: Runtime, session: Session, delivery: Delivery, status: str, error_code: str | None
) -> DeliverOutcome:
    """A report that came after the receipt timeout: it settles ``unknown`` forward only.

    No retry (back to ``queued`` would be backwards, and for a dunning notice
    the fallback already went on): a busy or unanswered call ends ``failed``.
    The fallback starts here only if the timeout did not start it already.
    """
    assert delivery.id is not None
    final = _FINAL.get(status, DeliveryStatus.FAILED if status in _TRY_AGAIN else None)
    if final is None:
        return DeliverOutcome(status=delivery.status)  # progress only
    now = rt.clock()
    error = {} if final == DeliveryStatus.DELIVERED else {"last_error": f"provider: {status}"}
    if not deliveries.settle_sent(
        session, delivery.id, final, now=now, previous=DeliveryStatus.UNKNOWN, **error
    ):
        return DeliverOutcome(status=delivery.status)
    webhooks.delivery_outcomes(session, [delivery.id], final, now=now)
    if final == DeliveryStatus.DELIVERED:
        return DeliverOutcome(status=final)
    refused = _act_on_error_code(session, delivery, error_code, now=now)
    if session.exec(select(Delivery.id).where(Delivery.fallback_of == delivery.id)).first():
        return DeliverOutcome(status=final)
    return DeliverOutcome(status=final, enqueue=start_fallback(rt, session, delivery, refused))


def _act_on_error_code(
    session: Session, delivery: Delivery, error_code: str | None, *, now: datetime
) -> frozenset[str]:
    """What a failed report's error code says of the number, noted on the account; the
    recipients the fallback must not try again."""
    if not error_code or delivery.channel not in ("sms", "voice") or not delivery.recipients:
        return frozenset()
    number = delivery.recipients[0]
    if error_code in UNREACHABLE_CODES:
        reason = UNREACHABLE_CODES[error_code]
        if accounts.mark_phone_invalid(
            session, delivery.account_no, now=now, reason=reason, phone=number
        ):
            # The producer holds the contact data: only it can send a better number.
            case_callbacks.contact_invalid(
                session, delivery.account_no, contact="phone", reason=reason, now=now
            )
            log.info(
                "delivery %s: Twilio %s, the account's phone is marked unreachable",
                delivery.id,
                error_code,
                extra={"delivery_id": delivery.id, "error_code": error_code},
            )
        return frozenset(delivery.recipients)
    if (
        error_code in NO_SMS_CODES
        and delivery.channel == "sms"
        and accounts.mark_sms_unable(session, delivery.account_no, number, now=now)
    ):
        log.info(
            "delivery %s: Twilio %s, no more SMS to the account's phone (calls still go)",
            delivery.id,
            error_code,
            extra={"delivery_id": delivery.id, "error_code": error_code},
        )
    return frozenset()
