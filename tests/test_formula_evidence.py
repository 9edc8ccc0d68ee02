"""Long BUDs need evidence (DESIGN 10.2): approval checks the components against the BUD category."""

import pytest
import sqlalchemy as sa
from testkit import PASSWORD

from compounding.extensions import db
from compounding.models import Formula, Signature
from compounding.services import formulas
from compounding.services.bud import IMMEDIATE_USE_MAX_PRODUCTS, STERILE_ONLY_CATEGORIES
from compounding.services.errors import InvalidState

STERILE_ONLY = "category_2_aseptic_sterile_components"


def _draft(author, rows, category: str, unit_volume: str = "5") -> Formula:
    """A balanced draft of `category`; a quantity of "qs" fills the unit to volume."""
    return formulas.create_formula(author, {
        "code": "MESO-1", "name": "Mesolift", "indication": "skin_rejuvenation", "route": "intradermal",
        "dosage_form": "solution for injection", "unit_volume_ml": unit_volume, "instructions": "Mix.",
        "storage": "fridge", "bud_category": category,
        "components": [{"ingredient_id": i.id, "qs": True} if q == "qs" else {"ingredient_id": i.id, "quantity": q}
                       for i, q in rows]})


@pytest.fixture
def author(make_user):
    return make_user("pharmacist", username="author")


@pytest.fixture
def approver(make_user):
    return make_user("pharmacist", username="approver", display_name="Dr Ines Moreau")


def _signatures() -> int:
    return db.session.scalar(sa.select(sa.func.count(Signature.id)))


def test_the_sterile_only_category_is_one_the_rule_knows():
    assert STERILE_ONLY in STERILE_ONLY_CATEGORIES


def test_a_sterile_only_category_is_refused_with_a_non_sterile_component_named(author, approver, make_ingredient):
    ha = make_ingredient(name="Hyaluronic acid", sterile=True)
    vitamin_c = make_ingredient(name="Ascorbic acid", sterile=False)
    saline = make_ingredient(name="Saline", kind="diluent", sterile=True)
    draft = _draft(author, [(ha, "2"), (vitamin_c, "1"), (saline, "qs")], STERILE_ONLY)

    with pytest.raises(InvalidState) as refused:
        formulas.approve_formula(approver, draft.id, PASSWORD)

    assert refused.value.status_code == 409
    assert "only sterile starting components: Ascorbic acid is not sterile" in refused.value.message
    assert "Hyaluronic acid" not in refused.value.message
    db.session.rollback()
    assert db.session.get(Formula, draft.id).status == "draft" and _signatures() == 0


def test_a_sterile_only_category_is_approved_when_every_component_is_sterile(author, approver, make_ingredient):
    ha = make_ingredient(name="Hyaluronic acid", sterile=True)
    saline = make_ingredient(name="Saline", kind="diluent", sterile=True)
    draft = _draft(author, [(ha, "2"), (saline, "qs")], STERILE_ONLY)
    assert formulas.approve_formula(approver, draft.id, PASSWORD).status == "approved"


def test_a_category_for_non_sterile_components_takes_them(author, approver, make_ingredient):
    pc = make_ingredient(name="Phosphatidylcholine", sterile=False)
    saline = make_ingredient(name="Saline", kind="diluent", sterile=False)
    draft = _draft(author, [(pc, "2"), (saline, "qs")], "category_2_aseptic_nonsterile_components")
    assert formulas.approve_formula(approver, draft.id, PASSWORD).status == "approved"


def test_immediate_use_is_refused_with_more_than_three_products(author, approver, make_ingredient):
    rows = [(make_ingredient(name=f"Active {n}", sterile=True), "1") for n in range(IMMEDIATE_USE_MAX_PRODUCTS)]
    rows.append((make_ingredient(name="Saline", kind="diluent", sterile=True), "qs"))
    draft = _draft(author, rows, "immediate_use")

    with pytest.raises(InvalidState) as refused:
        formulas.approve_formula(approver, draft.id, PASSWORD)

    assert "at most 3 sterile products (4 components)" in refused.value.message
    assert refused.value.details == {"reasons": ["immediate use takes at most 3 sterile products (4 components)"]}


def test_immediate_use_is_refused_with_a_non_sterile_product_named(author, approver, make_ingredient):
    lidocaine = make_ingredient(name="Lidocaine", sterile=False)
    saline = make_ingredient(name="Saline", kind="diluent", sterile=True)
    draft = _draft(author, [(lidocaine, "0.5"), (saline, "qs")], "immediate_use")
    with pytest.raises(InvalidState, match="sterile products only: Lidocaine is not sterile"):
        formulas.approve_formula(approver, draft.id, PASSWORD)


def test_immediate_use_from_three_sterile_products_is_approved(author, approver, make_ingredient):
    rows = [(make_ingredient(name=f"Active {n}", sterile=True), "1") for n in range(2)]
    rows.append((make_ingredient(name="Saline", kind="diluent", sterile=True), "qs"))
    assert formulas.approve_formula(approver, _draft(author, rows, "immediate_use").id, PASSWORD).status == "approved"


def test_the_api_answers_409_naming_the_non_sterile_component(client, auth, author, make_ingredient):
    vitamin_c = make_ingredient(name="Ascorbic acid", sterile=False)
    saline = make_ingredient(name="Saline", kind="diluent", sterile=True)
    draft = _draft(author, [(vitamin_c, "1"), (saline, "qs")], STERILE_ONLY)
    response = client.post(f"/api/v1/formulas/{draft.id}/approve", headers=auth(), json={"password": PASSWORD})
    assert response.status_code == 409
    assert "Ascorbic acid is not sterile" in response.json["error"]
    assert [c["sterile"] for c in client.get(f"/api/v1/formulas/{draft.id}", headers=auth()).json["components"]] == [
        False, True]
    assert _signatures() == 0


def test_the_detail_page_shows_each_components_sterility_and_why_approval_would_be_refused(
        client, as_role, author, make_ingredient):
    vitamin_c = make_ingredient(name="Ascorbic acid", sterile=False)
    saline = make_ingredient(name="Saline", kind="diluent", sterile=True)
    draft = _draft(author, [(vitamin_c, "1"), (saline, "qs")], STERILE_ONLY)
    as_role("pharmacist")
    page = client.get(f"/formulas/{draft.id}").get_data(as_text=True)
    assert '<td><span class="text-warning-emphasis">not sterile</span></td>' in page and "<td>sterile</td>" in page
    assert "Cannot be approved in this category: " in page and "Ascorbic acid is not sterile" in page

    response = client.post(f"/formulas/{draft.id}/approve", data={"approve-password": PASSWORD})
    assert response.status_code == 422
    assert "MESO-1 v1 cannot be approved: " in response.get_data(as_text=True)
    assert db.session.get(Formula, draft.id).status == "draft"
