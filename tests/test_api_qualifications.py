"""The qualifications API: recording results, bad input, voids, standings, the list, kinds, and compounding and
verifying refused (409) for a lapsed qualification until a new pass is recorded."""

from datetime import date, timedelta

import pytest
import sqlalchemy as sa
from peoplekit import due_in, lapse
from sitekit import add_site
from testkit import PASSWORD, QueryCounter, audit_rows, count_rows

from compounding.extensions import db
from compounding.models import Batch, Qualification, QualificationKind
from compounding.services import qualifications
from compounding.services.qualifications import add_months

TODAY = date.today()
RECORD_FIELDS = {"id", "user_id", "username", "display_name", "kind", "kind_name", "passed_on", "result", "cfu",
                 "valid_until", "assessor", "note", "recorded_by", "recorded_by_id", "recorded_at", "voided",
                 "voided_at", "voided_by", "void_reason"}


@pytest.fixture
def recorder(make_user):
    return make_user("pharmacist", display_name="Recording Pharmacist")


@pytest.fixture
def person(make_user):
    return make_user("technician", display_name="Tess Tech", qualified=False)


def _post(client, auth, who, **body):
    return client.post("/api/v1/qualifications", headers=auth(who), json=body)


def _body(person, **changes):
    return {"user_id": person.id, "kind": "media_fill", "passed_on": (TODAY - timedelta(days=2)).isoformat(),
            "result": "pass", **changes}


def _records_of(person) -> int:
    return db.session.scalar(sa.select(sa.func.count()).where(Qualification.user_id == person.id))


def test_a_pass_is_recorded_by_username_and_answered_with_its_default_end(client, auth, recorder, person):
    passed = TODAY - timedelta(days=2)
    response = _post(client, auth, recorder, username=person.username.upper(), kind="media_fill",
                     passed_on=passed.isoformat(), result="pass", assessor="QA lead", note="Annual")
    assert response.status_code == 201, response.json
    body = response.json
    assert set(body) == RECORD_FIELDS
    assert (body["user_id"], body["username"], body["kind"], body["passed_on"], body["result"], body["cfu"]) == (
        person.id, person.username, "media_fill", passed.isoformat(), "pass", None)
    assert body["valid_until"] == add_months(passed, 6).isoformat()
    assert (body["recorded_by"], body["recorded_by_id"], body["voided"]) == ("Recording Pharmacist", recorder.id, False)
    [row] = audit_rows("qualification.recorded", "qualification", body["id"])
    assert row.actor_id == recorder.id


@pytest.mark.parametrize("changes, status, field, message", [
    ({"passed_on": (TODAY + timedelta(days=1)).isoformat()}, 422, "passed_on", "is in the future"),
    ({"valid_until": (TODAY - timedelta(days=2)).isoformat()}, 422, "valid_until", "not after the day it was passed"),
    ({"valid_until": (TODAY - timedelta(days=9)).isoformat()}, 422, "valid_until", "not after the day it was passed"),
    ({"valid_until": (TODAY + timedelta(days=400)).isoformat()}, 422, "valid_until", "at most 6 months"),
    ({"result": "fail", "valid_until": (TODAY + timedelta(days=9)).isoformat()}, 422, "valid_until",
     "valid for nothing"),
    ({"cfu": 0}, 422, "cfu", "counts no colony-forming units"),
    ({"kind": "gloved_fingertip"}, 422, "cfu", "colony-forming units counted"),
    ({"kind": "gloved_fingertip", "cfu": 1}, 422, "cfu", "1 CFU fails an initial qualification"),
    ({"kind": "gloved_fingertip", "cfu": -1}, 422, "cfu", "greater than or equal to 0"),
    ({"kind": "gloved_fingertip", "cfu": "0"}, 422, "cfu", "Not a valid integer"),
    ({"result": "maybe"}, 422, "result", "Must be one of"),
    ({"passed_on": "30/11/2026"}, 422, "passed_on", "Not a valid date"),
    ({"kind": "astrology"}, 404, None, "No qualification kind astrology"),
    ({"user_id": 999999}, 404, None, "No user 999999"),
    ({"user_id": None}, 422, "user_id", "Name the person"),
])
def test_bad_input_is_refused_with_its_status_and_nothing_is_stored(client, auth, recorder, person, changes, status,
                                                                    field, message):
    response = _post(client, auth, recorder, **_body(person, **changes))
    assert response.status_code == status, response.json
    assert message in str(response.json)
    if field:
        assert field in response.json["details"]
    assert _records_of(person) == 0 and audit_rows("qualification.recorded") == []


def test_an_unknown_username_and_a_deactivated_account_are_refused(client, auth, recorder, person):
    response = _post(client, auth, recorder, **_body(person, user_id=None, username="nobody"))
    assert response.status_code == 404 and response.json["error"] == "No user nobody."
    person.active = False
    db.session.commit()
    response = _post(client, auth, recorder, **_body(person))
    assert response.status_code == 409 and "deactivated" in response.json["error"]
    assert _records_of(person) == 0


def test_a_person_at_another_site_is_not_found_and_only_recorders_record(client, auth, recorder, make_user):
    add_site("LYON")
    stranger = make_user("technician", site_codes=["LYON"], qualified=False)
    assert _post(client, auth, recorder, **_body(stranger)).status_code == 404
    assert _post(client, auth, "technician", **_body(stranger)).status_code == 403
    assert _post(client, auth, "auditor", **_body(stranger)).status_code == 403
    assert _records_of(stranger) == 0
    assert _post(client, auth, "admin", **_body(stranger)).status_code == 201  # admins manage every account


def test_the_gloved_fingertip_series_is_counted_and_the_standing_says_initial(client, auth, recorder, person):
    for days in (3, 2):
        response = _post(client, auth, recorder, **_body(person, kind="gloved_fingertip", cfu=0,
                                                         passed_on=(TODAY - timedelta(days=days)).isoformat()))
        assert response.status_code == 201 and response.json["cfu"] == 0
    standing = client.get(f"/api/v1/users/{person.id}/qualifications", headers=auth(person)).json
    gloved = next(s for s in standing["standings"] if s["kind"] == "gloved_fingertip")
    assert (gloved["state"], gloved["passes"], gloved["needed"], gloved["usable"]) == ("initial", 2, 3, False)
    assert "initial qualification incomplete (2 of 3 passes)" in gloved["message"]


def test_a_void_marks_the_record_and_it_stops_counting(client, auth, recorder, person):
    record = _post(client, auth, recorder, **_body(person, result="fail", passed_on=TODAY.isoformat())).json
    path = f"/api/v1/qualifications/{record['id']}/void"
    assert client.post(path, headers=auth(recorder), json={"reason": ""}).status_code == 422
    assert client.post(path, headers=auth("technician"), json={"reason": "typo"}).status_code == 403
    response = client.post(path, headers=auth(recorder), json={"reason": "Entered for the wrong person"})
    assert response.status_code == 200
    body = response.json
    assert (body["voided"], body["voided_by"], body["void_reason"]) == (
        True, "Recording Pharmacist", "Entered for the wrong person")
    again = client.post(path, headers=auth(recorder), json={"reason": "again"})
    assert again.status_code == 409 and "already voided" in again.json["error"]
    assert client.post("/api/v1/qualifications/999999/void", headers=auth(recorder),
                       json={"reason": "x"}).status_code == 404
    standing = client.get(f"/api/v1/users/{person.id}/qualifications", headers=auth(recorder)).json
    assert next(s for s in standing["standings"] if s["kind"] == "media_fill")["state"] == "missing"


def test_a_person_reads_their_own_standings_and_may_compound_when_every_required_kind_stands(client, auth,
                                                                                           make_user):
    tech = make_user("technician")
    headers = auth(tech)
    body = client.get(f"/api/v1/users/{tech.id}/qualifications", headers=headers).json
    assert (body["may_compound"], body["may_verify"], body["requirement"]) == (True, False, True)
    assert [s["kind"] for s in body["standings"]] == ["hand_hygiene_garbing", "gloved_fingertip", "media_fill"]
    assert all(s["state"] == "valid" and s["required"] for s in body["standings"])
    until = lapse(tech)
    body = client.get(f"/api/v1/users/{tech.id}/qualifications", headers=headers).json
    media = body["standings"][2]
    assert body["may_compound"] is False
    assert (media["state"], media["valid_until"], media["message"]) == (
        "lapsed", until.isoformat(), f"Media-fill test: lapsed on {until.isoformat()}")
    other = make_user("technician")
    assert client.get(f"/api/v1/users/{other.id}/qualifications", headers=headers).status_code == 403
    assert client.get(f"/api/v1/users/{tech.id}/qualifications", headers=auth("auditor")).status_code == 200
    assert client.get("/api/v1/users/999999/qualifications", headers=headers).status_code == 404


def test_the_list_filters_by_person_kind_and_due_within(client, auth, recorder, make_user):
    soon = make_user("technician", display_name="Soon Due")
    steady = make_user("technician", display_name="Steady")
    failed = make_user("technician", display_name="Failed One")
    due_in(soon, 10)
    fail = qualifications.record_qualification(recorder, user_id=failed.id, kind="hand_hygiene_garbing",
                                               passed_on=TODAY, result="fail")
    headers = auth("auditor")
    everything = client.get("/api/v1/qualifications?per_page=200", headers=headers).json
    assert everything["total"] == count_rows(Qualification)
    mine = client.get(f"/api/v1/qualifications?user_id={steady.id}", headers=headers).json
    assert mine["total"] == 5 and {i["username"] for i in mine["items"]} == {steady.username}
    media = client.get(f"/api/v1/qualifications?user_id={steady.id}&kind=media_fill", headers=headers).json
    assert [i["kind"] for i in media["items"]] == ["media_fill"]
    due = client.get("/api/v1/qualifications?due_within=30", headers=headers).json
    assert {(i["username"], i["kind"]) for i in due["items"]} == {
        (soon.username, "media_fill"), (failed.username, "hand_hygiene_garbing")}
    assert next(i for i in due["items"] if i["username"] == failed.username)["id"] == fail.id
    assert client.get("/api/v1/qualifications?due_within=5", headers=headers).json["total"] == 1
    for bad in ("due_within=-1", "due_within=soon", "kind=astrology", "user_id=0"):
        assert client.get(f"/api/v1/qualifications?{bad}", headers=headers).status_code == 422, bad
    assert client.get("/api/v1/qualifications", headers=auth("technician")).status_code == 403


def test_the_list_shows_only_people_at_the_callers_sites(client, auth, recorder, make_user):
    lyon = add_site("LYON")
    make_user("technician", site_codes=["LYON"])
    main_only = client.get("/api/v1/qualifications?per_page=200", headers=auth(recorder)).json
    everyone = client.get("/api/v1/qualifications?per_page=200", headers=auth("auditor")).json
    assert everyone["total"] == main_only["total"] + 5
    assert client.get(f"/api/v1/qualifications?site_id={lyon.id}", headers=auth(recorder)).status_code == 403


def test_the_list_reads_the_same_statements_for_few_or_many_records(client, auth, make_user):
    headers = auth("auditor")

    def statements(query: str) -> tuple[int, int]:
        db.session.expire_all()
        with QueryCounter(db.engine) as counter:
            response = client.get(f"/api/v1/qualifications?per_page=200{query}", headers=headers)
        assert response.status_code == 200
        return counter.count, response.json["total"]

    for _ in range(2):
        due_in(make_user("technician"), 3)
    few = statements(""), statements("&due_within=30")
    for _ in range(10):
        due_in(make_user("technician"), 3)
    many = statements(""), statements("&due_within=30")
    assert [total for _, total in many] > [total for _, total in few]
    assert [count for count, _ in few] == [count for count, _ in many]
    assert max(count for count, _ in many) <= 8


def test_kinds_are_listed_to_everyone_and_added_by_admins(client, auth):
    listed = client.get("/api/v1/qualification-kinds", headers=auth("technician")).json
    assert [k["code"] for k in listed["items"]] == ["hand_hygiene_garbing", "gloved_fingertip", "media_fill"]
    assert listed["items"][1]["counts_cfu"] and listed["items"][1]["initial_passes"] == 3
    body = {"code": "aseptic_technique", "name": "Aseptic technique", "valid_months": 12, "category3_months": 6}
    assert client.post("/api/v1/qualification-kinds", headers=auth("pharmacist"), json=body).status_code == 403
    response = client.post("/api/v1/qualification-kinds", headers=auth("admin"), json=body)
    assert response.status_code == 201
    assert (response.json["code"], response.json["required"], response.json["builtin"]) == (
        "aseptic_technique", True, False)
    assert client.post("/api/v1/qualification-kinds", headers=auth("admin"), json=body).status_code == 409
    bad = client.post("/api/v1/qualification-kinds", headers=auth("admin"),
                      json={**body, "code": "other", "category3_months": 13})
    assert bad.status_code == 422 and "not longer than the usual one" in bad.json["error"]
    assert count_rows(QualificationKind) == 4


# --- the bench: DESIGN 10.6's refusal, through the API ------------------------------------------------------

@pytest.fixture
def bench(make_ingredient, make_formula, make_lot):
    active = make_ingredient(name="Phosphatidylcholine", unit="mg")
    saline = make_ingredient(name="Sodium chloride 0.9 %", kind="diluent", unit="mL", vehicle=True)
    formula = make_formula([(active, "2"), (saline, "8")], unit_volume_ml="8")
    return formula, make_lot(active, quantity="100"), make_lot(saline, quantity="1000")


def _compound_body(bench) -> dict:
    formula, active_lot, saline_lot = bench
    return {"formula_id": formula.id, "units": 1, "scanned_lot_ids": [active_lot.id, saline_lot.id],
            "allocations": [{"lot_id": active_lot.id, "quantity": "2"}, {"lot_id": saline_lot.id, "quantity": "8"}]}


def test_a_lapsed_media_fill_refuses_compounding_until_a_new_pass_is_recorded(client, auth, make_user, recorder,
                                                                             bench):
    tech = make_user("technician")
    until = lapse(tech)
    refused = client.post("/api/v1/batches", headers=auth(tech), json=_compound_body(bench))
    assert refused.status_code == 409
    assert f"may not compound: Media-fill test: lapsed on {until.isoformat()}" in refused.json["error"]
    [problem] = refused.json["details"]["qualifications"]
    assert (problem["kind"], problem["state"], problem["valid_until"]) == ("media_fill", "lapsed", until.isoformat())
    assert count_rows(Batch) == 0
    recorded = _post(client, auth, recorder, user_id=tech.id, kind="media_fill", passed_on=TODAY.isoformat(),
                     result="pass")
    assert recorded.status_code == 201
    made = client.post("/api/v1/batches", headers=auth(tech), json=_compound_body(bench))
    assert made.status_code == 201, made.json
    assert made.json["compounded_by"]


def test_a_failed_result_refuses_verification_through_the_api(client, auth, make_user, recorder, make_batch):
    batch = make_batch(release=False)
    verifier = make_user("pharmacist")
    qualifications.record_qualification(recorder, user_id=verifier.id, kind="hand_hygiene_garbing",
                                        passed_on=TODAY, result="fail")
    refused = client.post(f"/api/v1/batches/{batch.id}/verify", headers=auth(verifier), json={"password": PASSWORD})
    assert refused.status_code == 409
    assert f"may not verify: Hand hygiene and garbing: failed on {TODAY.isoformat()}" in refused.json["error"]
    assert refused.json["details"]["qualifications"][0]["state"] == "failed"
    assert db.session.get(Batch, batch.id).status == "prepared"
