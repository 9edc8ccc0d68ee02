"""Excel: the audit workbook, list, trace and recall downloads, the delivery-sheet import."""
