"""Technicians get chart numbers only, and every look at patient data is logged."""

import io
from datetime import timedelta

import pytest
import sqlalchemy as sa
from openpyxl import load_workbook
from testkit import PASSWORD, QueryCounter, bearer, sign_in_session

from compounding.extensions import db
from compounding.models import BatchComponent, PatientAccess
from compounding.services import recalls, treatments, users
from compounding.services.clock import clinic_today

NAME, PHONE, EMAIL, BORN = "Ana Núñez", "+44 7700 900123", "ana.nunez@example.org", "1985-04-23"
IDENTITY = (NAME, "Núñez", PHONE, "7700 900123", EMAIL, BORN)


@pytest.fixture
def treated(make_user, make_batch, make_patient):
    """One patient with a name, birth date and contacts, treated with one batch."""
    batch = make_batch()
    patient = make_patient(chart_number="CH-2001", name=NAME, phone=PHONE, email=EMAIL, birth_on=BORN)
    session_row = treatments.record_session(make_user("practitioner"), patient_id=patient.id,
                                            uses=[{"batch_code": batch.code, "volume_ml": "1.5"}])
    lot_id = db.session.scalar(sa.select(BatchComponent.lot_id).where(BatchComponent.batch_id == batch.id).limit(1))
    return {"batch": batch, "patient": patient, "session": session_row, "lot_id": lot_id}


@pytest.fixture
def recall(treated, make_user):
    return recalls.open_recall(make_user("pharmacist"), reason="Cloudy vials", password=PASSWORD,
                               batch_id=treated["batch"].id)


def page_as(client, user, url: str):
    sign_in_session(client, user)
    return client.get(url)


def shows_identity(text: str) -> list[str]:
    return [value for value in IDENTITY if value in text]


def workbook_text(data: bytes) -> str:
    book = load_workbook(io.BytesIO(data), read_only=True)
    return "\n".join(str(value) for ws in book.worksheets for row in ws.iter_rows(values_only=True)
                     for value in row if value is not None)


def access_rows() -> list[PatientAccess]:
    return list(db.session.scalars(sa.select(PatientAccess).order_by(PatientAccess.id)))


# --- what a technician sees -------------------------------------------------------------------------


def test_a_technician_opening_a_patient_sees_the_chart_number_but_no_name_birth_date_or_contacts(
        client, technician, treated):
    response = page_as(client, technician, f"/treatments/patients/{treated['patient'].id}")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "CH-2001" in page
    assert shows_identity(page) == []
    assert "Date of birth" not in page and "E-mail" not in page


def test_a_pharmacist_opening_the_same_patient_sees_who_it_is(client, pharmacist, treated):
    page = page_as(client, pharmacist, f"/treatments/patients/{treated['patient'].id}").get_data(as_text=True)
    assert {NAME, PHONE, EMAIL, BORN} <= set(shows_identity(page))


@pytest.mark.parametrize("url", ["/treatments/patients", "/treatments/patients?q=CH-2001", "/treatments/sessions",
                                 "/treatments/sessions/{session}", "/trace/batches/{batch}", "/trace/lots/{lot}",
                                 "/recalls/{recall}", "/recalls/{recall}/report"])
def test_no_page_a_technician_can_reach_shows_a_patient_s_identity(client, technician, treated, recall, url):
    url = url.format(session=treated["session"].id, batch=treated["batch"].id, lot=treated["lot_id"],
                     recall=recall.id)
    response = page_as(client, technician, url)
    assert response.status_code == 200, url
    page = response.get_data(as_text=True)
    assert shows_identity(page) == [], url
    if "patients" in url or "trace" in url or "recalls" in url:
        assert "CH-2001" in page, url


def test_a_technician_cannot_find_a_patient_by_name(client, technician, treated):
    page = page_as(client, technician, "/treatments/patients?q=nunez").get_data(as_text=True)
    assert "CH-2001" not in page and "No patient matches" in page
    assert "CH-2001" in page_as(client, technician, "/treatments/patients?q=ch-2001").get_data(as_text=True)


def test_the_api_answers_a_technician_null_for_name_birth_date_and_contacts(client, technician, treated, recall):
    headers = bearer(users.create_token(None, technician, "test"))
    patient_id = treated["patient"].id
    one = client.get(f"/api/v1/patients/{patient_id}", headers=headers).get_json()
    assert one["chart_number"] == "CH-2001"
    assert (one["name"], one["birth_date"], one["phone"], one["email"]) == (None, None, None, None)
    listed = client.get("/api/v1/patients", headers=headers).get_json()["items"][0]
    assert (listed["name"], listed["phone"], listed["email"], listed["birth_date"]) == (None, None, None, None)
    for url in (f"/api/v1/trace/batches/{treated['batch'].id}", f"/api/v1/trace/lots/{treated['lot_id']}",
                f"/api/v1/recalls/{recall.id}"):
        row = client.get(url, headers=headers).get_json()["patients"][0]
        assert row["chart_number"] == "CH-2001", url
        assert (row["name"], row["phone"], row["email"]) == (None, None, None), url


def test_the_api_answers_a_pharmacist_the_patient_s_identity(client, pharmacist, treated):
    headers = bearer(users.create_token(None, pharmacist, "test"))
    one = client.get(f"/api/v1/patients/{treated['patient'].id}", headers=headers).get_json()
    assert (one["name"], one["birth_date"], one["phone"], one["email"]) == (NAME, BORN, PHONE, EMAIL)
    row = client.get(f"/api/v1/trace/batches/{treated['batch'].id}", headers=headers).get_json()["patients"][0]
    assert (row["name"], row["phone"], row["email"]) == (NAME, PHONE, EMAIL)


def test_a_technician_s_trace_and_recall_workbooks_hold_chart_numbers_only(client, technician, pharmacist,
                                                                           treated, recall):
    for url in (f"/exports/trace/batches/{treated['batch'].id}.xlsx", f"/exports/trace/lots/{treated['lot_id']}.xlsx",
                f"/exports/recalls/{recall.id}.xlsx"):
        response = page_as(client, technician, url)
        assert response.status_code == 200, url
        text = workbook_text(response.data)
        assert "CH-2001" in text and shows_identity(text) == [], url
        header = next(load_workbook(io.BytesIO(response.data), read_only=True)["Patients"].iter_rows(values_only=True))
        assert "Name" not in header and "Phone" not in header and "E-mail" not in header
        assert PHONE in workbook_text(page_as(client, pharmacist, url).data), url


def test_a_technician_cannot_download_the_sessions_workbook_that_the_exports_page_refuses_them(
        client, technician, treated):
    assert page_as(client, technician, "/exports/").status_code == 403
    assert page_as(client, technician, "/exports/sessions.xlsx").status_code == 403


# --- the access log ---------------------------------------------------------------------------------


def test_opening_a_patient_writes_one_access_row_saying_who_when_and_which_patient(client, technician, treated):
    before = clinic_today()
    page_as(client, technician, f"/treatments/patients/{treated['patient'].id}")
    [row] = access_rows()
    assert (row.user_id, row.user_name, row.role) == (technician.id, technician.display_name, "technician")
    assert (row.action, row.patient_id) == ("patient.view", treated["patient"].id)
    assert row.detail == f"/treatments/patients/{treated['patient'].id}"
    assert row.occurred_at.date() >= before - timedelta(days=1)


@pytest.mark.parametrize(("url", "action", "target"), [
    ("/trace/batches/{batch}", "trace.batch", "batch"),
    ("/exports/trace/batches/{batch}.xlsx", "export.trace", "batch"),
    ("/recalls/{recall}", "recall.view", "recall"),
    ("/exports/recalls/{recall}.xlsx", "export.recall", "recall"),
    ("/api/v1/trace/batches/{batch}", "trace.batch", "batch"),
])
def test_a_trace_recall_or_export_writes_one_row_naming_it_and_its_target(client, pharmacist, treated, recall,
                                                                          url, action, target):
    url = url.format(batch=treated["batch"].id, recall=recall.id)
    sign_in_session(client, pharmacist)
    assert client.get(url).status_code == 200
    [row] = access_rows()
    assert (row.action, row.target_type, row.patient_id) == (action, target, None)
    assert row.target_id == (treated["batch"].id if target == "batch" else recall.id)


@pytest.mark.parametrize("url", ["/audit?entity_type=patient", "/api/v1/audit-events?entity_type=patient"])
def test_the_audit_trail_showing_patient_snapshots_writes_one_access_row(client, make_user, treated, url):
    auditor = make_user("auditor")
    shown = page_as(client, auditor, url)
    assert shown.status_code == 200 and PHONE in shown.get_data(as_text=True)
    [row] = access_rows()
    assert (row.user_id, row.action, row.target_type, row.patient_id) == (auditor.id, "audit.view", "audit", None)
    assert row.detail == url


def test_a_list_of_many_patients_writes_one_row_not_one_per_patient(client, pharmacist, make_patient):
    for _ in range(12):
        make_patient()
    page_as(client, pharmacist, "/treatments/patients?q=CH")
    assert [(row.action, row.detail) for row in access_rows()] == [("patient.list", "/treatments/patients?q=CH")]


def test_a_refused_or_missing_request_writes_no_row(client, make_user, treated):
    page_as(client, make_user("technician"), "/exports/sessions.xlsx")
    page_as(client, make_user("pharmacist"), "/treatments/patients/999999")
    assert access_rows() == []


def test_the_access_log_costs_one_statement_whatever_the_page_shows(client, pharmacist, make_patient):
    sign_in_session(client, pharmacist)
    client.get("/treatments/patients")  # warm-up
    with QueryCounter(db.engine) as counter:
        client.get("/treatments/patients")
    inserts = [s for s in counter.statements if s.lstrip().upper().startswith("INSERT")]
    assert len(inserts) == 1 and "patient_access_log" in inserts[0]


def test_an_auditor_reads_the_access_log_filtered_by_user_and_date(client, make_user, technician, pharmacist,
                                                                 treated):
    page_as(client, technician, f"/treatments/patients/{treated['patient'].id}")
    page_as(client, pharmacist, "/treatments/sessions")
    auditor = make_user("auditor")
    everyone = page_as(client, auditor, "/audit/patient-access").get_data(as_text=True)
    assert "patient.view" in everyone and "session.list" in everyone
    page = page_as(client, auditor, f"/audit/patient-access?user_id={technician.id}").get_data(as_text=True)
    assert "patient.view" in page and "session.list" not in page and "CH-2001" in page
    today = clinic_today()
    tomorrow = (today + timedelta(days=1)).isoformat()
    assert "No access matches" in page_as(client, auditor, f"/audit/patient-access?start={tomorrow}").get_data(
        as_text=True)
    assert "patient.view" in page_as(client, auditor, f"/audit/patient-access?end={today.isoformat()}").get_data(
        as_text=True)
    bad = page_as(client, auditor, "/audit/patient-access?start=yesterday")
    assert bad.status_code == 200 and "Use a date such as" in bad.get_data(as_text=True)
    assert page_as(client, technician, "/audit/patient-access").status_code == 403


def test_the_access_log_page_is_paginated(client, make_user, pharmacist):
    for _ in range(55):
        db.session.add(PatientAccess(user_id=pharmacist.id, user_name="P", role="pharmacist", action="patient.list",
                                     target_type="patients", detail="/treatments/patients"))
    db.session.commit()
    auditor = make_user("auditor")
    first = page_as(client, auditor, "/audit/patient-access").get_data(as_text=True)
    second = page_as(client, auditor, "/audit/patient-access?page=2").get_data(as_text=True)
    assert first.count("<td class=\"code\">patient.list</td>") == 50
    assert second.count("<td class=\"code\">patient.list</td>") == 5


def test_the_audit_workbook_has_a_patient_access_sheet(client, make_user, technician, treated):
    page_as(client, technician, f"/treatments/patients/{treated['patient'].id}")
    today = clinic_today().isoformat()
    response = page_as(client, make_user("auditor"), f"/exports/audit.xlsx?start={today}&end={today}")
    assert response.status_code == 200
    sheet = load_workbook(io.BytesIO(response.data), read_only=True)["Patient access"]
    rows = list(sheet.iter_rows(values_only=True))
    header = dict(zip(rows[0], rows[1], strict=True))
    assert (header["Who"], header["Role"], header["Action"]) == (technician.display_name, "technician",
                                                                 "patient.view")
    assert header["Patient chart"] == "CH-2001"
