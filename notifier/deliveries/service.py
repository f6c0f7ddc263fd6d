"""Deliveries: creation, the claim/lease, guarded status changes, and queries.

Every status change goes through a guarded function here (:func:`claim_many`,
:func:`transition`/:func:`transition_many`, :func:`record_sends`, …), which
updates only a row still in the state the caller saw (``status`` and
``claim_token``) and writes the change to the delivery's timeline.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, col, select

from notifier.db import UTCDateTime, insert_many, utcnow
from notifier.deliveries.models import (
    Delivery,
    DeliveryChange,
    DeliveryStatus,
    Notification,
    NotificationStatus,
)

__all__ = [
    "Claim",
    "DeliveryFilter",
    "ambiguous_overdue",
    "cancel_pending",
    "cancel_pending_for_bill",
    "claim_many",
    "count_deliveries",
    "early_reports",
    "expire_unreceipted",
    "finish",
    "hold_expired_leases",
    "list_deliveries",
    "recent_notification",
    "recent_notifications",
    "record_change",
    "record_changes",
    "record_sends",
    "renew_leases",
    "requeue_due",
    "restate",
    "sent_about",
    "settle_ambiguous",
    "timeline",
    "transition",
    "transition_many",
]

log = logging.getLogger(__name__)
_PENDING = (DeliveryStatus.QUEUED, DeliveryStatus.DEFERRED)
# Timeline details that go to the log too: ids, codes and numbers. Free text
# (reasons, errors) may name a person and stays in the timeline.
_LOGGED_DETAIL = (
    "attempt", "provider", "provider_id", "report", "provider_status", "error_code", "transient",
    "permanent", "retry_in", "fallback", "batch", "retry_of", "retried_as",
)  # fmt: skip


def record_change(
    session: Session, delivery_id: int, status: str, at: datetime | None = None, **detail: Any
) -> None:
    """Append one entry to a delivery's timeline."""
    session.add(
        DeliveryChange(delivery_id=delivery_id, status=status, at=at or utcnow(), detail=detail)
    )
    _log_change(delivery_id, status, detail)


def record_changes(
    session: Session, changes: Sequence[tuple[int, str, dict[str, Any]]], *, at: datetime
) -> None:
    """Append many timeline entries in one statement: ``(delivery_id, status, detail)``."""
    if not changes:
        return
    insert_many(
        session,
        DeliveryChange.__table__,  # type: ignore[attr-defined]
        [
            {"delivery_id": delivery_id, "status": status, "at": at, "detail": detail}
            for delivery_id, status, detail in changes
        ],
    )
    if log.isEnabledFor(logging.INFO):
        for delivery_id, status, detail in changes:
            _log_change(delivery_id, status, detail)


def _log_change(delivery_id: int, status: str, detail: dict[str, Any]) -> None:
    log.info(
        "delivery %s: %s%s",
        delivery_id,
        status,
        f" (report from {detail['report']})" if "report" in detail else "",
        extra={"delivery_id": delivery_id, "status": status}
        | {key: detail[key] for key in _LOGGED_DETAIL if key in detail},
    )


def recent_notification(session: Session, dedup_key: str, since: datetime) -> Notification | None:
    """An active notification with this key created since ``since``."""
    return session.exec(
        select(Notification)
        .where(
            Notification.dedup_key == dedup_key,
            Notification.status == NotificationStatus.ACTIVE,
            col(Notification.created_at) >= since,
        )
        .order_by(col(Notification.id))
    ).first()


def recent_notifications(
    session: Session, dedup_keys: Collection[str], since: datetime
) -> dict[str, Notification]:
    """:func:`recent_notification` for many keys in one query: key → the first such notification."""
    found: dict[str, Notification] = {}
    if not dedup_keys:
        return found
    for notification in session.exec(
        select(Notification)
        .where(
            col(Notification.dedup_key).in_(list(dedup_keys)),
            Notification.status == NotificationStatus.ACTIVE,
            col(Notification.created_at) >= since,
        )
        .order_by(col(Notification.id))
    ):
        found.setdefault(notification.dedup_key, notification)
    return found


@dataclass(frozen=True, slots=True)
class Claim:
    """A delivery this worker owns until ``lease_until``."""

    delivery: Delivery
    token: str


def claim_many(
    session: Session,
    ids: Sequence[int],
    *,
    token: str,
    now: datetime,
    lease_seconds: float,
    detail: dict[str, Any] | None = None,
) -> list[Claim]:
    """Take the rows for sending in one UPDATE: the ones this worker won, by id.

    Only a ``queued`` row that is due, or a ``sending`` row whose lease ran
    out, can be claimed; the UPDATE decides, so two workers never both win
    a row. The rows share ``token``: every later change of one of them is guarded
    by it, so a worker that lost its lease can no longer touch any.
    """
    if not ids:
        return []
    due = col(Delivery.available_at) <= now + timedelta(seconds=1)
    expired = sa.and_(
        col(Delivery.status) == DeliveryStatus.SENDING, col(Delivery.lease_until) < now
    )
    # The rows come back from the UPDATE itself, as loaded objects: no SELECT after it.
    won = session.scalars(
        sa.update(Delivery)
        .where(
            col(Delivery.id).in_(ids),
            sa.or_(sa.and_(col(Delivery.status) == DeliveryStatus.QUEUED, due), expired),
        )
        .values(
            status=DeliveryStatus.SENDING,
            claim_token=token,
            lease_until=now + timedelta(seconds=lease_seconds),
            updated_at=now,
        )
        .returning(Delivery)
        .execution_options(synchronize_session=False, populate_existing=True)
    ).all()
    rows = sorted(won, key=lambda row: row.id or 0)
    if not rows:
        return []
    record_changes(
        session,
        [
            (row.id, DeliveryStatus.SENDING, {"attempt": row.attempts + 1, **(detail or {})})
            for row in rows
            if row.id
        ],
        at=now,
    )
    return [Claim(delivery=row, token=token) for row in rows]


def renew_leases(
    session: Session, claims: Sequence[Claim], *, now: datetime, lease_seconds: float
) -> list[int]:
    """Extend the leases of the claims still ours, in one UPDATE per token; the ids extended.

    A row is extended only while it is ``sending`` under its claim, so a
    row another worker took over (or the reconciler moved on) is not taken
    back: it is missing from the answer, and its holder must not send it.
    """
    by_token: dict[str, list[int]] = {}
    for claim in claims:
        assert claim.delivery.id is not None
        by_token.setdefault(claim.token, []).append(claim.delivery.id)
    renewed: list[int] = []
    for token, ids in by_token.items():
        renewed.extend(
            session.execute(
                sa.update(Delivery)
                .where(
                    col(Delivery.id).in_(ids),
                    col(Delivery.status) == DeliveryStatus.SENDING,
                    col(Delivery.claim_token) == token,
                )
                .values(lease_until=now + timedelta(seconds=lease_seconds))
                .returning(col(Delivery.id))
                .execution_options(synchronize_session=False)
            ).scalars()
        )
    return sorted(renewed)


def transition_many(
    session: Session,
    claims: Sequence[Claim],
    status: str,
    *,
    now: datetime,
    attempted: bool = False,
    detail: dict[str, Any] | None = None,
    **values: Any,
) -> list[int]:
    """:func:`transition` for many claims with the same change; the ids it moved."""
    if not claims:
        return []
    update: dict[str, Any] = {"status": status, "updated_at": now, "lease_until": None, **values}
    if attempted:
        update["attempts"] = col(Delivery.attempts) + 1
    if status != DeliveryStatus.SENDING:
        update["claim_token"] = None
    ours = _still_ours(session, claims)
    if ours:
        session.execute(
            sa.update(Delivery)
            .where(col(Delivery.id).in_(ours))
            .values(**update)
            .execution_options(synchronize_session=False)
        )
    record_changes(session, [(i, status, detail or {}) for i in ours], at=now)
    return ours


def record_sends(
    session: Session,
    sends: Sequence[tuple[Claim, str, str, str, dict[str, Any]]],
    *,
    now: datetime,
) -> list[int]:
    """Record accepted sends, ``(claim, status, provider, provider_id, detail)``, in bulk.

    Each row counts one attempt and keeps its own provider id; rows whose
    claim was lost meanwhile are left alone. Returns the ids recorded.
    """
    if not sends:
        return []
    if session.get_bind().dialect.name == "postgresql":
        ours = set(_record_sends_pg(session, sends, now=now))
        _log_lost([send[0] for send in sends], ours)
    else:
        ours = set(_still_ours(session, [send[0] for send in sends]))
        _record_sends_each(
            session, [send for send in sends if send[0].delivery.id in ours], now=now
        )
    mine = [send for send in sends if send[0].delivery.id in ours]
    record_changes(
        session,
        [(claim.delivery.id or 0, status, detail) for claim, status, _, _, detail in mine],
        at=now,
    )
    return [claim.delivery.id or 0 for claim, *_ in mine]


def _record_sends_pg(
    session: Session,
    sends: Sequence[tuple[Claim, str, str, str, dict[str, Any]]],
    *,
    now: datetime,
) -> list[int]:
    """One UPDATE for the whole batch, guarded by each row's claim; the ids it changed.

    The rows travel as one JSON document (``db.insert_many`` says why): the statement
    is the same for any batch, and the guard in its WHERE both locks and checks, so
    no SELECT … FOR UPDATE goes first.
    """
    rows = [
        {"id": claim.delivery.id, "token": claim.token, "status": status,
         "provider": provider, "provider_id": provider_id}
        for claim, status, provider, provider_id, _ in sends
    ]  # fmt: skip
    changed = session.execute(
        sa.text(
            "UPDATE deliveries AS d SET status = r.status, provider = r.provider, "
            "provider_id = r.provider_id, attempts = d.attempts + 1, last_error = NULL, "
            "claim_token = NULL, lease_until = NULL, updated_at = :now "
            "FROM json_to_recordset(CAST(:rows AS json)) "
            "AS r(id integer, token text, status text, provider text, provider_id text) "
            "WHERE d.id = r.id AND d.status = 'sending' AND d.claim_token = r.token "
            "RETURNING d.id"
        ).bindparams(sa.bindparam("now", type_=UTCDateTime())),
        {"rows": json.dumps(rows), "now": now},
    ).scalars()
    return sorted(changed)


def _record_sends_each(
    session: Session,
    mine: Sequence[tuple[Claim, str, str, str, dict[str, Any]]],
    *,
    now: datetime,
) -> None:
    if not mine:
        return
    table = Delivery.__table__  # type: ignore[attr-defined]
    session.connection().execute(
        table.update()
        .where(table.c.id == sa.bindparam("delivery_id"))
        .values(
            status=sa.bindparam("new_status"),
            provider=sa.bindparam("new_provider"),
            provider_id=sa.bindparam("new_provider_id"),
            attempts=table.c.attempts + 1,
            last_error=None,
            claim_token=None,
            lease_until=None,
            updated_at=now,
        ),
        [
            {
                "delivery_id": claim.delivery.id,
                "new_status": status,
                "new_provider": provider,
                "new_provider_id": provider_id,
            }
            for claim, status, provider, provider_id, _ in mine
        ],
    )


def _still_ours(session: Session, claims: Sequence[Claim]) -> list[int]:
    """The claimed rows still ``sending`` under their claim, locked until commit."""
    by_token: dict[str, list[int]] = {}
    for claim in claims:
        assert claim.delivery.id is not None
        by_token.setdefault(claim.token, []).append(claim.delivery.id)
    ours: list[int | None] = []
    for token, ids in by_token.items():
        ours.extend(
            session.exec(
                select(Delivery.id)
                .where(
                    col(Delivery.id).in_(ids),
                    col(Delivery.status) == DeliveryStatus.SENDING,
                    col(Delivery.claim_token) == token,
                )
                .order_by(col(Delivery.id))
                .with_for_update()
            ).all()
        )
    found = [i for i in ours if i is not None]
    _log_lost(claims, set(found))
    return found


def _log_lost(claims: Sequence[Claim], ours: set[int]) -> None:
    lost = {claim.delivery.id for claim in claims} - ours
    for delivery_id in sorted(i for i in lost if i is not None):
        log.warning(
            "delivery %s: refused a change, the claim was lost (lease expired or taken over)",
            delivery_id,
            extra={"delivery_id": delivery_id},
        )


def transition(
    session: Session,
    claim: Claim,
    status: str,
    *,
    now: datetime,
    attempted: bool = False,
    detail: dict[str, Any] | None = None,
    **values: Any,
) -> bool:
    """Move a claimed delivery to ``status``; False if the claim was lost meanwhile."""
    delivery = claim.delivery
    assert delivery.id is not None
    update: dict[str, Any] = {"status": status, "updated_at": now, "lease_until": None, **values}
    if attempted:
        update["attempts"] = col(Delivery.attempts) + 1
    if status != DeliveryStatus.SENDING:
        update["claim_token"] = None
    result = session.execute(
        sa.update(Delivery)
        .where(
            col(Delivery.id) == delivery.id,
            col(Delivery.status) == DeliveryStatus.SENDING,
            col(Delivery.claim_token) == claim.token,
        )
        .values(**update)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        log.warning(
            "delivery %s: refused %s, the claim was lost (lease expired or taken over)",
            delivery.id,
            status,
        )
        return False
    record_change(session, delivery.id, status, at=now, **(detail or {}))
    return True


def finish(session: Session, claim: Claim, status: str, *, now: datetime, **kw: Any) -> bool:
    """A transition that counts one attempt at the provider."""
    return transition(session, claim, status, now=now, attempted=True, **kw)


def cancel_pending(session: Session, delivery_id: int, *, now: datetime, reason: str) -> bool:
    """Cancel one delivery if it is still waiting to go out."""
    return bool(
        _move(session, [delivery_id], from_statuses=_PENDING, to=DeliveryStatus.CANCELLED,
              now=now, reason=reason)
    )  # fmt: skip


def cancel_pending_for_bill(session: Session, bill_no: str, *, now: datetime, reason: str) -> int:
    """Cancel every delivery still waiting to go out about ``bill_no``."""
    ids = list(
        session.exec(
            select(Delivery.id)
            .join(Notification, col(Notification.id) == col(Delivery.notification_id))
            .where(Notification.bill_no == bill_no, col(Delivery.status).in_(_PENDING))
        )
    )
    cancelled = _move(
        session, ids, from_statuses=_PENDING, to=DeliveryStatus.CANCELLED, now=now, reason=reason
    )
    return len(cancelled)


_SENT = (DeliveryStatus.SENT, DeliveryStatus.DELIVERED, DeliveryStatus.UNKNOWN)


def sent_about(session: Session, account_no: str, bill_no: str) -> list[Delivery]:
    """The account's deliveries that went out and may have named ``bill_no``, oldest first.

    ``unknown`` counts as sent: it may have reached the customer. Purged rows
    (retention emptied them) are left out; their recipients are gone.
    """
    return list(
        session.exec(
            select(Delivery)
            .where(
                Delivery.account_no == account_no,
                col(Delivery.status).in_(_SENT),
                col(Delivery.purged_at).is_(None),
                col(Delivery.stated).is_not(None),
            )
            .order_by(col(Delivery.id))
        )
    )


def restate(
    session: Session,
    claim: Claim,
    content: dict[str, Any],
    *,
    segments: int | None,
    stated: dict[str, Any],
    language: str,
    now: datetime,
    detail: dict[str, Any],
) -> bool:
    """Put new text on a claimed delivery before it is sent; False if the claim was lost."""
    delivery = claim.delivery
    result = session.execute(
        sa.update(Delivery)
        .where(
            col(Delivery.id) == delivery.id,
            col(Delivery.status) == DeliveryStatus.SENDING,
            col(Delivery.claim_token) == claim.token,
        )
        .values(content=content, segments=segments, stated=stated, language=language,
                updated_at=now)
        .execution_options(synchronize_session=False)
    )  # fmt: skip
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    # The claim's copy is what the message is built from: it must be the stored text
    # (set as committed: the UPDATE above, guarded by the claim, already wrote it).
    for name, value in (
        ("content", content),
        ("segments", segments),
        ("stated", stated),
        ("language", language),
    ):
        set_committed_value(delivery, name, value)
    assert delivery.id is not None
    record_change(session, delivery.id, DeliveryStatus.SENDING, at=now, **detail)
    return True


def requeue_due(
    session: Session,
    *,
    now: datetime,
    redispatch_after: float,
    limit: int,
    drained: Collection[str] | None = None,
) -> list[tuple[int, str]]:
    """Rows a worker should pick up but probably never will: make them queued and due.

    Deferred rows whose window opened, and queued rows untouched for
    ``redispatch_after`` seconds (their task was lost with a broker or a
    worker). Queued rows are only taken for ``drained`` channels (None: all):
    while a channel's queue still holds messages, a row waiting its turn is not
    lost. A ``sending`` row whose lease expired is not among them: its worker
    may have sent it (:func:`hold_expired_leases`). Returns ``(delivery_id,
    channel)`` to enqueue after commit.
    """
    stale = now - timedelta(seconds=redispatch_after)
    due: list[tuple[int, str]] = []
    groups = [
        (
            (DeliveryStatus.DEFERRED,),
            col(Delivery.available_at) <= now,
            "quiet hours over",
        ),
        (
            (DeliveryStatus.QUEUED,),
            sa.and_(
                col(Delivery.available_at) < stale,
                sa.true() if drained is None else col(Delivery.channel).in_(drained),
            ),
            "task lost; sent again",
        ),
    ]
    for statuses, condition, reason in groups:
        rows = session.exec(
            select(Delivery.id, Delivery.channel)
            .where(col(Delivery.status).in_(statuses), condition)
            .order_by(col(Delivery.available_at))
            .limit(limit - len(due))
        ).all()
        channels = {row[0]: row[1] for row in rows}
        moved = _move(
            session,
            list(channels),
            from_statuses=statuses,
            to=DeliveryStatus.QUEUED,
            now=now,
            reason=reason,
            # Again under the row lock: a lease renewed since the read above stands.
            still=condition,
            available_at=now,
        )
        due.extend((delivery_id, channels[delivery_id]) for delivery_id in moved)
        if len(due) >= limit:
            break
    return due


def _move(
    session: Session,
    ids: Sequence[int | None],
    *,
    from_statuses: Iterable[str],
    to: str,
    now: datetime,
    reason: str,
    still: Any = None,
    detail: dict[str, Any] | None = None,
    **values: Any,
) -> list[int]:
    """Move the rows still in ``from_statuses`` (and meeting ``still``) to ``to``, each with a
    timeline entry (``reason`` and ``detail``)."""
    if not ids:
        return []
    statuses = tuple(from_statuses)
    moved = [
        delivery_id
        for delivery_id in session.exec(
            select(Delivery.id)
            .where(
                col(Delivery.id).in_(ids),
                col(Delivery.status).in_(statuses),
                sa.true() if still is None else still,
            )
            .with_for_update()
        ).all()
        if delivery_id is not None
    ]
    if not moved:
        return []
    session.execute(
        sa.update(Delivery)
        .where(col(Delivery.id).in_(moved), col(Delivery.status).in_(statuses))
        .values(status=to, updated_at=now, claim_token=None, lease_until=None, **values)
        .execution_options(synchronize_session=False)
    )
    for delivery_id in moved:
        record_change(session, delivery_id, to, at=now, reason=reason, **(detail or {}))
    return moved


@dataclass(frozen=True, slots=True)
class DeliveryFilter:
    account_no: str | None = None
    status: str | None = None
    channel: str | None = None
    event_type: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    search: str | None = None
    """An account number or its first digits, or a provider's message id."""
    search_accounts: tuple[str, ...] = ()
    """Accounts the search text names another way (their phone or email, found by its
    hash in ``accounts``): their deliveries match too."""


def _search(text: str, accounts: tuple[str, ...]) -> Any:
    text = text.strip()
    found = [col(Delivery.provider_id) == text]
    if text.isdigit() and len(text) <= 11:
        # A prefix of the 11-digit account number as a range: it uses the index.
        low, high = text.ljust(11, "0"), text.ljust(11, "9")
        found.append(col(Delivery.account_no).between(low, high))
    if accounts:
        found.append(col(Delivery.account_no).in_(accounts))
    return sa.or_(*found)


def _filtered(query: Any, filters: DeliveryFilter) -> Any:
    for field in ("account_no", "status", "channel", "event_type"):
        value = getattr(filters, field)
        if value is not None:
            query = query.where(getattr(Delivery, field) == value)
    if filters.since is not None:
        query = query.where(col(Delivery.created_at) >= filters.since)
    if filters.until is not None:
        query = query.where(col(Delivery.created_at) < filters.until)
    if filters.search:
        query = query.where(_search(filters.search, filters.search_accounts))
    return query


def list_deliveries(
    session: Session,
    filters: DeliveryFilter,
    *,
    before_id: int | None,
    limit: int,
    offset: int = 0,
) -> list[Delivery]:
    """Newest first; keyset-paged on id (``before_id``) so deep pages stay as fast as the
    first, or by ``offset`` where a page number is asked for."""
    query = select(Delivery).order_by(col(Delivery.id).desc()).limit(limit).offset(offset)
    if before_id is not None:
        query = query.where(col(Delivery.id) < before_id)
    return list(session.exec(_filtered(query, filters)))


def count_deliveries(session: Session, filters: DeliveryFilter) -> int:
    """How many deliveries ``filters`` match (the log's page count)."""
    query = _filtered(select(sa.func.count()).select_from(Delivery), filters)
    return int(session.exec(query).one())


PLANNED = {"note": "planned by policy"}
"""What a delivery planned by the policy, the common case, was created with: not stored as
an entry of its own (a row written per delivery for what the row itself says), but shown
first by :func:`timeline`."""


def timeline(session: Session, delivery_id: int) -> list[DeliveryChange]:
    """Every change of the delivery, oldest first, from its creation."""
    changes = list(
        session.exec(
            select(DeliveryChange)
            .where(DeliveryChange.delivery_id == delivery_id)
            .order_by(col(DeliveryChange.at), col(DeliveryChange.id))
        )
    )
    if changes and _is_creation(changes[0]):
        return changes
    delivery = session.get(Delivery, delivery_id)
    if delivery is None:
        return changes
    created = DeliveryChange(
        delivery_id=delivery_id,
        at=delivery.created_at,
        status=DeliveryStatus.QUEUED,
        detail=dict(PLANNED),
    )
    return [created, *changes]


def _is_creation(change: DeliveryChange) -> bool:
    """An entry stored when its delivery was made (a fallback, a repeat, a held notice)."""
    return "note" in change.detail and change.status in (
        DeliveryStatus.QUEUED,
        DeliveryStatus.SUPPRESSED,
    )


# Provider reports (status callbacks) that settle a delivery, by precedence.
REPORT_PRECEDENCE = (
    "delivered",
    "undelivered",
    "voicemail",  # a call an answering machine took (flows/reports.py)
    "short_call",
    "failed",
    "busy",
    "no-answer",
)


def early_report(session: Session, delivery: Delivery) -> str | None:
    """A settling report that arrived while the delivery was still ``sending``.

    Looks only after the latest claim, so a report about an earlier attempt
    (a call that was busy, then retried) does not count twice.
    """
    assert delivery.id is not None
    last_claim = session.exec(
        select(sa.func.max(DeliveryChange.id)).where(
            DeliveryChange.delivery_id == delivery.id,
            DeliveryChange.status == DeliveryStatus.SENDING,
        )
    ).one()
    seen = set(
        session.exec(
            select(DeliveryChange.status).where(
                DeliveryChange.delivery_id == delivery.id,
                col(DeliveryChange.id) > (last_claim or 0),
                col(DeliveryChange.status).in_(REPORT_PRECEDENCE),
            )
        )
    )
    return next((status for status in REPORT_PRECEDENCE if status in seen), None)


def early_reports(session: Session, delivery_ids: Sequence[int]) -> dict[int, str]:
    """:func:`early_report` for many deliveries in one query: id → report, where one came."""
    if not delivery_ids:
        return {}
    rows = session.exec(
        select(DeliveryChange.delivery_id, DeliveryChange.status)
        .where(
            col(DeliveryChange.delivery_id).in_(delivery_ids),
            col(DeliveryChange.status).in_((DeliveryStatus.SENDING, *REPORT_PRECEDENCE)),
        )
        .order_by(col(DeliveryChange.id))
    ).all()
    since_claim: dict[int, set[str]] = {}
    for delivery_id, status in rows:
        if status == DeliveryStatus.SENDING:
            since_claim[delivery_id] = set()  # only reports after the latest claim count
        else:
            since_claim.setdefault(delivery_id, set()).add(status)
    return {
        delivery_id: next(status for status in REPORT_PRECEDENCE if status in seen)
        for delivery_id, seen in since_claim.items()
        if seen
    }


def settle_sent(
    session: Session,
    delivery_id: int,
    status: str,
    *,
    now: datetime,
    previous: str = DeliveryStatus.SENT,
    **values: Any,
) -> bool:
    """Move a ``sent`` (or ``previous``) delivery on as its provider reported; never backwards."""
    result = session.execute(
        sa.update(Delivery)
        .where(col(Delivery.id) == delivery_id, col(Delivery.status) == previous)
        .values(status=status, updated_at=now, **values)
        .execution_options(synchronize_session=False)
    )
    settled: bool = result.rowcount == 1  # type: ignore[attr-defined]
    if settled:  # the provider's report in the timeline is this change's entry
        log.info(
            "delivery %s: %s → %s, as reported",
            delivery_id,
            previous,
            status,
            extra={"delivery_id": delivery_id, "status": status, "previous": previous},
        )
    else:
        log.warning(
            "delivery %s: refused %s, it is no longer %s",
            delivery_id,
            status,
            previous,
            extra={"delivery_id": delivery_id, "status": status},
        )
    return settled


def expire_unreceipted(
    session: Session,
    *,
    now: datetime,
    timeout: float,
    providers: Collection[str],
    limit: int,
) -> list[int]:
    """``sent`` rows of receipt-reporting ``providers`` with no receipt for ``timeout`` seconds
    become ``unknown``: oldest first, at most ``limit``. Returns the ids moved.

    ``updated_at`` of a ``sent`` row is when the send was recorded: reports that
    do not settle it (``sent``, ``ringing``) only add to the timeline.
    """
    cutoff = now - timedelta(seconds=timeout)
    ids = session.exec(
        select(Delivery.id)
        .where(
            col(Delivery.status) == DeliveryStatus.SENT,
            col(Delivery.provider).in_(list(providers)),
            col(Delivery.updated_at) < cutoff,
        )
        .order_by(col(Delivery.updated_at))
        .limit(limit)
    ).all()
    return _move(
        session,
        ids,
        from_statuses=(DeliveryStatus.SENT,),
        to=DeliveryStatus.UNKNOWN,
        now=now,
        reason=f"no receipt from the provider within {timeout:.0f} s",
    )


def settle_ambiguous(
    session: Session,
    delivery_id: int,
    status: str,
    *,
    now: datetime,
    detail: dict[str, Any],
    **values: Any,
) -> bool:
    """Move an ``ambiguous`` delivery on, with a timeline entry; False if it is no longer one.

    Guarded by the status alone: a resolution task, its redelivered copy, the
    reconciler's and a provider's report may all race to settle the same row.
    """
    result = session.execute(
        sa.update(Delivery)
        .where(col(Delivery.id) == delivery_id, col(Delivery.status) == DeliveryStatus.AMBIGUOUS)
        .values(status=status, updated_at=now, claim_token=None, lease_until=None, **values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    record_change(session, delivery_id, status, at=now, **detail)
    return True


def ambiguous_overdue(
    session: Session, *, now: datetime, grace: float, limit: int
) -> list[tuple[int, str]]:
    """``ambiguous`` rows whose resolution is ``grace`` seconds overdue (its task was lost):
    ``(delivery_id, channel)``, oldest first."""
    rows = session.exec(
        select(Delivery.id, Delivery.channel)
        .where(
            col(Delivery.status) == DeliveryStatus.AMBIGUOUS,
            col(Delivery.available_at) < now - timedelta(seconds=grace),
        )
        .order_by(col(Delivery.available_at))
        .limit(limit)
    ).all()
    return [(delivery_id, channel) for delivery_id, channel in rows if delivery_id is not None]


def hold_expired_leases(
    session: Session, *, now: datetime, wait: float, limit: int
) -> list[tuple[int, str]]:
    """``sending`` rows whose lease expired, made ``ambiguous``: ``(delivery_id, channel)``
    to resolve after commit, oldest lease first.

    Their worker died, or sent and could not record (a database away longer
    than half a lease): the provider may have the message, so it is asked
    (flows/ambiguous.py) before anything is sent again, and no resend comes
    before ``wait`` seconds. The attempt counts, as any send that may have
    gone out does: a batch that kills its worker each time ends within the
    policy's attempts.
    """
    expired = col(Delivery.lease_until) < now
    rows = session.exec(
        select(Delivery.id, Delivery.channel)
        .where(col(Delivery.status) == DeliveryStatus.SENDING, expired)
        .order_by(col(Delivery.lease_until))
        .limit(limit)
    ).all()
    channels = {delivery_id: channel for delivery_id, channel in rows if delivery_id is not None}
    resolve_by = now + timedelta(seconds=wait)
    moved = _move(
        session,
        list(channels),
        from_statuses=(DeliveryStatus.SENDING,),
        to=DeliveryStatus.AMBIGUOUS,
        now=now,
        reason="lease expired while sending: the worker may have sent it; "
        "not sent again until the provider says it has no record",
        # Again under the row lock: a lease renewed since the read above stands.
        still=expired,
        detail={"lease_expired": True, "resolve_by": resolve_by.isoformat()},
        available_at=resolve_by,
        attempts=col(Delivery.attempts) + 1,
        last_error="lease expired while sending",
    )
    return [(delivery_id, channels[delivery_id]) for delivery_id in moved]


def overdue_receipts(session: Session, *, provider: str, older_than: datetime, limit: int) -> int:
    """How many of ``provider``'s sends, up to ``limit``, wait for a report since before
    ``older_than`` (the receipt sweep's index answers it)."""
    overdue = (
        select(Delivery.id)
        .where(
            col(Delivery.status) == DeliveryStatus.SENT,
            col(Delivery.provider) == provider,
            col(Delivery.updated_at) < older_than,
        )
        .limit(limit)
        .subquery()
    )
    return int(session.exec(select(sa.func.count()).select_from(overdue)).one())
