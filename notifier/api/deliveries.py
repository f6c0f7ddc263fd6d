"""Ops readers: the delivery log, one delivery's timeline, an account.

Personal data is masked here (``to``, an account's phone, email and address,
and any number or email a provider's error quoted); a supervisor may ask for an
account unmasked, and each such view is audited.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel

from notifier.accounts import service as accounts
from notifier.api.deps import UNMASKED_ROLES, OpsDep, SessionDep
from notifier.api.errors import KEYED, error_responses
from notifier.audit import service as audit
from notifier.auth import keys
from notifier.billing import service as billing
from notifier.deliveries import service as deliveries
from notifier.deliveries.models import Delivery
from notifier.observability.logs import mask_text
from notifier.privacy.masking import mask_address, mask_email, mask_phone

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["ops"], responses={**KEYED, **error_responses(404)})


class DeliveryOut(BaseModel):
    id: int
    notification_id: int
    account_no: str
    event_type: str
    channel: str
    status: str
    to: str
    language: str
    provider: str | None
    provider_id: str | None
    attempts: int
    segments: int | None
    last_error: str | None
    fallback_of: int | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, d: Delivery) -> DeliveryOut:
        assert d.id is not None
        return cls(
            id=d.id,
            notification_id=d.notification_id,
            account_no=d.account_no,
            event_type=d.event_type,
            channel=d.channel,
            status=d.status,
            to=d.address_masked,
            language=d.language,
            provider=d.provider,
            provider_id=d.provider_id,
            attempts=d.attempts,
            segments=d.segments,
            last_error=shown_text(d.last_error) if d.last_error else None,
            fallback_of=d.fallback_of,
            created_at=d.created_at,
            updated_at=d.updated_at,
        )


def shown_text(value: object, key: str = "") -> str:
    """A provider's text as ops see it: phone numbers and emails masked (as in the logs)."""
    return mask_text(str(value), emails=key not in _IDS)


def masked_detail(detail: dict[str, Any]) -> dict[str, Any]:
    """A timeline entry's detail with numbers and emails in its texts masked (ids are not)."""
    return {
        key: shown_text(value, key) if isinstance(value, str) else value
        for key, value in detail.items()
    }


_IDS = frozenset({"provider_id", "message_id", "sid"})
"""Message-IDs look like email addresses by design; they are ids, not people."""


class DeliveryPage(BaseModel):
    items: list[DeliveryOut]
    next_cursor: str | None
    """Pass as ``cursor`` for the next (older) page; null on the last one."""


class Change(BaseModel):
    at: datetime
    status: str
    detail: dict[str, Any]


class DeliveryDetail(DeliveryOut):
    content: dict[str, Any]
    language_fallback: bool
    timeline: list[Change]


@router.get("/deliveries")
def list_deliveries(
    session: SessionDep,
    _: OpsDep,
    account_no: str | None = None,
    status_: Annotated[str | None, Query(alias="status")] = None,
    channel: str | None = None,
    event_type: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    q: Annotated[
        str | None, Query(max_length=128, description="account number (or its start), provider id")
    ] = None,
    cursor: Annotated[str | None, Query(pattern=r"^\d+$")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> DeliveryPage:
    """The delivery log, newest first, with cursor paging."""
    filters = deliveries.DeliveryFilter(
        account_no, status_, channel, event_type, since, until, search=q
    )
    rows = deliveries.list_deliveries(
        session, filters, before_id=int(cursor) if cursor else None, limit=limit + 1
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return DeliveryPage(
        items=[DeliveryOut.of(d) for d in rows],
        next_cursor=str(rows[-1].id) if more and rows else None,
    )


@router.get("/deliveries/{delivery_id}")
def get_delivery(delivery_id: int, session: SessionDep, _: OpsDep) -> DeliveryDetail:
    """One delivery with its rendered content and its whole timeline."""
    delivery = session.get(Delivery, delivery_id)
    if delivery is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no delivery {delivery_id}")
    changes = [
        Change(at=c.at, status=c.status, detail=masked_detail(c.detail))
        for c in deliveries.timeline(session, delivery_id)
    ]
    return DeliveryDetail(
        **DeliveryOut.of(delivery).model_dump(),
        content=delivery.content,
        language_fallback=delivery.language_fallback,
        timeline=changes,
    )


class BillOut(BaseModel):
    bill_no: str
    period: str
    kind: str
    amount: int
    """What was billed."""
    paid: int
    """What its payments add up to so far."""
    remaining: int
    """What is still owed on it."""
    due_date: date


class AccountOut(BaseModel):
    account_no: str
    name: str | None
    language: str
    phone: str | None
    email: str | None
    email_bounced: str | None = None
    """Why no email goes to ``email`` (a hard bounce: ``bounce 5.1.1``); None while it takes mail."""
    push_tokens: int
    address: str | None
    area: str | None
    vulnerable: bool
    protections: list[str]
    """``life_support`` (維生器材), ``low_income``, ``disabled``, ``elderly``: the producer's and
    those supervisors added."""
    spoken_language: str | None
    prefers_paper: bool
    prefers_voice: bool
    opt_outs: list[str]
    billing_cycle_months: int | None
    unpaid_bills: list[BillOut]
    arrears: int
    """What is still owed on the unpaid bills (partial payments taken off)."""


@router.get("/accounts/{account_no}")
def get_account(
    account_no: str,
    session: SessionDep,
    caller: OpsDep,
    unmasked: Annotated[
        bool, Query(description="supervisors: phone, email and address in full (audited)")
    ] = False,
) -> AccountOut:
    """An account as ops see it: contact points masked, unpaid bills listed."""
    if unmasked and caller.role not in UNMASKED_ROLES:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, f"a {caller.role} key sees personal data masked only"
        )
    account = accounts.get(session, account_no)
    if account is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no account {account_no}")
    unpaid = billing.unpaid_bills(session, account_no)
    if unmasked:
        audit.record(
            session, actor=keys.actor_of(caller), action="pii.view", target=f"account {account_no}"
        )

    def shown(value: str | None, mask: Callable[[str], str]) -> str | None:
        return None if value is None else value if unmasked else mask(value)

    return AccountOut(
        account_no=account.account_no,
        name=account.name,
        language=account.language,
        phone=shown(account.phone or None, mask_phone),
        email=shown(account.email or None, mask_email),
        email_bounced=(
            account.email_invalid_reason
            if accounts.mail_to(account) is None and account.email
            else None
        ),
        push_tokens=len(account.push_tokens),
        address=shown(account.address or None, mask_address),
        area=account.area,
        vulnerable=account.vulnerable,
        protections=account.protections,
        spoken_language=account.spoken_language,
        prefers_paper=account.prefers_paper,
        prefers_voice=account.prefers_voice,
        opt_outs=account.opt_outs,
        billing_cycle_months=account.billing_cycle_months,
        unpaid_bills=[
            BillOut(
                **b.model_dump(include={"bill_no", "period", "kind", "amount", "due_date"}),
                paid=b.paid_amount,
                remaining=b.owed,
            )
            for b in unpaid
        ],
        arrears=sum(b.owed for b in unpaid),
    )
