"""Ingredient pages: storage is a temperature; sterile, light protection and vehicle are flags of their own."""

import sqlalchemy as sa

from compounding.extensions import db
from compounding.models import AuditEvent, Ingredient

FORM = {"name": "Sodium chloride 0.9 %", "kind": "diluent", "unit": "mL", "strength": "0.9 %",
        "storage": "room", "reorder_level": "0", "gtins": "", "active": "y"}


def test_the_form_asks_for_a_temperature_and_the_three_flags(client, as_role):
    as_role("pharmacist")
    page = client.get("/ingredients/new").get_data(as_text=True)
    for flag in ("sterile", "protect_from_light", "vehicle"):
        assert f'id="{flag}" name="{flag}" type="checkbox"' in page
    assert '<option value="fridge">' in page and '<option value="protect_from_light"' not in page


def test_a_pharmacist_creates_a_sterile_vehicle_and_the_pages_show_it(client, as_role):
    as_role("pharmacist")
    response = client.post("/ingredients/new", data={**FORM, "sterile": "y", "vehicle": "y"})

    assert response.status_code == 302, response.get_data(as_text=True)[:2000]
    saline = db.session.scalar(sa.select(Ingredient))
    assert (saline.sterile, saline.vehicle, saline.protect_from_light) == (True, True, False)
    detail = client.get(f"/ingredients/{saline.id}").get_data(as_text=True)
    assert "Yes, supplied sterile" in detail and "Yes: not named on labels as a drug" in detail
    assert "protect from light" not in detail
    listing = client.get("/ingredients/").get_data(as_text=True)
    assert '<span class="badge text-bg-success">sterile</span>' in listing
    assert '<span class="badge text-bg-secondary">vehicle</span>' in listing


def test_editing_sets_light_protection_and_clears_sterile_with_an_audit_row(client, as_role, make_ingredient):
    ingredient = make_ingredient(name="Ascorbic acid", kind="active", storage="fridge", sterile=True)
    as_role("pharmacist")
    form = client.get(f"/ingredients/{ingredient.id}/edit").get_data(as_text=True)
    assert 'checked class="form-check-input" id="sterile"' in form

    response = client.post(f"/ingredients/{ingredient.id}/edit", data={
        **FORM, "name": "Ascorbic acid", "kind": "active", "storage": "fridge", "protect_from_light": "y"})

    assert response.status_code == 302, response.get_data(as_text=True)[:2000]
    db.session.expire_all()
    ingredient = db.session.get(Ingredient, ingredient.id)
    assert (ingredient.storage, ingredient.protect_from_light, ingredient.sterile) == ("fridge", True, False)
    event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "ingredient.updated"))
    assert (event.old_values["protect_from_light"], event.new_values["protect_from_light"]) == (False, True)
    detail = client.get(f"/ingredients/{ingredient.id}").get_data(as_text=True)
    assert "fridge · <strong>protect from light</strong>" in detail and "<dd class=\"col-sm-9\">No</dd>" in detail
    assert "<div class=\"small\">protect from light</div>" in client.get("/ingredients/").get_data(as_text=True)


def test_a_storage_that_is_no_temperature_is_refused_on_the_page(client, as_role):
    as_role("pharmacist")
    response = client.post("/ingredients/new", data={**FORM, "storage": "protect_from_light"})
    assert response.status_code == 422 and "Not a valid choice" in response.get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.count(Ingredient.id))) == 0
