"""Labels: what a vial and a lot label print, their print pages, and barcodes that decode exactly."""

import io
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import cairosvg
import pytest
import zxingcpp
from PIL import Image
from testkit import PASSWORD, sign_in_session

from compounding import labels
from compounding.services import batches
from compounding.services.clock import to_clinic

SVG = re.compile(r"<svg\b.*?</svg>", re.DOTALL)


def decode(svg: str) -> list:
    png = cairosvg.svg2png(bytestring=svg.encode("utf-8"), scale=3, background_color="white")
    return zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))


def assert_decodes_to(svg: str, code: str) -> None:
    results = decode(svg)
    assert [(r.text, r.format) for r in results] == [(code, zxingcpp.BarcodeFormat.Code128)]


def label_sections(html: str) -> list[str]:
    return re.findall(r'<section class="label\b.*?</section>', html, re.DOTALL)


@pytest.fixture
def lipolytic(make_ingredient, make_lot, make_formula):
    """An approved, balanced two-active lipolytic formula with a saline vehicle, and stock for each."""
    pc = make_ingredient(name="Phosphatidylcholine", kind="active", unit="mL", strength="50 mg/mL", sterile=True)
    dc = make_ingredient(name="Sodium deoxycholate", kind="active", unit="mg", strength="", sterile=True)
    saline = make_ingredient(name="Sodium chloride 0.9 %", kind="diluent", unit="mL", strength="0.9 %",
                             sterile=True, vehicle=True)
    for ingredient in (pc, dc, saline):
        make_lot(ingredient, quantity="1000")
    return make_formula([(pc, "5"), (dc, "25"), (saline, "5")], name="Lipolytic PC/DC", unit_volume_ml="10")


@pytest.fixture
def make_batch(make_user, lipolytic):
    staff = {}

    def make(*, verify=True, formula=None, units=3):
        if not staff:
            staff["technician"] = make_user("technician", display_name="Tess Technician")
            staff["pharmacist"] = make_user("pharmacist", display_name="Vera Verifier")
        batch = batches.compound_batch(staff["technician"], (formula or lipolytic).id, units)
        if verify:
            batch = batches.verify_batch(staff["pharmacist"], batch.id, PASSWORD)
        return batch

    return make


@pytest.fixture
def reader(client, make_user):
    """A signed-in practitioner: every role may read batches, lots and their labels."""
    sign_in_session(client, make_user("practitioner"))
    return client


# --- label data -------------------------------------------------------------------------------


def test_a_batch_label_lists_each_drug_with_its_concentration_per_unit_volume_and_no_vehicle(app, make_batch):
    label = labels.batch_label(labels.load_batch(make_batch().id))

    assert [d.text for d in label.drugs] == ["Phosphatidylcholine 25 mg/mL", "Sodium deoxycholate 2.5 mg/mL"]
    assert [(d.quantity_per_unit, d.unit, d.unit_volume_ml) for d in label.drugs] == [("5", "mL", "10"),
                                                                                     ("25", "mg", "10")]
    assert "Sodium chloride 0.9 %" not in [d.name for d in label.drugs]


def test_a_batch_label_carries_the_record_as_stored(app, make_batch):
    batch = make_batch()
    label = labels.batch_label(labels.load_batch(batch.id))

    assert (label.clinic_name, label.statement) == ("Test Clinic", "Compounded preparation")
    assert (label.formula_name, label.formula_version, label.batch_code) == ("Lipolytic PC/DC", 1, batch.code)
    assert (label.unit_volume_ml, label.route, label.storage_text) == ("10", "subcutaneous", "Refrigerate 2–8 °C")
    assert (label.prepared_by, label.verified_by, label.verified) == ("Tess Technician", "Vera Verifier", True)
    last_minute = to_clinic(batch.beyond_use_at - timedelta(minutes=1))
    assert label.use_by_text == f"Use by {last_minute:%Y-%m-%d %H:%M}"
    assert label.warnings == []


def test_an_unverified_batch_label_says_not_verified_do_not_use(app, make_batch):
    label = labels.batch_label(labels.load_batch(make_batch(verify=False).id))

    assert (label.verified, label.verified_by, label.verified_text) == (False, None, "NOT VERIFIED — do not use")


def test_an_expired_batch_label_warns_not_to_use_it(app, make_batch):
    batch = make_batch()
    label = labels.batch_label(labels.load_batch(batch.id), at=batch.beyond_use_at)

    assert label.warnings == ["EXPIRED — do not use"]


@pytest.mark.parametrize("strength, unit, quantity, volume, expected", [
    ("50 mg/mL", "mL", "5", "10", "25 mg/mL"),
    ("0.9 %", "mL", "8", "10", "0.72 %"),
    ("20 mg/ml", "mL", "1", "3", "6.67 mg/mL"),
    ("5000 IU/mL", "mL", "1", "10", "500 IU/mL"),
    ("", "mg", "5", "10", "0.5 mg/mL"),
    ("", "unit", "100", "10", "10 units/mL"),
    ("2 % (20 mg/mL)", "mL", "0.5", "5", "2 mg/mL"),
    ("2 %", "mL", "0.5", "5", "0.2 %"),
    ("500 mg/5 mL", "mL", "1", "10", None),
    ("vial", "mL", "1", "10", None),
])
def test_a_final_concentration_is_derived_only_from_exact_figures(strength, unit, quantity, volume, expected):
    assert labels.final_concentration(strength, unit, Decimal(quantity), Decimal(volume)) == expected


def test_a_lot_label_carries_code_ingredient_supplier_lot_expiry_and_status(app, make_ingredient, make_lot):
    lot = make_lot(make_ingredient(name="Biotin"), supplier_lot_number="BX-77", release=False)
    label = labels.lot_label(labels.load_lot(lot.id))

    assert (label.lot_code, label.ingredient_name, label.supplier_lot_number) == (lot.code, "Biotin", "BX-77")
    assert (label.expires_on, label.status) == (lot.expires_on, "quarantine")
    assert label.warnings == ["QUARANTINE — do not use"]


def test_the_label_barcode_svg_has_no_style_attributes_and_no_ids():
    svg = labels.barcode_inline("B2611270003")

    assert " style=" not in svg and " id=" not in svg
    assert 'fill="black"' in svg


# --- print pages ------------------------------------------------------------------------------


def test_the_batch_label_page_shows_what_the_vial_needs(reader, make_batch):
    batch = make_batch()
    html = reader.get(f"/batches/{batch.id}/label?vial_to=1").get_data(as_text=True)

    last_minute = to_clinic(batch.beyond_use_at - timedelta(minutes=1))
    [section] = label_sections(html)
    assert f"Use by {last_minute:%Y-%m-%d %H:%M}" in section
    for text in ("Compounded preparation", "Lipolytic PC/DC", "v1", "Phosphatidylcholine", "25 mg/mL",
                 "Sodium deoxycholate", "2.5 mg/mL", "Refrigerate 2–8 °C", "10 mL · Subcutaneous use",
                 "Single-dose: discard unused portion"):
        assert text in section, text
    assert "Sodium chloride" not in section
    assert f'<div class="label-code-text">{batch.code}-01</div>' in section


def test_the_barcode_in_the_label_page_decodes_to_exactly_the_vial_code(reader, make_batch):
    batch = make_batch()
    html = reader.get(f"/batches/{batch.id}/label?vial_from=2&vial_to=2").get_data(as_text=True)

    [svg] = SVG.findall(html)
    assert_decodes_to(svg, f"{batch.code}-02")


def test_an_unverified_batch_label_page_says_it_is_not_verified(reader, make_batch):
    batch = make_batch(verify=False)
    html = reader.get(f"/batches/{batch.id}/label?vial_to=1").get_data(as_text=True)

    [section] = label_sections(html)
    assert "NOT VERIFIED — do not use" in section
    assert "Verified by" not in section


def test_copies_3_renders_three_labels_each_on_its_own_page(reader, make_batch):
    batch = make_batch()
    response = reader.get(f"/batches/{batch.id}/label?vial_to=1&copies=3")

    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert len(label_sections(html)) == 3
    assert "css/labels-roll.css" in html and "css/labels-a4.css" not in html


@pytest.mark.parametrize("copies", ["0", "101", "1000", "abc", "-2"])
def test_copies_outside_1_to_100_are_refused_with_400_and_nothing_to_print(reader, make_batch, copies):
    batch = make_batch()
    response = reader.get(f"/batches/{batch.id}/label?copies={copies}")

    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert label_sections(html) == []
    assert "Nothing to print" in html


def test_an_unknown_sheet_is_refused_with_400(reader, make_batch):
    response = reader.get(f"/batches/{make_batch().id}/label?sheet=letter")

    assert response.status_code == 400


def test_sheet_a4_uses_the_a4_stylesheet_and_fills_pages_of_27(reader, make_batch):
    batch = make_batch()
    response = reader.get(f"/batches/{batch.id}/label?sheet=a4&vial_to=1&copies=30")

    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "css/labels-a4.css" in html and "css/labels-roll.css" not in html
    pages = re.findall(r'<div class="a4-page a4-50x30">(.*?)\n    </div>', html, re.DOTALL)
    assert [len(label_sections(page)) for page in pages] == [27, 3]


def test_the_print_page_has_a_print_button_and_no_inline_script_or_style(reader, make_batch):
    html = reader.get(f"/batches/{make_batch().id}/label?vial_to=1").get_data(as_text=True)

    assert 'id="print-button"' in html
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == []
    assert " style=" not in html and "<style" not in html


def test_the_lot_label_page_barcode_decodes_to_the_lot_code(reader, make_ingredient, make_lot):
    lot = make_lot(make_ingredient(name="Minoxidil"), supplier_lot_number="MX-2026-01")
    html = reader.get(f"/lots/{lot.id}/label?vial_to=1").get_data(as_text=True)

    [section] = label_sections(html)
    assert "Minoxidil" in section and "MX-2026-01" in section and lot.expires_on.isoformat() in section
    assert "RELEASED" in section
    [svg] = SVG.findall(html)
    assert_decodes_to(svg, lot.code)


def test_a_visitor_is_sent_to_sign_in_from_a_label_page(client, make_batch):
    response = client.get(f"/batches/{make_batch().id}/label")

    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=")


def test_a_missing_batch_or_lot_label_page_is_404(reader):
    assert reader.get("/batches/999999/label").status_code == 404
    assert reader.get("/lots/999999/label").status_code == 404


def test_markup_in_a_formula_name_is_escaped_on_the_label(reader, make_ingredient, make_lot, make_formula,
                                                          make_batch):
    active = make_ingredient(name="Biotin <b>bold</b>", unit="mg", strength="", sterile=True)
    water = make_ingredient(name="Water for injection", kind="diluent", unit="mL", strength="", sterile=True,
                            vehicle=True)
    for ingredient in (active, water):
        make_lot(ingredient, quantity="1000")
    formula = make_formula([(active, "5"), (water, "10")], name="<script>alert(1)</script>")
    batch = make_batch(formula=formula)

    html = reader.get(f"/batches/{batch.id}/label?vial_to=1").get_data(as_text=True)

    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "Biotin &lt;b&gt;bold&lt;/b&gt;" in html


# --- API --------------------------------------------------------------------------------------


def test_the_api_barcode_svg_decodes_to_exactly_the_batch_code(reader, make_batch):
    batch = make_batch()
    response = reader.get(f"/api/v1/batches/{batch.id}/barcode.svg")

    assert response.status_code == 200
    assert response.mimetype == "image/svg+xml"
    assert_decodes_to(response.get_data(as_text=True), batch.code)


def test_the_api_lot_barcode_svg_decodes_to_exactly_the_lot_code(reader, make_lot):
    lot = make_lot()
    response = reader.get(f"/api/v1/lots/{lot.id}/barcode.svg")

    assert response.mimetype == "image/svg+xml"
    assert_decodes_to(response.get_data(as_text=True), lot.code)


def test_the_api_answers_the_label_data_as_json(reader, make_batch):
    batch = make_batch(verify=False)
    body = reader.get(f"/api/v1/batches/{batch.id}/label").get_json()

    assert body["batch_code"] == batch.code
    assert body["statement"] == "Compounded preparation"
    assert body["verified"] is False and body["verified_text"] == "NOT VERIFIED — do not use"
    assert [a["name"] for a in body["actives"]] == ["Phosphatidylcholine", "Sodium deoxycholate"]
    assert body["drugs"] == body["actives"]
    assert body["actives"][0]["quantity_per_unit"] == "5" and body["actives"][0]["concentration"] == "25 mg/mL"
    assert datetime.fromisoformat(body["beyond_use_at"]) == batch.beyond_use_at.astimezone(UTC)
    assert body["use_by_text"].startswith("Use by ")


@pytest.mark.parametrize("path", ["/api/v1/batches/999999/label", "/api/v1/batches/999999/barcode.svg",
                                  "/api/v1/lots/999999/barcode.svg"])
def test_the_api_answers_404_json_for_a_missing_record(reader, path):
    response = reader.get(path)

    assert response.status_code == 404
    assert set(response.get_json()) == {"error", "details"}


def test_the_api_refuses_a_visitor_with_401_json(client, make_batch):
    response = client.get(f"/api/v1/batches/{make_batch().id}/barcode.svg")

    assert response.status_code == 401
    assert set(response.get_json()) == {"error", "details"}


def test_the_label_routes_are_in_the_openapi_document(client):
    paths = client.get("/api/v1/openapi.json").get_json()["paths"]

    assert "BatchLabel" in paths["/api/v1/batches/{batch_id}/label"]["get"]["responses"]["200"]["content"][
        "application/json"]["schema"]["$ref"]
    assert "200" in paths["/api/v1/batches/{batch_id}/barcode.svg"]["get"]["responses"]
    assert "200" in paths["/api/v1/lots/{lot_id}/barcode.svg"]["get"]["responses"]
