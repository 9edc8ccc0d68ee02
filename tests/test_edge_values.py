"""Edge values: far dates, NaN, numbers of 400 digits and ids past the integer range.

Every API write and every list or export filter is swept: never a 500; a malformed value
is refused (422, an id with "No record has this id.") and changes nothing. Run on PostgreSQL too:
ids of 2**31 or more overflow only there.
"""

import json
from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa
from testkit import PASSWORD, bearer, count_rows, sign_in

from compounding.extensions import db
from compounding.models import AuditEvent, BatchComponent, Lot
from compounding.services import recalls, treatments
from compounding.services.bounds import read_day
from compounding.services.bud import beyond_use_at
from compounding.services.users import create_token

FAR_DATES = ["9999-12-31", "0001-01-01", "1899-12-31", "2101-01-01"]
BAD_NUMBERS = ["NaN", "sNaN", "Infinity", "-Infinity", "9" * 400, float("nan"), float("inf"), 10**400, 1e308]
BAD_IDS = [2**31, 2**63, 10**400]
BAD_COUNTS = [2**31, 10**400, -(2**31) - 1]
KINDS = {"date": FAR_DATES, "number": BAD_NUMBERS, "id": BAD_IDS, "count": BAD_COUNTS}


@pytest.fixture
def world(app, make_user, make_batch, make_patient):
    """One of everything the API names by id, made by the real services."""
    batch = make_batch(units=10)
    component = db.session.scalars(sa.select(BatchComponent).where(BatchComponent.batch_id == batch.id)).first()
    patient = make_patient()
    practitioner = make_user("practitioner")
    session = treatments.record_session(practitioner, patient_id=patient.id,
                                        uses=[{"batch_code": batch.code, "volume_ml": "1"}])
    pharmacist = make_user("pharmacist")
    recall = recalls.open_recall(pharmacist, reason="Edge values", password=PASSWORD, batch_id=batch.id)
    lot = db.session.get(Lot, component.lot_id)
    return {"batch": batch, "lot": lot, "ingredient_id": lot.ingredient_id, "formula_id": batch.formula_id,
            "patient": patient, "session": session, "recall": recall, "pharmacist": pharmacist,
            "token": create_token(None, pharmacist, "test")}


def api_writes(w) -> list[tuple[str, str, dict, dict]]:
    """(method, url, a body of the right shape, {field path: kind of value})."""
    lot, batch, session = w["lot"], w["batch"], w["session"]
    return [
        ("POST", "/api/v1/ingredients", {"name": "Edge", "kind": "active", "unit": "mL", "reorder_level": "1"},
         {"reorder_level": "number"}),
        ("PATCH", f"/api/v1/ingredients/{w['ingredient_id']}", {"reorder_level": "1"}, {"reorder_level": "number"}),
        ("POST", "/api/v1/lots", {"ingredient_id": w["ingredient_id"], "supplier": "S", "lot_number": "EDGE",
                                  "expiry_date": "2030-01-31", "quantity": "1"},
         {"ingredient_id": "id", "expiry_date": "date", "quantity": "number"}),
        ("POST", f"/api/v1/lots/{lot.id}/adjust", {"reason": "spillage", "quantity": "1", "note": "edge"},
         {"quantity": "number"}),
        ("POST", "/api/v1/formulas", {
            "code": "EDGE", "name": "Edge", "indication": "fat_reduction", "route": "subcutaneous",
            "dosage_form": "solution", "unit_volume_ml": "10", "bud_category": "category_1", "storage": "fridge",
            "components": [{"ingredient_id": w["ingredient_id"], "quantity": "1"}], "bud_hours": 5},
         {"unit_volume_ml": "number", "components.0.ingredient_id": "id", "components.0.quantity": "number",
          "bud_hours": "count"}),
        ("POST", "/api/v1/batches", {"formula_id": w["formula_id"], "units": 1,
                                     "allocations": [{"lot_id": lot.id, "quantity": "1"}],
                                     "scanned_lot_ids": [lot.id]},
         {"formula_id": "id", "units": "count", "allocations.0.lot_id": "id", "allocations.0.quantity": "number",
          "scanned_lot_ids.0": "id"}),
        ("POST", "/api/v1/patients", {"chart_number": "EDGE-1", "birth_date": "1990-01-01"}, {"birth_date": "date"}),
        ("PATCH", f"/api/v1/patients/{w['patient'].id}", {"birth_date": "1990-01-01"}, {"birth_date": "date"}),
        ("POST", "/api/v1/treatment-sessions", {
            "patient_id": w["patient"].id, "uses": [{"batch_id": batch.id, "volume_ml": "1"}],
            "performed_at": datetime.now(UTC).isoformat(), "practitioner_id": w["pharmacist"].id},
         {"patient_id": "id", "uses.0.batch_id": "id", "uses.0.volume_ml": "number", "performed_at": "date",
          "practitioner_id": "id"}),
        ("POST", "/api/v1/adverse-events", {"session_id": session.id, "type": "swelling", "severity": "mild",
                                            "onset_on": date.today().isoformat()},
         {"session_id": "id", "onset_on": "date"}),
        ("POST", "/api/v1/recalls", {"lot_id": lot.id, "reason": "r", "password": PASSWORD}, {"lot_id": "id"}),
        ("POST", "/api/v1/recalls", {"batch_id": batch.id, "reason": "r", "password": PASSWORD}, {"batch_id": "id"}),
        ("POST", f"/api/v1/recalls/{w['recall'].id}/contacts", {"patient_id": w["patient"].id, "method": "phone"},
         {"patient_id": "id"}),
        ("POST", f"/api/v1/treatment-sessions/{session.id}/correct-patient",
         {"patient_id": w["patient"].id, "reason": "r", "password": PASSWORD}, {"patient_id": "id"}),
    ]


def with_value(body: dict, path: str, value) -> dict:
    body = json.loads(json.dumps(body))
    *parents, last = path.split(".")
    target = body
    for key in parents:
        target = target[int(key)] if key.isdigit() else target[key]
    target[int(last) if last.isdigit() else last] = value
    return body


def sweep_api_writes(client, w) -> int:
    cases = 0
    for method, url, body, fields in api_writes(w):
        for path, kind in fields.items():
            for value in KINDS[kind]:
                events = count_rows(AuditEvent)
                raw = json.dumps(with_value(body, path, value))
                response = client.open(url, method=method, data=raw, content_type="application/json",
                                       headers=bearer(w["token"]))
                # Every value is checked in the body before any record is looked up: 422, never 404.
                assert response.status_code == 422, (method, url, path, str(value)[:30], response.status_code,
                                                     response.get_data(as_text=True)[:300])
                assert set(response.get_json()) == {"error", "details"}
                if kind == "id":
                    assert "No record has this id." in json.dumps(response.get_json()), (url, path)
                assert count_rows(AuditEvent) == events, (url, path)
                db.session.rollback()
                cases += 1
    return cases


def test_every_api_write_refuses_far_dates_nan_long_numbers_and_huge_ids(client, world):
    assert sweep_api_writes(client, world) > 100


# Each list or export that reads a day, a number or an id from its query string, and what a bad one gets.
QUERY_ROUTES = [
    ("/api/v1/batches", {"compounded_from": "date", "compounded_to": "date", "bud_within_hours": "count"}, 422),
    ("/api/v1/treatment-sessions", {"from": "date", "to": "date", "patient_id": "id", "practitioner_id": "id"}, 422),
    ("/api/v1/lots", {"ingredient_id": "id", "expiring_within_days": "count"}, 422),
    ("/api/v1/adverse-events", {"session_id": "id", "patient_id": "id"}, 422),
    ("/api/v1/audit-events", {"entity_id": "id"}, 422),
    ("/api/v1/recalls/{recall}", {"page": "count", "per_page": "count"}, 422),
    ("/batches/", {"compounded_from": "date", "compounded_to": "date"}, 422),
    ("/treatments/sessions", {"from": "date", "to": "date"}, 422),
    ("/exports/batches.xlsx", {"compounded_from": "date", "compounded_to": "date"}, 422),
    ("/exports/sessions.xlsx", {"from": "date", "to": "date", "patient_id": "id", "practitioner_id": "id"}, 422),
    ("/exports/audit.xlsx", {"start": "date", "end": "date"}, 422),
    # The audit pages show a filter they cannot read beside its field, and list without it.
    ("/audit", {"start": "date", "end": "date"}, 200),
    ("/audit/patient-access", {"start": "date", "end": "date"}, 200),
    # The label pages answer a bad print option with 400 and its reason.
    ("/lots/{lot}/label", {"copies": "count"}, 400),
    ("/batches/{batch}/label", {"copies": "count"}, 400),
]
# Pages that take no such filter still answer whatever arrives.
IGNORING_ROUTES = ["/", "/api/v1/quality-signals", "/lots/", "/exports/lots.xlsx", "/recalls/", "/trace"]


@pytest.mark.parametrize(("route", "params", "status"), QUERY_ROUTES, ids=[r[0] for r in QUERY_ROUTES])
def test_list_and_export_filters_refuse_far_dates_and_huge_numbers(client, world, route, params, status):
    url = route.format(lot=world["lot"].id, batch=world["batch"].id, recall=world["recall"].id)
    headers = bearer(world["token"]) if url.startswith("/api/") else {}
    if not url.startswith("/api/"):
        sign_in(client, world["pharmacist"])
    good = {"start": "2026-01-01", "end": "2026-12-31"} if url == "/exports/audit.xlsx" else {}
    for name, kind in params.items():
        for value in KINDS[kind]:
            response = client.get(url, query_string={**good, name: str(value)}, headers=headers)
            assert response.status_code == status, (url, name, str(value)[:30], response.status_code)
            if status == 200:  # every far date is well formed: it is refused for its range
                assert "Give a date between 1900 and 2100." in response.get_data(as_text=True), (url, name, value)
            db.session.rollback()


@pytest.mark.parametrize("route", IGNORING_ROUTES)
def test_pages_without_such_filters_ignore_them(client, world, route):
    sign_in(client, world["pharmacist"])
    headers = bearer(world["token"]) if route.startswith("/api/") else {}
    for name in ("from", "to", "start", "end", "ingredient_id", "page"):
        for value in FAR_DATES + [str(v) for v in BAD_IDS]:
            response = client.get(route, query_string={name: value}, headers=headers)
            assert response.status_code == 200, (route, name, value)


# --- the findings, one by one ---------------------------------------------------------------------------


def test_a_lot_expiring_in_9999_is_refused_by_the_api_the_form_and_the_import(client, as_role, make_ingredient):
    ingredient = make_ingredient()
    technician = as_role("technician")
    token = create_token(None, technician, "test")
    body = {"ingredient_id": ingredient.id, "supplier": "S", "lot_number": "FAR", "expiry_date": "9999-12-31",
            "quantity": "5"}
    answer = client.post("/api/v1/lots", json=body, headers=bearer(token))
    assert answer.status_code == 422
    assert "between 1900 and 2100" in json.dumps(answer.get_json())
    page = client.post("/lots/receive", data={**body, "ingredient_id": str(ingredient.id), "expiry_date": "9999-12"})
    assert page.status_code == 422 and "between 1900 and 2100" in page.get_data(as_text=True)
    assert count_rows(Lot) == 0


def test_a_stored_far_expiry_cannot_break_the_beyond_use_date(app):
    """A lot kept from before the rule (9999-12-31) is the only stock left: FEFO takes it, the BUD holds."""
    made = datetime(2026, 11, 27, 10, tzinfo=UTC)
    assert beyond_use_at(made, timedelta(hours=24), [date(9999, 12, 31)]) == made + timedelta(hours=24)
    assert beyond_use_at(made, timedelta(days=30), [date(2026, 12, 1), date.max]) < made + timedelta(days=30)


@pytest.mark.parametrize("value", ["NaN", "sNaN", "Infinity", "9" * 400])
def test_a_reorder_level_that_is_no_number_is_refused_by_the_api_and_the_form(client, as_role, value):
    pharmacist = as_role("pharmacist")
    answer = client.post("/api/v1/ingredients", headers=bearer(create_token(None, pharmacist, "test")),
                         json={"name": "Edge", "kind": "active", "unit": "mL", "reorder_level": value})
    assert answer.status_code == 422 and "reorder_level" in answer.get_json()["details"]
    page = client.post("/ingredients/new", data={"name": "Edge", "kind": "active", "unit": "mL",
                                                 "storage": "fridge", "reorder_level": value})
    assert page.status_code == 422 and "Enter a number" in page.get_data(as_text=True)


def test_four_hundred_digits_in_units_bud_hours_or_copies_are_refused(client, world, make_ingredient):
    sign_in(client, world["pharmacist"])
    huge = "9" * 400
    compound = client.post("/batches/new", data={"formula_id": str(world["formula_id"]), "units": huge})
    assert compound.status_code == 422 and "Between 1 and" in compound.get_data(as_text=True)
    formula = client.post("/formulas/new", data={
        "code": "HUGE", "name": "Huge", "indication": "fat_reduction", "route": "subcutaneous",
        "dosage_form": "solution", "unit_volume_ml": "10", "storage": "fridge", "bud_category": "category_1",
        "bud_hours": huge, "components-0-ingredient_id": str(make_ingredient().id), "components-0-quantity": "1"})
    assert formula.status_code == 422 and "Enter a number between 1 and 100000." in formula.get_data(as_text=True)
    label = client.get(f"/lots/{world['lot'].id}/label", query_string={"copies": huge})
    assert label.status_code == 400


def test_dates_outside_1900_to_2100_are_refused_on_the_patient_and_session_forms(client, world):
    practitioner_page = client
    sign_in(practitioner_page, world["pharmacist"])
    patient = client.post("/treatments/patients/new", data={"chart_number": "FAR-1", "birth_on": "0001-01-01"})
    assert patient.status_code == 422 and "between 1900 and 2100" in patient.get_data(as_text=True)
    session = client.post(f"/treatments/patients/{world['patient'].id}/sessions/new", data={
        "performed_at": "0001-01-01T10:00", "uses-0-batch_code": world["batch"].code, "uses-0-volume_ml": "1"})
    assert session.status_code == 422 and "between 1900 and 2100" in session.get_data(as_text=True)


def test_the_query_string_day_reader_refuses_what_it_cannot_hold():
    assert read_day("") is None and read_day(" 2026-11-27 ") == date(2026, 11, 27)
    for text, message in (("9999-12-31", "between 1900 and 2100"), ("1899-12-31", "between 1900 and 2100"),
                          ("20261127", "such as"), ("2026-W48-5", "such as"), ("2026-02-30", "such as")):
        with pytest.raises(ValueError, match=message):
            read_day(text)
