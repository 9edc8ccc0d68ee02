"""Release tests of a batch: a tested category waits for its e-signed results before any use."""

from datetime import timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa
from testkit import PASSWORD, audit_rows, count_rows, fresh

from compounding.extensions import db
from compounding.models import Batch, BatchTest, Signature, StatusChange, StockMovement, Vial
from compounding.services import batches
from compounding.services.batch_tests import record_test_result
from compounding.services.bud import COMPENDIAL_STERILITY_DAYS
from compounding.services.clock import clinic_today, utcnow
from compounding.services.errors import InvalidInput, InvalidState, NotAllowed, SignatureRejected
from compounding.services.ledger import ledger_balance

TESTED = "category_2_aseptic_sterility_tested"


@pytest.fixture
def tested_formula(make_formula, make_ingredient, make_lot):
    """A sterility-tested formula, 2 mL of hyaluronic acid made up to a 10 mL vial with saline; stocked.

    `sterile=False` makes the hyaluronic acid a non-sterile starting component (endotoxins owed too).
    """

    made = []

    def make(*, sterile=True, **overrides):
        made.append(len(made) + 1)
        active = make_ingredient(name=f"Hyaluronic acid {made[-1]}", unit="mL", strength="20 mg/mL", sterile=sterile)
        saline = make_ingredient(name=f"Sodium chloride 0.9 % {made[-1]}", kind="diluent", unit="mL", strength="",
                                 sterile=True, vehicle=True)
        formula = make_formula([(active, "2"), (saline, "8")], bud_category=TESTED, **overrides)
        make_lot(active, quantity="1000")
        make_lot(saline, quantity="1000")
        return formula

    return make


@pytest.fixture
def compound(technician):
    def make(formula, units=4, **kwargs):
        return batches.compound_batch(technician, formula.id, units, **kwargs)

    return make


@pytest.fixture
def verifier(make_user):
    return make_user("pharmacist", display_name="Vera Verifier")


def _result(actor, batch, **overrides):
    data = {"kind": "sterility", "result": "pass", "method": "rapid", "lab": "North Lab",
            "sampled_on": clinic_today(), "password": PASSWORD}
    data.update(overrides)
    return record_test_result(actor, batch.id, **data)


def _saved() -> tuple[int, int, int]:
    return count_rows(BatchTest), count_rows(StockMovement), count_rows(StatusChange)


def test_verifying_a_tested_batch_leaves_it_awaiting_tests_and_unusable(tested_formula, compound, verifier):
    batch = compound(tested_formula())
    assert batch.tests_required == ("sterility",)
    batches.verify_batch(verifier, batch.id, PASSWORD)

    batch = fresh(Batch, batch.id)
    assert batch.status == "awaiting_tests"
    assert batches.unusable_reasons(batch) == ["not released: awaiting test results (sterility)"]


def test_a_signed_sterility_pass_releases_a_batch_awaiting_its_result(tested_formula, compound, verifier):
    batch = compound(tested_formula())
    batches.verify_batch(verifier, batch.id, PASSWORD)

    test = _result(verifier, batch, note="  plate read by J. Doe  ")

    batch = fresh(Batch, batch.id)
    assert batch.status == "released"
    assert batches.unusable_reasons(batch) == []
    assert (test.kind, test.result, test.method, test.lab, test.note, test.recorded_by_id) == (
        "sterility", "pass", "rapid", "North Lab", "plate read by J. Doe", verifier.id)
    signature = db.session.scalar(sa.select(Signature).where(Signature.entity_type == "batch_test",
                                                             Signature.entity_id == test.id))
    assert (signature.signer_id, signature.meaning) == (verifier.id, "test result")
    assert [row.new_values["kind"] for row in audit_rows("batch.test_recorded", "batch")] == ["sterility"]
    assert [row.entity_id for row in audit_rows("batch.tests_passed", "batch")] == [batch.id]
    last = db.session.scalars(sa.select(StatusChange).where(StatusChange.entity_type == "batch",
                                                            StatusChange.entity_id == batch.id)
                              .order_by(StatusChange.id.desc())).first()
    assert (last.from_status, last.to_status) == ("awaiting_tests", "released")


def test_a_non_sterile_component_makes_the_batch_wait_for_endotoxins_too(tested_formula, compound, verifier):
    batch = compound(tested_formula(sterile=False))
    assert batch.tests_required == ("sterility", "endotoxin")
    batches.verify_batch(verifier, batch.id, PASSWORD)

    _result(verifier, batch, kind="sterility")
    assert fresh(Batch, batch.id).status == "awaiting_tests"
    assert batches.unusable_reasons(fresh(Batch, batch.id)) == [
        "not released: awaiting test results (sterility, endotoxin)"]
    _result(verifier, batch, kind="endotoxin")
    assert fresh(Batch, batch.id).status == "released"


def test_results_recorded_before_verification_let_verification_release_at_once(tested_formula, compound,
                                                                             verifier, pharmacist):
    batch = compound(tested_formula())
    _result(pharmacist, batch)
    assert fresh(Batch, batch.id).status == "prepared"

    batches.verify_batch(verifier, batch.id, PASSWORD)
    assert fresh(Batch, batch.id).status == "released"


def test_a_failed_test_rejects_a_batch_awaiting_results_with_the_reason(tested_formula, compound, verifier):
    batch = compound(tested_formula())
    batches.verify_batch(verifier, batch.id, PASSWORD)

    _result(verifier, batch, result="fail", note="growth on day 3")

    batch = fresh(Batch, batch.id)
    assert batch.status == "rejected"
    assert batch.status_reason.startswith("sterility test failed (rapid, North Lab, sampled ")
    assert batch.status_reason.endswith("growth on day 3")
    assert batches.unusable_reasons(batch)[0].startswith("rejected: sterility test failed")
    assert [row.entity_id for row in audit_rows("batch.tests_failed", "batch")] == [batch.id]


def test_a_failed_test_before_verification_rejects_the_prepared_batch(tested_formula, compound, pharmacist,
                                                                     verifier):
    batch = compound(tested_formula())
    _result(pharmacist, batch, result="fail")

    assert fresh(Batch, batch.id).status == "rejected"
    with pytest.raises(InvalidState):
        batches.verify_batch(verifier, batch.id, PASSWORD)


def test_a_result_for_a_batch_that_needs_none_is_refused_and_nothing_saved(make_batch, pharmacist):
    batch = make_batch()
    before = _saved()

    with pytest.raises(InvalidState, match="needs no test result"):
        _result(pharmacist, batch)
    assert _saved() == before


def test_a_test_the_batch_does_not_need_is_refused(tested_formula, compound, pharmacist):
    batch = compound(tested_formula())
    before = _saved()

    with pytest.raises(InvalidState, match="needs no endotoxin test"):
        _result(pharmacist, batch, kind="endotoxin")
    assert _saved() == before


def test_a_second_result_for_the_same_test_is_refused_before_the_unique_key(tested_formula, compound,
                                                                            pharmacist):
    batch = compound(tested_formula(sterile=False))
    _result(pharmacist, batch)
    before = _saved()

    with pytest.raises(InvalidState, match="already has a sterility result by the rapid method"):
        _result(pharmacist, batch, result="fail")
    assert _saved() == before
    assert fresh(Batch, batch.id).status == "prepared"


def test_a_sample_taken_before_the_batch_was_made_or_in_the_future_is_refused(tested_formula, compound,
                                                                              pharmacist):
    batch = compound(tested_formula())
    before = _saved()

    with pytest.raises(InvalidInput, match="before the batch was made") as refused:
        _result(pharmacist, batch, sampled_on=clinic_today() - timedelta(days=1))
    assert refused.value.field == "sampled_on"
    with pytest.raises(InvalidInput, match="future"):
        _result(pharmacist, batch, sampled_on=clinic_today() + timedelta(days=1))
    assert _saved() == before


def test_the_batch_is_made_on_the_day_its_preparation_started(tested_formula, compound, pharmacist):
    started = utcnow() - timedelta(days=1, hours=1)
    batch = compound(tested_formula(), preparation_started_at=started)

    _result(pharmacist, batch, sampled_on=clinic_today(started))
    assert count_rows(BatchTest) == 1


def test_a_compendial_sterility_pass_cannot_be_recorded_before_fourteen_days(tested_formula, compound,
                                                                            verifier):
    made = utcnow() - timedelta(days=COMPENDIAL_STERILITY_DAYS + 2)
    batch = compound(tested_formula(), compounded_at=made)
    batches.verify_batch(verifier, batch.id, PASSWORD)
    sampled = clinic_today() - timedelta(days=COMPENDIAL_STERILITY_DAYS - 1)
    before = _saved()

    with pytest.raises(InvalidState) as refused:
        _result(verifier, batch, method="compendial", sampled_on=sampled)
    earliest = sampled + timedelta(days=COMPENDIAL_STERILITY_DAYS)
    assert f"no earlier than {earliest.isoformat()}" in refused.value.message
    assert _saved() == before

    _result(verifier, batch, method="compendial", sampled_on=sampled - timedelta(days=1))
    assert fresh(Batch, batch.id).status == "released"


def test_a_compendial_fail_or_a_rapid_pass_may_come_before_fourteen_days(tested_formula, compound, pharmacist):
    sterile, other = compound(tested_formula()), compound(tested_formula(sterile=False))

    _result(pharmacist, sterile, method="compendial", result="fail")
    _result(pharmacist, other, method="rapid", result="pass")
    assert count_rows(BatchTest) == 2


@pytest.mark.parametrize(("field", "value"), [
    ("kind", "pyrogen"), ("result", "maybe"), ("method", "visual"), ("lab", "  "), ("sampled_on", "yesterday"),
    ("units_sampled", -1), ("units_sampled", "two"),
])
def test_malformed_results_are_refused_422_naming_the_field(tested_formula, compound, pharmacist, field, value):
    batch = compound(tested_formula())
    before = _saved()

    with pytest.raises(InvalidInput) as refused:
        _result(pharmacist, batch, **{field: value})
    assert refused.value.field == field
    assert _saved() == before


def test_only_a_pharmacist_signing_with_their_own_password_records_a_result(tested_formula, compound,
                                                                           pharmacist, technician):
    batch = compound(tested_formula())
    before = _saved()

    with pytest.raises(NotAllowed):
        _result(technician, batch)
    with pytest.raises(SignatureRejected):
        _result(pharmacist, batch, password="wrong")
    assert _saved() == before
    assert fresh(Batch, batch.id).status == "prepared"


def test_units_taken_as_samples_leave_the_batch_through_the_ledger(tested_formula, compound, verifier):
    batch = compound(tested_formula(), units=4)
    batches.verify_batch(verifier, batch.id, PASSWORD)

    _result(verifier, batch, units_sampled=2)

    batch = fresh(Batch, batch.id)
    assert batch.remaining_volume_ml == Decimal("20")
    assert ledger_balance(batch_id=batch.id) == Decimal("20")
    waste = db.session.scalars(sa.select(StockMovement).where(StockMovement.batch_id == batch.id,
                                                              StockMovement.kind == "waste")
                               .order_by(StockMovement.id)).all()
    vials = {v.id: v for v in db.session.scalars(sa.select(Vial).where(Vial.batch_id == batch.id))}
    assert [(vials[w.vial_id].number, w.quantity, w.reason) for w in waste] == [
        (1, Decimal("-10"), "test_sample"), (2, Decimal("-10"), "test_sample")]
    assert db.session.scalar(sa.select(BatchTest.units_sampled)) == 2


def test_the_lowest_numbered_sealed_vials_become_samples_each_with_its_history_row(tested_formula, compound,
                                                                                   verifier):
    batch = compound(tested_formula(), units=4)
    batches.verify_batch(verifier, batch.id, PASSWORD)

    test = _result(verifier, batch, units_sampled=2)

    vials = db.session.scalars(sa.select(Vial).where(Vial.batch_id == batch.id).order_by(Vial.number)).all()
    assert [(v.number, v.status, v.remaining_ml) for v in vials] == [
        (1, "sampled", 0), (2, "sampled", 0), (3, "sealed", Decimal("10")), (4, "sealed", Decimal("10"))]
    sampled = db.session.scalars(sa.select(StatusChange).where(
        StatusChange.entity_type == "vial", StatusChange.to_status == "sampled").order_by(StatusChange.id)).all()
    assert [row.entity_id for row in sampled] == [vials[0].id, vials[1].id]
    assert all(str(test.id) in row.reference for row in sampled)
    assert fresh(Batch, batch.id).remaining_volume_ml == sum(v.remaining_ml for v in vials)


def test_an_opened_vial_is_never_taken_as_a_sample(tested_formula, compound, verifier):
    batch = compound(tested_formula(), units=3)
    first = db.session.scalar(sa.select(Vial).where(Vial.batch_id == batch.id, Vial.number == 1))
    first.status = "open"
    db.session.commit()

    _result(verifier, batch, units_sampled=1)

    statuses = db.session.execute(sa.select(Vial.number, Vial.status).where(Vial.batch_id == batch.id)
                                  .order_by(Vial.number)).all()
    assert [tuple(row) for row in statuses] == [(1, "open"), (2, "sampled"), (3, "sealed")]


def test_more_samples_than_sealed_vials_are_refused_naming_the_sealed_count(tested_formula, compound, verifier):
    batch = compound(tested_formula(), units=3)
    db.session.execute(sa.update(Vial).where(Vial.batch_id == batch.id, Vial.number < 3).values(status="open"))
    db.session.commit()
    before = _saved()

    with pytest.raises(InvalidState, match="only 1 sealed vial"):
        _result(verifier, batch, units_sampled=2)
    assert _saved() == before


def test_more_sample_units_than_the_batch_has_left_are_refused(tested_formula, compound, pharmacist):
    batch = compound(tested_formula(), units=2)
    before = _saved()

    with pytest.raises(InvalidState, match="only 2 sealed vials"):
        _result(pharmacist, batch, units_sampled=3)
    assert _saved() == before
    assert fresh(Batch, batch.id).remaining_volume_ml == Decimal("20")


def test_a_held_batch_takes_a_fail_but_not_a_pass(tested_formula, compound, verifier):
    from compounding.services.holds import quality_signal_hold

    passing, failing = compound(tested_formula()), compound(tested_formula())
    for batch in (passing, failing):
        batches.verify_batch(verifier, batch.id, PASSWORD)
        quality_signal_hold(verifier, "batch", batch.id, "two nodules reported")
    before = _saved()

    with pytest.raises(InvalidState, match="release the hold before recording a pass"):
        _result(verifier, passing)
    assert _saved() == before
    _result(verifier, failing, result="fail")
    assert (fresh(Batch, passing.id).status, fresh(Batch, failing.id).status) == ("on_hold", "rejected")


def test_a_compendial_fail_after_a_rapid_pass_holds_the_released_batch_for_a_recall(tested_formula, compound,
                                                                                    verifier, practitioner,
                                                                                    make_patient):
    from compounding.services import treatments
    from compounding.services.holds import hold_texts

    batch = compound(tested_formula())
    batches.verify_batch(verifier, batch.id, PASSWORD)
    _result(verifier, batch)  # rapid pass: released, then injected
    treatments.record_session(practitioner, patient_id=make_patient().id,
                              uses=[{"batch_code": batch.code, "volume_ml": "1"}])
    _result(verifier, batch, method="compendial", result="fail", sampled_on=clinic_today())

    batch = fresh(Batch, batch.id)
    assert batch.status == "on_hold"
    assert any("sterility test failed (compendial" in text and "open a recall" in text
               for text in hold_texts("batch", batch.id))
    assert any("on hold" in reason for reason in batches.unusable_reasons(batch))
    with pytest.raises(InvalidState, match="already has a sterility result by the compendial method"):
        _result(verifier, batch, method="compendial", result="pass", sampled_on=clinic_today())


def test_a_pass_for_a_batch_past_its_bud_records_the_result_but_does_not_release_it(tested_formula, compound,
                                                                                   verifier):
    batch = compound(tested_formula())
    batches.verify_batch(verifier, batch.id, PASSWORD)
    held = fresh(Batch, batch.id)
    held.beyond_use_at = utcnow() - timedelta(minutes=1)
    db.session.commit()

    _result(verifier, batch)
    assert fresh(Batch, batch.id).status == "awaiting_tests"
