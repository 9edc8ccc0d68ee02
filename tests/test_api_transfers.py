"""API: /api/v1/transfers: draft, dispatch by scanned codes, receive once, cancel; a session's site."""

import pytest
from sitekit import add_site
from testkit import QueryCounter, bearer
from vialkit import vials_of

from compounding.extensions import db
from compounding.services import users
from compounding.services.sites import main_site


@pytest.fixture
def lyon(app):
    return add_site("LYON")


@pytest.fixture
def hub_headers(make_user, lyon):
    return bearer(users.create_token(None, make_user("pharmacist", username="hub"), "test"))


@pytest.fixture
def lyon_headers(make_user, lyon):
    user = make_user("practitioner", username="lyon-doc", site_codes=["LYON"])
    return bearer(users.create_token(None, user, "test"))


def _draft(client, headers, lyon, vials):
    return client.post("/api/v1/transfers", headers=headers, json={
        "from_site_id": main_site().id, "to_site_id": lyon.id, "lines": [{"vial_code": v.code} for v in vials],
        "note": "Monday run"})


def test_a_transfer_is_drafted_dispatched_by_scans_and_received_once(client, make_batch, hub_headers,
                                                                     lyon_headers, lyon):
    vials = vials_of(make_batch(units=2))
    created = _draft(client, hub_headers, lyon, vials)
    assert created.status_code == 201, created.json
    body = created.json
    assert body["code"].startswith("T") and body["status"] == "draft"
    assert [(line["kind"], line["code"], line["quantity"]) for line in body["lines"]] == [
        ("vial", vials[0].code, "1"), ("vial", vials[1].code, "1")]
    path = f"/api/v1/transfers/{body['id']}"
    missing = client.post(f"{path}/dispatch", headers=hub_headers, json={"scanned_codes": [vials[0].code]})
    assert missing.status_code == 422 and vials[1].code in missing.json["error"]
    sent = client.post(f"{path}/dispatch", headers=hub_headers, json={"scanned_codes": [v.code for v in vials]})
    assert sent.status_code == 200 and sent.json["status"] == "dispatched"
    assert {line["item_status"] for line in sent.json["lines"]} == {"in_transit"}
    line_ids = [line["id"] for line in body["lines"]]
    too_many = client.post(f"{path}/receive", headers=lyon_headers,
                           json={"lines": [{"line_id": line_ids[0], "received": "2"}, {"line_id": line_ids[1],
                                                                                      "received": "1"}]})
    assert too_many.status_code == 422
    received = client.post(f"{path}/receive", headers=lyon_headers, json={"lines": [
        {"line_id": line_ids[0], "received": "1"}, {"line_id": line_ids[1], "received": "1", "damaged": "1"}]})
    assert received.status_code == 200, received.json
    assert [(line["item_status"], line["location_code"]) for line in received.json["lines"]] == [
        ("sealed", "LOC-LYON"), ("discarded", "LOC-LYON")]
    again = client.post(f"{path}/receive", headers=lyon_headers, json={})
    assert again.status_code == 409


def test_bad_transfers_answer_with_their_reason(client, make_batch, make_user, hub_headers, lyon):
    vial = vials_of(make_batch(units=1))[0]
    same = client.post("/api/v1/transfers", headers=hub_headers, json={
        "from_site_id": main_site().id, "to_site_id": main_site().id, "lines": [{"vial_code": vial.code}]})
    assert same.status_code == 422
    outsider = bearer(users.create_token(None, make_user("technician", site_codes=["LYON"]), "t"))
    foreign = _draft(client, outsider, lyon, [vial])
    assert foreign.status_code == 403 and "site MAIN" in foreign.json["error"]
    empty = client.post("/api/v1/transfers", headers=hub_headers, json={
        "from_site_id": main_site().id, "to_site_id": lyon.id, "lines": []})
    assert empty.status_code == 422
    both = client.post("/api/v1/transfers", headers=hub_headers, json={
        "from_site_id": main_site().id, "to_site_id": lyon.id, "lines": [{"lot_id": 1}]})
    assert both.status_code == 422 and "quantity" in both.json["details"]["lines"]["0"]


def test_a_draft_is_cancelled_with_a_reason(client, make_batch, hub_headers, lyon):
    created = _draft(client, hub_headers, lyon, vials_of(make_batch(units=1))).json
    path = f"/api/v1/transfers/{created['id']}/cancel"
    assert client.post(path, headers=hub_headers, json={}).status_code == 422
    cancelled = client.post(path, headers=hub_headers, json={"reason": "wrong clinic"})
    assert cancelled.status_code == 200 and cancelled.json["status"] == "cancelled"


def test_the_list_shows_the_transfers_of_the_callers_sites_in_a_fixed_number_of_queries(
        client, make_batch, make_user, hub_headers, lyon_headers, lyon, app):
    batch = make_batch(units=6)
    for vial in vials_of(batch):
        assert _draft(client, hub_headers, lyon, [vial]).status_code == 201
    other = add_site("NICE")
    nice = bearer(users.create_token(None, make_user("pharmacist", site_codes=["NICE"]), "t"))
    with QueryCounter(db.engine) as counter:
        listed = client.get("/api/v1/transfers?per_page=4", headers=lyon_headers)
    assert listed.status_code == 200 and listed.json["total"] == 6 and len(listed.json["items"]) == 4
    assert counter.count <= 8
    assert client.get("/api/v1/transfers", headers=nice).json["total"] == 0
    first = listed.json["items"][0]
    assert client.get(f"/api/v1/transfers/{first['id']}", headers=nice).status_code == 404
    assert other.code == "NICE"


def test_a_session_posted_for_a_site_refuses_a_vial_kept_elsewhere(client, make_batch, make_patient, make_user,
                                                                   lyon, auth):
    vial = vials_of(make_batch(units=1))[0]
    doctor = make_user("practitioner", site_codes=["MAIN", "LYON"])
    answer = client.post("/api/v1/treatment-sessions", headers=auth(doctor), json={
        "patient_id": make_patient().id, "site_id": lyon.id, "uses": [{"vial_code": vial.code, "volume_ml": "1"}]})
    assert answer.status_code == 409
    assert "is at site MAIN, not at LYON" in answer.json["error"]
