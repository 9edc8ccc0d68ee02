"""Recall outcomes per patient: attempts, outcomes, closing; pages and API."""

import pytest
import sqlalchemy as sa
from testkit import PASSWORD, bearer, sign_in

from compounding.extensions import db
from compounding.models import Recall, RecallContact, TreatmentSession
from compounding.services import recalls, treatments, voids
from compounding.services.errors import InvalidInput, InvalidState, NotAllowed


def use(batch, volume="2"):
    return {"batch_code": batch.code, "volume_ml": volume, "area": "face"}


@pytest.fixture
def recalled(practitioner, pharmacist, make_batch, make_patient):
    """An open recall on a batch two patients received; a third patient got another batch."""
    batch = make_batch(units=2)
    first, second, stranger = make_patient(), make_patient(), make_patient()
    sessions = [treatments.record_session(practitioner, patient_id=p.id, uses=[use(batch)]) for p in (first, second)]
    treatments.record_session(practitioner, patient_id=stranger.id, uses=[use(make_batch())])
    recall = recalls.open_recall(pharmacist, batch_id=batch.id, reason="Cloudy vial", password=PASSWORD)
    return {"batch": batch, "first": first, "second": second, "stranger": stranger, "sessions": sessions,
            "recall": recall}


def contacts() -> list[tuple]:
    return db.session.execute(sa.select(RecallContact.patient_id, RecallContact.outcome, RecallContact.method)
                              .order_by(RecallContact.id)).all()


def test_a_recall_is_not_closed_with_one_of_two_patients_contacted(recalled, pharmacist, practitioner):
    recall = recalled["recall"]
    recalls.record_contact(practitioner, recall.id, recalled["first"].id, "phone")
    with pytest.raises(InvalidState) as caught:
        recalls.close_recall(pharmacist, recall.id, "All reviewed", PASSWORD)
    assert "1 patient in the recall's scope has no outcome yet" in caught.value.message
    db.session.rollback()
    assert db.session.get(Recall, recall.id).status == "open"
    recalls.record_contact(practitioner, recall.id, recalled["second"].id, "letter")
    recalls.close_recall(pharmacist, recall.id, "All reviewed", PASSWORD)
    assert db.session.get(Recall, recall.id).status == "closed"


def test_a_failed_attempt_is_no_outcome_and_the_latest_final_outcome_counts(recalled, practitioner):
    recall, first = recalled["recall"], recalled["first"]
    recalls.record_contact(practitioner, recall.id, first.id, "phone", outcome="attempt_failed")
    assert recalls.patients_without_outcome(recall) == 2
    recalls.record_contact(practitioner, recall.id, first.id, None, outcome="declined")
    recalls.record_contact(practitioner, recall.id, first.id, "phone", "called back", outcome="reached")
    assert recalls.patients_without_outcome(recall) == 1
    from compounding.queries.recalls import recall_record

    record = recall_record(recall.id)
    assert record.contacts[first.id].outcome == "reached"
    assert [row.outcome for row in record.attempts[first.id]] == ["attempt_failed", "declined", "reached"]
    assert record.progress == {"contacted": 1, "total": 2}


@pytest.mark.parametrize("outcome", ["reached", "attempt_failed"])
def test_reached_and_a_failed_attempt_need_the_method(recalled, practitioner, outcome):
    with pytest.raises(InvalidInput) as caught:
        recalls.record_contact(practitioner, recalled["recall"].id, recalled["first"].id, None, outcome=outcome)
    assert caught.value.field == "method"
    with pytest.raises(InvalidInput):
        recalls.record_contact(practitioner, recalled["recall"].id, recalled["first"].id, "phone", outcome="maybe")


def test_unreachable_only_after_the_minimum_of_failed_attempts(recalled, practitioner):
    recall, first = recalled["recall"], recalled["first"]
    recalls.record_contact(practitioner, recall.id, first.id, "phone", outcome="attempt_failed")
    with pytest.raises(InvalidState) as caught:
        recalls.record_contact(practitioner, recall.id, first.id, None, outcome="unreachable")
    assert "2 failed attempts" in caught.value.message and "1 so far" in caught.value.message
    db.session.rollback()
    # Another patient's attempts do not count for this one.
    recalls.record_contact(practitioner, recall.id, recalled["second"].id, "phone", outcome="attempt_failed")
    with pytest.raises(InvalidState):
        recalls.record_contact(practitioner, recall.id, first.id, None, outcome="unreachable")
    db.session.rollback()
    recalls.record_contact(practitioner, recall.id, first.id, "email", outcome="attempt_failed")
    recalls.record_contact(practitioner, recall.id, first.id, None, "two calls, one e-mail", outcome="unreachable")
    assert contacts()[-1] == (first.id, "unreachable", None)


@pytest.mark.parametrize("config_overrides", [{"RECALL_MIN_ATTEMPTS": 3}], indirect=True)
def test_the_minimum_of_failed_attempts_is_a_setting(recalled, practitioner):
    recall, first = recalled["recall"], recalled["first"]
    for _ in range(2):
        recalls.record_contact(practitioner, recall.id, first.id, "phone", outcome="attempt_failed")
    with pytest.raises(InvalidState, match="3 failed attempts"):
        recalls.record_contact(practitioner, recall.id, first.id, None, outcome="unreachable")


def test_not_exposed_is_a_pharmacists_signature(recalled, practitioner, pharmacist):
    recall, first = recalled["recall"], recalled["first"]
    voids.void_session(pharmacist, recalled["sessions"][0].id, reason_code="entered_in_error",
                       reason="typed on the wrong chart", password=PASSWORD)
    with pytest.raises(NotAllowed):
        recalls.record_contact(practitioner, recall.id, first.id, None, outcome="not_exposed", password=PASSWORD)
    db.session.rollback()
    recalls.record_contact(pharmacist, recall.id, first.id, None, "never treated here", outcome="not_exposed",
                           password=PASSWORD)
    assert contacts() == [(first.id, "not_exposed", None)]


def test_not_exposed_is_refused_while_the_patient_received_the_stock_in_a_session_that_stands(
        recalled, pharmacist):
    recall, first = recalled["recall"], recalled["first"]
    with pytest.raises(InvalidState) as caught:
        recalls.record_contact(pharmacist, recall.id, first.id, None, outcome="not_exposed", password=PASSWORD)
    assert "session that stands" in caught.value.message and caught.value.field == "outcome"
    db.session.rollback()
    assert contacts() == [] and recalls.patients_without_outcome(recall) == 2
    voids.void_session(pharmacist, recalled["sessions"][0].id, reason_code="entered_in_error",
                       reason="never treated with this batch", password=PASSWORD)
    recalls.record_contact(pharmacist, recall.id, first.id, None, outcome="not_exposed", password=PASSWORD)
    assert contacts() == [(first.id, "not_exposed", None)]


def test_a_patient_outside_the_scope_gets_no_outcome_and_nothing_changes(recalled, practitioner):
    for patient_id in (recalled["stranger"].id, 999999):
        with pytest.raises(InvalidInput, match="not in the recall"):
            recalls.record_contact(practitioner, recalled["recall"].id, patient_id, "phone")
        db.session.rollback()
    assert contacts() == []


def _late_entry_after_an_outcome(practitioner, pharmacist, make_batch, make_patient):
    """A patient reached in a recall that then closed; a session of theirs, performed before it, entered now."""
    batch, patient = make_batch(units=2), make_patient(chart_number="CH-LATE")
    first = treatments.record_session(practitioner, patient_id=patient.id, uses=[use(batch)])
    recall = recalls.open_recall(pharmacist, batch_id=batch.id, reason="Cloudy vial", password=PASSWORD)
    recalls.record_contact(practitioner, recall.id, patient.id, "phone")
    recalls.close_recall(pharmacist, recall.id, "Everyone reached", PASSWORD)
    treatments.record_session(practitioner, patient_id=patient.id, uses=[use(batch)],
                              performed_at=first.performed_at + (recall.opened_at - first.performed_at) / 2)
    return db.session.get(Recall, recall.id), patient


def test_a_late_entry_needs_a_new_outcome_for_a_patient_reached_before_it_was_recorded(
        client, practitioner, pharmacist, make_batch, make_patient):
    from compounding.queries.recalls import progress_for, recall_record

    recall, patient = _late_entry_after_an_outcome(practitioner, pharmacist, make_batch, make_patient)
    assert recall.status == "open" and recalls.patients_without_outcome(recall) == 1
    record = recall_record(recall.id)
    assert record.progress == {"contacted": 0, "total": 1} and record.without_outcome == 1
    assert patient.id not in record.contacts and record.patients[0]["outcome"] is None
    assert recalls.contact_progress(recall, record.scope) == (0, 1) and progress_for([recall.id]) == {recall.id: (0, 1)}
    with pytest.raises(InvalidState, match="1 patient in the recall's scope has no outcome yet"):
        recalls.close_recall(pharmacist, recall.id, "Everyone reached", PASSWORD)
    db.session.rollback()
    sign_in(client, pharmacist)
    page = client.get(f"/recalls/{recall.id}").get_data(as_text=True)
    assert "1 patient has no outcome yet" in page and "<strong>0 of 1</strong>" in page
    recalls.record_contact(practitioner, recall.id, patient.id, "phone", "told about the second session")
    assert recalls.patients_without_outcome(recall) == 0 and progress_for([recall.id]) == {recall.id: (1, 1)}
    recalls.close_recall(pharmacist, recall.id, "Everyone reached again", PASSWORD)
    assert db.session.get(Recall, recall.id).status == "closed"


def test_closing_a_recall_locks_it_before_counting_the_patients_without_an_outcome(recalled, pharmacist,
                                                                                 practitioner):
    from testkit import QueryCounter

    if db.engine.dialect.name == "sqlite":
        pytest.skip("SQLite locks the whole database; the row lock is PostgreSQL's")
    recall = recalled["recall"]
    for patient in (recalled["first"], recalled["second"]):
        recalls.record_contact(practitioner, recall.id, patient.id, "phone")
    with QueryCounter(db.engine) as counter:
        recalls.close_recall(pharmacist, recall.id, "All reached", PASSWORD)
    locked = [i for i, sql in enumerate(counter.statements) if "FROM recalls" in sql and "FOR UPDATE" in sql]
    counted = [i for i, sql in enumerate(counter.statements) if "recall_contacts" in sql]
    assert locked and counted and locked[0] < counted[0]


# --- API ---------------------------------------------------------------------------------------------


def test_the_contacts_api_records_outcomes_and_answers_the_contract_codes(client, recalled, make_user,
                                                                          make_token):
    url = f"/api/v1/recalls/{recalled['recall'].id}"
    staff = bearer(make_token(make_user("technician")))
    first, second = recalled["first"].id, recalled["second"].id
    reached = client.post(f"{url}/contacts", json={"patient_id": first, "method": "phone"}, headers=staff)
    assert reached.status_code == 201 and reached.json["outcome"] == "reached"
    assert client.post(f"{url}/contacts", json={"patient_id": second}, headers=staff).status_code == 422
    early = client.post(f"{url}/contacts", json={"patient_id": second, "outcome": "unreachable"}, headers=staff)
    assert early.status_code == 409 and early.json["details"]["failed_attempts"] == 0
    stranger = client.post(f"{url}/contacts", json={"patient_id": recalled["stranger"].id, "method": "phone"},
                           headers=staff)
    assert stranger.status_code == 422 and "patient_id" in stranger.json["details"]
    pharmacist = make_user("pharmacist")
    standing = client.post(f"{url}/contacts", json={"patient_id": second, "outcome": "not_exposed",
                                                    "password": PASSWORD}, headers=bearer(make_token(pharmacist)))
    assert standing.status_code == 409 and "session that stands" in standing.json["error"]
    voids.void_session(pharmacist, recalled["sessions"][1].id, reason_code="entered_in_error",
                       reason="never treated with this batch", password=PASSWORD)
    unsigned = client.post(f"{url}/contacts", json={"patient_id": second, "outcome": "not_exposed"}, headers=staff)
    assert unsigned.status_code == 403
    signed = client.post(f"{url}/contacts", json={"patient_id": second, "outcome": "not_exposed",
                                                  "password": PASSWORD},
                         headers=bearer(make_token(pharmacist)))
    assert signed.status_code == 201 and signed.json["method"] is None
    assert signed.json["progress"] == {"contacted": 2, "total": 2}
    closed = client.post(f"{url}/close", json={"outcome": "Done", "password": PASSWORD},
                         headers=bearer(make_token(pharmacist)))
    assert closed.status_code == 200 and "not exposed" in [s["meaning"] for s in closed.json["signatures"]]


def test_the_void_api_asks_a_pharmacist_to_sign_in_an_open_recall(client, recalled, practitioner, make_user,
                                                                  make_token):
    session_id = recalled["sessions"][0].id
    url = f"/api/v1/treatment-sessions/{session_id}/void"
    body = {"reason_code": "entered_in_error", "reason": "typed on the wrong day"}
    refused = client.post(url, json=body, headers=bearer(make_token(practitioner)))
    assert refused.status_code == 403 and "a pharmacist must sign" in refused.json["error"]
    pharmacist = bearer(make_token(make_user("pharmacist")))
    assert client.post(url, json={**body, "password": "wrong-password-1"}, headers=pharmacist).status_code == 403
    assert db.session.get(TreatmentSession, session_id).voided_at is None
    voided = client.post(url, json={**body, "password": PASSWORD}, headers=pharmacist)
    assert voided.status_code == 200 and voided.json["void_code"] == "entered_in_error"
    again = client.post(url, json={**body, "password": PASSWORD}, headers=pharmacist)
    assert again.status_code == 409
    scope = client.get(f"/api/v1/recalls/{recalled['recall'].id}", headers=pharmacist).json
    assert scope["counts"]["patients"] == 2 and scope["voided_sessions"] == 1
    assert {s["id"]: s["voided"] for s in scope["sessions"]}[session_id] is True


def test_the_correction_api_moves_the_session_and_marks_the_wrong_patient_not_exposed(
        client, recalled, make_user, make_token, make_patient, practitioner):
    old = recalled["sessions"][0]
    right = make_patient()
    url = f"/api/v1/treatment-sessions/{old.id}/correct-patient"
    body = {"patient_id": right.id, "reason": "wrong chart picked", "password": PASSWORD}
    assert client.post(url, json=body, headers=bearer(make_token(practitioner))).status_code == 403
    assert client.post(url, json={"patient_id": right.id}, headers=bearer(make_token(practitioner))
                       ).status_code == 422
    pharmacist = bearer(make_token(make_user("pharmacist")))
    moved = client.post(url, json=body, headers=pharmacist)
    assert moved.status_code == 201
    assert moved.json["patient_id"] == right.id and moved.json["corrects_session_id"] == old.id
    assert [u["volume_ml"] for u in moved.json["uses"]] == ["2"]
    old_answer = client.get(f"/api/v1/treatment-sessions/{old.id}", headers=pharmacist).json
    assert old_answer["void_code"] == "wrong_patient"
    recall = client.get(f"/api/v1/recalls/{recalled['recall'].id}", headers=pharmacist).json
    outcomes = {p["id"]: p["outcome"] for p in recall["patients"]}
    assert outcomes == {recalled["first"].id: "not_exposed", recalled["second"].id: None, right.id: None}
    assert client.post(url, json=body, headers=pharmacist).status_code == 409


# --- pages -----------------------------------------------------------------------------------------------


def test_the_session_page_refuses_a_practitioners_void_in_a_recall_with_a_message(client, recalled, practitioner):
    session_id = recalled["sessions"][0].id
    sign_in(client, practitioner)
    page = client.get(f"/treatments/sessions/{session_id}").get_data(as_text=True)
    assert "A pharmacist must sign this void" in page and 'id="correct-form"' not in page
    refused = client.post(f"/treatments/sessions/{session_id}/void",
                          data={"void-reason_code": "duplicate", "void-reason": "twice"})
    assert refused.status_code == 422 and "a pharmacist must sign" in refused.get_data(as_text=True)
    assert db.session.get(TreatmentSession, session_id).voided_at is None


def test_a_pharmacist_corrects_the_patient_from_the_session_page(client, recalled, pharmacist, make_patient):
    old, right = recalled["sessions"][0], make_patient()
    sign_in(client, pharmacist)
    page = client.get(f"/treatments/sessions/{old.id}").get_data(as_text=True)
    assert 'id="correct-form"' in page
    unknown = client.post(f"/treatments/sessions/{old.id}/correct-patient",
                          data={"correct-chart_number": "NOBODY", "correct-reason": "x", "correct-password": PASSWORD})
    assert unknown.status_code == 422 and "No patient has this chart number." in unknown.get_data(as_text=True)
    moved = client.post(f"/treatments/sessions/{old.id}/correct-patient",
                        data={"correct-chart_number": right.chart_number, "correct-reason": "wrong chart",
                              "correct-password": PASSWORD}, follow_redirects=True)
    page = moved.get_data(as_text=True)
    assert moved.status_code == 200 and "Patient corrected" in page and f"session #{old.id}" in page
    old_page = client.get(f"/treatments/sessions/{old.id}").get_data(as_text=True)
    assert "(wrong patient): wrong chart." in old_page  # the void code, then the reason the pharmacist gave
    recall_page = client.get(f"/recalls/{recalled['recall'].id}").get_data(as_text=True)
    assert "Not exposed</span>" in recall_page and "voided</span>" in recall_page


def test_the_correction_form_finds_the_patient_by_chart_number_in_any_case_and_spacing(
        client, recalled, pharmacist, make_patient):
    old, right = recalled["sessions"][0], make_patient(chart_number="CH-2001")
    sign_in(client, pharmacist)
    moved = client.post(f"/treatments/sessions/{old.id}/correct-patient",
                        data={"correct-chart_number": " ch-2001 ", "correct-reason": "wrong chart",
                              "correct-password": PASSWORD})
    assert moved.status_code == 302
    new = db.session.scalar(sa.select(TreatmentSession).where(TreatmentSession.corrects_session_id == old.id))
    assert new.patient_id == right.id


def test_the_recall_page_records_a_failed_attempt_then_unreachable(client, recalled, practitioner):
    recall, first = recalled["recall"], recalled["first"].id
    sign_in(client, practitioner)
    url = f"/recalls/{recall.id}/contacts/{first}"
    early = client.post(url, data={f"contact-{first}-outcome": "unreachable"})
    assert early.status_code == 422 and "only after 2 failed attempts" in early.get_data(as_text=True)
    for method in ("phone", "email"):
        assert client.post(url, data={f"contact-{first}-outcome": "attempt_failed",
                                      f"contact-{first}-method": method}).status_code == 302
    assert client.post(url, data={f"contact-{first}-outcome": "unreachable"}).status_code == 302
    page = client.get(f"/recalls/{recall.id}").get_data(as_text=True)
    assert "Unreachable</span>" in page and page.count("Attempt failed</span>") == 2
    assert "1 patient has no outcome yet" in page
    report = client.get(f"/recalls/{recall.id}/report").get_data(as_text=True)
    assert "Unreachable</span>" in report and report.count("Attempt failed</span>") == 2


def test_voiding_a_session_with_an_event_through_the_service_keeps_it_on_the_patient_page(
        client, recalled, pharmacist):
    session_row, patient = recalled["sessions"][1], recalled["second"]
    treatments.record_adverse_event(pharmacist, session_id=session_row.id, type="bruising", severity="mild",
                                    notes="bruise at the left cheek")
    voids.void_session(pharmacist, session_row.id, reason_code="not_administered", reason="refused at the chair",
                       password=PASSWORD)
    sign_in(client, pharmacist)
    page = client.get(f"/treatments/patients/{patient.id}").get_data(as_text=True)
    events = page.split("Adverse events</h2>")[1]
    assert "bruise at the left cheek" in events and "None recorded." not in events
    assert f'href="/treatments/sessions/{session_row.id}"' in events


def test_the_demo_has_a_recall_with_a_patient_unreachable_after_two_failed_attempts(app):
    from compounding.demo import DEMO_RECALL_REASON, seed_demo
    from compounding.models import Patient

    for _ in range(2):  # idempotent
        for _ in seed_demo():
            pass
    recall = db.session.scalars(sa.select(Recall).where(Recall.reason == DEMO_RECALL_REASON)).one()
    unreachable = db.session.scalar(sa.select(Patient.id).where(Patient.chart_number == "CH-1004"))
    rows = db.session.scalars(sa.select(RecallContact.outcome).where(
        RecallContact.recall_id == recall.id, RecallContact.patient_id == unreachable)
        .order_by(RecallContact.id)).all()
    assert rows == ["attempt_failed", "attempt_failed", "unreachable"]
    assert recalls.patients_without_outcome(recall) == 0 and recall.status == "open"
