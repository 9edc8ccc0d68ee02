"""API: readings of a location (POST and list), excursions (list, detail) and the pharmacist's decision."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from sitekit import add_site
from testkit import PASSWORD, QueryCounter, bearer
from vialkit import vials_of

from compounding.extensions import db
from compounding.models import Batch, Excursion, Lot, TemperatureReading
from compounding.services import cold_chain, sites, users


def ago(**delta) -> datetime:
    return datetime.now(UTC) - timedelta(**delta)


def paris(moment: datetime) -> str:
    """The moment written as a Paris thermometer's clock shows it in winter (+01:00)."""
    return moment.astimezone(timezone(timedelta(hours=1))).isoformat()


@pytest.fixture
def headers(pharmacist):
    return bearer(users.create_token(None, pharmacist, "test"))


def post_reading(client, headers, location, celsius="5", at=None, **body):
    body = {"measured_at": paris(at or ago(minutes=5)), "celsius": celsius, "source": "manual", **body}
    return client.post(f"/api/v1/locations/{location.id}/readings", headers=headers, json=body)


def test_a_reading_in_range_answers_as_given_with_no_excursion(client, headers, fridge):
    at = ago(minutes=10).replace(microsecond=0)
    response = post_reading(client, headers, fridge, "4.5", at=at, min_celsius=3, max_celsius="6.25", note="morning")
    assert response.status_code == 201, response.json
    body = response.json
    assert body["location"] == {"id": fridge.id, "code": "FRIDGE1"}
    assert body["measured_at"] == paris(at) and body["measured_at"].endswith("+01:00")
    assert (body["celsius"], body["min_celsius"], body["max_celsius"]) == ("4.5", "3.0", "6.25")
    assert body["source"] == "manual" and body["in_range"] is True and body["excursion"] is None
    reading = db.session.get(TemperatureReading, body["id"])
    assert reading.measured_at == at and reading.utc_offset_minutes == 60 and reading.token_id is None


def test_an_out_of_range_reading_holds_the_stock_and_answers_the_excursion(client, headers, fridge, stocked):
    response = post_reading(client, headers, fridge, 11.5)
    assert response.status_code == 201, response.json
    excursion = response.json["excursion"]
    assert response.json["in_range"] is False
    assert excursion["code"].startswith("E") and excursion["state"] == "out_of_range"
    assert excursion["ended_at"] is None and excursion["held"] == 2
    assert (excursion["low_celsius"], excursion["high_celsius"]) == ("11.5", "11.5")
    assert db.session.get(Lot, stocked["lot"].id).status == "on_hold"
    assert db.session.get(Batch, stocked["batch"].id).status == "on_hold"
    joined = post_reading(client, headers, fridge, "12.25", at=ago(minutes=2))
    assert joined.json["excursion"]["id"] == excursion["id"]
    assert joined.json["excursion"]["high_celsius"] == "12.25"


@pytest.mark.parametrize(("body", "field"), [
    ({"measured_at": "2999-01-01T08:00:00+01:00"}, "measured_at"),
    ({"measured_at": "2026-01-01T08:00:00"}, "measured_at"),
    ({"measured_at": "yesterday"}, "measured_at"),
    ({"measured_at": "0001-01-01T00:00:00+14:00"}, "measured_at"),
    ({"measured_at": "1850-01-01T00:00:00Z"}, "measured_at"),
    ({"celsius": "-95"}, "celsius"),
    ({"celsius": 61}, "celsius"),
    ({"celsius": "warm"}, "celsius"),
    ({"celsius": None}, "celsius"),
    ({"source": "guess"}, "source"),
    ({"min_celsius": "9"}, "min_celsius"),
])
def test_bad_readings_are_refused_with_the_field(client, headers, fridge, body, field):
    response = post_reading(client, headers, fridge, **body)
    assert response.status_code == 422, response.json
    assert field in str(response.json["details"]) or field in response.json["error"]
    assert db.session.scalar(sa.select(sa.func.count()).select_from(TemperatureReading)) == 0


def test_a_duplicate_reading_is_409(client, headers, fridge):
    at = ago(minutes=30)
    assert post_reading(client, headers, fridge, at=at).status_code == 201
    again = post_reading(client, headers, fridge, "6", at=at)
    assert again.status_code == 409 and again.json["details"]["reading_id"]


def test_a_location_without_range_or_in_use_is_409(client, headers, fridge):
    shelf = sites.default_location(sites.main_site().id)
    assert post_reading(client, headers, shelf).status_code == 409
    fridge.active = False
    db.session.commit()
    refused = post_reading(client, headers, fridge)
    assert refused.status_code == 409 and "no longer in use" in refused.json["error"]


def test_unknown_and_other_sites_locations_are_404_and_roles_without_the_permission_403(
        client, headers, fridge, make_user):
    assert client.post("/api/v1/locations/999999/readings", headers=headers,
                       json={"measured_at": paris(ago(minutes=1)), "celsius": 5, "source": "manual"}).status_code == 404
    add_site("LYON")
    lyon_tech = bearer(users.create_token(None, make_user("technician", site_codes=["LYON"]), "t"))
    assert post_reading(client, lyon_tech, fridge).status_code == 404
    assert client.get(f"/api/v1/locations/{fridge.id}/readings", headers=lyon_tech).status_code == 404
    auditor = bearer(users.create_token(None, make_user("auditor"), "t"))
    assert post_reading(client, auditor, fridge).status_code == 403
    assert client.post(f"/api/v1/locations/{fridge.id}/readings", json={}).status_code == 401


def test_readings_are_listed_newest_first_between_from_and_to(client, headers, fridge):
    for hours in (5, 4, 3, 2, 1):
        assert post_reading(client, headers, fridge, str(hours), at=ago(hours=hours)).status_code == 201
    path = f"/api/v1/locations/{fridge.id}/readings"
    listed = client.get(f"{path}?per_page=2", headers=headers).json
    assert listed["total"] == 5 and [i["celsius"] for i in listed["items"]] == ["1.0", "2.0"]
    window = client.get(path, headers=headers, query_string={
        "from": ago(hours=4, minutes=30).isoformat(), "to": ago(hours=1, minutes=30).isoformat()}).json
    assert [i["celsius"] for i in window["items"]] == ["2.0", "3.0", "4.0"]
    assert client.get(f"{path}?from=today", headers=headers).status_code == 422
    with QueryCounter(db.engine) as counter:
        assert client.get(f"{path}?per_page=5", headers=headers).status_code == 200
    assert counter.count <= 8, counter.statements


def test_excursions_are_listed_for_the_callers_sites_by_state(client, headers, fridge, stocked, make_user):
    post_reading(client, headers, fridge, "10", at=ago(hours=3))
    post_reading(client, headers, fridge, "5", at=ago(hours=2))
    post_reading(client, headers, fridge, "-1", at=ago(hours=1))
    listed = client.get("/api/v1/excursions", headers=headers).json
    assert listed["total"] == 2
    newest, oldest = listed["items"]
    assert newest["state"] == "out_of_range" and oldest["state"] == "awaiting_decision"
    assert oldest["location"] == {"id": fridge.id, "code": "FRIDGE1"} and oldest["site"]["code"] == "MAIN"
    assert oldest["range_min"] == "2.0" and oldest["range_max"] == "8.0" and oldest["held"] == 2
    waiting = client.get("/api/v1/excursions?state=awaiting_decision", headers=headers).json
    assert [i["id"] for i in waiting["items"]] == [oldest["id"]]
    assert client.get("/api/v1/excursions?state=lost", headers=headers).status_code == 422
    lyon = add_site("LYON")
    lyon_doc = bearer(users.create_token(None, make_user("practitioner", site_codes=["LYON"]), "t"))
    assert client.get("/api/v1/excursions", headers=lyon_doc).json["total"] == 0
    assert client.get(f"/api/v1/excursions/{oldest['id']}", headers=lyon_doc).status_code == 404
    assert client.get(f"/api/v1/excursions?site_id={sites.main_site().id}", headers=lyon_doc).status_code == 403
    assert client.get(f"/api/v1/excursions?site_id={lyon.id}", headers=headers).status_code == 403
    with QueryCounter(db.engine) as counter:
        assert client.get("/api/v1/excursions", headers=headers).status_code == 200
    assert counter.count <= 8, counter.statements


def _ended_excursion(client, headers, fridge) -> int:
    opened = post_reading(client, headers, fridge, "13", at=ago(hours=2)).json["excursion"]["id"]
    post_reading(client, headers, fridge, "5", at=ago(hours=1))
    return opened


def test_an_excursion_answers_its_items_and_a_pharmacist_keeps_them(client, headers, fridge, stocked, make_user):
    excursion_id = _ended_excursion(client, headers, fridge)
    detail = client.get(f"/api/v1/excursions/{excursion_id}", headers=headers).json
    assert detail["state"] == "awaiting_decision" and detail["uses_for_review"] == []
    assert {(i["kind"], i["code"], i["status"], i["decision"]) for i in detail["items"]} == {
        ("lot", stocked["lot"].code, "on_hold", None), ("batch", stocked["batch"].code, "on_hold", None)}
    path = f"/api/v1/excursions/{excursion_id}/decide"
    body = {"decision": "keep", "reason": "Stability data: 24 h at 25 °C", "password": PASSWORD,
            "items": [stocked["lot"].code]}
    technician = bearer(users.create_token(None, make_user("technician"), "t"))
    assert client.post(path, headers=technician, json=body).status_code == 403
    assert client.post(path, headers=headers, json={**body, "password": "wrong-password"}).status_code == 403
    kept = client.post(path, headers=headers, json=body)
    assert kept.status_code == 200, kept.json
    lot_item = next(i for i in kept.json["items"] if i["kind"] == "lot")
    assert lot_item["decision"] == "keep" and lot_item["status"] == "released" and lot_item["decided_at"]
    assert kept.json["state"] == "awaiting_decision"
    again = client.post(path, headers=headers, json=body)
    assert again.status_code == 409
    assert client.post(path, headers=headers, json={**body, "items": ["L999999"]}).status_code == 422
    assert client.post(path, headers=headers, json={**body, "decision": "maybe"}).status_code == 422
    shortened = client.post(path, headers=headers, json={
        "decision": "keep_shortened", "reason": "Room temperature column", "password": PASSWORD,
        "beyond_use_at": (datetime.now(UTC) + timedelta(hours=6)).isoformat()})
    assert shortened.status_code == 200, shortened.json
    assert shortened.json["state"] == "decided"
    batch_item = next(i for i in shortened.json["items"] if i["kind"] == "batch")
    assert batch_item["decision"] == "keep_shortened" and batch_item["use_by_after"] and batch_item["use_by_before"]
    assert client.post("/api/v1/excursions/999999/decide", headers=headers, json=body).status_code == 404


def test_discard_through_the_api_writes_the_stock_off(client, headers, fridge, stocked):
    excursion_id = _ended_excursion(client, headers, fridge)
    discarded = client.post(f"/api/v1/excursions/{excursion_id}/decide", headers=headers, json={
        "decision": "discard", "reason": "Out all night", "password": PASSWORD})
    assert discarded.status_code == 200, discarded.json
    assert discarded.json["state"] == "decided"
    assert {i["status"] for i in discarded.json["items"]} == {"depleted", "discarded"}
    assert {v.status for v in vials_of(db.session.get(Batch, stocked["batch"].id))} == {"discarded"}


def test_keeping_while_it_lasts_is_409(client, headers, fridge, stocked):
    excursion_id = post_reading(client, headers, fridge, "13").json["excursion"]["id"]
    refused = client.post(f"/api/v1/excursions/{excursion_id}/decide", headers=headers, json={
        "decision": "keep", "reason": "Stable", "password": PASSWORD})
    assert refused.status_code == 409 and "still where" in refused.json["error"]


def test_uses_for_review_name_patients_only_for_those_who_may_see_them(client, headers, fridge, stocked, monkeypatch):
    excursion_id = _ended_excursion(client, headers, fridge)
    use = cold_chain.UseForReview("session", ago(hours=3), stocked["batch"].code, session_id=7, patient_id=42)
    monkeypatch.setattr(cold_chain, "uses_for_review", lambda excursion: [use])
    seen = client.get(f"/api/v1/excursions/{excursion_id}", headers=headers)
    assert seen.json["uses_for_review"][0]["patient_id"] == 42
    assert "no-store" in seen.headers["Cache-Control"]
    admin = users.create_user(None, username="boss", display_name="Boss", role="admin", password=PASSWORD)
    hidden = client.get(f"/api/v1/excursions/{excursion_id}", headers=bearer(users.create_token(None, admin, "t")))
    assert hidden.status_code == 200 and hidden.json["uses_for_review"][0]["patient_id"] is None


def test_a_retried_reading_with_its_idempotency_key_is_recorded_once(client, headers, fridge, stocked):
    body = {"measured_at": paris(ago(minutes=3)), "celsius": "14", "source": "manual"}
    keyed = {**headers, "Idempotency-Key": "fridge-1-reading-0001"}
    path = f"/api/v1/locations/{fridge.id}/readings"
    first = client.post(path, headers=keyed, json=body)
    second = client.post(path, headers=keyed, json=body)
    assert first.status_code == second.status_code == 201
    assert second.json == first.json and second.headers.get("Idempotent-Replayed") == "true"
    assert db.session.scalar(sa.select(sa.func.count()).select_from(TemperatureReading)) == 1
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Excursion)) == 1
    other = client.post(path, headers=keyed, json={**body, "celsius": "15"})
    assert other.status_code == 422
