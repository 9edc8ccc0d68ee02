"""Release tests of a batch (sterility, bacterial endotoxins): an e-signed result moves the batch on.

A batch whose category's BUD rests on tests (services.bud.TESTED_CATEGORIES) may not be
used until a pharmacist has recorded a pass for each test it owes; a fail rejects it. A
rapid result may be confirmed later by the compendial method (one result per test and
method): a fail that arrives after the batch was released holds it, for a recall.
"""

from datetime import date, timedelta

import sqlalchemy as sa

from ..extensions import db
from ..limits import NOTE_MAX, SHORT_TEXT_MAX
from ..models import Batch, BatchStatus, BatchTest, User, Vial, VialStatus
from ..models.batch import TEST_KINDS, TEST_METHODS, TEST_RESULTS
from . import audit
from .access import ensure_can
from .batches import BATCH_FIELDS, get_batch
from .bounds import checked_text
from .bud import COMPENDIAL_STERILITY_DAYS
from .clock import clinic_today
from .errors import InvalidInput, InvalidState
from .history import explained_change, record_depletion, status_before_hold, transition
from .holds import place_hold
from .ledger import move_vial
from .preparation import tests_outstanding
from .signatures import pharmacist_signs
from .sites import ensure_item_at_site
from .transaction import transactional

# Where a result may be recorded: sampled before verification, awaited after it, or a confirmation
# arriving after release (a fail then holds the batch). A rejected or discarded batch takes none.
RECORDABLE = (BatchStatus.PREPARED, BatchStatus.AWAITING_TESTS, BatchStatus.RELEASED, BatchStatus.ON_HOLD,
              BatchStatus.DEPLETED, BatchStatus.RECALLED)
# Before release: a fail rejects the batch rather than holding it.
UNRELEASED = (BatchStatus.PREPARED, BatchStatus.AWAITING_TESTS)


def _one_of(value, allowed, field: str, what: str) -> str:
    if value not in allowed:
        raise InvalidInput(f"The {what} is one of: {', '.join(allowed)}.", field=field)
    return value


def _checked_units(units_sampled) -> int:
    if isinstance(units_sampled, bool) or not isinstance(units_sampled, int | str):
        raise InvalidInput("Units sampled is a whole number, zero or more.", field="units_sampled")
    try:
        units = int(units_sampled or 0)
    except ValueError:
        raise InvalidInput("Units sampled is a whole number, zero or more.", field="units_sampled") from None
    if units < 0:
        raise InvalidInput("Units sampled is a whole number, zero or more.", field="units_sampled")
    return units


def _checked_shape(kind, result, method, lab, sampled_on, units_sampled, note) -> dict:
    """The result as typed, refused (422 naming the field) when malformed."""
    if not isinstance(sampled_on, date):
        raise InvalidInput("Give the sampling date as YYYY-MM-DD.", field="sampled_on")
    return {
        "kind": _one_of(kind, TEST_KINDS, "kind", "test"),
        "result": _one_of(result, TEST_RESULTS, "result", "result"),
        "method": _one_of(method, TEST_METHODS, "method", "method"),
        "lab": checked_text(lab, "lab", SHORT_TEXT_MAX, required="Name the laboratory that ran the test."),
        "sampled_on": sampled_on, "units_sampled": _checked_units(units_sampled),
        "note": checked_text(note, "note", NOTE_MAX),
    }


def _ensure_owed(batch: Batch, kind: str) -> None:
    """The batch owes this test and has no result for it yet (409 otherwise)."""
    if not batch.tests_required:
        raise InvalidState(f"{batch.code} needs no test result: its beyond-use date rests on no test.",
                           field="kind")
    if kind not in batch.tests_required:
        raise InvalidState(f"{batch.code} needs no {kind} test (it needs: {', '.join(batch.tests_required)}).",
                           field="kind")


def _ensure_first_of_its_method(batch: Batch, kind: str, method: str) -> None:
    earlier = db.session.scalar(sa.select(BatchTest).where(BatchTest.batch_id == batch.id, BatchTest.kind == kind,
                                                           BatchTest.method == method))
    if earlier is not None:
        raise InvalidState(f"{batch.code} already has a {kind} result by the {method} method ({earlier.result}, "
                           f"sampled {earlier.sampled_on.isoformat()}): a result is never replaced.", field="kind")


def _before_release(batch: Batch) -> bool:
    """Not yet released: prepared, awaiting tests, or held from one of those."""
    if batch.status == BatchStatus.ON_HOLD:
        return status_before_hold("batch", batch.id) in UNRELEASED
    return batch.status in UNRELEASED


def _ensure_recordable(batch: Batch, result: str) -> None:
    if batch.status not in RECORDABLE:
        raise InvalidState(f"{batch.code} is {batch.status}; it takes no more test results.")
    # A pass would release a held batch awaiting its results behind its hold's back.
    if batch.status == BatchStatus.ON_HOLD and result == "pass" and _before_release(batch):
        raise InvalidState(f"{batch.code} is on hold: release the hold before recording a pass.")


def _ensure_dates(batch: Batch, data: dict) -> None:
    """Sampled between the day preparation started and today; a compendial sterility pass read after 14 days."""
    sampled_on, today = data["sampled_on"], clinic_today()
    made_on = clinic_today(batch.preparation_started_at)
    if sampled_on < made_on:
        raise InvalidInput(f"Sampled on {sampled_on.isoformat()}, before the batch was made "
                           f"({made_on.isoformat()}).", field="sampled_on")
    if sampled_on > today:
        raise InvalidInput("The sampling date is in the future.", field="sampled_on")
    if (data["kind"], data["method"], data["result"]) == ("sterility", "compendial", "pass"):
        # USP <71>: the incubation of a compendial sterility test lasts 14 days.
        earliest = sampled_on + timedelta(days=COMPENDIAL_STERILITY_DAYS)
        if today < earliest:
            raise InvalidState(
                f"A compendial sterility test sampled on {sampled_on.isoformat()} can pass no earlier than "
                f"{earliest.isoformat()} ({COMPENDIAL_STERILITY_DAYS} days of incubation).", field="sampled_on")


def _sealed_vials(batch: Batch, units: int) -> list[Vial]:
    """The lowest-numbered sealed vials to take as samples, locked; a refusal (409) when too few are sealed."""
    if not units:
        return []
    vials = db.session.scalars(
        sa.select(Vial).where(Vial.batch_id == batch.id, Vial.status == VialStatus.SEALED)
        .order_by(Vial.number).limit(units).with_for_update().execution_options(populate_existing=True)).all()
    if len(vials) < units:
        # An opened vial is no sample: what is tested must be what was filled and sealed.
        raise InvalidState(f"{batch.code} has only {len(vials)} sealed vial{'' if len(vials) == 1 else 's'} left; "
                           f"{units} cannot be taken as samples (only sealed vials are).", field="units_sampled")
    return vials


def _take_samples(actor: User, batch: Batch, test: BatchTest, vials: list[Vial]) -> None:
    """Each sampled vial leaves the batch: `sampled`, its whole volume written off as waste in the ledger."""
    reference = f"batch_test {test.id}"
    for vial in vials:
        move_vial(vial, batch, "waste", -vial.remaining_ml, actor, reason="test_sample",
                  reference_type="batch_test", reference_id=test.id,
                  note=f"{vial.code} sampled for the {test.kind} test")
        transition(vial, "sample", actor, reason=f"sampled for the {test.kind} test", reference=reference)


def _move_on(actor: User, batch: Batch, test: BatchTest) -> None:
    """A fail rejects the batch (holds it, once released); the last pass awaited releases it while in date."""
    if test.result == "fail":
        reason = (f"{test.kind} test failed ({test.method}, {test.lab}, sampled {test.sampled_on.isoformat()})"
                  + (f": {test.note}" if test.note else ""))
        if batch.status == BatchStatus.PREPARED:
            explained_change(actor, batch, "reject", "batch.tests_failed", BATCH_FIELDS, reason)
        elif _before_release(batch):
            explained_change(actor, batch, "fail_tests", "batch.tests_failed", BATCH_FIELDS, reason)
        else:
            # Already released (perhaps injected): usable nowhere from now on; the patients are reached by a recall.
            place_hold(actor, batch, "quality_signal", f"{reason}, after release: open a recall",
                       source_type="batch_test", source_id=test.id)
    elif batch.status == BatchStatus.AWAITING_TESTS and not tests_outstanding(batch) and not batch.is_expired():
        with audit.change(actor, "batch.tests_passed", batch, BATCH_FIELDS):
            transition(batch, "pass_tests", actor, reason="every required test passed",
                       reference=f"batch_test {test.id}")


@transactional
def record_test_result(actor: User, batch_id: int, *, kind: str, result: str, method: str, lab: str,
                       sampled_on: date, password: str, units_sampled=0, note: str = "") -> BatchTest:
    """A pharmacist records, with their e-signature, one required test result of a batch.

    One result per test and method; sampled from the day preparation started to today; a
    compendial sterility pass no earlier than 14 days after sampling. Sampled units are the
    lowest-numbered sealed vials: each becomes `sampled`, its volume written off. The last
    required pass releases a batch awaiting its results (still in date); a
    fail rejects it, or holds it when it was already released.
    """
    ensure_can(actor, "batches.verify", "record test results")
    data = _checked_shape(kind, result, method, lab, sampled_on, units_sampled, note)
    batch = get_batch(batch_id, for_update=True)
    ensure_item_at_site(actor, batch, "record test results")
    _ensure_owed(batch, data["kind"])
    _ensure_first_of_its_method(batch, data["kind"], data["method"])
    _ensure_recordable(batch, data["result"])
    _ensure_dates(batch, data)
    samples = _sealed_vials(batch, data["units_sampled"])
    test = BatchTest(batch_id=batch.id, recorded_by_id=actor.id, **data)
    db.session.add(test)
    db.session.flush()
    signature = pharmacist_signs(actor, password, "test result", "batch_test", test.id, "record a test result")
    test.recorded_at = signature.signed_at
    audit.record(actor, "batch.test_recorded", "batch", batch.id, new={
        "test_id": test.id, **data, "sampled_on": data["sampled_on"].isoformat(), "signature_id": signature.id})
    _take_samples(actor, batch, test, samples)
    _move_on(actor, batch, test)
    record_depletion(actor, batch, f"sampled for the {test.kind} test", reference=f"batch_test {test.id}")
    return test


def tests_of(batch_id: int) -> list[BatchTest]:
    """A batch's recorded results, in the order of TEST_KINDS."""
    rows = db.session.scalars(sa.select(BatchTest).where(BatchTest.batch_id == batch_id)).all()
    return sorted(rows, key=lambda row: TEST_KINDS.index(row.kind))

