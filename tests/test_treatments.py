"""Treatment sessions, adverse events, trace, recall and quality signals."""

from datetime import timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa
from testkit import PASSWORD, age_batch

from compounding.extensions import db
from compounding.models import Batch, Formula, Lot, RecallContact, SessionUse, TreatmentSession
from compounding.services import batches, recalls, signals, trace, treatments, voids
from compounding.services.errors import InvalidInput, InvalidState, NotAllowed, SignatureRejected
from compounding.services.ledger import ledger_balance


def use(batch, volume="2", area="abdomen"):
    return {"batch_code": batch.code, "volume_ml": volume, "area": area}


def test_a_session_takes_the_volume_from_the_batch_with_a_ledger_row(practitioner, make_shared_batch,
                                                                     make_patient):
    batch = make_shared_batch(units=2)  # 20 mL
    patient = make_patient()
    session_row = treatments.record_session(practitioner, patient_id=patient.id, uses=[use(batch, "2.5")])
    assert batch.remaining_volume_ml == Decimal("17.5") == ledger_balance(batch_id=batch.id)
    assert session_row.practitioner_id == practitioner.id


def test_the_batch_field_accepts_a_scanners_input_with_spaces_and_lower_case(practitioner, make_shared_batch,
                                                                             make_patient):
    batch = make_shared_batch()
    treatments.record_session(practitioner, patient_id=make_patient().id,
                              uses=[{"batch_code": f"  {batch.code.lower()}\n", "volume_ml": "1"}])
    assert batch.remaining_volume_ml == Decimal("19")


@pytest.mark.parametrize("state, reason", [
    ("prepared", "not released"), ("rejected", "rejected"), ("recalled", "recalled"),
    ("discarded", "discarded"), ("expired", "expired at"), ("empty", "empty"),
])
def test_an_unusable_batch_is_refused_with_the_reason_and_nothing_is_saved(
        practitioner, make_batch, make_patient, pharmacist, state, reason):
    batch = make_batch(release=state != "prepared")
    if state == "rejected":
        batch.status = "rejected"
    elif state == "recalled":
        batch.status = "recalled"
    elif state == "discarded":
        batches.discard_batch(pharmacist, batch.id, "damaged", "dropped")
    elif state == "expired":
        batch.beyond_use_at = batch.compounded_at - timedelta(seconds=1)
    elif state == "empty":
        treatments.record_session(practitioner, patient_id=make_patient().id, uses=[use(batch, "10")] * 2)
    db.session.commit()
    before = db.session.scalar(sa.select(sa.func.count(SessionUse.id)))
    with pytest.raises(InvalidState) as caught:
        treatments.record_session(practitioner, patient_id=make_patient().id, uses=[use(batch, "1")])
    assert reason in caught.value.message
    assert caught.value.details["reasons"][batch.code]
    db.session.rollback()
    assert db.session.scalar(sa.select(sa.func.count(SessionUse.id))) == before


def test_more_volume_than_remains_is_refused(practitioner, make_batch, make_patient):
    batch = make_batch(units=1)
    with pytest.raises(InvalidState) as caught:
        treatments.record_session(practitioner, patient_id=make_patient().id,
                                  uses=[use(batch, "6"), use(batch, "5")])
    assert "only 10 mL left, 11 mL asked" in caught.value.message


def test_a_batch_is_judged_at_the_time_of_the_session(practitioner, make_batch, make_patient):
    batch = make_batch()
    now = batch.compounded_at
    # Made and verified 3 hours ago (a session before the verification is refused).
    age_batch(batch, timedelta(hours=3))
    batch.beyond_use_at = now - timedelta(hours=1)
    db.session.commit()
    with pytest.raises(InvalidState) as caught:
        treatments.record_session(practitioner, patient_id=make_patient().id, uses=[use(batch)])
    assert "expired at" in caught.value.message
    db.session.rollback()
    # Entered late, for a time when the batch was still in date: accepted.
    session_row = treatments.record_session(practitioner, patient_id=make_patient().id, uses=[use(batch)],
                                            performed_at=now - timedelta(hours=2))
    assert session_row.performed_at == now - timedelta(hours=2)


def test_the_last_drop_makes_a_batch_depleted_and_a_void_does_not_bring_it_back(practitioner, make_batch,
                                                                                make_patient):
    batch = make_batch(units=1)
    session_row = treatments.record_session(practitioner, patient_id=make_patient().id, uses=[use(batch, "10")])
    assert batch.status == "depleted"
    with pytest.raises(InvalidInput):
        voids.void_session(practitioner, session_row.id, reason_code="entered_in_error", reason="")
    voids.void_session(practitioner, session_row.id, reason_code="entered_in_error",
                       reason="recorded on the wrong day")
    batch = db.session.get(Batch, batch.id)
    # A void never brings a spent batch back.
    assert (batch.status, batch.remaining_volume_ml) == ("depleted", Decimal("0"))
    assert ledger_balance(batch_id=batch.id) == Decimal("0")


def test_a_technician_cannot_record_sessions(technician, make_batch, make_patient):
    with pytest.raises(NotAllowed):
        treatments.record_session(technician, patient_id=make_patient().id, uses=[use(make_batch())])


def test_chart_numbers_are_unique(make_patient):
    make_patient(chart_number="A-1")
    with pytest.raises(InvalidState):
        make_patient(chart_number="A-1")


def test_the_full_chain_traces_one_lot_to_exactly_its_three_patients_and_a_recall_blocks_both_batches(chain):
    practitioner, pharmacist, technician = chain["practitioner"], chain["pharmacist"], chain["technician"]
    suspect, first, second = chain["lot"], chain["first"], chain["second"]
    a, b, c, other_lot_patient = chain["a"], chain["b"], chain["c"], chain["other"]
    assert db.session.get(Lot, suspect.id).remaining == 0  # both batches drew on the suspect lot

    traced = trace.trace_lot(suspect.id)
    assert {p.id for p in traced.patients} == {a.id, b.id, c.id}
    assert {row.code for row in traced.batches} == {first.code, second.code}
    assert {p.chart_number: p.volume_ml for p in traced.patients} == {
        a.chart_number: Decimal("3"), b.chart_number: Decimal("3"), c.chart_number: Decimal("5")}
    assert len(traced.sessions) == 4 and traced.total_volume_ml == Decimal("11")

    with pytest.raises(SignatureRejected):
        recalls.open_recall(pharmacist, lot_id=suspect.id, reason="Supplier alert", password="wrong-pass-1")
    db.session.rollback()
    recall = recalls.open_recall(pharmacist, lot_id=suspect.id, reason="Supplier alert: endotoxin",
                                 password=PASSWORD)
    assert db.session.get(Lot, suspect.id).status == "recalled"
    for batch in (first, second):
        assert db.session.get(Batch, batch.id).status == "recalled"
    with pytest.raises(InvalidState) as caught:
        treatments.record_session(practitioner, patient_id=a.id, uses=[use(first, "1")])
    assert "recalled" in caught.value.message
    db.session.rollback()

    recalls.record_contact(technician, recall.id, a.id, "phone", "left a message")
    with pytest.raises(InvalidInput):
        recalls.record_contact(technician, recall.id, other_lot_patient.id, "phone")
    scope = recalls.recall_scope(recall)
    assert recalls.contact_progress(recall, scope) == (1, 3)
    with pytest.raises(InvalidState) as caught:
        recalls.close_recall(pharmacist, recall.id, "All patients reviewed; no infection.", PASSWORD)
    assert "2 patients" in caught.value.message
    db.session.rollback()
    recalls.record_contact(technician, recall.id, b.id, "email")
    recalls.record_contact(technician, recall.id, c.id, None, outcome="declined")
    recalls.close_recall(pharmacist, recall.id, "All patients reviewed; no infection.", PASSWORD)
    assert recall.status == "closed"
    assert db.session.scalar(sa.select(sa.func.count(RecallContact.id))) == 3


def test_tracing_a_batch_lists_its_lots_upstream(technician, make_batch):
    batch = make_batch()
    traced = trace.trace_batch(batch.id)
    assert len(traced.lots) == 2 and all(row.quantity > 0 for row in traced.lots)


def test_a_severe_event_flags_the_batch_and_its_lots(practitioner, make_batch, make_patient):
    batch = make_batch()
    session_row = treatments.record_session(practitioner, patient_id=make_patient().id, uses=[use(batch)])
    assert signals.quality_signals() == []
    treatments.record_adverse_event(practitioner, session_id=session_row.id, type="infection", severity="moderate")
    flagged = {(s.kind, s.code) for s in signals.quality_signals()}
    assert ("batch", batch.code) in flagged
    assert len([kind for kind, _ in flagged if kind == "lot"]) == 2


def test_mild_events_flag_only_with_enough_events_and_a_patient_rate_above_the_clinic_s(
        practitioner, make_batch, make_patient):
    batch, quiet = make_batch(units=10), make_batch(units=30)
    sessions = [treatments.record_session(practitioner, patient_id=make_patient().id, uses=[use(batch, "1")])
                for _ in range(10)]
    for _ in range(30):
        treatments.record_session(practitioner, patient_id=make_patient().id, uses=[use(quiet, "1")])
    treatments.record_adverse_event(practitioner, session_id=sessions[0].id, type="redness", severity="mild")
    assert signals.quality_signals() == []  # one event: below the minimum count
    for session_row in sessions[1:3]:
        treatments.record_adverse_event(practitioner, session_id=session_row.id, type="bruising", severity="mild")
    # 3 of 10 patients (95 % CI 11-60 %) against the clinic's 3 of 40 (7.5 %)
    assert [s.code for s in signals.quality_signals() if s.kind == "batch"] == [batch.code]


def test_a_shorter_list_of_quality_signals_is_the_head_of_the_full_list(practitioner, make_batch, make_patient):
    # A lot's sessions are counted only when it could still rank. The two batches of the first
    # formula were used together, so its lots have no more sessions than either batch.
    first = make_batch(units=5)
    second = make_batch(db.session.get(Formula, first.formula_id), units=5)
    together = [treatments.record_session(practitioner, patient_id=make_patient().id,
                                          uses=[use(first, "1"), use(second, "1")]) for _ in range(2)]
    treatments.record_adverse_event(practitioner, session_id=together[0].id, type="infection", severity="severe")
    for batch in (make_batch(units=5), make_batch(units=5)):
        alone = [treatments.record_session(practitioner, patient_id=make_patient().id, uses=[use(batch, "1")])
                 for _ in range(3)]
        treatments.record_adverse_event(practitioner, session_id=alone[0].id, type="necrosis", severity="severe")
    full = signals.quality_signals(limit=100)
    assert [(s.kind, s.sessions) for s in full] == [("batch", 2)] * 2 + [("lot", 2)] * 2 + [("batch", 3)] * 2 + [
        ("lot", 3)] * 4
    for limit in range(1, len(full) + 1):
        assert signals.quality_signals(limit=limit) == full[:limit]


def test_a_voided_session_stays_in_the_trace_flagged(practitioner, make_batch, make_patient):
    batch = make_batch()
    patient = make_patient()
    session_row = treatments.record_session(practitioner, patient_id=patient.id, uses=[use(batch)])
    voids.void_session(practitioner, session_row.id, reason_code="entered_in_error", reason="wrong day")
    traced = trace.trace_batch(batch.id)
    assert [(p.id, p.voided_sessions, p.volume_ml) for p in traced.patients] == [(patient.id, 1, Decimal("0"))]
    assert [(s.id, s.void_code) for s in traced.sessions] == [(session_row.id, "entered_in_error")]
    assert traced.total_volume_ml == 0 and traced.voided_sessions == 1
    assert db.session.get(TreatmentSession, session_row.id).voided_at is not None


def test_an_adverse_event_needs_a_known_type_and_severity(practitioner, make_batch, make_patient):
    session_row = treatments.record_session(practitioner, patient_id=make_patient().id, uses=[use(make_batch())])
    with pytest.raises(InvalidInput):
        treatments.record_adverse_event(practitioner, session_id=session_row.id, type="itch", severity="mild")
    with pytest.raises(InvalidInput):
        treatments.record_adverse_event(practitioner, session_id=session_row.id, type="pain", severity="awful")


def test_adverse_event_counts_are_given_per_batch_and_per_lot(practitioner, make_batch, make_patient):
    batch = make_batch()
    session_row = treatments.record_session(practitioner, patient_id=make_patient().id, uses=[use(batch)])
    treatments.record_adverse_event(practitioner, session_id=session_row.id, type="necrosis", severity="severe")
    treatments.record_adverse_event(practitioner, session_id=session_row.id, type="pain", severity="mild")
    assert signals.adverse_event_counts("batch", [batch.id]) == {batch.id: (2, 1)}
    lot_ids = [row.id for row in trace.trace_batch(batch.id).lots]
    assert signals.adverse_event_counts("lot", lot_ids) == {lot_id: (2, 1) for lot_id in lot_ids}


def test_batch_and_lot_pages_show_their_adverse_events_and_link_to_the_trace(client, as_role, practitioner,
                                                                             make_batch, make_patient):
    batch = make_batch()
    session_row = treatments.record_session(practitioner, patient_id=make_patient().id, uses=[use(batch)])
    treatments.record_adverse_event(practitioner, session_id=session_row.id, type="infection", severity="moderate")
    as_role("pharmacist")
    page = client.get(f"/batches/{batch.id}").get_data(as_text=True)
    assert "<strong>1</strong>" in page and "1 serious" in page and f"/trace/batches/{batch.id}" in page
    lot_id = trace.trace_batch(batch.id).lots[0].id
    page = client.get(f"/lots/{lot_id}").get_data(as_text=True)
    assert "1 serious" in page and f"/recalls/new?lot_id={lot_id}" in page
