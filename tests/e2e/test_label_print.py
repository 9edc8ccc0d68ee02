"""The batch label in a real browser: no text under 6 pt, nothing overflowing, the code clear of the bars.

Printed as the printer gets it (print media, no on-screen zoom), for a three-drug refrigerated,
light-protected batch at both label sizes; the screenshots in docs/screenshots come from here.
"""

import os
from datetime import date, timedelta

import pytest
import sqlalchemy as sa
from testkit import ARTIFACTS, SCREENSHOTS, login

from compounding.demo import DEMO_PASSWORD
from compounding.extensions import db
from compounding.models import Formula, Ingredient, Lot, User

FORMULA_CODE = "LIPO-PCDCL"
PX_PER_MM = 96 / 25.4
SIZES = {"50x30": (50, 30), "57x32": (57, 32)}
# Every text-bearing element of a label, measured relative to the label's box (CSS px, print media).
MEASURE = """label => {
  const box = label.getBoundingClientRect();
  return [label, ...label.querySelectorAll('*')].map(el => {
    const r = el.getBoundingClientRect();
    const text = [...el.childNodes].some(n => n.nodeType === Node.TEXT_NODE && n.textContent.trim());
    return {name: el.tagName + '.' + (el.getAttribute('class') || ''), text: text ? el.textContent.trim() : null,
            fontSize: parseFloat(getComputedStyle(el).fontSize),
            left: r.left - box.left, top: r.top - box.top, right: box.right - r.right, bottom: box.bottom - r.bottom,
            width: r.width, height: r.height, scrollWidth: el.scrollWidth, clientWidth: el.clientWidth,
            scrollHeight: el.scrollHeight, clientHeight: el.clientHeight};
  });
}"""
INGREDIENTS = [  # name, kind, strength, vehicle, per unit (mL)
    ("Phosphatidylcholine", "active", "50 mg/mL", False, "5"),
    ("Sodium deoxycholate", "active", "25 mg/mL", False, "2.5"),
    ("Lidocaine", "diluent", "2 % (20 mg/mL)", False, "1"),
    ("Water for injection", "diluent", "", True, "1.5"),
]


def _user(username: str) -> User:
    return db.session.scalar(sa.select(User).where(User.username == username))


def _ingredient(name: str, kind: str, strength: str, vehicle: bool) -> Ingredient:
    from compounding.services import ingredients, inventory

    ingredient = db.session.scalar(sa.select(Ingredient).where(Ingredient.name == name))
    if ingredient is None:
        ingredient = ingredients.create_ingredient(_user("pharmacist"), {
            "name": name, "kind": kind, "unit": "mL", "strength": strength, "storage": "fridge",
            "reorder_level": "0", "gtins": [], "sterile": True, "vehicle": vehicle})
    else:
        return ingredient  # stocked when it was made: enough for both formulas' batches
    lot = inventory.receive_lot(_user("technician"), ingredient_id=ingredient.id, supplier="Label test supply",
                                supplier_lot_number=f"E2E-LBL-{ingredient.id}", expires_on=date.today()
                                + timedelta(days=365), quantity="200")
    inventory.release_lot(_user("pharmacist"), lot.id, DEMO_PASSWORD, reason="Certificate requested")
    return ingredient


def _three_drug_formula(live_server, code: str, **dose) -> None:
    """Phosphatidylcholine + deoxycholate + lidocaine, water to 10 mL, refrigerated, kept from light."""
    from compounding.services import formulas

    with live_server.app.app_context():
        if db.session.scalar(sa.select(Formula.id).where(Formula.code == code)) is None:
            components = [{"ingredient_id": _ingredient(name, kind, strength, vehicle).id, "quantity": quantity}
                          for name, kind, strength, vehicle, quantity in INGREDIENTS]
            formula = formulas.create_formula(_user("pharmacist"), {
                "code": code, "name": "Lipolytic PC/DC + lidocaine 10 mL", "indication": "fat_reduction",
                "route": "subcutaneous", "dosage_form": "solution for injection", "unit_label": "vial 10 mL",
                "unit_volume_ml": "10", "storage": "fridge", "protect_from_light": True,
                "instructions": "Draw each component into a sterile 10 mL vial; swirl; protect from light.",
                "bud_category": "category_2_aseptic_nonsterile_components", "components": components, **dose})
            formulas.approve_formula(_user("pharmacist2"), formula.id, DEMO_PASSWORD)
        db.session.remove()


@pytest.fixture(scope="module")
def three_drug_batch(live_server) -> tuple[int, str]:
    """Two single-dose vials of the three-drug lipolytic."""
    _three_drug_formula(live_server, FORMULA_CODE)
    return live_server.released_batch(FORMULA_CODE, 2)


@pytest.fixture(scope="module")
def multiple_dose_batch(live_server) -> tuple[int, str]:
    """Twelve multiple-dose vials of the same preparation: the longest dose statement and a puncture line."""
    _three_drug_formula(live_server, FORMULA_CODE + "-MD", dose="multiple", in_use_hours=672,
                        antimicrobial_evidence="AET report 2026-014 (USP <51>)")
    return live_server.released_batch(FORMULA_CODE + "-MD", 12)


def _save(element, name: str) -> None:
    target = SCREENSHOTS / f"{name}.png"
    if target.exists() and not os.environ.get("UPDATE_SCREENSHOTS"):
        target = ARTIFACTS / "screenshots" / f"{name}.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    element.screenshot(path=target)


def _measured(new_context, path: str, size: str):
    """The label at `path` as printed: its locator and every element's box and font size."""
    # Four device pixels per CSS pixel: the saved screenshot is readable when zoomed.
    page = new_context(device_scale_factor=4).new_page()
    login(page, "pharmacist")
    page.goto(path)
    assert "d-none" in page.locator("#label-overflow-warning").get_attribute("class")
    page.emulate_media(media="print")
    label = page.locator("section.label")
    width, height = SIZES[size]
    box = label.bounding_box()
    assert (round(box["width"] / PX_PER_MM, 1), round(box["height"] / PX_PER_MM, 1)) == (width, height)
    return label, label.evaluate(MEASURE)


def _assert_at_least_6_pt_and_inside(elements: list[dict]) -> None:
    small = [(e["text"], e["fontSize"]) for e in elements if e["text"] and e["fontSize"] < 8 - 0.01]  # 6 pt = 8 px
    assert not small, small
    outside = [e["name"] for e in elements if e["width"] and min(e["left"], e["top"], e["right"], e["bottom"]) < -0.5]
    assert not outside, outside
    clipped = [e["text"] or e["name"] for e in elements
               if (e["clientWidth"] and e["scrollWidth"] > e["clientWidth"] + 1)
               or (e["clientHeight"] and e["scrollHeight"] > e["clientHeight"] + 1)]
    assert not clipped, clipped


def _assert_code_clear_of_the_bars(label) -> None:
    bars = label.locator("svg.label-barcode").bounding_box()
    text = label.locator(".label-code-text").bounding_box()
    assert text["y"] - (bars["y"] + bars["height"]) >= 0.5 * PX_PER_MM  # the code never touches the bars


@pytest.mark.parametrize("size", SIZES)
def test_every_label_text_is_at_least_6_pt_and_nothing_overflows_the_label(new_context, three_drug_batch, size):
    batch_id, code = three_drug_batch
    label, elements = _measured(new_context, f"/batches/{batch_id}/label?size={size}&vial_from=2&vial_to=2", size)

    shown = " ".join(label.inner_text().split())
    for expected in ("Phosphatidylcholine 25 mg/mL", "Sodium deoxycholate 6.25 mg/mL", "Lidocaine 2 mg/mL",
                     "Refrigerate 2–8 °C · Protect from light", "Single-dose: discard unused portion", f"{code}-02"):
        assert expected in shown, expected
    _assert_at_least_6_pt_and_inside(elements)
    bars = label.locator("svg.label-barcode").bounding_box()
    assert round(bars["width"] / PX_PER_MM, 1) == 44.0  # whole 0.25 mm modules and both quiet zones
    _assert_code_clear_of_the_bars(label)
    _save(label, f"label-{size}")


@pytest.mark.parametrize("size", SIZES)
def test_a_multiple_dose_vial_label_keeps_its_period_and_puncture_line_at_6_pt_and_inside(
        new_context, multiple_dose_batch, size):
    batch_id, code = multiple_dose_batch
    label, elements = _measured(new_context, f"/batches/{batch_id}/label?size={size}&vial_from=12&vial_to=12",
                                size)

    shown = " ".join(label.inner_text().split())
    for expected in ("Lidocaine 2 mg/mL", "Multiple-dose: use within 28 days of first puncture",
                     "First punctured ____-__-__ __:__", "Use by", f"{code}-12"):
        assert expected in shown, expected
    _assert_at_least_6_pt_and_inside(elements)
    _assert_code_clear_of_the_bars(label)
    ARTIFACTS.mkdir(exist_ok=True)
    label.screenshot(path=ARTIFACTS / f"vial-label-multiple-{size}.png")


@pytest.mark.parametrize("size", SIZES)
def test_the_lot_label_keeps_its_text_at_6_pt_and_inside_at_either_size(new_context, live_server, size):
    lot_id = live_server.scalar(sa.select(Lot.id).where(Lot.supplier_lot_number == "PC-24117"))
    label, elements = _measured(new_context, f"/lots/{lot_id}/label?size={size}", size)

    assert "Expiry 20" in label.inner_text()
    _assert_at_least_6_pt_and_inside(elements)
    _assert_code_clear_of_the_bars(label)
    ARTIFACTS.mkdir(exist_ok=True)
    label.screenshot(path=ARTIFACTS / f"lot-label-{size}.png")


@pytest.mark.parametrize("size", SIZES)
def test_the_a4_sheet_still_lays_out_labels_of_either_size(page, three_drug_batch, size):
    batch_id, _ = three_drug_batch
    login(page, "pharmacist")
    page.goto(f"/batches/{batch_id}/label?size={size}&sheet=a4&copies=2")  # two vials, two copies each
    page.emulate_media(media="print")

    boxes = [page.locator("section.label").nth(i).bounding_box() for i in range(4)]
    width, height = SIZES[size]
    assert {(round(b["width"] / PX_PER_MM), round(b["height"] / PX_PER_MM)) for b in boxes} == {(width, height)}
    assert boxes[3]["y"] >= boxes[0]["y"] + boxes[0]["height"] - 1  # three across, the fourth below
    assert page.locator(".label.label-overflow").count() == 0


@pytest.mark.parametrize("width", [1280, 768, 390])
def test_the_label_page_and_its_record_read_at_every_width_without_sideways_scrolling(page, three_drug_batch, width):
    batch_id, code = three_drug_batch
    login(page, "pharmacist")
    page.set_viewport_size({"width": width, "height": 900})
    page.goto(f"/batches/{batch_id}/label?size=57x32")
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    assert "d-none" in page.locator("#label-overflow-warning").get_attribute("class")  # never squeezed
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / f"label-page-{width}.png", full_page=True)
    page.get_by_role("link", name="Accompanying record (A4)").click()
    page.wait_for_url("**/record")
    page.wait_for_load_state("load")  # its stylesheet too: measured before it, the tables are wider

    shown = " ".join(page.locator("main").inner_text().split())
    for expected in (code, f"{code}-01 sealed", f"{code}-02 sealed", "Lidocaine", "E2E-LBL-", "Dr Omar Haddad",
                     "Protect from light", "Single-dose"):
        assert expected in shown, expected
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    page.screenshot(path=ARTIFACTS / f"batch-record-{width}.png", full_page=True)
