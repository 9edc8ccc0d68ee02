"""The formulas API: drafts with components, e-signed approval, versions, retirement, the list."""

from datetime import datetime
from decimal import Decimal

import pytest
import sqlalchemy as sa
from openapi_spec_validator import validate as validate_openapi
from testkit import PASSWORD, QueryCounter

from compounding.extensions import db
from compounding.models import Formula, FormulaComponent, Signature, User
from compounding.services.clock import utcnow

FORMULA_FIELDS = {
    "id", "code", "version", "name", "indication", "route", "dosage_form", "unit_label", "unit_volume_ml",
    "instructions", "storage", "protect_from_light", "bud_category", "bud_category_label", "bud_hours", "bud_reason",
    "bud_duration_hours", "status", "created_at", "created_by", "approved_at", "approved_by", "retired_at",
    "previous_version_id", "components", "dose", "in_use_hours", "antimicrobial_evidence",
}


@pytest.fixture
def vitamin_c_and_ha(make_ingredient):
    return (make_ingredient(name="Ascorbic acid", strength="100 mg/mL", sterile=True),
            make_ingredient(name="Hyaluronic acid", unit="mg", strength="10 mg/mL", sterile=True))


@pytest.fixture
def saline(make_ingredient):
    return make_ingredient(name="Sodium chloride 0.9 %", kind="diluent", strength="0.9 %", sterile=True,
                           vehicle=True)


def _row(ingredient, quantity) -> dict:
    """A component row; the quantity "qs" marks the diluent filled to volume."""
    if quantity == "qs":
        return {"ingredient_id": ingredient.id, "qs": True}
    return {"ingredient_id": ingredient.id, "quantity": quantity}


def _body(rows, **overrides) -> dict:
    body = {
        "code": "MESO-VCHA", "name": "Mesolift vitamin C + HA", "indication": "skin_rejuvenation",
        "route": "intradermal", "dosage_form": "solution for injection", "unit_volume_ml": "5",
        "bud_category": "category_2_aseptic_sterile_components", "storage": "fridge",
        "components": [_row(i, q) for i, q in rows],
        "instructions": "1. Disinfect.\n2. Mix.", "bud_hours": 48, "bud_reason": "Ascorbic acid oxidises",
        "unit_label": "vial 5 mL",
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


def _formula_rows() -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(Formula))


def test_creating_a_formula_answers_201_as_a_draft_with_the_design_shape(client, make_user, auth, vitamin_c_and_ha,
                                                                        saline):
    vc, ha = vitamin_c_and_ha
    author = make_user("pharmacist", display_name="Dr Paula Reyes")
    response = client.post("/api/v1/formulas", headers=auth(author),
                           json=_body([(vc, "1"), (ha, 2.5), (saline, "qs")], protect_from_light=True))

    assert response.status_code == 201, response.json
    formula = response.json
    assert set(formula) == FORMULA_FIELDS
    assert (formula["code"], formula["version"], formula["status"]) == ("MESO-VCHA", 1, "draft")
    assert (formula["unit_volume_ml"], formula["unit_label"]) == ("5", "vial 5 mL")
    assert (formula["storage"], formula["protect_from_light"]) == ("fridge", True)
    assert formula["components"] == [
        {"ingredient_id": vc.id, "ingredient_name": "Ascorbic acid", "strength": "100 mg/mL", "unit": "mL",
         "quantity": "1", "qs": False, "sterile": True},
        {"ingredient_id": ha.id, "ingredient_name": "Hyaluronic acid", "strength": "10 mg/mL", "unit": "mg",
         "quantity": "2.5", "qs": False, "sterile": True},
        # Filled to volume: 5 mL less the 1 mL of ascorbic acid (hyaluronic acid is weighed, in mg).
        {"ingredient_id": saline.id, "ingredient_name": "Sodium chloride 0.9 %", "strength": "0.9 %", "unit": "mL",
         "quantity": "4", "qs": True, "sterile": True},
    ]
    assert formula["bud_category_label"].startswith("Category 2, aseptic, only sterile")
    assert (formula["bud_hours"], formula["bud_duration_hours"]) == (48, 48)
    assert (formula["created_by"], formula["approved_by"], formula["approved_at"]) == ("Dr Paula Reyes", None, None)
    assert datetime.fromisoformat(formula["created_at"]).utcoffset() is not None
    assert client.get(f"/api/v1/formulas/{formula['id']}", headers=auth("auditor")).json == formula


def test_a_pharmacist_approves_a_draft_with_the_password(client, make_user, auth, vitamin_c_and_ha, saline):
    pharmacist = make_user("pharmacist", display_name="Dr Omar Haddad")
    headers = auth(pharmacist)
    # Another pharmacist wrote it.
    created = client.post("/api/v1/formulas", headers=auth("pharmacist"),
                          json=_body([(vitamin_c_and_ha[0], "1"), (saline, "qs")])).json

    response = client.post(f"/api/v1/formulas/{created['id']}/approve", headers=headers,
                           json={"password": PASSWORD})

    assert response.status_code == 200, response.json
    approved = response.json
    assert (approved["status"], approved["approved_by"]) == ("approved", "Dr Omar Haddad")
    assert datetime.fromisoformat(approved["approved_at"]).utcoffset() is not None
    [signature] = db.session.scalars(sa.select(Signature)).all()
    assert (signature.meaning, signature.entity_type, signature.entity_id) == ("approved", "formula", created["id"])
    again = client.post(f"/api/v1/formulas/{created['id']}/approve", headers=headers, json={"password": PASSWORD})
    assert again.status_code == 409


def test_approving_with_a_wrong_password_answers_403_and_signs_nothing(client, auth, make_formula):
    draft = make_formula(approve=False)
    response = client.post(f"/api/v1/formulas/{draft.id}/approve", headers=auth(),
                           json={"password": "not-the-password"})
    assert response.status_code == 403
    assert "password" in response.json["details"]
    db.session.expire_all()
    assert db.session.get(Formula, draft.id).status == "draft"
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Signature)) == 0


def test_a_formula_without_components_cannot_be_approved(client, auth):
    headers = auth()
    created = client.post("/api/v1/formulas", headers=headers, json=_body([]))
    assert created.status_code == 201 and created.json["components"] == []
    response = client.post(f"/api/v1/formulas/{created.json['id']}/approve", headers=headers,
                           json={"password": PASSWORD})
    assert response.status_code == 409
    assert "without components" in response.json["error"]
    assert db.session.get(Formula, created.json["id"]).status == "draft"


@pytest.mark.parametrize("call", ["create", "approve", "version", "retire"])
def test_a_technician_can_read_formulas_but_not_change_them(client, auth, make_formula, vitamin_c_and_ha, call):
    formula = make_formula(approve=call == "version")
    headers = auth("technician")
    assert client.get(f"/api/v1/formulas/{formula.id}", headers=headers).status_code == 200
    url, body = {
        "create": ("/api/v1/formulas", _body([(vitamin_c_and_ha[0], "1")])),
        "approve": (f"/api/v1/formulas/{formula.id}/approve", {"password": PASSWORD}),
        "version": (f"/api/v1/formulas/{formula.id}/versions", {}),
        "retire": (f"/api/v1/formulas/{formula.id}/retire", {"reason": "no"}),
    }[call]
    response = client.post(url, headers=headers, json=body)
    assert response.status_code == 403
    assert set(response.json) == {"error", "details"}
    assert _formula_rows() == 1
    assert db.session.get(Formula, formula.id).status == ("approved" if call == "version" else "draft")


@pytest.mark.parametrize("overrides, field", [
    ({"code": None}, "code"),
    ({"code": "lower case!"}, "code"),
    ({"indication": "weight_loss"}, "indication"),
    ({"unit_volume_ml": "0"}, "unit_volume_ml"),
    ({"unit_volume_ml": 1.0001}, "unit_volume_ml"),
    ({"bud_category": "category_9"}, "bud_category"),
    ({"bud_hours": 500}, "bud_hours"),
    ({"bud_reason": ""}, "bud_reason"),
    ({"bud_hours": "48"}, "bud_hours"),
    ({"components": None}, "components"),
    ({"components": [{"ingredient_id": 999999, "quantity": "1"}]}, "components"),
    ({"components": [{"ingredient_id": "abc", "quantity": "1"}]}, "components"),
    ({"components": [{"quantity": "1"}]}, "components"),
])
def test_a_bad_formula_body_answers_422_naming_the_field(client, auth, vitamin_c_and_ha, saline, overrides, field):
    response = client.post("/api/v1/formulas", headers=auth(),
                           json=_body([(vitamin_c_and_ha[0], "1"), (saline, "qs")], **overrides))
    assert response.status_code == 422, response.json
    assert field in response.json["details"]
    assert _formula_rows() == 0


def test_zero_quantities_and_an_ingredient_listed_twice_are_refused(client, auth, vitamin_c_and_ha):
    vc, ha = vitamin_c_and_ha
    headers = auth()
    zero = client.post("/api/v1/formulas", headers=headers, json=_body([(vc, "0")]))
    assert zero.status_code == 422 and zero.json["details"]["components"] == {
        "0": {"quantity": ["The quantity must be greater than zero."]}}
    twice = client.post("/api/v1/formulas", headers=headers, json=_body([(vc, "1"), (ha, "1"), (vc, "2")]))
    assert twice.status_code == 422 and twice.json["details"] == {"components": ["Ascorbic acid is listed twice."]}
    assert _formula_rows() == 0


def test_an_existing_code_answers_409(client, auth, make_formula, vitamin_c_and_ha, saline):
    make_formula(code="MESO-VCHA")
    response = client.post("/api/v1/formulas", headers=auth(),
                           json=_body([(vitamin_c_and_ha[0], "1"), (saline, "qs")]))
    assert response.status_code == 409 and "code" in response.json["details"]


def test_a_new_version_is_a_draft_copy_and_approving_it_retires_the_old_one(client, auth, make_formula):
    approved = make_formula(code="HAIR-MXBT")
    headers = auth()

    response = client.post(f"/api/v1/formulas/{approved.id}/versions", headers=headers)

    assert response.status_code == 201, response.json
    draft = response.json
    assert (draft["code"], draft["version"], draft["status"], draft["previous_version_id"]) == (
        "HAIR-MXBT", 2, "draft", approved.id)
    assert [c["quantity"] for c in draft["components"]] == ["2", "8"]
    assert client.post(f"/api/v1/formulas/{approved.id}/versions", headers=headers).status_code == 409
    assert client.patch(f"/api/v1/formulas/{approved.id}", headers=headers, json={"name": "x"}).status_code == 409
    active, diluent = (c["ingredient_id"] for c in draft["components"])
    changed = client.patch(f"/api/v1/formulas/{draft['id']}", headers=headers, json={
        "name": "Hair mix, more biotin", "components": [
            {"ingredient_id": active, "quantity": "3"}, {"ingredient_id": diluent, "quantity": "1", "qs": True}]})
    assert changed.status_code == 200, changed.json
    assert changed.json["name"] == "Hair mix, more biotin" and changed.json["unit_volume_ml"] == "10"
    assert [(c["quantity"], c["qs"]) for c in changed.json["components"]] == [("3", False), ("7", True)]

    # A second pharmacist approves the version.
    client.post(f"/api/v1/formulas/{draft['id']}/approve", headers=auth(), json={"password": PASSWORD})

    versions = client.get("/api/v1/formulas?code=hair-mxbt", headers=headers).json
    assert [(f["version"], f["status"]) for f in versions["items"]] == [(2, "approved"), (1, "retired")]


def test_retiring_needs_a_reason(client, auth, make_formula):
    formula = make_formula()
    headers = auth()
    missing = client.post(f"/api/v1/formulas/{formula.id}/retire", headers=headers, json={"reason": ""})
    assert missing.status_code == 422 and "reason" in missing.json["details"]
    response = client.post(f"/api/v1/formulas/{formula.id}/retire", headers=headers,
                           json={"reason": "Supplier withdrew the active"})
    assert response.status_code == 200 and response.json["status"] == "retired"
    assert datetime.fromisoformat(response.json["retired_at"]).utcoffset() is not None
    assert client.post(f"/api/v1/formulas/{formula.id}/retire", headers=headers,
                       json={"reason": "again"}).status_code == 409


def test_an_unknown_formula_answers_404_json(client, auth):
    headers = auth()
    assert client.get("/api/v1/formulas/424242", headers=headers).status_code == 404
    response = client.post("/api/v1/formulas/424242/approve", headers=headers, json={"password": PASSWORD})
    assert response.status_code == 404 and set(response.json) == {"error", "details"}


def test_the_list_filters_by_status_and_code_and_pages(client, auth, make_formula):
    make_formula(code="LIPO-PCDC")
    make_formula(code="MESO-VCHA", approve=False)
    make_formula(code="HAIR-MXBT")
    headers = auth("auditor")

    def codes(query):
        answer = client.get(f"/api/v1/formulas?{query}", headers=headers)
        assert answer.status_code == 200, answer.json
        return [f["code"] for f in answer.json["items"]]

    assert codes("") == ["HAIR-MXBT", "LIPO-PCDC", "MESO-VCHA"]
    assert codes("status=draft") == ["MESO-VCHA"]
    assert codes("status=approved&code=LIPO-PCDC") == ["LIPO-PCDC"]
    page = client.get("/api/v1/formulas?per_page=2&page=2", headers=headers).json
    assert (page["page"], page["per_page"], page["total"], len(page["items"])) == (2, 2, 3, 1)
    assert client.get("/api/v1/formulas?status=bogus", headers=headers).status_code == 422


def _add_formulas(count: int) -> None:
    """Formulas each with its own author, approver and ingredients: a lazy load per row would show."""
    from compounding.models import Ingredient

    start = _formula_rows()
    for n in range(start, start + count):
        author = User(username=f"author-{n}", display_name=f"Author {n}", role="pharmacist", password_hash="-")
        approver = User(username=f"approver-{n}", display_name=f"Approver {n}", role="pharmacist",
                        password_hash="-")
        ingredients = [Ingredient(name=f"Bulk {n} {k}", kind="active", unit="mL") for k in range(2)]
        db.session.add_all([author, approver, *ingredients])
        db.session.flush()
        db.session.add(Formula(
            code=f"BULK-{n:03d}", version=1, name=f"Bulk {n}", indication="other", route="intradermal",
            unit_volume_ml=Decimal("5"), bud_category="category_1", storage="room", status="approved",
            created_by_id=author.id, approved_by_id=approver.id, approved_at=utcnow(),
            components=[FormulaComponent(ingredient_id=i.id, quantity=Decimal("1"), position=k)
                        for k, i in enumerate(ingredients)]))
    db.session.commit()


def test_the_formula_list_costs_the_same_statements_for_5_and_50_formulas(client, auth):
    headers = auth("auditor")

    def statements(expected: int) -> int:
        db.session.expire_all()
        with QueryCounter(db.engine) as counter:
            response = client.get("/api/v1/formulas?per_page=200", headers=headers)
        assert response.status_code == 200 and len(response.json["items"]) == expected
        assert response.json["items"][0]["components"][0]["ingredient_name"].startswith("Bulk")
        return counter.count

    _add_formulas(5)
    with_5 = statements(5)
    _add_formulas(45)
    assert statements(50) == with_5


def test_the_openapi_document_lists_every_formula_operation(client):
    document = client.get("/api/v1/openapi.json").json
    validate_openapi(document)
    paths = document["paths"]
    expected = {
        "/api/v1/formulas": {"get", "post"},
        "/api/v1/formulas/{formula_id}": {"get", "patch"},
        "/api/v1/formulas/{formula_id}/approve": {"post"},
        "/api/v1/formulas/{formula_id}/versions": {"post"},
        "/api/v1/formulas/{formula_id}/retire": {"post"},
    }
    for path, methods in expected.items():
        assert set(paths[path]) == methods, path
    create = paths["/api/v1/formulas"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/FormulaCreate")
    assert {"201", "403", "409", "422"} <= set(create["responses"])
    assert {"403", "409"} <= set(paths["/api/v1/formulas/{formula_id}/approve"]["post"]["responses"])
    body = document["components"]["schemas"]["FormulaCreate"]
    assert set(body["required"]) == {"code", "name", "indication", "route", "dosage_form", "unit_volume_ml",
                                     "bud_category", "storage", "components"}


# --- Balanced formulas (DESIGN 10.2) --------------------------------------------------------


@pytest.mark.parametrize("rows, message", [
    ([("vc", "4"), ("saline", "4")], "Components in mL add up to 8 mL; the unit holds 5 mL."),
    ([("vc", "1"), ("saline", "1")], "Components in mL add up to 2 mL; the unit holds 5 mL: mark one diluent"),
    ([("ha", "10")], "Components in mL add up to 0 mL; the unit holds 5 mL"),
    ([("vc", "5"), ("saline", "qs")], "nothing is left to fill to volume"),
    ([("vc", "6"), ("saline", "qs")], "Components in mL add up to 6 mL; the unit holds 5 mL before"),
    ([("vc", "1"), ("saline", "qs"), ("water", "qs")], "Only one component can be filled to volume (qs)"),
    ([("vc", "qs"), ("saline", "4")], "Only a diluent can be filled to volume (qs): Ascorbic acid is active."),
])
def test_a_formula_that_cannot_balance_answers_422_naming_the_totals_and_saves_nothing(
        client, auth, make_ingredient, vitamin_c_and_ha, saline, rows, message):
    vc, ha = vitamin_c_and_ha
    named = {"vc": vc, "ha": ha, "saline": saline,
             "water": make_ingredient(name="Water for injection", kind="diluent")}
    response = client.post("/api/v1/formulas", headers=auth(), json=_body([(named[n], q) for n, q in rows]))
    assert response.status_code == 422, response.json
    assert message in response.json["error"] and response.json["details"]["components"] == [response.json["error"]]
    assert _formula_rows() == 0


def test_a_refusal_of_the_totals_gives_them_as_numbers_too(client, auth, vitamin_c_and_ha, saline):
    response = client.post("/api/v1/formulas", headers=auth(),
                           json=_body([(vitamin_c_and_ha[0], "4"), (saline, "4")]))
    assert (response.json["details"]["measured_ml"], response.json["details"]["unit_volume_ml"]) == ("8", "5")


def test_a_component_without_a_quantity_must_be_the_qs_line(client, auth, vitamin_c_and_ha, saline):
    body = _body([(saline, "qs")])
    body["components"].insert(0, {"ingredient_id": vitamin_c_and_ha[0].id})
    response = client.post("/api/v1/formulas", headers=auth(), json=body)
    assert response.status_code == 422
    assert response.json["details"]["components"] == {"0": {"quantity": [
        "Give the quantity per unit, or mark the diluent qs (to volume)."]}}


def test_patching_the_unit_volume_refills_the_qs_line(client, auth, vitamin_c_and_ha, saline):
    headers = auth()
    created = client.post("/api/v1/formulas", headers=headers,
                          json=_body([(vitamin_c_and_ha[0], "1"), (saline, "qs")])).json
    assert [c["quantity"] for c in created["components"]] == ["1", "4"]
    response = client.patch(f"/api/v1/formulas/{created['id']}", headers=headers, json={"unit_volume_ml": "10"})
    assert response.status_code == 200, response.json
    assert [(c["quantity"], c["qs"]) for c in response.json["components"]] == [("1", False), ("9", True)]


def test_a_patch_that_unbalances_a_draft_answers_422_and_changes_nothing(client, auth, vitamin_c_and_ha, saline):
    headers = auth()
    created = client.post("/api/v1/formulas", headers=headers,
                          json=_body([(vitamin_c_and_ha[0], "1"), (saline, "4")])).json
    response = client.patch(f"/api/v1/formulas/{created['id']}", headers=headers,
                            json={"unit_volume_ml": "10", "name": "Bigger"})
    assert response.status_code == 422
    assert "Components in mL add up to 5 mL; the unit holds 10 mL" in response.json["error"]
    again = client.get(f"/api/v1/formulas/{created['id']}", headers=headers).json
    assert (again["name"], again["unit_volume_ml"]) == (created["name"], "5")


def test_a_new_version_keeps_the_qs_line(client, auth, vitamin_c_and_ha, saline):
    created = client.post("/api/v1/formulas", headers=auth(),
                          json=_body([(vitamin_c_and_ha[0], "1"), (saline, "qs")])).json
    headers = auth()
    client.post(f"/api/v1/formulas/{created['id']}/approve", headers=headers, json={"password": PASSWORD})
    draft = client.post(f"/api/v1/formulas/{created['id']}/versions", headers=headers).json
    assert [(c["quantity"], c["qs"]) for c in draft["components"]] == [("1", False), ("4", True)]
    assert db.session.get(FormulaComponent, db.session.scalar(sa.select(FormulaComponent.id).where(
        FormulaComponent.formula_id == draft["id"], FormulaComponent.qs))).quantity == 4


def _legacy(author, ingredients, quantities, status="draft") -> Formula:
    """A formula saved before formulas had to balance: written without the services."""
    formula = Formula(code="OLD-1", version=1, name="Old mix", indication="other", route="intradermal",
                      unit_volume_ml=Decimal("5"), bud_category="category_1", storage="room", status=status,
                      instructions="Mix.", created_by_id=author.id,
                      components=[FormulaComponent(ingredient_id=i.id, quantity=Decimal(q), position=n)
                                  for n, (i, q) in enumerate(zip(ingredients, quantities, strict=True))])
    db.session.add(formula)
    db.session.commit()
    return formula


def test_approving_a_legacy_unbalanced_draft_answers_409_naming_the_totals(client, auth, make_user,
                                                                           vitamin_c_and_ha, saline):
    draft = _legacy(make_user("pharmacist"), [vitamin_c_and_ha[0], saline], ["4", "4"])
    response = client.post(f"/api/v1/formulas/{draft.id}/approve", headers=auth(), json={"password": PASSWORD})
    assert response.status_code == 409
    assert response.json["error"] == "OLD-1 v1 does not balance: Components in mL add up to 8 mL; the unit holds 5 mL."
    db.session.expire_all()
    assert db.session.get(Formula, draft.id).status == "draft"
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Signature)) == 0


def test_ensure_balanced_refuses_a_legacy_approved_formula_before_compounding(make_user, vitamin_c_and_ha, saline):
    from compounding.services.errors import InvalidState
    from compounding.services.formulas import ensure_balanced

    unbalanced = _legacy(make_user("pharmacist"), [vitamin_c_and_ha[0], saline], ["1", "1"], status="approved")
    with pytest.raises(InvalidState) as refused:
        ensure_balanced(unbalanced)
    assert refused.value.status_code == 409
    assert "Components in mL add up to 2 mL; the unit holds 5 mL" in refused.value.message
    unbalanced.components[1].quantity = Decimal("4")
    assert ensure_balanced(unbalanced).total_ml == Decimal("5")


def test_a_qs_quantity_left_stale_by_an_ingredient_edit_is_refused_at_approval(client, auth, make_ingredient,
                                                                               saline, pharmacist):
    from compounding.services import ingredients

    active = make_ingredient(name="Lidocaine")  # in mL
    headers = auth()
    created = client.post("/api/v1/formulas", headers=headers, json=_body([(active, "1"), (saline, "qs")])).json
    ingredients.update_ingredient(pharmacist, active, {
        "name": "Lidocaine", "kind": "active", "unit": "mg", "storage": "room", "gtins": []})
    response = client.post(f"/api/v1/formulas/{created['id']}/approve", headers=headers, json={"password": PASSWORD})
    assert response.status_code == 409
    assert "is stored as 4 mL to volume but the unit now needs 5 mL" in response.json["error"]


def test_formula_storage_takes_a_temperature_and_a_light_flag(client, auth, vitamin_c_and_ha, saline):
    headers = auth()
    rows = [(vitamin_c_and_ha[0], "1"), (saline, "qs")]
    legacy = client.post("/api/v1/formulas", headers=headers,
                         json=_body(rows, storage="protect_from_light", bud_hours=None, bud_reason=None))
    assert legacy.status_code == 201, legacy.json
    assert (legacy.json["storage"], legacy.json["protect_from_light"]) == ("room", True)
    patched = client.patch(f"/api/v1/formulas/{legacy.json['id']}", headers=headers,
                           json={"storage": "fridge", "protect_from_light": False})
    assert (patched.json["storage"], patched.json["protect_from_light"]) == ("fridge", False)
    assert client.post("/api/v1/formulas", headers=headers,
                       json=_body(rows, code="X-2", storage="dark")).status_code == 422


def test_the_openapi_document_describes_qs_and_light(client):
    schemas = client.get("/api/v1/openapi.json").json["components"]["schemas"]
    assert schemas["FormulaComponent"]["properties"]["qs"]["type"] == "boolean"
    assert "quantity" not in schemas["FormulaComponent"].get("required", [])
    assert schemas["FormulaCreate"]["properties"]["protect_from_light"]["type"] == "boolean"
    assert schemas["FormulaCreate"]["properties"]["storage"]["enum"] == ["room", "fridge", "freezer"]


# --- single- or multiple-dose ------------------------------------------------------------------------

EVIDENCE = "AET report 2026-014: passed (USP <51>)"


def test_a_formula_is_single_dose_unless_the_body_says_otherwise(client, auth, vitamin_c_and_ha, saline):
    response = client.post("/api/v1/formulas", headers=auth(),
                           json=_body([(vitamin_c_and_ha[0], "1"), (saline, "qs")]))

    assert response.status_code == 201, response.json
    assert (response.json["dose"], response.json["in_use_hours"], response.json["antimicrobial_evidence"]) == (
        "single", None, "")


def test_a_multiple_dose_formula_takes_its_in_use_hours_and_evidence(client, auth, vitamin_c_and_ha, saline):
    response = client.post("/api/v1/formulas", headers=auth(), json=_body(
        [(vitamin_c_and_ha[0], "1"), (saline, "qs")], dose="multiple", in_use_hours=672,
        antimicrobial_evidence=EVIDENCE))

    assert response.status_code == 201, response.json
    assert (response.json["dose"], response.json["in_use_hours"], response.json["antimicrobial_evidence"]) == (
        "multiple", 672, EVIDENCE)
    formula = db.session.get(Formula, response.json["id"])
    assert (formula.dose, formula.in_use_hours, formula.antimicrobial_evidence) == ("multiple", 672, EVIDENCE)


@pytest.mark.parametrize("overrides, field", [
    ({"dose": "twice"}, "dose"),
    ({"dose": "multiple", "in_use_hours": 673, "antimicrobial_evidence": EVIDENCE}, "in_use_hours"),
    ({"dose": "multiple", "in_use_hours": 0, "antimicrobial_evidence": EVIDENCE}, "in_use_hours"),
    ({"dose": "multiple", "antimicrobial_evidence": EVIDENCE}, "in_use_hours"),
    ({"dose": "multiple", "in_use_hours": "48", "antimicrobial_evidence": EVIDENCE}, "in_use_hours"),
    ({"dose": "multiple", "in_use_hours": 48}, "antimicrobial_evidence"),
    ({"dose": "multiple", "in_use_hours": 48, "antimicrobial_evidence": "   "}, "antimicrobial_evidence"),
    ({"dose": "single", "in_use_hours": 48}, "in_use_hours"),
])
def test_a_bad_dose_answers_422_naming_the_field_and_saves_nothing(client, auth, vitamin_c_and_ha, saline,
                                                                  overrides, field):
    response = client.post("/api/v1/formulas", headers=auth(),
                           json=_body([(vitamin_c_and_ha[0], "1"), (saline, "qs")], **overrides))

    assert response.status_code == 422, response.json
    assert field in response.json["details"], response.json
    assert _formula_rows() == 0


def test_a_draft_is_made_multiple_dose_by_patch(client, auth, vitamin_c_and_ha, saline):
    headers = auth()
    created = client.post("/api/v1/formulas", headers=headers, json=_body([(vitamin_c_and_ha[0], "1"), (saline, "qs")]))

    response = client.patch(f"/api/v1/formulas/{created.json['id']}", headers=headers, json={
        "dose": "multiple", "in_use_hours": 36, "antimicrobial_evidence": EVIDENCE})

    assert response.status_code == 200, response.json
    assert (response.json["dose"], response.json["in_use_hours"]) == ("multiple", 36)
