"""The container label's content (DESIGN 10.2): every drug with its concentration, from the batch's copy.

Each test is a finding of issue 16 tried as a pharmacist would: lidocaine left out, a legacy
unbalanced formula overstated, a reprint changed by an ingredient edit, "Use by ... 00:00",
storage without light, and what must fit at >= 6 pt on 50 x 30 mm or move to the record.
"""

import io
import re
from dataclasses import asdict
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import cairosvg
import pytest
import sqlalchemy as sa
import zxingcpp
from PIL import Image
from testkit import sign_in_session

from compounding import barcodes, labels
from compounding.extensions import db
from compounding.models import Batch, BatchComponent
from compounding.services import ingredients
from compounding.services.clock import clinic_today

SVG = re.compile(r"<svg\b.*?</svg>", re.DOTALL)
DOTS_PER_MM = 8  # 203 dpi


def label_sections(html: str) -> list[str]:
    return re.findall(r'<section class="label\b.*?</section>', html, re.DOTALL)


def visible_text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).strip()


@pytest.fixture
def reader(client, make_user):
    sign_in_session(client, make_user("practitioner"))
    return client


@pytest.fixture
def stocked(make_ingredient, make_lot):
    """Sterile ingredients with a released lot each, made through the services."""

    def make(name, unit, strength, *, kind="active", vehicle=False, light=False):
        ingredient = make_ingredient(name=name, kind=kind, unit=unit, strength=strength, sterile=True,
                                     vehicle=vehicle, protect_from_light=light)
        make_lot(ingredient, quantity="1000", supplier_lot_number=f"SUP-{name[:4].upper()}")
        return ingredient

    return make


@pytest.fixture
def vitamin_c(stocked, make_formula):
    """Vitamin C + hyaluronic acid + lidocaine (a "diluent" by kind) in a 5 mL vial, water to volume."""
    ascorbic = stocked("Ascorbic acid", "mL", "100 mg/mL", light=True)
    hyaluronic = stocked("Hyaluronic acid", "mL", "10 mg/mL")
    lidocaine = stocked("Lidocaine", "mL", "2 % (20 mg/mL)", kind="diluent")
    water = stocked("Water for injection", "mL", "", kind="diluent", vehicle=True)
    return make_formula([(ascorbic, "1"), (hyaluronic, "2"), (lidocaine, "0.5"), (water, "1.5")],
                        name="Mesolift vitamin C + HA", route="intradermal", unit_label="vial 5 mL",
                        unit_volume_ml="5", storage="fridge", protect_from_light=True)


@pytest.fixture
def lipolytic(stocked, make_formula):
    """Phosphatidylcholine + deoxycholate + lidocaine, saline to volume, refrigerated, kept from light."""
    pc = stocked("Phosphatidylcholine", "mL", "50 mg/mL")
    dc = stocked("Sodium deoxycholate", "mL", "25 mg/mL")
    lidocaine = stocked("Lidocaine", "mL", "20 mg/mL", kind="diluent")
    saline = stocked("Sodium chloride 0.9 %", "mL", "0.9 %", kind="diluent", vehicle=True)
    return make_formula([(pc, "5"), (dc, "2.5"), (lidocaine, "1"), (saline, "1.5")],
                        name="Lipolytic PC/DC + lidocaine", unit_volume_ml="10", storage="fridge",
                        protect_from_light=True)


def label_of(batch) -> labels.BatchLabel:
    return labels.batch_label(labels.load_batch(batch.id))


# --- every drug, with its concentration -------------------------------------------------------------


def test_the_vitamin_c_label_carries_lidocaine_and_every_drug_but_the_vehicle(app, vitamin_c, make_batch):
    label = label_of(make_batch(vitamin_c))

    assert [d.text for d in label.drugs] == ["Ascorbic acid 20 mg/mL", "Hyaluronic acid 4 mg/mL",
                                             "Lidocaine 2 mg/mL"]
    assert "Water for injection" not in [d.name for d in label.drugs]


def test_the_vitamin_c_label_page_prints_lidocaine_with_its_concentration(reader, vitamin_c, make_batch):
    batch = make_batch(vitamin_c)
    [section] = label_sections(reader.get(f"/batches/{batch.id}/label?vial_to=1").get_data(as_text=True))

    text = visible_text(section)
    for drug in ("Ascorbic acid 20 mg/mL", "Hyaluronic acid 4 mg/mL", "Lidocaine 2 mg/mL"):
        assert drug in text, drug
    assert "Water for injection" not in text


def test_a_solid_is_its_amount_over_the_unit_volume(app, stocked, make_formula, make_batch):
    biotin = stocked("Biotin", "mg", "")
    water = stocked("Water for injection", "mL", "", kind="diluent", vehicle=True)
    label = label_of(make_batch(make_formula([(biotin, "25"), (water, "5")], unit_volume_ml="5")))

    assert [(d.text, d.quantity_per_unit, d.unit) for d in label.drugs] == [("Biotin 5 mg/mL", "25", "mg")]


def test_a_legacy_unbalanced_batch_is_divided_by_the_liquid_really_mixed(app, stocked, make_formula, make_batch):
    hyaluronic = stocked("Hyaluronic acid", "mL", "10 mg/mL")
    saline = stocked("Sodium chloride 0.9 %", "mL", "0.9 %", kind="diluent", vehicle=True)
    batch = make_batch(make_formula([(hyaluronic, "4"), (saline, "1")], unit_volume_ml="5"), units=2)
    # As recorded before formulas had to balance: 4 mL HA + 4 mL saline for a "5 mL" vial.
    db.session.execute(sa.update(BatchComponent).where(BatchComponent.batch_id == batch.id,
                                                       BatchComponent.ingredient_id == saline.id)
                       .values(quantity=Decimal("8"), theoretical_quantity=Decimal("8")))
    db.session.commit()
    db.session.expire_all()

    [drug] = label_of(batch).drugs

    assert (drug.text, drug.unit_volume_ml) == ("Hyaluronic acid 5 mg/mL", "8")


def test_a_balanced_batch_is_divided_by_the_unit_volume(app, stocked, make_formula, make_batch):
    hyaluronic = stocked("Hyaluronic acid", "mL", "10 mg/mL")
    saline = stocked("Sodium chloride 0.9 %", "mL", "0.9 %", kind="diluent", vehicle=True)
    [drug] = label_of(make_batch(make_formula([(hyaluronic, "4"), (saline, "1")], unit_volume_ml="5"))).drugs

    assert (drug.text, drug.unit_volume_ml) == ("Hyaluronic acid 8 mg/mL", "5")


def copy(ingredient_id, unit, quantity, theoretical, strength="10 mg/mL", vehicle=False):
    return BatchComponent(ingredient_id=ingredient_id, ingredient_name=f"I{ingredient_id}", ingredient_kind="active",
                          ingredient_strength=strength, ingredient_unit=unit, ingredient_vehicle=vehicle,
                          quantity=Decimal(quantity), theoretical_quantity=Decimal(theoretical))


@pytest.mark.parametrize("components, expected", [
    ([copy(1, "mL", "8", "8"), copy(2, "mL", "2", "2")], "5"),  # balanced: the unit volume
    ([copy(1, "mL", "8", "8"), copy(2, "mL", "8", "8")], "8"),  # more than the unit: what was mixed
    ([copy(1, "mL", "4", "4")], "2"),  # less than the unit: what was mixed
    ([copy(1, "mg", "50", "50")], "5"),  # no liquid counted: the unit volume
    # A deviation on a balanced formula (a little more drawn) keeps the unit volume of the vial.
    ([copy(1, "mL", "8.2", "8"), copy(2, "mL", "2", "2")], "5"),
])
def test_the_volume_a_concentration_is_worked_out_over(components, expected):
    contents = labels.unit_contents(components, 2)

    assert labels.amount_text(labels.mixed_volume(contents, Decimal("5"))) == expected


def test_two_lots_of_one_ingredient_make_one_line(app, stocked, make_ingredient, make_lot, make_formula,
                                                  make_batch):
    pc = make_ingredient(name="Phosphatidylcholine", unit="mL", strength="50 mg/mL", sterile=True)
    for _ in range(2):  # ten units need 50 mL: both lots are drawn
        make_lot(pc, quantity="30")
    saline = stocked("Sodium chloride 0.9 %", "mL", "0.9 %", kind="diluent", vehicle=True)
    batch = make_batch(make_formula([(pc, "5"), (saline, "5")]), units=10)

    lots = db.session.scalars(sa.select(BatchComponent.lot_code).where(BatchComponent.batch_id == batch.id,
                                                                       BatchComponent.ingredient_id == pc.id)).all()
    assert len(lots) == 2
    assert [d.text for d in label_of(batch).drugs] == ["Phosphatidylcholine 25 mg/mL"]


# --- the copy, never the ingredient -----------------------------------------------------------------


def test_editing_an_ingredient_after_compounding_changes_nothing_on_the_label(reader, lipolytic, make_batch,
                                                                            make_user):
    batch = make_batch(lipolytic)
    before = asdict(label_of(batch))
    [html_before] = label_sections(reader.get(f"/batches/{batch.id}/label?size=57x32&vial_to=1").get_data(as_text=True))
    record_before = reader.get(f"/batches/{batch.id}/record").get_data(as_text=True)
    pc = next(c.ingredient for c in lipolytic.components if c.ingredient.name == "Phosphatidylcholine")
    saline = next(c.ingredient for c in lipolytic.components if c.ingredient.vehicle)

    editor = make_user("pharmacist")
    ingredients.update_ingredient(editor, pc, {
        "name": "Phosphatidylcholine (new supplier)", "kind": "diluent", "unit": "mL",
        "strength": "100 mg/mL", "storage": "room", "reorder_level": "0", "gtins": [],
        "protect_from_light": False, "vehicle": True})
    ingredients.update_ingredient(editor, saline, {
        "name": "Saline", "kind": "diluent", "unit": "mL", "strength": "0.9 %", "storage": "room",
        "reorder_level": "0", "gtins": [], "vehicle": False})
    db.session.expire_all()

    assert asdict(label_of(batch)) == before
    [html_after] = label_sections(reader.get(f"/batches/{batch.id}/label?size=57x32&vial_to=1").get_data(as_text=True))
    assert html_after == html_before
    assert "Phosphatidylcholine 25 mg/mL" in visible_text(html_after)
    assert reader.get(f"/batches/{batch.id}/record").get_data(as_text=True) == record_before


# --- use by, storage, dose --------------------------------------------------------------------------


@pytest.mark.parametrize("instant, printed", [
    (datetime(2026, 12, 12, 0, 0, tzinfo=UTC), "2026-12-11 23:59"),  # London in winter is UTC
    (datetime(2026, 7, 1, 23, 0, tzinfo=UTC), "2026-07-01 23:59"),  # midnight BST
    (datetime(2026, 12, 12, 10, 23, 45, tzinfo=UTC), "2026-12-12 10:22"),  # the last whole minute
])
def test_use_by_is_the_last_usable_minute_before_the_exclusive_instant(app, instant, printed):
    assert f"{labels.last_usable_minute(instant):%Y-%m-%d %H:%M}" == printed


def test_a_batch_usable_through_a_day_says_use_by_23_59_not_the_next_days_00_00(reader, lipolytic, make_batch):
    batch = make_batch(lipolytic)
    day = clinic_today() + timedelta(days=3)
    midnight = datetime.combine(day + timedelta(days=1), time.min, tzinfo=ZoneInfo("Europe/London"))
    db.session.execute(sa.update(Batch).where(Batch.id == batch.id).values(beyond_use_at=midnight.astimezone(UTC)))
    db.session.commit()
    db.session.expire_all()

    label = label_of(batch)
    [section] = label_sections(reader.get(f"/batches/{batch.id}/label?vial_to=1").get_data(as_text=True))

    assert label.use_by_text == f"Use by {day.isoformat()} 23:59"
    assert f"Use by {day.isoformat()} 23:59" in section
    assert "00:00" not in section


def test_the_refrigerated_vitamin_c_label_says_refrigerate_and_protect_from_light(reader, vitamin_c, make_batch):
    batch = make_batch(vitamin_c)
    label = label_of(batch)
    [section] = label_sections(reader.get(f"/batches/{batch.id}/label?vial_to=1").get_data(as_text=True))

    assert (label.protect_from_light, label.storage_lines) == (True, ["Refrigerate 2–8 °C", "Protect from light"])
    assert "Refrigerate 2–8 °C · Protect from light" in visible_text(section)


@pytest.mark.parametrize("storage, light, lines", [
    ("room", False, []),
    ("room", True, ["Protect from light"]),
    ("fridge", False, ["Refrigerate 2–8 °C"]),
    ("freezer", True, ["Freeze −25 to −10 °C", "Protect from light"]),
])
def test_storage_prints_the_temperature_unless_room_and_light_whenever_flagged(storage, light, lines):
    assert labels.storage_lines(storage, light) == lines


def test_a_room_temperature_label_prints_no_storage_line(reader, stocked, make_formula, make_batch):
    minoxidil = stocked("Minoxidil", "mL", "5 mg/mL")
    saline = stocked("Sodium chloride 0.9 %", "mL", "0.9 %", kind="diluent", vehicle=True)
    batch = make_batch(make_formula([(minoxidil, "2"), (saline, "3")], unit_volume_ml="5", storage="room",
                                    bud_category="category_1"))
    [section] = label_sections(reader.get(f"/batches/{batch.id}/label?vial_to=1").get_data(as_text=True))

    assert label_of(batch).storage_lines == []
    assert "label-storage" not in section and "20–25 °C" not in section


def test_the_dose_statement_is_a_field_of_the_label_and_printed(reader, lipolytic, make_batch):
    batch = make_batch(lipolytic)
    label = label_of(batch)
    [section] = label_sections(reader.get(f"/batches/{batch.id}/label?vial_to=1").get_data(as_text=True))

    assert (label.dose, label.dose_statement) == ("single", "Single-dose: discard unused portion")
    assert "Single-dose: discard unused portion" in section


# --- what goes where --------------------------------------------------------------------------------


def test_the_50x30_label_carries_only_the_container_content(reader, lipolytic, make_batch):
    batch = make_batch(lipolytic)
    label = label_of(batch)
    [section] = label_sections(reader.get(f"/batches/{batch.id}/label?vial_to=1").get_data(as_text=True))
    text = visible_text(section)

    for expected in ("Compounded preparation", "Lipolytic PC/DC + lidocaine v1", "Phosphatidylcholine 25 mg/mL",
                     "Sodium deoxycholate 6.25 mg/mL", "Lidocaine 2 mg/mL", "10 mL · Subcutaneous use",
                     "Single-dose: discard unused portion", "Refrigerate 2–8 °C · Protect from light",
                     label.use_by_text, batch.code):
        assert expected in text, expected
    for elsewhere in (label.prepared_by, label.verified_by, "Test Clinic", "Made "):
        assert elsewhere not in text, elsewhere
    assert "Sodium chloride" not in text
    assert len(SVG.findall(section)) == 1


def test_the_57x32_label_adds_who_prepared_and_verified_it_the_clinic_and_when(reader, lipolytic, make_batch):
    batch = make_batch(lipolytic)
    label = label_of(batch)
    response = reader.get(f"/batches/{batch.id}/label?size=57x32&vial_to=1&copies=2")
    sections = label_sections(response.get_data(as_text=True))

    assert response.status_code == 200 and len(sections) == 2
    text = visible_text(sections[0])
    for expected in ("Test Clinic", f"Prepared by {label.prepared_by}", f"Verified by {label.verified_by}",
                     f"Made {label.made_at_text}", "Lidocaine 2 mg/mL", label.use_by_text):
        assert expected in text, expected
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", label.made_at_text)
    assert 'class="label batch-label label-57x32"' in sections[0]


def test_an_unknown_label_size_is_refused_with_400(reader, lipolytic, make_batch):
    response = reader.get(f"/batches/{make_batch(lipolytic).id}/label?size=62x29")

    assert response.status_code == 400
    assert label_sections(response.get_data(as_text=True)) == []


def test_57x32_labels_on_a4_fill_pages_of_24(reader, lipolytic, make_batch):
    html = reader.get(f"/batches/{make_batch(lipolytic).id}/label?size=57x32&sheet=a4&vial_to=1&copies=30").get_data(
        as_text=True)

    pages = html.split('<div class="a4-page a4-57x32">')[1:]
    assert [len(label_sections(page)) for page in pages] == [24, 6]


def test_the_lot_label_prints_its_expiry_as_an_iso_date_at_either_size(reader, make_lot):
    lot = make_lot()
    for size in ("50x30", "57x32"):
        [section] = label_sections(reader.get(f"/lots/{lot.id}/label?size={size}").get_data(as_text=True))
        assert f"Expiry {lot.expires_on.isoformat()}" in section


# --- the accompanying record ------------------------------------------------------------------------


def test_the_label_page_links_the_accompanying_record(reader, lipolytic, make_batch):
    batch = make_batch(lipolytic)
    html = reader.get(f"/batches/{batch.id}/label?vial_to=1").get_data(as_text=True)

    assert f'href="/batches/{batch.id}/record"' in html


def test_the_accompanying_record_carries_everything_the_label_leaves_out(reader, lipolytic, make_batch):
    batch = make_batch(lipolytic)
    label = label_of(batch)
    components = db.session.scalars(sa.select(BatchComponent).where(BatchComponent.batch_id == batch.id)).all()
    response = reader.get(f"/batches/{batch.id}/record")
    text = visible_text(response.get_data(as_text=True))

    assert response.status_code == 200
    for expected in ("Test Clinic", "Lipolytic PC/DC + lidocaine", f"{lipolytic.code} v1", batch.code,
                     "Preparation started", f"Made at {label.compounded_at_text}", label.beyond_use_text,
                     f"{label.use_by_at:%Y-%m-%d %H:%M}", "Refrigerate 2–8 °C", "Protect from light",
                     "Single-dose: discard unused portion", f"Prepared by {label.prepared_by}",
                     f"Verified by {label.verified_by}", "(e-signature)", "None required for this category",
                     "25 mg/mL", "6.25 mg/mL", "2 mg/mL"):
        assert expected in text, expected
    for component in components:  # the vehicle too, with each lot's copied details
        for expected in (component.ingredient_name, component.lot_code, component.supplier_lot_number,
                         component.lot_expires_on.isoformat()):
            assert expected in text, expected


def test_the_record_lists_the_required_tests_and_their_status(reader, stocked, make_formula, make_batch):
    pc = stocked("Phosphatidylcholine", "mL", "50 mg/mL")
    saline = stocked("Sodium chloride 0.9 %", "mL", "0.9 %", kind="diluent", vehicle=True)
    batch = make_batch(make_formula([(pc, "5"), (saline, "5")], bud_category="category_2_aseptic_sterility_tested"))
    text = visible_text(reader.get(f"/batches/{batch.id}/record").get_data(as_text=True))

    assert batch.tests_required == ("sterility",)
    assert "sterility PENDING" in text
    assert "AWAITING TESTS — do not use" in text


def test_a_missing_batch_record_is_404_and_a_visitor_signs_in_first(client, reader, lipolytic, make_batch):
    assert reader.get("/batches/999999/record").status_code == 404
    reader.get("/logout")
    sign_in_session(client, None)
    response = client.get(f"/batches/{make_batch(lipolytic).id}/record")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login?next=")


# --- the barcode at 203 dpi -------------------------------------------------------------------------


def rasterise_203_dpi(svg: str) -> Image.Image:
    """The SVG as a 203 dpi thermal printer lays it down: 8 dots per mm, each pure black or white."""
    png = cairosvg.svg2png(bytestring=svg.encode("utf-8"), dpi=DOTS_PER_MM * 25.4, background_color="white")
    grey = Image.open(io.BytesIO(png)).convert("L")
    return grey.point(lambda value: 255 if value >= 128 else 0).convert("1")


def test_the_label_barcode_decodes_at_203_dpi_to_exactly_the_vial_code(reader, lipolytic, make_batch):
    batch = make_batch(lipolytic)
    [svg] = SVG.findall(reader.get(f"/batches/{batch.id}/label?vial_to=1").get_data(as_text=True))
    image = rasterise_203_dpi(svg)

    assert image.width == round(44 * DOTS_PER_MM)  # 156 modules + 2 × 10 quiet, of 0.25 mm
    results = zxingcpp.read_barcodes(image)
    assert [(r.text, r.format) for r in results] == [(f"{batch.code}-01", zxingcpp.BarcodeFormat.Code128)]


def test_the_batch_code_alone_still_makes_a_33_mm_barcode(app):
    image = rasterise_203_dpi(labels.barcode_inline("B2612070001"))

    assert image.width == round(33 * DOTS_PER_MM)  # 112 modules + 2 × 10 quiet, of 0.25 mm


def test_every_bar_is_a_whole_number_of_203_dpi_dots_with_quiet_zones(app):
    svg = labels.barcode_inline("B2612070001")
    png = cairosvg.svg2png(bytestring=svg.encode("utf-8"), dpi=DOTS_PER_MM * 25.4, background_color="white")
    grey = Image.open(io.BytesIO(png)).convert("L")
    row = [grey.getpixel((x, grey.height // 2)) for x in range(grey.width)]

    assert set(row) == {0, 255}  # no edge falls between dots: nothing to anti-alias
    runs = [len(m.group()) for m in re.finditer(r"0+|1+", "".join("1" if v == 0 else "0" for v in row))]
    assert all(run % 2 == 0 for run in runs)  # 0.25 mm modules = 2 dots
    assert runs[0] >= 20 and runs[-1] >= 20  # 10-module quiet zones each side
    assert len(barcodes.code128_modules("B2612070001")) * 2 + 40 == grey.width


# --- the API ----------------------------------------------------------------------------------------


def test_the_label_api_answers_every_drug_storage_light_dose_and_the_last_usable_minute(reader, vitamin_c,
                                                                                         make_batch):
    batch = make_batch(vitamin_c)
    body = reader.get(f"/api/v1/batches/{batch.id}/label").get_json()

    assert [(d["name"], d["concentration"]) for d in body["drugs"]] == [
        ("Ascorbic acid", "20 mg/mL"), ("Hyaluronic acid", "4 mg/mL"), ("Lidocaine", "2 mg/mL")]
    assert (body["storage_lines"], body["protect_from_light"]) == (["Refrigerate 2–8 °C", "Protect from light"], True)
    assert (body["dose"], body["dose_statement"]) == ("single", "Single-dose: discard unused portion")
    assert (body["total_volume_text"], body["route_text"]) == ("5 mL", "Intradermal use")
    use_by = datetime.fromisoformat(body["use_by_at"])
    assert use_by == batch.beyond_use_at.replace(second=0, microsecond=0) - timedelta(minutes=1)
    assert body["use_by_text"] == f"Use by {use_by:%Y-%m-%d %H:%M}"
