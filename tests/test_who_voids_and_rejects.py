"""Who may undo whose work: a practitioner voids only their own sessions; a compounder never rejects their batch."""

import pytest
import sqlalchemy as sa
from testkit import PASSWORD, audit_rows, bearer, sign_in_session

from compounding.extensions import db
from compounding.models import Batch, TreatmentSession, User
from compounding.services import batches, treatments, users, voids
from compounding.services.errors import NotAllowed


def use(batch, volume="1"):
    return {"batch_code": batch.code, "volume_ml": volume}


@pytest.fixture
def people(make_user):
    return {"nina": make_user("practitioner", display_name="Dr Nina Costa"),
            "omar": make_user("practitioner", display_name="Dr Omar Said"),
            "pharmacist": make_user("pharmacist", display_name="Pia Pharm")}


@pytest.fixture
def ninas_session(people, make_batch, make_patient):
    return treatments.record_session(people["nina"], patient_id=make_patient().id, uses=[use(make_batch())])


def _voided(session_id: int) -> bool:
    db.session.expire_all()
    return db.session.get(TreatmentSession, session_id).voided_at is not None


# --- voids ----------------------------------------------------------------------------------------


def test_a_practitioner_cannot_void_a_colleague_s_session(people, ninas_session):
    with pytest.raises(NotAllowed) as caught:
        voids.void_session(people["omar"], ninas_session.id, reason_code="duplicate", reason="looks doubled")
    assert "only their own" in caught.value.message
    db.session.rollback()
    assert not _voided(ninas_session.id)
    assert audit_rows("session.voided") == []


def test_a_practitioner_voids_a_session_they_performed(people, ninas_session):
    voids.void_session(people["nina"], ninas_session.id, reason_code="not_administered", reason="patient left")
    assert _voided(ninas_session.id)


def test_a_practitioner_voids_a_session_they_recorded_for_a_colleague(people, make_batch, make_patient):
    recorded = treatments.record_session(people["omar"], patient_id=make_patient().id, uses=[use(make_batch())],
                                         practitioner=people["nina"])
    assert recorded.practitioner_id == people["nina"].id
    voids.void_session(people["omar"], recorded.id, reason_code="entered_in_error", reason="wrong colleague")
    assert _voided(recorded.id)


def test_the_practitioner_named_on_a_session_a_colleague_recorded_may_void_it_too(people, make_batch,
                                                                                 make_patient):
    recorded = treatments.record_session(people["omar"], patient_id=make_patient().id, uses=[use(make_batch())],
                                         practitioner=people["nina"])
    voids.void_session(people["nina"], recorded.id, reason_code="duplicate", reason="twice")
    assert _voided(recorded.id)


def test_a_pharmacist_voids_anyone_s_session(people, ninas_session):
    voids.void_session(people["pharmacist"], ninas_session.id, reason_code="duplicate", reason="twice")
    assert _voided(ninas_session.id)


def test_the_page_refuses_a_colleague_s_void_with_403_and_offers_no_void_form(client, people, ninas_session):
    sign_in_session(client, people["omar"])
    page = client.get(f"/treatments/sessions/{ninas_session.id}").get_data(as_text=True)
    assert "Void session" not in page
    response = client.post(f"/treatments/sessions/{ninas_session.id}/void",
                           data={"void-reason_code": "duplicate", "void-reason": "twice"})
    assert response.status_code == 403
    assert "only their own" in response.get_data(as_text=True)
    assert not _voided(ninas_session.id)
    sign_in_session(client, people["nina"])
    assert "Void session" in client.get(f"/treatments/sessions/{ninas_session.id}").get_data(as_text=True)


def test_the_api_refuses_a_colleague_s_void_with_403(client, people, ninas_session):
    headers = bearer(users.create_token(None, people["omar"], "test"))
    response = client.post(f"/api/v1/treatment-sessions/{ninas_session.id}/void", headers=headers,
                           json={"reason_code": "duplicate", "reason": "twice"})
    assert response.status_code == 403
    assert "only their own" in response.get_json()["error"]
    assert not _voided(ninas_session.id)


# --- rejecting a batch ------------------------------------------------------------------------------


@pytest.fixture
def prepared_by_a_pharmacist(make_batch):
    """A prepared batch whose compounder is a pharmacist (who holds batches.verify)."""
    batch = make_batch(release=False)
    compounder = db.session.get(User, batch.compounded_by_id)
    compounder.role = "pharmacist"
    db.session.commit()
    return batch, compounder


def test_the_compounder_cannot_reject_their_own_batch(prepared_by_a_pharmacist):
    batch, compounder = prepared_by_a_pharmacist
    with pytest.raises(NotAllowed) as caught:
        batches.reject_batch(compounder, batch.id, PASSWORD, "cloudy")
    assert "compounded" in caught.value.message
    db.session.rollback()
    assert db.session.get(Batch, batch.id).status == "prepared"
    assert audit_rows("batch.rejected") == []


@pytest.mark.parametrize("config_overrides", [{"SECOND_PERSON_RULES": "verify-only"}], indirect=True)
def test_the_compounder_cannot_reject_their_own_batch_even_with_verify_only(prepared_by_a_pharmacist):
    batch, compounder = prepared_by_a_pharmacist
    with pytest.raises(NotAllowed):
        batches.reject_batch(compounder, batch.id, PASSWORD, "cloudy")


def test_another_pharmacist_rejects_the_batch(prepared_by_a_pharmacist, people):
    batch, _ = prepared_by_a_pharmacist
    assert batches.reject_batch(people["pharmacist"], batch.id, PASSWORD, "cloudy").status == "rejected"


def test_the_api_refuses_the_compounder_s_own_rejection_with_403_and_the_page_says_why(client,
                                                                                     prepared_by_a_pharmacist):
    batch, compounder = prepared_by_a_pharmacist
    sign_in_session(client, compounder)
    # As for verifying: the page shows the refusal on its form (422), the API answers 403.
    page = client.post(f"/batches/{batch.id}/reject", data={"reject-reason": "cloudy", "reject-password": PASSWORD})
    assert page.status_code == 422 and "cannot reject it" in page.get_data(as_text=True)
    api = client.post(f"/api/v1/batches/{batch.id}/reject", json={"reason": "cloudy", "password": PASSWORD})
    assert api.status_code == 403
    assert db.session.scalar(sa.select(Batch.status).where(Batch.id == batch.id)) == "prepared"
