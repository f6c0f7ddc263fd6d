"""Producer callbacks about cases: ``escalation.outcome``, ``escalation.closed``,
``account.contact_invalid`` (an agent or a provider's report found the account's phone wrong:
fix the contact data),
and the collections ladder's ``collection.stage_changed``, ``collection.suspension_due`` and
``collection.reconnection_due`` (:func:`collection`).

Written in the transaction that records the outcome or closes the case, to
every producer with a URL that posted events about the account (the outbox
and its publishing are :mod:`notifier.webhooks.service`'s). Bodies carry ids,
codes and statuses only.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlmodel import Session, col, select

from notifier.escalation.models import Escalation, EscalationBill
from notifier.webhooks import service as webhooks
from notifier.webhooks.models import ProducerCallback

__all__ = [
    "COLLECTION_TYPES",
    "collection",
    "contact_invalid",
    "escalation_outcome",
    "escalations_closed",
]


def escalation_outcome(
    session: Session,
    case: Escalation,
    *,
    outcome: str,
    now: datetime,
    promise_date: date | None = None,
    closed: bool = False,
) -> list[int]:
    """Owe ``escalation.outcome`` (and ``escalation.closed`` if it ended the case)."""
    assert case.id is not None
    keys = webhooks.producers_of(session, [case.account_no]).get(case.account_no, [])
    if not keys:
        return []
    bills = _bills(session, [case.id]).get(case.id, [])
    base = _case_body(case, bills, now) | {"outcome": outcome}
    if promise_date is not None:
        base["promise_date"] = promise_date.isoformat()
    kinds = ["escalation.outcome", *(["escalation.closed"] if closed else [])]
    return webhooks.owe(
        session,
        [
            ProducerCallback(
                key_id=key, type=kind, body={"type": kind, **base}, next_at=now, created_at=now
            )
            for kind in kinds
            for key in keys
        ],
    )


def escalations_closed(session: Session, case_ids: Sequence[int], *, now: datetime) -> list[int]:
    """Owe ``escalation.closed`` for cases just closed (by payment)."""
    if not case_ids:
        return []
    cases = list(
        session.exec(
            select(Escalation)
            .where(col(Escalation.id).in_(case_ids))
            .execution_options(populate_existing=True)  # just closed by an UPDATE
        )
    )
    producers = webhooks.producers_of(session, sorted({case.account_no for case in cases}))
    if not producers:
        return []
    wanted = [case for case in cases if case.account_no in producers and case.id is not None]
    bills = _bills(session, [case.id for case in wanted if case.id is not None])
    callbacks = [
        ProducerCallback(
            key_id=key,
            type="escalation.closed",
            body={
                "type": "escalation.closed",
                **_case_body(case, bills.get(case.id or 0, []), now),
                "outcome": case.outcome,
            },
            next_at=now,
            created_at=now,
        )
        for case in wanted
        for key in producers[case.account_no]
    ]
    return webhooks.owe(session, callbacks)


def contact_invalid(
    session: Session,
    account_no: str,
    *,
    contact: str,
    reason: str,
    now: datetime,
    escalation_id: int | None = None,
) -> list[int]:
    """Owe ``account.contact_invalid``: which contact point (``phone``) and why, never its value.

    ``escalation_id`` names the case whose agent found it; None when a provider's
    report did (Twilio: the number is unreachable).
    """
    keys = webhooks.producers_of(session, [account_no]).get(account_no, [])
    body = {
        "type": "account.contact_invalid",
        "occurred_at": now.isoformat(),
        "event_id": None,
        "account_no": account_no,
        "contact": contact,
        "reason": reason,
        "escalation_id": escalation_id,
    }
    return webhooks.owe(
        session,
        [
            ProducerCallback(
                key_id=key, type="account.contact_invalid", body=body, next_at=now, created_at=now
            )
            for key in keys
        ],
    )


COLLECTION_TYPES = (
    "collection.stage_changed",
    "collection.suspension_due",
    "collection.reconnection_due",
)


def collection(
    session: Session,
    case: Escalation,
    kinds: Sequence[str],
    *,
    now: datetime,
    previous: str | None,
    on: date,
    amount: int,
) -> list[int]:
    """Owe ladder callbacks (``COLLECTION_TYPES``) about ``case`` at its stage now, to every
    producer that posted about the account (the billing side that owns its bills)."""
    assert case.id is not None and all(kind in COLLECTION_TYPES for kind in kinds)
    keys = webhooks.producers_of(session, [case.account_no]).get(case.account_no, [])
    if not keys:
        return []
    bills = _bills(session, [case.id]).get(case.id, [])
    base = _case_body(case, bills, now) | {
        "stage": case.stage,
        "previous_stage": previous,
        "on": on.isoformat(),
        "deadline": case.stage_deadline.isoformat() if case.stage_deadline else None,
        "amount": amount,
    }
    return webhooks.owe(
        session,
        [
            ProducerCallback(
                key_id=key, type=kind, body={"type": kind, **base}, next_at=now, created_at=now
            )
            for kind in kinds
            for key in keys
        ],
    )


def _case_body(case: Escalation, bills: list[str], now: datetime) -> dict[str, Any]:
    return {
        "occurred_at": now.isoformat(),
        "event_id": None,
        "account_no": case.account_no,
        "bill_no": bills[0] if bills else None,
        "bill_nos": bills,
        "escalation_id": case.id,
        "channel": case.kind,
        "kind": case.kind,
        "status": case.status,
        "attempts": case.attempts,
    }


def _bills(session: Session, case_ids: Sequence[int]) -> dict[int, list[str]]:
    rows = session.execute(
        select(EscalationBill.escalation_id, EscalationBill.bill_no)
        .where(col(EscalationBill.escalation_id).in_(case_ids))
        .order_by(col(EscalationBill.bill_no))
    ).all()
    found: dict[int, list[str]] = {}
    for case_id, bill_no in rows:
        found.setdefault(case_id, []).append(bill_no)
    return found
