"""Discarding one vial: the way out a refusal points to (past its in-use period, part used, dropped)."""

from datetime import timedelta

import pytest
import sqlalchemy as sa
from testkit import PASSWORD, age_batch, bearer, csrf_token_from, sign_in, submission_key_from

from compounding.extensions import db
from compounding.models import Batch, StockMovement, Vial
from compounding.services import holds, treatments, vials
from compounding.services.errors import InvalidInput, InvalidState, NotAllowed
from compounding.services.ledger import ledger_balance

AET = "AET report 2026-014, passed"


def _vials(batch) -> list[Vial]:
    db.session.expire_all()
    return list(db.session.scalars(sa.select(Vial).where(Vial.batch_id == batch.id).order_by(Vial.number)))


@pytest.fixture
def multiple_batch(make_formula, make_lot, make_batch):
    formula = make_formula(dose="multiple", in_use_hours="24", antimicrobial_evidence=AET)
    for component in formula.components:
        make_lot(component.ingredient, quantity="1000")
    return make_batch(formula, units=2)


def test_a_vial_past_its_in_use_period_is_discarded_and_its_remainder_written_off(
        multiple_batch, make_patient, practitioner):
    batch = multiple_batch
    age_batch(batch, timedelta(hours=30))
    code = f"{batch.code}-01"
    treatments.record_session(practitioner, patient_id=make_patient().id, uses=[{"vial_code": code, "volume_ml": "3"}],
                              performed_at=batch.compounded_at + timedelta(hours=1))
    with pytest.raises(InvalidState, match="past its in-use deadline"):
        treatments.record_session(practitioner, patient_id=make_patient().id,
                                  uses=[{"vial_code": code, "volume_ml": "1"}])
    first = _vials(batch)[0]
    vials.discard_vial(practitioner, first.id, "expired", "in-use period over")
    first, second = _vials(batch)
    assert (first.status, first.remaining_ml, first.status_reason) == ("discarded", 0, "expired: in-use period over")
    waste = db.session.scalars(sa.select(StockMovement).where(StockMovement.vial_id == first.id,
                                                              StockMovement.kind == "waste")).all()
    assert [(w.quantity, w.reason) for w in waste] == [(-7, "expired")]
    stored = db.session.get(Batch, batch.id)
    assert stored.remaining_volume_ml == second.remaining_ml == ledger_balance(batch_id=batch.id) == 10
    with pytest.raises(InvalidState, match="already discarded"):
        vials.discard_vial(practitioner, first.id, "damaged")


def test_discarding_the_last_vial_depletes_the_batch_and_a_reason_is_required(make_batch, practitioner, make_user):
    batch = make_batch(units=1)
    (vial,) = _vials(batch)
    with pytest.raises(InvalidInput, match="Choose a reason"):
        vials.discard_vial(practitioner, vial.id, "fell")
    with pytest.raises(InvalidInput, match="Describe the reason"):
        vials.discard_vial(practitioner, vial.id, "other")
    with pytest.raises(NotAllowed):
        vials.discard_vial(make_user("auditor"), vial.id, "damaged")
    assert _vials(batch)[0].status == "sealed"
    vials.discard_vial(practitioner, vial.id, "damaged", "dropped on the floor")
    assert db.session.get(Batch, batch.id).status == "depleted"


def test_the_vial_page_discards_a_vial_and_releases_its_own_hold(client, make_batch, make_user, make_patient,
                                                                  practitioner, pharmacist):
    batch = make_batch(units=3)
    session = treatments.record_session(practitioner, patient_id=make_patient().id,
                                        uses=[{"vial_code": f"{batch.code}-01", "volume_ml": "2"}])
    treatments.record_adverse_event(practitioner, session_id=session.id, type="nodule", severity="mild")
    holds.release_hold(pharmacist, "batch", batch.id, "adverse_event", "isolated event", PASSWORD)
    assert [v.status for v in _vials(batch)] == ["spent", "sealed", "sealed"]
    sign_in(client, pharmacist)
    page = client.get(f"/batches/{batch.id}/vials/1").get_data(as_text=True)
    assert "Release this hold" in page
    released = client.post(f"/batches/{batch.id}/vials/1/release-hold", data={
        "csrf_token": csrf_token_from(page), "submission_key": submission_key_from(page), "hold": "adverse_event",
        "reason": "the nodule resolved; culture negative", "password": PASSWORD}, follow_redirects=True)
    assert released.status_code == 200 and "hold on " in released.get_data(as_text=True)
    assert holds.hold_texts("vial", _vials(batch)[0].id) == []

    page = client.get(f"/batches/{batch.id}/vials/2").get_data(as_text=True)
    refused = client.post(f"/batches/{batch.id}/vials/2/discard", data={
        "csrf_token": csrf_token_from(page), "submission_key": submission_key_from(page),
        "vial-discard-reason": "other", "vial-discard-note": ""})
    assert refused.status_code == 422 and "Describe the reason" in refused.get_data(as_text=True)
    page = refused.get_data(as_text=True)
    done = client.post(f"/batches/{batch.id}/vials/2/discard", data={
        "csrf_token": csrf_token_from(page), "submission_key": submission_key_from(page),
        "vial-discard-reason": "contaminated", "vial-discard-note": "septum touched"}, follow_redirects=True)
    assert done.status_code == 200 and f"{batch.code}-02 discarded" in done.get_data(as_text=True)
    assert [v.status for v in _vials(batch)] == ["spent", "discarded", "sealed"]


def test_the_api_discards_a_vial(client, make_batch, make_token, practitioner):
    batch = make_batch(units=2)
    vial = _vials(batch)[1]
    token = make_token(practitioner)
    answer = client.post(f"/api/v1/vials/{vial.id}/discard", json={"reason": "damaged", "note": "cracked"},
                         headers=bearer(token))
    assert answer.status_code == 200, answer.get_json()
    assert (answer.get_json()["status"], answer.get_json()["remaining_ml"]) == ("discarded", "0")
    again = client.post(f"/api/v1/vials/{vial.id}/discard", json={"reason": "damaged"}, headers=bearer(token))
    assert again.status_code == 409
