"""Formula pages: drafts with component rows, clear refusals, e-signed approval, versions, budgets."""

import re
from decimal import Decimal

import pytest
import sqlalchemy as sa
from testkit import PASSWORD, QueryCounter, sign_in

from compounding.extensions import db
from compounding.models import Formula, FormulaComponent, Signature
from compounding.services import formulas

ROWS = 8


def formula_form(components=(), **overrides) -> dict:
    """What the browser posts: every field, and all component rows (blank ones included).

    A quantity of "qs" ticks the row's qs box (to volume) and leaves its quantity empty; an
    unticked checkbox is not sent at all.
    """
    data = {
        "code": "LIPO-PCDC", "name": "Lipolytic PC/DC", "indication": "fat_reduction",
        "route": "subcutaneous", "dosage_form": "solution for injection", "unit_label": "vial 10 mL",
        "unit_volume_ml": "10", "instructions": "1. Disinfect the vial stoppers.\r\n2. Draw up and mix.",
        "storage": "fridge", "bud_category": "category_2_aseptic_nonsterile_components",
        "bud_hours": "", "bud_reason": "",
    }
    for n in range(ROWS):
        ingredient, quantity = components[n] if n < len(components) else (None, "")
        data[f"components-{n}-ingredient_id"] = str(ingredient.id) if ingredient else "0"
        data[f"components-{n}-quantity"] = "" if quantity == "qs" else quantity
        if quantity == "qs":
            data[f"components-{n}-qs"] = "y"
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not None}


def formula_count() -> int:
    return db.session.scalar(sa.select(sa.func.count(Formula.id)))


@pytest.fixture
def pc_and_saline(make_ingredient):
    return (make_ingredient(name="Phosphatidylcholine", strength="50 mg/mL"),
            make_ingredient(name="Sodium chloride 0.9 %", kind="diluent", strength="0.9 %"))


def test_a_pharmacist_creates_a_draft_formula_with_its_components(client, as_role, pc_and_saline):
    as_role("pharmacist")
    pc, saline = pc_and_saline
    form = client.get("/formulas/new").get_data(as_text=True)
    assert form.count("Ingredient, row ") == ROWS and 'class="visually-hidden" for="components-0-quantity"' in form

    response = client.post("/formulas/new", data=formula_form([(pc, "5.5"), (saline, "4.5")]))

    assert response.status_code == 302, response.get_data(as_text=True)[:2000]
    formula = db.session.scalar(sa.select(Formula))
    assert response.headers["Location"].endswith(f"/formulas/{formula.id}")
    assert (formula.code, formula.version, formula.status) == ("LIPO-PCDC", 1, "draft")
    assert formula.instructions == "1. Disinfect the vial stoppers.\n2. Draw up and mix."  # browsers send CRLF
    assert [(c.ingredient.name, c.quantity, c.qs) for c in formula.components] == [
        ("Phosphatidylcholine", Decimal("5.5"), False), ("Sodium chloride 0.9 %", Decimal("4.5"), False)]
    page = client.get(f"/formulas/{formula.id}").get_data(as_text=True)
    assert "Phosphatidylcholine" in page and "50 mg/mL" in page and "5.5" in page
    assert "4 days" in page  # category 2, non-sterile components, in the fridge
    assert "<li>Disinfect the vial stoppers.</li>" in page
    assert ">Edit</a>" in page and "Approve formula" in page and "New version" not in page


@pytest.mark.parametrize("overrides, message", [
    ({"code": ""}, "This field is required"),
    ({"code": "lipo pcdc!"}, "Use capitals, digits and dashes"),
    ({"bud_hours": "500"}, "never lengthen it: the table allows 96 h"),
    ({"bud_hours": "48"}, "Document why the duration is shorter"),
    ({"bud_hours": "two days"}, "Not a valid integer value"),
    ({"components-1-quantity": "0"}, "greater than zero"),
    ({"components-2-quantity": "1"}, "Choose the ingredient."),
    ({"unit_volume_ml": "ten"}, "Enter a number"),
    ({"storage": "freezer", "bud_category": "category_1"}, "cannot be stored frozen"),
])
def test_bad_formula_input_rerenders_the_form_with_a_message_and_saves_nothing(
        client, as_role, pc_and_saline, overrides, message):
    as_role("pharmacist")
    pc, saline = pc_and_saline
    response = client.post("/formulas/new", data=formula_form([(pc, "5"), (saline, "5")], **overrides))
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert message in page
    assert 'value="Lipolytic PC/DC"' in page  # the user's input is kept
    assert formula_count() == 0


def test_the_same_ingredient_in_two_rows_is_refused_above_the_component_table(client, as_role, pc_and_saline):
    as_role("pharmacist")
    pc, saline = pc_and_saline
    response = client.post("/formulas/new", data=formula_form([(pc, "5"), (saline, "2.5"), (pc, "2.5")]))
    assert response.status_code == 422
    assert "Phosphatidylcholine is listed twice." in response.get_data(as_text=True)
    assert formula_count() == 0
    assert db.session.scalar(sa.select(sa.func.count(FormulaComponent.id))) == 0


def test_an_existing_code_is_refused_next_to_the_code(client, as_role, make_formula, pc_and_saline):
    make_formula(code="LIPO-PCDC")
    as_role("pharmacist")
    response = client.post("/formulas/new", data=formula_form([(pc_and_saline[0], "5"), (pc_and_saline[1], "qs")]))
    assert response.status_code == 422
    assert "LIPO-PCDC exists" in response.get_data(as_text=True)
    assert formula_count() == 1


def test_a_draft_is_edited_through_its_form_keeping_the_same_ingredients(client, as_role, make_formula,
                                                                           pc_and_saline):
    pc, saline = pc_and_saline
    draft = make_formula([(pc, "5"), (saline, "5")], approve=False, code="MESO-1")
    as_role("pharmacist")
    page = client.get(f"/formulas/{draft.id}/edit").get_data(as_text=True)
    assert 'name="code"' not in page and 'value="5"' in page and 'value="10"' in page

    response = client.post(f"/formulas/{draft.id}/edit", data=formula_form(
        [(saline, "6"), (pc, "4")], name="Lipolytic, less PC", code=None, bud_hours="48",
        bud_reason="Short stability data"))

    assert response.status_code == 302, response.get_data(as_text=True)[:2000]
    db.session.expire_all()
    formula = db.session.get(Formula, draft.id)
    assert (formula.code, formula.name, formula.bud_hours) == ("MESO-1", "Lipolytic, less PC", 48)
    assert [(c.ingredient_id, c.quantity) for c in formula.components] == [(saline.id, 6), (pc.id, 4)]
    detail = client.get(f"/formulas/{draft.id}").get_data(as_text=True)
    assert "2 days" in detail and "Short stability data" in detail
    assert '<span class="code">bud_hours</span>: null → 48' in detail  # the history shows what changed
    assert '<span class="code">dosage_form</span>' not in detail


def test_approval_with_a_wrong_password_is_refused_and_the_formula_stays_a_draft(client, as_role, make_formula):
    draft = make_formula(approve=False)
    as_role("pharmacist")
    response = client.post(f"/formulas/{draft.id}/approve", data={"approve-password": "not-my-password"})
    assert response.status_code == 422
    assert "password is not correct" in response.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Formula, draft.id).status == "draft"
    assert db.session.scalar(sa.select(sa.func.count(Signature.id))) == 0


def test_an_approved_formula_shows_who_approved_it(client, make_user, make_formula):
    draft = make_formula(approve=False)
    sign_in(client, make_user("pharmacist", display_name="Dr Ada Lovelace"))
    response = client.post(f"/formulas/{draft.id}/approve", data={"approve-password": PASSWORD},
                           follow_redirects=True)
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Approved by Dr Ada Lovelace" in page and "Approved</strong> by Dr Ada Lovelace" in page
    assert db.session.get(Formula, draft.id).status == "approved"


def test_a_formula_without_components_cannot_be_approved_from_the_page(client, as_role, make_formula):
    draft = make_formula(components=[], approve=False)
    as_role("pharmacist")
    response = client.post(f"/formulas/{draft.id}/approve", data={"approve-password": PASSWORD})
    assert response.status_code == 422
    assert "without components cannot be approved" in response.get_data(as_text=True)
    assert db.session.get(Formula, draft.id).status == "draft"


def test_an_approved_formula_cannot_be_edited_and_new_version_makes_a_v2_draft(client, as_role, make_formula):
    approved = make_formula(code="HAIR-MXBT")
    as_role("pharmacist")
    refused = client.get(f"/formulas/{approved.id}/edit", follow_redirects=True)
    assert "HAIR-MXBT v1 is approved and is never edited" in refused.get_data(as_text=True)
    posted = client.post(f"/formulas/{approved.id}/edit", data={"name": "changed"})
    assert posted.status_code == 302
    db.session.expire_all()
    assert db.session.get(Formula, approved.id).name != "changed"

    response = client.post(f"/formulas/{approved.id}/new-version")

    draft = db.session.scalar(sa.select(Formula).where(Formula.version == 2))
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/formulas/{draft.id}/edit")
    assert (draft.code, draft.status, draft.previous_version_id) == ("HAIR-MXBT", "draft", approved.id)
    assert client.get(f"/formulas/{draft.id}/edit").status_code == 200
    detail = client.get(f"/formulas/{approved.id}").get_data(as_text=True)
    assert f'href="/formulas/{draft.id}">HAIR-MXBT v2</a>' in detail
    again = client.post(f"/formulas/{approved.id}/new-version", follow_redirects=True)
    assert "already a draft" in again.get_data(as_text=True)
    assert formula_count() == 2


def test_retiring_needs_a_reason_and_asks_for_confirmation(client, as_role, make_formula):
    formula = make_formula()
    as_role("pharmacist")
    page = client.get(f"/formulas/{formula.id}").get_data(as_text=True)
    assert 'data-confirm="Retire ' in page
    assert "<script>" not in page and "onclick" not in page and "onsubmit" not in page
    refused = client.post(f"/formulas/{formula.id}/retire", data={"retire-reason": ""})
    assert refused.status_code == 422 and "This field is required" in refused.get_data(as_text=True)
    response = client.post(f"/formulas/{formula.id}/retire", data={"retire-reason": "Supplier withdrew PC"},
                           follow_redirects=True)
    assert "retired" in response.get_data(as_text=True)
    assert db.session.get(Formula, formula.id).status == "retired"


@pytest.mark.parametrize("method, path", [
    ("GET", "/formulas/new"), ("POST", "/formulas/new"), ("POST", "/formulas/{id}/approve"),
    ("GET", "/formulas/{id}/edit"), ("POST", "/formulas/{id}/new-version"), ("POST", "/formulas/{id}/retire"),
])
def test_a_technician_may_read_formulas_but_not_write_or_approve_them(client, as_role, make_formula, method, path):
    draft = make_formula(approve=False)
    as_role("technician")
    response = client.open(path.format(id=draft.id), method=method, data={"approve-password": PASSWORD})
    assert response.status_code == 403
    page = client.get(f"/formulas/{draft.id}").get_data(as_text=True)
    assert "Approve formula" not in page and ">Edit</a>" not in page
    assert db.session.get(Formula, draft.id).status == "draft"


def test_the_list_filters_by_status_and_indication_and_searches_code_and_name(client, as_role, make_formula):
    lipo = make_formula(code="LIPO-PCDC", name="Lipolytic mix")
    hair = make_formula(code="HAIR-MXBT", name="Hair mix", indication="hair_loss", approve=False)
    meso = make_formula(code="MESO-VCHA", name="Mesolift vitamin C", indication="skin_rejuvenation")
    as_role("auditor")

    def codes(query):
        page = client.get(f"/formulas/?{query}").get_data(as_text=True)
        return {f.code for f in (lipo, hair, meso) if f.code in page}

    assert codes("") == {"LIPO-PCDC", "HAIR-MXBT", "MESO-VCHA"}
    assert codes("status=draft") == {"HAIR-MXBT"}
    assert codes("indication=skin_rejuvenation") == {"MESO-VCHA"}
    assert codes("q=lipo") == {"LIPO-PCDC"}
    assert codes("q=vitamin") == {"MESO-VCHA"}
    page = client.get("/formulas/?q=lipo").get_data(as_text=True)
    assert "Category 2, aseptic, only sterile starting components" in page and "HAIR-MXBT" not in page


def _add_formulas(author, ingredient, count: int) -> None:
    """Approved formulas, each signed by its own pharmacist, made without the services for speed."""
    from compounding.models import User
    from compounding.services.clock import utcnow

    start = formula_count()
    for n in range(start, start + count):
        approver = User(username=f"approver-{n}", display_name=f"Approver {n}", role="pharmacist",
                        password_hash="-")
        db.session.add(approver)
        db.session.flush()
        db.session.add(Formula(
            code=f"BULK-{n:03d}", version=1, name=f"Bulk {n}", indication="other", route="intradermal",
            unit_volume_ml=Decimal("5"), bud_category="category_1", storage="room", status="approved",
            created_by_id=author.id, approved_by_id=approver.id, approved_at=utcnow(),
            components=[FormulaComponent(ingredient_id=ingredient.id, quantity=Decimal("1"))]))
    db.session.commit()


def test_the_formula_list_costs_the_same_statements_for_5_and_50_formulas(client, as_role, make_ingredient):
    author = as_role("pharmacist")
    ingredient = make_ingredient()

    def statements(expected_rows: int) -> int:
        db.session.expire_all()
        with QueryCounter(db.engine) as counter:
            response = client.get("/formulas/")
        assert response.status_code == 200
        assert response.get_data(as_text=True).count('class="code"><a href="/formulas/') == expected_rows
        return counter.count

    _add_formulas(author, ingredient, 5)
    with_5 = statements(5)
    _add_formulas(author, ingredient, 45)
    with_50 = statements(50)
    assert with_5 == with_50


def test_editing_a_draft_that_keeps_its_ingredients_updates_their_quantities(make_formula, pharmacist,
                                                                            pc_and_saline):
    """The same ingredients again must not trip the (formula, ingredient) unique key."""
    pc, saline = pc_and_saline
    draft = make_formula([(pc, "5"), (saline, "5")], approve=False)
    data = {key: getattr(draft, key) for key in formulas.FORMULA_FIELDS}
    data["components"] = [{"ingredient_id": pc.id, "quantity": "3"}, {"ingredient_id": saline.id, "quantity": "7"}]
    formulas.update_draft(pharmacist, draft.id, data)
    db.session.expire_all()
    assert [c.quantity for c in db.session.get(Formula, draft.id).components] == [3, 7]


# --- Balanced formulas (DESIGN 10.2) --------------------------------------------------------


def test_each_component_row_has_a_qs_box_and_the_record_a_light_flag(client, as_role):
    as_role("pharmacist")
    form = client.get("/formulas/new").get_data(as_text=True)
    assert form.count('type="checkbox" value="y"') == ROWS + 1
    assert 'name="components-7-qs"' in form and 'name="protect_from_light"' in form
    assert form.count('<span class="visually-hidden">Row 1: fill to volume</span>') == 1
    assert '<option value="protect_from_light"' not in form  # light is a flag, not a temperature


def test_a_qs_row_fills_the_unit_to_volume_and_what_was_typed_there_is_ignored(client, as_role, pc_and_saline):
    as_role("pharmacist")
    pc, saline = pc_and_saline
    response = client.post("/formulas/new", data=formula_form(
        [(pc, "2.5"), (saline, "qs")], **{"components-1-quantity": "99", "protect_from_light": "y"}))

    assert response.status_code == 302, response.get_data(as_text=True)[:2000]
    formula = db.session.scalar(sa.select(Formula))
    assert [(c.quantity, c.qs) for c in formula.components] == [(Decimal("2.5"), False), (Decimal("7.5"), True)]
    assert formula.protect_from_light and formula.storage == "fridge"
    page = client.get(f"/formulas/{formula.id}").get_data(as_text=True)
    assert '<span class="code">7.5</span> <span class="badge text-bg-info"' in page and "qs to volume" in page
    assert '<span class="code">10</span> of <span class="code">10</span>' in page  # liquid per unit vs the unit
    assert "fridge · <strong>protect from light</strong>" in page


def test_editing_a_draft_shows_its_qs_row_ticked_and_to_volume(client, as_role, pc_and_saline):
    pc, saline = pc_and_saline
    as_role("pharmacist")
    assert client.post("/formulas/new", data=formula_form([(pc, "4"), (saline, "qs")])).status_code == 302
    draft = db.session.scalar(sa.select(Formula))
    page = client.get(f"/formulas/{draft.id}/edit").get_data(as_text=True)
    assert '<input checked class="form-check-input" id="components-1-qs"' in page
    assert '<input class="form-check-input" id="components-0-qs"' in page
    assert 'placeholder="to volume"' in page and 'value="6"' not in page

    response = client.post(f"/formulas/{draft.id}/edit", data=formula_form(
        [(pc, "3"), (saline, "qs")], code=None, unit_volume_ml="5"))

    assert response.status_code == 302, response.get_data(as_text=True)[:2000]
    db.session.expire_all()
    assert [(c.quantity, c.qs) for c in db.session.get(Formula, draft.id).components] == [(3, False), (2, True)]


@pytest.mark.parametrize("rows, message", [
    ([("pc", "4"), ("saline", "4")], "Components in mL add up to 8 mL; the unit holds 10 mL: mark one diluent"),
    ([("pc", "8"), ("saline", "4")], "Components in mL add up to 12 mL; the unit holds 10 mL."),
    ([("pc", "10"), ("saline", "qs")], "nothing is left to fill to volume"),
    ([("pc", "qs"), ("saline", "5")], "Only a diluent can be filled to volume (qs): Phosphatidylcholine is active."),
    ([("pc", "5"), ("saline", "qs"), ("water", "qs")], "Only one component can be filled to volume (qs)"),
    ([("pc", "-1"), ("saline", "qs")], "greater than zero"),
])
def test_a_formula_that_cannot_balance_is_refused_above_the_components_and_nothing_is_saved(
        client, as_role, make_ingredient, pc_and_saline, rows, message):
    as_role("pharmacist")
    pc, saline = pc_and_saline
    named = {"pc": pc, "saline": saline, "water": make_ingredient(name="Water for injection", kind="diluent")}
    response = client.post("/formulas/new", data=formula_form([(named[n], q) for n, q in rows]))
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert message in page and 'value="Lipolytic PC/DC"' in page
    assert formula_count() == 0


def test_a_solid_only_formula_needs_a_diluent_filled_to_volume(client, as_role, make_ingredient):
    as_role("pharmacist")
    biotin = make_ingredient(name="Biotin", unit="mg")
    water = make_ingredient(name="Water for injection", kind="diluent")
    refused = client.post("/formulas/new", data=formula_form([(biotin, "10")]))
    assert refused.status_code == 422
    assert "Components in mL add up to 0 mL; the unit holds 10 mL" in refused.get_data(as_text=True)
    assert client.post("/formulas/new", data=formula_form([(biotin, "10"), (water, "qs")])).status_code == 302
    assert [(c.quantity, c.qs) for c in db.session.scalar(sa.select(Formula)).components] == [(10, False), (10, True)]


def test_an_edit_that_unbalances_a_draft_is_refused_and_changes_nothing(client, as_role, make_formula,
                                                                        pc_and_saline):
    pc, saline = pc_and_saline
    draft = make_formula([(pc, "5"), (saline, "5")], approve=False)
    as_role("pharmacist")
    response = client.post(f"/formulas/{draft.id}/edit", data=formula_form([(pc, "5"), (saline, "6")], code=None,
                                                                           name="Changed"))
    assert response.status_code == 422
    assert "Components in mL add up to 11 mL; the unit holds 10 mL." in response.get_data(as_text=True)
    db.session.expire_all()
    formula = db.session.get(Formula, draft.id)
    assert formula.name != "Changed" and [c.quantity for c in formula.components] == [5, 5]


def _legacy_draft(author, *rows) -> Formula:
    """A draft saved before formulas had to balance: written without the services."""
    formula = Formula(code="OLD-1", version=1, name="Old mix", indication="other", route="intradermal",
                      unit_volume_ml=Decimal("5"), bud_category="category_1", storage="room", status="draft",
                      instructions="Mix.", created_by_id=author.id,
                      components=[FormulaComponent(ingredient_id=i.id, quantity=Decimal(q), position=n)
                                  for n, (i, q) in enumerate(rows)])
    db.session.add(formula)
    db.session.commit()
    return formula


def test_a_legacy_unbalanced_draft_says_so_and_cannot_be_approved_from_the_page(client, make_user, as_role,
                                                                                pc_and_saline):
    pc, saline = pc_and_saline
    draft = _legacy_draft(make_user("pharmacist"), (pc, "4"), (saline, "4"))
    as_role("pharmacist")
    detail = client.get(f"/formulas/{draft.id}").get_data(as_text=True)
    assert "Does not balance: Components in mL add up to 8 mL; the unit holds 5 mL." in detail
    response = client.post(f"/formulas/{draft.id}/approve", data={"approve-password": PASSWORD})
    assert response.status_code == 422
    assert "OLD-1 v1 does not balance: Components in mL add up to 8 mL; the unit holds 5 mL." in \
        response.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Formula, draft.id).status == "draft"
    assert db.session.scalar(sa.select(sa.func.count(Signature.id))) == 0


# --- single- or multiple-dose ------------------------------------------------------------------------

EVIDENCE = "AET report 2026-014: passed (USP <51>)"


def test_the_form_offers_dose_in_use_period_and_evidence_single_dose_by_default(client, as_role):
    as_role("pharmacist")
    html = client.get("/formulas/new").get_data(as_text=True)

    assert re.search(r'<option selected value="single">', html)
    assert 'name="in_use_period"' in html and 'name="in_use_unit"' in html
    assert 'name="antimicrobial_evidence"' in html


def test_a_formula_saved_without_a_dose_is_single_dose(client, as_role, pc_and_saline):
    as_role("pharmacist")
    pc, saline = pc_and_saline

    response = client.post("/formulas/new", data=formula_form([(pc, "5"), (saline, "5")]))

    assert response.status_code == 302
    formula = db.session.scalar(sa.select(Formula))
    assert (formula.dose, formula.in_use_hours, formula.antimicrobial_evidence) == ("single", None, "")


@pytest.mark.parametrize("period, unit, hours", [("28", "days", 672), ("36", "hours", 36), ("1", "days", 24)])
def test_a_multiple_dose_formula_stores_its_in_use_period_in_hours(client, as_role, pc_and_saline, period, unit,
                                                                   hours):
    as_role("pharmacist")
    pc, saline = pc_and_saline

    response = client.post("/formulas/new", data=formula_form(
        [(pc, "5"), (saline, "5")], dose="multiple", in_use_period=period, in_use_unit=unit,
        antimicrobial_evidence=EVIDENCE))

    assert response.status_code == 302, response.get_data(as_text=True)[:2000]
    formula = db.session.scalar(sa.select(Formula))
    assert (formula.dose, formula.in_use_hours, formula.antimicrobial_evidence) == ("multiple", hours, EVIDENCE)


@pytest.mark.parametrize("overrides, field, message", [
    ({"in_use_period": "29", "in_use_unit": "days"}, "in_use_period", "28 days"),
    ({"in_use_period": "673", "in_use_unit": "hours"}, "in_use_period", "672 hours"),
    ({"in_use_period": "0", "in_use_unit": "hours"}, "in_use_period", "672 hours"),
    ({"in_use_period": "", "in_use_unit": "days"}, "in_use_period", "in-use period"),
    ({"in_use_period": "7", "in_use_unit": "days", "antimicrobial_evidence": ""}, "antimicrobial_evidence",
     "antimicrobial-effectiveness evidence"),
])
def test_a_multiple_dose_formula_without_a_valid_period_or_evidence_is_refused_next_to_the_field(
        client, as_role, pc_and_saline, overrides, field, message):
    as_role("pharmacist")
    pc, saline = pc_and_saline
    data = formula_form([(pc, "5"), (saline, "5")], dose="multiple", antimicrobial_evidence=EVIDENCE)
    data.update(overrides)

    response = client.post("/formulas/new", data=data)

    html = response.get_data(as_text=True)
    assert response.status_code == 422
    [tag] = re.findall(rf'<[^>]*\bid="{field}"[^>]*>', html)
    assert "is-invalid" in tag
    assert message in html
    assert formula_count() == 0


def test_editing_a_multiple_dose_draft_shows_its_period_in_days_when_whole(client, as_role, make_formula):
    as_role("pharmacist")
    formula = make_formula(approve=False, dose="multiple", in_use_hours=168, antimicrobial_evidence=EVIDENCE)

    html = client.get(f"/formulas/{formula.id}/edit").get_data(as_text=True)

    assert re.search(r'<option selected value="multiple">', html)
    [period] = re.findall(r'<input[^>]*name="in_use_period"[^>]*>', html)
    assert 'value="7"' in period
    assert re.search(r'<option selected value="days">', html)
    assert EVIDENCE.replace("<", "&lt;").replace(">", "&gt;") in html


def test_the_formula_page_shows_its_dose_period_and_evidence(client, as_role, make_formula):
    as_role("technician")
    multiple = make_formula(dose="multiple", in_use_hours=36, antimicrobial_evidence=EVIDENCE)
    single = make_formula()

    html = client.get(f"/formulas/{multiple.id}").get_data(as_text=True)
    assert "Multiple-dose" in html and "36 hours after first puncture" in html
    assert EVIDENCE.replace("<", "&lt;").replace(">", "&gt;") in html
    assert "Single-dose: one patient in one session" in client.get(f"/formulas/{single.id}").get_data(as_text=True)
