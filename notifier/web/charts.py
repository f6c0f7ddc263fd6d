"""Charts drawn on the server as inline SVG: no script, no CDN, prints and reads on a phone.

Each function returns SVG markup (escaped, safe to insert with ``|safe``) that
scales to its container's width (``viewBox`` and ``width="100%"``) and names
its values in ``<title>`` elements, so a pointer or a screen reader shows the
numbers behind each bar.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

__all__ = ["PALETTE", "hbars", "stacked_bars"]

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
_W, _H, _LEFT, _BOTTOM, _TOP = 640.0, 240.0, 44.0, 36.0, 10.0


def _colour(name: str, index: int) -> str:
    return PALETTE.get(name, _FALLBACK[index % len(_FALLBACK)])


def _text_width(text: str) -> float:
    """Roughly how wide ``text`` is drawn at 12 px: CJK characters take a full em."""
    return sum(12.0 if not ch.isascii() else 7.0 for ch in text)


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


def stacked_bars(
    labels: Sequence[str],
    series: Mapping[str, Sequence[int]],
    *,
    title: str,
    label_every: int = 1,
    names: Mapping[str, str] | None = None,
    width: float = _W,
) -> str:
    """Bars per label, stacked by series (e.g. hours × statuses), with a legend.

    ``series[name][i]`` is the height of ``name`` in bar ``i``; the series are
    stacked in the mapping's order, bottom up. ``names`` gives the words shown
    for series and labels (translations); ``width`` is the drawing's own width,
    smaller for a chart that shares a row, so its lettering stays readable.
    """
    shown = names or {}
    if any(len(values) != len(labels) for values in series.values()):
        raise ValueError("every series needs one value per label")
    totals = [sum(values[i] for values in series.values()) for i in range(len(labels))]
    top = _nice_max(max(totals, default=0))
    plot_w, plot_h = width - _LEFT - 8, _H - _BOTTOM - _TOP
    slot = plot_w / max(1, len(labels))
    bar_w = max(1.0, slot * 0.8)
    parts = [
        f'<svg class="chart" viewBox="0 0 {width:g} {_H + 22:g}" width="100%" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    for fraction in (0, 0.5, 1):
        y = _TOP + plot_h * (1 - fraction)
        parts.append(
            f'<line x1="{_LEFT:g}" x2="{width - 8:g}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{_LEFT - 4:g}" y="{y + 4:.1f}" text-anchor="end" class="axis">'
            f"{int(top * fraction):,}</text>"
        )
    for i, label in enumerate(labels):
        x = _LEFT + i * slot + (slot - bar_w) / 2
        y = _TOP + plot_h
        for index, (name, values) in enumerate(series.items()):
            if not values[i]:
                continue
            h = plot_h * values[i] / top
            y -= h
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                f'fill="{_colour(name, index)}"><title>{escape(shown.get(label, label))} · '
                f"{escape(shown.get(name, name))}: "
                f"{values[i]:,}</title></rect>"
            )
        if i % label_every == 0:
            parts.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{_TOP + plot_h + 14:.1f}" '
                f'text-anchor="middle" class="axis">{escape(shown.get(label, label))}</text>'
            )
    legend_x = _LEFT
    for index, name in enumerate(series):
        word = shown.get(name, name)
        parts.append(
            f'<rect x="{legend_x:.1f}" y="{_H + 6:g}" width="10" height="10" '
            f'fill="{_colour(name, index)}"/><text x="{legend_x + 14:.1f}" y="{_H + 15:g}" '
            f'class="legend">{escape(word)}</text>'
        )
        legend_x += 24 + _text_width(word)
    parts.append("</svg>")
    return "".join(parts)


def hbars(items: Sequence[tuple[str, int]], *, title: str, colour: str = "#D55E00") -> str:
    """Horizontal bars, one a row, largest first as given (e.g. failure reasons ranked)."""
    row_h, label_w = 22.0, 300.0
    height = max(1, len(items)) * row_h + 8
    top = max((n for _, n in items), default=0) or 1
    bar_room = _W - label_w - 70
    parts = [
        f'<svg class="chart" viewBox="0 0 {_W:g} {height:g}" width="100%" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    for i, (label, n) in enumerate(items):
        y = 4 + i * row_h
        shown = label if len(label) <= 48 else label[:47] + "…"
        w = bar_room * n / top
        parts.append(
            f'<text x="{label_w - 6:g}" y="{y + 15:.1f}" text-anchor="end" class="axis">'
            f"<title>{escape(label)}</title>{escape(shown)}</text>"
            f'<rect x="{label_w:g}" y="{y + 3:.1f}" width="{max(w, 1):.1f}" height="{row_h - 6:g}" '
            f'fill="{colour}"/><text x="{label_w + w + 6:.1f}" y="{y + 15:.1f}" class="axis">'
            f"{n:,}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)
