"""Supplier barcodes (GS1): one function turns any scanner's rendering into checked fields.

Scanners send the group separator as ASCII GS (0x1D), sometimes after a symbology prefix
(]C1 GS1-128, ]d2 DataMatrix, ]Q3 QR, ]e0 DataBar), sometimes replaced by a printable
character the clinic configures (GS1_SEPARATOR), sometimes as human-readable
"(01)...(17)..." text, and sometimes as a GS1 Digital Link URL. biip does the parsing;
this module normalises the input, checks every error biip reports, and refuses what a
person should look at (bad check digit, impossible date, unknown AI, swallowed fields).
"""

import re
from dataclasses import dataclass, field
from datetime import date

import biip
from biip import ParseConfig
from biip.gs1_messages import GS1Message

GS = "\x1d"
SYMBOLOGY_PREFIX = re.compile(r"^\](C1|d2|Q3|e0|C0|d1|Q1)")
# The AIs we use; other valid GS1 AIs are kept but not interpreted.
AI_GTIN, AI_LOT, AI_EXPIRY, AI_PRODUCED, AI_SERIAL = "01", "10", "17", "11", "21"
MAX_LENGTH = 512


class GS1Error(ValueError):
    """The code looks like GS1 but cannot be trusted; the message says why."""


@dataclass(frozen=True)
class GS1Data:
    gtin: str | None = None
    lot_number: str | None = None
    expiry_date: date | None = None
    production_date: date | None = None
    serial: str | None = None
    other: dict = field(default_factory=dict)
    hri: str = ""


def looks_like_gs1(raw: str) -> bool:
    text = (raw or "").strip()
    return bool(SYMBOLOGY_PREFIX.match(text) or text.startswith(("(", GS, "http://", "https://"))
                or re.match(r"^\d{2}\d", text))


def normalise(raw: str, separator: str = "") -> str:
    """Strip what scanners add around the data; turn the clinic's separator into GS."""
    text = (raw or "").strip(" \r\n\t")
    if separator and separator != GS:
        text = text.replace(separator, GS)
    text = SYMBOLOGY_PREFIX.sub("", text)
    return text.strip(GS)


def parse_gs1(raw: str, separator: str = "") -> GS1Data:
    """Parse a supplier barcode into GTIN, lot, expiry (day 00 = month's end) and serial."""
    if raw is None or not raw.strip():
        raise GS1Error("Nothing was scanned.")
    if len(raw) > MAX_LENGTH:
        raise GS1Error("This is far too long to be a GS1 barcode.")
    text = normalise(raw, separator)
    if not text:
        raise GS1Error("Only a symbology prefix or separators were received, no data.")
    if text.startswith("("):
        try:
            message = GS1Message.parse_hri(text)
        except Exception as exc:  # biip raises its own ParseError types
            raise GS1Error(_explain(f"Not a valid GS1 human-readable string: {exc}")) from None
        elements = message.element_strings
    else:
        try:
            result = biip.parse(text, config=ParseConfig(separator_chars=[GS]))
        except Exception as exc:  # biip raises on some malformed prefixes instead of reporting
            raise GS1Error(f"Not a GS1 barcode: {exc}") from None
        if result.gs1_digital_link_uri is not None:
            elements = result.gs1_digital_link_uri.element_strings
        elif result.gs1_message is not None and result.gs1_message.element_strings:
            elements = result.gs1_message.element_strings
        else:
            error = result.gs1_message_error or result.gs1_digital_link_uri_error or "not a GS1 barcode"
            raise GS1Error(_explain(error))
    return _fields(elements)


def _explain(error: str) -> str:
    if "Failed to get GS1 Application Identifier" in error:
        return f"Unknown GS1 application identifier or stray characters: {error}"
    if "date/time" in error or ("pattern" in error and ("(17)" in error or "(11)" in error)):
        return f"Impossible date in the barcode: {error}"
    return error


def _fields(elements) -> GS1Data:
    values: dict[str, object] = {}
    other = {}
    for element in elements:
        ai = element.ai.ai
        if element.gtin_error:
            raise GS1Error(f"Bad GTIN: {element.gtin_error}")
        if ai == AI_GTIN:
            values["gtin"] = element.value
        elif ai == AI_LOT:
            values["lot_number"] = element.value
        elif ai in (AI_EXPIRY, AI_PRODUCED):
            if element.date is None:
                raise GS1Error(f"Impossible date {element.value!r} in AI ({ai}).")
            values["expiry_date" if ai == AI_EXPIRY else "production_date"] = element.date
        elif ai == AI_SERIAL:
            values["serial"] = element.value
        else:
            other[ai] = element.value
    lot = values.get("lot_number")
    if lot and "expiry_date" not in values and re.search(r"17\d{6}", str(lot)):
        # A missing separator after the lot makes it swallow the AIs that follow.
        raise GS1Error(f"The lot {lot!r} seems to contain an expiry date: the separator after the lot is "
                       "missing. Check the scanner's GS1 separator setting.")
    if not values and not other:
        raise GS1Error("No GS1 data in this code.")
    hri = "".join(f"({ai}){value}" for ai, value in _ordered(values, other))
    return GS1Data(other=other, hri=hri, **values)


def _ordered(values: dict, other: dict):
    names = {"gtin": AI_GTIN, "expiry_date": AI_EXPIRY, "production_date": AI_PRODUCED,
             "lot_number": AI_LOT, "serial": AI_SERIAL}
    for key, ai in names.items():
        if key in values:
            value = values[key]
            yield ai, value.strftime("%y%m%d") if isinstance(value, date) else value
    yield from other.items()


def element_string(*, gtin: str, lot_number: str | None = None, expiry_date: date | None = None,
                   serial: str | None = None, separator: str = GS) -> str:
    """The raw element string a GS1-128 scanner would send (fixed-length AIs first)."""
    parts = [f"01{gtin}"]
    if expiry_date:
        parts.append(f"17{expiry_date:%y%m%d}")
    variable = [f"10{lot_number}" if lot_number else None, f"21{serial}" if serial else None]
    return "".join(parts) + separator.join(v for v in variable if v)
