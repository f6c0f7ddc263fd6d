"""Producer callbacks about cases: ``escalation.outcome``, ``escalation.closed``,
``account.contact_invalid`` (an agent or a provider's report found the account's phone wrong:
fix the contact data),
and the collections ladder's ``collection.stage_changed``, ``collection.suspension_due`` and
``collection.reconnection_due`` (:func:`collection`).

Written in the transaction that records the outcome or closes the case, to the
producer that owns the case's bills (``Bill.producer_key_id``) if it has a URL; a
contact callback to the producer that owns the account. Another producer that
posted about the same account hears nothing of them: its bills, its cases. Only for
bills and accounts older than that rule (no owner recorded) do they go, as before,
to every producer with a URL that posted about the account (the outbox and its
publishing are :mod:`notifier.webhooks.service`'s). Bodies carry ids, codes and
statuses only.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlmodel import Session, col, select

from notifier.accounts import service as accounts
from notifier.billing import service as billing
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
    bills = _bills(session, [case.id]).get(case.id, [])
    keys = _recipients(session, {case.account_no: bills}).get(case.account_no, [])
    if not keys:
        return []
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
    bills = _bills(session, [case.id for case in cases if case.id is not None])
    by_case = {
        case.id: _recipients(session, {case.account_no: bills.get(case.id, [])}).get(
            case.account_no, []
        )
        for case in cases
        if case.id is not None
    }
    wanted = [case for case in cases if by_case.get(case.id or 0)]
    if not wanted:
        return []
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
        for key in by_case[case.id or 0]
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
    keys = _recipients(session, {account_no: []}).get(account_no, [])
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
    bills = _bills(session, [case.id]).get(case.id, [])
    keys = _recipients(session, {case.account_no: bills}).get(case.account_no, [])
    if not keys:
        return []
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


def _recipients(session: Session, bills_of: dict[str, list[str]]) -> dict[str, list[int]]:
    """Who hears about each account's case (its bills given) or contact: the owners of the
    bills, else of the account, that have a URL; for bills and an account that no producer
    owns yet (older than the rule), every producer with a URL that posted about it."""
    owners = billing.owners(session, {no for nos in bills_of.values() for no in nos})
    account_owners = accounts.owners(session, list(bills_of))
    found: dict[str, list[int]] = {}
    legacy: list[str] = []
    for account_no, bill_nos in bills_of.items():
        keys = {owner for no in bill_nos if (owner := owners.get(no)) is not None}
        if not keys and (owner := account_owners.get(account_no)) is not None:
            keys = {owner}
        if keys:
            found[account_no] = webhooks.with_url(session, sorted(keys))
        else:
            legacy.append(account_no)
    found.update(webhooks.producers_of(session, legacy))
    return {account_no: keys for account_no, keys in found.items() if keys}


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
