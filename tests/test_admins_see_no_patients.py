"""Admins manage accounts, not patients: no page, export or answer shows them one."""

import pytest
import sqlalchemy as sa
from testkit import PASSWORD, bearer, sign_in_session

from compounding.extensions import db
from compounding.models import BatchComponent, PatientAccess
from compounding.permissions import PERMISSIONS, role_can
from compounding.services import recalls, treatments, users

CHART, NAME, PHONE, BORN = "CH-7001", "Ana Núñez", "+44 7700 900123", "1985-04-23"


@pytest.fixture
def treated(make_user, make_batch, make_patient):
    """A patient treated with one batch, the batch recalled (its contact list names the patient)."""
    batch = make_batch()
    patient = make_patient(chart_number=CHART, name=NAME, phone=PHONE, birth_on=BORN)
    session_row = treatments.record_session(make_user("practitioner"), patient_id=patient.id,
                                            uses=[{"batch_code": batch.code, "volume_ml": "1.5"}])
    event = treatments.record_adverse_event(make_user("practitioner"), session_id=session_row.id, type="redness",
                                            severity="mild")
    pharmacist = make_user("pharmacist")
    recall = recalls.open_recall(pharmacist, reason="Cloudy vials", password=PASSWORD, batch_id=batch.id)
    recalls.record_contact(pharmacist, recall.id, patient.id, "phone")
    lot_id = db.session.scalar(sa.select(BatchComponent.lot_id).where(BatchComponent.batch_id == batch.id).limit(1))
    return {"batch": batch, "patient": patient, "session": session_row, "event": event, "recall": recall,
            "lot_id": lot_id}


@pytest.fixture
def admin(make_user):
    return make_user("admin")


def _url(template: str, treated) -> str:
    return template.format(patient=treated["patient"].id, session=treated["session"].id, batch=treated["batch"].id,
                           lot=treated["lot_id"], recall=treated["recall"].id, event=treated["event"].id,
                           batch_code=treated["batch"].code)


def _shows_patient(text: str) -> list[str]:
    return [value for value in (CHART, NAME, "Núñez", PHONE, BORN) if value in text]


def _text(response) -> str:
    """The answer as text (a workbook's bytes are compressed: it shows nothing readable)."""
    data = response.data
    response.close()  # a workbook is streamed from a temporary file
    return data.decode("utf-8", errors="replace")


def _access_rows() -> list[PatientAccess]:
    return list(db.session.scalars(sa.select(PatientAccess).order_by(PatientAccess.id)))


def test_the_permission_map_gives_admins_no_permission_over_patient_data():
    patient_permissions = {"patients.read", "patients.identify", "patients.write", "treatments.write",
                           "adverse_events.write", "recalls.contact", "patients.access_log"}
    assert patient_permissions <= set(PERMISSIONS)
    assert [p for p in patient_permissions if role_can("admin", p)] == []
    assert role_can("admin", "users.manage")


PATIENT_URLS = [
    "/treatments/", "/treatments/patients", "/treatments/patients?q=CH-7001", "/treatments/patients/{patient}",
    "/treatments/sessions", "/treatments/sessions/{session}", "/trace?code=x", "/trace/batches/{batch}",
    "/trace/lots/{lot}", "/recalls/{recall}", "/recalls/{recall}/report", "/audit/patient-access",
    "/exports/trace/batches/{batch}.xlsx", "/exports/trace/lots/{lot}.xlsx", "/exports/recalls/{recall}.xlsx",
    "/exports/sessions.xlsx", "/exports/audit.xlsx",
    "/api/v1/patients", "/api/v1/patients/{patient}", "/api/v1/treatment-sessions",
    "/api/v1/treatment-sessions/{session}", "/api/v1/adverse-events", "/api/v1/adverse-events/{event}",
    "/api/v1/trace/batches/{batch}", "/api/v1/trace/lots/{lot}", "/api/v1/recalls/{recall}",
]


@pytest.mark.parametrize("url", PATIENT_URLS)
def test_an_admin_is_refused_every_page_export_and_api_answer_about_patients(client, admin, treated, url):
    sign_in_session(client, admin)
    response = client.get(_url(url, treated))
    assert response.status_code == 403, url
    assert _shows_patient(_text(response)) == []
    assert _access_rows() == []


def test_an_admin_s_api_token_gets_no_patient_either(client, admin, treated):
    headers = bearer(users.create_token(None, admin, "test"))
    for url in ("/api/v1/patients", "/api/v1/treatment-sessions", f"/api/v1/recalls/{treated['recall'].id}"):
        assert client.get(url, headers=headers).status_code == 403, url


@pytest.mark.parametrize("url", ["/", "/batches/{batch}", "/lots/{lot}", "/recalls/", "/api/v1/recalls",
                                 "/api/v1/batches/{batch}", "/api/v1/quality-signals", "/batches/",
                                 "/exports/batches.xlsx", "/scan/?code={batch_code}"])
def test_an_admin_sees_stock_and_recall_pages_without_a_patient_on_them(client, admin, treated, url):
    sign_in_session(client, admin)
    response = client.get(_url(url, treated))
    assert response.status_code == 200, url
    assert _shows_patient(_text(response)) == [], url
    assert _access_rows() == []


def test_a_pharmacist_still_sees_the_charts_of_the_patients_a_batch_treated(client, pharmacist, treated):
    sign_in_session(client, pharmacist)
    assert CHART in client.get(f"/batches/{treated['batch'].id}").get_data(as_text=True)
    assert [row.action for row in _access_rows()] == ["batch.sessions"]


@pytest.mark.parametrize("url", ["/audit", "/audit?entity_type=patient", "/audit?entity_type=treatment_session",
                                 "/audit?entity_type=recall", "/api/v1/audit-events",
                                 "/api/v1/audit-events?entity_type=patient"])
def test_an_admin_reads_the_audit_trail_without_the_rows_about_patients(client, admin, treated, url):
    sign_in_session(client, admin)
    response = client.get(url)
    assert response.status_code == 200
    text = _text(response)
    assert _shows_patient(text) == []
    for action in ("patient.created", "session.recorded", "adverse_event.recorded", "recall.contact"):
        assert action not in text
    assert _access_rows() == []


def test_an_admin_still_reads_the_history_of_accounts_in_the_audit_trail(client, admin, treated):
    sign_in_session(client, admin)
    page = client.get(f"/audit?entity_type=user&entity_id={admin.id}").get_data(as_text=True)
    assert "user.created" in page
    actions = {item["action"] for item in client.get("/api/v1/audit-events?entity_type=recall").get_json()["items"]}
    assert "recall.opened" in actions and "recall.contact" not in actions


def test_an_auditor_reads_the_whole_audit_trail_and_the_look_is_logged(client, make_user, treated):
    auditor = make_user("auditor")
    sign_in_session(client, auditor)
    assert PHONE in client.get("/audit?entity_type=patient").get_data(as_text=True)
    assert [(row.user_id, row.action) for row in _access_rows()] == [(auditor.id, "audit.view")]
