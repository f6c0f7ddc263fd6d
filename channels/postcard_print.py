"""Postcards: the print batch (one PDF of A6 cards and a CSV manifest), and the queue channel.

Postcards are not sent one by one. :class:`PrintQueue`, the ``postcard``
channel's ``print`` provider, only checks that a message has a postal address
and leaves it waiting; the service's batch job claims the waiting postcards at
the day's cut-off and calls :func:`write_batch`, which writes
``<batch_id>.pdf`` and ``<batch_id>.manifest.csv`` for the printer.

A card stands for one household's notices of the batch (the caller groups
them; see notifier/flows/postcards.py) and comes in two layouts, each of A6
landscape pages (148 x 105 mm):

- open (``sealed=False``): two pages, the address side, then the message side;
- sealed mailer (``sealed=True``, the default for dunning): the outside page
  carries only the recipient's address, the sender and the sorting reference,
  never an amount; the inside pages (one to three) carry the notice. It is
  printed as a pressure-sealed double card: nobody but the addressee reads
  what is owed.

A card with a :class:`PaymentCode` gets a QR code beside its message that
encodes exactly that code's account, bills, amounts owed and due dates (what
the ledger said when the notice was rendered), nothing else.

Nothing is cut silently: a card whose text cannot fit, or that uses a
character the font lacks (a printed box instead of a name), fails the batch
with a :class:`CardError` naming the card's delivery.

The font is a Traditional Chinese one, cut down to the characters of the
batch and embedded in the PDF so that it prints the same on any machine; the
font and the line breaking are :mod:`channels.print_layout`'s, shared with
the visit notices.
"""

from __future__ import annotations

import csv
import os
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import ClassVar

import segno
from fontTools.ttLib import TTFont

from channels.base import Channel, Message, PermanentChannelError, SendResult
from channels.print_layout import (
    FONT_ENV,
    PrintError,
    Typesetter,
    clean_text,
    find_cjk_font,
    is_wide,
    line_height,
    missing_glyphs,
    open_font,
    plain_text,
    subset_font_file,
    wrap_paragraph,
)
from channels.registry import register

__all__ = [
    "FONT_ENV",  # the font is print_layout's; named here too, where postcards were first
    "Card",
    "CardError",
    "PaymentCode",
    "PrintBatch",
    "PrintQueue",
    "find_cjk_font",
    "write_batch",
]

CARD_W, CARD_H = 148.0, 105.0  # mm, A6 landscape
MARGIN = 8.0
PAGES_PER_CARD = 2
"""Pages of an open card, and the fewest of a sealed mailer (outside, one inside page)."""
MAX_INSIDE_PAGES = 3
INSIDE_PT = 8.0  # the size a sealed mailer's text runs over several inside pages at
QR_SIZE = 26.0  # mm: about 0.5 mm a module for five bills, which any phone reads
BODY_MAX_PT, BODY_MIN_PT = 11.0, 7.0
_BATCH_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_POSTCODE = re.compile(r"^\s*(?P<code>\d{3}(?:\d{2,3})?)(?!\d)\s*(?P<rest>.*)$", re.S)
_CSV_FORMULA = ("=", "+", "-", "@", "\t", "\r")
# The old name, which tests/channels/test_postcard_print.py still imports from here.
_wrap_paragraph = wrap_paragraph


@dataclass(frozen=True)
class PaymentCode:
    """What a card's payment QR code says: the account, each bill owed (number, amount left,
    due date) and their total, as the ledger stated them when the notice was rendered."""

    account_no: str
    bills: tuple[tuple[str, int, date], ...]

    @property
    def total(self) -> int:
        return sum(owed for _, owed, _ in self.bills)

    def payload(self) -> str:
        """The text in the QR code: one ``KEY:value`` a line, documented in docs/identity.md."""
        return "\n".join(
            [
                "NOTIFIER-PAY/1",
                f"ACCT:{self.account_no}",
                *(f"BILL:{no};{owed};{due.isoformat()}" for no, owed, due in self.bills),
                f"TOTAL:{self.total}",
            ]
        )


@dataclass(frozen=True)
class Card:
    """One postcard to print: who it goes to and the rendered notice(s)."""

    delivery_id: int
    """The card's reference (printed and barcoded): the delivery whose notice leads it."""
    recipient_name: str | None
    address: str
    body: str
    language: str
    account_ref: str
    """The account number, masked."""
    sealed: bool = False
    """A sealed mailer: the outside page shows no amount (module docstring)."""
    payment: PaymentCode | None = None
    delivery_ids: tuple[int, ...] = ()
    """Every delivery this card stands for (a household's notices); empty: ``delivery_id``."""

    @property
    def stands_for(self) -> tuple[int, ...]:
        return self.delivery_ids or (self.delivery_id,)


@dataclass(frozen=True)
class PrintBatch:
    """A written batch: the PDF for the printer and its manifest."""

    batch_id: str
    pdf_path: Path
    manifest_path: Path
    cards: int
    pages: int


class CardError(PrintError):
    """One card of a batch cannot be printed as it is; ``delivery_id`` says which."""

    def __init__(self, delivery_id: int, reason: str) -> None:
        super().__init__(f"delivery {delivery_id}", reason)
        self.delivery_id = delivery_id


@register("postcard", "print")
class PrintQueue(Channel):
    """Accept a postcard for the next print batch; nothing is printed here.

    The service's batch job claims the waiting postcards at the cut-off and
    calls :func:`write_batch`; this send only refuses what could never print.
    """

    channel: ClassVar[str] = "postcard"
    provider: ClassVar[str] = "print"

    async def send(self, message: Message) -> SendResult:
        if not any(line.strip() for line in message.to):
            raise PermanentChannelError("no postal address", code="no_address")
        return SendResult(
            provider=self.provider,
            provider_id=f"pending-{message.delivery_id}",
            status="sent",
            detail={"awaiting_batch": True},
        )


# --- the cards ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Labels:
    account: str
    ref: str
    phone: str
    no_name: str
    honorific: str
    sealed: str
    pay_code: str
    page: str


_POSTAGE = "國內郵資已付"  # printed under the sender's bulk-mail permit
_GAP = "\u3000"  # ideographic space
_ZH = _Labels(
    account="電號",
    ref="參考編號",
    phone="客服專線",
    no_name="用電戶",
    honorific="台啟",
    sealed="彌封郵件　限收件人拆閱",
    pay_code="繳費資訊條碼",
    page="（續）",
)
_EN = _Labels(
    account="Account",
    ref="Ref.",
    phone="Service line",
    no_name="The Account Holder",
    honorific="",
    sealed="Sealed: for the addressee only",
    pay_code="Payment code",
    page="(continued)",
)


_LABEL_TEXT = [text for labels in (_ZH, _EN) for text in vars(labels).values()]
LOGO_W = 11.0  # mm, the logo's square beside the sender


def _labels(language: str) -> _Labels:
    return _ZH if language.lower().startswith("zh") else _EN


def _reference(delivery_id: int) -> str:
    return f"{delivery_id:010d}"


class _Printer(Typesetter):
    """Draws the cards of one batch into one fpdf2 document, in the batch's font."""

    def __init__(
        self,
        font_file: Path,
        *,
        batch_id: str,
        total: int,
        sender: str,
        return_address: str,
        phone: str,
        website: str,
        logo: Path | None,
    ) -> None:
        self.batch_id = batch_id
        self.total = total
        self.phone = phone
        self.website = website
        self.logo = logo
        self.pages = 0
        super().__init__(
            font_file,
            width=CARD_W,
            height=CARD_H,
            title=f"Postcard batch {batch_id}",
            language="zh-TW",
        )
        # The same on every card: fitted once, and a misfit fails the batch, not a card.
        self.sender_x = MARGIN + (LOGO_W + 2 if logo else 0)
        sender_w = 80 - (self.sender_x - MARGIN)
        self.sender = self._fit(None, "sender", sender, width=sender_w, height=5, sizes=(9, 7))
        self.return_address = self._fit(
            None, "return address", return_address, width=sender_w, height=6.5, sizes=(7.5, 6)
        )

    def _fit(
        self,
        card: Card | None,
        what: str,
        text: str,
        *,
        width: float,
        height: float,
        sizes: tuple[float, float],
    ) -> tuple[float, list[str]]:
        """The largest size in ``sizes`` at which ``text`` fits the box, or an error."""
        fitted = self.fit(text, width=width, height=height, sizes=sizes)
        if fitted is not None:
            return fitted
        reason = f"the {what} does not fit its place on the card even at {sizes[1]:g} pt"
        if card is None:
            raise ValueError(reason)
        raise CardError(card.delivery_id, f"{reason}; it is never cut, so shorten it")

    def add(self, card: Card, sequence: int) -> int:
        """The card's pages: address side (outside), then message side(s); how many."""
        labels = _labels(card.language)
        # Fitted before anything is drawn: a card that fails leaves no half-drawn pages.
        message = self._message_pages(card)
        self._address_side(card, labels, sequence)
        for page, lines in enumerate(message):
            self._message_side(card, labels, lines, first=page == 0)
        self.pages += 1 + len(message)
        return 1 + len(message)

    def _address_side(self, card: Card, labels: _Labels, sequence: int) -> None:
        """The outside: sender, postage, recipient, sorting reference; never the notice."""
        pdf = self.pdf
        pdf.add_page()
        # Sender (after the logo, if any), top left; postage paid under the sender's permit, top right.
        if self.logo is not None:
            pdf.image(
                str(self.logo), x=MARGIN, y=MARGIN, w=LOGO_W, h=LOGO_W, keep_aspect_ratio=True
            )
        width = 80 - (self.sender_x - MARGIN)
        y = self.block(self.sender_x, MARGIN, width, self.sender)
        y = self.block(self.sender_x, y, width, self.return_address)
        self.line(self.sender_x, y, width, f"{labels.phone} {self.phone}", 7.5)
        pdf.set_line_width(0.3)
        pdf.rect(CARD_W - MARGIN - 22, MARGIN, 22, 15)
        self.line(CARD_W - MARGIN - 22, MARGIN + 2.5, 22, _POSTAGE[:2], 7.5, align="C")
        self.line(CARD_W - MARGIN - 22, MARGIN + 7, 22, _POSTAGE[2:], 7.5, align="C")
        # The recipient, large, middle right: postcode, address and name.
        left = 42.0
        width = CARD_W - MARGIN - left
        postcode, address = "", card.address
        match = _POSTCODE.match(address)
        # "35159苗栗縣..." has a postcode; "123 Main St." has a house number.
        if match and is_wide(match["rest"][:1] or " "):
            postcode, address = match["code"], match["rest"].strip()
        name = card.recipient_name or labels.no_name
        if labels.honorific:
            name = f"{name} {labels.honorific}"
        address_fit = self._fit(card, "address", address, width=width, height=26, sizes=(13, 8))
        name_fit = self._fit(card, "recipient name", name, width=width, height=16, sizes=(17, 10))
        postcode_pt = 14.0
        height = 2 + sum(
            line_height(size) * len(lines)
            for size, lines in (
                address_fit,
                name_fit,
                (postcode_pt, [postcode] if postcode else []),
            )
        )
        y = max(30.0, 57.0 - height / 2)
        if postcode:
            pdf.set_char_spacing(2)
            y = self.block(left, y, width, (postcode_pt, [postcode]))
            pdf.set_char_spacing(0)
        if labels is _EN:  # name above the address, as English is written
            y = self.block(left, y, width, name_fit) + 2
            self.block(left, y, width, address_fit)
        else:  # the address, then the name, as a Taiwanese envelope is written
            y = self.block(left, y, width, address_fit) + 2
            self.block(left, y, width, name_fit)
        # Reference for sorting, bottom left; batch and sequence, bottom right.
        reference = _reference(card.delivery_id)
        self._code128(reference, x=MARGIN, y=CARD_H - MARGIN - 12, module=0.33, height=8)
        bottom_line = CARD_H - MARGIN - 3.6
        self.line(MARGIN, bottom_line, 60, f"{labels.ref} {reference}", 7)
        where = f"{self.batch_id}  {sequence}/{self.total}"
        self.line(CARD_W / 2, bottom_line, CARD_W / 2 - MARGIN, where, 6.5, align="R")
        if card.sealed:
            self.line(CARD_W / 2, bottom_line - 4, CARD_W / 2 - MARGIN, labels.sealed, 7, align="R")

    def _body_box(self, card: Card) -> tuple[float, float]:
        """Width and height (mm) of the message on a message page: beside the QR code, if any."""
        width = CARD_W - 2 * MARGIN - (QR_SIZE + 3 if card.payment else 0)
        return width, (CARD_H - MARGIN - 4) - (MARGIN + 6)

    def _message_pages(self, card: Card) -> list[tuple[float, list[str]]]:
        """The message's fitted lines per page: one page, or for a sealed mailer up to three."""
        width, height = self._body_box(card)
        one = self.fit(card.body, width=width, height=height, sizes=(BODY_MAX_PT, BODY_MIN_PT))
        if one is not None:
            return [one]
        if card.sealed:
            size, lines = self.fit(
                card.body, width=width, height=1e6, sizes=(INSIDE_PT, INSIDE_PT)
            ) or (
                INSIDE_PT,
                [],
            )
            per_page = int((height - line_height(7)) // line_height(size))
            pages = [lines[i : i + per_page] for i in range(0, len(lines), per_page)]
            if len(pages) <= MAX_INSIDE_PAGES:
                return [(size, page) for page in pages]
        room = f"{MAX_INSIDE_PAGES} inside pages" if card.sealed else "the card"
        raise CardError(
            card.delivery_id,
            f"the message does not fit {room} even at {BODY_MIN_PT:g} pt; "
            "it is never cut, so shorten it",
        )

    def _message_side(
        self, card: Card, labels: _Labels, fitted: tuple[float, list[str]], *, first: bool
    ) -> None:
        """A message page (a sealed mailer's inside): the notice, the payment code beside it."""
        pdf = self.pdf
        pdf.add_page()
        width = CARD_W - 2 * MARGIN
        sender_pt, sender_lines = self.sender
        heading = "".join(sender_lines) + ("" if first else f" {labels.page}")
        self.line(MARGIN, MARGIN - 2, width, heading, sender_pt)
        account = f"{labels.account} {card.account_ref}"
        self.line(MARGIN, MARGIN - 1.5, width, account, 8, align="R")
        pdf.set_line_width(0.3)
        pdf.line(MARGIN, MARGIN + 3.5, CARD_W - MARGIN, MARGIN + 3.5)
        top, bottom = MARGIN + 6, CARD_H - MARGIN - 4
        body_w, _ = self._body_box(card)
        self.block(MARGIN, top, body_w, fitted)
        if card.payment is not None and first:
            x = CARD_W - MARGIN - QR_SIZE
            self._qr(card.payment.payload(), x=x, y=top, size=QR_SIZE)
            self.line(x - 2, top + QR_SIZE + 0.5, QR_SIZE + 4, labels.pay_code, 6.5, align="C")
        pdf.set_line_width(0.2)
        pdf.line(MARGIN, bottom + 0.5, CARD_W - MARGIN, bottom + 0.5)
        footer = _GAP.join(
            [
                f"{labels.phone} {self.phone}",
                self.website,
                f"{labels.ref} {_reference(card.delivery_id)}",
            ]
        )
        self.line(MARGIN, bottom + 1, width, footer, 7)

    def _qr(self, payload: str, *, x: float, y: float, size: float) -> None:
        """A QR code of ``payload`` in a ``size`` mm square, its quiet zone included."""
        code = segno.make(payload, error="m", micro=False)
        matrix = [list(row) for row in code.matrix]
        border = 4  # modules of quiet zone, as the standard asks
        module = size / (len(matrix) + 2 * border)
        self.pdf.set_fill_color(0)
        for r, row in enumerate(matrix):
            c = 0
            while c < len(row):  # one rectangle per run of dark modules
                if not row[c]:
                    c += 1
                    continue
                start = c
                while c < len(row) and row[c]:
                    c += 1
                self.pdf.rect(
                    x + (border + start) * module,
                    y + (border + r) * module,
                    (c - start) * module,
                    module,
                    style="F",
                )

    def _code128(self, digits: str, *, x: float, y: float, module: float, height: float) -> None:
        """A Code 128 barcode (code set C) of an even number of digits."""
        values = [_CODE128_START_C] + [int(digits[i : i + 2]) for i in range(0, len(digits), 2)]
        checksum = (values[0] + sum(i * v for i, v in enumerate(values[1:], start=1))) % 103
        widths = "".join(_CODE128[v] for v in [*values, checksum]) + _CODE128_STOP
        self.pdf.set_fill_color(0)
        for i, modules in enumerate(widths):
            if i % 2 == 0:  # bar, space, bar, ...: only bars are drawn
                self.pdf.rect(x, y, int(modules) * module, height, style="F")
            x += int(modules) * module

    def output(self, path: Path) -> None:
        self.pdf.output(str(path))


# Module widths (bar, space, bar, ...) of the Code 128 symbols 0-105, and of the stop symbol.
_CODE128_WIDTHS = """
212222 222122 222221 121223 121322 131222 122213 122312 132212 221213 221312 231212 112232
122132 122231 113222 123122 123221 223211 221132 221231 213212 223112 312131 311222 321122
321221 312212 322112 322211 212123 212321 232121 111323 131123 131321 112313 132113 132311
211313 231113 231311 112133 112331 132131 113123 113321 133121 313121 211331 231131 213113
213311 213131 311123 311321 331121 312113 312311 332111 314111 221411 431111 111224 111422
121124 121421 141122 141221 112214 112412 122114 122411 142112 142211 241211 221114 413111
241112 134111 111242 121142 121241 114212 124112 124211 411212 421112 421211 212141 214121
412121 111143 111341 131141 114113 114311 411113 411311 113141 114131 311141 411131 211412
211214 211232
"""
_CODE128 = _CODE128_WIDTHS.split()
_CODE128_STOP = "2331112"
_CODE128_START_C = 105


# --- the batch ------------------------------------------------------------------------------


def write_batch(
    cards: Sequence[Card],
    *,
    out_dir: Path,
    batch_id: str,
    sender: str,
    return_address: str,
    service_phone: str,
    website: str = "",
    logo: Path | None = None,
) -> PrintBatch:
    """Write ``<batch_id>.pdf`` (A6 pages, two or more a card) and ``<batch_id>.manifest.csv``.

    The sender, its return address (postal code first), service line, website
    and logo are the utility's identity (``Settings.identity``), the same on
    every card.

    The manifest appears last, so a batch is complete once its manifest
    exists; files are written under temporary names and linked into place,
    never over existing ones (:class:`FileExistsError`: a batch is never
    produced twice). A card that cannot print as it is raises
    :class:`CardError` (a ``ValueError``) naming its delivery.
    """
    if not _BATCH_ID.match(batch_id):
        raise ValueError(f"batch id {batch_id!r} is not a safe file name")
    if not cards:
        raise ValueError(f"batch {batch_id} has no cards")
    out_dir.mkdir(parents=True, exist_ok=True)
    pdf_path = out_dir / f"{batch_id}.pdf"
    manifest_path = out_dir / f"{batch_id}.manifest.csv"
    for path in (pdf_path, manifest_path):
        if path.exists():
            raise FileExistsError(f"batch {batch_id} was already written: {path}")

    sender, return_address = plain_text(sender).strip(), plain_text(return_address).strip()
    website = plain_text(website).strip()
    if not sender or not return_address:
        raise ValueError("a postcard needs its sender and return address (Settings.identity)")
    cards = [_as_printed(card) for card in cards]
    font_path = find_cjk_font()
    font = open_font(font_path)
    fixed = " ".join(
        [sender, return_address, service_phone, website, _POSTAGE, _GAP, batch_id, *_LABEL_TEXT]
    )
    missing = missing_glyphs(font, fixed)
    if missing:
        raise ValueError(f"the font {font_path.name} has no glyph for {missing} (sender, labels)")
    for card in cards:
        _check_card(card, font, font_path)
    used = fixed + "0123456789/" + "".join(_card_text(card) for card in cards)

    staged: list[Path] = []
    try:
        with subset_font_file(font, used) as font_file:
            printer = _Printer(
                font_file,
                batch_id=batch_id,
                total=len(cards),
                sender=sender,
                return_address=return_address,
                phone=service_phone,
                website=website,
                logo=logo,
            )
            pages = [printer.add(card, sequence) for sequence, card in enumerate(cards, start=1)]
            # Staged under hidden names in out_dir, so that publishing is a link, not a copy.
            staged.append(_staging_name(out_dir, batch_id, ".pdf"))
            printer.output(staged[-1])
        staged.append(_staging_name(out_dir, batch_id, ".csv"))
        _write_manifest(staged[-1], batch_id, cards, pages)
        for path in staged:
            _fsync(path)
        _publish(staged[0], pdf_path)
        try:
            _publish(staged[1], manifest_path)
        except BaseException:
            pdf_path.unlink(missing_ok=True)  # ours: linked a moment ago
            raise
    finally:
        for path in staged:
            path.unlink(missing_ok=True)
    return PrintBatch(
        batch_id=batch_id,
        pdf_path=pdf_path,
        manifest_path=manifest_path,
        cards=len(cards),
        pages=sum(pages),
    )


def _as_printed(card: Card) -> Card:
    """The card with its text as it will be printed (and listed in the manifest)."""
    return replace(
        card,
        recipient_name=plain_text(card.recipient_name).strip() if card.recipient_name else None,
        address=plain_text(card.address).strip(),
        body=clean_text(card.body),
        account_ref=plain_text(card.account_ref).strip(),
    )


def _card_text(card: Card) -> str:
    return f"{card.recipient_name or ''}{card.address}{card.body}{card.account_ref}"


def _check_card(card: Card, font: TTFont, font_path: Path) -> None:
    """Refuse a card that could not print: no address, no message, a glyph the font lacks."""
    if not card.address:
        raise CardError(card.delivery_id, "no postal address")
    if not card.body:
        raise CardError(card.delivery_id, "the message is empty")
    missing = missing_glyphs(font, _card_text(card))
    if missing:
        raise CardError(card.delivery_id, f"the font {font_path.name} has no glyph for {missing}")


def _write_manifest(path: Path, batch_id: str, cards: Sequence[Card], pages: list[int]) -> None:
    # UTF-8 with a BOM: Excel then opens the Chinese names and addresses correctly.
    with path.open("w", encoding="utf-8-sig", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(
            [
                "batch_id",
                "sequence",
                "delivery_id",
                "recipient_name",
                "address",
                "language",
                "pages",
                "layout",
                "deliveries",
            ]
        )
        for sequence, (card, count) in enumerate(zip(cards, pages, strict=True), start=1):
            writer.writerow(
                [
                    batch_id,
                    sequence,
                    card.delivery_id,
                    _cell(card.recipient_name or ""),
                    _cell(card.address),
                    card.language,
                    count,
                    "sealed" if card.sealed else "open",
                    " ".join(str(i) for i in card.stands_for),
                ]
            )


def _cell(value: str) -> str:
    """A text cell that a spreadsheet will not run as a formula."""
    return f"'{value}" if value.startswith(_CSV_FORMULA) else value


def _staging_name(out_dir: Path, batch_id: str, suffix: str) -> Path:
    """A new hidden file in ``out_dir``, created with the usual permissions (umask)."""
    path = out_dir / f".{batch_id}.{secrets.token_hex(4)}{suffix}.partial"
    path.open("x").close()
    return path


def _fsync(path: Path) -> None:
    with path.open("rb+") as written:
        os.fsync(written.fileno())


def _publish(staged: Path, final: Path) -> None:
    """Give ``staged`` its final name; fail rather than replace an existing file."""
    os.link(staged, final)  # unlike rename, a link never overwrites
