"""Voids keep the trace: reason codes, signatures, volume, patient corrections."""

from decimal import Decimal

import pytest
import sqlalchemy as sa
from testkit import PASSWORD, audit_rows, sign_in

from compounding.extensions import db
from compounding.models import AdverseEvent, Batch, RecallContact, SessionUse, Signature, TreatmentSession
from compounding.services import batches, recalls, signals, treatments, voids
from compounding.services.errors import InvalidInput, InvalidState, NotAllowed, NotFound, SignatureRejected
from compounding.services.ledger import ledger_balance


def use(batch, volume="2", area="abdomen"):
    return {"batch_code": batch.code, "volume_ml": volume, "area": area}


@pytest.fixture
def recalled(practitioner, pharmacist, make_batch, make_patient):
    """An open recall on a batch that three patients received, one session each."""
    batch = make_batch(units=3)
    patients = [make_patient() for _ in range(3)]
    sessions = [treatments.record_session(practitioner, patient_id=p.id, uses=[use(batch)]) for p in patients]
    recall = recalls.open_recall(pharmacist, batch_id=batch.id, reason="Particles in the retained vial",
                                 password=PASSWORD)
    return {"batch": batch, "patients": patients, "sessions": sessions, "recall": recall}


# --- the findings -----------------------------------------------------------------------------------


def test_voiding_a_session_during_an_open_recall_keeps_its_patient_in_the_contact_list(recalled, pharmacist):
    recall, voided = recalled["recall"], recalled["sessions"][0]
    assert recalls.recall_scope(recall).counts["patients"] == 3
    voids.void_session(pharmacist, voided.id, reason_code="entered_in_error", reason="typed twice",
                       password=PASSWORD)
    scope = recalls.recall_scope(recall)
    assert scope.counts["patients"] == 3 and scope.counts["sessions"] == 3 and scope.voided_sessions == 1
    assert {p.id for p in scope.patients} == {p.id for p in recalled["patients"]}
    flagged = {s.id: s.void_code for s in scope.sessions}
    assert flagged[voided.id] == "entered_in_error"
    assert recalls.contact_progress(recall, scope) == (0, 3)
    # A patient known only through the voided session can still be given an outcome.
    recalls.record_contact(pharmacist, recall.id, recalled["patients"][0].id, "phone")


def test_voiding_the_session_that_carried_an_infection_keeps_the_severe_count_in_the_quality_signals(
        practitioner, pharmacist, make_batch, make_patient):
    batch = make_batch()
    session_row = treatments.record_session(practitioner, patient_id=make_patient().id, uses=[use(batch)])
    treatments.record_adverse_event(practitioner, session_id=session_row.id, type="infection", severity="severe")
    before = {(s.kind, s.code): s.severe for s in signals.quality_signals()}
    assert before[("batch", batch.code)] == 1
    voids.void_session(pharmacist, session_row.id, reason_code="duplicate", reason="recorded twice",
                       password=PASSWORD)
    after = {(s.kind, s.code): s.severe for s in signals.quality_signals()}
    assert after == before
    assert signals.adverse_event_counts("batch", [batch.id]) == {batch.id: (1, 1)}


# --- reason codes, 409, signatures ---------------------------------------------------------------------


@pytest.mark.parametrize("code", [None, "", "oops"])
def test_a_void_needs_a_known_reason_code(practitioner, make_batch, make_patient, code):
    session_row = treatments.record_session(practitioner, patient_id=make_patient().id, uses=[use(make_batch())])
    with pytest.raises(InvalidInput) as caught:
        voids.void_session(practitioner, session_row.id, reason_code=code, reason="why")
    assert caught.value.field == "reason_code"
    with pytest.raises(InvalidInput):
        voids.void_session(practitioner, session_row.id, reason_code="duplicate", reason="  ")


def test_a_voided_session_is_kept_with_who_when_code_and_why_and_cannot_be_voided_twice(
        practitioner, make_batch, make_patient):
    session_row = treatments.record_session(practitioner, patient_id=make_patient().id, uses=[use(make_batch())])
    voids.void_session(practitioner, session_row.id, reason_code="not_administered", reason="patient left")
    row = db.session.get(TreatmentSession, session_row.id)
    assert (row.void_code, row.void_reason, row.voided_by_id) == ("not_administered", "patient left", practitioner.id)
    assert row.voided_at is not None
    with pytest.raises(InvalidState):
        voids.void_session(practitioner, session_row.id, reason_code="duplicate", reason="again")
    with pytest.raises(NotFound):
        voids.void_session(practitioner, 999999, reason_code="duplicate", reason="again")
    audited = audit_rows("session.voided", "treatment_session", session_row.id)
    assert audited[-1].new_values["void_code"] == "not_administered"
    assert audited[-1].reason == "not_administered: patient left"


def test_a_practitioner_cannot_void_a_session_in_an_open_recall_a_pharmacist_must_sign(recalled, practitioner,
                                                                                       pharmacist):
    target = recalled["sessions"][1]
    with pytest.raises(NotAllowed) as caught:
        voids.void_session(practitioner, target.id, reason_code="entered_in_error", reason="mistake")
    message = caught.value.message
    assert "pharmacist must sign" in message and f"open recall {recalled['recall'].id}" in message
    db.session.rollback()
    with pytest.raises(SignatureRejected):
        voids.void_session(pharmacist, target.id, reason_code="entered_in_error", reason="mistake",
                           password="not-the-password")
    db.session.rollback()
    assert db.session.get(TreatmentSession, target.id).voided_at is None
    voids.void_session(pharmacist, target.id, reason_code="entered_in_error", reason="mistake", password=PASSWORD)
    signatures = db.session.scalars(sa.select(Signature).where(Signature.entity_type == "treatment_session",
                                                               Signature.entity_id == target.id)).all()
    assert [s.meaning for s in signatures] == ["voided"]


def test_a_session_with_an_adverse_event_needs_a_pharmacist_to_void_it(practitioner, make_batch, make_patient):
    session_row = treatments.record_session(practitioner, patient_id=make_patient().id, uses=[use(make_batch())])
    treatments.record_adverse_event(practitioner, session_id=session_row.id, type="redness", severity="mild")
    assert voids.signature_reasons(session_row.id) == ["it carries an adverse event"]
    with pytest.raises(NotAllowed) as caught:
        voids.void_session(practitioner, session_row.id, reason_code="duplicate", reason="twice", password=PASSWORD)
    assert "adverse event" in caught.value.message


# --- volume ---------------------------------------------------------------------------------------------


def test_a_void_returns_the_volume_to_a_batch_that_is_still_released(practitioner, make_shared_batch,
                                                                      make_patient):
    batch = make_shared_batch(units=2)
    session_row = treatments.record_session(practitioner, patient_id=make_patient().id, uses=[use(batch, "3")])
    voids.void_session(practitioner, session_row.id, reason_code="not_administered", reason="vial dropped")
    batch = db.session.get(Batch, batch.id)
    assert batch.remaining_volume_ml == Decimal("20") == ledger_balance(batch_id=batch.id)
    assert audit_rows("session.voided")[-1].new_values["returned"] == [
        {"batch": batch.code, "vial": f"{batch.code}-01", "volume_ml": "3"}]


def test_a_void_never_brings_a_depleted_or_recalled_batch_back(practitioner, pharmacist, make_batch, make_patient,
                                                                make_shared_batch):
    spent = make_batch(units=1)
    first = treatments.record_session(practitioner, patient_id=make_patient().id, uses=[use(spent, "10")])
    assert spent.status == "depleted"
    voids.void_session(practitioner, first.id, reason_code="entered_in_error", reason="wrong vial")
    spent = db.session.get(Batch, spent.id)
    assert (spent.status, spent.remaining_volume_ml) == ("depleted", Decimal("0"))
    assert ledger_balance(batch_id=spent.id) == Decimal("0")
    kept = audit_rows("session.voided")[-1].new_values["not_returned"]
    assert kept == [{"batch": spent.code, "vial": f"{spent.code}-01", "volume_ml": "10",
                     "why": "not returned: the batch is depleted"}]

    blocked = make_shared_batch(units=1)
    second = treatments.record_session(practitioner, patient_id=make_patient().id, uses=[use(blocked, "4")])
    batches.discard_batch(pharmacist, blocked.id, "damaged", "dropped")
    voids.void_session(practitioner, second.id, reason_code="entered_in_error", reason="wrong vial")
    assert db.session.get(Batch, blocked.id).status == "discarded"
    assert "discarded" in audit_rows("session.voided")[-1].new_values["not_returned"][0]["why"]


def test_a_plain_void_with_code_wrong_patient_is_refused_naming_the_correction(practitioner, make_shared_batch,
                                                                             make_patient):
    batch = make_shared_batch(units=2)
    session_row = treatments.record_session(practitioner, patient_id=make_patient().id, uses=[use(batch, "3")])
    with pytest.raises(InvalidInput) as caught:
        voids.void_session(practitioner, session_row.id, reason_code="wrong_patient", reason="wrong chart")
    assert "use Correct the patient" in caught.value.message and caught.value.field == "reason_code"
    db.session.rollback()
    assert db.session.get(TreatmentSession, session_row.id).voided_at is None
    assert db.session.get(Batch, batch.id).remaining_volume_ml == Decimal("17") == ledger_balance(batch_id=batch.id)


def test_the_void_form_does_not_offer_wrong_patient(client, practitioner, make_batch, make_patient):
    session_row = treatments.record_session(practitioner, patient_id=make_patient().id, uses=[use(make_batch())])
    sign_in(client, practitioner)
    page = client.get(f"/treatments/sessions/{session_row.id}").get_data(as_text=True)
    void_form = page.split('id="void-form"')[1].split("</form>")[0]
    assert 'value="entered_in_error"' in void_form and 'value="wrong_patient"' not in void_form


# --- patient correction ------------------------------------------------------------------------------------


def test_correcting_the_patient_moves_the_uses_once_and_marks_the_wrong_patient_not_exposed(
        recalled, pharmacist, make_patient):
    recall, batch = recalled["recall"], recalled["batch"]
    wrong, old = recalled["patients"][0], recalled["sessions"][0]
    right = make_patient()
    remaining = db.session.get(Batch, batch.id).remaining_volume_ml
    new = voids.correct_patient(pharmacist, old.id, patient_id=right.id, reason="chart mixed up at the desk",
                                password=PASSWORD)
    old = db.session.get(TreatmentSession, old.id)
    assert (old.void_code, new.corrects_session_id, new.patient_id) == ("wrong_patient", old.id, right.id)
    assert new.performed_at == old.performed_at
    moved = db.session.execute(sa.select(SessionUse.batch_id, SessionUse.volume_ml, SessionUse.area)
                               .where(SessionUse.session_id == new.id)).all()
    assert moved == [(batch.id, Decimal("2"), "abdomen")]
    # The stock moved once: nothing returned, nothing taken again.
    assert db.session.get(Batch, batch.id).remaining_volume_ml == remaining == ledger_balance(batch_id=batch.id)
    outcome = db.session.scalars(sa.select(RecallContact).where(RecallContact.patient_id == wrong.id)).one()
    assert (outcome.recall_id, outcome.outcome, outcome.contacted_by_id) == (recall.id, "not_exposed", pharmacist.id)
    scope = recalls.recall_scope(recall)
    assert scope.counts["patients"] == 4 and {right.id, wrong.id} <= {p.id for p in scope.patients}
    meanings = sorted(db.session.scalars(sa.select(Signature.meaning)))
    assert "patient corrected" in meanings and "not exposed" in meanings


def test_only_a_pharmacist_corrects_a_patient_and_nothing_changes_on_refusal(recalled, practitioner, pharmacist,
                                                                           make_patient):
    old, right = recalled["sessions"][0], make_patient()
    with pytest.raises(NotAllowed):
        voids.correct_patient(practitioner, old.id, patient_id=right.id, reason="mixed up", password=PASSWORD)
    db.session.rollback()
    with pytest.raises(SignatureRejected):
        voids.correct_patient(pharmacist, old.id, patient_id=right.id, reason="mixed up", password="nope-nope-1")
    db.session.rollback()
    with pytest.raises(InvalidInput):
        voids.correct_patient(pharmacist, old.id, patient_id=old.patient_id, reason="mixed up", password=PASSWORD)
    db.session.rollback()
    assert db.session.get(TreatmentSession, old.id).voided_at is None
    assert db.session.scalar(sa.select(sa.func.count(RecallContact.id))) == 0


def test_a_wrongly_named_patient_still_exposed_through_another_session_is_not_marked_not_exposed(
        practitioner, pharmacist, make_batch, make_patient):
    batch, wrong = make_batch(), make_patient()
    mistaken, kept = (treatments.record_session(practitioner, patient_id=wrong.id, uses=[use(batch, "1")])
                      for _ in range(2))
    recalls.open_recall(pharmacist, batch_id=batch.id, reason="Supplier alert", password=PASSWORD)
    voids.correct_patient(pharmacist, mistaken.id, patient_id=make_patient().id, reason="mixed up",
                          password=PASSWORD)
    assert db.session.get(TreatmentSession, kept.id).voided_at is None
    assert db.session.scalar(sa.select(sa.func.count(RecallContact.id))) == 0


def test_correcting_a_patient_after_the_recall_closed_reopens_it_for_the_right_patient(recalled, pharmacist,
                                                                                     make_patient):
    recall, sessions, patients = recalled["recall"], recalled["sessions"], recalled["patients"]
    for patient in patients:
        recalls.record_contact(pharmacist, recall.id, patient.id, "phone", "no symptoms")
    recalls.close_recall(pharmacist, recall.id, "All reached", PASSWORD)
    right = make_patient()
    new = voids.correct_patient(pharmacist, sessions[0].id, patient_id=right.id, reason="chart mixed up",
                                password=PASSWORD)
    recall = db.session.get(type(recall), recall.id)
    assert recall.status == "open" and recall.closed_at is None
    assert recalls.patients_without_outcome(recall) == 1  # the right patient, still to be reached
    with pytest.raises(InvalidState):
        recalls.close_recall(pharmacist, recall.id, "All reached", PASSWORD)
    db.session.rollback()
    corrected = audit_rows("session.patient_corrected", "treatment_session", new.id)[-1]
    assert corrected.new_values["recalls_reopened"] == [recall.id]


def test_correcting_the_patient_moves_the_adverse_events_to_the_right_patient_once(client, recalled, pharmacist,
                                                                                   make_patient):
    old, wrong, right = recalled["sessions"][0], recalled["patients"][0], make_patient()
    event = treatments.record_adverse_event(pharmacist, session_id=old.id, type="infection", severity="moderate",
                                            notes="abscess at the left flank")
    new = voids.correct_patient(pharmacist, old.id, patient_id=right.id, reason="chart mixed up at the desk",
                                password=PASSWORD)
    assert db.session.get(AdverseEvent, event.id).session_id == new.id
    moved = audit_rows("session.patient_corrected")[-1]
    assert moved.old_values["session_id"] == old.id and moved.new_values["adverse_events_moved"] == [event.id]
    [signal] = [s for s in signals.quality_signals() if s.kind == "batch"]
    assert (signal.id, signal.events, signal.severe) == (recalled["batch"].id, 1, 1)
    sign_in(client, pharmacist)
    right_page = client.get(f"/treatments/patients/{right.id}").get_data(as_text=True)
    assert "abscess at the left flank" in right_page.split("Adverse events</h2>")[1]
    wrong_page = client.get(f"/treatments/patients/{wrong.id}").get_data(as_text=True)
    assert "abscess at the left flank" not in wrong_page
