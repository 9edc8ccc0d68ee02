"""A session draws each use from one vial: single-dose spent with its session, multiple-dose punctured."""

from datetime import timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa
from testkit import PASSWORD, age_batch, audit_rows, fresh

from compounding.extensions import db
from compounding.models import Batch, SessionUse, StatusChange, StockMovement, Vial
from compounding.services import treatments, voids
from compounding.services.clock import utcnow
from compounding.services.errors import InvalidInput, InvalidState, NotFound


def _vials(batch) -> list[Vial]:
    db.session.expire_all()
    return list(db.session.scalars(sa.select(Vial).where(Vial.batch_id == batch.id).order_by(Vial.number)))


def _balanced(batch) -> None:
    vials = _vials(batch)
    assert db.session.get(Batch, batch.id).remaining_volume_ml == sum(v.remaining_ml for v in vials)


@pytest.fixture
def multiple_batch(make_shared_batch):
    """A released batch of three 10 mL multiple-dose vials (in use for 48 hours once punctured, unless told)."""
    return lambda units=3, hours="48": make_shared_batch(units, hours=hours)


def _use(code, volume, **extra):
    return {"vial_code": code, "volume_ml": volume, **extra}


def test_a_single_dose_vial_serves_several_areas_of_one_session_then_is_spent_and_its_rest_wasted(
        make_batch, make_patient, practitioner):
    batch = make_batch(units=2)
    code = f"{batch.code}-01"
    session = treatments.record_session(practitioner, patient_id=make_patient().id, uses=[
        _use(code, "3", area="chin"), _use(code, "2", area="jowls")])
    assert session.vial_codes == [code, code]
    first, second = _vials(batch)
    assert (first.status, first.remaining_ml, first.first_session_id) == ("spent", 0, session.id)
    assert first.punctured_at == session.performed_at and first.spent_at is not None
    assert (second.status, second.remaining_ml) == ("sealed", 10)
    rows = db.session.execute(sa.select(StockMovement.kind, StockMovement.quantity, StockMovement.reason)
                              .where(StockMovement.vial_id == first.id).order_by(StockMovement.id)).all()
    assert [(k, Decimal(q), r) for k, q, r in rows] == [
        ("use", Decimal("-3"), ""), ("use", Decimal("-2"), ""), ("waste", Decimal("-5"), "single_dose_remainder")]
    assert fresh(Batch, batch.id).remaining_volume_ml == 10
    _balanced(batch)
    history = db.session.scalars(sa.select(StatusChange.to_status).where(
        StatusChange.entity_type == "vial", StatusChange.entity_id == first.id).order_by(StatusChange.id)).all()
    assert history == ["sealed", "open", "spent"]
    recorded = audit_rows("session.recorded", "treatment_session", session.id)[-1]
    assert [use["vial"] for use in recorded.new_values["uses"]] == [code, code]


def test_a_single_dose_vial_cannot_serve_a_second_session(make_batch, make_patient, practitioner):
    batch = make_batch(units=2)
    code = f"{batch.code}-01"
    first = treatments.record_session(practitioner, patient_id=make_patient().id, uses=[_use(code, "2")])
    with pytest.raises(InvalidState, match=f"single-dose vial already used in session {first.id}") as refused:
        treatments.record_session(practitioner, patient_id=make_patient().id, uses=[_use(code, "1")])
    assert list(refused.value.details["reasons"]) == [code]
    _balanced(batch)


def test_a_batch_of_two_single_dose_units_serves_two_sessions_by_batch_code(make_batch, make_patient, practitioner):
    batch = make_batch(units=2)
    names = []
    for _ in range(2):
        session = treatments.record_session(practitioner, patient_id=make_patient().id,
                                            uses=[{"batch_code": batch.code, "volume_ml": "1"}])
        names.append(session.vial_codes[0])
    assert names == [f"{batch.code}-01", f"{batch.code}-02"]
    assert fresh(Batch, batch.id).status == "depleted"
    with pytest.raises(InvalidState, match="empty"):
        treatments.record_session(practitioner, patient_id=make_patient().id,
                                  uses=[{"batch_code": batch.code, "volume_ml": "1"}])
    _balanced(batch)


def test_a_multiple_dose_vial_is_punctured_once_and_usable_until_its_in_use_deadline(
        multiple_batch, make_patient, practitioner):
    batch = multiple_batch()
    age_batch(batch, timedelta(hours=60))
    code = f"{batch.code}-01"
    first_at = utcnow() - timedelta(hours=50)
    first = treatments.record_session(practitioner, patient_id=make_patient().id, uses=[_use(code, "2")],
                                      performed_at=first_at)
    vial = _vials(batch)[0]
    assert (vial.status, vial.punctured_at, vial.first_session_id) == ("open", first_at, first.id)
    assert vial.in_use_until(batch.beyond_use_at) == first_at + timedelta(hours=48)
    treatments.record_session(practitioner, patient_id=make_patient().id, uses=[_use(code, "1")],
                              performed_at=first_at + timedelta(hours=47))
    with pytest.raises(InvalidState, match="past its in-use deadline") as refused:
        treatments.record_session(practitioner, patient_id=make_patient().id, uses=[_use(code, "1")])
    assert list(refused.value.details["reasons"]) == [code]
    # By batch code: the open vial past its deadline is passed over for the next sealed one, named.
    row = treatments.record_session(practitioner, patient_id=make_patient().id,
                                    uses=[{"batch_code": batch.code, "volume_ml": "1"}])
    assert row.vial_codes == [f"{batch.code}-02"]
    assert [v.remaining_ml for v in _vials(batch)[:2]] == [7, 9]
    _balanced(batch)


def test_the_in_use_deadline_never_passes_the_batch_bud(multiple_batch, make_patient, practitioner):
    batch = multiple_batch(hours="672")
    session = treatments.record_session(practitioner, patient_id=make_patient().id,
                                        uses=[_use(f"{batch.code}-02", "1")])
    vial = _vials(batch)[1]
    assert vial.in_use_until(batch.beyond_use_at) == batch.beyond_use_at < session.performed_at + timedelta(hours=672)


def test_a_late_entry_moves_the_first_puncture_earlier(multiple_batch, make_patient, practitioner):
    batch = multiple_batch()
    age_batch(batch, timedelta(hours=30))
    code = f"{batch.code}-01"
    now_session = treatments.record_session(practitioner, patient_id=make_patient().id, uses=[_use(code, "1")])
    earlier = utcnow() - timedelta(hours=20)
    late = treatments.record_session(practitioner, patient_id=make_patient().id, uses=[_use(code, "1")],
                                     performed_at=earlier)
    vial = _vials(batch)[0]
    assert vial.punctured_at == earlier and vial.first_session_id == late.id != now_session.id
    assert vial.in_use_until(batch.beyond_use_at) == earlier + timedelta(hours=48)


def test_a_use_may_not_take_more_than_its_vial_holds(make_batch, multiple_batch, make_patient, practitioner):
    batch = make_batch(units=2)
    with pytest.raises(InvalidState, match="holds only 10 mL, 12 mL asked"):
        treatments.record_session(practitioner, patient_id=make_patient().id, uses=[_use(f"{batch.code}-01", "12")])
    with pytest.raises(InvalidState, match="holds only 10 mL, 11 mL asked"):
        treatments.record_session(practitioner, patient_id=make_patient().id, uses=[
            _use(f"{batch.code}-01", "6"), _use(f"{batch.code}-01", "5")])
    with pytest.raises(InvalidState, match="a use cannot take more than one vial holds"):
        treatments.record_session(practitioner, patient_id=make_patient().id,
                                  uses=[{"batch_code": batch.code, "volume_ml": "12"}])
    _balanced(batch)


def test_by_batch_code_a_session_takes_the_open_vial_then_the_next_sealed_one(multiple_batch, make_patient,
                                                                              practitioner):
    batch = multiple_batch()
    by_code = {"batch_code": batch.code, "volume_ml": "4"}
    session = treatments.record_session(practitioner, patient_id=make_patient().id, uses=[by_code, by_code, by_code])
    assert session.vial_codes == [f"{batch.code}-01", f"{batch.code}-01", f"{batch.code}-02"]
    assert [v.remaining_ml for v in _vials(batch)] == [2, 6, 10]
    _balanced(batch)


def test_a_vial_code_and_a_batch_code_that_disagree_are_refused_naming_both(make_batch, make_patient, practitioner):
    one, other = make_batch(), make_batch()
    code = f"{one.code}-01"
    with pytest.raises(InvalidState, match=f"{code} is a vial of batch {one.code}, not of {other.code}"):
        treatments.record_session(practitioner, patient_id=make_patient().id,
                                  uses=[_use(code, "1", batch_code=other.code)])
    with pytest.raises(InvalidState, match=f"not of {other.code}"):
        treatments.record_session(practitioner, patient_id=make_patient().id,
                                  uses=[_use(code, "1", batch_id=other.id)])
    session = treatments.record_session(practitioner, patient_id=make_patient().id,
                                        uses=[_use(code, "1", batch_code=one.code)])
    assert session.vial_codes[0] == code


@pytest.mark.parametrize("suffix, error, says", [
    ("-", InvalidInput, "the vial number after the hyphen is missing"),
    ("-999", NotFound, "has no vial 999"),
    ("-00", InvalidInput, "vial numbers start at 01"),
])
def test_a_malformed_or_unknown_vial_code_is_refused_saying_what_is_wrong(make_batch, make_patient, practitioner,
                                                                         suffix, error, says):
    batch = make_batch()
    with pytest.raises(error, match=says):
        treatments.record_session(practitioner, patient_id=make_patient().id, uses=[_use(batch.code + suffix, "1")])
    with pytest.raises(InvalidInput, match="no batch code before the hyphen"):
        treatments.record_session(practitioner, patient_id=make_patient().id, uses=[_use("-00", "1")])


def test_a_vial_code_typed_where_the_batch_code_goes_is_read_as_a_vial_code(make_batch, make_patient, practitioner):
    batch = make_batch()
    session = treatments.record_session(practitioner, patient_id=make_patient().id,
                                        uses=[{"batch_code": f"{batch.code}-02", "volume_ml": "1"}])
    assert session.vial_codes[0] == f"{batch.code}-02"


# --- voids -----------------------------------------------------------------------------------------


def test_a_void_returns_volume_to_an_open_multiple_dose_vial_but_never_seals_it(multiple_batch, make_patient,
                                                                                practitioner):
    batch = multiple_batch()
    code = f"{batch.code}-01"
    session = treatments.record_session(practitioner, patient_id=make_patient().id, uses=[_use(code, "3")])
    voids.void_session(practitioner, session.id, reason_code="entered_in_error", reason="typed twice")
    vial = _vials(batch)[0]
    assert (vial.status, vial.remaining_ml, vial.punctured_at is not None) == ("open", 10, True)
    assert audit_rows("session.voided")[-1].new_values["returned"][0]["vial"] == code
    _balanced(batch)


def test_a_void_leaves_a_single_dose_vial_spent(make_batch, make_patient, practitioner):
    batch = make_batch()
    code = f"{batch.code}-01"
    session = treatments.record_session(practitioner, patient_id=make_patient().id, uses=[_use(code, "3")])
    voids.void_session(practitioner, session.id, reason_code="not_administered", reason="patient left")
    vial = _vials(batch)[0]
    assert (vial.status, vial.remaining_ml) == ("spent", 0)
    kept = audit_rows("session.voided")[-1].new_values["not_returned"]
    assert kept[0]["vial"] == code and "single-dose" in kept[0]["why"]
    _balanced(batch)


def test_a_void_returns_nothing_to_a_multiple_dose_vial_past_its_in_use_deadline(multiple_batch, make_patient,
                                                                                 practitioner):
    batch = multiple_batch()
    age_batch(batch, timedelta(hours=60))
    code = f"{batch.code}-01"
    session = treatments.record_session(practitioner, patient_id=make_patient().id, uses=[_use(code, "3")],
                                        performed_at=utcnow() - timedelta(hours=50))
    voids.void_session(practitioner, session.id, reason_code="duplicate", reason="entered twice")
    assert _vials(batch)[0].remaining_ml == 7
    assert "in-use deadline" in audit_rows("session.voided")[-1].new_values["not_returned"][0]["why"]
    _balanced(batch)


def test_a_use_recorded_before_vials_returns_nothing_and_says_why(make_batch, make_patient, practitioner):
    batch = make_batch()
    session = treatments.record_session(practitioner, patient_id=make_patient().id,
                                        uses=[_use(f"{batch.code}-01", "2")])
    # As the migration left it: a use pooled on the batch, with no vial.
    db.session.execute(sa.update(SessionUse).values(vial_id=None))
    db.session.commit()
    voids.void_session(practitioner, session.id, reason_code="entered_in_error", reason="typed twice")
    kept = audit_rows("session.voided")[-1].new_values["not_returned"]
    assert "before vials" in kept[0]["why"]
    _balanced(batch)


def test_correcting_the_patient_keeps_the_vial_and_moves_its_first_session(make_batch, make_patient, pharmacist):
    batch = make_batch()
    code = f"{batch.code}-01"
    wrong, right = make_patient(), make_patient()
    session = treatments.record_session(pharmacist, patient_id=wrong.id, uses=[_use(code, "2")])
    corrected = voids.correct_patient(pharmacist, session.id, patient_id=right.id, reason="wrong chart",
                                      password=PASSWORD)
    vial = _vials(batch)[0]
    assert vial.first_session_id == corrected.id
    assert db.session.scalars(sa.select(SessionUse.vial_id).where(SessionUse.session_id == corrected.id)).all() == [
        vial.id]
    _balanced(batch)
