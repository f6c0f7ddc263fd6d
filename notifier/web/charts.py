"""Charts drawn on the server as inline SVG: no script, no CDN, prints and reads on a phone.

Each function returns SVG markup (escaped, safe to insert with ``|safe``) drawn
for one width in CSS pixels: the ``<svg>`` carries that width and height, and the
stylesheet only lets it shrink (``max-width: 100%``), never stretch. A drawing
scaled to fit a phone shrinks its lettering with it (a 640-wide chart on a
390 px phone drew 5 px text), so a page that must read on a phone draws each
chart twice, for a wide and a narrow screen, and :func:`either` lets the
stylesheet show the one that fits. Every label is placed, and cut if need be,
so that it stays inside the drawing; values are named in ``<title>`` elements
too, so a pointer or a screen reader gives the numbers behind each bar.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from html import escape

__all__ = [
    "FONT_PX",
    "NARROW",
    "PALETTE",
    "either",
    "hbars",
    "latency_bars",
    "stacked_bars",
    "text_width",
]

# Colour-blind-safe (Okabe–Ito), in the order statuses are usually stacked.
PALETTE: dict[str, str] = {
    "delivered": "#009E73",
    "sent": "#56B4E9",
    "sending": "#0072B2",
    "queued": "#999999",
    "deferred": "#E69F00",
    "ambiguous": "#000000",
    "failed": "#D55E00",
    "undelivered": "#CC79A7",
    "unknown": "#F0E442",
    "cancelled": "#444444",
    "suppressed": "#BBBBBB",
}
_FALLBACK = ("#F0E442", "#000000", "#7F7F7F")
FONT_PX = 12.0
"""The charts' lettering (``svg.chart text`` in app.css); every width below assumes it."""
NARROW = 300.0
"""The width of a chart drawn for a phone: a 390 px screen leaves 308 px inside a card."""
_BAR_MAX = 40.0
"""The widest bar: two channels' bars in a 300 px chart should not look like a wall."""
_W, _H, _BOTTOM, _TOP, _RIGHT = 640.0, 200.0, 22.0, 10.0, 8.0
_LEGEND_ROW = 18.0


def _colour(name: str, index: int) -> str:
    return PALETTE.get(name, _FALLBACK[index % len(_FALLBACK)])


def text_width(text: str) -> float:
    """A generous guess of how wide ``text`` is drawn at ``FONT_PX``: CJK takes a full em.

    Generous on purpose: it decides where labels go and where they are cut, and a
    label guessed too narrow would run out of the drawing.
    """
    return sum(FONT_PX if not ch.isascii() else FONT_PX * 0.62 for ch in text)


def _fit(text: str, room: float) -> str:
    """``text``, cut with an ellipsis to fit ``room`` pixels."""
    if text_width(text) <= room:
        return text
    while text and text_width(text + "…") > room:
        text = text[:-1]
    return text + "…"


def _nice_max(value: int) -> int:
    """The smallest 1, 2 or 5 × 10^n at or above ``value`` (an axis that reads easily)."""
    if value <= 0:
        return 1
    step = 1
    while True:
        for m in (1, 2, 5):
            if m * step >= value:
                return m * step
        step *= 10


def _tick(value: float) -> str:
    """An axis value as it reads: ``2``, ``2.5``, ``1,000``."""
    return f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"


def _open(width: float, height: float, title: str, css: str) -> list[str]:
    return [
        f'<svg class="chart{" " + css if css else ""}" width="{width:g}" height="{height:g}" '
        f'viewBox="0 0 {width:g} {height:g}" role="img" aria-label="{escape(title)}" '
        f'xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]


def _legend(words: Sequence[tuple[str, str]], *, left: float, width: float) -> list[list[int]]:
    """The legend's entries (colour, word) in rows that fit ``width``: indexes per row."""
    rows: list[list[int]] = [[]]
    x = left
    for i, (_, word) in enumerate(words):
        wide = 14 + text_width(word) + 10
        if rows[-1] and x + wide > width:
            rows.append([])
            x = left
        rows[-1].append(i)
        x += wide
    return rows


def stacked_bars(
    labels: Sequence[str],
    series: Mapping[str, Sequence[int]],
    *,
    title: str,
    label_every: int = 1,
    names: Mapping[str, str] | None = None,
    width: float = _W,
    css: str = "",
) -> str:
    """Bars per label, stacked by series (e.g. hours × statuses), with a legend below.

    ``series[name][i]`` is the height of ``name`` in bar ``i``; the series are
    stacked in the mapping's order, bottom up. ``names`` gives the words shown
    for series and labels (translations). Every ``label_every``-th bar is
    labelled, and fewer when the labels would touch; the legend wraps onto as
    many rows as ``width`` needs.
    """
    shown = names or {}
    if any(len(values) != len(labels) for values in series.values()):
        raise ValueError("every series needs one value per label")
    totals = [sum(values[i] for values in series.values()) for i in range(len(labels))]
    top = _nice_max(max(totals, default=0))
    left = max(text_width(_tick(top * f)) for f in (0.5, 1)) + 8
    plot_w, plot_h = width - left - _RIGHT, _H - _BOTTOM - _TOP
    slot = plot_w / max(1, len(labels))
    bar_w = min(max(1.0, slot * 0.8), _BAR_MAX)
    words = [(_colour(name, i), shown.get(name, name)) for i, name in enumerate(series)]
    rows = _legend(words, left=4, width=width)
    parts = _open(width, _H + len(rows) * _LEGEND_ROW + 4, title, css)
    for fraction in (0, 0.5, 1):
        y = _TOP + plot_h * (1 - fraction)
        parts.append(
            f'<line x1="{left:g}" x2="{width - _RIGHT:g}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{left - 4:g}" y="{y + 4:.1f}" text-anchor="end" class="axis">'
            f"{_tick(top * fraction)}</text>"
        )
    widest = max((text_width(shown.get(label, label)) for label in labels), default=0.0)
    every = max(label_every, math.ceil((widest + 6) / slot))
    for i, label in enumerate(labels):
        x = left + i * slot + (slot - bar_w) / 2
        y = _TOP + plot_h
        word = shown.get(label, label)
        for index, (name, values) in enumerate(series.items()):
            if not values[i]:
                continue
            h = plot_h * values[i] / top
            y -= h
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                f'fill="{_colour(name, index)}"><title>{escape(word)} · '
                f"{escape(shown.get(name, name))}: {values[i]:,}</title></rect>"
            )
        if i % every == 0:
            # Centred under its bar, but held inside the drawing at both ends.
            half = text_width(word) / 2
            centre = min(max(x + bar_w / 2, half + 1), width - half - 1)
            parts.append(
                f'<text x="{centre:.1f}" y="{_TOP + plot_h + 15:.1f}" '
                f'text-anchor="middle" class="axis">{escape(word)}</text>'
            )
    for row_no, row in enumerate(rows):
        x, y = 4.0, _H + 4 + row_no * _LEGEND_ROW
        for i in row:
            colour, word = words[i]
            parts.append(
                f'<rect x="{x:.1f}" y="{y:g}" width="10" height="10" fill="{colour}"/>'
                f'<text x="{x + 14:.1f}" y="{y + 10:g}" class="legend">{escape(word)}</text>'
            )
            x += 14 + text_width(word) + 10
    parts.append("</svg>")
    return "".join(parts)


def hbars(
    items: Sequence[tuple[str, int]],
    *,
    title: str,
    width: float = _W,
    colour: str = "#D55E00",
    css: str = "",
) -> str:
    """Horizontal bars, one a row, largest first as given (e.g. failure reasons ranked).

    Each label sits on its own line above its bar, so a long reason keeps the
    whole width at any screen size (cut with an ellipsis only past it; the
    ``<title>`` holds it whole) and the bars keep a common scale.
    """
    row_h = 36.0
    height = max(1, len(items)) * row_h + 4
    top = max((n for _, n in items), default=0) or 1
    value_room = text_width(f"{top:,}") + 8
    bar_room = width - value_room - 2
    parts = _open(width, height, title, css)
    for i, (label, n) in enumerate(items):
        y = 2 + i * row_h
        w = max(bar_room * n / top, 1)
        parts.append(
            f'<text x="1" y="{y + 12:.1f}" class="axis"><title>{escape(label)}: {n:,}</title>'
            f"{escape(_fit(label, width - 2))}</text>"
            f'<rect x="1" y="{y + 17:.1f}" width="{w:.1f}" height="12" fill="{colour}"/>'
            f'<text x="{w + 6:.1f}" y="{y + 27:.1f}" class="axis">{n:,}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def latency_bars(
    rows: Sequence[tuple[str, float, float]],
    *,
    title: str,
    caption: Callable[[float, float], str],
    width: float = _W,
    css: str = "",
) -> str:
    """One row per ``(label, p50, p95)`` in seconds: the p95 bar, the p50 part darker.

    The scale is logarithmic from one second: a push is sent in seconds, an SMS
    held by quiet hours in hours and a postcard waits a day for its print batch,
    and on a linear scale the fast channels would not show at all. ``caption``
    words the two values (``p50 3 s · p95 8 s``) for the label line.
    """
    row_h = 36.0
    height = max(1, len(rows)) * row_h + 4
    span = math.log10(max((p95 for _, _, p95 in rows), default=1.0) + 1) or 1.0
    room = width - 2

    def length(seconds: float) -> float:
        return max(room * math.log10(seconds + 1) / span, 2.0)

    parts = _open(width, height, title, css)
    for i, (label, p50, p95) in enumerate(rows):
        y = 2 + i * row_h
        words = f"{label} · {caption(p50, p95)}"
        parts.append(
            f'<text x="1" y="{y + 12:.1f}" class="axis"><title>{escape(words)}</title>'
            f"{escape(_fit(words, width - 2))}</text>"
            f'<rect x="1" y="{y + 17:.1f}" width="{length(p95):.1f}" height="12" fill="#56B4E9"/>'
            f'<rect x="1" y="{y + 17:.1f}" width="{length(p50):.1f}" height="12" fill="#0072B2"/>'
        )
    parts.append("</svg>")
    return "".join(parts)


def either(wide: str, narrow: str) -> str:
    """Both drawings of one chart; the stylesheet shows the narrow one on a phone."""
    return f'<div class="chart-wide">{wide}</div><div class="chart-narrow">{narrow}</div>'
