"""Supplier delivery sheets: many lots received from one .xlsx, all or nothing.

Every row is checked by the receiving rules themselves (inventory.validate_receipt, the
same as the receive form and the API), after the shape checks the receive form makes.
One bad row imports nothing; the good sheet is written in one transaction, each lot into
quarantine with its ledger and audit rows, plus one audit row naming the file.
"""

import hashlib
import io
import time
import warnings
import zipfile
from dataclasses import dataclass, field
from datetime import date, datetime

import sqlalchemy as sa
from openpyxl import load_workbook

from ..extensions import db
from ..limits import LABEL_MAX, NAME_MAX
from ..models import Ingredient, IngredientGtin, Lot, User
from . import audit
from .access import ensure_can
from .clock import utcnow
from .errors import DomainError, InvalidInput, InvalidState
from .expiry import parse_expiry
from .ingredients import normalise_gtin
from .inventory import Receipt, check_quantity, receive_lot, validate_receipt
from .sites import acting_site_id, default_location
from .transaction import transactional

MAX_IMPORT_ROWS = 2000
MAX_IMPORT_BYTES = 2 * 1024 * 1024
# A real delivery sheet unpacks to a few MB; far more is a zip bomb, refused before parsing.
MAX_UNPACKED_BYTES = 64 * 1024 * 1024
# A sheet is read within a budget whatever it declares: its dimension is the file's own claim
# (a forged one names all 17 billion cells of the grid). Each row read costs as many cells as
# its last cell's column; a run of empty rows ends the sheet; the reading has a deadline well
# inside a worker's timeout.
MAX_IMPORT_CELLS = 200_000
MAX_EMPTY_RUN = 1000
READ_SECONDS = 10


@dataclass(frozen=True)
class SheetColumn:
    key: str
    header: str
    required: bool
    help: str
    aliases: tuple[str, ...] = ()


COLUMNS = (
    SheetColumn("ingredient", "Ingredient (name or GTIN)", True,
                "The ingredient's name as in the app, or one of its GTINs.", ("ingredient", "ingredient name")),
    SheetColumn("supplier", "Supplier", True, f"1 to {NAME_MAX} characters.", ("supplier", "supplier name")),
    SheetColumn("lot_number", "Lot number", True,
                f"The supplier's lot number, 1 to {LABEL_MAX} characters, kept as typed.",
                ("lot number", "lot", "lot no", "supplier lot number", "batch number")),
    SheetColumn("expiry", "Expiry (YYYY-MM-DD or YYYY-MM)", True,
                "A date, or a month as YYYY-MM (stored as the month's last day). Expired lots are refused.",
                ("expiry", "expiry date", "expires", "expiration date", "best before")),
    SheetColumn("quantity", "Quantity", True, "In the ingredient's stock unit; greater than 0, at most 3 decimals.",
                ("quantity", "qty", "quantity received")),
    SheetColumn("coa_reference", "Certificate reference", False, "Certificate of analysis reference, optional.",
                ("certificate reference", "certificate", "coa", "coa reference",
                 "certificate of analysis reference", "certificate of analysis")),
    SheetColumn("gtin", "GTIN", False, "From the supplier's barcode, optional: 8, 12, 13 or 14 digits.",
                ("gtin", "ean", "gtin 14")),
    SheetColumn("location", "Location", False, f"Storage location, optional, at most {NAME_MAX} characters.",
                ("location", "storage location")),
)
_BY_KEY = {column.key: column for column in COLUMNS}
# Which sheet column a receiving rule's field points at.
_FIELD_COLUMN = {"ingredient_id": "ingredient", "expiry_date": "expiry", "expires_on": "expiry",
                 "supplier_lot_number": "lot_number"}


class SheetRefused(InvalidInput):
    """The file as a whole cannot be read as a delivery sheet (nothing to show row by row)."""


class RowsRefused(InvalidInput):
    """Some rows break a rule: nothing was imported. `sheet` holds every row with its errors."""

    def __init__(self, message: str, sheet: "DeliverySheet"):
        super().__init__(message, details={"rows": sheet.error_details()})
        self.sheet = sheet


@dataclass
class SheetRow:
    number: int  # the row number Excel shows
    values: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)  # column key -> message
    receipt: Receipt | None = None

    @property
    def error_list(self) -> list[str]:
        return [f"{_BY_KEY[key].header if key in _BY_KEY else 'Row'}: {message}" for key, message in
                self.errors.items()]


@dataclass
class DeliverySheet:
    filename: str
    sha256: str
    rows: list[SheetRow]
    ignored_columns: list[str] = field(default_factory=list)

    @property
    def bad_rows(self) -> list[SheetRow]:
        return [row for row in self.rows if row.errors]

    @property
    def ok(self) -> bool:
        return not self.bad_rows

    def error_details(self) -> list[dict]:
        return [{"row": row.number, "errors": row.errors} for row in self.bad_rows]

    def summary(self) -> str:
        bad = self.bad_rows
        if not bad:
            return f"{len(self.rows)} lots ready to import."
        first = bad[0]
        key, message = next(iter(first.errors.items()))
        column = _BY_KEY[key].header if key in _BY_KEY else "row"
        where = f"{len(bad)} rows have errors, the first is row" if len(bad) > 1 else "row"
        return (f"Nothing was imported: {where} {first.number}, {column}: {message} "
                "Correct the sheet and upload it again.")


# --- reading the file ----------------------------------------------------------------------


def _normalise_header(text) -> str:
    text = str(text or "").strip().lower()
    text = text.split("(")[0]
    return " ".join("".join(ch if ch.isalnum() else " " for ch in text).split())


def _cell_text(value) -> str:
    """What a person typed, as text: numbers without a spurious '.0', dates as ISO."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == datetime.min.time() else value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    return str(value).strip()


class _ReadBefore(io.BytesIO):
    """The uploaded file, which refuses to be read after a deadline: the parser reads it as it goes."""

    def __init__(self, data: bytes, seconds: float):
        super().__init__(data)
        self.deadline = time.monotonic() + seconds

    def read(self, size=-1, /) -> bytes:
        if time.monotonic() >= self.deadline:
            raise SheetRefused("This workbook took too long to read to be a delivery sheet: copy the lots into "
                               "the template (download it below) and upload that.", field="file")
        return super().read(size)


def read_sheet(data: bytes, *,
               seconds: float = READ_SECONDS) -> tuple[dict[str, int], list[str], list[tuple[int, tuple]]]:
    """The first sheet's column positions, the headers we ignore, and its non-empty rows.

    Refuses a file that is not an .xlsx workbook, an empty sheet, missing required
    columns, more than MAX_IMPORT_ROWS rows, and a sheet over the reading budget
    (MAX_IMPORT_CELLS, READ_SECONDS).
    """
    if len(data) > MAX_IMPORT_BYTES:
        raise SheetRefused(f"The file is larger than {MAX_IMPORT_BYTES // (1024 * 1024)} MB: "
                           "split the delivery into several sheets.", field="file")
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise SheetRefused("This file is not an Excel workbook (.xlsx). Save it from your spreadsheet as "
                           "“Excel Workbook (.xlsx)” and upload it again.", field="file")
    with warnings.catch_warnings():
        # openpyxl warns about spreadsheet features it skips (data validation, styles): harmless here.
        warnings.simplefilter("ignore", UserWarning)
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                if sum(info.file_size for info in archive.infolist()) > MAX_UNPACKED_BYTES:
                    raise SheetRefused("This workbook is far too large once unpacked to be a delivery sheet.",
                                       field="file")
            workbook = load_workbook(_ReadBefore(data, seconds), read_only=True, data_only=True)
            try:
                return _read_rows(workbook)
            finally:
                workbook.close()
        except SheetRefused:
            raise
        except Exception:  # an untrusted file fails in many ways; each means the same to the user
            raise SheetRefused("This file is not an Excel workbook (.xlsx) that can be read. Save it from your "
                               "spreadsheet as “Excel Workbook (.xlsx)” and upload it again.",
                               field="file") from None


def _rows_within_budget(sheet):
    """(row number, values) of the sheet's non-empty rows, numbered as Excel shows them.

    The declared dimension is ignored: each row is as wide as its last cell. A run of
    MAX_EMPTY_RUN empty rows ends the sheet (row numbers in a file can jump to any size).
    """
    if sheet is None:
        return
    sheet.reset_dimensions()
    cells = empty_run = 0
    for number, values in enumerate(sheet.iter_rows(values_only=True), 1):
        cells += len(values)
        if cells > MAX_IMPORT_CELLS:
            raise SheetRefused(
                f"The sheet is too large to read: at most {MAX_IMPORT_ROWS:,} lots in the first columns. "
                "Its cells reach far beyond the lots: delete the empty rows and columns (or copy the lots into "
                "the template) and upload it again.", field="file")
        if any(_cell_text(value) for value in values):
            empty_run = 0
            yield number, values
        else:
            empty_run += 1
            if empty_run >= MAX_EMPTY_RUN:
                return


def _read_rows(workbook) -> tuple[dict[str, int], list[str], list[tuple[int, tuple]]]:
    rows = _rows_within_budget(workbook.worksheets[0] if workbook.worksheets else None)
    header = next((values for _, values in rows), None)
    if not header:
        raise SheetRefused("The sheet is empty: the first row must name the columns "
                           f"({', '.join(c.header for c in COLUMNS)}), then one row per lot.", field="file")
    positions, ignored = {}, []
    for index, text in enumerate(header):
        name = _normalise_header(text)
        column = next((c for c in COLUMNS if name in c.aliases), None)
        if column is not None and column.key not in positions:
            positions[column.key] = index
        elif name:
            ignored.append(_cell_text(text))
    missing = [c.header for c in COLUMNS if c.required and c.key not in positions]
    if missing:
        raise SheetRefused(f"Missing column{'s' if len(missing) > 1 else ''}: {', '.join(missing)}. "
                           "The first row must name the columns (download the template).", field="file")
    found = []
    for number, values in rows:
        found.append((number, values))
        if len(found) > MAX_IMPORT_ROWS:
            raise SheetRefused(f"The sheet has more than {MAX_IMPORT_ROWS:,} lots: import at most "
                               f"{MAX_IMPORT_ROWS:,} rows at a time (split the sheet).", field="file")
    if not found:
        raise SheetRefused("The sheet has its header row but no lots under it.", field="file")
    return positions, ignored, found


# --- checking the rows ---------------------------------------------------------------------


def _ingredient_lookup():
    by_name = {i.name.lower(): i for i in db.session.scalars(sa.select(Ingredient))}
    by_gtin = dict(db.session.execute(sa.select(IngredientGtin.gtin, Ingredient)
                                      .join(Ingredient, Ingredient.id == IngredientGtin.ingredient_id)).all())
    return by_name, by_gtin


def _row_ingredient(name: str, lookups, errors: dict) -> Ingredient | None:
    """The ingredient by its name, or by its GTIN when the cell holds digits."""
    by_name, by_gtin = lookups
    if not name:
        errors["ingredient"] = "Give the ingredient's name or GTIN."
        return None
    ingredient = by_name.get(name.lower())
    if ingredient is None and name.isdigit():
        ingredient = by_gtin.get(normalise_gtin(name))
    if ingredient is None:
        errors["ingredient"] = f"No ingredient is named {name!r} or has this GTIN."
    return ingredient


def _check_row_texts(values: dict, errors: dict) -> None:
    """Required texts, their lengths, and the GTIN's shape."""
    for key, limit in (("supplier", NAME_MAX), ("lot_number", LABEL_MAX)):
        if not values[key]:
            errors[key] = "This field is required."
        elif len(values[key]) > limit:
            errors[key] = f"At most {limit} characters."
    for key in ("coa_reference", "location"):
        if len(values[key]) > NAME_MAX:
            errors[key] = f"At most {NAME_MAX} characters."
    gtin = values["gtin"]
    if gtin and not (gtin.isdigit() and 8 <= len(gtin) <= 14):
        errors["gtin"] = "8 to 14 digits."


def _row_expiry(cell, text: str, errors: dict):
    """The expiry as a date: a date cell as it is, a text cell parsed."""
    expires_on = cell
    if isinstance(expires_on, datetime):
        expires_on = expires_on.date()
    if not isinstance(expires_on, date):
        try:
            expires_on = parse_expiry(text)
        except ValueError as exc:
            errors["expiry"] = str(exc) if text else "This field is required."
    return expires_on


def _row_quantity(cell, text: str, errors: dict):
    quantity = cell
    try:
        quantity = check_quantity(_cell_text(quantity) if quantity is not None else "", "quantity")
    except DomainError as exc:
        errors["quantity"] = exc.message if text else "This field is required."
    return quantity


def _check_row(actor: User, row: SheetRow, raw: dict, lookups, received_at: datetime) -> None:
    """Shape first (as the receive form), then the receiving rules (as receive_lot)."""
    values, errors = row.values, row.errors
    ingredient = _row_ingredient(values["ingredient"], lookups, errors)
    _check_row_texts(values, errors)
    expires_on = _row_expiry(raw["expiry"], values["expiry"], errors)
    quantity = _row_quantity(raw["quantity"], values["quantity"], errors)
    if errors:
        return
    try:
        row.receipt = validate_receipt(
            actor, ingredient_id=ingredient.id, supplier=values["supplier"], supplier_lot_number=values["lot_number"],
            expires_on=expires_on, quantity=quantity, gtin=values["gtin"], coa_reference=values["coa_reference"],
            location=values["location"], received_at=received_at)
    except (InvalidInput, InvalidState) as exc:
        key = _FIELD_COLUMN.get(exc.field, exc.field) if exc.field else "row"
        errors[key] = exc.message


def check_delivery(actor: User, data: bytes, filename: str) -> DeliverySheet:
    """Read and check a delivery sheet without writing anything (the preview)."""
    ensure_can(actor, "imports.lots", "import delivery sheets")
    positions, ignored, rows = read_sheet(data)
    lookups = _ingredient_lookup()
    received_at = utcnow()
    sheet = DeliverySheet(filename=filename, sha256=hashlib.sha256(data).hexdigest(), rows=[],
                          ignored_columns=ignored)
    seen: dict[tuple, int] = {}
    for number, cells in rows:
        raw = {c.key: (cells[positions[c.key]] if c.key in positions and positions[c.key] < len(cells) else None)
               for c in COLUMNS}
        row = SheetRow(number=number, values={key: _cell_text(value) for key, value in raw.items()})
        _check_row(actor, row, raw, lookups, received_at)
        if row.receipt is not None:
            # Two rows of one sheet are checked before either is saved: catch the repeat here.
            key = (row.receipt.ingredient.id, row.receipt.supplier, row.receipt.supplier_lot_number)
            if key in seen:
                row.errors["lot_number"] = (f"Row {seen[key]} already has this lot of "
                                            f"{row.receipt.ingredient.name} from {row.receipt.supplier}.")
                row.receipt = None
            else:
                seen[key] = number
        sheet.rows.append(row)
    return sheet


@transactional
def import_delivery(actor: User, data: bytes, filename: str, site_id: int | None = None) -> list[Lot]:
    """Receive every lot of a delivery sheet into quarantine, or none, at the default location of the
    importer's acting site (`site_id`, else their first site).

    The file is read and every row checked again here (the preview's answer is not
    trusted); one bad row refuses the whole sheet. One commit: the lots, their ledger and
    audit rows, and an import audit row naming the file, its SHA-256 and the count.
    """
    ensure_can(actor, "imports.lots", "import delivery sheets")
    sheet = check_delivery(actor, data, filename)
    if not sheet.ok:
        raise RowsRefused(sheet.summary(), sheet)
    store = default_location(acting_site_id(actor, site_id))
    lots = [receive_lot(actor, **row.receipt.arguments(), location_id=store.id) for row in sheet.rows]
    audit.record(actor, "lots.imported", "delivery_sheet", None, new={
        "file": filename, "sha256": sheet.sha256, "count": len(lots), "lots": [lot.code for lot in lots],
        "location": store.code})
    return lots
