"""Tables as files agents download: CSV, XLSX (Excel) or ODS (LibreOffice Calc).

Every format gets the same cells: text with formula-like starts neutralised,
ints and floats as numbers, dates and datetimes as date cells (ISO text in
CSV), ``None`` as an empty cell.
"""

from __future__ import annotations

import csv
import io
import math
import re
import unicodedata
import zipfile
from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Literal, TypeAlias
from xml.sax.saxutils import escape as xml_escape

from odf import number, style, table, teletype, text
from odf.opendocument import OpenDocumentSpreadsheet
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Alignment, Font
from openpyxl.utils import get_column_letter

if TYPE_CHECKING:
    from openpyxl.cell import Cell as XlsxCell
    from openpyxl.worksheet._write_only import WriteOnlyWorksheet

__all__ = ["FORMATS", "MEDIA_TYPES", "Cell", "Format", "write_table"]

Cell: TypeAlias = str | int | float | date | datetime | None
Format: TypeAlias = Literal["csv", "xlsx", "ods"]

FORMATS: tuple[Format, ...] = ("csv", "xlsx", "ods")
MEDIA_TYPES: dict[Format, str] = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "ods": "application/vnd.oasis.opendocument.spreadsheet",
}

# Spreadsheets run a cell that starts with one of these as a formula, even
# one read from a CSV (=HYPERLINK to leak data, =cmd|… DDE to run programs),
# and names, addresses and notes come from customers: a leading ' makes such
# a cell plain text, as OWASP recommends
# (https://owasp.org/www-community/attacks/CSV_Injection). Numbers stay numbers.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# Control characters that XML, and so XLSX and ODS, cannot hold at all.
_NOT_IN_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")
# Excel's limits on a sheet's name.
_SHEET_NAME_MAX = 31
_NOT_IN_SHEET_NAME = re.compile(r"[\[\]:*?/\\]")
# Column widths in characters of the default font.
_MIN_WIDTH, _MAX_WIDTH = 6, 60

_Rows: TypeAlias = list[list[Cell]]


def write_table(
    headers: Sequence[str],
    rows: Iterable[Sequence[Cell]],
    fmt: Format,
    *,
    sheet: str = "list",
) -> bytes:
    """The table as a file of format ``fmt``."""
    writer = _WRITERS.get(fmt)
    if writer is None:
        raise ValueError(f"unknown export format {fmt!r}; known formats: {', '.join(FORMATS)}")
    if not sheet or len(sheet) > _SHEET_NAME_MAX or _NOT_IN_SHEET_NAME.search(sheet):
        raise ValueError(
            f"sheet name {sheet!r} must be 1 to {_SHEET_NAME_MAX} characters without []:*?/\\"
        )
    return writer([_safe_text(h) for h in headers], _checked(len(headers), rows), sheet)


def _checked(width: int, rows: Iterable[Sequence[Cell]]) -> _Rows:
    """The rows as lists of cells ready for any format, or a ValueError naming the bad row."""
    checked: _Rows = []
    for row_no, row in enumerate(rows, start=1):
        if len(row) != width:
            raise ValueError(f"row {row_no} has {len(row)} cells but there are {width} headers")
        checked.append([_cell(value, row_no) for value in row])
    return checked


def _cell(value: Cell, row_no: int) -> Cell:
    if isinstance(value, str):
        return _safe_text(value)
    if isinstance(value, bool):
        raise TypeError(f"row {row_no}: write {value!r} as words the agents read, not a bool")
    if isinstance(value, datetime):
        if value.utcoffset() is not None:
            # Spreadsheets have no time zones: the caller picks the agents' one.
            raise ValueError(f"row {row_no}: {value!r} has a time zone; pass local, naive times")
        return value.replace(microsecond=0)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"row {row_no}: {value!r} is no number a spreadsheet can hold")
    if value is None or isinstance(value, int | float | date):
        return value
    raise TypeError(f"row {row_no}: cannot export {type(value).__name__} {value!r}")


def _safe_text(value: str) -> str:
    value = _NOT_IN_XML.sub("", value)
    if value.startswith(_FORMULA_STARTS):
        value = "'" + value
    # Forms send CRLF; XML reads a bare CR as LF anyway, and Excel breaks lines on LF.
    return value.replace("\r\n", "\n").replace("\r", "\n")


def _text(value: Cell) -> str:
    """A cell as CSV shows it, and as the other formats show it as text."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        return f"{value:.16g}"  # as openpyxl writes it, so 3.0 reads "3" everywhere
    return str(value)


def _widths(headers: list[str], rows: _Rows) -> list[int]:
    """Each column's width in characters: its longest line, CJK characters counting double."""
    widths = [_display_width(h) for h in headers]
    for row in rows:
        for i, value in enumerate(row):
            widths[i] = max(widths[i], _display_width(_text(value)))
    return [min(max(w + 2, _MIN_WIDTH), _MAX_WIDTH) for w in widths]


def _display_width(value: str) -> int:
    if value.isascii():
        return max(len(line) for line in value.split("\n"))
    return max(
        sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in line)
        for line in value.split("\n")
    )


def _csv(headers: list[str], rows: _Rows, sheet: str) -> bytes:
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(headers)
    writer.writerows([_text(value) for value in row] for row in rows)
    # The BOM is how Excel tells UTF-8 from the system's code page (Big5 here).
    return out.getvalue().encode("utf-8-sig")


def _xlsx(headers: list[str], rows: _Rows, sheet: str) -> bytes:
    # A write-only workbook streams rows out as they come: several times
    # faster than the ordinary one, at the price of column settings first.
    workbook = Workbook(write_only=True)
    ws = workbook.create_sheet(title=sheet)
    for i, width in enumerate(_widths(headers, rows), start=1):
        ws.column_dimensions[get_column_letter(i)].width = width
    ws.freeze_panes = "A2"

    bold = Font(bold=True)
    ws.append([_xlsx_cell(ws, h, font=bold) for h in headers])
    for row in rows:
        ws.append([_xlsx_value(ws, value) for value in row])

    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


_WRAP = Alignment(wrap_text=True, vertical="top")


def _xlsx_value(ws: WriteOnlyWorksheet, value: Cell) -> Cell | XlsxCell:
    """Most cells go as plain values; only those that need a style become cells."""
    if isinstance(value, datetime):
        return _xlsx_cell(ws, value, number_format="yyyy-mm-dd hh:mm:ss")
    if isinstance(value, date):
        return _xlsx_cell(ws, value, number_format="yyyy-mm-dd")
    if isinstance(value, str) and "\n" in value:
        return _xlsx_cell(ws, value, alignment=_WRAP)
    return value


def _xlsx_cell(
    ws: WriteOnlyWorksheet,
    value: Cell,
    *,
    font: Font | None = None,
    alignment: Alignment | None = None,
    number_format: str | None = None,
) -> XlsxCell:
    cell = WriteOnlyCell(ws)
    cell.value = value  # the stubs' WriteOnlyCell(ws, value) leaves out dates
    if font:
        cell.font = font
    if alignment:
        cell.alignment = alignment
    if number_format:
        cell.number_format = number_format
    return cell


def _ods(headers: list[str], rows: _Rows, sheet: str) -> bytes:
    """odfpy writes the document (styles, columns, header row, the package); the data
    rows go in as text, which is ten times faster than an odfpy element per cell
    (7 s for 10,000 rows × 11 columns, then 0.7 s)."""
    doc = OpenDocumentSpreadsheet()
    styles = _ods_styles(doc)
    sheet_table = table.Table(name=sheet)
    for i, width in enumerate(_widths(headers, rows)):
        # A character of the default 10 pt font is about 0.2 cm wide.
        column_style = style.Style(name=f"col{i}", family="table-column")
        column_style.addElement(style.TableColumnProperties(columnwidth=f"{width * 0.2:.2f}cm"))
        doc.automaticstyles.addElement(column_style)
        sheet_table.addElement(table.TableColumn(stylename=column_style))

    header_row = table.TableRow()
    for h in headers:
        header_row.addElement(_ods_text_cell(h, styles["header"]))
    sheet_table.addElement(header_row)
    doc.spreadsheet.addElement(sheet_table)

    packed = io.BytesIO()
    doc.write(packed)
    body = "".join(
        "<table:table-row>" + "".join(_ods_cell_xml(value) for value in row) + "</table:table-row>"
        for row in rows
    )
    return _with_rows(packed.getvalue(), body)


def _with_rows(package: bytes, rows_xml: str) -> bytes:
    """The package with ``rows_xml`` added at the end of its one table."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(package)) as source, zipfile.ZipFile(out, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "content.xml":
                content = data.decode("utf-8")
                end = content.rindex("</table:table>")
                data = (content[:end] + rows_xml + content[end:]).encode("utf-8")
            # The mimetype entry stays first and stored, as ODF requires.
            target.writestr(item, data, compress_type=item.compress_type)
    return out.getvalue()


def _ods_cell_xml(value: Cell) -> str:
    """One cell as ODF XML; the same cells :func:`_ods_text_cell` and the styles make."""
    if value is None:
        return "<table:table-cell/>"
    if isinstance(value, str):
        styled = ' table:style-name="wrap"' if "\n" in value else ""
        paragraphs = "".join(f"<text:p>{_odf_text(line)}</text:p>" for line in value.split("\n"))
        return (
            f'<table:table-cell office:value-type="string"{styled}>{paragraphs}</table:table-cell>'
        )
    shown = xml_escape(_text(value))
    if isinstance(value, date):
        kind = "datetime" if isinstance(value, datetime) else "date"
        return (
            f'<table:table-cell office:value-type="date" office:date-value="{value.isoformat()}" '
            f'table:style-name="{kind}"><text:p>{shown}</text:p></table:table-cell>'
        )
    return (
        f'<table:table-cell office:value-type="float" office:value="{shown}">'
        f"<text:p>{shown}</text:p></table:table-cell>"
    )


def _odf_text(line: str) -> str:
    """A line of text in a paragraph: runs of spaces and tabs as ODF's own elements."""
    parts = re.split(r"(\t| {2,})", line)
    out = []
    for part in parts:
        if part == "\t":
            out.append("<text:tab/>")
        elif part.startswith("  "):
            out.append(f' <text:s text:c="{len(part) - 1}"/>')
        else:
            out.append(xml_escape(part))
    return "".join(out)


def _ods_styles(doc: OpenDocumentSpreadsheet) -> dict[str, style.Style]:
    """Cell styles: a bold header, wrapped text, ISO dates and datetimes."""
    header = style.Style(name="header", family="table-cell")
    header.addElement(style.TextProperties(fontweight="bold"))
    wrap = style.Style(name="wrap", family="table-cell")
    wrap.addElement(style.TableCellProperties(wrapoption="wrap", verticalalign="top"))
    iso_date = _ods_date_style("iso-date", with_time=False)
    iso_datetime = _ods_date_style("iso-datetime", with_time=True)
    on_date = style.Style(name="date", family="table-cell", datastylename=iso_date)
    on_datetime = style.Style(name="datetime", family="table-cell", datastylename=iso_datetime)
    for element in (iso_date, iso_datetime, header, wrap, on_date, on_datetime):
        doc.automaticstyles.addElement(element)
    return {"header": header, "wrap": wrap, "date": on_date, "datetime": on_datetime}


def _ods_date_style(name: str, *, with_time: bool) -> number.DateStyle:
    """``2024-05-01``, or ``2024-05-01 09:30:00`` with the time."""
    parts = [number.Year(style="long"), number.Text(text="-"), number.Month(style="long")]
    parts += [number.Text(text="-"), number.Day(style="long")]
    if with_time:
        parts += [number.Text(text=" "), number.Hours(style="long"), number.Text(text=":")]
        parts += [number.Minutes(style="long"), number.Text(text=":"), number.Seconds(style="long")]
    date_style = number.DateStyle(name=name)
    for part in parts:
        date_style.addElement(part)
    return date_style


def _ods_text_cell(value: str, cell_style: style.Style | None) -> table.TableCell:
    cell = (
        table.TableCell(valuetype="string", stylename=cell_style)
        if cell_style
        else table.TableCell(valuetype="string")
    )
    # One paragraph a line, as Calc writes them; runs of spaces and tabs
    # need elements of their own or readers collapse them.
    for line in value.split("\n"):
        paragraph = text.P()
        if "  " in line or "\t" in line:
            teletype.addTextToElement(paragraph, line)
        elif line:
            paragraph.addText(line)
        cell.addElement(paragraph)
    return cell


_WRITERS: dict[str, Callable[[list[str], _Rows, str], bytes]] = {
    "csv": _csv,
    "xlsx": _xlsx,
    "ods": _ods,
}
