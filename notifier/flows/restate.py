"""restate: a claimed delivery states what the ledger says now, not when it was rendered.

A notice waits between rendering and sending (a queue, quiet hours, a retry,
the day's print batch); meanwhile a bill may be paid, part-paid, reversed or
corrected, or fall due. Right after a batch is claimed, what each delivery
stated (``Delivery.stated``) is compared with the ledger as it is now: one
query for the batch's unpaid bills (and one for the bills its notices are
about that are not unpaid, if any). Only a delivery whose statement no longer
holds is rendered again, and the stored content is replaced by what is sent.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime

from sqlmodel import Session

from notifier.billing import service as billing
from notifier.deliveries import service as deliveries
from notifier.deliveries.models import Notification
from notifier.deliveries.service import Claim
from notifier.flows.process_event import context_for
from notifier.notices.content import ledger_context, same_statement, sms_segments, statement
from notifier.runtime import Runtime

__all__ = ["restate_claims"]

log = logging.getLogger(__name__)


def restate_claims(
    rt: Runtime,
    session: Session,
    claims: Sequence[Claim],
    notifications: Mapping[int, Notification],
    now: datetime,
) -> list[int]:
    """Render again the claimed deliveries whose text the ledger no longer supports; their ids.

    A delivery rendered before deliveries kept their statement (``stated`` is
    None) is sent as it is.
    """
    kept = [c for c in claims if c.delivery.stated is not None]
    if not kept:
        return []
    unpaid = billing.unpaid_bills_of(session, {c.delivery.account_no for c in kept})
    by_no = {bill.bill_no: bill for bills in unpaid.values() for bill in bills}
    about = {notifications[c.delivery.notification_id].bill_no for c in kept}
    by_no.update(billing.bills_by_no(session, {no for no in about if no and no not in by_no}))
    today = rt.policy.business_date(now)
    stale = []
    for claim in kept:
        delivery = claim.delivery
        bill_no = notifications[delivery.notification_id].bill_no
        bill = by_no.get(bill_no) if bill_no else None
        now_stated = statement(ledger_context(bill, unpaid.get(delivery.account_no, []), today))
        assert delivery.stated is not None
        if not same_statement(delivery.stated, now_stated):
            stale.append(claim)
    restated = []
    for claim in stale:
        delivery = claim.delivery
        notification = notifications[delivery.notification_id]
        account, context = context_for(rt, session, notification, stated=delivery.stated)
        rendered = rt.renderer.render(
            notification.type, delivery.channel, account.language, context
        )
        if deliveries.restate(
            session,
            claim,
            {"subject": rendered.subject, "body": rendered.body, "html": rendered.html},
            segments=sms_segments(rendered.body) if delivery.channel == "sms" else None,
            stated=statement(context),
            language=rendered.language,
            now=now,
            detail={"reason": "the ledger changed since it was rendered: rendered again"},
        ):
            assert delivery.id is not None
            restated.append(delivery.id)
    if restated:
        log.info("restated %d deliveries from the ledger", len(restated))
    return restated
