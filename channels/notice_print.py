"""Visit notices: one PDF of A4 pages, a notice a page, for a field agent's day.

A field agent who visits a customer in arrears leaves a printed notice. The
service renders each notice's text from its template; :func:`write_notices`
lays the texts out, one A4 portrait page each, into one PDF to print before
the round, and returns its bytes (storing or sending them is the caller's).

A page has the notice's title as its heading, its text below at the largest
size from 12 down to 9 pt that fits between the margins, and a footer with
the notice's reference and "page i of n" in the notice's language. Nothing is
cut silently: a notice whose text does not fit even at 9 pt, or that uses a
character the font lacks (a printed box instead of a name, or instead of the
check boxes "□" the agent ticks), raises a :class:`NoticeError` naming it.

The font, its embedding and the line breaking are :mod:`channels.print_layout`'s,
shared with the postcards.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from fontTools.ttLib import TTFont

from channels.print_layout import (
    PrintError,
    Typesetter,
    clean_text,
    find_cjk_font,
    line_height,
    missing_glyphs,
    open_font,
    plain_text,
    subset_font_file,
    unprintable,
)

__all__ = ["Notice", "NoticeError", "write_notices"]

PAGE_W, PAGE_H = 210.0, 297.0  # mm, A4 portrait
MARGIN = 20.0
TITLE_PT = (16.0, 12.0)  # largest, smallest
BODY_PT = (12.0, 9.0)
FOOTER_PT = 8.0
TITLE_LINES = 2
_PAGE_OF = {"zh-TW": "第 {page} 頁，共 {pages} 頁", "en": "page {page} of {pages}"}
_LABEL_TEXT = "".join(page_of.format(page="", pages="") for page_of in _PAGE_OF.values())


class NoticeError(PrintError):
    """One notice cannot be printed as it is; ``reference`` says which."""

    def __init__(self, reference: str, reason: str) -> None:
        super().__init__(f"notice {reference}", reason)
        self.reference = reference


@dataclass(frozen=True)
class Notice:
    """One visit notice to print: its heading and rendered text, and which it is."""

    reference: str
    """Printed small in the footer; says which notice this is (e.g. ``"case 42"``)."""
    title: str
    """The page's heading: the template's subject."""
    body: str
    """The rendered text: paragraphs, blank lines between them kept."""
    language: str
    """``"zh-TW"`` or ``"en"``: the language of the footer's labels."""


def write_notices(notices: Sequence[Notice], *, title: str = "Visit notices") -> bytes:
    """One A4 portrait page per notice; returns the PDF bytes.

    ``title`` is the document's title in its metadata. A notice that cannot
    print as it is raises :class:`NoticeError` (a ``ValueError``) naming it.
    """
    if not notices:
        raise ValueError("no notices to print")
    notices = [_as_printed(notice, number) for number, notice in enumerate(notices, start=1)]
    font_path = find_cjk_font()
    font = open_font(font_path)
    labels = _LABEL_TEXT + "0123456789"
    missing = missing_glyphs(font, labels)
    if missing:
        raise ValueError(f"the font {font_path.name} has no glyph for {missing} (page labels)")
    for notice in notices:
        _check(notice, font, font_path)
    used = labels + "".join(_notice_text(notice) for notice in notices)

    with subset_font_file(font, used) as font_file:
        printer = _Printer(
            font_file, title=title, language=_main_language(notices), pages=len(notices)
        )
        for page, notice in enumerate(notices, start=1):
            printer.add(notice, page)
        return bytes(printer.pdf.output())


class _Printer(Typesetter):
    """Draws the notices into one fpdf2 document, a page each."""

    def __init__(self, font_file: Path, *, title: str, language: str, pages: int) -> None:
        super().__init__(font_file, width=PAGE_W, height=PAGE_H, title=title, language=language)
        self.pages = pages

    def _fit(
        self,
        notice: Notice,
        what: str,
        text: str,
        box: tuple[float, float],
        sizes: tuple[float, float],
    ) -> tuple[float, list[str]]:
        """The largest size in ``sizes`` at which ``text`` fits ``box`` (width, height), or an error."""
        width, height = box
        fitted = self.fit(text, width=width, height=height, sizes=sizes)
        if fitted is None:
            raise NoticeError(
                notice.reference,
                f"the {what} does not fit the page even at {sizes[1]:g} pt; "
                "it is never cut, so shorten it",
            )
        return fitted

    def add(self, notice: Notice, page: int) -> None:
        """The notice's page: heading, text, and the footer."""
        pdf = self.pdf
        pdf.add_page()
        width = PAGE_W - 2 * MARGIN
        title_box = (width, TITLE_LINES * line_height(TITLE_PT[0]))
        heading = self._fit(notice, "title", notice.title, title_box, TITLE_PT)
        y = self.block(MARGIN, MARGIN, width, heading, align="C", bold=True) + 2
        pdf.set_line_width(0.4)
        pdf.line(MARGIN, y, PAGE_W - MARGIN, y)
        top = y + 5
        footer = PAGE_H - MARGIN - line_height(FOOTER_PT)
        bottom = footer - 2
        body = self._fit(notice, "text", notice.body, (width, bottom - 3 - top), BODY_PT)
        self.block(MARGIN, top, width, body)
        pdf.set_line_width(0.2)
        pdf.line(MARGIN, bottom, PAGE_W - MARGIN, bottom)
        # The reference on the left, in what room the page label on the right leaves it.
        page_of = _PAGE_OF[notice.language].format(page=page, pages=self.pages)
        room = width - self.measure(page_of) * FOOTER_PT - 5
        reference_box = (room, line_height(FOOTER_PT))
        reference = self._fit(
            notice, "reference", notice.reference, reference_box, (FOOTER_PT, FOOTER_PT)
        )
        self.block(MARGIN, footer, room, reference)
        self.line(MARGIN, footer, width, page_of, FOOTER_PT, align="R")


def _as_printed(notice: Notice, number: int) -> Notice:
    """The notice with its text as it will be printed; ``number`` names one without a reference."""
    reference = " ".join(plain_text(notice.reference).split())
    if not reference:
        raise ValueError(f"notice {number} has no reference to print")
    dropped = unprintable(_notice_text(notice))
    if dropped:
        raise NoticeError(reference, f"{dropped} cannot be printed (private use or unassigned)")
    return replace(
        notice,
        reference=reference,
        title=clean_text(notice.title),
        body=clean_text(notice.body),
    )


def _notice_text(notice: Notice) -> str:
    return f"{notice.reference}{notice.title}{notice.body}"


def _check(notice: Notice, font: TTFont, font_path: Path) -> None:
    """Refuse a notice that could not print: no footer labels, no text, a glyph the font lacks."""
    if notice.language not in _PAGE_OF:
        known = ", ".join(_PAGE_OF)
        raise NoticeError(notice.reference, f"language {notice.language!r} is not one of {known}")
    for what, text in (("title", notice.title), ("text", notice.body)):
        if not text:
            raise NoticeError(notice.reference, f"the {what} is empty")
    missing = missing_glyphs(font, _notice_text(notice))
    if missing:
        raise NoticeError(notice.reference, f"the font {font_path.name} has no glyph for {missing}")


def _main_language(notices: Sequence[Notice]) -> str:
    """The document's language in its metadata: that of most notices (the first, on a tie)."""
    return Counter(notice.language for notice in notices).most_common(1)[0][0]
