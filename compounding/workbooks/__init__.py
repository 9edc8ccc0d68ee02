"""Excel workbooks: the audit workbook, list, trace and recall exports, the delivery-sheet template.

Output adapters: each builder reads queries or rows and writes an .xlsx to a path or a binary
file object; none looks at a request. Large exports stream in constant memory: openpyxl's
write-only mode, rows read from the database a chunk at a time. Every text cell is a string
cell holding exactly what was typed; one a spreadsheet could take for a formula also carries the
quote-prefix style, so nothing a person typed runs when the file is opened or edited.
"""

from .audit import AUDIT_SHEETS, audit_period, audit_row_counts, audit_workbook
from .reports import (
    batch_list_workbook,
    lot_list_workbook,
    recall_workbook,
    session_list_query,
    session_list_workbook,
    trace_workbook,
)
from .template import delivery_template
from .writer import MAX_DATA_ROWS, XLSX_MIMETYPE, Column, WorkbookSummary, WorkbookWriter, safe_text

__all__ = [
    "AUDIT_SHEETS",
    "MAX_DATA_ROWS",
    "XLSX_MIMETYPE",
    "Column",
    "WorkbookSummary",
    "WorkbookWriter",
    "audit_period",
    "audit_row_counts",
    "audit_workbook",
    "batch_list_workbook",
    "delivery_template",
    "lot_list_workbook",
    "recall_workbook",
    "safe_text",
    "session_list_query",
    "session_list_workbook",
    "trace_workbook",
]
