"""The day's print batch: queued postcards → one PDF of cards and a CSV manifest.

Postcards are not sent one by one. At the cut-off time (and on demand with
``notifier postcards batch``) the postcards queued so far are claimed
together, written as one batch under ``<data dir>/print/<date>/`` and marked
``sent`` with the batch id; a claimed delivery is never in two batches.

One card per household per batch. A household is an account: the ledger
keeps bills by account and names its holder, so the card can say whom it
is for and list every bill owed there. The same postal address is not a
household: addresses are free text typed by producers (臺/台, full-width
digits, a floor left out), and two accounts at one address (flats behind one
street number, a landlord and tenants) are different customers, whose bills
must not be shown to each other. Reminders that list the account's unpaid
bills (``bill.unpaid``, ``collection.final_demand``) fold into the strongest
of them, which after :func:`~notifier.flows.restate.restate_claims` lists
every bill unpaid today; any other notice of the household (a correction, a
usage alert) is printed on the same card after it. The card stands for all
those deliveries: each is marked sent once, with the card's reference.

Dunning cards are sealed mailers by default (``NOTIFIER_POSTCARD_SEALED``):
the outside shows only the address and the sender; the inside the amounts
and a payment QR code of what the notice states (channels/postcard_print.py).
:func:`reprint_batch` prints a batch again from what was printed, and
changes no delivery: a reprint is the same mailing, not another send.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path

from sqlmodel import col, select

from channels.postcard_print import Card, CardError, PaymentCode, PrintBatch, write_batch
from notifier.accounts.models import Account
from notifier.deliveries import service as deliveries
from notifier.deliveries.models import Delivery, DeliveryStatus, Notification
from notifier.deliveries.service import Claim
from notifier.flows.deliver import seal
from notifier.flows.restate import restate_claims
from notifier.privacy.masking import mask_account_no
from notifier.runtime import Runtime
from notifier.webhooks import service as webhooks

__all__ = ["PrintReport", "cutoff", "household_cards", "print_postcards", "reprint_batch"]

log = logging.getLogger(__name__)
BATCH_LEASE = timedelta(minutes=30)
DUNNING = frozenset({"bill.unpaid", "bill.corrected", "collection.final_demand"})
"""Notices that state an amount owed: sealed by default, with a payment code."""
_LISTS_ALL_BILLS = ("bill.unpaid", "collection.final_demand")
"""Notices that list every unpaid bill of the account, weakest first: one of them per card."""


@dataclass(frozen=True, slots=True)
class PrintReport:
    batch_id: str
    cards: int
    pdf: Path
    manifest: Path
    deliveries: int = 0
    """How many deliveries the cards stand for (a household's notices share one card)."""


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
    cards = household_cards(rt, [claim.delivery for claim in claims], notifications, names)
    while True:
        try:
            batch = _write(rt, cards, rt.settings.data_dir / "print" / f"{day:%Y-%m-%d}", batch_id)
            break
        except CardError as exc:
            # One card that cannot be printed fails alone (all it stands for); the rest go out.
            card = next(card for card in cards if card.delivery_id == exc.delivery_id)
            _fail_card(rt, [by_id[i] for i in card.stands_for], exc)
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
                (by_id[delivery_id], DeliveryStatus.SENT, "print", batch_id,
                 {"batch": batch_id, "pdf": batch.pdf_path.name, "pdf_sha256": pdf_sha256,
                  "card": _reference(card), "layout": "sealed" if card.sealed else "open",
                  **seal(rt, by_id[delivery_id].delivery,
                         hashlib.sha256(card.body.encode()).hexdigest())})
                for card in cards
                for delivery_id in card.stands_for
            ],
            now=done,
        )  # fmt: skip
        webhooks.delivery_outcomes(session, printed, DeliveryStatus.SENT, now=done)
    stood_for = sum(len(card.stands_for) for card in cards)
    log.info(
        "print batch %s: %d cards for %d deliveries in %s",
        batch_id, len(cards), stood_for, batch.pdf_path,
    )  # fmt: skip
    return PrintReport(
        batch_id=batch_id,
        cards=len(cards),
        pdf=batch.pdf_path,
        manifest=batch.manifest_path,
        deliveries=stood_for,
    )


def household_cards(
    rt: Runtime,
    members: list[Delivery],
    notifications: dict[int, Notification],
    names: dict[str, str | None],
) -> list[Card]:
    """The cards of a batch's postcard deliveries: one per account, in order of its first."""
    households: dict[str, list[Delivery]] = {}
    for delivery in sorted(members, key=lambda d: d.id or 0):
        households.setdefault(delivery.account_no, []).append(delivery)
    return [
        _card(rt, group, notifications, names.get(account_no))
        for account_no, group in households.items()
    ]


def _strength(delivery: Delivery, notifications: dict[int, Notification]) -> tuple[int, int, int]:
    """How strong a reminder is: a final demand over a second reminder over a first; then newest."""
    level = notifications[delivery.notification_id].level
    return _LISTS_ALL_BILLS.index(delivery.event_type), level, delivery.id or 0


def _card(
    rt: Runtime,
    group: list[Delivery],
    notifications: dict[int, Notification],
    name: str | None,
) -> Card:
    reminders = [d for d in group if d.event_type in _LISTS_ALL_BILLS]
    lead = max(reminders, key=lambda d: _strength(d, notifications)) if reminders else group[0]
    # The lead's text lists every unpaid bill; the other reminders said the same or less.
    texts: list[str] = []
    for delivery in [lead, *(d for d in group if d.event_type not in _LISTS_ALL_BILLS)]:
        body = (delivery.content.get("body") or "").strip()
        if body and body not in texts:
            texts.append(body)
    dunning = [d for d in group if d.event_type in DUNNING]
    mode = rt.settings.postcard_sealed
    sealed = mode == "all" or (mode == "dunning" and bool(dunning))
    owing = lead if lead.event_type in DUNNING else (dunning[0] if dunning else None)
    return Card(
        delivery_id=lead.id or 0,
        recipient_name=name or "",
        address=lead.recipients[0] if lead.recipients else "",
        body="\n\n".join(texts),
        language=lead.language,
        account_ref=mask_account_no(lead.account_no),
        sealed=sealed,
        # On an open card a postman could read it: the code goes inside a sealed mailer only.
        payment=_payment_code(owing) if sealed and owing is not None else None,
        delivery_ids=tuple(d.id or 0 for d in group),
    )


def _payment_code(delivery: Delivery) -> PaymentCode | None:
    """What the notice stated of the bills owed (``Delivery.stated``), as a payment code."""
    stated = delivery.stated or {}
    terms = stated.get("bills") or ([stated["bill"]] if stated.get("bill") else [])
    # Each: [bill_no, amount, paid, due_date, overdue] (notifier.notices.content.statement).
    bills = tuple(
        (str(no), int(amount) - int(paid), date.fromisoformat(str(due)))
        for no, amount, paid, due, *_ in terms
        if int(amount) - int(paid) > 0
    )
    return PaymentCode(account_no=delivery.account_no, bills=bills) if bills else None


def _reference(card: Card) -> str:
    return f"{card.delivery_id:010d}"


def _write(rt: Runtime, cards: list[Card], out_dir: Path, batch_id: str) -> PrintBatch:
    identity = rt.settings.identity
    return write_batch(
        cards,
        out_dir=out_dir,
        batch_id=batch_id,
        sender=identity.sender_name,
        return_address=f"{identity.postal_code}{identity.return_address}",
        service_phone=identity.service_phone,
        website=identity.website_host,
        logo=identity.logo_file,
    )


def reprint_batch(rt: Runtime, batch_id: str) -> PrintReport:
    """Print batch ``batch_id`` again, as it was printed, as ``<batch_id>-R<n>``.

    For a jammed printer or a lost file: the cards are rebuilt from what each
    delivery recorded (its printed text and statement), and no delivery is
    changed: each was sent once, by the batch, and stays counted once.
    """
    with rt.db.session() as session:
        members = list(
            session.exec(
                select(Delivery)
                .where(Delivery.channel == "postcard", Delivery.provider_id == batch_id)
                .order_by(col(Delivery.id))
            )
        )
        if not members:
            raise LookupError(f"no postcards were printed in batch {batch_id}")
        notifications = {
            n.id: n
            for n in session.exec(
                select(Notification).where(
                    col(Notification.id).in_({d.notification_id for d in members})
                )
            )
            if n.id is not None
        }
        names = dict(
            session.exec(
                select(Account.account_no, Account.name).where(
                    col(Account.account_no).in_({d.account_no for d in members})
                )
            ).all()
        )
    cards = household_cards(rt, members, notifications, names)
    day = batch_id.split("-")[1] if batch_id.count("-") >= 2 else ""
    folder = f"{day[:4]}-{day[4:6]}-{day[6:8]}" if len(day) == 8 and day.isdigit() else "reprints"
    out_dir = rt.settings.data_dir / "print" / folder
    for n in range(1, 1000):
        again = f"{batch_id}-R{n}"
        if (
            not (out_dir / f"{again}.manifest.csv").exists()
            and not (out_dir / f"{again}.pdf").exists()
        ):
            break
    batch = _write(rt, cards, out_dir, again)
    log.info("print batch %s reprinted as %s: %d cards", batch_id, again, len(cards))
    return PrintReport(
        batch_id=again,
        cards=len(cards),
        pdf=batch.pdf_path,
        manifest=batch.manifest_path,
        deliveries=len(members),
    )


def _fail_card(rt: Runtime, claims: list[Claim], exc: CardError) -> None:
    now = rt.clock()
    with rt.db.session() as session:
        failed = deliveries.transition_many(
            session,
            claims,
            DeliveryStatus.FAILED,
            now=now,
            attempted=True,
            last_error=str(exc)[:1000],
            detail={"error": str(exc)},
        )
        webhooks.delivery_outcomes(session, failed, DeliveryStatus.FAILED, now=now)
    log.error("print batch %s: %s", claims[0].token, exc)


def _release(rt: Runtime, claims: list[Claim], reason: str) -> None:
    """Put a failed batch's postcards back in the queue for the next batch."""
    with rt.db.session() as session:
        deliveries.transition_many(
            session, claims, DeliveryStatus.QUEUED, now=rt.clock(), detail={"reason": reason}
        )
