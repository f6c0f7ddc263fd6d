"""The collections ladder's notices: the final demand (限期催繳) and the reconnection
confirmation, on every channel, in both languages, with the longest sample values."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from channels.notice_print import Notice, write_notices
from notifier.notices.content import sms_segments
from notifier.notices.rendering import (
    SAMPLE_VARIANTS,
    Renderer,
    format_date,
    format_money,
    sample_context,
)

TEMPLATES = Path(__file__).parents[3] / "templates"
LANGUAGES = ("zh-TW", "en")
DEMAND_CHANNELS = ("sms", "voice", "email", "push", "postcard", "notice")
WARNING = {"zh-TW": "停止供電", "en": "suspend"}


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(TEMPLATES)


@pytest.mark.parametrize("variant", SAMPLE_VARIANTS)
@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("channel", DEMAND_CHANNELS)
def test_the_final_demand_states_the_amount_the_deadline_and_what_follows(
    renderer: Renderer, channel: str, language: str, variant: str
) -> None:
    context = sample_context("collection.final_demand", level=2, variant=variant)
    content = renderer.render("collection.final_demand", channel, language, context)
    spoken = channel == "voice"
    text = content.body.lower() if language == "en" else content.body

    owed = context["overdue_total"]
    assert (str(owed) if spoken else format_money(owed)) in content.body
    assert format_date(context["demand"]["deadline"], language, spoken=spoken) in content.body
    assert WARNING[language] in text
    assert "1911" in content.body or "1 9 1 1" in content.body
    if channel == "sms":
        assert sms_segments(content.body) <= 2, content.body
    # Printed for the home: the full number on the letter, masked on a postcard.
    words = content.body.replace(context["pay_url"], "")
    assert ("01234567890" in words) == (channel in ("email", "notice"))


@pytest.mark.parametrize("variant", SAMPLE_VARIANTS)
@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("channel", ("sms", "email", "push"))
def test_the_reconnection_confirmation_thanks_and_says_the_supply_comes_back(
    renderer: Renderer, channel: str, language: str, variant: str
) -> None:
    context = sample_context("collection.reconnected", variant=variant)
    body = renderer.render("collection.reconnected", channel, language, context).body

    assert format_date(context["reconnection"]["paid_on"], language) in body
    assert ("恢復供電" if language == "zh-TW" else "restor") in body
    if channel == "sms":
        assert sms_segments(body) <= 2, body


def test_the_english_final_demand_letter_prints_on_one_a4_page(
    renderer: Renderer, tmp_path: Path
) -> None:
    context = sample_context("collection.final_demand", level=2, variant="english")
    content = renderer.render("collection.final_demand", "notice", "en", context)
    pdf = write_notices(
        [Notice(reference="case 7", title=content.subject or "", body=content.body,
                language="en")]
    )  # fmt: skip
    if shutil.which("pdftoppm") is None:
        if os.environ.get("CI"):
            pytest.fail("pdftoppm (Debian poppler-utils) is needed to render the letter")
        pytest.skip("pdftoppm (Debian poppler-utils) is not installed")
    (tmp_path / "letter.pdf").write_bytes(pdf)
    subprocess.run(
        ["pdftoppm", "-png", "-r", "80", "-singlefile", str(tmp_path / "letter.pdf"),
         str(tmp_path / "letter")],
        check=True,
    )  # fmt: skip
    png = tmp_path / "letter.png"
    assert png.stat().st_size > 10_000  # a page of text, not a blank one
    if keep := os.environ.get("NOTIFIER_KEEP_PNG"):
        shutil.copy(png, keep)
