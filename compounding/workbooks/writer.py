"""The writing machinery: typed, styled, formula-safe cells streamed into write-only sheets."""

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import Cell
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter
from openpyxl.worksheet._write_only import WriteOnlyWorksheet

from ..services.clock import clinic_zone

XLSX_MIMETYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
# Excel's limits: rows under the header row, characters in one cell.
MAX_DATA_ROWS = 1_048_575
CELL_TEXT_LIMIT = 32_767
CHUNK_ROWS = 2000
SAMPLE_ROWS = 50
PROGRESS_EVERY = 1000

# A cell starting with one of these is read by Excel (and LibreOffice) as a formula or DDE.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# Control characters XML 1.0 cannot carry (openpyxl would refuse the whole cell).
_ILLEGAL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_TRUNCATED = "… [truncated]"


def safe_text(value: Any) -> str:
    """Text as typed, fit for a cell: the one gate for every text cell.

    Characters XML cannot hold are dropped, and text past Excel's cell limit is cut with a
    marker. Nothing is put in front, so the cell holds exactly what was typed: a cell that a
    spreadsheet could take for a formula gets the quote-prefix style instead (see
    `needs_quote_prefix`).
    """
    text = value if isinstance(value, str) else str(value)
    text = _ILLEGAL_CHARACTERS.sub("", text)
    if len(text) > CELL_TEXT_LIMIT:
        text = text[: CELL_TEXT_LIMIT - len(_TRUNCATED)] + _TRUNCATED
    return text


def needs_quote_prefix(text: Any) -> bool:
    """A text starting with `= + - @`, tab or CR: shown as typed only with the quote-prefix style.

    The style (Excel's and LibreOffice's own "this cell is text") keeps an edit of the cell
    from turning it into a formula, where an apostrophe in the value would show on screen.
    """
    return isinstance(text, str) and text.startswith(_FORMULA_STARTS)


def text_cell(sheet, value: Any, column: int, bold: bool = False) -> WriteOnlyCell:
    """One string cell of a write-only sheet, quote-prefixed when its text needs it."""
    cell = WriteOnlyCell(sheet, safe_text("" if value is None else value))
    cell.data_type = "s"
    cell.quotePrefix = needs_quote_prefix(cell._value)
    if bold:
        cell.font = HEADER_FONT
    cell.column = column
    return cell


@dataclass(frozen=True)
class Column:
    """One column: its header and what it holds.

    kind: text (always the string type), code (text formatted as text, "@", for codes, lot
    numbers, GTINs and chart numbers, so an edit in Excel keeps 007 as 007), json, datetime
    (shown in the clinic's zone), date, decimal (numbers shown with 3 decimals), int, bool.
    """

    header: str
    kind: str = "text"
    number_format: str | None = None
    width: int | None = None


# kind -> (Excel cell type, number format (None: General, no style to write), fixed width or
# None to measure the sample). Text is always the string type, whatever its format.
_KINDS = {
    "text": ("s", None, None),
    "code": ("s", "@", None),
    "json": ("s", None, 60),
    "bool": ("s", None, None),
    "datetime": ("d", "yyyy-mm-dd hh:mm", 17),
    "date": ("d", "yyyy-mm-dd", 11),
    "decimal": ("n", "0.000", None),
    "int": ("n", None, None),
}
_MIN_WIDTH, _MAX_WIDTH = 8, 50
HEADER_FONT = Font(bold=True)


class _StreamingSheet(WriteOnlyWorksheet):
    """A write-only worksheet fed cells that are already typed and styled.

    openpyxl's own append() guesses each value's type, and takes a styled cell only after a
    failed conversion; for a million rows that doubles the time. SheetWriter types each
    column once instead (text is always the string type), so this sheet writes its cells as
    given. Relies on openpyxl 3.1's row hook; pyproject pins openpyxl < 3.2 and the tests
    reopen every workbook.
    """

    def _values_to_row(self, values, row_idx):
        for cell in values:
            if cell._value is not None:
                cell.row = row_idx
                yield cell


class _ColumnCell(Cell):
    """A column's cell, written again for every row with a new value: its style never changes once written.

    openpyxl looks the style up in the workbook's style list for every cell it writes (a hash of
    the style and a list search each time); a column's cell answers the id it found the first time.
    """

    __slots__ = ("_style_id", "_has_style")

    def __init__(self, worksheet):
        super().__init__(worksheet, row=1, column=1)
        self._style_id = None
        self._has_style = None

    @property
    def style_id(self):
        if self._style_id is None:
            self._style_id = Cell.style_id.fget(self)
        return self._style_id

    @property
    def has_style(self):
        if self._has_style is None:
            self._has_style = Cell.has_style.fget(self)
        return self._has_style


def _json_text(value) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


class SheetWriter:
    """Rows of one table: bold frozen header, auto-filter, typed cells, widths from a sample.

    Past `max_rows` data rows it continues on a new sheet "Title (2)" with the same header.
    """

    def __init__(self, book: "WorkbookWriter", title: str, columns: list[Column], max_rows: int = MAX_DATA_ROWS):
        self.book = book
        self.title = title
        self.columns = columns
        self.max_rows = max_rows
        self.parts: list[tuple[str, int]] = []
        self.total = 0
        self._convert = [self._converter(column) for column in columns]
        self._sample: list[list] | None = []
        self._widths: list[float] = []
        self._sheet: _StreamingSheet | None = None
        self._cells: list = []
        self._quoted: list = []
        self._rows = 0
        self._unreported = 0

    def _converter(self, column: Column) -> Callable[[Any], Any]:
        zone = self.book.zone
        # An empty text is no cell at all, as in a sheet typed by hand.
        if column.kind in ("text", "code"):
            return lambda value: safe_text(value) or None
        if column.kind == "bool":
            return lambda value: "yes" if value else "no"
        if column.kind == "json":
            return lambda value: safe_text(_json_text(value)) or None
        if column.kind == "datetime":
            return lambda value: value.astimezone(zone).replace(tzinfo=None)
        if column.kind == "date":
            return lambda value: value.date() if isinstance(value, datetime) else value
        if column.kind == "decimal":
            return lambda value: value if isinstance(value, Decimal) else Decimal(str(value))
        if column.kind == "int":
            return int
        raise ValueError(f"unknown column kind {column.kind!r}")

    def append(self, values: Iterable) -> None:
        row = [None if value is None and column.kind != "bool" else convert(value)
               for convert, column, value in zip(self._convert, self.columns, values, strict=True)]
        if self._sample is not None:
            self._sample.append(row)
            if len(self._sample) >= SAMPLE_ROWS:
                self._flush_sample()
            return
        self._write(row)

    def extend(self, rows: Iterable[Iterable]) -> None:
        for values in rows:
            self.append(values)

    def _flush_sample(self) -> None:
        sample, self._sample = self._sample or [], None
        self._widths = [self._width(index, column, sample) for index, column in enumerate(self.columns)]
        self._new_part()
        for row in sample:
            self._write(row)

    def _width(self, index: int, column: Column, sample: list[list]) -> float:
        if column.width:
            return column.width
        fixed = _KINDS[column.kind][2]
        longest = max((len(str(row[index])) for row in sample if row[index] is not None), default=0)
        longest = max(longest, fixed or 0)
        if column.kind in ("decimal", "int"):
            longest = max(longest + 4, 10)
        # A little more than the text for the filter button; never a wall-wide column.
        return min(max(len(column.header), longest, _MIN_WIDTH - 3) + 3, _MAX_WIDTH)

    def _new_part(self) -> None:
        self._finish_part()
        number = len(self.parts) + 1
        title = self.title if number == 1 else f"{self.title} ({number})"
        sheet = self.book.new_sheet(title)
        for index, width in enumerate(self._widths, 1):
            sheet.column_dimensions[get_column_letter(index)].width = width
        sheet.freeze_panes = "A2"
        sheet.append([text_cell(sheet, column.header, index, bold=True)
                      for index, column in enumerate(self.columns, 1)])
        self._cells, self._quoted = [], []
        for index, column in enumerate(self.columns, 1):
            data_type, number_format, _ = _KINDS[column.kind]
            cells = []
            for quoted in (False, True):
                cell = _ColumnCell(sheet)
                if column.number_format or number_format:
                    cell.number_format = column.number_format or number_format
                cell.data_type = data_type
                cell.quotePrefix = quoted
                cell.column = index
                cells.append(cell)
            self._cells.append(cells[0])
            # Only text columns can hold a formula-like text; the others never need the quoted cell.
            self._quoted.append(cells[1] if data_type == "s" else None)
        self._sheet, self._rows = sheet, 0

    def _write(self, row: list) -> None:
        if self._sheet is None or self._rows >= self.max_rows:
            self._new_part()
        cells = self._cells
        if any(map(needs_quote_prefix, row)):
            cells = [quoted if quoted is not None and needs_quote_prefix(value) else plain
                     for plain, quoted, value in zip(self._cells, self._quoted, row, strict=True)]
        for cell, value in zip(cells, row, strict=True):
            # Typed per column: the string type for text, so nothing becomes a formula.
            cell._value = value
        self._sheet.append(cells)
        self._rows += 1
        self.total += 1
        self._unreported += 1
        if self._unreported >= PROGRESS_EVERY:
            self._report()

    def _report(self) -> None:
        if self._unreported and self.book.progress is not None:
            self.book.progress(self._unreported)
        self._unreported = 0

    def _finish_part(self) -> None:
        if self._sheet is None:
            return
        last = get_column_letter(len(self.columns))
        self._sheet.auto_filter.ref = f"A1:{last}{self._rows + 1}"
        self.parts.append((self._sheet.title, self._rows))
        self._sheet = None

    def close(self) -> list[tuple[str, int]]:
        if self._sample is not None:
            self._flush_sample()
        if self._sheet is None and not self.parts:
            self._new_part()
        self._finish_part()
        self._report()
        return self.parts


class WorkbookWriter:
    """A write-only workbook of SheetWriters (and an optional cover written last, shown first)."""

    def __init__(self, zone: ZoneInfo | None = None, progress: Callable[[int], None] | None = None):
        self.workbook = Workbook(write_only=True)
        self.zone = zone or clinic_zone()
        self.progress = progress
        self.parts: list[tuple[str, int]] = []

    def new_sheet(self, title: str) -> _StreamingSheet:
        sheet = _StreamingSheet(parent=self.workbook, title=title)
        self.workbook._add_sheet(sheet)
        return sheet

    def cover(self, title: str = "Cover") -> "CoverSheet":
        return CoverSheet(self, title)

    def table(self, title: str, columns: list[Column], rows: Iterable[Iterable] = (),
              max_rows: int = MAX_DATA_ROWS) -> list[tuple[str, int]]:
        writer = SheetWriter(self, title, columns, max_rows)
        writer.extend(rows)
        parts = writer.close()
        self.parts.extend(parts)
        return parts

    def save(self, out) -> None:
        self.workbook.save(out)


class CoverSheet:
    """A label / value sheet; created first so it opens first, filled when the counts are known."""

    def __init__(self, book: WorkbookWriter, title: str):
        self.book = book
        self.sheet = book.new_sheet(title)
        self.sheet.column_dimensions["A"].width = 34
        self.sheet.column_dimensions["B"].width = 48
        self.sheet.column_dimensions["C"].width = 14

    def _cell(self, value, bold: bool = False, column: int = 1):
        cell = WriteOnlyCell(self.sheet)
        if isinstance(value, datetime):
            cell._value = value.astimezone(self.book.zone).replace(tzinfo=None)
            cell.data_type, cell.number_format = "d", "yyyy-mm-dd hh:mm"
        elif isinstance(value, date):
            cell._value, cell.data_type, cell.number_format = value, "d", "yyyy-mm-dd"
        elif isinstance(value, int | Decimal) and not isinstance(value, bool):
            cell._value, cell.data_type, cell.number_format = value, "n", "#,##0"
        else:
            return text_cell(self.sheet, value, column, bold)
        if bold:
            cell.font = HEADER_FONT
        cell.column = column
        return cell

    def row(self, *values) -> None:
        """A row whose first cell is a bold label."""
        self.sheet.append([self._cell(value, index == 1, index) for index, value in enumerate(values, 1)])

    def header(self, *values) -> None:
        self.sheet.append([self._cell(value, True, index) for index, value in enumerate(values, 1)])

    def counts(self, parts: list[tuple[str, int]]) -> None:
        self.row()
        self.header("Sheet", "Rows")
        for title, rows in parts:
            self.sheet.append([self._cell(title, column=1), self._cell(rows, column=2)])


@dataclass
class WorkbookSummary:
    """What a builder wrote: (sheet title, data rows) in sheet order."""

    parts: list[tuple[str, int]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(rows for _, rows in self.parts)


def zone_label(label: str, zone: ZoneInfo) -> str:
    """A header for clinic times, e.g. "Received (Europe/London)"."""
    return f"{label} ({zone.key})"
