"""The delivery-sheet template a supplier or technician fills in for the lot import."""

from collections.abc import Iterable

from openpyxl import Workbook
from openpyxl.utils import get_column_letter

from .writer import HEADER_FONT, needs_quote_prefix, safe_text


def _text(sheet, row: int, column: int, value, bold: bool = False):
    cell = sheet.cell(row=row, column=column)
    cell.value = safe_text(value)
    cell.data_type = "s"
    cell.quotePrefix = needs_quote_prefix(cell.value)
    if bold:
        cell.font = HEADER_FONT
    return cell


def delivery_template(out, columns: Iterable, ingredients: Iterable) -> None:
    """A workbook with the import's header row, text-formatted columns, and help.

    `columns`: services.imports.COLUMNS; `ingredients`: rows with name, unit, gtins, active.
    Every column but Quantity is text, so a lot number like 007 or 1E5 and a month-only
    expiry like 2027-06 stay exactly as typed.
    """
    columns = list(columns)
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "Delivery"
    for index, column in enumerate(columns, 1):
        _text(sheet, 1, index, column.header, bold=True)
        letter = get_column_letter(index)
        sheet.column_dimensions[letter].width = max(len(column.header) + 4, 16)
        # The column's format applies to what is typed later (Excel and LibreOffice).
        sheet.column_dimensions[letter].number_format = "General" if column.key == "quantity" else "@"
    sheet.freeze_panes = "A2"

    help_sheet = workbook.create_sheet("Help")
    for index, header in enumerate(("Column", "Required", "What to type"), 1):
        _text(help_sheet, 1, index, header, bold=True)
    for row, column in enumerate(columns, 2):
        _text(help_sheet, row, 1, column.header)
        _text(help_sheet, row, 2, "yes" if column.required else "no")
        _text(help_sheet, row, 3, column.help)
    notes = (
        "One row per lot, under the header row of the Delivery sheet. Empty rows are skipped.",
        "The whole sheet is imported or nothing is: a row with an error is named in the preview.",
        "Imported lots go into quarantine; a pharmacist releases each one as usual.",
        "Keep the expiry column as text for month-only expiries (2027-06): Excel turns a typed month into "
        "the 1st of that month.",
    )
    for offset, note in enumerate(notes, len(columns) + 3):
        _text(help_sheet, offset, 1, note)
    for letter, width in (("A", 34), ("B", 10), ("C", 90)):
        help_sheet.column_dimensions[letter].width = width
    help_sheet.freeze_panes = "A2"

    names = workbook.create_sheet("Ingredients")
    for index, header in enumerate(("Name", "Unit", "GTINs", "Active"), 1):
        _text(names, 1, index, header, bold=True)
    for row, ingredient in enumerate(ingredients, 2):
        _text(names, row, 1, ingredient.name)
        _text(names, row, 2, ingredient.unit)
        _text(names, row, 3, ", ".join(ingredient.gtin_list))
        _text(names, row, 4, "yes" if ingredient.active else "no (cannot be received)")
    for letter, width in (("A", 34), ("B", 8), ("C", 34), ("D", 24)):
        names.column_dimensions[letter].width = width
    names.freeze_panes = "A2"
    names.auto_filter.ref = f"A1:D{max(names.max_row, 1)}"
    workbook.save(out)
