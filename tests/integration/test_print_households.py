"""The day's print batch, household by household: one card per account, sealed when it dunns.

Scenarios on SQLite and PostgreSQL (the ``ledger`` fixture): bills posted as
the billing system would, the batch printed as the cut-off job does, and the
PDF read back as a printer and a customer would see it (its text with pypdf,
its pages as pictures with pdftoppm, its QR code with zxing-cpp).
"""

from __future__ import annotations

import csv
import shutil
import subprocess
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pypdf
import pytest
import zxingcpp
from PIL import Image
from sqlmodel import col, select

from notifier.db import utcnow
from notifier.deliveries.models import Delivery, DeliveryChange
from notifier.flows.postcards import PrintReport, print_postcards, reprint_batch
from tests.support import events
from tests.support.ledger import Ledger

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"
ADDRESS = "35159苗栗縣頭份市中正路88號"
BILLS = [("2026-05", 1830, date(2026, 7, 20)), ("2026-07", 2140, date(2026, 9, 20)),
         ("2026-09", 1975, date(2026, 11, 20))]  # fmt: skip
AMOUNTS = ["1,830", "2,140", "1,975", "5,945", "1830", "2140", "1975", "5945"]


@dataclass(frozen=True)
class CardPages:
    row: dict[str, str]
    texts: list[str]
    first_page: int
    """1-based page number of the card's outside page in the batch's PDF."""


def paper_only(**fields: Any) -> dict[str, Any]:
    return events.account(phone=None, email=None, push_tokens=None, address=ADDRESS, **fields)


def postcards_of(ledger: Ledger, account_no: str) -> list[int]:
    with ledger.db() as session:
        return [
            i
            for i in session.exec(
                select(Delivery.id)
                .where(Delivery.account_no == account_no, Delivery.channel == "postcard")
                .order_by(col(Delivery.id))
            )
            if i is not None
        ]


def card_of(report: PrintReport, delivery_id: int) -> CardPages:
    """The manifest row of the card that stands for ``delivery_id``, and its pages' text."""
    with report.manifest.open(encoding="utf-8-sig", newline="") as manifest:
        rows = list(csv.DictReader(manifest))
    page = 1
    for row in rows:
        if str(delivery_id) in row["deliveries"].split():
            reader = pypdf.PdfReader(report.pdf)
            pages = range(page - 1, page - 1 + int(row["pages"]))
            return CardPages(row, [reader.pages[i].extract_text() for i in pages], page)
        page += int(row["pages"])
    raise AssertionError(f"no card stands for delivery {delivery_id}")


def squeezed(text: str) -> str:
    return "".join(text.split())


def page_png(pdf: Path, page: int, out: Path) -> Path:
    """One page of ``pdf`` as a 300-dpi PNG (a printer's resolution), kept for people to look at."""
    out.parent.mkdir(parents=True, exist_ok=True)
    stem = out.with_suffix("")
    subprocess.run(
        ["pdftoppm", "-r", "300", "-f", str(page), "-l", str(page), "-png", "-singlefile",
         str(pdf), str(stem)],
        check=True,
    )  # fmt: skip
    return out


@pytest.fixture
def household(ledger: Ledger) -> tuple[dict[str, Any], dict[str, Any]]:
    """An account owing three bills, and another account at the same street address."""
    owing, neighbour = paper_only(name="王小明"), paper_only(name="陳美玲")
    ledger.post(
        *(events.unpaid(owing, period=p, amount=a, due=d) for p, a, d in BILLS),
        events.unpaid(neighbour, period="2026-09", amount=999, due=date(2026, 11, 20)),
    )
    return owing, neighbour


needs_pdftoppm = pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="poppler-utils")


@needs_pdftoppm
def test_three_unpaid_bills_of_a_household_are_one_sealed_card_listing_all_three(
    ledger: Ledger, household: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    owing, neighbour = household
    ours, theirs = (
        postcards_of(ledger, owing["account_no"]),
        postcards_of(ledger, neighbour["account_no"]),
    )
    assert len(ours) == 3 and len(theirs) == 1

    report = print_postcards(ledger.runtime, day=(utcnow() + timedelta(days=1)).date())

    assert report is not None
    card = card_of(report, ours[0])
    assert sorted(int(i) for i in card.row["deliveries"].split()) == ours
    assert card.row["layout"] == "sealed" and int(card.row["pages"]) == 2
    # The same street address is another household: its card is its own.
    assert theirs[0] not in [int(i) for i in card.row["deliveries"].split()]
    outside, inside = card.texts
    assert "王小明" in outside and "中正路88號" in squeezed(outside)
    assert "示範電力公司客服中心" in squeezed(outside) and "351苗栗縣頭份市中正路100號" in squeezed(
        outside
    )
    assert "NT$" not in outside and not [a for a in AMOUNTS if a in squeezed(outside)]
    assert "陳美玲" not in "".join(card.texts)
    for amount in ("NT$1,830", "NT$2,140", "NT$1,975", "NT$5,945"):
        assert amount in squeezed(inside)

    picture = page_png(report.pdf, card.first_page + 1, SCREENSHOTS / "postcard-sealed-inside.png")
    page_png(report.pdf, card.first_page, SCREENSHOTS / "postcard-sealed-outside.png")
    [code] = zxingcpp.read_barcodes(Image.open(picture), formats=zxingcpp.BarcodeFormat.QRCode)
    account_no = owing["account_no"]
    assert code.text.splitlines() == [
        "NOTIFIER-PAY/1",
        f"ACCT:{account_no}",
        *(f"BILL:B{p.replace('-', '')}-{account_no};{a};{d.isoformat()}" for p, a, d in BILLS),
        "TOTAL:5945",
    ]

    # The card stands for the three deliveries: each is sent once, by this batch.
    with ledger.db() as session:
        rows = session.exec(select(Delivery).where(col(Delivery.id).in_(ours))).all()
        sends = session.exec(
            select(DeliveryChange.delivery_id).where(
                col(DeliveryChange.delivery_id).in_(ours), DeliveryChange.status == "sent"
            )
        ).all()
    assert {(d.status, d.provider_id, d.attempts) for d in rows} == {("sent", report.batch_id, 1)}
    assert sorted(sends) == ours


def test_a_reprint_prints_the_same_cards_and_sends_no_delivery_again(
    ledger: Ledger, household: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    owing, _ = household
    ours = postcards_of(ledger, owing["account_no"])
    report = print_postcards(ledger.runtime, day=(utcnow() + timedelta(days=1)).date())
    assert report is not None
    with ledger.db() as session:
        before = session.exec(
            select(DeliveryChange.id).where(col(DeliveryChange.delivery_id).in_(ours))
        ).all()

    again = reprint_batch(ledger.runtime, report.batch_id)

    assert again.batch_id == f"{report.batch_id}-R1" and again.pdf != report.pdf
    assert (again.cards, again.deliveries) == (report.cards, report.deliveries)
    (outside, *inside), (printed_outside, *printed_inside) = (
        card_of(again, ours[0]).texts,
        card_of(report, ours[0]).texts,
    )
    assert inside == printed_inside
    # The outside names the reprint's batch, so the printer's staff can tell the two apart.
    assert outside == printed_outside.replace(report.batch_id, again.batch_id)
    with ledger.db() as session:
        rows = session.exec(select(Delivery).where(col(Delivery.id).in_(ours))).all()
        after = session.exec(
            select(DeliveryChange.id).where(col(DeliveryChange.delivery_id).in_(ours))
        ).all()
    assert {(d.status, d.attempts) for d in rows} == {("sent", 1)}
    assert sorted(after) == sorted(before)  # nothing recorded: the same mailing, not a send
    assert reprint_batch(ledger.runtime, report.batch_id).batch_id == f"{report.batch_id}-R2"


def test_a_usage_alert_and_a_reminder_of_one_household_share_its_card(ledger: Ledger) -> None:
    owing = paper_only(name="林志豪")
    ledger.post(events.unpaid(owing, period="2026-09", amount=1830, due=date(2026, 11, 20)))
    ledger.post(events.abnormal_usage(owing))
    ours = postcards_of(ledger, owing["account_no"])
    assert len(ours) == 2

    report = print_postcards(ledger.runtime, day=(utcnow() + timedelta(days=1)).date())

    assert report is not None
    card = card_of(report, ours[0])
    assert sorted(int(i) for i in card.row["deliveries"].split()) == ours
    assert card.row["layout"] == "sealed"
    inside = squeezed("".join(card.texts[1:]))
    assert "電費繳費通知" in inside and "用電異常" in inside
    assert "913度" in inside and "NT$1,830" in inside
    assert "NT$" not in card.texts[0]
