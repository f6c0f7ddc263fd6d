"""Every HTML email, opened in a real browser: headless Chromium (Debian's chromium).

For each email template and language the test renders the HTML with the "long"
sample context, opens it at a phone (390x844) and a desktop (1280x900) viewport
and checks that what the customer must read - the total and the due date, the
kWh and the percentage, the amount paid - is displayed, has a size, lies inside
the page width (no horizontal scrolling on the phone) and is not drawn in the
colour of its background. A full-page screenshot of each render is saved in the
test's temporary folder.

Needs /usr/bin/chromium and /usr/bin/chromedriver (Debian's chromium and
chromium-driver; .ci/run installs them) and selenium (the dev extra). Without
them the tests skip, except under CI=true, where they fail (the ``driver``
fixture, in conftest.py, shared with the pages' browser tests).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from notifier.notices.rendering import (
    Renderer,
    format_date,
    format_money,
    format_number,
    format_percent,
    sample_context,
)

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates"


@dataclass(frozen=True)
class Viewport:
    name: str
    width: int
    height: int


PHONE = Viewport("phone", 390, 844)
DESKTOP = Viewport("desktop", 1280, 900)


@dataclass(frozen=True)
class Email:
    event_type: str
    level: int
    language: str

    @property
    def id(self) -> str:
        return f"{self.event_type}-L{self.level}-{self.language}"


EMAILS = [
    Email(event_type, level, language)
    for event_type, level in (
        ("bill.unpaid", 1),
        ("bill.unpaid", 2),
        ("usage.abnormal", 1),
        ("bill.paid", 1),
        ("bill.corrected", 1),
        ("collection.final_demand", 2),
        ("collection.reconnected", 2),
    )
    for language in ("zh-TW", "en")
]


def test_every_email_template_is_covered() -> None:
    """A new HTML email template must be added to EMAILS (and so opened in the browser)."""
    on_disk = {
        (path.parent.name, path.name.removeprefix("email.").removesuffix(".html.j2"))
        for path in TEMPLATES_DIR.glob("*/email.*.html.j2")
        if not path.parent.name.startswith("_")
    }
    assert on_disk == {(e.event_type, e.language) for e in EMAILS}


# --- the browser (the driver fixture is in conftest.py) -----------------------------------


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("email-screenshots")


def _set_viewport(browser: Any, viewport: Viewport) -> None:
    browser.set_window_size(viewport.width, viewport.height)
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {
            "width": viewport.width,
            "height": viewport.height,
            "deviceScaleFactor": 1,
            # Not "mobile": a mobile viewport widens itself to fit content that is too
            # wide, hiding the very overflow the test looks for.
            "mobile": False,
        },
    )


def _save_full_page(browser: Any, path: Path) -> None:
    width, height = browser.execute_script(
        "const e = document.documentElement;"
        "return [Math.max(e.scrollWidth, window.innerWidth),"
        " Math.max(e.scrollHeight, document.body.scrollHeight)];"
    )
    shot = browser.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
        },
    )
    path.write_bytes(base64.b64decode(shot["data"]))


# --- what must be readable -----------------------------------------------------------------


def _expected_texts(email: Email, context: dict[str, Any]) -> list[str]:
    """The strings the customer must see, formatted the way the template formats them."""
    language = email.language
    if email.event_type == "usage.abnormal":
        usage = context["usage"]
        unit = "度" if language == "zh-TW" else "kWh"
        return [
            f"{format_number(usage['kwh'])} {unit}",
            format_percent(abs(usage["ratio"])),
        ]
    if email.event_type == "bill.paid":
        return [format_money(context["bill"]["amount"])]
    if email.event_type == "collection.final_demand":
        unpaid = context["bills"] or [context["bill"]]
        total = context["total"] if len(unpaid) > 1 else unpaid[0]["amount"]
        return [format_money(total), format_date(context["demand"]["deadline"], language)]
    if email.event_type == "collection.reconnected":
        return [format_date(context["reconnection"]["paid_on"], language)]
    if email.event_type == "bill.corrected":
        correction = context["correction"]
        return [format_money(context["bill"]["owed"]), format_money(correction["amount"])]
    unpaid = context["bills"] or [context["bill"]]
    total = context["total"] if len(unpaid) > 1 else unpaid[0]["amount"]
    return [format_money(total)] + [format_date(b["due_date"], language) for b in unpaid]


def _xpath_literal(text: str) -> str:
    if "'" not in text:
        return f"'{text}'"
    if '"' not in text:
        return f'"{text}"'
    parts = "', \"'\", '".join(text.split("'"))
    return f"concat('{parts}')"


# Geometry and colours of an element, and the colour actually behind it (the first
# ancestor with an opaque background; white if none).
_INSPECT = """
const el = arguments[0];
const r = el.getBoundingClientRect();
const style = getComputedStyle(el);
let bg = 'rgb(255, 255, 255)';
for (let node = el; node && node.nodeType === 1; node = node.parentElement) {
    const c = getComputedStyle(node).backgroundColor;
    if (c && c !== 'transparent' && !/rgba\\(.*,\\s*0\\)$/.test(c)) { bg = c; break; }
}
return {left: r.left + window.scrollX, right: r.right + window.scrollX,
        width: r.width, height: r.height, color: style.color, background: bg,
        opacity: style.opacity, innerWidth: window.innerWidth};
"""


def _rgb(css: str) -> tuple[float, float, float]:
    inside = css[css.index("(") + 1 : css.index(")")]
    r, g, b = (float(v) for v in inside.replace("/", ",").split(",")[:3])
    return r, g, b


def _contrast(a: tuple[float, float, float], b: tuple[float, float, float]) -> float:
    def luminance(rgb: tuple[float, float, float]) -> float:
        def channel(v: float) -> float:
            v /= 255
            return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4

        r, g, bl = (channel(v) for v in rgb)
        return 0.2126 * r + 0.7152 * g + 0.0722 * bl

    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


# --- the tests -------------------------------------------------------------------------------

VIEWPORTS = pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=lambda v: v.name)
ALL_EMAILS = pytest.mark.parametrize("email", EMAILS, ids=lambda e: e.id)


def _open(browser: Any, email: Email, viewport: Viewport, folder: Path) -> list[str]:
    """Render ``email``, open it at ``viewport``; return the texts that must be visible."""
    context = sample_context(email.event_type, level=email.level, variant="long")
    rendered = Renderer(TEMPLATES_DIR).render(email.event_type, "email", email.language, context)
    assert rendered.html is not None, f"{email.id}: no HTML body"
    assert rendered.language == email.language
    expected = _expected_texts(email, context)
    for text in expected:
        assert text in rendered.html, f"{email.id}: {text!r} is not in the rendered HTML"
    page = folder / f"{email.id}.html"
    page.write_text(rendered.html, encoding="utf-8")
    _set_viewport(browser, viewport)
    browser.get(page.as_uri())
    inner_width = browser.execute_script("return window.innerWidth;")
    assert inner_width == viewport.width, f"{email.id}: viewport is {inner_width}px wide"
    return expected


def _elements_showing(browser: Any, text: str, where: str) -> list[Any]:
    """The innermost elements whose text holds ``text`` (at least one)."""
    from selenium.webdriver.common.by import By

    literal = _xpath_literal(text)
    elements: list[Any] = browser.find_elements(
        By.XPATH,
        f"//body//*[contains(normalize-space(.), {literal})"
        f" and not(*[contains(normalize-space(.), {literal})])]",
    )
    assert elements, f"{where}: no element shows {text!r}"
    return elements


@VIEWPORTS
@ALL_EMAILS
def test_key_figures_are_visible(
    driver: Any, screenshots: Path, tmp_path: Path, email: Email, viewport: Viewport
) -> None:
    """Displayed, with a size, not transparent, and not in the colour behind it."""
    expected = _open(driver, email, viewport, tmp_path)
    _save_full_page(driver, screenshots / f"{email.id}-{viewport.name}.png")
    where = f"{email.id} at {viewport.name} {viewport.width}x{viewport.height}"
    for text in expected:
        for element in _elements_showing(driver, text, where):
            assert element.is_displayed(), f"{where}: {text!r} is not displayed"
            box = driver.execute_script(_INSPECT, element)
            assert box["width"] > 0 and box["height"] > 0, f"{where}: {text!r} has no size {box}"
            assert float(box["opacity"]) > 0, f"{where}: {text!r} is transparent"
            color, background = _rgb(box["color"]), _rgb(box["background"])
            assert color != background, f"{where}: {text!r} is drawn in its background colour"
            assert _contrast(color, background) >= 3.0, (
                f"{where}: {text!r} is barely readable: {box['color']} on {box['background']}"
            )


@VIEWPORTS
@ALL_EMAILS
def test_nothing_scrolls_sideways(
    request: pytest.FixtureRequest, driver: Any, tmp_path: Path, email: Email, viewport: Viewport
) -> None:
    """The page fits the viewport's width, and so do the key figures."""
    expected = _open(driver, email, viewport, tmp_path)
    where = f"{email.id} at {viewport.name} {viewport.width}x{viewport.height}"
    scroll_width, inner_width = driver.execute_script(
        "return [document.documentElement.scrollWidth, window.innerWidth];"
    )
    assert scroll_width <= inner_width + 1, (
        f"{where}: the page scrolls sideways ({scroll_width}px of content in {inner_width}px)"
    )
    for text in expected:
        for element in _elements_showing(driver, text, where):
            box = driver.execute_script(_INSPECT, element)
            assert box["left"] >= 0 and box["right"] <= box["innerWidth"] + 1, (
                f"{where}: {text!r} lies outside the page width {box}"
            )


# --- who the email is from -----------------------------------------------------------------

_GENUINE = {
    "zh-TW": "本公司絕不會以電子郵件向您索取信用卡號",
    "en": "We never ask for card numbers",
}


@ALL_EMAILS
def test_the_text_part_names_the_utility_and_how_to_tell_a_genuine_email(email: Email) -> None:
    context = sample_context(email.event_type, level=email.level, variant="long")
    body = Renderer(TEMPLATES_DIR).render(email.event_type, "email", email.language, context).body
    utility = context["utility"]
    name = utility["name"] if email.language == "zh-TW" else utility["name_en"]
    footer = body[body.rindex("\n--") :] if email.language == "en" else body[body.rindex("——") :]
    for text in (name, utility["phone"], utility["website"], _GENUINE[email.language]):
        assert text in footer, f"{email.id}: the text part's footer lacks {text!r}"


@pytest.mark.parametrize("viewport", [PHONE], ids=lambda v: v.name)
@ALL_EMAILS
def test_the_utility_heads_every_email_and_its_footer_says_how_to_check_it(
    driver: Any,
    screenshot: Any,
    tmp_path: Path,
    email: Email,
    viewport: Viewport,
) -> None:
    """The name above the heading, the footer (service line, website, the genuine check) readable."""
    from selenium.webdriver.common.by import By

    _open(driver, email, viewport, tmp_path)
    screenshot(f"email-{email.id}-{viewport.name}")
    utility = sample_context(email.event_type)["utility"]
    name = utility["name"] if email.language == "zh-TW" else utility["name_en"]
    where = f"{email.id} at {viewport.name}"
    first_row = driver.find_element(By.XPATH, "(//table//table//td)[1]")
    assert first_row.text.strip() == name, f"{where}: the email does not open with {name!r}"
    for text in (utility["website_host"], _GENUINE[email.language]):
        for element in _elements_showing(driver, text, where):
            box = driver.execute_script(_INSPECT, element)
            assert element.is_displayed() and box["height"] > 0, f"{where}: {text!r} not shown"
            assert box["right"] <= box["innerWidth"] + 1, f"{where}: {text!r} runs off the page"
            assert _contrast(_rgb(box["color"]), _rgb(box["background"])) >= 4.5, (
                f"{where}: {text!r} is too faint: {box['color']} on {box['background']}"
            )
