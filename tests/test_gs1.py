"""GS1 supplier barcodes in every form scanners send them (pure: no app, no database)."""

import string
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from compounding.gs1 import GS, GS1Error, element_string, parse_gs1

GTIN = "05012345000015"
EXPECTED = {"gtin": GTIN, "lot_number": "ABC123", "expiry_date": date(2026, 11, 30), "serial": "XYZ"}


def fields(data):
    return {"gtin": data.gtin, "lot_number": data.lot_number, "expiry_date": data.expiry_date,
            "serial": data.serial}


@pytest.mark.parametrize("raw", [
    f"01{GTIN}1726113010ABC123{GS}21XYZ",  # plain, GS after the variable-length lot
    f"]C101{GTIN}1726113010ABC123{GS}21XYZ",  # GS1-128 symbology prefix
    f"]d201{GTIN}1726113010ABC123{GS}21XYZ",  # GS1 DataMatrix prefix
    f"]Q301{GTIN}1726113010ABC123{GS}21XYZ",  # GS1 QR prefix
    f"]e001{GTIN}1726113010ABC123{GS}21XYZ",  # GS1 DataBar prefix
    f"{GS}01{GTIN}1726113010ABC123{GS}21XYZ",  # a leading GS (FNC1 sent as GS)
    f"01{GTIN}1726113010ABC123{GS}21XYZ\r\n",  # the scanner's Enter
    f"(01){GTIN}(17)261130(10)ABC123(21)XYZ",  # human-readable
    f"(01){GTIN}(10)ABC123(17)261130(21)XYZ",  # human-readable, any order
    f"https://id.gs1.org/01/{GTIN}/10/ABC123/21/XYZ?17=261130",  # GS1 Digital Link
])
def test_every_scanner_form_parses_to_the_same_fields(raw):
    assert fields(parse_gs1(raw)) == EXPECTED


def test_the_clinics_substitute_separator_is_understood():
    assert fields(parse_gs1(f"]C101{GTIN}1726113010ABC123|21XYZ", separator="|")) == EXPECTED


def test_day_00_means_the_last_day_of_the_month():
    assert parse_gs1(f"01{GTIN}1728020010A").expiry_date == date(2028, 2, 29)


@pytest.mark.parametrize("raw, message", [
    ("01050123450000161726113010ABC", "check digit"),
    (f"01{GTIN}17261332", "Impossible date"),
    (f"01{GTIN}17260230", "Impossible date"),
    (f"(01){GTIN}(17)260230", "Impossible date"),
    (f"01{GTIN}|10ABC", "Unknown GS1 application identifier"),
    (f"01{GTIN}10ABC17261130", "separator after the lot is missing"),
    ("]C1", "no data"),
    ("", "Nothing was scanned"),
    ("<script>alert(1)</script>", "Unknown GS1"),
    ("9" * 5000, "too long"),
])
def test_bad_barcodes_are_refused_with_a_clear_reason(raw, message):
    with pytest.raises(GS1Error) as caught:
        parse_gs1(raw)
    assert message in str(caught.value)


def _gtin(body: str) -> str:
    digits = [int(d) for d in body]
    total = sum(d * (3 if i % 2 == 0 else 1) for i, d in enumerate(digits))
    return body + str((10 - total % 10) % 10)


lot_text = st.text(alphabet=string.ascii_uppercase + string.digits + "-/.", min_size=1, max_size=20).filter(
    lambda s: "17" not in s)


@given(body=st.text(alphabet=string.digits, min_size=13, max_size=13), lot=lot_text,
       expiry=st.dates(min_value=date(2000, 1, 1), max_value=date(2049, 12, 31)),
       serial=st.none() | st.text(alphabet=string.ascii_uppercase + string.digits, min_size=1, max_size=20),
       separator=st.sampled_from([GS, "|", "~"]), prefix=st.sampled_from(["", "]C1", "]d2", "]Q3", GS]))
def test_random_valid_fields_survive_the_round_trip(body, lot, expiry, serial, separator, prefix):
    gtin = _gtin(body)
    raw = prefix + element_string(gtin=gtin, lot_number=lot, expiry_date=expiry, serial=serial,
                                  separator=separator)
    parsed = parse_gs1(raw, separator="" if separator == GS else separator)
    assert (parsed.gtin, parsed.lot_number, parsed.expiry_date, parsed.serial) == (gtin, lot, expiry, serial)
    again = parse_gs1(parsed.hri)
    assert (again.gtin, again.lot_number, again.expiry_date, again.serial) == (gtin, lot, expiry, serial)


@given(st.text(max_size=300))
def test_junk_either_parses_or_raises_a_gs1_error_never_anything_else(junk):
    try:
        parsed = parse_gs1(junk, separator="|")
    except GS1Error as exc:
        assert str(exc)
    else:
        assert parsed.hri
