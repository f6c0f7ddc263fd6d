"""The day's print batch: queued postcards → one PDF of cards and a CSV manifest.

Postcards are not sent one by one. At the cut-off time (and on demand with
``notifier postcards batch``) the postcards queued so far are claimed
together, written as one batch under ``<data dir>/print/<date>/`` and marked
``sent`` with the batch id; a claimed delivery is never in two batches.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlmodel import col, select

from channels.postcard_print import Card, CardError, write_batch
from notifier.accounts.models import Account
from notifier.deliveries import service as deliveries
from notifier.deliveries.models import Delivery, DeliveryStatus
from notifier.masking import mask_account_no
from notifier.runtime import Runtime
from notifier.webhooks import service as webhooks

__all__ = ["PrintReport", "cutoff", "print_postcards"]

log = logging.getLogger(__name__)
BATCH_LEASE = timedelta(minutes=30)


@dataclass(frozen=True, slots=True)
class PrintReport:
    batch_id: str
    cards: int
    pdf: Path
    manifest: Path


def cutoff(rt: Runtime, day: date) -> datetime:
    """The instant the postcards of business day ``day`` go to print."""
    hour, minute = (int(part) for part in rt.settings.postcard_cutoff.split(":"))
    return datetime.combine(day, time(hour, minute), tzinfo=rt.policy.tz)


def print_postcards(
    rt: Runtime, *, day: date | None = None, limit: int = 5000
) -> PrintReport | None:
    """Print the postcards queued before ``day``'s cut-off; None if there are none."""
    now = rt.clock()
    day = day or now.astimezone(rt.policy.tz).date()
    batch_id = f"PC-{day:%Y%m%d}-{now.astimezone(rt.policy.tz):%H%M%S}-{secrets.token_hex(2)}"
    with rt.db.session() as session:
        ids = list(
            session.exec(
                select(Delivery.id)
                .where(
                    Delivery.channel == "postcard",
                    Delivery.status == DeliveryStatus.QUEUED,
                    col(Delivery.created_at) <= cutoff(rt, day),
                )
                .order_by(col(Delivery.id))
                .limit(limit)
            )
        )
        if not ids:
            return None
        session.execute(
            sa.update(Delivery)
            .where(col(Delivery.id).in_(ids), col(Delivery.status) == DeliveryStatus.QUEUED)
            .values(
                status=DeliveryStatus.SENDING,
                claim_token=batch_id,
                lease_until=now + BATCH_LEASE,
                updated_at=now,
            )
        )
        rows = session.exec(
            select(Delivery, Account)
            .join(Account, col(Account.account_no) == col(Delivery.account_no))
            .where(Delivery.claim_token == batch_id)
            .order_by(col(Delivery.id))
        ).all()
        for delivery, _ in rows:
            assert delivery.id is not None
            deliveries.record_change(session, delivery.id, DeliveryStatus.SENDING, batch=batch_id)
    cards = [
        Card(
            delivery_id=delivery.id or 0,
            recipient_name=account.name,
            address=delivery.recipients[0],
            body=delivery.content.get("body") or "",
            language=delivery.language,
            account_ref=mask_account_no(account.account_no),
        )
        for delivery, account in rows
    ]
    while True:
        try:
            batch = write_batch(
                cards,
                out_dir=rt.settings.data_dir / "print" / f"{day:%Y-%m-%d}",
                batch_id=batch_id,
                service_phone=rt.settings.service_phone,
            )
            break
        except CardError as exc:
            # One card that cannot be printed fails alone; the rest still go out.
            _fail_card(rt, batch_id, exc)
            cards = [card for card in cards if card.delivery_id != exc.delivery_id]
            if not cards:
                return None
        except Exception as exc:
            _release(rt, batch_id, f"print batch failed: {exc}")
            raise
    done = rt.clock()
    with rt.db.session() as session:
        session.execute(
            sa.update(Delivery)
            .where(
                col(Delivery.claim_token) == batch_id,
                col(Delivery.status) == DeliveryStatus.SENDING,
            )
            .values(
                status=DeliveryStatus.SENT,
                provider="print",
                provider_id=batch_id,
                attempts=col(Delivery.attempts) + 1,
                claim_token=None,
                lease_until=None,
                updated_at=done,
            )
        )
        for card in cards:
            deliveries.record_change(
                session,
                card.delivery_id,
                DeliveryStatus.SENT,
                batch=batch_id,
                pdf=batch.pdf_path.name,
            )
        printed = [card.delivery_id for card in cards]
        webhooks.delivery_outcomes(session, printed, DeliveryStatus.SENT, now=done)
    log.info("print batch %s: %d cards in %s", batch_id, len(cards), batch.pdf_path)
    return PrintReport(
        batch_id=batch_id, cards=len(cards), pdf=batch.pdf_path, manifest=batch.manifest_path
    )


def _fail_card(rt: Runtime, batch_id: str, exc: CardError) -> None:
    with rt.db.session() as session:
        session.execute(
            sa.update(Delivery)
            .where(col(Delivery.id) == exc.delivery_id, col(Delivery.claim_token) == batch_id)
            .values(
                status=DeliveryStatus.FAILED,
                claim_token=None,
                lease_until=None,
                attempts=col(Delivery.attempts) + 1,
                last_error=str(exc)[:1000],
            )
        )
        deliveries.record_change(session, exc.delivery_id, DeliveryStatus.FAILED, error=str(exc))
        webhooks.delivery_outcomes(
            session, [exc.delivery_id], DeliveryStatus.FAILED, now=rt.clock()
        )
    log.error("print batch %s: %s", batch_id, exc)


def _release(rt: Runtime, batch_id: str, reason: str) -> None:
    """Put a failed batch's postcards back in the queue for the next batch."""
    with rt.db.session() as session:
        ids = list(session.exec(select(Delivery.id).where(Delivery.claim_token == batch_id)))
        session.execute(
            sa.update(Delivery)
            .where(
                col(Delivery.claim_token) == batch_id,
                col(Delivery.status) == DeliveryStatus.SENDING,
            )
            .values(status=DeliveryStatus.QUEUED, claim_token=None, lease_until=None)
        )
        for delivery_id in ids:
            if delivery_id is not None:
                deliveries.record_change(session, delivery_id, DeliveryStatus.QUEUED, reason=reason)
