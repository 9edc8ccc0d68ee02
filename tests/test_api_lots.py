"""The lots API: receiving, release and rejection with e-signatures, adjustments, the list."""

from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa
from testkit import PASSWORD, QueryCounter

from compounding.extensions import db
from compounding.models import Ingredient, IngredientGtin, Lot, Signature, StockMovement, User
from compounding.services.clock import clinic_today, utcnow

LOT_FIELDS = {
    "id", "code", "ingredient_id", "ingredient_name", "unit", "supplier", "lot_number", "gtin",
    "expiry_date", "expired", "quantity_received", "remaining", "status", "status_reason",
    "coa_reference", "location", "storage_location", "site", "received_at", "released_at", "released_by",
}


@pytest.fixture
def ingredient(make_ingredient):
    return make_ingredient(name="Hyaluronic acid", unit="mg")


def _body(ingredient, **overrides):
    body = {"ingredient_id": ingredient.id, "supplier": "Acme Pharma", "lot_number": "HA-2291",
            "expiry_date": (clinic_today() + timedelta(days=400)).isoformat(), "quantity": "250"}
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


def _stock_rows() -> tuple[int, int]:
    return (db.session.scalar(sa.select(sa.func.count()).select_from(Lot)),
            db.session.scalar(sa.select(sa.func.count()).select_from(StockMovement)))


def _lot_state(lot_id: int) -> tuple:
    db.session.expire_all()
    lot = db.session.get(Lot, lot_id)
    movements = db.session.scalar(sa.select(sa.func.count()).where(StockMovement.lot_id == lot_id))
    return lot.status, lot.remaining, movements


# --- receiving ---------------------------------------------------------------------------------


def test_receiving_a_lot_answers_201_in_quarantine_with_the_design_shape(client, auth, ingredient):
    expiry = clinic_today() + timedelta(days=400)
    response = client.post("/api/v1/lots", headers=auth("technician"), json=_body(
        ingredient, quantity="12.5", expiry_date=expiry.isoformat(), gtin="5012345678900",
        coa_reference="COA-77", location="Fridge 2"))

    assert response.status_code == 201, response.json
    lot = response.json
    assert set(lot) >= LOT_FIELDS
    assert lot["code"].startswith("L") and len(lot["code"]) == 7
    assert lot["status"] == "quarantine"
    assert (lot["quantity_received"], lot["remaining"]) == ("12.5", "12.5")
    assert lot["expiry_date"] == expiry.isoformat()
    assert lot["expired"] is False
    assert (lot["ingredient_id"], lot["ingredient_name"], lot["unit"]) == (
        ingredient.id, "Hyaluronic acid", "mg")
    assert (lot["supplier"], lot["lot_number"], lot["gtin"]) == ("Acme Pharma", "HA-2291", "05012345678900")
    assert (lot["coa_reference"], lot["location"]) == ("COA-77", "Fridge 2")
    assert datetime.fromisoformat(lot["received_at"]).utcoffset() is not None
    assert (lot["released_at"], lot["released_by"]) == (None, None)
    assert client.get(f"/api/v1/lots/{lot['id']}", headers=auth("auditor")).json == lot


def test_whole_quantities_are_answered_without_trailing_zeros(client, auth, ingredient):
    response = client.post("/api/v1/lots", headers=auth(), json=_body(ingredient, quantity=250))
    assert response.status_code == 201
    assert (response.json["quantity_received"], response.json["remaining"]) == ("250", "250")


def test_a_month_only_expiry_is_stored_as_the_months_last_day(client, auth, ingredient):
    year = clinic_today().year + 2
    response = client.post("/api/v1/lots", headers=auth(), json=_body(ingredient, expiry_date=f"{year}-02"))

    assert response.status_code == 201, response.json
    last_day = date(year, 3, 1) - timedelta(days=1)
    assert response.json["expiry_date"] == last_day.isoformat()
    assert db.session.get(Lot, response.json["id"]).expires_on == last_day


@pytest.mark.parametrize("quantity", [0, -1, "0", "-1", 1.2345, "1.2345", "abc", "", True, None,
                                      "NaN", "Infinity", 10**12, "1e20", [5]])
def test_a_bad_quantity_answers_422_naming_quantity_and_saves_nothing(client, auth, ingredient, quantity):
    before = _stock_rows()
    body = _body(ingredient)
    body["quantity"] = quantity
    response = client.post("/api/v1/lots", headers=auth(), json=body)

    assert response.status_code == 422, response.json
    assert list(response.json["details"]) == ["quantity"]
    assert _stock_rows() == before


@pytest.mark.parametrize("expiry", ["2031-02-30", "2031-13", "2031-00-10", "31/12/2031", "2031-W05-3",
                                   "20311231", "", "soon", 20311231, None])
def test_an_impossible_or_unreadable_expiry_answers_422_naming_expiry_date(client, auth, ingredient,
                                                                          expiry):
    before = _stock_rows()
    body = _body(ingredient)
    body["expiry_date"] = expiry
    response = client.post("/api/v1/lots", headers=auth(), json=body)

    assert response.status_code == 422, response.json
    assert list(response.json["details"]) == ["expiry_date"]
    assert _stock_rows() == before


def test_an_already_expired_lot_cannot_be_received(client, auth, ingredient):
    before = _stock_rows()
    yesterday = clinic_today() - timedelta(days=1)
    response = client.post("/api/v1/lots", headers=auth(),
                           json=_body(ingredient, expiry_date=yesterday.isoformat()))

    assert response.status_code == 422
    assert "expiry_date" in response.json["details"]
    assert _stock_rows() == before


def test_a_lot_expiring_today_is_received_and_not_expired(client, auth, ingredient):
    response = client.post("/api/v1/lots", headers=auth(),
                           json=_body(ingredient, expiry_date=clinic_today().isoformat()))
    assert response.status_code == 201
    assert response.json["expired"] is False


def test_an_unknown_ingredient_answers_422_naming_ingredient_id(client, auth, ingredient):
    response = client.post("/api/v1/lots", headers=auth(), json=_body(ingredient, ingredient_id=99999))
    assert response.status_code == 422
    assert list(response.json["details"]) == ["ingredient_id"]


def test_missing_fields_are_all_named(client, auth):
    response = client.post("/api/v1/lots", headers=auth(), json={"location": "Shelf 1"})
    assert response.status_code == 422
    assert set(response.json["details"]) == {"ingredient_id", "supplier", "lot_number", "expiry_date",
                                             "quantity"}


def test_unknown_fields_are_refused(client, auth, ingredient):
    response = client.post("/api/v1/lots", headers=auth(), json=_body(ingredient, status="released"))
    assert response.status_code == 422
    assert "status" in response.json["details"]


def test_an_invalid_gtin_answers_422_naming_gtin(client, auth, ingredient):
    response = client.post("/api/v1/lots", headers=auth(), json=_body(ingredient, gtin="5012345678901"))
    assert response.status_code == 422
    assert "gtin" in response.json["details"]


@pytest.mark.parametrize("data", ["[1, 2]", '"text"', "{not json", "", "null"])
def test_a_body_that_is_not_a_json_object_answers_400(client, auth, data):
    before = _stock_rows()
    response = client.post("/api/v1/lots", headers={**auth(), "Content-Type": "application/json"}, data=data)
    assert response.status_code == 400
    assert response.is_json and response.json["error"]
    assert _stock_rows() == before


def test_receiving_the_same_supplier_lot_twice_answers_409_with_the_existing_lot(client, auth, ingredient):
    headers = auth()
    first = client.post("/api/v1/lots", headers=headers, json=_body(ingredient)).json
    before = _stock_rows()
    response = client.post("/api/v1/lots", headers=headers, json=_body(ingredient, quantity="5"))

    assert response.status_code == 409
    details = response.json["details"]
    assert (details["existing_lot_id"], details["existing_lot_code"]) == (first["id"], first["code"])
    assert first["code"] in response.json["error"]
    assert _stock_rows() == before


def test_a_visitor_without_a_token_gets_401(client, ingredient):
    response = client.post("/api/v1/lots", json=_body(ingredient))
    assert response.status_code == 401
    assert client.get("/api/v1/lots").status_code == 401


# --- who may do what -----------------------------------------------------------------------------


def test_an_auditor_is_refused_every_lot_change(client, auth, ingredient, make_lot):
    lot = make_lot(ingredient, release=False)
    headers = auth("auditor")
    calls = [
        ("/api/v1/lots", _body(ingredient, lot_number="OTHER")),
        (f"/api/v1/lots/{lot.id}/release", {"password": PASSWORD}),
        (f"/api/v1/lots/{lot.id}/reject", {"password": PASSWORD, "reason": "Damaged"}),
        (f"/api/v1/lots/{lot.id}/adjust", {"reason": "damaged", "quantity": "1"}),
    ]
    before = _stock_rows(), _lot_state(lot.id)
    for url, body in calls:
        response = client.post(url, headers=headers, json=body)
        assert response.status_code == 403, url
        assert response.json["error"]
    assert (_stock_rows(), _lot_state(lot.id)) == before


def test_a_technician_can_receive_but_cannot_release(client, auth, ingredient):
    headers = auth("technician")
    lot = client.post("/api/v1/lots", headers=headers, json=_body(ingredient)).json
    response = client.post(f"/api/v1/lots/{lot['id']}/release", headers=headers, json={"password": PASSWORD})

    assert response.status_code == 403
    assert _lot_state(lot["id"])[0] == "quarantine"
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Signature)) == 0


# --- release and rejection -------------------------------------------------------------------------


def test_a_wrong_password_refuses_the_release_and_the_lot_stays_in_quarantine(client, auth, make_lot):
    lot = make_lot(release=False)
    response = client.post(f"/api/v1/lots/{lot.id}/release", headers=auth(),
                           json={"password": "wrong-one!", "reason": "Certificate requested"})

    assert response.status_code == 403
    assert "password" in response.json["details"]
    assert _lot_state(lot.id)[0] == "quarantine"
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Signature)) == 0


def test_releasing_shows_who_released_and_records_the_signature(client, make_user, auth, make_lot):
    lot = make_lot(release=False)
    signer = make_user("pharmacist", display_name="Dana Whitfield")
    response = client.post(f"/api/v1/lots/{lot.id}/release", headers=auth(signer),
                           json={"password": PASSWORD, "reason": "Certificate requested"})

    assert response.status_code == 200, response.json
    assert response.json["status"] == "released"
    assert response.json["released_by"] == "Dana Whitfield"
    assert datetime.fromisoformat(response.json["released_at"]).utcoffset() is not None
    signature = db.session.scalar(sa.select(Signature).where(
        Signature.entity_type == "lot", Signature.entity_id == lot.id))
    assert (signature.meaning, signature.signer_id, signature.signer_name) == (
        "released", signer.id, "Dana Whitfield")


def test_a_released_lot_cannot_be_released_again(client, auth, make_lot):
    lot = make_lot()
    response = client.post(f"/api/v1/lots/{lot.id}/release", headers=auth(), json={"password": PASSWORD})
    assert response.status_code == 409
    assert "released" in response.json["error"]


def test_releasing_needs_the_password_field(client, auth, make_lot):
    lot = make_lot(release=False)
    response = client.post(f"/api/v1/lots/{lot.id}/release", headers=auth(), json={})
    assert response.status_code == 422
    assert list(response.json["details"]) == ["password"]


def test_releasing_an_unknown_lot_answers_404(client, auth):
    response = client.post("/api/v1/lots/4242/release", headers=auth(), json={"password": PASSWORD})
    assert response.status_code == 404
    assert client.get("/api/v1/lots/4242", headers=auth()).status_code == 404


@pytest.mark.parametrize("body", [{"password": PASSWORD}, {"password": PASSWORD, "reason": ""},
                                  {"password": PASSWORD, "reason": "   "}])
def test_rejecting_needs_a_reason(client, auth, make_lot, body):
    lot = make_lot(release=False)
    response = client.post(f"/api/v1/lots/{lot.id}/reject", headers=auth(), json=body)
    assert response.status_code == 422
    assert "reason" in response.json["details"]
    assert _lot_state(lot.id)[0] == "quarantine"


def test_rejecting_with_a_reason_and_the_password_rejects_the_lot(client, auth, make_lot):
    lot = make_lot(release=False)
    response = client.post(f"/api/v1/lots/{lot.id}/reject", headers=auth(),
                           json={"password": PASSWORD, "reason": "Seal broken on arrival"})
    assert response.status_code == 200
    assert (response.json["status"], response.json["status_reason"]) == ("rejected", "Seal broken on arrival")
    assert db.session.scalar(sa.select(Signature.meaning).where(Signature.entity_id == lot.id)) == "rejected"


def test_rejecting_with_a_wrong_password_changes_nothing(client, auth, make_lot):
    lot = make_lot(release=False)
    response = client.post(f"/api/v1/lots/{lot.id}/reject", headers=auth(),
                           json={"password": "not-my-password", "reason": "Seal broken"})
    assert response.status_code == 403
    assert _lot_state(lot.id)[0] == "quarantine"


# --- adjustments ------------------------------------------------------------------------------------


def test_an_adjustment_below_zero_answers_409_and_changes_nothing(client, auth, make_lot):
    lot = make_lot(quantity="10")
    before = _lot_state(lot.id)
    response = client.post(f"/api/v1/lots/{lot.id}/adjust", headers=auth("technician"),
                           json={"reason": "damaged", "quantity": "10.001"})

    assert response.status_code == 409
    assert "quantity" in response.json["details"]
    assert _lot_state(lot.id) == before


def test_adjusting_a_released_lot_to_zero_makes_it_depleted(client, auth, make_lot):
    lot = make_lot(quantity="10")
    response = client.post(f"/api/v1/lots/{lot.id}/adjust", headers=auth("technician"),
                           json={"reason": "damaged", "quantity": "10", "note": "Vial dropped"})

    assert response.status_code == 200, response.json
    assert (response.json["status"], response.json["remaining"]) == ("depleted", "0")
    assert _lot_state(lot.id) == ("depleted", Decimal("0"), 2)


def test_a_count_correction_can_add_stock_with_a_note(client, auth, make_lot):
    # Signed by a pharmacist, and never above the 10 received.
    lot = make_lot(quantity="10")
    client.post(f"/api/v1/lots/{lot.id}/adjust", headers=auth("technician"), json={
        "reason": "damaged", "quantity": "3", "direction": "out"})
    response = client.post(f"/api/v1/lots/{lot.id}/adjust", headers=auth(), json={
        "reason": "count_correction", "quantity": "2.5", "direction": "in", "note": "Recount",
        "password": PASSWORD})
    assert response.status_code == 200
    assert response.json["remaining"] == "9.5"


def test_an_expired_lot_cannot_receive_a_positive_count_correction(client, auth, make_lot):
    lot = make_lot(release=False, quantity="10", expires_on=clinic_today() - timedelta(days=3),
                   received_at=utcnow() - timedelta(days=30))
    before = _lot_state(lot.id)
    response = client.post(f"/api/v1/lots/{lot.id}/adjust", headers=auth(), json={
        "reason": "count_correction", "quantity": "5", "direction": "in", "note": "Found more"})

    assert response.status_code == 409
    assert "direction" in response.json["details"]
    assert _lot_state(lot.id) == before


@pytest.mark.parametrize("body, field", [
    ({"reason": "lost", "quantity": "1"}, "reason"),
    ({"reason": "damaged", "quantity": "0"}, "quantity"),
    ({"reason": "damaged", "quantity": "1", "direction": "up"}, "direction"),
    ({"reason": "damaged", "quantity": "1", "direction": "in"}, "direction"),
    ({"reason": "count_correction", "quantity": "1"}, "note"),
])
def test_a_bad_adjustment_is_refused_naming_the_field(client, auth, make_lot, body, field):
    lot = make_lot(quantity="10")
    before = _lot_state(lot.id)
    response = client.post(f"/api/v1/lots/{lot.id}/adjust", headers=auth(), json=body)
    assert response.status_code == 422
    assert field in response.json["details"]
    assert _lot_state(lot.id) == before


# --- the list ---------------------------------------------------------------------------------------


def _codes(response) -> set[str]:
    assert response.status_code == 200, response.json
    return {item["code"] for item in response.json["items"]}


def test_the_lot_list_filters_by_status_ingredient_expiry_and_text(client, auth, make_ingredient, make_lot):
    vitamin_c, lidocaine = make_ingredient(name="Ascorbic acid"), make_ingredient(name="Lidocaine")
    today = clinic_today()
    soon = make_lot(vitamin_c, expires_on=today + timedelta(days=10), supplier_lot_number="VC-SOON")
    later = make_lot(vitamin_c, expires_on=today + timedelta(days=300))
    waiting = make_lot(lidocaine, release=False, expires_on=today + timedelta(days=20))
    expired = make_lot(lidocaine, release=False, expires_on=today - timedelta(days=2),
                       received_at=utcnow() - timedelta(days=60))
    headers = auth("auditor")

    def codes(query: str) -> set[str]:
        return _codes(client.get(f"/api/v1/lots?{query}", headers=headers))

    assert codes("") == {soon.code, later.code, waiting.code, expired.code}
    assert codes("status=released") == {soon.code, later.code}
    assert codes("status=quarantine") == {waiting.code, expired.code}
    assert codes(f"ingredient_id={lidocaine.id}") == {waiting.code, expired.code}
    assert codes("expiring_within_days=30") == {soon.code, waiting.code}
    assert codes("expiring_within_days=30&status=released") == {soon.code}
    assert codes("expired_in_stock=true") == {expired.code}
    assert codes("q=vc-soon") == {soon.code}
    assert codes(f"q={later.code}") == {later.code}


def test_the_expired_flag_comes_from_the_one_expiry_rule(client, auth, make_lot):
    today = clinic_today()
    expired = make_lot(release=False, expires_on=today - timedelta(days=1),
                       received_at=utcnow() - timedelta(days=10))
    fresh = make_lot(release=False, expires_on=today)
    items = {item["id"]: item["expired"] for item in client.get("/api/v1/lots", headers=auth()).json["items"]}
    assert items == {expired.id: True, fresh.id: False}


def test_the_lot_list_sorts_and_pages(client, auth, make_lot, ingredient):
    today = clinic_today()
    lots = [make_lot(ingredient, expires_on=today + timedelta(days=d)) for d in (30, 10, 20)]
    headers = auth()
    first = client.get("/api/v1/lots?sort=expiry&per_page=2&page=1", headers=headers).json
    second = client.get("/api/v1/lots?sort=expiry&per_page=2&page=2", headers=headers).json

    assert (first["page"], first["per_page"], first["total"]) == (1, 2, 3)
    assert [i["id"] for i in first["items"] + second["items"]] == [lots[1].id, lots[2].id, lots[0].id]
    descending = client.get("/api/v1/lots?sort=-expiry", headers=headers).json["items"]
    assert [i["id"] for i in descending] == [lots[0].id, lots[2].id, lots[1].id]


@pytest.mark.parametrize("sort, key", [
    ("expiry", lambda lot: (lot.expires_on, lot.id)), ("-expiry", lambda lot: (lot.expires_on, lot.id)),
    ("code", lambda lot: lot.code), ("received", lambda lot: (lot.received_at, lot.id))])
def test_walking_the_lot_list_page_by_page_gives_each_lot_once_in_order(client, auth, make_lot, ingredient,
                                                                       sort, key):
    # Pages are picked on the ids first, then loaded: the walk must still be the list, in order.
    today = clinic_today()
    lots = [make_lot(ingredient, expires_on=today + timedelta(days=d)) for d in (9, 3, 9, 1, 5, 3, 9)]
    headers = auth()
    walked = []
    for page in (1, 2, 3, 4, 5):
        answer = client.get(f"/api/v1/lots?sort={sort}&per_page=2&page={page}", headers=headers).json
        assert answer["total"] == 7 and len(answer["items"]) == (2 if page < 4 else 1 if page == 4 else 0)
        walked += [item["id"] for item in answer["items"]]
    expected = [lot.id for lot in sorted(lots, key=key, reverse=sort.startswith("-"))]
    assert walked == expected


@pytest.mark.parametrize("query, field", [("status=lost", "status"), ("ingredient_id=abc", "ingredient_id"),
                                          ("expiring_within_days=-1", "expiring_within_days"),
                                          ("sort=colour", "sort"), ("expired_in_stock=perhaps",
                                                                    "expired_in_stock")])
def test_a_bad_list_filter_answers_422_naming_it(client, auth, query, field):
    response = client.get(f"/api/v1/lots?{query}", headers=auth())
    assert response.status_code == 422
    assert list(response.json["details"]) == [field]


def _add_lots(count: int) -> None:
    """Many lots at once, straight into the tables: the query budget needs rows, not the rules.

    Each lot has its own ingredient, receiver and releaser, so a lazy load per row (even one
    the identity map could answer for a shared user) shows up as extra statements.
    """
    now = utcnow()
    start = db.session.scalar(sa.select(sa.func.count()).select_from(Lot))
    rows = []
    for n in range(start, start + count):
        released = n % 2 == 1
        ingredient = Ingredient(name=f"Bulk ingredient {n}", kind="active", unit="mg")
        receiver = User(username=f"bulk-tech-{n}", display_name=f"Tech {n}", role="technician",
                        password_hash="-")
        releaser = User(username=f"bulk-pharm-{n}", display_name=f"Pharm {n}", role="pharmacist",
                        password_hash="-")
        rows += [ingredient, receiver, releaser, IngredientGtin(ingredient=ingredient, gtin=f"{n:014d}"),
                 Lot(code=f"T{n:06d}", ingredient=ingredient, supplier="Bulk",
                     supplier_lot_number=f"B-{n}", received_at=now, received_by=receiver,
                     expires_on=clinic_today() + timedelta(days=n % 90), quantity_received=Decimal("100"),
                     remaining=Decimal("12.5"), status="released" if released else "quarantine",
                     released_at=now if released else None, released_by=releaser if released else None)]
    db.session.add_all(rows)
    db.session.commit()


def _statements(client, url: str, headers: dict, expected_items: int) -> int:
    db.session.expire_all()
    with QueryCounter(db.engine) as counter:
        response = client.get(url, headers=headers)
    assert response.status_code == 200, response.json
    assert len(response.json["items"]) == expected_items
    return counter.count


def test_the_lot_list_costs_the_same_statements_for_5_and_200_lots(client, auth):
    headers = auth("auditor")
    _add_lots(5)
    with_5 = _statements(client, "/api/v1/lots?per_page=200", headers, 5)
    _add_lots(195)
    with_200 = _statements(client, "/api/v1/lots?per_page=200", headers, 200)

    assert with_5 == with_200


def test_the_lot_list_names_ingredients_and_signers(client, auth):
    _add_lots(2)
    items = client.get("/api/v1/lots?sort=code", headers=auth()).json["items"]
    assert [(i["ingredient_name"], i["received_by"], i["released_by"]) for i in items] == [
        ("Bulk ingredient 0", "Tech 0", None), ("Bulk ingredient 1", "Tech 1", "Pharm 1")]


def test_the_openapi_document_lists_every_lot_and_ingredient_operation(client):
    document = client.get("/api/v1/openapi.json").json
    paths = document["paths"]
    expected = {
        "/api/v1/ingredients": {"get", "post"},
        "/api/v1/ingredients/{ingredient_id}": {"get", "patch"},
        "/api/v1/lots": {"get", "post"},
        "/api/v1/lots/{lot_id}": {"get"},
        "/api/v1/lots/{lot_id}/release": {"post"},
        "/api/v1/lots/{lot_id}/reject": {"post"},
        "/api/v1/lots/{lot_id}/adjust": {"post"},
    }
    for path, methods in expected.items():
        assert set(paths[path]) == methods, path
    receive = paths["/api/v1/lots"]["post"]
    assert receive["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/LotReceive"}
    assert {"201", "403", "409", "422"} <= set(receive["responses"])
    schemas = document["components"]["schemas"]
    assert set(schemas["LotReceive"]["required"]) == {"ingredient_id", "supplier", "lot_number",
                                                      "expiry_date", "quantity"}
    assert set(schemas["Lot"]["properties"]) >= LOT_FIELDS
    assert {"on_hand", "nearest_expiry", "below_reorder"} <= set(schemas["Ingredient"]["properties"])

