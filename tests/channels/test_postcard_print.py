"""The postcard print batch: a PDF of A6 cards with an embedded Chinese font, and its manifest."""

from __future__ import annotations

import asyncio
import csv
import os
import shutil
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path

import pypdf
import pytest

import channels
from channels import Message, PermanentChannelError
from channels.postcard_print import (
    FONT_ENV,
    Card,
    CardError,
    PrintBatch,
    PrintQueue,
    _wrap_paragraph,
    find_cjk_font,
    write_batch,
)

THREE_BILLS = """
電費催繳通知（第二次通知）

王小明 您好：
電號：01-23-****-89-0
您的電費已逾繳費期限，至今仍未繳納，明細如下：

　2026年05月電費　NT$1,830　繳費期限 2026/07/20
　2026年07月電費　NT$2,140　繳費期限 2026/09/20
　2026年09月電費　NT$1,975　繳費期限 2026/11/20

合計應繳：NT$5,945

請儘速繳納。若仍未繳納，將由本公司人員與您電話聯繫或到府拜訪。
繳費方式：各大便利商店、銀行轉帳（ATM、網路銀行）、行動App，或至各區服務櫃台臨櫃繳納。
如有疑問，請洽客服專線 1911。
若您已繳費，請不必理會本通知，謝謝。
"""

REMINDER_EN = """ELECTRICITY BILL REMINDER

Dear John Smith,
Account: 01-99-****-12-3
Your electricity bill has not been paid yet:

  2026-09  NT$1,830  due 2026-11-20

How to pay: at any convenience store, by bank transfer (ATM or online banking), in our mobile app, or at a service counter.
Questions? Call our service line 1911.
If you have already paid, please disregard this notice. Thank you.
"""

LONG_ADDRESS = (
    "40341臺中市西區台灣大道二段二百一十八巷三十七弄十二號五樓之三（春天社區管理委員會代收）"
)

CARDS = [
    Card(101, "王小明", "35159苗栗縣頭份市中正路123號", THREE_BILLS, "zh-TW", "01-23-****-89-0"),
    Card(
        102,
        "John Smith",
        "123 Zhongzheng Rd., Toufen City, Miaoli County 351",
        REMINDER_EN,
        "en",
        "01-99-****-12-3",
    ),
    Card(
        103,
        "歐陽美玲",
        LONG_ADDRESS,
        "您的電費帳單尚未繳納，請於期限前繳納。",
        "zh-TW",
        "04-55-****-66-7",
    ),
]


IDENTITY = {
    "sender": "示範電力公司 客服中心",
    "return_address": "351苗栗縣頭份市中華路1000號",
    "service_phone": "1911",
    "website": "www.utility.example",
}


@dataclass(frozen=True)
class Written:
    batch: PrintBatch
    out_dir: Path


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Written:
    out_dir = tmp_path_factory.mktemp("print")
    batch = write_batch(
        CARDS,
        out_dir=out_dir,
        batch_id="PC-20261127-1",
        **IDENTITY,
    )
    return Written(batch, out_dir)


def pdf_text(path: Path) -> list[str]:
    return [page.extract_text() for page in pypdf.PdfReader(path).pages]


def squeezed(text: str) -> str:
    """Text without whitespace: a wrapped line must not hide a word from the search."""
    return "".join(text.split())


# --- the PDF --------------------------------------------------------------------------------


def test_a_batch_is_one_pdf_of_two_a6_pages_per_card(written: Written) -> None:
    batch = written.batch
    assert (batch.batch_id, batch.cards, batch.pages) == ("PC-20261127-1", 3, 6)
    assert batch.pdf_path == written.out_dir / "PC-20261127-1.pdf"
    reader = pypdf.PdfReader(batch.pdf_path)
    assert len(reader.pages) == 6
    for page in reader.pages:
        width_mm = float(page.mediabox.width) * 25.4 / 72
        height_mm = float(page.mediabox.height) * 25.4 / 72
        assert (round(width_mm), round(height_mm)) == (148, 105)  # A6, landscape


def test_names_addresses_amounts_and_chinese_body_are_text_in_the_pdf(written: Written) -> None:
    address_1, message_1, address_2, message_2, address_3, _ = pdf_text(written.batch.pdf_path)

    assert "王小明" in address_1 and "35159" in address_1
    assert "苗栗縣頭份市中正路123號" in address_1
    assert "0000000101" in address_1  # the sorting reference
    for words in ("電費催繳通知", "繳費期限", "合計應繳", "便利商店", "客服專線 1911"):
        assert words in message_1
    for amount in ("NT$1,830", "NT$2,140", "NT$1,975", "NT$5,945"):
        assert amount in message_1
    assert "01-23-****-89-0" in message_1
    assert "John Smith" in address_2
    assert "123 Zhongzheng Rd." in address_2  # a house number, not a postcode
    assert "NT$1,830" in message_2 and "convenience store" in message_2
    assert "歐陽美玲" in address_3
    assert LONG_ADDRESS.removeprefix("40341") in squeezed(address_3)  # wrapped, not cut


def test_the_font_is_embedded_so_the_pdf_prints_the_same_anywhere(written: Written) -> None:
    embedded = 0
    for page in pypdf.PdfReader(written.batch.pdf_path).pages:
        resources = page["/Resources"].get_object()
        assert isinstance(resources, pypdf.generic.DictionaryObject)
        fonts = resources["/Font"].get_object()
        assert isinstance(fonts, pypdf.generic.DictionaryObject)
        for ref in fonts.values():
            font = ref.get_object()
            assert isinstance(font, pypdf.generic.DictionaryObject)
            for descendant in font.get("/DescendantFonts", [font]):
                cid_font = descendant.get_object()
                assert isinstance(cid_font, pypdf.generic.DictionaryObject)
                descriptor = cid_font["/FontDescriptor"].get_object()
                assert isinstance(descriptor, pypdf.generic.DictionaryObject)
                assert {"/FontFile", "/FontFile2", "/FontFile3"} & set(descriptor)
                embedded += 1
    assert embedded


def test_the_message_side_shows_glyphs(written: Written, tmp_path: Path) -> None:
    if shutil.which("pdftoppm") is None:
        if os.environ.get("CI"):
            pytest.fail("pdftoppm (Debian poppler-utils) is needed to render the cards")
        pytest.skip("pdftoppm (Debian poppler-utils) is not installed")
    subprocess.run(
        [
            "pdftoppm",
            "-f",
            "2",
            "-l",
            "2",
            "-r",
            "60",
            "-gray",
            str(written.batch.pdf_path),
            str(tmp_path / "p"),
        ],
        check=True,
    )
    [image] = tmp_path.glob("p*.pgm")
    pixels = _pgm_pixels(image.read_bytes())
    dark = sum(1 for value in pixels if value < 128) / len(pixels)
    # Glyphs ink a few percent of a card; a blank page none, and a page of solid boxes far more.
    assert 0.02 < dark < 0.25, dark


def _pgm_pixels(data: bytes) -> bytes:
    """The pixel bytes of a binary PGM (P5) image, as pdftoppm -gray writes it."""
    fields: list[bytes] = []
    position = 0
    while len(fields) < 4:
        while data[position : position + 1].isspace():
            position += 1
        end = position
        while not data[end : end + 1].isspace():
            end += 1
        fields.append(data[position:end])
        position = end
    magic, width, height, _ = fields
    assert magic == b"P5"
    return data[position + 1 : position + 1 + int(width) * int(height)]


# --- the manifest ---------------------------------------------------------------------------


def test_the_manifest_lists_each_card_and_opens_in_excel(written: Written) -> None:
    path = written.batch.manifest_path
    assert path == written.out_dir / "PC-20261127-1.manifest.csv"
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")  # the BOM Excel needs for UTF-8
    with path.open(encoding="utf-8-sig", newline="") as manifest:
        rows = list(csv.DictReader(manifest))
    assert [(r["sequence"], r["delivery_id"], r["recipient_name"]) for r in rows] == [
        ("1", "101", "王小明"),
        ("2", "102", "John Smith"),
        ("3", "103", "歐陽美玲"),
    ]
    assert rows[2]["address"] == LONG_ADDRESS
    assert {r["batch_id"] for r in rows} == {"PC-20261127-1"}
    assert [r["language"] for r in rows] == ["zh-TW", "en", "zh-TW"]
    assert {r["pages"] for r in rows} == {"2"}


# --- a batch is produced once, whole, or not at all -----------------------------------------


def test_the_same_batch_is_never_written_twice(written: Written) -> None:
    before = written.batch.pdf_path.read_bytes(), written.batch.manifest_path.read_bytes()

    with pytest.raises(FileExistsError, match="PC-20261127-1"):
        write_batch(CARDS, out_dir=written.out_dir, batch_id="PC-20261127-1", **IDENTITY)

    after = written.batch.pdf_path.read_bytes(), written.batch.manifest_path.read_bytes()
    assert after == before


def test_a_body_too_long_for_a_card_fails_the_batch_naming_the_delivery(tmp_path: Path) -> None:
    overlong = Card(9, "王小明", "苗栗縣頭份市中正路123號", "電費尚未繳納。" * 300, "zh-TW", "x")

    with pytest.raises(ValueError, match="delivery 9") as raised:
        write_batch([CARDS[0], overlong], out_dir=tmp_path, batch_id="too-long", **IDENTITY)

    assert isinstance(raised.value, CardError) and raised.value.delivery_id == 9
    assert list(tmp_path.iterdir()) == []  # nothing half written is left behind


def test_a_long_body_shrinks_to_fit_and_is_printed_whole(tmp_path: Path) -> None:
    body = "您的電費帳單尚未繳納，請儘速繳納。" * 40 + "最後一句在這裡。"
    card = Card(5, "王小明", "苗栗縣頭份市中正路123號", body, "zh-TW", "x")

    batch = write_batch([card], out_dir=tmp_path, batch_id="long", **IDENTITY)

    assert squeezed(pdf_text(batch.pdf_path)[1]).endswith(
        "最後一句在這裡。客服專線1911www.utility.example參考編號0000000005"
    )


def test_a_font_without_chinese_is_refused_rather_than_printing_boxes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    latin_only = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
    if not latin_only.is_file():
        pytest.skip("no Latin-only font (Debian fonts-dejavu-core) to compare with")
    monkeypatch.setenv(FONT_ENV, str(latin_only))

    with pytest.raises(ValueError, match=r"DejaVuSans\.ttf has no glyph for"):
        write_batch(CARDS, out_dir=tmp_path, batch_id="latin", **IDENTITY)

    assert list(tmp_path.iterdir()) == []


def test_a_card_without_an_address_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CardError, match="delivery 7: no postal address"):
        write_batch(
            [Card(7, "王小明", "  ", "您好", "zh-TW", "x")],
            out_dir=tmp_path,
            batch_id="b",
            **IDENTITY,
        )


@pytest.mark.parametrize("batch_id", ["", "../escape", "a/b", ".hidden"])
def test_a_batch_id_must_be_a_plain_file_name(tmp_path: Path, batch_id: str) -> None:
    with pytest.raises(ValueError, match="batch id"):
        write_batch(CARDS, out_dir=tmp_path, batch_id=batch_id, **IDENTITY)


# --- the font -------------------------------------------------------------------------------


def test_the_font_comes_with_the_project_or_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(FONT_ENV, raising=False)
    assert find_cjk_font().suffix in {".otf", ".ttf", ".ttc", ".otc"}

    monkeypatch.setenv(FONT_ENV, str(tmp_path / "missing.ttf"))
    with pytest.raises(FileNotFoundError, match=FONT_ENV):
        find_cjk_font()


# --- line breaking --------------------------------------------------------------------------


def unit_width(text: str) -> float:
    """A CJK character is 1 wide, anything else 0.5."""
    return sum(1.0 if ord(ch) > 0x2E80 else 0.5 for ch in text)


@pytest.mark.parametrize(
    ("text", "width", "lines"),
    [
        ("請於期限前繳費謝謝", 4, ["請於期限", "前繳費謝", "謝"]),  # CJK breaks anywhere
        ("pay at any store", 4, ["pay at", "any", "store"]),  # Latin breaks between words
        ("繳費NT$1,830元", 4, ["繳費", "NT$1,830", "元"]),  # an amount stays whole
        ("請繳費，謝謝", 3, ["請繳", "費，謝", "謝"]),  # a comma never starts a line
        ("　本期電費", 3, ["　本期", "電費"]),  # indentation is kept
        ("abcdefghij", 2, ["abcd", "efgh", "ij"]),  # a word wider than a line is split
    ],
)
def test_wrapping(text: str, width: float, lines: list[str]) -> None:
    assert _wrap_paragraph(text, width, unit_width) == lines


# --- the channel ----------------------------------------------------------------------------


def postcard(*to: str) -> Message:
    return Message(delivery_id=42, channel="postcard", to=to, body="您的電費尚未繳納")


def test_print_queue_accepts_an_addressed_postcard_for_the_next_batch() -> None:
    queue = channels.create("postcard", "print")
    assert isinstance(queue, PrintQueue)

    result = asyncio.run(queue.send(postcard("35159苗栗縣頭份市中正路123號")))

    assert (result.provider, result.provider_id, result.status) == ("print", "pending-42", "sent")
    assert result.detail == {"awaiting_batch": True}


@pytest.mark.parametrize("to", [(), ("",), ("  ",)])
def test_print_queue_refuses_a_postcard_without_an_address(to: tuple[str, ...]) -> None:
    with pytest.raises(PermanentChannelError, match="no postal address"):
        asyncio.run(PrintQueue().send(postcard(*to)))


# --- sealed mailers -------------------------------------------------------------------------


def test_a_sealed_mailer_shows_no_amount_outside_and_the_notice_and_its_code_inside(
    tmp_path: Path,
) -> None:
    from datetime import date

    from PIL import Image

    from channels.postcard_print import PaymentCode

    logo = tmp_path / "logo.png"
    Image.new("RGB", (120, 120), (11, 92, 171)).save(logo)
    code = PaymentCode("01234567890", (("B202605-01234567890", 1830, date(2026, 7, 20)),))
    card = Card(101, "王小明", "35159苗栗縣頭份市中正路123號", THREE_BILLS, "zh-TW",
                "01-23-****-89-0", sealed=True, payment=code)  # fmt: skip

    batch = write_batch([card], out_dir=tmp_path / "out", batch_id="sealed", logo=logo, **IDENTITY)

    outside, inside = pdf_text(batch.pdf_path)
    assert "王小明" in outside and "彌封郵件" in outside
    assert "NT$" not in outside and "1,830" not in outside and "5,945" not in outside
    assert "NT$1,830" in squeezed(inside) and "合計應繳：NT$5,945" in squeezed(inside)
    assert pypdf.PdfReader(batch.pdf_path).pages[0].images, "the logo is not on the outside"


def test_a_long_letter_runs_over_a_sealed_mailer_s_inside_pages_but_never_off_an_open_card(
    tmp_path: Path,
) -> None:
    letter = "\n\n".join([THREE_BILLS] * 3)  # a household's reminder, correction and usage alert
    sealed = Card(5, "王小明", "35159苗栗縣頭份市中正路123號", letter, "zh-TW", "x", sealed=True)

    batch = write_batch([sealed], out_dir=tmp_path / "a", batch_id="long", **IDENTITY)

    assert 3 <= batch.pages <= 4  # the outside, and two or three inside pages
    assert squeezed("".join(pdf_text(batch.pdf_path)[1:])).count("合計應繳：NT$5,945") == 3
    with pytest.raises(CardError, match="does not fit the card"):
        write_batch(
            [replace(sealed, sealed=False)], out_dir=tmp_path / "b", batch_id="long", **IDENTITY
        )
