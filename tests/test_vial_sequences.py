"""Sequences a vial must survive: a late entry, a hold and its release, a vial held on its own, a use by
batch code beside a named vial, a part-used single-dose vial from before vials had codes."""

from datetime import timedelta

import pytest
import sqlalchemy as sa
from testkit import PASSWORD, age_batch

from compounding.extensions import db
from compounding.models import Batch, Vial
from compounding.services import holds, treatments
from compounding.services.clock import utcnow
from compounding.services.errors import DomainError
from compounding.services.ledger import move_vial


def _vials(batch):
    db.session.expire_all()
    return list(db.session.scalars(sa.select(Vial).where(Vial.batch_id == batch.id).order_by(Vial.number)))


@pytest.fixture
def multiple_batch(make_shared_batch):
    """A released batch of three 10 mL multiple-dose vials (in use for 48 hours once punctured, unless told)."""
    return lambda units=3, hours="48": make_shared_batch(units, hours=hours)


def test_a_late_entry_may_not_pull_the_puncture_back_so_that_a_later_use_falls_past_the_in_use_deadline(
        multiple_batch, make_patient, practitioner):
    batch = multiple_batch(hours="24")
    age_batch(batch, timedelta(hours=40))
    code = f"{batch.code}-01"
    # Punctured now, used now: fine.
    treatments.record_session(practitioner, patient_id=make_patient().id, uses=[{"vial_code": code, "volume_ml": "1"}])
    # A late entry 30 h back becomes the first puncture: the deadline moves to 6 h ago, so the use just
    # made was given 6 h past the vial's in-use period. It must be refused (or the later use flagged).
    late_at = utcnow() - timedelta(hours=30)
    try:
        treatments.record_session(practitioner, patient_id=make_patient().id,
                                  uses=[{"vial_code": code, "volume_ml": "1"}], performed_at=late_at)
    except DomainError:
        return
    vial = _vials(batch)[0]
    deadline = vial.in_use_until(db.session.get(Batch, batch.id).beyond_use_at)
    pytest.fail(f"accepted: punctured_at={vial.punctured_at}, in-use deadline now {deadline}, "
                "yet the vial was used after it (the session recorded first)")


def test_a_legacy_part_used_single_dose_vial_is_not_given_to_another_patient(make_batch, make_patient, practitioner):
    batch = make_batch(units=2)  # two single-dose 10 mL vials
    first, second = _vials(batch)
    # As the migration leaves a batch that was part used before vials: vial 02 `open`, legacy, punctured at the
    # batch's last (pooled) use, no first session.
    move_vial(second, db.session.get(Batch, batch.id), "use", "-6", practitioner)
    db.session.execute(sa.update(Vial).where(Vial.id == second.id).values(
        status="open", legacy=True, punctured_at=utcnow() - timedelta(hours=2)))
    db.session.commit()
    row = treatments.record_session(practitioner, patient_id=make_patient().id,
                                    uses=[{"batch_code": batch.code, "volume_ml": "1"}])
    # A single-dose vial already punctured for another patient must not serve a new one.
    assert row.vial_codes != [second.code], (
        f"a new patient's use by batch code was drawn from the punctured single-dose vial {second.code}")


def test_releasing_the_hold_never_makes_a_punctured_vial_sealed_again(multiple_batch, make_patient, practitioner,
                                                                      pharmacist):
    batch = multiple_batch(hours="48")
    age_batch(batch, timedelta(hours=10))
    code = f"{batch.code}-01"
    holds.quality_signal_hold(pharmacist, "batch", batch.id, "nodules reported")
    # A session performed 3 h ago (before the hold), entered now: accepted, it punctures vial 01.
    treatments.record_session(practitioner, patient_id=make_patient().id,
                              uses=[{"vial_code": code, "volume_ml": "1"}], performed_at=utcnow() - timedelta(hours=3))
    holds.release_hold(pharmacist, "batch", batch.id, "quality_signal", "checked: no issue", PASSWORD)
    vial = _vials(batch)[0]
    assert vial.punctured_at is not None and vial.remaining_ml < vial.volume_ml
    assert vial.status == "open", f"punctured vial came back as {vial.status!r}"


def test_a_use_by_batch_code_skips_a_vial_held_on_its_own_and_takes_the_next_sealed_one(
        multiple_batch, make_patient, practitioner, pharmacist):
    batch = multiple_batch(hours="48")
    code = f"{batch.code}-01"
    session = treatments.record_session(practitioner, patient_id=make_patient().id,
                                        uses=[{"vial_code": code, "volume_ml": "1"}])
    treatments.record_adverse_event(practitioner, session_id=session.id, type="nodule", severity="mild")
    # The batch's hold is released; vial 01 keeps its own (DESIGN 10.1.3). Vials 02 and 03 are sealed and usable.
    holds.release_hold(pharmacist, "batch", batch.id, "adverse_event", "investigated: isolated", PASSWORD)
    assert [v.status for v in _vials(batch)] == ["on_hold", "sealed", "sealed"]
    row = treatments.record_session(practitioner, patient_id=make_patient().id,
                                    uses=[{"batch_code": batch.code, "volume_ml": "1"}])
    assert row.vial_codes == [f"{batch.code}-02"]


def test_a_use_by_batch_code_listed_before_a_named_vial_does_not_crowd_that_vial_out(
        make_batch, make_patient, practitioner):
    batch = make_batch(units=2)  # single-dose 10 mL vials; vial 02 is sealed and could take the first use
    row = treatments.record_session(practitioner, patient_id=make_patient().id, uses=[
        {"batch_code": batch.code, "volume_ml": "5"}, {"vial_code": f"{batch.code}-01", "volume_ml": "8"}])
    assert row.vial_codes == [f"{batch.code}-02", f"{batch.code}-01"]
