"""Producer callbacks: registration, the outbox rows, claiming and recording each POST.

A producer key may register one URL. When a delivery of a notification that
came from the producer's events reaches its final state, or an escalation
case of an account the producer posted about records an outcome or closes, a
:class:`ProducerCallback` row is written in the same transaction as that
change (one SELECT to find who wants it, one INSERT; nothing when no producer
concerned has a URL). Once the transaction commits, the ids are handed to the
publisher registered for the session's engine (the Runtime's dispatcher); a
publish lost with the broker is sent by the reconciler (:func:`owed_again`).

Types (docs/callbacks.md): ``delivery.delivered``,
``delivery.undelivered``, ``delivery.failed``, ``delivery.sent`` (the final
state of sends nobody reports on: email, push, postcards; an SMS or call
through Twilio reports ``delivered`` or not later), ``escalation.outcome``
(each call or visit recorded), ``escalation.closed`` and ``account.contact_invalid``
(an agent found the phone wrong); ``notification.unreachable`` when a notification
ends with no delivery at all (no usable contact, every channel opted out, no
template: someone must fix the contact data); ``delivery.unknown``
when an SMS or call got no report in ``NOTIFIER_RECEIPT_TIMEOUT_SECONDS`` (a
late report may still follow with ``delivered`` or a failure). The case and contact callbacks
are composed by :mod:`notifier.escalation.callbacks` and owed through
:func:`owe`, so this outbox knows nothing of cases. Bodies carry ids,
codes and statuses only: no rendered content, no phone, email, name or address.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Session, col, select

from notifier.deliveries.models import Delivery, DeliveryStatus, Notification
from notifier.events.models import Event
from notifier.webhooks import outbound
from notifier.webhooks.models import CallbackStatus, ProducerCallback, ProducerEndpoint

__all__ = [
    "DELIVERY_TYPES",
    "CallbackFilter",
    "InvalidUrl",
    "check_url",
    "claim",
    "clear",
    "delivery_outcomes",
    "encode",
    "get_endpoint",
    "list_callbacks",
    "owe",
    "owed_again",
    "producers_of",
    "publish_after_commit",
    "record_attempt",
    "register",
    "signature_header",
    "unreachable_notifications",
    "with_url",
]

log = logging.getLogger(__name__)
DELIVERY_TYPES = {
    DeliveryStatus.SENT: "delivery.sent",
    DeliveryStatus.DELIVERED: "delivery.delivered",
    DeliveryStatus.UNDELIVERED: "delivery.undelivered",
    DeliveryStatus.FAILED: "delivery.failed",
    DeliveryStatus.UNKNOWN: "delivery.unknown",
}
_SECRET_PREFIX = "whsec_"
_MAX_URL = 2000


# -- registration ------------------------------------------------------------


class InvalidUrl(ValueError):
    """A callback URL we will not POST to."""


def check_url(
    url: str,
    *,
    deployed: bool,
    allow_private: bool = False,
    resolver: outbound.Resolver | None = None,
) -> str:
    """``url`` if it is fit to receive callbacks: https when deployed, no credentials in it,
    a host that resolves to public addresses only (unless ``allow_private``; outbound.py)."""
    url = url.strip()
    if len(url) > _MAX_URL:
        raise InvalidUrl(f"longer than {_MAX_URL} characters")
    if any(char.isspace() or not char.isprintable() for char in url):
        raise InvalidUrl("must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidUrl(f"not a URL: {exc}") from None
    allowed = ("https",) if deployed else ("https", "http")
    if parts.scheme not in allowed:
        raise InvalidUrl("must be an https:// URL" if deployed else "must be an http(s) URL")
    if not parts.hostname:
        raise InvalidUrl("has no host")
    if parts.username is not None or parts.password is not None:
        raise InvalidUrl("must not carry credentials (user:password@); the signature authenticates")
    if parts.fragment:
        raise InvalidUrl("must not have a #fragment")
    if port == 0:
        raise InvalidUrl("has port 0")
    try:
        if resolver is None:
            outbound.resolve(url, allow_private=allow_private)
        else:
            outbound.resolve(url, allow_private=allow_private, resolver=resolver)
    except outbound.BlockedUrl as exc:
        raise InvalidUrl(f"must not point at this machine or a private network: {exc}") from None
    return url


def get_endpoint(session: Session, key_id: int) -> ProducerEndpoint | None:
    return session.get(ProducerEndpoint, key_id)


def register(
    session: Session,
    key_id: int,
    url: str,
    *,
    deployed: bool,
    allow_private: bool = False,
    now: datetime,
    rotate_secret: bool = False,
) -> tuple[ProducerEndpoint, str | None]:
    """Set the key's callback URL; the new secret if one was made (first time or rotated)."""
    url = check_url(url, deployed=deployed, allow_private=allow_private)
    endpoint = session.get(ProducerEndpoint, key_id, with_for_update=True)
    secret = None
    if endpoint is None:
        secret = _SECRET_PREFIX + secrets.token_urlsafe(32)
        endpoint = ProducerEndpoint(key_id=key_id, url=url, secret=secret, created_at=now)
    elif rotate_secret:
        secret = endpoint.secret = _SECRET_PREFIX + secrets.token_urlsafe(32)
    endpoint.url, endpoint.updated_at = url, now
    session.add(endpoint)
    session.flush()
    return endpoint, secret


def clear(session: Session, key_id: int) -> bool:
    """Forget the key's callback URL; callbacks still owed fail when their turn comes."""
    endpoint = session.get(ProducerEndpoint, key_id)
    if endpoint is None:
        return False
    session.delete(endpoint)
    return True


# -- the outbox --------------------------------------------------------------


def _notification_fields() -> tuple[Any, ...]:
    """What every callback body says of the notification and its event, in the body's order."""
    return (
        col(Event.event_id).label("event_id"),
        col(Event.type).label("event_type"),
        col(Notification.account_no).label("account_no"),
        col(Notification.bill_no).label("bill_no"),
        col(Notification.usage_period).label("usage_period"),
        col(Notification.level).label("level"),
        col(Notification.id).label("notification_id"),
    )


def delivery_outcomes(
    session: Session, delivery_ids: Sequence[int], status: str, *, now: datetime
) -> list[int]:
    """Owe a ``delivery.<status>`` callback for each delivery whose producer has a URL."""
    kind = DELIVERY_TYPES.get(status)
    if kind is None or not delivery_ids:
        return []
    # Labelled in the order the body lists them.
    rows = session.execute(
        sa.select(
            *_notification_fields(),
            col(Delivery.id).label("delivery_id"),
            col(Delivery.channel).label("channel"),
            col(Delivery.attempts).label("attempts"),
            col(Delivery.fallback_of).label("fallback_of"),
            col(ProducerEndpoint.key_id).label("key_id"),
        )
        .join(Notification, col(Notification.id) == col(Delivery.notification_id))
        .join(Event, col(Event.id) == col(Notification.event_pk))
        .join(ProducerEndpoint, col(ProducerEndpoint.key_id) == col(Event.producer_key_id))
        .where(col(Delivery.id).in_(delivery_ids))
    ).mappings()
    callbacks = []
    for row in rows:
        fields = {name: value for name, value in row.items() if name != "key_id"}
        body = {"type": kind, "occurred_at": now.isoformat(), **fields, "status": status}
        callbacks.append(
            ProducerCallback(
                key_id=row["key_id"], type=kind, body=body, next_at=now, created_at=now
            )
        )
    return owe(session, callbacks)


def unreachable_notifications(
    session: Session, reasons: Mapping[int, str], *, now: datetime
) -> list[int]:
    """Owe a ``notification.unreachable`` callback for each notification (id → why) whose
    producer has a URL: no delivery was made, so no delivery callback will ever come."""
    if not reasons:
        return []
    rows = session.execute(
        sa.select(
            *_notification_fields(),
            col(ProducerEndpoint.key_id).label("key_id"),
        )
        .join(Event, col(Event.id) == col(Notification.event_pk))
        .join(ProducerEndpoint, col(ProducerEndpoint.key_id) == col(Event.producer_key_id))
        .where(col(Notification.id).in_(list(reasons)))
    ).mappings()
    kind = "notification.unreachable"
    callbacks = []
    for row in rows:
        fields = {name: value for name, value in row.items() if name != "key_id"}
        body = {
            "type": kind,
            "occurred_at": now.isoformat(),
            **fields,
            "status": "unreachable",
            "reason": reasons[row["notification_id"]],
        }
        callbacks.append(
            ProducerCallback(
                key_id=row["key_id"], type=kind, body=body, next_at=now, created_at=now
            )
        )
    return owe(session, callbacks)


def with_url(session: Session, key_ids: Sequence[int]) -> list[int]:
    """The keys among ``key_ids`` that have a callback URL."""
    if not key_ids:
        return []
    rows = session.exec(
        select(ProducerEndpoint.key_id).where(col(ProducerEndpoint.key_id).in_(key_ids))
    ).all()
    return sorted(rows)


def producers_of(session: Session, account_nos: Sequence[str]) -> dict[str, list[int]]:
    """For each account, the keys with a URL that posted events about it."""
    if not account_nos:
        return {}
    rows = session.execute(
        select(Event.account_no, ProducerEndpoint.key_id)
        .join(ProducerEndpoint, col(ProducerEndpoint.key_id) == col(Event.producer_key_id))
        .where(col(Event.account_no).in_(account_nos))
        .distinct()
    ).all()
    found: dict[str, list[int]] = {}
    for account_no, key_id in rows:
        found.setdefault(account_no, []).append(key_id)
    return found


# -- publishing once the transaction commits ---------------------------------

_OWED = "notifier.webhooks.owed"
Publisher = Callable[[list[int]], object]
_publishers: weakref.WeakKeyDictionary[Engine, weakref.WeakMethod[Publisher]] = (
    weakref.WeakKeyDictionary()
)


def publish_after_commit(engine: Engine, publisher: Publisher) -> None:
    """Hand callbacks owed in ``engine``'s sessions to ``publisher`` after each commit.

    ``publisher`` is a bound method, held weakly: its object (the Runtime) owns
    the engine, and a strong reference here would keep both alive for good.
    """
    _publishers[engine] = weakref.WeakMethod(publisher)


def owe(session: Session, callbacks: list[ProducerCallback]) -> list[int]:
    """Add ``callbacks`` to the outbox; their ids go to the publisher once the session commits."""
    if not callbacks:
        return []
    session.add_all(callbacks)
    session.flush()
    ids = [callback.id for callback in callbacks if callback.id is not None]
    session.info.setdefault(_OWED, []).extend(ids)
    return ids


@sa.event.listens_for(OrmSession, "after_commit")
def _publish(session: OrmSession) -> None:
    ids: list[int] | None = session.info.pop(_OWED, None)
    bind = session.bind
    ref = _publishers.get(bind) if isinstance(bind, Engine) else None
    publisher = ref() if ref is not None else None
    if not ids or publisher is None:
        return  # none owed, or no broker here (a CLI run): the reconciler sends them
    try:
        publisher(ids)
    except Exception as exc:  # committed all the same; the reconciler sends them
        log.warning("could not enqueue producer callbacks %s (%s)", ids, exc)


@sa.event.listens_for(OrmSession, "after_rollback")
def _forget(session: OrmSession) -> None:
    session.info.pop(_OWED, None)


# -- sending -----------------------------------------------------------------


def encode(callback: ProducerCallback) -> bytes:
    """The exact bytes POSTed (and signed): the stored body with the callback's id first."""
    return json.dumps(
        {"id": callback.id, **callback.body}, ensure_ascii=False, separators=(",", ":")
    ).encode()


def signature_header(secret: str, body: bytes, timestamp: int) -> str:
    """``t=<unix ts>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def claim(
    session: Session, callback_id: int, *, now: datetime, lease: timedelta
) -> ProducerCallback | None:
    """Take a due callback for one POST (its ``next_at`` moves past the POST's timeout)."""
    result = session.execute(
        sa.update(ProducerCallback)
        .where(
            col(ProducerCallback.id) == callback_id,
            col(ProducerCallback.status) == CallbackStatus.PENDING,
            col(ProducerCallback.next_at) <= now + timedelta(seconds=1),
        )
        .values(next_at=now + lease)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return None
    return session.get(ProducerCallback, callback_id, populate_existing=True)


def record_attempt(
    session: Session,
    callback: ProducerCallback,
    *,
    status: str,
    now: datetime,
    code: int | None,
    error: str | None,
    retry_at: datetime | None = None,
) -> None:
    """One POST's result: ``sent``, ``failed``, or ``pending`` again until ``retry_at``."""
    values: dict[str, Any] = {
        "status": status,
        "attempts": col(ProducerCallback.attempts) + 1,
        "last_status_code": code,
        "last_error": error[:500] if error else None,
    }
    if status == CallbackStatus.SENT:
        values["sent_at"] = now
    if retry_at is not None:
        values["next_at"] = retry_at
    session.execute(
        sa.update(ProducerCallback)
        .where(col(ProducerCallback.id) == callback.id)
        .values(**values)
        .execution_options(synchronize_session=False)
    )


def owed_again(session: Session, *, now: datetime, stale_after: float, limit: int) -> list[int]:
    """Pending callbacks due for ``stale_after`` seconds and not taken: their task was lost."""
    stale = now - timedelta(seconds=stale_after)
    return [
        callback_id
        for callback_id in session.exec(
            select(ProducerCallback.id)
            .where(
                ProducerCallback.status == CallbackStatus.PENDING,
                col(ProducerCallback.next_at) < stale,
            )
            .order_by(col(ProducerCallback.next_at))
            .limit(limit)
        )
        if callback_id is not None
    ]


@dataclass(frozen=True, slots=True)
class CallbackFilter:
    key_id: int | None = None
    status: str | None = None


def list_callbacks(
    session: Session, filters: CallbackFilter, *, before_id: int | None, limit: int
) -> list[ProducerCallback]:
    """Newest first, keyset-paged on id."""
    query = select(ProducerCallback).order_by(col(ProducerCallback.id).desc()).limit(limit)
    if filters.key_id is not None:
        query = query.where(ProducerCallback.key_id == filters.key_id)
    if filters.status is not None:
        query = query.where(ProducerCallback.status == filters.status)
    if before_id is not None:
        query = query.where(col(ProducerCallback.id) < before_id)
    return list(session.exec(query))
