"""The ingredients API: create, read, partial update, and the list with stock on hand."""

from datetime import timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa
from testkit import QueryCounter

from compounding.extensions import db
from compounding.models import AuditEvent, Ingredient, IngredientGtin, Lot, User
from compounding.services import inventory
from compounding.services.clock import clinic_today, utcnow

FULL_BODY = {"name": "Phosphatidylcholine", "kind": "active", "unit": "mL", "strength": "50 mg/mL",
             "storage": "fridge", "gtins": ["5012345678900"], "reorder_level": "20.5"}


def _ingredient_count() -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(Ingredient))


def test_creating_an_ingredient_answers_201_with_its_fields(client, auth):
    response = client.post("/api/v1/ingredients", headers=auth(), json=FULL_BODY)

    assert response.status_code == 201, response.json
    answer = response.json
    assert isinstance(answer["id"], int)
    assert {k: answer[k] for k in ("name", "kind", "unit", "strength", "storage", "protect_from_light", "sterile",
                                   "vehicle", "gtins", "reorder_level", "active")} == {
        "name": "Phosphatidylcholine", "kind": "active", "unit": "mL", "strength": "50 mg/mL",
        "storage": "fridge", "protect_from_light": False, "sterile": False, "vehicle": False,
        "gtins": ["05012345678900"], "reorder_level": "20.5", "active": True}
    assert (answer["on_hand"], answer["nearest_expiry"], answer["below_reorder"]) == ("0", None, True)
    assert client.get(f"/api/v1/ingredients/{answer['id']}", headers=auth("auditor")).json == answer
    assert db.session.scalar(sa.select(AuditEvent.action).where(
        AuditEvent.entity_type == "ingredient", AuditEvent.entity_id == answer["id"])) == "ingredient.created"


def test_only_name_kind_and_unit_are_required(client, auth):
    response = client.post("/api/v1/ingredients", headers=auth(),
                           json={"name": "Sodium chloride 0.9 %", "kind": "diluent", "unit": "mL"})
    assert response.status_code == 201
    assert (response.json["storage"], response.json["reorder_level"], response.json["gtins"]) == ("room", "0", [])
    assert response.json["below_reorder"] is False


@pytest.mark.parametrize("changes, field", [
    ({"name": None}, "name"), ({"name": ""}, "name"), ({"kind": "powder"}, "kind"), ({"unit": "kg"}, "unit"),
    ({"storage": "shelf"}, "storage"), ({"reorder_level": "-1"}, "reorder_level"),
    ({"reorder_level": "1.2345"}, "reorder_level"), ({"reorder_level": "lots"}, "reorder_level"),
    ({"gtins": ["12ab"]}, "gtins"), ({"gtins": ["5012345678901"]}, "gtins"), ({"colour": "blue"}, "colour"),
    ({"id": 7}, "id"), ({"on_hand": "5"}, "on_hand"), ({"sterile": "maybe"}, "sterile"),
    ({"protect_from_light": "dark"}, "protect_from_light"), ({"vehicle": 2}, "vehicle"),
    # Only a diluent may be a pure vehicle: a drug marked so would vanish from the label.
    ({"kind": "active", "vehicle": True}, "vehicle"),
])
def test_an_invalid_ingredient_answers_422_naming_the_field_and_saves_nothing(client, auth, changes, field):
    body = {**FULL_BODY, **changes}
    body = {k: v for k, v in body.items() if v is not None}
    response = client.post("/api/v1/ingredients", headers=auth(), json=body)

    assert response.status_code == 422, response.json
    assert field in response.json["details"]
    assert _ingredient_count() == 0


def test_a_second_ingredient_with_the_same_name_answers_409(client, auth):
    headers = auth()
    first = client.post("/api/v1/ingredients", headers=headers, json=FULL_BODY).json
    response = client.post("/api/v1/ingredients", headers=headers,
                           json={**FULL_BODY, "name": "PHOSPHATIDYLCHOLINE", "gtins": []})
    assert response.status_code == 409
    assert response.json["details"]["existing_id"] == first["id"]
    assert _ingredient_count() == 1


@pytest.mark.parametrize("data", ["[]", '"Biotin"', "{broken", ""])
def test_a_body_that_is_not_a_json_object_answers_400(client, auth, data):
    response = client.post("/api/v1/ingredients", data=data,
                           headers={**auth(), "Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json["error"]


@pytest.mark.parametrize("role", ["technician", "practitioner", "auditor", "admin"])
def test_only_a_pharmacist_may_create_or_change_ingredients(client, auth, make_ingredient, role):
    ingredient = make_ingredient(name="Biotin", reorder_level="5")
    headers = auth(role)
    assert client.post("/api/v1/ingredients", headers=headers, json=FULL_BODY).status_code == 403
    response = client.patch(f"/api/v1/ingredients/{ingredient.id}", headers=headers, json={"reorder_level": "9"})
    assert response.status_code == 403
    assert client.get(f"/api/v1/ingredients/{ingredient.id}", headers=headers).json["reorder_level"] == "5"
    assert _ingredient_count() == 1


def test_an_unknown_ingredient_answers_404(client, auth):
    headers = auth()
    assert client.get("/api/v1/ingredients/999", headers=headers).status_code == 404
    response = client.patch("/api/v1/ingredients/999", headers=headers, json={"reorder_level": "1"})
    assert response.status_code == 404
    assert response.json["error"]


def test_patch_changes_only_the_given_fields(client, auth, make_ingredient):
    ingredient = make_ingredient(name="Minoxidil", unit="mg", strength="5 %", storage="room",
                                 reorder_level="10", gtins=["4006381333931"], sterile=True)
    # An existing client still sends the first tranche's light "storage": read as room + the flag.
    response = client.patch(f"/api/v1/ingredients/{ingredient.id}", headers=auth(),
                            json={"reorder_level": "25", "storage": "protect_from_light"})

    assert response.status_code == 200, response.json
    assert {k: response.json[k] for k in ("name", "unit", "strength", "storage", "protect_from_light", "sterile",
                                          "vehicle", "reorder_level", "gtins")} == {
        "name": "Minoxidil", "unit": "mg", "strength": "5 %", "storage": "room", "protect_from_light": True,
        "sterile": True, "vehicle": False, "reorder_level": "25", "gtins": ["04006381333931"]}
    event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "ingredient.updated"))
    assert (event.old_values["reorder_level"], event.new_values["reorder_level"]) == ("10", "25")


def test_an_ingredient_is_created_sterile_light_protected_or_a_vehicle(client, auth):
    headers = auth()
    saline = client.post("/api/v1/ingredients", headers=headers, json={
        "name": "Sodium chloride 0.9 %", "kind": "diluent", "unit": "mL", "sterile": True, "vehicle": True})
    vitamin_c = client.post("/api/v1/ingredients", headers=headers, json={
        "name": "Ascorbic acid", "kind": "active", "unit": "mL", "storage": "fridge", "protect_from_light": True})

    assert (saline.status_code, vitamin_c.status_code) == (201, 201)
    assert {k: saline.json[k] for k in ("storage", "protect_from_light", "sterile", "vehicle")} == {
        "storage": "room", "protect_from_light": False, "sterile": True, "vehicle": True}
    assert {k: vitamin_c.json[k] for k in ("storage", "protect_from_light", "sterile", "vehicle")} == {
        "storage": "fridge", "protect_from_light": True, "sterile": False, "vehicle": False}
    stored = db.session.get(Ingredient, saline.json["id"])
    assert (stored.sterile, stored.vehicle, stored.protect_from_light) == (True, True, False)


def test_the_legacy_light_storage_is_still_accepted_on_create_as_room_and_the_flag(client, auth):
    response = client.post("/api/v1/ingredients", headers=auth(), json={**FULL_BODY, "storage": "protect_from_light"})
    assert response.status_code == 201, response.json
    assert (response.json["storage"], response.json["protect_from_light"]) == ("room", True)


def test_patch_keeps_the_flags_it_is_not_sent_and_changes_the_ones_it_is(client, auth, make_ingredient):
    ingredient = make_ingredient(name="Lidocaine", sterile=True, protect_from_light=True, vehicle=False)
    headers = auth()
    kept = client.patch(f"/api/v1/ingredients/{ingredient.id}", headers=headers, json={"strength": "2 %"})
    assert (kept.json["sterile"], kept.json["protect_from_light"], kept.json["vehicle"]) == (True, True, False)
    changed = client.patch(f"/api/v1/ingredients/{ingredient.id}", headers=headers,
                           json={"sterile": False, "storage": "room"})
    assert changed.status_code == 200, changed.json
    assert (changed.json["sterile"], changed.json["protect_from_light"], changed.json["storage"]) == (
        False, True, "room")
    event = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "ingredient.updated")
                               .order_by(AuditEvent.id.desc())).first()
    assert (event.old_values["sterile"], event.new_values["sterile"]) == (True, False)


def test_patch_refuses_a_storage_that_is_no_temperature(client, auth, make_ingredient):
    ingredient = make_ingredient(name="Biotin", storage="room")
    response = client.patch(f"/api/v1/ingredients/{ingredient.id}", headers=auth(), json={"storage": "dark"})
    assert response.status_code == 422 and "storage" in response.json["details"]


def test_the_openapi_document_offers_the_three_temperatures_and_the_flags(client):
    schemas = client.get("/api/v1/openapi.json").json["components"]["schemas"]
    body = schemas["Ingredient"]["properties"]
    assert body["storage"]["enum"] == ["room", "fridge", "freezer"]
    assert "protect_from_light" in body["storage"]["description"]
    assert {body[flag]["type"] for flag in ("sterile", "protect_from_light", "vehicle")} == {"boolean"}


def test_patch_can_replace_gtins_and_deactivate(client, auth, make_ingredient):
    ingredient = make_ingredient(name="Biotin", gtins=["4006381333931"])
    headers = auth()
    response = client.patch(f"/api/v1/ingredients/{ingredient.id}", headers=headers,
                            json={"gtins": ["5012345678900"], "active": False})

    assert response.status_code == 200
    assert (response.json["gtins"], response.json["active"]) == (["05012345678900"], False)
    assert db.session.scalars(sa.select(IngredientGtin.gtin)).all() == ["05012345678900"]
    names = [i["name"] for i in client.get("/api/v1/ingredients", headers=headers).json["items"]]
    assert "Biotin" not in names
    everything = client.get("/api/v1/ingredients?include_inactive=true", headers=headers).json["items"]
    assert [i["name"] for i in everything] == ["Biotin"]


def test_patch_cannot_change_the_unit_once_lots_exist(client, auth, make_lot, make_ingredient):
    ingredient = make_ingredient(name="Lidocaine", unit="mL")
    make_lot(ingredient)
    response = client.patch(f"/api/v1/ingredients/{ingredient.id}", headers=auth(), json={"unit": "mg"})
    assert response.status_code == 409
    assert "unit" in response.json["details"]
    db.session.expire_all()
    assert db.session.get(Ingredient, ingredient.id).unit == "mL"


def test_patch_refuses_a_name_taken_by_another_ingredient(client, auth, make_ingredient):
    make_ingredient(name="Biotin")
    other = make_ingredient(name="Minoxidil")
    response = client.patch(f"/api/v1/ingredients/{other.id}", headers=auth(), json={"name": "biotin"})
    assert response.status_code == 409
    assert "name" in response.json["details"]


def test_the_list_shows_released_unexpired_stock_nearest_expiry_and_reorder_flag(client, auth, make_ingredient,
                                                                                  make_lot):
    today = clinic_today()
    vitamin_c = make_ingredient(name="Ascorbic acid", reorder_level="300")
    make_lot(vitamin_c, quantity="200", expires_on=today + timedelta(days=40))
    make_lot(vitamin_c, quantity="50.5", expires_on=today + timedelta(days=90))
    make_lot(vitamin_c, quantity="999", release=False, expires_on=today + timedelta(days=5))  # quarantine
    make_lot(vitamin_c, quantity="777", release=False, expires_on=today - timedelta(days=1),
             received_at=utcnow() - timedelta(days=20))  # expired
    saline = make_ingredient(name="Sodium chloride 0.9 %", reorder_level="0")
    headers = auth("auditor")

    items = {i["name"]: i for i in client.get("/api/v1/ingredients", headers=headers).json["items"]}
    assert (items["Ascorbic acid"]["on_hand"], items["Ascorbic acid"]["nearest_expiry"],
            items["Ascorbic acid"]["below_reorder"]) == ("250.5", (today + timedelta(days=40)).isoformat(), True)
    assert (items["Sodium chloride 0.9 %"]["on_hand"], items["Sodium chloride 0.9 %"]["nearest_expiry"],
            items["Sodium chloride 0.9 %"]["below_reorder"]) == ("0", None, False)

    below = client.get("/api/v1/ingredients?below_reorder=true", headers=headers).json
    assert ([i["id"] for i in below["items"]], below["total"]) == ([vitamin_c.id], 1)
    found = client.get("/api/v1/ingredients?q=chloride", headers=headers).json["items"]
    assert [i["id"] for i in found] == [saline.id]
    assert client.get("/api/v1/ingredients?q=100%25", headers=headers).json["items"] == []


def test_the_ingredient_list_pages_by_name(client, auth, make_ingredient):
    for name in ("Minoxidil", "Biotin", "Lidocaine"):
        make_ingredient(name=name)
    headers = auth()
    first = client.get("/api/v1/ingredients?per_page=2", headers=headers).json
    second = client.get("/api/v1/ingredients?per_page=2&page=2", headers=headers).json
    assert (first["page"], first["per_page"], first["total"]) == (1, 2, 3)
    assert [i["name"] for i in first["items"] + second["items"]] == ["Biotin", "Lidocaine", "Minoxidil"]


def test_a_bad_list_filter_answers_422_naming_it(client, auth):
    response = client.get("/api/v1/ingredients?below_reorder=maybe", headers=auth())
    assert response.status_code == 422
    assert list(response.json["details"]) == ["below_reorder"]


def _add_ingredients(count: int, owner) -> None:
    """Ingredients with a GTIN and a released lot each, straight into the tables."""
    start = _ingredient_count()
    rows = []
    for n in range(start, start + count):
        ingredient = Ingredient(name=f"Bulk {n:04d}", kind="active", unit="mg", reorder_level=Decimal("5"))
        rows += [ingredient, IngredientGtin(ingredient=ingredient, gtin=f"{n:014d}"),
                 Lot(code=f"T{n:06d}", ingredient=ingredient, supplier="Bulk", supplier_lot_number=f"B-{n}",
                     received_by_id=owner.id, expires_on=clinic_today() + timedelta(days=30),
                     quantity_received=Decimal("10"), remaining=Decimal("10"), status="released")]
    db.session.add_all(rows)
    db.session.commit()


def test_the_ingredient_list_costs_the_same_statements_for_5_and_200_ingredients(client, auth, make_user):
    owner = make_user("technician")
    headers = auth("auditor")

    def statements(expected: int) -> int:
        db.session.expire_all()
        with QueryCounter(db.engine) as counter:
            response = client.get("/api/v1/ingredients?per_page=200", headers=headers)
        assert response.status_code == 200
        assert len(response.json["items"]) == expected
        assert all(i["on_hand"] == "10" and len(i["gtins"]) == 1 for i in response.json["items"])
        return counter.count

    _add_ingredients(5, owner)
    with_5 = statements(5)
    _add_ingredients(195, owner)
    assert statements(200) == with_5


def test_the_service_and_the_api_agree_on_the_stock_rule(client, auth, make_ingredient, make_lot):
    # Depleting a lot through the service removes it from on-hand stock in the API answer.
    ingredient = make_ingredient(name="Biotin")
    lot = make_lot(ingredient, quantity="4")
    technician = db.session.get(User, lot.received_by_id)
    inventory.adjust_lot(technician, lot.id, reason="damaged", quantity="4")
    answer = client.get(f"/api/v1/ingredients/{ingredient.id}", headers=auth()).json
    assert (answer["on_hand"], answer["nearest_expiry"]) == ("0", None)
