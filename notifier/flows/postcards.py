"""The day's print batch: queued postcards → one PDF of cards and a CSV manifest.

Postcards are not sent one by one. At the cut-off time (and on demand with
``notifier postcards batch``) the postcards queued so far are claimed
together, written as one batch under ``<data dir>/print/<date>/`` and marked
``sent`` with the batch id; a claimed delivery is never in two batches.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path

from sqlmodel import col, select

from channels.postcard_print import Card, CardError, write_batch
from notifier.accounts.models import Account
from notifier.deliveries import service as deliveries
from notifier.deliveries.models import Delivery, DeliveryStatus, Notification
from notifier.deliveries.service import Claim
from notifier.flows.deliver import seal
from notifier.flows.restate import restate_claims
from notifier.privacy.masking import mask_account_no
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
        claims = deliveries.claim_many(
            session,
            [i for i in ids if i is not None],
            token=batch_id,
            now=now,
            lease_seconds=BATCH_LEASE.total_seconds(),
            detail={"batch": batch_id},
        )
        if not claims:
            # Queued but none due yet (a retry's delay), or another batch holds them.
            return None
        # A card printed today says what the ledger says today (flows/restate.py).
        notifications = {
            n.id: n
            for n in session.exec(
                select(Notification).where(
                    col(Notification.id).in_({c.delivery.notification_id for c in claims})
                )
            )
            if n.id is not None
        }
        restate_claims(rt, session, claims, notifications, now)
        names = dict(
            session.exec(
                select(Account.account_no, Account.name).where(
                    col(Account.account_no).in_({c.delivery.account_no for c in claims})
                )
            ).all()
        )
    by_id = {claim.delivery.id: claim for claim in claims}
    cards = [
        Card(
            delivery_id=delivery.id or 0,
            recipient_name=names.get(delivery.account_no, ""),
            address=delivery.recipients[0],
            body=delivery.content.get("body") or "",
            language=delivery.language,
            account_ref=mask_account_no(delivery.account_no),
        )
        for delivery in (claim.delivery for claim in claims)
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
            _fail_card(rt, by_id[exc.delivery_id], exc)
            cards = [card for card in cards if card.delivery_id != exc.delivery_id]
            if not cards:
                return None
        except Exception as exc:
            _release(rt, claims, f"print batch failed: {exc}")
            raise
    done = rt.clock()
    # Hashes of the card's text as handed to the printer (like an SMS's) and of the batch file.
    pdf_sha256 = hashlib.sha256(batch.pdf_path.read_bytes()).hexdigest()
    with rt.db.session() as session:
        printed = deliveries.record_sends(
            session,
            [
                (by_id[card.delivery_id], DeliveryStatus.SENT, "print", batch_id,
                 {"batch": batch_id, "pdf": batch.pdf_path.name, "pdf_sha256": pdf_sha256,
                  **seal(rt, by_id[card.delivery_id].delivery,
                         hashlib.sha256(card.body.encode()).hexdigest())})
                for card in cards
            ],
            now=done,
        )  # fmt: skip
        webhooks.delivery_outcomes(session, printed, DeliveryStatus.SENT, now=done)
    log.info("print batch %s: %d cards in %s", batch_id, len(cards), batch.pdf_path)
    return PrintReport(
        batch_id=batch_id, cards=len(cards), pdf=batch.pdf_path, manifest=batch.manifest_path
    )


def _fail_card(rt: Runtime, claim: Claim, exc: CardError) -> None:
    now = rt.clock()
    with rt.db.session() as session:
        failed = deliveries.transition_many(
            session,
            [claim],
            DeliveryStatus.FAILED,
            now=now,
            attempted=True,
            last_error=str(exc)[:1000],
            detail={"error": str(exc)},
        )
        webhooks.delivery_outcomes(session, failed, DeliveryStatus.FAILED, now=now)
    log.error("print batch %s: %s", claim.token, exc)


def _release(rt: Runtime, claims: list[Claim], reason: str) -> None:
    """Put a failed batch's postcards back in the queue for the next batch."""
    with rt.db.session() as session:
        deliveries.transition_many(
            session, claims, DeliveryStatus.QUEUED, now=rt.clock(), detail={"reason": reason}
        )
