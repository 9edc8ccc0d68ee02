"""Answers with patient data: each one logged, none kept in a cache or a cookie.

Also HSTS behind TLS, so a browser never sends the session over plain HTTP again.
"""

import base64
import json
import zlib

import pytest
import sqlalchemy as sa
from testkit import PASSWORD, sign_in, sign_in_session

from compounding.extensions import db
from compounding.models import BatchComponent, PatientAccess, TreatmentSession
from compounding.services import recalls, treatments
from compounding.services.clock import clinic_today

CHART, NAME, BORN = "CH-7001", "Ana Núñez", "1985-04-23"
HSTS = "max-age=31536000; includeSubDomains"


@pytest.fixture
def treated(make_user, make_batch, make_patient):
    batch = make_batch()
    practitioner = make_user("practitioner")
    patient = make_patient(chart_number=CHART, name=NAME, birth_on=BORN, phone="+44 7700 900123")
    session_row = treatments.record_session(practitioner, patient_id=patient.id,
                                            uses=[{"batch_code": batch.code, "volume_ml": "1.5"}])
    event = treatments.record_adverse_event(practitioner, session_id=session_row.id, type="redness", severity="mild")
    recall = recalls.open_recall(make_user("pharmacist"), reason="Cloudy vials", password=PASSWORD,
                                 batch_id=batch.id)
    lot_id = db.session.scalar(sa.select(BatchComponent.lot_id).where(BatchComponent.batch_id == batch.id).limit(1))
    return {"batch": batch, "patient": patient, "session": session_row, "event": event, "recall": recall,
            "lot_id": lot_id, "practitioner": practitioner}


def _url(template: str, treated) -> str:
    today = clinic_today().isoformat()
    return template.format(patient=treated["patient"].id, session=treated["session"].id, batch=treated["batch"].id,
                           lot=treated["lot_id"], recall=treated["recall"].id, event=treated["event"].id,
                           today=today)


def _text(response) -> str:
    data = response.data
    response.close()
    return data.decode("utf-8", errors="replace")


def _access_rows() -> list[PatientAccess]:
    return list(db.session.scalars(sa.select(PatientAccess).order_by(PatientAccess.id)))


# Every GET that answers patient data: pages, workbooks and the API.
PATIENT_READS = [
    "/treatments/patients", "/treatments/patients?q=ch-7001", "/treatments/patients/{patient}",
    "/treatments/patients/{patient}/edit", "/treatments/patients/{patient}/sessions/new", "/treatments/sessions",
    "/treatments/sessions/{session}", "/trace/batches/{batch}", "/trace/lots/{lot}", "/recalls/{recall}",
    "/recalls/{recall}/report", "/batches/{batch}", "/audit", "/audit?entity_type=patient",
    "/exports/trace/batches/{batch}.xlsx", "/exports/trace/lots/{lot}.xlsx", "/exports/recalls/{recall}.xlsx",
    "/exports/sessions.xlsx", "/exports/audit.xlsx?start={today}&end={today}",
    "/api/v1/patients", "/api/v1/patients/{patient}", "/api/v1/treatment-sessions",
    "/api/v1/treatment-sessions/{session}", "/api/v1/adverse-events", "/api/v1/adverse-events/{event}",
    "/api/v1/trace/batches/{batch}", "/api/v1/trace/lots/{lot}", "/api/v1/recalls/{recall}",
    "/api/v1/audit-events",
]


@pytest.mark.parametrize("url", PATIENT_READS)
def test_every_answer_with_patient_data_is_logged_once_and_marked_no_store(client, pharmacist, treated, url):
    sign_in_session(client, pharmacist)
    response = client.get(_url(url, treated))
    response.close()  # a workbook is streamed from a temporary file
    assert response.status_code == 200, url
    assert "no-store" in response.headers.get("Cache-Control", ""), url
    rows = _access_rows()
    assert [row.user_id for row in rows] == [pharmacist.id], url


def test_the_treatment_room_dashboard_listing_today_s_patients_is_logged_and_not_stored(client, treated):
    sign_in_session(client, treated["practitioner"])
    response = client.get("/")
    assert CHART in _text(response)
    assert "no-store" in response.headers["Cache-Control"]
    assert [row.action for row in _access_rows()] == ["dashboard.sessions"]


def test_the_patient_access_log_naming_charts_is_itself_logged(client, make_user, treated):
    sign_in_session(client, treated["practitioner"])
    client.get(f"/treatments/patients/{treated['patient'].id}")
    auditor = make_user("auditor")
    sign_in_session(client, auditor)
    response = client.get("/audit/patient-access")
    assert CHART in _text(response) and "no-store" in response.headers["Cache-Control"]
    assert [(row.user_id, row.action) for row in _access_rows()][-1] == (auditor.id, "access_log.view")


@pytest.mark.parametrize(("method", "url", "body", "status"), [
    ("POST", "/api/v1/patients", {"chart_number": "CH-7002", "name": "Bea Ortiz"}, 201),
    ("PATCH", "/api/v1/patients/{patient}", {"phone": "+44 7700 900999"}, 200),
    ("POST", "/api/v1/recalls/{recall}/contacts", {"patient_id": "{patient}", "method": "phone"}, 201),
    ("POST", "/api/v1/adverse-events", {"session_id": "{session}", "type": "pain", "severity": "mild"}, 201),
])
def test_an_api_change_answering_patient_data_is_logged_and_marked_no_store(client, pharmacist, treated, method,
                                                                            url, body, status):
    sign_in_session(client, pharmacist)
    body = {key: int(_url(value, treated)) if value.startswith("{") else value for key, value in body.items()}
    response = client.open(_url(url, treated), method=method, json=body)
    assert response.status_code == status, response.get_json()
    assert "no-store" in response.headers["Cache-Control"]
    assert [row.user_id for row in _access_rows()] == [pharmacist.id]


@pytest.mark.parametrize("url", ["/api/v1/patients/999999", "/api/v1/patients?q=" + "x" * 200,
                                 "/api/v1/treatment-sessions/999999", "/api/v1/recalls/999999"])
def test_patient_routes_are_not_stored_even_when_they_refuse(client, pharmacist, url):
    sign_in_session(client, pharmacist)
    response = client.get(url)
    assert response.status_code >= 400
    assert "no-store" in response.headers["Cache-Control"]


def test_stock_answers_of_the_api_may_still_be_cached_by_the_browser(client, pharmacist, make_batch):
    batch = make_batch()
    sign_in_session(client, pharmacist)
    assert "no-store" not in client.get(f"/api/v1/batches/{batch.id}").headers.get("Cache-Control", "")


# --- cookies ------------------------------------------------------------------------------------------


def _cookie_text(client) -> str:
    """What the browser's cookies hold, readable: Flask's session cookie is signed, not encrypted."""
    texts = []
    for cookie in client._cookies.values():
        value = cookie.value
        texts.append(value)
        payload = value[1:] if value.startswith(".") else value
        try:
            raw = base64.urlsafe_b64decode(payload.split(".")[0] + "==")
            raw = zlib.decompress(raw) if value.startswith(".") else raw
            texts.append(json.dumps(json.loads(raw), ensure_ascii=False))
        except (ValueError, zlib.error):
            pass  # not a Flask session cookie (an id only, or another cookie)
    return "\n".join(texts)


def _assert_no_patient_in_cookies(client, what: str) -> None:
    text = _cookie_text(client).casefold()
    for value in (CHART, "ch-7002", "CH-7003", "Núñez", "Bea Ortiz", BORN, "+44 7700 900123"):
        assert value.casefold() not in text, f"{value} in a cookie after {what}"


def test_the_cookie_check_sees_what_a_flask_session_cookie_holds(client, pharmacist):
    sign_in(client, pharmacist)
    with client.session_transaction() as state:
        state["probe"] = CHART
    with pytest.raises(AssertionError):
        _assert_no_patient_in_cookies(client, "a probe")


def test_no_cookie_carries_a_chart_number_name_or_birth_date_after_patient_work(client, make_user, make_batch,
                                                                               treated):
    practitioner, patient, batch = treated["practitioner"], treated["patient"], make_batch()
    pharmacist = make_user("pharmacist")
    sign_in(client, practitioner)
    steps = [
        ("search", "GET", "/treatments/patients?q=CH-7001", None),
        ("register", "POST", "/treatments/patients/new",
         {"chart_number": "CH-7002", "name": "Bea Ortiz", "birth_on": BORN}),
        ("edit", "POST", f"/treatments/patients/{patient.id}/edit",
         {"chart_number": CHART, "name": NAME, "birth_on": BORN, "phone": "+44 7700 900123"}),
        ("record a session", "POST", f"/treatments/patients/{patient.id}/sessions/new",
         {"practitioner_id": str(practitioner.id), "performed_at": "", "indication": "", "notes": "",
          "uses-0-batch_code": "", "uses-0-volume_ml": "", "uses-0-area": ""}),
        ("scan a chart number", "GET", "/scan/?code=CH-7001", None),
        ("scan a name", "GET", "/scan/?code=Ana+Núñez", None),
        ("open the patient", "GET", f"/treatments/patients/{patient.id}", None),
    ]
    for what, method, url, data in steps:
        client.open(url, method=method, data=data)
        _assert_no_patient_in_cookies(client, what)
    response = client.post(f"/treatments/patients/{patient.id}/sessions/new", data={
        "practitioner_id": str(practitioner.id), "performed_at": "", "indication": "", "notes": "",
        "uses-0-batch_code": batch.code, "uses-0-volume_ml": "0.5", "uses-0-area": ""})
    assert response.status_code == 302
    _assert_no_patient_in_cookies(client, "recording a session")
    new_session = db.session.scalar(sa.select(TreatmentSession.id).order_by(TreatmentSession.id.desc()).limit(1))
    assert client.post(f"/treatments/sessions/{new_session}/void",
                       data={"void-reason_code": "duplicate", "void-reason": "twice"}).status_code == 302
    _assert_no_patient_in_cookies(client, "a void")
    assert client.post(f"/treatments/sessions/{treated['session'].id}/adverse-events",
                       data={"event-type": "pain", "event-severity": "mild", "event-onset_on": ""}).status_code == 302
    _assert_no_patient_in_cookies(client, "an adverse event")
    client.post("/logout")
    sign_in(client, pharmacist)
    other = treatments.create_patient(pharmacist, {"chart_number": "CH-7003", "name": "Cy Roe"})
    response = client.post(f"/treatments/sessions/{treated['session'].id}/correct-patient",
                           data={"correct-chart_number": other.chart_number, "correct-reason": "wrong chart",
                                 "correct-password": PASSWORD})
    assert response.status_code == 302
    _assert_no_patient_in_cookies(client, "a patient correction")
    response = client.post(f"/recalls/{treated['recall'].id}/contacts/{other.id}",
                           data={f"contact-{other.id}-method": "phone", f"contact-{other.id}-outcome": "reached"})
    assert response.status_code == 302
    _assert_no_patient_in_cookies(client, "a recall contact")


# --- HSTS ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("config_overrides", [{"PREFERRED_URL_SCHEME": "https"}], indirect=True)
def test_behind_tls_every_answer_tells_the_browser_to_use_https_only(client, pharmacist):
    assert client.get("/login").headers["Strict-Transport-Security"] == HSTS
    sign_in_session(client, pharmacist)
    for url in ("/", "/api/v1/lots", "/treatments/patients"):
        assert client.get(url).headers["Strict-Transport-Security"] == HSTS, url


def test_over_plain_http_no_hsts_is_sent(client):
    assert "Strict-Transport-Security" not in client.get("/login").headers
