"""The treatments API: patients, sessions (refused with reasons when a batch is unusable), adverse events."""

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from testkit import QueryCounter, age_batch, run_at_once, sign_in_session, spoil_batch

from compounding.extensions import db
from compounding.models import AdverseEvent, Batch, Patient, SessionUse, StockMovement, TreatmentSession, User
from compounding.services import treatments, voids
from compounding.services.clock import clinic_today, utcnow
from compounding.services.errors import DomainError
from compounding.services.ledger import ledger_balance

PATIENT_FIELDS = {"id", "chart_number", "name", "birth_date", "phone", "email", "created_at"}
SESSION_FIELDS = {"id", "patient_id", "chart_number", "practitioner_id", "practitioner", "performed_at",
                  "indication", "notes", "recorded_at", "voided", "voided_at", "voided_by_id", "void_code",
                  "void_reason", "corrects_session_id", "uses"}
USE_FIELDS = {"id", "batch_id", "batch_code", "vial_id", "vial_code", "formula_code", "formula_version",
              "formula_name", "volume_ml", "area"}
EVENT_FIELDS = {"id", "session_id", "patient_id", "type", "severity", "onset_on", "outcome", "notes", "recorded_at",
                "recorded_by_id"}


@pytest.fixture
def auth_role() -> str:
    """The role `auth()` makes an account of when it is given none."""
    return "practitioner"


def use(batch, volume="2", area="abdomen"):
    return {"batch_code": batch.code, "volume_ml": volume, "area": area}


def rows() -> tuple[int, int, int]:
    return (db.session.scalar(sa.select(sa.func.count(TreatmentSession.id))),
            db.session.scalar(sa.select(sa.func.count(SessionUse.id))),
            db.session.scalar(sa.select(sa.func.count(StockMovement.id))))


def remaining(batch) -> Decimal:
    db.session.expire_all()
    return db.session.get(Batch, batch.id).remaining_volume_ml


def iso(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    assert value.tzinfo is not None, f"{text} has no offset"
    return value


# --- patients -------------------------------------------------------------------------------------


def test_a_practitioner_registers_a_patient_and_gets_201_with_the_record(client, auth):
    response = client.post("/api/v1/patients", headers=auth(), json={
        "chart_number": "CH-0042", "name": "Ana Ruiz", "birth_date": "1985-04-23", "email": "ana@example.org"})
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert set(body) == PATIENT_FIELDS
    assert (body["chart_number"], body["birth_date"], body["phone"]) == ("CH-0042", "1985-04-23", "")
    iso(body["created_at"])
    assert client.get(f"/api/v1/patients/{body['id']}", headers=auth("auditor")).get_json() == body


def test_only_the_chart_number_is_required_and_a_taken_one_is_a_409(client, auth):
    headers = auth()
    assert client.post("/api/v1/patients", headers=headers, json={"chart_number": "A-1"}).status_code == 201
    response = client.post("/api/v1/patients", headers=headers, json={"chart_number": "A-1"})
    assert response.status_code == 409
    assert response.get_json()["details"]["chart_number"] == ["Already registered."]
    response = client.post("/api/v1/patients", headers=headers, json={"name": "No chart"})
    assert response.status_code == 422 and "chart_number" in response.get_json()["details"]


@pytest.mark.parametrize("body, field", [
    ({"chart_number": "A-2", "email": "nope"}, "email"),
    ({"chart_number": "A-2", "birth_date": "1985-13-01"}, "birth_date"),
    ({"chart_number": "A-2", "birth_date": "2099-01-01"}, "birth_on"),
    ({"chart_number": "x" * 41}, "chart_number"),
])
def test_bad_patient_fields_are_a_422_naming_the_field(client, auth, body, field):
    response = client.post("/api/v1/patients", headers=auth(), json=body)
    assert response.status_code == 422
    assert field in response.get_json()["details"]
    assert db.session.scalar(sa.select(sa.func.count(Patient.id))) == 0


def test_patching_a_patient_changes_only_the_fields_sent(client, auth, make_patient):
    patient = make_patient(chart_number="CH-9", name="Lena Berg", birth_on="1990-02-03")
    response = client.patch(f"/api/v1/patients/{patient.id}", headers=auth(), json={"phone": "+46 8 000 000"})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert (body["chart_number"], body["name"], body["birth_date"], body["phone"]) == (
        "CH-9", "Lena Berg", "1990-02-03", "+46 8 000 000")
    body = client.patch(f"/api/v1/patients/{patient.id}", headers=auth(), json={"birth_date": None}).get_json()
    assert body["birth_date"] is None and body["name"] == "Lena Berg"
    assert client.patch("/api/v1/patients/999999", headers=auth(), json={"name": "x"}).status_code == 404


def test_the_patient_list_searches_chart_number_and_name(client, auth, make_patient):
    make_patient(chart_number="CH-100", name="Lucía Fernández")
    make_patient(chart_number="CH-200", name="Bob Stone")
    body = client.get("/api/v1/patients?q=stone", headers=auth("practitioner")).get_json()
    assert set(body) == {"items", "page", "per_page", "total"}
    assert [p["chart_number"] for p in body["items"]] == ["CH-200"] and body["total"] == 1
    body = client.get("/api/v1/patients", headers=auth("auditor")).get_json()
    assert [p["chart_number"] for p in body["items"]] == ["CH-100", "CH-200"]


# --- treatment sessions ---------------------------------------------------------------------------


def test_a_session_is_recorded_with_its_uses_and_the_volume_leaves_the_batch(client, auth, practitioner,
                                                                             make_patient, make_shared_batch):
    patient, first, second = make_patient(), make_shared_batch(units=2), make_shared_batch(units=1)
    response = client.post("/api/v1/treatment-sessions", headers=auth(practitioner), json={
        "patient_id": patient.id, "indication": "submental fat", "notes": "first session",
        "uses": [{"batch_code": first.code.lower(), "volume_ml": "2.5", "area": "submental"},
                 {"batch_id": second.id, "volume_ml": 1}]})
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert set(body) == SESSION_FIELDS
    assert (body["patient_id"], body["chart_number"], body["practitioner"]) == (
        patient.id, patient.chart_number, "Dr Nina Costa")
    assert body["voided"] is False and body["voided_at"] is None
    assert [set(u) for u in body["uses"]] == [USE_FIELDS, USE_FIELDS]
    assert [(u["batch_code"], u["volume_ml"], u["area"]) for u in body["uses"]] == [
        (first.code, "2.5", "submental"), (second.code, "1", "")]
    assert [u["vial_code"] for u in body["uses"]] == [f"{first.code}-01", f"{second.code}-01"]
    assert abs(iso(body["performed_at"]) - utcnow()) < timedelta(minutes=1)
    assert (remaining(first), remaining(second)) == (Decimal("17.5"), Decimal("9"))
    assert ledger_balance(batch_id=first.id) == Decimal("17.5")
    assert client.get(f"/api/v1/treatment-sessions/{body['id']}", headers=auth("auditor")).get_json() == body


def test_a_session_by_vial_code_names_its_vial_and_a_spent_vial_is_a_409_with_reasons(client, auth, practitioner,
                                                                                       make_patient, make_batch):
    batch = make_batch(units=2)
    vial = f"{batch.code}-02"
    headers = auth(practitioner)
    first = client.post("/api/v1/treatment-sessions", headers=headers, json={
        "patient_id": make_patient().id, "uses": [{"vial_code": vial.lower(), "volume_ml": "2", "area": "chin"},
                                                  {"vial_code": vial, "batch_code": batch.code, "volume_ml": "1"}]})
    assert first.status_code == 201, first.get_json()
    assert [u["vial_code"] for u in first.get_json()["uses"]] == [vial, vial]
    shown = client.get(f"/api/v1/treatment-sessions/{first.get_json()['id']}", headers=headers).get_json()
    assert [u["vial_code"] for u in shown["uses"]] == [vial, vial]
    again = client.post("/api/v1/treatment-sessions", headers=headers, json={
        "patient_id": make_patient().id, "uses": [{"vial_code": vial, "volume_ml": "1"}]})
    assert again.status_code == 409
    assert "single-dose vial already used in session" in again.get_json()["details"]["reasons"][vial][0]
    by_batch = client.post("/api/v1/treatment-sessions", headers=headers, json={
        "patient_id": make_patient().id, "uses": [{"batch_code": batch.code, "volume_ml": "1"}]})
    assert by_batch.status_code == 201 and by_batch.get_json()["uses"][0]["vial_code"] == f"{batch.code}-01"


def test_bad_vial_codes_are_refused_saying_what_is_wrong(client, auth, practitioner, make_patient, make_batch):
    batch, other = make_batch(units=2), make_batch(units=2)
    headers = auth(practitioner)

    def post(**use):
        return client.post("/api/v1/treatment-sessions", headers=headers, json={
            "patient_id": make_patient().id, "uses": [{"volume_ml": "1", **use}]})

    for code, status, says in ((f"{batch.code}-", 422, "vial number after the hyphen is missing"),
                               ("-00", 422, "no batch code before the hyphen"),
                               (f"{batch.code}-00", 422, "vial numbers start at 01"),
                               (f"{batch.code}-999", 404, f"no vial 999 (its vials run to {batch.code}-02)"),
                               ("B2001019999-01", 404, "there is no batch B2001019999")):
        response = post(vial_code=code)
        assert response.status_code == status and says in response.get_json()["error"], (code, response.get_json())
    disagree = post(vial_code=f"{batch.code}-01", batch_code=other.code)
    assert disagree.status_code == 409
    assert f"{batch.code}-01 is a vial of batch {batch.code}, not of {other.code}" in disagree.get_json()["error"]
    too_much = post(vial_code=f"{batch.code}-01", volume_ml="12")
    assert too_much.status_code == 409
    assert too_much.get_json()["details"]["reasons"][f"{batch.code}-01"] == ["the vial holds only 10 mL, 12 mL asked"]
    assert remaining(batch) == Decimal("20") and remaining(other) == Decimal("20")
    assert post().status_code == 422


def test_a_late_entry_keeps_its_offset_time_and_a_time_without_offset_is_refused(
        client, auth, make_patient, make_batch):
    patient, batch = make_patient(), make_batch()
    age_batch(batch, timedelta(hours=5))
    when = (utcnow() - timedelta(hours=2)).replace(microsecond=0).astimezone(ZoneInfo("America/New_York"))
    response = client.post("/api/v1/treatment-sessions", headers=auth(), json={
        "patient_id": patient.id, "performed_at": when.isoformat(), "uses": [use(batch)]})
    assert response.status_code == 201, response.get_json()
    assert iso(response.get_json()["performed_at"]) == when
    response = client.post("/api/v1/treatment-sessions", headers=auth(), json={
        "patient_id": patient.id, "performed_at": "2026-01-01T10:00:00", "uses": [use(batch)]})
    assert response.status_code == 422 and "performed_at" in response.get_json()["details"]


@pytest.mark.parametrize("state, reason", [
    ("prepared", "not released"), ("recalled", "recalled: supplier alert"), ("expired", "expired at"),
    ("empty", "empty: no volume left"),
])
def test_an_unusable_batch_is_a_409_with_its_reasons_and_nothing_is_saved(
        client, auth, practitioner, make_patient, make_batch, state, reason):
    patient, good = make_patient(), make_batch()
    bad = make_batch(release=state != "prepared")
    spoil_batch(state, bad, practitioner, make_patient)
    before, good_before = rows(), remaining(good)
    response = client.post("/api/v1/treatment-sessions", headers=auth(practitioner), json={
        "patient_id": patient.id, "uses": [use(good, "1"), use(bad, "1")]})
    assert response.status_code == 409
    body = response.get_json()
    assert set(body) == {"error", "details"} and body["error"].startswith("Do not use")
    assert list(body["details"]["reasons"]) == [bad.code]
    assert any(reason in text for text in body["details"]["reasons"][bad.code])
    assert rows() == before and remaining(good) == good_before


def test_more_volume_than_remains_is_a_409(client, auth, make_patient, make_batch):
    patient, batch = make_patient(), make_batch(units=1)
    before = rows()
    response = client.post("/api/v1/treatment-sessions", headers=auth(), json={
        "patient_id": patient.id, "uses": [use(batch, "6"), use(batch, "5")]})
    assert response.status_code == 409
    assert response.get_json()["details"]["reasons"][batch.code] == ["only 10 mL left, 11 mL asked"]
    assert rows() == before and remaining(batch) == Decimal("10")


@pytest.mark.parametrize("body, status, field", [
    ({"uses": []}, 422, "uses"),
    ({"uses": [{"volume_ml": "1"}]}, 422, "uses"),
    ({"uses": [{"batch_code": "B2611270003", "volume_ml": "0"}]}, 422, "uses"),
    ({"uses": [{"batch_code": "B2611270003", "volume_ml": "1.2345"}]}, 422, "uses"),
    ({"uses": [{"batch_code": "B0000000000", "volume_ml": "1"}]}, 422, "uses"),
    ({"uses": [{"batch_code": "{code}", "volume_ml": "1"}], "practitioner_id": 999999}, 422, "practitioner_id"),
    ({"uses": [{"batch_code": "{code}", "volume_ml": "1"}], "patient_id": 999999}, 404, "patient_id"),
])
def test_bad_session_bodies_are_refused_naming_the_field(client, auth, make_patient, make_batch, body, status,
                                                         field):
    patient, batch = make_patient(), make_batch()
    for row in body["uses"]:
        if row.get("batch_code") == "{code}":
            row["batch_code"] = batch.code
    response = client.post("/api/v1/treatment-sessions", headers=auth(), json={"patient_id": patient.id, **body})
    assert response.status_code == status, response.get_json()
    assert field in response.get_json()["details"]
    assert rows()[0] == 0


def test_a_technician_is_named_practitioner_in_vain(client, auth, technician, make_patient, make_batch):
    response = client.post("/api/v1/treatment-sessions", headers=auth(), json={
        "patient_id": make_patient().id, "practitioner_id": technician.id, "uses": [use(make_batch())]})
    assert response.status_code == 422 and "practitioner_id" in response.get_json()["details"]


def test_voiding_gives_the_volume_back_once(client, auth, practitioner, make_patient, make_shared_batch):
    batch = make_shared_batch()
    record = treatments.record_session(practitioner, patient_id=make_patient().id, uses=[use(batch, "3")])
    headers = auth(practitioner)
    assert client.post(f"/api/v1/treatment-sessions/{record.id}/void", headers=headers, json={}).status_code == 422
    missing_code = client.post(f"/api/v1/treatment-sessions/{record.id}/void", headers=headers,
                               json={"reason": "wrong patient"})
    assert missing_code.status_code == 422 and "reason_code" in missing_code.get_json()["details"]
    unknown_code = client.post(f"/api/v1/treatment-sessions/{record.id}/void", headers=headers,
                               json={"reason_code": "oops", "reason": "wrong patient"})
    assert unknown_code.status_code == 422 and remaining(batch) == Decimal("17")
    wrong_patient = client.post(f"/api/v1/treatment-sessions/{record.id}/void", headers=headers,
                                json={"reason_code": "wrong_patient", "reason": "wrong patient"})
    assert wrong_patient.status_code == 422 and "use Correct the patient" in wrong_patient.get_json()["error"]
    assert remaining(batch) == Decimal("17")
    response = client.post(f"/api/v1/treatment-sessions/{record.id}/void", headers=headers,
                           json={"reason_code": "entered_in_error", "reason": "wrong patient"})
    assert response.status_code == 200
    body = response.get_json()
    assert body["voided"] is True and body["void_reason"] == "wrong patient" and iso(body["voided_at"])
    assert body["void_code"] == "entered_in_error"
    assert remaining(batch) == Decimal("20")
    again = client.post(f"/api/v1/treatment-sessions/{record.id}/void", headers=headers,
                        json={"reason_code": "duplicate", "reason": "again"})
    assert again.status_code == 409 and remaining(batch) == Decimal("20")
    assert client.post("/api/v1/treatment-sessions/999999/void", headers=headers,
                       json={"reason_code": "duplicate", "reason": "x"}).status_code == 404


def test_the_session_list_filters_by_patient_and_clinic_days(client, auth, practitioner, make_patient,
                                                            make_batch):
    batch = make_batch(units=3)
    age_batch(batch, timedelta(days=5))
    patient, other = make_patient(), make_patient()
    today = treatments.record_session(practitioner, patient_id=patient.id, uses=[use(batch, "1")])
    old = treatments.record_session(practitioner, patient_id=patient.id, uses=[use(batch, "1")],
                                    performed_at=utcnow() - timedelta(days=2))
    treatments.record_session(practitioner, patient_id=other.id, uses=[use(batch, "1")])
    headers = auth("auditor")
    body = client.get(f"/api/v1/treatment-sessions?patient_id={patient.id}", headers=headers).get_json()
    assert [s["id"] for s in body["items"]] == [today.id, old.id] and body["total"] == 2
    day = clinic_today().isoformat()
    body = client.get(f"/api/v1/treatment-sessions?patient_id={patient.id}&from={day}&to={day}",
                      headers=headers).get_json()
    assert [s["id"] for s in body["items"]] == [today.id]
    earlier = (clinic_today() - timedelta(days=1)).isoformat()
    body = client.get(f"/api/v1/treatment-sessions?to={earlier}", headers=headers).get_json()
    assert [s["id"] for s in body["items"]] == [old.id]
    response = client.get("/api/v1/treatment-sessions?from=yesterday", headers=headers)
    assert response.status_code == 422 and "from" in response.get_json()["details"]


# --- adverse events -------------------------------------------------------------------------------


def test_an_adverse_event_is_recorded_and_listed_by_patient(client, auth, practitioner, make_patient, make_batch):
    patient = make_patient()
    record = treatments.record_session(practitioner, patient_id=patient.id, uses=[use(make_batch())])
    response = client.post("/api/v1/adverse-events", headers=auth(practitioner), json={
        "session_id": record.id, "type": "infection", "severity": "severe", "onset_on": clinic_today().isoformat(),
        "outcome": "antibiotics", "notes": "abscess at the injection site"})
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert set(body) == EVENT_FIELDS
    assert (body["patient_id"], body["type"], body["onset_on"]) == (patient.id, "infection",
                                                                    clinic_today().isoformat())
    assert client.get(f"/api/v1/adverse-events/{body['id']}", headers=auth("auditor")).get_json() == body
    listed = client.get(f"/api/v1/adverse-events?patient_id={patient.id}", headers=auth("auditor")).get_json()
    assert [e["id"] for e in listed["items"]] == [body["id"]]
    assert client.get("/api/v1/adverse-events?patient_id=999", headers=auth("auditor")).get_json()["total"] == 0


@pytest.mark.parametrize("change, status, field", [
    ({"type": "itch"}, 422, "type"),
    ({"severity": "awful"}, 422, "severity"),
    ({"onset_on": "2000-01-01"}, 422, "onset_on"),
    ({"session_id": 999999}, 422, "session_id"),
])
def test_a_bad_adverse_event_is_refused_naming_the_field(client, auth, practitioner, make_patient, make_batch,
                                                         change, status, field):
    record = treatments.record_session(practitioner, patient_id=make_patient().id, uses=[use(make_batch())])
    body = {"session_id": record.id, "type": "pain", "severity": "mild", **change}
    response = client.post("/api/v1/adverse-events", headers=auth(practitioner), json=body)
    assert response.status_code == status and field in response.get_json()["details"]
    assert db.session.scalar(sa.select(sa.func.count(AdverseEvent.id))) == 0


def test_no_adverse_event_on_a_voided_session(client, auth, practitioner, make_patient, make_batch):
    record = treatments.record_session(practitioner, patient_id=make_patient().id, uses=[use(make_batch())])
    voids.void_session(practitioner, record.id, reason_code="entered_in_error", reason="wrong patient")
    response = client.post("/api/v1/adverse-events", headers=auth(practitioner), json={
        "session_id": record.id, "type": "pain", "severity": "mild"})
    assert response.status_code == 409


@pytest.mark.parametrize("config_overrides", [{"CLINIC_TIMEZONE": "America/Los_Angeles"}], indirect=True)
def test_the_onset_may_be_the_clinic_day_of_a_late_evening_session(client, auth, practitioner, make_patient,
                                                                   make_batch):
    """21:30 in Los Angeles is already the next day in UTC: the onset is judged in clinic days."""
    batch = make_batch()
    age_batch(batch, timedelta(days=3))
    zone = ZoneInfo("America/Los_Angeles")
    yesterday = clinic_today() - timedelta(days=1)
    evening = datetime(yesterday.year, yesterday.month, yesterday.day, 21, 30, tzinfo=zone).astimezone(UTC)
    record = treatments.record_session(practitioner, patient_id=make_patient().id, uses=[use(batch)],
                                       performed_at=evening)
    response = client.post("/api/v1/adverse-events", headers=auth(practitioner), json={
        "session_id": record.id, "type": "bruising", "severity": "mild", "onset_on": yesterday.isoformat()})
    assert response.status_code == 201, response.get_json()


# --- permissions ----------------------------------------------------------------------------------


def test_a_technician_reads_but_gets_403_creating_patients_and_sessions(client, auth, make_patient, make_batch):
    patient, batch = make_patient(), make_batch()
    headers = auth("technician")
    assert client.get("/api/v1/patients", headers=headers).status_code == 200
    assert client.post("/api/v1/patients", headers=headers, json={"chart_number": "T-1"}).status_code == 403
    response = client.post("/api/v1/treatment-sessions", headers=headers,
                           json={"patient_id": patient.id, "uses": [use(batch)]})
    assert response.status_code == 403 and set(response.get_json()) == {"error", "details"}
    assert rows()[0] == 0


def test_an_auditor_reads_everything_and_gets_403_on_every_post(client, auth, practitioner, make_patient,
                                                               make_batch):
    patient = make_patient()
    record = treatments.record_session(practitioner, patient_id=patient.id, uses=[use(make_batch())])
    event = treatments.record_adverse_event(practitioner, session_id=record.id, type="pain", severity="mild")
    headers = auth("auditor")
    for url in ("/api/v1/patients", f"/api/v1/patients/{patient.id}", "/api/v1/treatment-sessions",
                f"/api/v1/treatment-sessions/{record.id}", "/api/v1/adverse-events",
                f"/api/v1/adverse-events/{event.id}"):
        assert client.get(url, headers=headers).status_code == 200, url
    for method, url, body in (
            ("post", "/api/v1/patients", {"chart_number": "AU-1"}),
            ("patch", f"/api/v1/patients/{patient.id}", {"name": "changed"}),
            ("post", "/api/v1/treatment-sessions", {"patient_id": patient.id, "uses": []}),
            ("post", f"/api/v1/treatment-sessions/{record.id}/void", {"reason_code": "duplicate", "reason": "audit"}),
            ("post", "/api/v1/adverse-events", {"session_id": record.id, "type": "pain", "severity": "mild"})):
        assert getattr(client, method)(url, headers=headers, json=body).status_code == 403, url
    assert db.session.get(TreatmentSession, record.id).voided_at is None


def test_the_browser_session_records_through_the_api_too(client, practitioner, make_patient, make_batch):
    sign_in_session(client, practitioner)
    response = client.post("/api/v1/treatment-sessions", json={
        "patient_id": make_patient().id, "uses": [use(make_batch())]})
    assert response.status_code == 201 and response.get_json()["practitioner_id"] == practitioner.id


# --- query budgets and the OpenAPI document -------------------------------------------------------


def test_the_lists_cost_the_same_statements_for_5_or_60_rows(client, auth, practitioner, make_patient,
                                                             make_shared_batch):
    first, second = make_shared_batch(units=10), make_shared_batch(units=10)
    headers = auth("auditor")

    def add(n):
        for _ in range(n):
            record = treatments.record_session(practitioner, patient_id=make_patient().id,
                                               uses=[use(first, "0.5"), use(second, "0.5", "scalp")])
            treatments.record_adverse_event(practitioner, session_id=record.id, type="pain", severity="mild")

    def measure():
        counts = []
        for url in ("/api/v1/patients", "/api/v1/treatment-sessions", "/api/v1/adverse-events"):
            db.session.commit()
            with QueryCounter(db.engine) as counter:
                body = client.get(url, headers=headers).get_json()
            counts.append((counter.count, len(body["items"])))
        return counts

    add(5)
    small = measure()
    add(55)
    large = measure()
    assert [n for _, n in small] == [5, 5, 5] and [n for _, n in large] == [50, 50, 50]
    assert [c for c, _ in small] == [c for c, _ in large]


def test_the_treatment_routes_are_in_the_openapi_document(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    for path in ("/api/v1/patients", "/api/v1/patients/{patient_id}", "/api/v1/treatment-sessions",
                 "/api/v1/treatment-sessions/{session_id}", "/api/v1/treatment-sessions/{session_id}/void",
                 "/api/v1/adverse-events", "/api/v1/adverse-events/{event_id}"):
        assert path in spec["paths"], path
    assert "patch" in spec["paths"]["/api/v1/patients/{patient_id}"]
    assert "409" in spec["paths"]["/api/v1/treatment-sessions"]["post"]["responses"]
    assert {"TreatmentSession", "SessionUse", "Patient", "AdverseEvent"} <= set(spec["components"]["schemas"])


# --- two people at the same moment (PostgreSQL row locks) ------------------------------------------


def _race(app, user_ids, work) -> list[tuple[str, str]]:
    """Run work(actor) for each user at the same instant, each on its own session and connection."""
    barrier = threading.Barrier(len(user_ids))
    outcomes: list[tuple[str, str]] = []

    def run(user_id: int) -> None:
        with app.app_context():
            actor = db.session.get(User, user_id)
            try:
                barrier.wait(timeout=10)
                work(actor)
                outcomes.append(("done", ""))
            except DomainError as exc:
                db.session.rollback()
                outcomes.append(("refused", exc.message))
            except Exception as exc:  # reported below: the test must not hang or hide it
                db.session.rollback()
                outcomes.append(("error", repr(exc)))

    run_at_once(run, [(user_id,) for user_id in user_ids])
    return outcomes


@pytest.fixture
def postgresql_only(app):
    if db.engine.dialect.name != "postgresql":
        pytest.skip("row locks between concurrent transactions are exercised on PostgreSQL")


def test_two_sessions_racing_for_the_last_volume_never_overdraw_the_batch(app, postgresql_only, make_user,
                                                                          make_patient, make_shared_batch):
    batch_id = make_shared_batch(units=1).id  # one 10 mL vial: room for one of the two sessions
    patient_id = make_patient().id
    user_ids = [make_user("practitioner").id, make_user("practitioner").id]
    db.session.commit()
    code = db.session.get(Batch, batch_id).code
    outcomes = _race(app, user_ids, lambda actor: treatments.record_session(
        actor, patient_id=patient_id, uses=[{"batch_code": code, "volume_ml": "7"}]))
    assert sorted(kind for kind, _ in outcomes) == ["done", "refused"], outcomes
    db.session.expire_all()
    assert remaining(db.session.get(Batch, batch_id)) == Decimal("3") == ledger_balance(batch_id=batch_id)


def test_two_people_voiding_the_same_session_give_its_volume_back_once(app, postgresql_only, make_user,
                                                                      make_patient, make_shared_batch, practitioner):
    batch = make_shared_batch()
    record_id = treatments.record_session(practitioner, patient_id=make_patient().id, uses=[use(batch, "4")]).id
    batch_id = batch.id
    user_ids = [make_user("practitioner").id, make_user("pharmacist").id]
    db.session.commit()
    outcomes = _race(app, user_ids, lambda actor: voids.void_session(actor, record_id, reason_code="duplicate",
                                                                     reason="wrong patient"))
    assert sorted(kind for kind, _ in outcomes) == ["done", "refused"], outcomes
    db.session.expire_all()
    assert remaining(db.session.get(Batch, batch_id)) == Decimal("20") == ledger_balance(batch_id=batch_id)


def test_an_adverse_event_racing_a_void_waits_for_it_and_is_refused_on_the_voided_session(
        app, postgresql_only, make_user, make_patient, make_batch, practitioner):
    import time

    record_id = treatments.record_session(practitioner, patient_id=make_patient().id,
                                          uses=[use(make_batch(), "4")]).id
    reporter_id = make_user("practitioner").id
    db.session.commit()
    # The void's transaction holds the session row, as void_session does, while the event comes in.
    db.session.execute(sa.select(TreatmentSession.id).where(TreatmentSession.id == record_id).with_for_update())
    outcomes = []

    def report() -> None:
        with app.app_context():
            try:
                treatments.record_adverse_event(db.session.get(User, reporter_id), session_id=record_id,
                                                type="necrosis", severity="severe")
                outcomes.append("recorded")
            except DomainError as exc:
                db.session.rollback()
                outcomes.append(exc.message)

    thread = threading.Thread(target=report)
    thread.start()
    time.sleep(0.5)  # the event has read the session by now, unless it waits for the lock
    voids.void_session(practitioner, record_id, reason_code="entered_in_error", reason="entered in error")
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert outcomes and "voided" in outcomes[0], outcomes
    db.session.expire_all()
    assert db.session.scalar(sa.select(sa.func.count(AdverseEvent.id))) == 0
