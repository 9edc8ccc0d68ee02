"""Barcodes of our own codes: Code 128 as inline SVG, readable by any keyboard-wedge scanner."""

import io
import re

import barcode
from barcode.writer import SVGWriter

_CODE = re.compile(r"^[A-Z][0-9]{6,12}$")
_XML_DECLARATION = re.compile(r"^<\?xml[^>]*>\s*(<!DOCTYPE[^>]*>\s*)?")


def code128_svg(value: str, *, module_height: float = 8.0, module_width: float = 0.25,
                show_text: bool = False) -> str:
    """An SVG document of `value` as Code 128, sized in millimetres for labels."""
    if not _CODE.match(value):
        raise ValueError(f"not one of our codes: {value!r}")
    buffer = io.BytesIO()
    symbol = barcode.get("code128", value, writer=SVGWriter())
    symbol.write(buffer, options={
        "module_height": module_height, "module_width": module_width, "quiet_zone": 2.5,
        "write_text": show_text, "font_size": 7, "text_distance": 3, "background": "white",
        "foreground": "black",
    })
    return buffer.getvalue().decode("utf-8")


def code128_inline(value: str, **options) -> str:
    """The same SVG without its XML prologue, to embed inside an HTML page."""
    return _XML_DECLARATION.sub("", code128_svg(value, **options)).strip()
