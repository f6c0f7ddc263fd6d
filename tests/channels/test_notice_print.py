"""Visit notices: one A4 page a notice, in an embedded Chinese font, nothing cut or boxed."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pypdf
import pytest
from fontTools import subset as ft_subset
from fontTools.ttLib import TTFont

from channels.notice_print import Notice, NoticeError, write_notices
from channels.print_layout import FONT_ENV, find_cjk_font, open_font

# templates/escalation.visit/notice.zh-TW.j2, rendered by hand for two bills.
VISIT_ZH = """
王小明 您好：

電號：01234567890

本公司服務人員 林建宏 已於 115年12月8日 到府拜訪：
　□ 未遇本人，特留置本通知
　□ 已當面交付本通知

您的電費至今仍未繳納，明細如下：
　115年5月電費　NT$1,830　繳費期限 115年7月20日
　115年7月電費　NT$2,140　繳費期限 115年9月20日
合計應繳：NT$3,970

繳費方式：
　・各大便利商店
　・銀行轉帳（ATM、網路銀行）
　・行動App
　・各區服務櫃台臨櫃繳納

如有疑問，請洽客服專線 1911。
敬請儘速繳納。如逾期仍未繳納，本公司將依相關規定辦理停止供電，屆時須繳清欠費後方能恢復供電，敬請見諒。
若您已繳費，請不必理會本通知，謝謝。
"""
TITLE_ZH = "電費欠費催繳通知（到府通知）"

# templates/escalation.visit/notice.en.j2, rendered by hand for one bill.
VISIT_EN = """
Dear 歐陽美玲,

Account: 04556667788

Our field agent 林建宏 visited your home on 8 Dec 2026 and:
  [ ] found nobody at home and left this notice
  [ ] handed this notice to you

Your electricity bill is still unpaid:
  Sep 2026  NT$1,975  due 20 Nov 2026

How to pay:
  - at any convenience store
  - by bank transfer (ATM or online banking)
  - in our mobile app
  - at a service counter

Questions? Call our service line 1911.
Please pay as soon as possible. If the bill stays unpaid, we will have to suspend your electricity supply as the regulations provide, and it will be restored only once the arrears are paid. We appreciate your understanding.
If you have already paid, please disregard this notice. Thank you.
"""
TITLE_EN = "OVERDUE ELECTRICITY BILL: NOTICE OF HOME VISIT"

ZH = Notice("case 42", TITLE_ZH, VISIT_ZH, "zh-TW")
EN = Notice("case 43", TITLE_EN, VISIT_EN, "en")


@pytest.fixture(scope="module")
def day() -> pypdf.PdfReader:
    return pypdf.PdfReader(io.BytesIO(write_notices([ZH, EN], title="Visits 2026-12-08")))


def squeezed(text: str) -> str:
    """Text without whitespace: a wrapped line must not hide a word from the search."""
    return "".join(text.split())


# --- the pages ------------------------------------------------------------------------------


def test_an_agents_day_is_one_a4_portrait_page_per_notice(day: pypdf.PdfReader) -> None:
    assert len(day.pages) == 2
    for page in day.pages:
        width_mm = float(page.mediabox.width) * 25.4 / 72
        height_mm = float(page.mediabox.height) * 25.4 / 72
        assert (round(width_mm), round(height_mm)) == (210, 297)


def test_a_chinese_notice_prints_its_title_name_amounts_and_reference(
    day: pypdf.PdfReader,
) -> None:
    text = day.pages[0].extract_text()

    assert TITLE_ZH in text
    assert "王小明" in text and "林建宏" in text
    for amount in ("NT$1,830", "NT$2,140", "NT$3,970"):
        assert amount in text
    assert "01234567890" in text  # the full account number: it is left with the customer
    assert "□ 未遇本人" in text and "□ 已當面交付本通知" in text  # the boxes the agent ticks
    assert "停止供電" in squeezed(text)
    assert "case 42" in text
    assert "第 1 頁，共 2 頁" in text
    assert squeezed(text).endswith("若您已繳費，請不必理會本通知，謝謝。case42第1頁，共2頁")


def test_an_english_notice_prints_whole_with_english_labels(day: pypdf.PdfReader) -> None:
    text = day.pages[1].extract_text()

    assert TITLE_EN in text
    assert "Dear 歐陽美玲," in text
    assert "NT$1,975" in text and "convenience store" in text
    assert "If you have already paid, please disregard this notice." in text
    assert "case 43" in text and "page 2 of 2" in text
    assert "頁" not in text


def test_the_document_says_what_it_is(day: pypdf.PdfReader) -> None:
    assert day.metadata is not None
    assert day.metadata.title == "Visits 2026-12-08"
    assert day.metadata.creator == "notifier"
    assert day.trailer["/Root"]["/Lang"] == "zh-TW"  # one each: the first notice's


def test_the_font_is_embedded_so_the_pdf_prints_the_same_anywhere(day: pypdf.PdfReader) -> None:
    for page in day.pages:
        [font_file] = [embedded_font_file(font) for font in page_fonts(page)]
        cmap = TTFont(io.BytesIO(font_file)).getBestCmap()
        # The check box and the full-width space are in the embedded font, not left to a viewer.
        assert {ord("□"), ord("　"), ord("王")} <= set(cmap)


def page_fonts(page: pypdf.PageObject) -> list[pypdf.generic.DictionaryObject]:
    resources = page["/Resources"].get_object()
    assert isinstance(resources, pypdf.generic.DictionaryObject)
    fonts = resources["/Font"].get_object()
    assert isinstance(fonts, pypdf.generic.DictionaryObject)
    found = []
    for ref in fonts.values():
        font = ref.get_object()
        assert isinstance(font, pypdf.generic.DictionaryObject)
        found.append(font)
    return found


def embedded_font_file(font: pypdf.generic.DictionaryObject) -> bytes:
    """The TrueType file embedded for a composite (Type0) font."""
    [descendant] = font["/DescendantFonts"]
    cid_font = descendant.get_object()
    assert isinstance(cid_font, pypdf.generic.DictionaryObject)
    descriptor = cid_font["/FontDescriptor"].get_object()
    assert isinstance(descriptor, pypdf.generic.DictionaryObject)
    stream = descriptor["/FontFile2"].get_object()
    assert isinstance(stream, pypdf.generic.StreamObject)
    data: bytes = stream.get_data()
    return data


# --- nothing is cut, nothing prints as a box ------------------------------------------------


def test_a_long_notice_shrinks_to_fit_and_is_printed_whole() -> None:
    body = VISIT_ZH + "\n" + "您的電費帳單尚未繳納，請儘速繳納。" * 60 + "\n最後一句在這裡。"

    pdf = pypdf.PdfReader(io.BytesIO(write_notices([Notice("case 7", TITLE_ZH, body, "zh-TW")])))

    assert squeezed(pdf.pages[0].extract_text()).endswith("最後一句在這裡。case7第1頁，共1頁")


def test_a_notice_too_long_for_a_page_is_refused_naming_it() -> None:
    overlong = Notice("case 9", TITLE_ZH, VISIT_ZH + "電費尚未繳納。" * 1200, "zh-TW")

    with pytest.raises(NoticeError, match="notice case 9: the text does not fit") as raised:
        write_notices([ZH, overlong])

    assert (raised.value.reference, isinstance(raised.value, ValueError)) == ("case 9", True)


@pytest.mark.parametrize(
    ("character", "reason"),
    [
        ("😀", "has no glyph for '😀' (U+1F600)"),  # an emoji the font lacks
        ("\ue000", "'\\ue000' (U+E000) cannot be printed (private use"),  # a made-up character
    ],
)
def test_a_character_that_would_not_print_is_refused_rather_than_dropped_or_boxed(
    character: str, reason: str
) -> None:
    odd = Notice("case 11", TITLE_ZH, VISIT_ZH.replace("王小明", f"王小{character}"), "zh-TW")

    with pytest.raises(NoticeError, match=f"notice case 11: .*{re.escape(reason)}"):
        write_notices([ZH, odd])


def test_a_font_without_the_check_box_is_refused_rather_than_printing_boxes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The project's font, cut down to everything of the notice but "□".
    options = ft_subset.Options()
    options.name_IDs = ["*"]
    subsetter = ft_subset.Subsetter(options)
    subsetter.populate(
        text=VISIT_ZH.replace("□", "") + TITLE_ZH + "case 42第頁，共page of0123456789"
    )
    font = open_font(find_cjk_font())
    subsetter.subset(font)
    font.save(tmp_path / "no-box.otf")
    monkeypatch.setenv(FONT_ENV, str(tmp_path / "no-box.otf"))

    with pytest.raises(NoticeError, match=r"no-box\.otf has no glyph for '□' \(U\+25A1\)"):
        write_notices([ZH])


@pytest.mark.parametrize(
    ("notice", "reason"),
    [
        (Notice("case 5", TITLE_ZH, " \n\n ", "zh-TW"), "the text is empty"),
        (Notice("case 5", "", VISIT_ZH, "zh-TW"), "the title is empty"),
        (Notice("case 5", TITLE_ZH, VISIT_ZH, "ja"), "language 'ja' is not one of zh-TW, en"),
        (Notice("case 5", TITLE_ZH * 8, VISIT_ZH, "zh-TW"), "the title does not fit"),
        (Notice("case 5 " + "x" * 400, TITLE_ZH, VISIT_ZH, "zh-TW"), "the reference does not"),
    ],
)
def test_a_notice_that_cannot_print_as_it_is_is_named(notice: Notice, reason: str) -> None:
    with pytest.raises(NoticeError, match=reason) as raised:
        write_notices([ZH, notice])

    assert raised.value.reference.startswith("case 5")


def test_nothing_to_print_is_an_error() -> None:
    with pytest.raises(ValueError, match="no notices"):
        write_notices([])
