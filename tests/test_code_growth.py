"""Lot and batch codes grow past their digits (L1000000, B...10000) and still scan and print."""

import io
import re
from pathlib import Path

import cairosvg
import pytest
import sqlalchemy as sa
import zxingcpp
from PIL import Image

from compounding.extensions import db
from compounding.models import CodeCounter, Lot
from compounding.services.clock import to_clinic, utcnow
from compounding.services.codes import BATCH_CODE, LOT_CODE

STATIC_JS = Path(__file__).resolve().parent.parent / "static" / "js"
SVG = re.compile(r"<svg\b.*?</svg>", re.DOTALL)


def set_counter(key: str, value: int) -> None:
    """The next code taken from `key` is value + 1."""
    db.session.merge(CodeCounter(key=key, value=value))
    db.session.commit()


def decoded(svg: str) -> list:
    png = cairosvg.svg2png(bytestring=svg.encode("utf-8"), scale=3, background_color="white")
    return [(r.text, r.format) for r in zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))]


def assert_scans_and_prints(client, kind: str, record, path: str) -> None:
    page = client.get(f"/scan/?code={record.code}").get_data(as_text=True)
    assert f'data-kind="{kind}" data-usable="yes"' in page
    answer = client.get(f"/api/v1/scan?code={record.code.lower()}").get_json()
    assert (answer["kind"], answer["code"], answer["id"], answer["usable"]) == (kind, record.code, record.id, True)
    # A batch prints one label per vial: its first vial's code, the batch code and "-01".
    printed = f"{record.code}-01" if kind == "batch" else record.code
    [svg] = SVG.findall(client.get(f"/{path}/{record.id}/label?vial_to=1").get_data(as_text=True))
    assert decoded(svg) == [(printed, zxingcpp.BarcodeFormat.Code128)]
    expected = [(record.code, zxingcpp.BarcodeFormat.Code128)]
    assert decoded(client.get(f"/api/v1/{path}/{record.id}/barcode.svg").get_data(as_text=True)) == expected


def test_the_millionth_lot_is_l1000000_and_scans_and_prints(client, as_role, make_lot):
    set_counter("lot", 999_999)
    lot = make_lot()
    assert lot.code == "L1000000"
    as_role("technician")
    assert_scans_and_prints(client, "lot", lot, "lots")


def test_a_days_ten_thousandth_batch_gets_five_digits_and_scans_and_prints(client, as_role, make_batch):
    day = to_clinic(utcnow()).strftime("%y%m%d")
    set_counter("batch" + day, 9_999)
    batch = make_batch()
    assert batch.code == f"B{to_clinic(batch.compounded_at):%y%m%d}10000"
    as_role("practitioner")
    assert_scans_and_prints(client, "batch", batch, "batches")


def test_seed_scale_continues_after_the_longest_lot_code_not_the_highest_string(runner, make_lot):
    set_counter("lot", 999_998)
    assert [make_lot().code, make_lot().code] == ["L999999", "L1000000"]
    set_counter("lot", 5)  # a counter behind the codes: the codes themselves say where to go on
    db.session.remove()
    result = runner.invoke(args=["seed-scale", "--lots", "3", "--batches", "4", "--sessions", "5", "--patients", "2",
                                 "--force"])
    assert result.exit_code == 0, result.output
    codes = db.session.scalars(sa.select(Lot.code).where(Lot.supplier == "Scale Supplies Ltd")).all()
    numbers = sorted(int(code[1:]) for code in codes)
    assert numbers == list(range(1_000_001, 1_000_001 + len(codes)))


@pytest.mark.parametrize(("code", "lot", "batch"), [
    ("L000001", True, False), ("L999999", True, False), ("L1000000", True, False), ("L12345678901", True, False),
    ("L00001", False, False), ("L1000000X", False, False),
    ("B2611270003", False, True), ("B26112710000", False, True), ("B261127003", False, False),
])
def test_the_code_patterns_keep_six_digits_as_a_minimum_only(code, lot, batch):
    assert (bool(LOT_CODE.match(code)), bool(BATCH_CODE.match(code))) == (lot, batch)


def test_the_browser_scripts_leave_recognising_codes_to_the_server():
    # The pages send what was scanned to /scan or /api/v1/scan as it is: a pattern of our code
    # shapes copied into a script would refuse codes that have grown past it.
    for script in STATIC_JS.glob("*.js"):
        text = script.read_text(encoding="utf-8")
        assert not re.search(r"[LB]\\d|\\d\{\d", text), script.name


def test_the_lot_list_sorted_by_code_puts_l999999_before_l1000000(client, as_role, make_lot):
    set_counter("lot", 999_998)
    first, second = make_lot(), make_lot()
    assert (first.code, second.code) == ("L999999", "L1000000")
    as_role("technician")
    page = client.get("/lots/?sort=code").get_data(as_text=True)
    assert page.index(first.code) < page.index(second.code)
    answer = client.get("/api/v1/lots?sort=code").get_json()
    codes = [item["code"] for item in answer["items"]]
    assert codes.index(first.code) < codes.index(second.code)


def test_the_dashboard_names_a_grown_batch_by_its_whole_sequence_number(make_batch):
    from compounding.services.dashboard import released_batches_by_bud

    day = to_clinic(utcnow()).strftime("%y%m%d")
    set_counter("batch" + day, 9_999)
    batch = make_batch()
    labels = released_batches_by_bud(site_ids=None)[0]
    assert any(label.startswith("10000 · ") for label in labels), (batch.code, labels)
