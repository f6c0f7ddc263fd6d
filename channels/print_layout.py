"""What every printed document shares: an embedded Chinese font, and text laid out in it.

Postcards (:mod:`channels.postcard_print`) and visit notices
(:mod:`channels.notice_print`) are PDFs that leave the building: a printer
or a field agent's laptop prints them, not a machine we set up. So the font
is not left to the viewer; it is embedded, and a notice prints the same
everywhere:

- :func:`find_cjk_font` finds a Traditional Chinese font file;
  :func:`open_font` opens it (its Traditional Chinese face, from a
  collection), and :func:`missing_glyphs` lists the characters of a text it
  would print as boxes, so that a document can refuse them instead.
- :func:`subset_font_file` cuts it down to the characters of the document
  and, when it has PostScript (CFF) outlines, converts them to TrueType
  ones: fpdf2 then embeds it the most common way (CIDFontType2, Identity-H),
  which every viewer, printer and text extractor reads.

fpdf2 places glyphs one by one and does not break lines, and Chinese text is
not broken at spaces: :func:`wrap_paragraph` breaks CJK text between any two
characters and Latin text between words, keeping the kinsoku rules (a comma
never starts a line, an opening bracket never ends one), and
:func:`fit_text` finds the largest font size at which a text fits its box.
:class:`Typesetter` holds one fpdf2 document in that font and draws the
fitted lines, in millimetres.

Nothing is cut or boxed silently: a document refuses an item (a card, a
notice) whose text does not fit its place, or uses a character the font
lacks, with a subclass of :class:`PrintError` that names the item.
"""

from __future__ import annotations

import importlib.util
import io
import os
import re
import tempfile
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from fontTools import subset as ft_subset
from fontTools.pens.cu2quPen import Cu2QuPen
from fontTools.pens.ttGlyphPen import TTGlyphPen
from fontTools.ttLib import TTCollection, TTFont, newTable
from fontTools.varLib import instancer
from fpdf import FPDF

__all__ = [
    "FONT_ENV",
    "Measure",
    "PrintError",
    "Typesetter",
    "clean_text",
    "find_cjk_font",
    "fit_text",
    "is_wide",
    "line_height",
    "missing_glyphs",
    "open_font",
    "plain_text",
    "subset_font_file",
    "unprintable",
    "wrap_paragraph",
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

_MM_PER_PT = 25.4 / 72
_LEADING = 1.4  # line height / font size
# Line-breaking rules for CJK (kinsoku): these never start a line, those never end one.
_NO_LINE_START = set("，。、；：？！）」』》〉】〕｝％…‥・ー～,.;:?!)]}%")
_NO_LINE_END = set("（「『《〈【〔｛([{")


class PrintError(ValueError):
    """One item of a document (a card, a notice) cannot be printed as it is; ``item`` says which."""

    def __init__(self, item: str, reason: str) -> None:
        super().__init__(f"{item}: {reason}")
        self.reason = reason


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
        "no Traditional Chinese font to print with: install the project's dependency "
        "pylopdf-fonts-zh-tw (pip), or Debian's fonts-noto-cjk or fonts-arphic-uming (apt), "
        f"or set {FONT_ENV} to a .ttf/.otf/.ttc file"
    )


def open_font(path: Path) -> TTFont:
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


def missing_glyphs(font: TTFont, text: str) -> str | None:
    """The characters of ``text`` that would print as boxes in ``font``, listed; else None."""
    cmap: dict[int, Any] = font.getBestCmap() or {}
    return _listed({ch for ch in _inked(text) if ord(ch) not in cmap})


def unprintable(text: str) -> str | None:
    """The characters of ``text`` that :func:`plain_text` drops though a reader would miss them.

    Private-use characters (a legacy system's rare name characters, say) and
    unassigned ones are listed; control and invisible format characters are not.
    """
    return _listed({ch for ch in text if unicodedata.category(ch) in ("Co", "Cn", "Cs")})


def _listed(chars: set[str]) -> str | None:
    if not chars:
        return None
    return ", ".join(f"{ch!r} (U+{ord(ch):04X})" for ch in sorted(chars)[:10])


@contextmanager
def subset_font_file(font: TTFont, text: str) -> Iterator[Path]:
    """``font`` cut down to the characters of ``text``, as a TrueType file while in use.

    fpdf2 reads a font from a file, and lazily: keep the file until the PDF is output.
    """
    with tempfile.TemporaryDirectory(prefix="print-font-") as work:
        path = Path(work) / "font.ttf"
        path.write_bytes(_embeddable(font, text))
        yield path


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


Measure = Callable[[str], float]
"""Width in mm of a text at 1 pt."""


def line_height(size: float) -> float:
    """The height in mm of a line of text at ``size`` pt."""
    return size * _MM_PER_PT * _LEADING


def is_wide(ch: str) -> bool:
    """Whether ``ch`` is a full-width (CJK) character."""
    return unicodedata.east_asian_width(ch) in "WF"


def _tokens(text: str) -> list[str]:
    """Break opportunities: each CJK character, each space, each run of Latin text."""
    tokens: list[str] = []
    word = ""
    for ch in text:
        if ch.isspace() or is_wide(ch):
            if word:
                tokens.append(word)
                word = ""
            tokens.append(ch)
        else:
            word += ch
    if word:
        tokens.append(word)
    return tokens


def wrap_paragraph(text: str, width: float, measure: Measure) -> list[str]:
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


def _wrap(text: str, width: float, measure: Measure) -> list[str]:
    lines: list[str] = []
    for paragraph in text.split("\n"):
        lines.extend(wrap_paragraph(paragraph, width, measure) if paragraph.strip() else [""])
    return lines


def fit_text(
    text: str, *, width: float, height: float, largest: float, smallest: float, measure: Measure
) -> tuple[float, list[str]] | None:
    """The largest font size (pt) at which ``text`` wraps into the box, with its lines."""
    if not text.strip():
        return largest, []
    size = largest
    while size >= smallest - 1e-9:
        lines = _wrap(text, width / size, measure)
        if len(lines) * line_height(size) <= height + 1e-6:
            return size, lines
        size -= 0.5
    return None


def plain_text(text: str) -> str:
    """Text as printed: lines split on newlines alone, tabs as spaces, no control characters."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", "    ")
    return "".join(ch for ch in text if ch == "\n" or unicodedata.category(ch)[0] != "C")


def clean_text(text: str) -> str:
    """A message as printed: plain, no runs of blank lines, no blank lines around it."""
    lines = [line.rstrip() for line in plain_text(text).split("\n")]
    kept: list[str] = []
    for line in lines:
        if line.strip() or (kept and kept[-1]):
            kept.append(line if line.strip() else "")
    while kept and not kept[-1]:
        kept.pop()
    return "\n".join(kept)


# --- the document ---------------------------------------------------------------------------


class Typesetter:
    """One fpdf2 document in one embedded font, its pages ``width`` x ``height`` mm.

    Positions and widths are in mm, font sizes in pt; nothing breaks pages or
    lines by itself: text is fitted (:meth:`fit`) and then drawn line by line.
    """

    FONT = "cjk"

    def __init__(
        self, font_file: Path, *, width: float, height: float, title: str, language: str
    ) -> None:
        self.pdf = FPDF(
            orientation="L" if width > height else "P",
            unit="mm",
            format=(min(width, height), max(width, height)),
        )
        self.pdf.set_auto_page_break(False)
        self.pdf.set_margins(0, 0, 0)
        self.pdf.set_creator("notifier")
        self.pdf.set_title(title)
        self.pdf.set_lang(language)
        self.pdf.add_font(self.FONT, "", str(font_file))
        self.pdf.set_font(self.FONT, size=1)
        self._widths: dict[str, float] = {}

    def measure(self, text: str) -> float:
        """Width in mm of ``text`` at 1 pt (fpdf2 does no kerning, so it scales linearly)."""
        width = 0.0
        for ch in text:
            if ch not in self._widths:
                self.pdf.set_font_size(1)
                self._widths[ch] = self.pdf.get_string_width(ch)
            width += self._widths[ch]
        return width

    def fit(
        self, text: str, *, width: float, height: float, sizes: tuple[float, float]
    ) -> tuple[float, list[str]] | None:
        """The largest size from ``sizes[0]`` down to ``sizes[1]`` pt at which ``text`` fits."""
        return fit_text(
            text,
            width=width,
            height=height,
            largest=sizes[0],
            smallest=sizes[1],
            measure=self.measure,
        )

    def line(
        self,
        x: float,
        y: float,
        w: float,
        text: str,
        size: float,
        align: str = "L",
        *,
        bold: bool = False,
    ) -> None:
        """One line of text in a box from ``y`` down, as tall as a line at ``size`` pt."""
        self.pdf.set_font_size(size)
        self.pdf.set_xy(x, y)
        # The font has one weight: for bold, its outlines are stroked as well as filled.
        stroke = size * _MM_PER_PT / 30
        with (
            self.pdf.local_context(text_mode="FILL_STROKE", line_width=stroke)
            if bold
            else nullcontext()
        ):
            self.pdf.cell(w, line_height(size), text, align=align)

    def block(
        self,
        x: float,
        y: float,
        w: float,
        fitted: tuple[float, list[str]],
        align: str = "L",
        *,
        bold: bool = False,
    ) -> float:
        """Fitted lines one under the other from ``y``; returns the y below the last."""
        size, lines = fitted
        for text in lines:
            self.line(x, y, w, text, size, align, bold=bold)
            y += line_height(size)
        return y
