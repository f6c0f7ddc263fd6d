"""The dashboard's SVG charts: drawn at their own size, every label inside the drawing.

Placement is checked with the charts' own width guess (``charts.text_width``);
that the guess holds in a real browser, at 390 and 1366 px in both languages,
is tests/browser/test_dashboard_in_chromium.py.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from notifier.web import charts

SVG = "{http://www.w3.org/2000/svg}"
STATUSES = ["delivered", "sent", "sending", "queued", "deferred", "failed", "undelivered"]
ZH = {
    "delivered": "已送達",
    "sent": "已送出",
    "sending": "傳送中",
    "queued": "排隊中",
    "deferred": "延後",
    "failed": "失敗",
    "undelivered": "未送達",
}


def _parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def _texts(root: ET.Element) -> list[tuple[float, str, str]]:
    """(x, anchor, shown words) of every <text>, its <title> left out."""
    found = []
    for text in root.iter(f"{SVG}text"):
        words = (text.text or "") + "".join(child.tail or "" for child in text)
        found.append((float(text.get("x", 0)), text.get("text-anchor", "start"), words))
    return found


def _extent(x: float, anchor: str, words: str) -> tuple[float, float]:
    w = charts.text_width(words)
    return {"start": (x, x + w), "middle": (x - w / 2, x + w / 2), "end": (x - w, x)}[anchor]


def _all_inside(svg: str) -> list[str]:
    root = _parse(svg)
    width = float(root.get("width", 0))
    return [
        words
        for x, anchor, words in _texts(root)
        if not (_extent(x, anchor, words)[0] >= 0 and _extent(x, anchor, words)[1] <= width)
    ]


def test_a_chart_is_drawn_at_its_own_pixel_size_not_stretched() -> None:
    svg = charts.stacked_bars(["sms"], {"sent": [3]}, title="t", width=charts.NARROW)
    root = _parse(svg)
    assert root.get("width") == "300"
    assert root.get("viewBox", "").split()[2] == "300"
    assert root.get("width") != "100%"


@pytest.mark.parametrize("names", [{}, ZH], ids=["en", "zh-TW"])
def test_a_phones_legend_wraps_onto_rows_inside_the_chart(names: dict[str, str]) -> None:
    series = {status: [1, 2, 3] for status in STATUSES}
    svg = charts.stacked_bars(
        ["email", "push", "sms"], series, title="t", names=names, width=charts.NARROW
    )
    root = _parse(svg)
    legend_rows = {t.get("y") for t in root.iter(f"{SVG}text") if t.get("class") == "legend"}
    assert len(legend_rows) >= 2
    assert _all_inside(svg) == []
    # The drawing grows to hold the rows: the last row's baseline is inside it.
    assert max(float(y or 0) for y in legend_rows) < float(root.get("height", 0))


def test_hour_labels_thin_out_and_stay_inside_at_both_ends() -> None:
    hours = [f"{h:02d}:00" for h in range(24)]
    svg = charts.stacked_bars(
        hours, {"sent": [5] * 24}, title="t", label_every=3, width=charts.NARROW
    )
    shown = [words for _, _, words in _texts(_parse(svg)) if ":" in words]
    assert shown[0] == "00:00"
    assert 3 <= len(shown) <= 8  # fewer than every third hour: 8 would touch at 300 px
    assert _all_inside(svg) == []


def test_the_middle_of_a_small_axis_says_what_it_is() -> None:
    svg = charts.stacked_bars(["sms"], {"sent": [3]}, title="t")
    ticks = [words for _, anchor, words in _texts(_parse(svg)) if anchor == "end"]
    assert ticks == ["0", "2.5", "5"]


def test_one_bar_is_not_a_wall() -> None:
    svg = charts.stacked_bars(["sms"], {"sent": [3]}, title="t", width=charts.NARROW)
    [bar] = [r for r in _parse(svg).iter(f"{SVG}rect") if r.find(f"{SVG}title") is not None]
    assert float(bar.get("width", 0)) <= 40


def test_a_long_failure_reason_sits_above_its_bar_cut_to_fit_and_whole_in_its_title() -> None:
    reason = "簡訊 · 21614: 'To' number is not a valid mobile number for this region " * 2
    svg = charts.hbars([(reason, 7), ("email · 550", 2)], title="t", width=charts.NARROW)
    root = _parse(svg)
    first = next(root.iter(f"{SVG}text"))
    title = first.find(f"{SVG}title")
    assert title is not None and reason in (title.text or "")
    shown = title.tail or ""
    assert shown.endswith("…") and reason.startswith(shown[:-1])
    assert _all_inside(svg) == []


def test_latency_bars_show_a_one_second_push_beside_a_one_day_postcard() -> None:
    rows = [("push", 1.0, 2.0), ("postcard", 80_000.0, 86_400.0)]
    svg = charts.latency_bars(
        rows, title="t", caption=lambda a, b: f"p50 {a:.0f} s · p95 {b:.0f} s", width=300
    )
    bars = [float(r.get("width", 0)) for r in _parse(svg).iter(f"{SVG}rect")]
    push95, push50, card95, card50 = bars
    assert push50 <= push95 and card50 <= card95
    assert push95 > 10  # on a linear scale it would be 0.007 px
    assert card95 == pytest.approx(298, abs=1)
    assert _all_inside(svg) == []


def test_labels_are_escaped() -> None:
    svg = charts.hbars([("<script>alert(1)</script>", 1)], title="a & b")
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    _parse(svg)


def test_every_series_needs_a_value_per_label() -> None:
    with pytest.raises(ValueError, match="one value per label"):
        charts.stacked_bars(["a", "b"], {"sent": [1]}, title="t")


def test_either_holds_both_drawings_for_the_stylesheet_to_choose() -> None:
    wide = charts.stacked_bars(["sms"], {"sent": [1]}, title="t", width=700)
    narrow = charts.stacked_bars(["sms"], {"sent": [1]}, title="t", width=charts.NARROW)
    both = charts.either(wide, narrow)
    assert both.index('class="chart-wide"') < both.index(wide) < both.index('"chart-narrow"')
    assert narrow in both
