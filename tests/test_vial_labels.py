"""Labels per vial: one label each, its code printed and encoded, its dose statement from the vial."""

import io
import re

import cairosvg
import pytest
import sqlalchemy as sa
import zxingcpp
from PIL import Image
from testkit import bearer, sign_in_session

from compounding import labels
from compounding.extensions import db
from compounding.models import Vial
from compounding.services import batches, holds

SVG = re.compile(r"<svg\b.*?</svg>", re.DOTALL)
DOTS_PER_MM = 8  # 203 dpi
EVIDENCE = "AET report 2026-014: passed (USP <51>)"


def label_sections(html: str) -> list[str]:
    return re.findall(r'<section class="label\b.*?</section>', html, re.DOTALL)


def visible_text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).strip()


def decoded_at_203_dpi(svg: str) -> list[str]:
    png = cairosvg.svg2png(bytestring=svg.encode("utf-8"), dpi=DOTS_PER_MM * 25.4, background_color="white")
    image = Image.open(io.BytesIO(png)).convert("L").point(lambda v: 255 if v >= 128 else 0).convert("1")
    return [(r.text, r.format) for r in zxingcpp.read_barcodes(image)]


def vials_of(batch) -> list[Vial]:
    return db.session.scalars(sa.select(Vial).where(Vial.batch_id == batch.id).order_by(Vial.number)).all()


@pytest.fixture
def reader(client, make_user):
    sign_in_session(client, make_user("practitioner"))
    return client


@pytest.fixture
def stocked_formula(make_formula, make_ingredient, make_lot):
    def make(**overrides):
        active = make_ingredient(name="Hyaluronic acid", unit="mL", strength="20 mg/mL", sterile=True)
        saline = make_ingredient(name="Sodium chloride 0.9 %", kind="diluent", unit="mL", strength="0.9 %",
                                 sterile=True, vehicle=True)
        make_lot(active, quantity="1000")
        make_lot(saline, quantity="1000")
        return make_formula([(active, "2"), (saline, "8")], **overrides)

    return make


# --- the dose statement -------------------------------------------------------------------------------


@pytest.mark.parametrize("dose, hours, expected", [
    ("single", None, "Single-dose: discard unused portion"),
    ("multiple", 672, "Multiple-dose: use within 28 days of first puncture"),
    ("multiple", 24, "Multiple-dose: use within 1 day of first puncture"),
    ("multiple", 36, "Multiple-dose: use within 36 hours of first puncture"),
    ("multiple", 1, "Multiple-dose: use within 1 hour of first puncture"),
])
def test_the_dose_statement_says_single_dose_or_the_in_use_period_in_days_or_hours(dose, hours, expected):
    assert labels.dose_statement(dose, hours) == expected


def test_a_multiple_dose_vial_label_has_its_period_and_a_space_for_the_puncture_date(reader, stocked_formula,
                                                                                     make_batch):
    batch = make_batch(stocked_formula(dose="multiple", in_use_hours="168", antimicrobial_evidence=EVIDENCE))
    [label] = labels.vial_labels(labels.load_batch(batch.id), vial_from=1, vial_to=1)

    assert (label.dose, label.dose_statement) == ("multiple", "Multiple-dose: use within 7 days of first puncture")
    assert label.puncture_line
    sections = label_sections(reader.get(f"/batches/{batch.id}/label").get_data(as_text=True))
    text = visible_text(sections[0])
    assert "Multiple-dose: use within 7 days of first puncture" in text
    assert "First punctured ____-__-__ __:__" in text


def test_a_single_dose_vial_label_has_no_puncture_space(reader, stocked_formula, make_batch):
    batch = make_batch(stocked_formula())
    [section, _] = label_sections(reader.get(f"/batches/{batch.id}/label").get_data(as_text=True))

    assert "Single-dose: discard unused portion" in visible_text(section)
    assert "punctured" not in section


# --- one label per vial -----------------------------------------------------------------------------


def test_the_label_page_prints_one_label_per_vial_each_with_its_code(reader, stocked_formula, make_batch):
    batch = make_batch(stocked_formula(), units=3)
    html = reader.get(f"/batches/{batch.id}/label").get_data(as_text=True)

    sections = label_sections(html)
    codes = [v.code for v in vials_of(batch)]
    assert codes == [f"{batch.code}-01", f"{batch.code}-02", f"{batch.code}-03"]
    assert len(sections) == 3
    for section, code in zip(sections, codes, strict=True):
        assert f'<div class="label-code-text">{code}</div>' in section
        assert f'aria-label="Label {code}"' in section


def test_every_vial_barcode_decodes_at_203_dpi_to_exactly_its_vial_code(reader, stocked_formula, make_batch):
    batch = make_batch(stocked_formula(), units=3)
    html = reader.get(f"/batches/{batch.id}/label").get_data(as_text=True)

    svgs = [SVG.findall(section) for section in label_sections(html)]
    assert [len(found) for found in svgs] == [1, 1, 1]
    for [svg], vial in zip(svgs, vials_of(batch), strict=True):
        assert decoded_at_203_dpi(svg) == [(vial.code, zxingcpp.BarcodeFormat.Code128)]


def test_a_vial_barcode_is_whole_203_dpi_dots_and_fits_the_50_mm_label(app):
    svg = labels.barcode_inline("B2612070001-12")
    png = cairosvg.svg2png(bytestring=svg.encode("utf-8"), dpi=DOTS_PER_MM * 25.4, background_color="white")
    grey = Image.open(io.BytesIO(png)).convert("L")
    row = [grey.getpixel((x, grey.height // 2)) for x in range(grey.width)]

    assert set(row) == {0, 255}
    runs = [len(m.group()) for m in re.finditer(r"0+|1+", "".join("1" if v == 0 else "0" for v in row))]
    assert all(run % 2 == 0 for run in runs)
    assert grey.width <= 47 * DOTS_PER_MM  # inside the 50 mm label's 1.5 mm margins


@pytest.mark.parametrize("code", ["B2612070001-", "B2612070001-1", "-01", "B26-01", "B2612070001-01-02"])
def test_only_our_codes_become_barcodes(code):
    from compounding import barcodes

    with pytest.raises(ValueError):
        barcodes.code128_modules(code)


def test_a_range_of_vials_prints_only_those(reader, stocked_formula, make_batch):
    batch = make_batch(stocked_formula(), units=4)
    response = reader.get(f"/batches/{batch.id}/label?vial_from=2&vial_to=3&copies=2")

    sections = label_sections(response.get_data(as_text=True))
    assert response.status_code == 200
    shown = [re.search(r'label-code-text">([^<]+)<', s).group(1) for s in sections]
    assert shown == [f"{batch.code}-02", f"{batch.code}-02", f"{batch.code}-03", f"{batch.code}-03"]
    assert (f"4 labels, one per vial (2 copies each): {batch.code}-02 to {batch.code}-03 (2 of the batch's 4 vials)"
            in " ".join(response.get_data(as_text=True).split()))


@pytest.mark.parametrize("query", ["vial_from=3&vial_to=2", "vial_from=0", "vial_to=5", "vial_from=x"])
def test_a_range_outside_the_batch_s_vials_is_refused_with_400_and_nothing_to_print(reader, stocked_formula,
                                                                                    make_batch, query):
    batch = make_batch(stocked_formula(), units=4)
    response = reader.get(f"/batches/{batch.id}/label?{query}")

    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert label_sections(html) == []
    assert "Nothing to print" in html


def test_vial_labels_fill_a4_pages_of_27(reader, stocked_formula, make_batch):
    batch = make_batch(stocked_formula(), units=30)
    html = reader.get(f"/batches/{batch.id}/label?sheet=a4").get_data(as_text=True)

    pages = re.findall(r'<div class="a4-page a4-50x30">(.*?)\n    </div>', html, re.DOTALL)
    assert [len(label_sections(page)) for page in pages] == [27, 3]
    assert f"{batch.code}-30" in pages[1]


def test_the_large_label_of_a_vial_keeps_people_clinic_and_time(reader, stocked_formula, make_batch):
    batch = make_batch(stocked_formula(), units=2)
    [section, _] = label_sections(reader.get(f"/batches/{batch.id}/label?size=57x32").get_data(as_text=True))

    text = visible_text(section)
    for expected in ("Test Clinic", "Prepared by", "Verified by", "Made ", f"{batch.code}-01"):
        assert expected in text, expected


def test_a_spent_vial_s_label_warns_not_to_use_it(reader, stocked_formula, make_batch, make_user):
    from compounding.services.history import transition

    batch = make_batch(stocked_formula(), units=2)
    transition(vials_of(batch)[0], "spend", make_user("practitioner"), reason="used")
    db.session.commit()
    html = reader.get(f"/batches/{batch.id}/label").get_data(as_text=True)

    [spent, sealed] = label_sections(html)
    assert "SPENT — do not use" in spent
    assert "do not use" not in sealed


def test_a_held_vial_is_left_out_and_named_and_alone_it_is_refused(reader, stocked_formula, make_batch,
                                                                   make_user):
    batch = make_batch(stocked_formula(), units=3)
    second = vials_of(batch)[1]
    holds.place_hold(make_user("pharmacist"), second, "quality_signal", "nodule reported")
    db.session.commit()

    html = reader.get(f"/batches/{batch.id}/label").get_data(as_text=True)
    assert len(label_sections(html)) == 2
    assert f"{second.code} is on hold" in html

    alone = reader.get(f"/batches/{batch.id}/label?vial_from=2&vial_to=2")
    assert alone.status_code == 409


def test_a_legacy_vial_prints_the_same_label_marked_with_its_vial_code(reader, stocked_formula, make_batch):
    batch = make_batch(stocked_formula(), units=2)
    db.session.execute(sa.update(Vial).where(Vial.batch_id == batch.id).values(legacy=True))
    db.session.commit()

    sections = label_sections(reader.get(f"/batches/{batch.id}/label").get_data(as_text=True))
    assert [re.search(r'label-code-text">([^<]+)<', s).group(1) for s in sections] == [
        f"{batch.code}-01", f"{batch.code}-02"]
    assert "Hyaluronic acid 4 mg/mL" in visible_text(sections[0])


def test_a_batch_without_vials_prints_its_batch_code_as_before(reader, stocked_formula, make_batch):
    batch = make_batch(stocked_formula(), units=2)
    db.session.execute(sa.delete(Vial).where(Vial.batch_id == batch.id))
    db.session.commit()

    sections = label_sections(reader.get(f"/batches/{batch.id}/label?copies=2").get_data(as_text=True))
    assert [re.search(r'label-code-text">([^<]+)<', s).group(1) for s in sections] == [batch.code, batch.code]


def test_the_accompanying_record_lists_every_vial_with_its_status(reader, stocked_formula, make_batch):
    batch = make_batch(stocked_formula(), units=3)
    text = visible_text(reader.get(f"/batches/{batch.id}/record").get_data(as_text=True))

    for vial in vials_of(batch):
        assert f"{vial.code} sealed" in text


def test_an_unverified_batch_s_vial_labels_say_not_verified(reader, stocked_formula, make_user):
    formula = stocked_formula()
    batch = batches.compound_batch(make_user("technician"), formula.id, 2)
    sections = label_sections(reader.get(f"/batches/{batch.id}/label").get_data(as_text=True))

    assert len(sections) == 2 and all("NOT VERIFIED — do not use" in s for s in sections)


def test_the_label_api_lists_one_label_per_vial_with_its_code_and_dose(client, stocked_formula, make_batch,
                                                                        make_user, make_token):
    batch = make_batch(stocked_formula(dose="multiple", in_use_hours="168", antimicrobial_evidence=EVIDENCE), units=3)
    token = make_token(make_user("technician"))
    answer = client.get(f"/api/v1/batches/{batch.id}/label", headers=bearer(token)).get_json()
    assert [v["vial_code"] for v in answer["vials"]] == [f"{batch.code}-0{n}" for n in (1, 2, 3)]
    assert {(v["dose"], v["in_use_hours"], v["puncture_line"]) for v in answer["vials"]} == {("multiple", 168, True)}
    assert answer["vials"][0]["dose_statement"] == "Multiple-dose: use within 7 days of first puncture"
