"""The sites API, and where lots and batches are in their own answers."""

import pytest
from testkit import QueryCounter, bearer, count_rows

from compounding.extensions import db
from compounding.models import Location, Site
from compounding.services import sites, users


@pytest.fixture
def lyon(make_user):
    return sites.create_site(make_user("admin"), "LYON", "Lyon clinic", "Europe/Paris")


def test_creating_a_site_answers_201_with_its_default_location(client, auth):
    response = client.post("/api/v1/sites", headers=auth("pharmacist"),
                           json={"code": "MAD-01", "name": "Madrid", "timezone": "Europe/Madrid"})
    assert response.status_code == 201, response.json
    site = response.json
    assert (site["code"], site["timezone"], site["locations_count"]) == ("MAD-01", "Europe/Madrid", 1)
    assert site["locations"][0]["name"] == "Main store" and site["locations"][0]["is_default"]


@pytest.mark.parametrize(("body", "status"), [
    ({"code": "MAIN", "name": "Again"}, 409),
    ({"code": "LYON", "name": "Lyon", "timezone": "Europe/Lyon"}, 422),
    ({"code": "ly on", "name": "Lyon"}, 422),
    ({"name": "No code"}, 422),
])
def test_a_bad_site_is_refused_and_nothing_is_made(client, auth, body, status):
    before = count_rows(Site)
    response = client.post("/api/v1/sites", headers=auth("pharmacist"), json=body)
    assert response.status_code == status, response.json
    assert set(response.json) == {"error", "details"}
    assert count_rows(Site) == before


def test_a_technician_cannot_create_sites_or_locations(client, auth):
    headers = auth("technician")
    assert client.post("/api/v1/sites", headers=headers, json={"code": "LYON", "name": "Lyon"}).status_code == 403
    assert client.post("/api/v1/locations", headers=headers,
                       json={"site_id": 1, "name": "Fridge", "kind": "fridge"}).status_code == 403


def test_the_site_list_counts_locations_in_a_fixed_number_of_statements(client, auth, lyon, make_user):
    headers = auth("pharmacist")
    client.get("/api/v1/sites", headers=headers)
    with QueryCounter(db.engine) as few:
        client.get("/api/v1/sites", headers=headers)
    boss = make_user("admin")
    for code in ("MAD", "ROME", "NICE"):
        sites.create_site(boss, code, code.title(), "Europe/Paris")
    with QueryCounter(db.engine) as many:
        listed = client.get("/api/v1/sites", headers=headers).json
    assert many.count == few.count
    assert listed["total"] == 5 and {item["code"]: item["locations_count"] for item in listed["items"]}["LYON"] == 1
    assert set(listed) == {"items", "page", "per_page", "total"}


def test_a_location_is_created_and_read_back(client, auth, lyon, make_user):
    headers = auth(make_user("pharmacist", site_codes=["LYON"]))  # a site's locations are its members' to make
    store = sites.default_location(lyon.id)
    response = client.post("/api/v1/locations", headers=headers, json={
        "site_id": lyon.id, "name": "Fridge 1", "kind": "fridge", "parent_id": store.id,
        "min_celsius": "2", "max_celsius": "8"})
    assert response.status_code == 201, response.json
    made = response.json
    assert made["code"].startswith("LOC") and made["parent_id"] == store.id
    assert (made["min_celsius"], made["max_celsius"]) == ("2.0", "8.0")
    again = client.get(f"/api/v1/locations/{made['id']}", headers=headers).json
    assert again == made
    detail = client.get(f"/api/v1/sites/{lyon.id}", headers=headers).json
    assert [row["name"] for row in detail["locations"]] == ["Main store", "Fridge 1"]


def test_a_location_with_a_parent_at_another_site_or_a_stock_like_code_is_refused(client, auth, lyon):
    headers = auth("pharmacist")
    before = count_rows(Location)
    main = sites.main_site()
    other = client.post("/api/v1/locations", headers=headers, json={
        "site_id": main.id, "name": "Fridge", "kind": "fridge", "parent_id": sites.default_location(lyon.id).id})
    assert other.status_code == 422 and "parent_id" in other.json["details"]
    coded = client.post("/api/v1/locations", headers=headers, json={
        "site_id": main.id, "name": "Fridge", "kind": "fridge", "code": "L000001"})
    assert coded.status_code == 422
    assert count_rows(Location) == before


def test_a_site_outside_a_practitioners_sites_is_not_found(client, auth, lyon):
    assert client.get(f"/api/v1/sites/{lyon.id}", headers=auth("practitioner")).status_code == 404


# --- lots and batches say where they are ---------------------------------------------------------


def test_a_lot_received_at_a_location_says_where_it_is(client, auth, make_ingredient):
    headers = auth("technician")
    fridge = sites.create_location(None, sites.main_site().id, "Fridge 1", "fridge")
    response = client.post("/api/v1/lots", headers=headers, json={
        "ingredient_id": make_ingredient().id, "supplier": "Acme", "lot_number": "X1", "expiry_date": "2031-01",
        "quantity": "10", "location_id": fridge.id, "location": "shelf B"})
    assert response.status_code == 201, response.json
    lot = response.json
    assert lot["storage_location"] == {"id": fridge.id, "code": fridge.code, "name": "Fridge 1"}
    assert lot["site"] == {"id": sites.main_site().id, "code": "MAIN"} and lot["location"] == "shelf B"
    assert client.get(f"/api/v1/lots/{lot['id']}", headers=headers).json["storage_location"]["code"] == fridge.code


def test_a_lot_without_a_location_goes_to_the_receivers_site_default(client, auth, make_ingredient, lyon, make_user):
    technician = make_user("technician", site_codes=["LYON"])
    token = users.create_token(None, technician, "scanner")
    response = client.post("/api/v1/lots", headers=bearer(token), json={
        "ingredient_id": make_ingredient().id, "supplier": "Acme", "lot_number": "X2", "expiry_date": "2031-01",
        "quantity": "10"})
    assert response.status_code == 201, response.json
    assert response.json["site"]["code"] == "LYON"
    assert response.json["storage_location"]["id"] == sites.default_location(lyon.id).id


def test_a_lot_cannot_be_received_at_a_site_the_receiver_does_not_belong_to(client, auth, make_ingredient, lyon):
    response = client.post("/api/v1/lots", headers=auth("technician"), json={
        "ingredient_id": make_ingredient().id, "supplier": "Acme", "lot_number": "X3", "expiry_date": "2031-01",
        "quantity": "10", "location_id": sites.default_location(lyon.id).id})
    assert response.status_code == 403
    assert "LYON" in response.json["error"]


def test_a_batch_compounded_at_a_location_says_where_it_is(client, auth, make_formula, make_lot, app):
    app.config["REQUIRE_SCAN_CONFIRMATION"] = False
    formula = make_formula()
    for component in formula.components:
        make_lot(component.ingredient, quantity="1000")
    fridge = sites.create_location(None, sites.main_site().id, "Fridge 1", "fridge")
    response = client.post("/api/v1/batches", headers=auth("pharmacist"), json={
        "formula_id": formula.id, "units": 2, "location_id": fridge.id})
    assert response.status_code == 201, response.json
    assert response.json["storage_location"] == {"id": fridge.id, "code": fridge.code, "name": "Fridge 1"}
    assert response.json["site"]["code"] == "MAIN"
