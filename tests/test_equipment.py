"""Equipment (DESIGN 10.6): registration, calibrations, and the check at the bench."""

from datetime import date, timedelta

import pytest
import sqlalchemy as sa
from sitekit import add_site
from testkit import audit_rows

from compounding.extensions import db
from compounding.models import Batch, BatchEquipment, Calibration, Equipment
from compounding.services import batches, equipment
from compounding.services.errors import InvalidInput, InvalidState, NotAllowed

TODAY = date.today()


@pytest.fixture
def balance(pharmacist):
    return equipment.create_equipment(pharmacist, code="bal-01", kind="balance", name="Analytical balance",
                                      due_on=TODAY + timedelta(days=90), serial_number="SN-1")


def test_registering_keeps_an_upper_case_code_and_audits_it(balance):
    assert balance.code == "BAL-01" and balance.site_id == db.session.scalar(sa.text("SELECT id FROM sites"))
    [row] = audit_rows("equipment.created")
    assert row.new_values["code"] == "BAL-01" and row.new_values["kind"] == "balance"


@pytest.mark.parametrize("code, error, message", [
    ("BAL-01", InvalidState, "is taken"),
    ("bal-01 ", InvalidState, "is taken"),
    ("LOC0001", InvalidInput, "storage location's code"),
    ("LOC0999", InvalidInput, "storage location's code"),
    ("L000123", InvalidInput, "looks like a lot"),
    ("B2612070001", InvalidInput, "looks like a lot"),
    ("1BAL", InvalidInput, "starting with a letter"),
    ("BAL 02", InvalidInput, "upper-case letters"),
    ("", InvalidInput, "Give the equipment a code"),
])
def test_codes_that_collide_or_misread_are_refused(pharmacist, balance, code, error, message):
    with pytest.raises(error, match=message):
        equipment.create_equipment(pharmacist, code=code, kind="balance", due_on=TODAY)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Equipment)) == 1


def test_technicians_cannot_register_equipment(technician):
    with pytest.raises(NotAllowed):
        equipment.create_equipment(technician, code="HOOD-1", kind="hood", due_on=TODAY)


def test_a_passed_calibration_moves_the_due_date_and_a_failed_one_takes_it_out_of_service(pharmacist, balance):
    equipment.record_calibration(pharmacist, balance.id, performed_on=TODAY, result="pass",
                                 next_due_on=TODAY + timedelta(days=365), performed_by="Metrology Ltd",
                                 certificate_number="C-42")
    assert balance.due_on == TODAY + timedelta(days=365) and not balance.out_of_service
    equipment.record_calibration(pharmacist, balance.id, performed_on=TODAY, result="fail")
    assert balance.out_of_service and balance.due_on == TODAY + timedelta(days=365)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Calibration)) == 2
    assert [r.new_values["result"] for r in audit_rows("equipment.calibrated")] == ["pass", "fail"]


@pytest.mark.parametrize("values, message", [
    ({"performed_on": TODAY + timedelta(days=1), "result": "pass", "next_due_on": TODAY + timedelta(days=9)},
     "in the future"),
    ({"performed_on": TODAY, "result": "pass"}, "says when the next one is due"),
    ({"performed_on": TODAY, "result": "pass", "next_due_on": TODAY}, "due after this one"),
])
def test_bad_calibrations_are_refused(pharmacist, balance, values, message):
    with pytest.raises(InvalidInput, match=message):
        equipment.record_calibration(pharmacist, balance.id, **values)
    assert balance.due_on == TODAY + timedelta(days=90)


def test_an_older_calibration_entered_late_is_kept_and_does_not_set_the_due_date(pharmacist, balance):
    equipment.record_calibration(pharmacist, balance.id, performed_on=TODAY, result="pass",
                                 next_due_on=TODAY + timedelta(days=365))
    older = equipment.record_calibration(pharmacist, balance.id, performed_on=TODAY - timedelta(days=30),
                                         result="pass", next_due_on=TODAY + timedelta(days=30))
    assert older.id and balance.due_on == TODAY + timedelta(days=365)
    assert audit_rows("equipment.calibrated")[-1].new_values["latest"] is False


def test_a_site_with_equipment_requires_it_and_the_batch_record_copies_it(technician, balance, stocked_formula):
    with pytest.raises(InvalidInput, match="Scan or choose the equipment used"):
        batches.compound_batch(technician, stocked_formula.id, 1)
    batch = batches.compound_batch(technician, stocked_formula.id, 1, equipment_ids=[balance.id])
    [used] = db.session.scalars(sa.select(BatchEquipment).where(BatchEquipment.batch_id == batch.id))
    assert (used.code, used.kind, used.due_on) == ("BAL-01", "balance", balance.due_on)
    [row] = audit_rows("batch.compounded")
    assert row.new_values["equipment"] == [{"code": "BAL-01", "kind": "balance",
                                            "due_on": balance.due_on.isoformat()}]


def test_overdue_equipment_cannot_be_chosen(technician, pharmacist, stocked_formula):
    late = equipment.create_equipment(pharmacist, code="BAL-02", kind="balance", name="Old balance",
                                      due_on=TODAY - timedelta(days=1))
    with pytest.raises(InvalidState) as refused:
        batches.compound_batch(technician, stocked_formula.id, 1, equipment_ids=[late.id])
    assert f"BAL-02 (Old balance) was due for calibration on {late.due_on.isoformat()}" in refused.value.message
    assert refused.value.field == "equipment_ids"
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Batch)) == 0


def test_equipment_due_today_is_still_usable_and_out_of_service_is_not(technician, pharmacist, stocked_formula):
    today = equipment.create_equipment(pharmacist, code="HOOD-1", kind="hood", due_on=TODAY)
    assert batches.compound_batch(technician, stocked_formula.id, 1, equipment_ids=[today.id])
    equipment.record_calibration(pharmacist, today.id, performed_on=TODAY, result="fail")
    with pytest.raises(InvalidState, match="out of service"):
        batches.compound_batch(technician, stocked_formula.id, 1, equipment_ids=[today.id])


def test_equipment_of_another_site_is_refused(technician, make_user, stocked_formula):
    lyon = add_site("LYON")
    admin = make_user("admin", all_sites=True)
    there = equipment.create_equipment(admin, code="BAL-LY", kind="balance", due_on=TODAY + timedelta(days=9),
                                       site_id=lyon.id)
    with pytest.raises(InvalidState, match="registered at another site"):
        batches.compound_batch(technician, stocked_formula.id, 1, equipment_ids=[there.id])


def test_unknown_and_malformed_ids_are_refused(technician, balance, stocked_formula):
    with pytest.raises(InvalidInput, match="No equipment 999"):
        batches.compound_batch(technician, stocked_formula.id, 1, equipment_ids=[balance.id, 999])
    with pytest.raises(InvalidInput, match="whole numbers"):
        batches.compound_batch(technician, stocked_formula.id, 1, equipment_ids=["BAL-01"])
