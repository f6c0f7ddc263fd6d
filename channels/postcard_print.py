"""Postcards: the print batch (one PDF of A6 cards and a CSV manifest), and the queue channel.

Postcards are not sent one by one. :class:`PrintQueue`, the ``postcard``
channel's ``print`` provider, only checks that a message has a postal address
and leaves it waiting; the service's batch job claims the waiting postcards at
the day's cut-off and calls :func:`write_batch`, which writes
``<batch_id>.pdf`` and ``<batch_id>.manifest.csv`` for the printer.

Each card is two A6 landscape pages (148 x 105 mm): the address side, then
the message side. Nothing is cut silently: a card whose text cannot fit, or
that uses a character the font lacks (a printed box instead of a name), fails
the batch with a :class:`CardError` naming the delivery.

The font is a Traditional Chinese one, embedded in the PDF so that it prints
the same on any machine (see :func:`find_cjk_font`). It is cut down to the
characters of the batch and, when it has PostScript (CFF) outlines, converted
to TrueType outlines first: fpdf2 then embeds it the most common way
(CIDFontType2, Identity-H), which every viewer, printer and text extractor
reads.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import os
import re
import secrets
import tempfile
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

from fontTools import subset as ft_subset
from fontTools.pens.cu2quPen import Cu2QuPen
from fontTools.pens.ttGlyphPen import TTGlyphPen
from fontTools.ttLib import TTCollection, TTFont, newTable
from fontTools.varLib import instancer
from fpdf import FPDF

from channels.base import Channel, Message, PermanentChannelError, SendResult
from channels.registry import register

__all__ = [
    "Card",
    "CardError",
    "PrintBatch",
    "PrintQueue",
    "find_cjk_font",
    "write_batch",
]

FONT_ENV = "NOTIFIER_CJK_FONT"
# Noto Sans TC (OFL-1.1), shipped as data by a PyPI package that is a project dependency.
_FONT_PACKAGE = ("pylopdf_fonts_zh_tw", "NotoSansTC-Regular.otf")
_DEBIAN_FONTS = (
    Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"),  # fonts-noto-cjk
    Path("/usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc"),  # fonts-noto-cjk
    Path("/usr/share/fonts/truetype/arphic/uming.ttc"),  # fonts-arphic-uming
    Path("/usr/share/fonts/truetype/arphic/ukai.ttc"),  # fonts-arphic-ukai
)

CARD_W, CARD_H = 148.0, 105.0  # mm, A6 landscape
MARGIN = 8.0
PAGES_PER_CARD = 2
_MM_PER_PT = 25.4 / 72
_LEADING = 1.4  # line height / font size
BODY_MAX_PT, BODY_MIN_PT = 11.0, 7.0
_BATCH_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_POSTCODE = re.compile(r"^\s*(?P<code>\d{3}(?:\d{2,3})?)(?!\d)\s*(?P<rest>.*)$", re.S)
# Line-breaking rules for CJK (kinsoku): these never start a line, those never end one.
_NO_LINE_START = set("，。、；：？！）」』》〉】〕｝％…‥・ー～,.;:?!)]}%")
_NO_LINE_END = set("（「『《〈【〔｛([{")
_CSV_FORMULA = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Card:
    """One postcard to print: who it goes to and the rendered notice."""

    delivery_id: int
    recipient_name: str | None
    address: str
    body: str
    language: str
    account_ref: str
    """The account number, masked."""


@dataclass(frozen=True)
class PrintBatch:
    """A written batch: the PDF for the printer and its manifest."""

    batch_id: str
    pdf_path: Path
    manifest_path: Path
    cards: int
    pages: int


class CardError(ValueError):
    """One card of a batch cannot be printed as it is; ``delivery_id`` says which."""

    def __init__(self, delivery_id: int, reason: str) -> None:
        super().__init__(f"delivery {delivery_id}: {reason}")
        self.delivery_id = delivery_id
        self.reason = reason


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


# --- fonts ----------------------------------------------------------------------------------


def find_cjk_font() -> Path:
    """The Traditional Chinese font file to embed: $NOTIFIER_CJK_FONT, the PyPI font, Debian's."""
    configured = os.environ.get(FONT_ENV)
    if configured:
        path = Path(configured)
        if not path.is_file():
            raise FileNotFoundError(f"{FONT_ENV}={configured} is not a font file")
        return path
    package, filename = _FONT_PACKAGE
    spec = importlib.util.find_spec(package)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        if (Path(folder) / filename).is_file():
            return Path(folder) / filename
    for path in _DEBIAN_FONTS:
        if path.is_file():
            return path
    raise FileNotFoundError(
        "no Traditional Chinese font for the postcards: install the project's dependency "
        "pylopdf-fonts-zh-tw (pip), or Debian's fonts-noto-cjk or fonts-arphic-uming (apt), "
        f"or set {FONT_ENV} to a .ttf/.otf/.ttc file"
    )


def _open_font(path: Path) -> TTFont:
    """Open a font file; from a collection (.ttc/.otc), its Traditional Chinese face."""
    with path.open("rb") as head:
        is_collection = head.read(4) == b"ttcf"
    if not is_collection:
        return TTFont(path)
    collection = TTCollection(path, lazy=True)
    names = [face["name"].getDebugName(1) or "" for face in collection.fonts]
    collection.close()
    # Noto CJK names its faces "... CJK TC"; Arphic's are "AR PL UMing TW".
    index = next((i for i, n in enumerate(names) if re.search(r"\b(TC|TW)\b", n)), 0)
    return TTFont(path, fontNumber=index)


def _inked(text: str) -> set[str]:
    """The characters of ``text`` that need a glyph (spaces too: a missing one prints a box)."""
    return {ch for ch in text if unicodedata.category(ch)[0] != "C"}


def _embeddable(font: TTFont, text: str) -> bytes:
    """``font`` cut down to the characters of ``text``, as a static TrueType font file."""
    options = ft_subset.Options()
    options.layout_features = []  # fpdf2 places glyphs one by one; no shaping needed
    options.name_IDs = ["*"]
    options.notdef_outline = True
    options.hinting = False
    options.drop_tables += ["VORG", "vhea", "vmtx", "DSIG", "BDF ", "FFTM", "PfEd"]
    subsetter = ft_subset.Subsetter(options)
    subsetter.populate(text="".join(sorted(_inked(text) | {" "})))
    subsetter.subset(font)
    if "fvar" in font:  # a variable font: print its regular weight
        limits = {
            axis.axisTag: (
                min(max(400.0, axis.minValue), axis.maxValue)
                if axis.axisTag == "wght"
                else axis.defaultValue
            )
            for axis in font["fvar"].axes
        }
        font = instancer.instantiateVariableFont(font, limits)
    if "CFF " in font or "CFF2" in font:
        _cff_to_truetype(font)
    out = io.BytesIO()
    font.save(out)
    return out.getvalue()


def _cff_to_truetype(font: TTFont) -> None:
    """Replace PostScript (cubic) outlines by TrueType (quadratic) ones, in place."""
    glyph_order = font.getGlyphOrder()
    glyph_set = font.getGlyphSet()
    glyphs = {}
    for name in glyph_order:
        pen = TTGlyphPen(glyph_set)
        # CFF contours run counter-clockwise, TrueType ones clockwise.
        glyph_set[name].draw(Cu2QuPen(pen, max_err=1.0, reverse_direction=True))
        glyphs[name] = pen.glyph()
    glyf = newTable("glyf")
    glyf.glyphOrder = glyph_order
    glyf.glyphs = glyphs
    font["glyf"] = glyf
    font["loca"] = newTable("loca")
    for table in ("CFF ", "CFF2", "VORG"):
        if table in font:
            del font[table]
    glyf.compile(font)
    hmtx = font["hmtx"]
    for name, glyph in glyf.glyphs.items():
        if hasattr(glyph, "xMin"):
            hmtx[name] = (hmtx[name][0], glyph.xMin)
    maxp = newTable("maxp")
    maxp.tableVersion = 0x00010000
    maxp.numGlyphs = len(glyph_order)
    maxp.maxZones = 1
    for field in (
        "maxTwilightPoints",
        "maxStorage",
        "maxFunctionDefs",
        "maxInstructionDefs",
        "maxStackElements",
        "maxSizeOfInstructions",
        "maxComponentElements",
    ):
        setattr(maxp, field, 0)
    font["maxp"] = maxp
    font["post"].formatType = 3.0  # no glyph names: CID names mean nothing to a viewer
    font.sfntVersion = "\x00\x01\x00\x00"


# --- text layout ----------------------------------------------------------------------------


_Measure = Callable[[str], float]
"""Width in mm of a text at 1 pt."""


def _is_wide(ch: str) -> bool:
    return unicodedata.east_asian_width(ch) in "WF"


def _tokens(text: str) -> list[str]:
    """Break opportunities: each CJK character, each space, each run of Latin text."""
    tokens: list[str] = []
    word = ""
    for ch in text:
        if ch.isspace() or _is_wide(ch):
            if word:
                tokens.append(word)
                word = ""
            tokens.append(ch)
        else:
            word += ch
    if word:
        tokens.append(word)
    return tokens


def _wrap_paragraph(text: str, width: float, measure: _Measure) -> list[str]:
    """Lines of ``text`` no wider than ``width``: CJK by character, Latin by word."""
    lines: list[list[str]] = [[]]
    used = 0.0
    pending = _tokens(text)
    pending.reverse()
    while pending:
        token = pending.pop()
        size = measure(token)
        line = lines[-1]
        if token.isspace():
            if used + size > width:
                lines.append([])  # the space becomes the break
                used = 0.0
            elif line or len(lines) == 1:  # keep indentation, not spaces after a break
                line.append(token)
                used += size
            continue
        if used + size <= width:
            line.append(token)
            used += size
            continue
        if size > width and len(token) > 1:  # a word longer than a line: split it anywhere
            pending.extend(reversed(token))
            continue
        carried: list[str] = []
        if token in _NO_LINE_START and len(line) > 1:
            carried.append(line.pop())
        while len(line) > 1 and line[-1] in _NO_LINE_END:
            carried.insert(0, line.pop())
        lines.append([*carried, token])
        used = sum(measure(t) for t in lines[-1])
    return ["".join(line).rstrip() for line in lines]


def _wrap(text: str, width: float, measure: _Measure) -> list[str]:
    lines: list[str] = []
    for paragraph in text.split("\n"):
        lines.extend(_wrap_paragraph(paragraph, width, measure) if paragraph.strip() else [""])
    return lines


def _fit(
    text: str, *, width: float, height: float, largest: float, smallest: float, measure: _Measure
) -> tuple[float, list[str]] | None:
    """The largest font size (pt) at which ``text`` wraps into the box, with its lines."""
    if not text.strip():
        return largest, []
    size = largest
    while size >= smallest - 1e-9:
        lines = _wrap(text, width / size, measure)
        if len(lines) * size * _MM_PER_PT * _LEADING <= height + 1e-6:
            return size, lines
        size -= 0.5
    return None


def _plain(text: str) -> str:
    """Text as printed: lines split on newlines alone, tabs as spaces, no control characters."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", "    ")
    return "".join(ch for ch in text if ch == "\n" or unicodedata.category(ch)[0] != "C")


def _clean(text: str) -> str:
    """A message as printed: plain, no runs of blank lines, no blank lines around it."""
    lines = [line.rstrip() for line in _plain(text).split("\n")]
    kept: list[str] = []
    for line in lines:
        if line.strip() or (kept and kept[-1]):
            kept.append(line if line.strip() else "")
    while kept and not kept[-1]:
        kept.pop()
    return "\n".join(kept)


# --- the cards ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Labels:
    account: str
    ref: str
    phone: str
    no_name: str
    honorific: str


_POSTAGE = "國內郵資已付"  # printed under the sender's bulk-mail permit
_GAP = "\u3000"  # ideographic space
_ZH = _Labels(account="電號", ref="參考編號", phone="客服專線", no_name="用電戶", honorific="台啟")
_EN = _Labels(
    account="Account", ref="Ref.", phone="Service line", no_name="The Account Holder", honorific=""
)


_LABEL_TEXT = [text for labels in (_ZH, _EN) for text in vars(labels).values()]


def _labels(language: str) -> _Labels:
    return _ZH if language.lower().startswith("zh") else _EN


def _reference(delivery_id: int) -> str:
    return f"{delivery_id:010d}"


class _Printer:
    """Draws the cards of one batch into one fpdf2 document, in the batch's font."""

    FONT = "cjk"

    def __init__(
        self,
        font_file: Path,
        *,
        batch_id: str,
        total: int,
        sender: str,
        return_address: str,
        phone: str,
    ) -> None:
        self.batch_id = batch_id
        self.total = total
        self.phone = phone
        self.pdf = FPDF(orientation="L", unit="mm", format=(CARD_H, CARD_W))
        self.pdf.set_auto_page_break(False)
        self.pdf.set_margins(0, 0, 0)
        self.pdf.set_creator("notifier")
        self.pdf.set_title(f"Postcard batch {batch_id}")
        self.pdf.set_lang("zh-TW")
        self.pdf.add_font(self.FONT, "", str(font_file))
        self.pdf.set_font(self.FONT, size=1)
        self._widths: dict[str, float] = {}
        # The same on every card: fitted once, and a misfit fails the batch, not a card.
        self.sender = self._fit(None, "sender", sender, width=80, height=5, sizes=(9, 7))
        self.return_address = self._fit(
            None, "return address", return_address, width=80, height=6.5, sizes=(7.5, 6)
        )

    def measure(self, text: str) -> float:
        """Width in mm of ``text`` at 1 pt (fpdf2 does no kerning, so it scales linearly)."""
        width = 0.0
        for ch in text:
            if ch not in self._widths:
                self.pdf.set_font_size(1)
                self._widths[ch] = self.pdf.get_string_width(ch)
            width += self._widths[ch]
        return width

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
        fitted = _fit(
            text,
            width=width,
            height=height,
            largest=sizes[0],
            smallest=sizes[1],
            measure=self.measure,
        )
        if fitted is not None:
            return fitted
        reason = f"the {what} does not fit its place on the card even at {sizes[1]:g} pt"
        if card is None:
            raise ValueError(reason)
        raise CardError(card.delivery_id, f"{reason}; it is never cut, so shorten it")

    def _line(self, x: float, y: float, w: float, text: str, size: float, align: str = "L") -> None:
        """One line of text in a box from ``y`` down, as tall as a line at ``size`` pt."""
        self.pdf.set_font_size(size)
        self.pdf.set_xy(x, y)
        self.pdf.cell(w, size * _MM_PER_PT * _LEADING, text, align=align)

    def _block(self, x: float, y: float, w: float, fitted: tuple[float, list[str]]) -> float:
        """Fitted lines one under the other from ``y``; returns the y below the last."""
        size, lines = fitted
        for text in lines:
            self._line(x, y, w, text, size)
            y += size * _MM_PER_PT * _LEADING
        return y

    def add(self, card: Card, sequence: int) -> None:
        """The card's two pages: address side, then message side."""
        labels = _labels(card.language)
        self._address_side(card, labels, sequence)
        self._message_side(card, labels)

    def _address_side(self, card: Card, labels: _Labels, sequence: int) -> None:
        pdf = self.pdf
        pdf.add_page()
        # Sender, top left; postage paid under the sender's permit, top right.
        y = self._block(MARGIN, MARGIN, 80, self.sender)
        y = self._block(MARGIN, y, 80, self.return_address)
        self._line(MARGIN, y, 80, f"{labels.phone} {self.phone}", 7.5)
        pdf.set_line_width(0.3)
        pdf.rect(CARD_W - MARGIN - 22, MARGIN, 22, 15)
        self._line(CARD_W - MARGIN - 22, MARGIN + 2.5, 22, _POSTAGE[:2], 7.5, align="C")
        self._line(CARD_W - MARGIN - 22, MARGIN + 7, 22, _POSTAGE[2:], 7.5, align="C")
        # The recipient, large, middle right: postcode, address and name.
        left = 42.0
        width = CARD_W - MARGIN - left
        postcode, address = "", card.address
        match = _POSTCODE.match(address)
        # "35159苗栗縣..." has a postcode; "123 Main St." has a house number.
        if match and _is_wide(match["rest"][:1] or " "):
            postcode, address = match["code"], match["rest"].strip()
        name = card.recipient_name or labels.no_name
        if labels.honorific:
            name = f"{name} {labels.honorific}"
        address_fit = self._fit(card, "address", address, width=width, height=26, sizes=(13, 8))
        name_fit = self._fit(card, "recipient name", name, width=width, height=16, sizes=(17, 10))
        postcode_pt = 14.0
        height = 2 + sum(
            size * len(lines) * _MM_PER_PT * _LEADING
            for size, lines in (
                address_fit,
                name_fit,
                (postcode_pt, [postcode] if postcode else []),
            )
        )
        y = max(30.0, 57.0 - height / 2)
        if postcode:
            pdf.set_char_spacing(2)
            y = self._block(left, y, width, (postcode_pt, [postcode]))
            pdf.set_char_spacing(0)
        if labels is _EN:  # name above the address, as English is written
            y = self._block(left, y, width, name_fit) + 2
            self._block(left, y, width, address_fit)
        else:  # the address, then the name, as a Taiwanese envelope is written
            y = self._block(left, y, width, address_fit) + 2
            self._block(left, y, width, name_fit)
        # Reference for sorting, bottom left; batch and sequence, bottom right.
        reference = _reference(card.delivery_id)
        self._code128(reference, x=MARGIN, y=CARD_H - MARGIN - 12, module=0.33, height=8)
        bottom_line = CARD_H - MARGIN - 3.6
        self._line(MARGIN, bottom_line, 60, f"{labels.ref} {reference}", 7)
        where = f"{self.batch_id}  {sequence}/{self.total}"
        self._line(CARD_W / 2, bottom_line, CARD_W / 2 - MARGIN, where, 6.5, align="R")

    def _message_side(self, card: Card, labels: _Labels) -> None:
        pdf = self.pdf
        pdf.add_page()
        width = CARD_W - 2 * MARGIN
        sender_pt, sender_lines = self.sender
        self._line(MARGIN, MARGIN - 2, width, "".join(sender_lines), sender_pt)
        account = f"{labels.account} {card.account_ref}"
        self._line(MARGIN, MARGIN - 1.5, width, account, 8, align="R")
        pdf.set_line_width(0.3)
        pdf.line(MARGIN, MARGIN + 3.5, CARD_W - MARGIN, MARGIN + 3.5)
        top, bottom = MARGIN + 6, CARD_H - MARGIN - 4
        body_fit = self._fit(
            card,
            "message",
            card.body,
            width=width,
            height=bottom - top,
            sizes=(BODY_MAX_PT, BODY_MIN_PT),
        )
        self._block(MARGIN, top, width, body_fit)
        pdf.set_line_width(0.2)
        pdf.line(MARGIN, bottom + 0.5, CARD_W - MARGIN, bottom + 0.5)
        footer = f"{labels.phone} {self.phone}{_GAP}{labels.ref} {_reference(card.delivery_id)}"
        self._line(MARGIN, bottom + 1, width, footer, 7)

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
    sender: str = "台灣電力公司 客服中心",
    return_address: str = "",
    service_phone: str = "1911",
) -> PrintBatch:
    """Write ``<batch_id>.pdf`` (two A6 pages a card) and ``<batch_id>.manifest.csv``.

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

    sender, return_address = _plain(sender).strip(), _plain(return_address).strip()
    cards = [_as_printed(card) for card in cards]
    font_path = find_cjk_font()
    font = _open_font(font_path)
    fixed = " ".join(
        [sender, return_address, service_phone, _POSTAGE, _GAP, batch_id, *_LABEL_TEXT]
    )
    missing = _missing_glyphs(font, fixed)
    if missing:
        raise ValueError(f"the font {font_path.name} has no glyph for {missing} (sender, labels)")
    for card in cards:
        _check_card(card, font, font_path)
    used = fixed + "0123456789/" + "".join(_card_text(card) for card in cards)

    staged: list[Path] = []
    try:
        with tempfile.TemporaryDirectory(prefix="postcards-") as work:
            font_file = Path(work) / "font.ttf"
            font_file.write_bytes(_embeddable(font, used))
            printer = _Printer(
                font_file,
                batch_id=batch_id,
                total=len(cards),
                sender=sender,
                return_address=return_address,
                phone=service_phone,
            )
            for sequence, card in enumerate(cards, start=1):
                printer.add(card, sequence)
            # Staged under hidden names in out_dir, so that publishing is a link, not a copy.
            staged.append(_staging_name(out_dir, batch_id, ".pdf"))
            printer.output(staged[-1])
        staged.append(_staging_name(out_dir, batch_id, ".csv"))
        _write_manifest(staged[-1], batch_id, cards)
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
        pages=PAGES_PER_CARD * len(cards),
    )


def _as_printed(card: Card) -> Card:
    """The card with its text as it will be printed (and listed in the manifest)."""
    return replace(
        card,
        recipient_name=_plain(card.recipient_name).strip() if card.recipient_name else None,
        address=_plain(card.address).strip(),
        body=_clean(card.body),
        account_ref=_plain(card.account_ref).strip(),
    )


def _card_text(card: Card) -> str:
    return f"{card.recipient_name or ''}{card.address}{card.body}{card.account_ref}"


def _missing_glyphs(font: TTFont, text: str) -> str | None:
    """The characters of ``text`` that would print as boxes in ``font``, listed; else None."""
    cmap: dict[int, Any] = font.getBestCmap() or {}
    missing = sorted(ch for ch in _inked(text) if ord(ch) not in cmap)
    if not missing:
        return None
    return ", ".join(f"{ch!r} (U+{ord(ch):04X})" for ch in missing[:10])


def _check_card(card: Card, font: TTFont, font_path: Path) -> None:
    """Refuse a card that could not print: no address, no message, a glyph the font lacks."""
    if not card.address:
        raise CardError(card.delivery_id, "no postal address")
    if not card.body:
        raise CardError(card.delivery_id, "the message is empty")
    missing = _missing_glyphs(font, _card_text(card))
    if missing:
        raise CardError(card.delivery_id, f"the font {font_path.name} has no glyph for {missing}")


def _write_manifest(path: Path, batch_id: str, cards: Sequence[Card]) -> None:
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
            ]
        )
        for sequence, card in enumerate(cards, start=1):
            writer.writerow(
                [
                    batch_id,
                    sequence,
                    card.delivery_id,
                    _cell(card.recipient_name or ""),
                    _cell(card.address),
                    card.language,
                    PAGES_PER_CARD,
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
