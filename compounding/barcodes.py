"""Barcodes of our own codes: Code 128 as SVG on whole printer dots, readable by any scanner."""

import re

import barcode

# Lots and batches, and vials (a batch code, a hyphen, the vial's number of two or more digits).
_CODE = re.compile(r"^[A-Z][0-9]{6,12}(-[0-9]{2,4})?$")
# Storage locations: LOC0001, or a site's own code such as COLD-1 (services/sites.py).
_LOCATION_CODE = re.compile(r"^(?![LB][0-9])[A-Z][A-Z0-9-]{1,15}$")  # never read as a lot, batch or vial
# 0.25 mm is exactly 2 dots at 203 dpi (8 dots/mm) and 3 at 300 dpi: every bar prints whole.
MODULE_MM = 0.25
# Code 128 asks for at least 10 modules of white on each side.
QUIET_MODULES = 10


def code128_modules(value: str) -> str:
    """The symbol of `value` as modules, "1" black and "0" white, quiet zones excluded."""
    if not (_CODE.match(value) or _LOCATION_CODE.match(value)):
        raise ValueError(f"not one of our codes: {value!r}")
    return "".join(barcode.get("code128", value).build())


def _bars(modules: str) -> list[tuple[int, int]]:
    """(first module, width in modules) of each black bar."""
    return [(match.start(), match.end() - match.start()) for match in re.finditer("1+", modules)]


def _mm(value: float) -> str:
    return format(value, ".3f").rstrip("0").rstrip(".")


def code128_svg(value: str, *, module_height: float = 5.0, module_width: float = MODULE_MM,
                attributes: str = "") -> str:
    """An <svg> element of `value` as Code 128, sized in millimetres, its quiet zones included.

    Fills are presentation attributes and there are no element ids (a page's Content-Security-
    Policy forbids style attributes; several copies on one page must not repeat an id).
    """
    modules = code128_modules(value)
    total = len(modules) + 2 * QUIET_MODULES
    width, height = total * module_width, module_height
    rects = "".join(f'<rect x="{QUIET_MODULES + start}" y="0" width="{size}" height="1"/>'
                    for start, size in _bars(modules))
    extra = f" {attributes.strip()}" if attributes.strip() else ""
    return (f'<svg xmlns="http://www.w3.org/2000/svg"{extra} width="{_mm(width)}mm" height="{_mm(height)}mm" '
            f'viewBox="0 0 {total} 1" preserveAspectRatio="none" shape-rendering="crispEdges">'
            f'<rect width="{total}" height="1" fill="white"/><g fill="black">{rects}</g></svg>')


def code128_document(value: str, **options) -> str:
    """The same barcode as a standalone SVG document (image/svg+xml)."""
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + code128_svg(value, **options) + "\n"
