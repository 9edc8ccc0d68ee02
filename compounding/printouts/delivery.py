"""A transfer's delivery note: the Code 128 of the transfer and of each line, to scan in on arrival."""

from markupsafe import Markup

from ..labels import barcode_inline


def delivery_barcodes(transfer_code: str, line_codes: list[str]) -> dict[str, Markup]:
    """{code: inline SVG barcode} for the transfer and each line (the same drawing as the labels')."""
    return {code: Markup(barcode_inline(code)) for code in dict.fromkeys([transfer_code, *line_codes])}
