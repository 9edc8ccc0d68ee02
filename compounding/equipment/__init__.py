"""Equipment pages: the list, one piece with its calibrations, its label, the list as a workbook."""
