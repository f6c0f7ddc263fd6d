"""Exported tables read back as text, to compare with what was exported."""

from __future__ import annotations

import csv
import io
from datetime import datetime

from odf import opendocument, table, teletype, text
from openpyxl import load_workbook

from notifier.exports.tables import Format


def read_table(data: bytes, fmt: Format) -> list[list[str]]:
    """Every cell of the first sheet as its text; dates and datetimes as ISO 8601."""
    if fmt == "csv":
        return _read_csv(data)
    if fmt == "xlsx":
        return _read_xlsx(data)
    return _read_ods(data)


def _read_csv(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def _read_xlsx(data: bytes) -> list[list[str]]:
    ws = load_workbook(io.BytesIO(data)).worksheets[0]
    rows: list[list[str]] = []
    for row in ws.iter_rows():
        cells: list[str] = []
        for cell in row:
            value = cell.value
            if isinstance(value, datetime):
                # Excel stores dates and datetimes alike; the format tells them apart.
                has_time = "h" in cell.number_format.lower()
                cells.append(value.isoformat(sep=" ") if has_time else value.date().isoformat())
            else:
                cells.append("" if value is None else str(value))
        rows.append(cells)
    return rows


def _read_ods(data: bytes) -> list[list[str]]:
    doc = opendocument.load(io.BytesIO(data))
    sheet = doc.spreadsheet.getElementsByType(table.Table)[0]
    rows: list[list[str]] = []
    for row in sheet.getElementsByType(table.TableRow):
        cells: list[str] = []
        for cell in row.getElementsByType(table.TableCell):
            if cell.getAttribute("valuetype") == "date":
                cells.append(cell.getAttribute("datevalue").replace("T", " "))
            else:
                paragraphs = cell.getElementsByType(text.P)
                cells.append("\n".join(teletype.extractText(p) for p in paragraphs))
        rows.append(cells)
    return rows
