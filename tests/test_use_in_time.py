"""A use is judged at its time against the status history; late entries join recalls."""

from datetime import timedelta

import pytest
import sqlalchemy as sa
from testkit import PASSWORD, age_batch, bearer, sign_in

from compounding.extensions import db
from compounding.models import Batch, Recall, TreatmentSession
from compounding.services import batches, recalls, treatments, users
from compounding.services.clock import utcnow
from compounding.services.errors import InvalidState, NotAllowed, SignatureRejected
from compounding.services.trace import trace_batch


def use(batch, volume="2"):
    return {"batch_code": batch.code, "volume_ml": volume, "area": "abdomen"}


@pytest.fixture
def practitioner(make_user):
    return make_user("practitioner")


def _between(start, end):
    return start + (end - start) / 2


def _recalled_after_use(make_batch, pharmacist):
    """A released batch, then recalled: returns it and an instant between release and recall."""
    batch = make_batch()
    recall = recalls.open_recall(pharmacist, reason="supplier alert", password=PASSWORD, batch_id=batch.id)
    return db.session.get(Batch, batch.id), recall, _between(batch.verified_at, recall.opened_at)


def test_a_session_performed_before_a_recall_but_entered_after_it_is_accepted(
        practitioner, pharmacist, make_batch, make_patient):
    batch, recall, before_recall = _recalled_after_use(make_batch, pharmacist)
    patient = make_patient()
    session_row = treatments.record_session(practitioner, patient_id=patient.id, uses=[use(batch)],
                                            performed_at=before_recall)
    assert session_row.performed_at == before_recall
    # The scope is computed from the links: the patient is in the recall at once.
    scope = recalls.recall_scope(db.session.get(Recall, recall.id), per_page=None)
    assert patient.id in [row.id for row in scope.patients]
    assert db.session.get(Batch, batch.id).status == "recalled"


def test_a_session_performed_after_the_recall_opened_is_still_refused(
        practitioner, pharmacist, make_batch, make_patient):
    batch, recall, _ = _recalled_after_use(make_batch, pharmacist)
    with pytest.raises(InvalidState) as caught:
        treatments.record_session(practitioner, patient_id=make_patient().id, uses=[use(batch)],
                                  performed_at=_between(recall.opened_at, utcnow()))
    assert "recalled" in caught.value.message


def test_a_session_dated_before_the_batch_was_verified_is_refused(practitioner, make_batch, make_user,
                                                                   make_patient):
    batch = make_batch(release=False)
    batches.verify_batch(make_user("pharmacist"), batch.id, PASSWORD)
    batch = db.session.get(Batch, batch.id)
    with pytest.raises(InvalidState) as caught:
        treatments.record_session(practitioner, patient_id=make_patient().id, uses=[use(batch)],
                                  performed_at=_between(batch.compounded_at, batch.verified_at))
    assert "not verified yet at that time" in caught.value.message
    assert db.session.scalar(sa.select(sa.func.count(TreatmentSession.id))) == 0


def test_a_late_entry_reopens_a_closed_recall_with_history_and_audit(
        practitioner, pharmacist, make_batch, make_patient, client):
    batch, recall, before_recall = _recalled_after_use(make_batch, pharmacist)
    recalls.close_recall(pharmacist, recall.id, "no patient reached", PASSWORD)
    late = treatments.record_session(practitioner, patient_id=make_patient(chart_number="CH-LATE").id,
                                     uses=[use(batch)], performed_at=before_recall)
    recall = db.session.get(Recall, recall.id)
    assert recall.status == "open" and recall.closed_at is None
    from compounding.services.history import history_of
    assert [(r.from_status, r.to_status) for r in history_of("recall", recall.id)] == [
        (None, "open"), ("open", "closed"), ("closed", "open")]
    from testkit import audit_rows
    assert audit_rows("recall.reopened", "recall", recall.id)[0].new_values["session_id"] == late.id
    sign_in(client, pharmacist)
    page = client.get(f"/recalls/{recall.id}").get_data(as_text=True)
    assert "Reopened" in page and "recorded after the recall opened" in page and "CH-LATE" in page


def test_the_recall_export_flags_sessions_recorded_after_the_recall_opened(
        practitioner, pharmacist, make_batch, make_patient, client):
    from io import BytesIO

    from openpyxl import load_workbook

    batch, recall, before_recall = _recalled_after_use(make_batch, pharmacist)
    late = treatments.record_session(practitioner, patient_id=make_patient().id, uses=[use(batch)],
                                     performed_at=before_recall)
    sign_in(client, pharmacist)
    book = load_workbook(BytesIO(client.get(f"/exports/recalls/{recall.id}.xlsx").data))
    sheet = book["Sessions"]
    header = [c.value for c in sheet[1]]
    assert "Recorded after the recall opened" in header
    row = next(r for r in sheet.iter_rows(min_row=2, values_only=True) if r[0] == late.id)
    assert row[header.index("Recorded after the recall opened")] == "yes"


def test_a_session_entered_in_time_is_not_flagged_late(practitioner, pharmacist, make_batch, make_patient):
    from compounding.queries.recalls import recall_record

    batch = make_batch()
    in_time = treatments.record_session(practitioner, patient_id=make_patient().id, uses=[use(batch)])
    recall = recalls.open_recall(pharmacist, reason="alert", password=PASSWORD, batch_id=batch.id)
    assert recall_record(recall.id).late_sessions == {}
    assert in_time.id in [s.id for s in trace_batch(batch.id, per_page=None).sessions]


# --- back-dating beyond BACKDATE_HOURS --------------------------------------------------------------


def test_back_dating_beyond_the_limit_needs_a_pharmacist_signature(practitioner, make_user, make_batch,
                                                                    make_patient):
    batch = make_batch()
    age_batch(batch, timedelta(hours=100))
    then = utcnow() - timedelta(hours=80)
    patient = make_patient()
    with pytest.raises(NotAllowed):
        treatments.record_session(practitioner, patient_id=patient.id, uses=[use(batch)], performed_at=then)
    pharmacist = make_user("pharmacist")
    db.session.rollback()
    with pytest.raises(SignatureRejected):
        treatments.record_session(pharmacist, patient_id=patient.id, uses=[use(batch)], performed_at=then,
                                  password="wrong")
    db.session.rollback()
    record = treatments.record_session(pharmacist, patient_id=patient.id, uses=[use(batch)], performed_at=then,
                                       password=PASSWORD, practitioner=practitioner)
    from compounding.services.signatures import signatures_for
    assert [s.meaning for s in signatures_for("treatment_session", record.id)] == ["back-dated"]


def test_back_dating_within_the_limit_needs_no_signature(practitioner, make_batch, make_patient):
    batch = make_batch()
    age_batch(batch, timedelta(hours=80))
    record = treatments.record_session(practitioner, patient_id=make_patient().id, uses=[use(batch)],
                                       performed_at=utcnow() - timedelta(hours=70))
    assert record.id


@pytest.mark.parametrize("config_overrides", [{"BACKDATE_HOURS": 2}], indirect=True)
def test_the_api_answers_403_for_a_back_dated_session_without_the_password(client, make_user, make_batch,
                                                                           make_patient):
    batch = make_batch()
    age_batch(batch, timedelta(hours=5))
    pharmacist = make_user("pharmacist")
    headers = bearer(users.create_token(None, pharmacist, "test"))
    body = {"patient_id": make_patient().id, "uses": [use(batch)],
            "performed_at": (utcnow() - timedelta(hours=3)).isoformat()}
    response = client.post("/api/v1/treatment-sessions", headers=headers, json=body)
    assert response.status_code == 403, response.get_json()
    response = client.post("/api/v1/treatment-sessions", headers=headers, json={**body, "password": PASSWORD})
    assert response.status_code == 201, response.get_json()


@pytest.mark.parametrize("config_overrides", [{"BACKDATE_HOURS": 2}], indirect=True)
def test_the_session_form_asks_for_a_signature_when_the_time_is_that_old(client, make_user, make_batch,
                                                                         make_patient):
    from compounding.services.clock import to_clinic

    batch = make_batch()
    age_batch(batch, timedelta(hours=5))
    pharmacist, patient = make_user("pharmacist"), make_patient()
    sign_in(client, pharmacist)
    page = client.get(f"/treatments/patients/{patient.id}/sessions/new").get_data(as_text=True)
    assert 'name="password"' in page and 'data-backdate-hours="2"' in page
    data = {"practitioner_id": str(pharmacist.id), "indication": "", "notes": "",
            "performed_at": to_clinic(utcnow() - timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M"),
            "uses-0-batch_code": batch.code, "uses-0-volume_ml": "1", "uses-0-area": ""}
    response = client.post(f"/treatments/patients/{patient.id}/sessions/new", data=data)
    assert response.status_code == 403 and "pharmacist" in response.get_data(as_text=True).lower()
    response = client.post(f"/treatments/patients/{patient.id}/sessions/new", data={**data, "password": PASSWORD})
    assert response.status_code == 302
