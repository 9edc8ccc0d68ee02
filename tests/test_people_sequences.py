"""Qualifications and equipment over time: corrections, late entries, a second person, edits of master data."""

import io
from datetime import date, timedelta

import pytest
import sqlalchemy as sa
from openpyxl import load_workbook
from sitekit import add_site
from testkit import PASSWORD, audit_rows, qualify

from compounding import workbooks
from compounding.extensions import db
from compounding.models import Qualification
from compounding.services import batches, equipment, qualifications, scan, sites
from compounding.services.errors import InvalidInput, InvalidState, NotAllowed
from compounding.services.qualifications import judge

TODAY = date.today()


@pytest.fixture
def formula(stocked_formula):
    return stocked_formula


def compound(user, formula, **options):
    return batches.compound_batch(user, formula.id, 1, **options)


# --- a second person ------------------------------------------------------------------------------

def test_nobody_records_or_voids_their_own_qualification(make_user, formula):
    pharmacist = make_user("pharmacist")
    with pytest.raises(NotAllowed, match="another pharmacist or an administrator"):
        qualifications.record_qualification(pharmacist, user_id=pharmacist.id, kind="media_fill", passed_on=TODAY,
                                            result="pass")
    colleague = make_user("pharmacist")
    qualifications.record_qualification(colleague, user_id=pharmacist.id, kind="media_fill", passed_on=TODAY,
                                        result="fail")
    fail = db.session.scalar(sa.select(Qualification).where(Qualification.user_id == pharmacist.id,
                                                            Qualification.result == "fail"))
    with pytest.raises(NotAllowed, match="your own"):
        qualifications.void_qualification(pharmacist, fail.id, "typo")
    with pytest.raises(InvalidState, match="Media-fill test: failed"):
        compound(pharmacist, formula)


# --- the initial series counts occasions ----------------------------------------------------------

def test_three_passes_on_one_day_are_one_occasion_of_the_initial_series(make_user, pharmacist):
    person = make_user("technician", qualified=False)
    for _ in range(3):
        qualifications.record_qualification(pharmacist, user_id=person.id, kind="gloved_fingertip",
                                            passed_on=TODAY, result="pass", cfu=0)
    [standing] = qualifications.standings(person.id, kinds=[qualifications.get_kind("gloved_fingertip")])
    assert standing.state == "initial" and "1 of 3" in standing.text


def test_a_routine_gloved_fingertip_sampling_passes_at_3_cfu_and_fails_above(make_user, pharmacist):
    person = make_user("technician")
    qualifications.record_qualification(pharmacist, user_id=person.id, kind="gloved_fingertip", passed_on=TODAY,
                                        result="pass", cfu=3)
    with pytest.raises(InvalidInput, match="4 CFU fails a routine sampling"):
        qualifications.record_qualification(pharmacist, user_id=person.id, kind="gloved_fingertip",
                                            passed_on=TODAY, result="pass", cfu=4)


# --- master data edits -------------------------------------------------------------------------------

def test_a_new_kind_is_not_required_unless_the_admin_says_so(make_user, formula):
    technician = make_user("technician")
    kind = qualifications.create_kind(make_user("admin"), code="cleaning", name="Cleaning and disinfection")
    assert not kind.required
    assert compound(technician, formula).code


def test_a_kinds_series_cfu_and_category_3_interval_are_fixed_once_it_has_records(make_user):
    admin, pharmacist = make_user("admin"), make_user("pharmacist")
    kind = qualifications.create_kind(admin, code="aseptic_technique", name="Aseptic technique", required=True)
    qualifications.record_qualification(pharmacist, user_id=make_user("technician").id, kind="aseptic_technique",
                                        passed_on=TODAY, result="pass")
    values = {"name": "Aseptic technique", "valid_months": 6, "category3_months": 3, "initial_passes": 1,
              "counts_cfu": False, "required": True, "active": True}
    for change in ({"initial_passes": 3}, {"counts_cfu": True}, {"category3_months": 2}):
        with pytest.raises(InvalidState, match="records already made"):
            qualifications.update_kind(admin, kind.id, **{**values, **change})
    renamed = qualifications.update_kind(admin, kind.id, **{**values, "name": "Aseptic technique (ISO 5)",
                                                            "valid_months": 12})
    assert renamed.name == "Aseptic technique (ISO 5)"


# --- Category 3 is shown, not only judged at the bench ---------------------------------------------

def test_a_standing_carries_its_category_3_end(make_user):
    person = make_user("technician", qualified=False)
    qualify(person, passed_days_ago=100)
    [standing, *_] = qualifications.standings(person.id, kinds=qualifications.required_kinds())
    assert standing.state == "valid" and standing.category3_until < TODAY
    assert standing.as_dict()["category3_valid_until"] == standing.category3_until.isoformat()
    assert standing.category3_note == f"Category 3 lapsed on {standing.category3_until.isoformat()}"


# --- a failure known later reaches what was made meanwhile -------------------------------------------

def test_a_fail_recorded_late_stops_the_verification_of_a_batch_made_after_it(make_user, formula):
    technician, recorder = make_user("technician"), make_user("pharmacist")
    batch = compound(technician, formula)
    record = qualifications.record_qualification(recorder, user_id=technician.id, kind="media_fill",
                                                 passed_on=TODAY - timedelta(days=3), result="fail")
    assert [row.new_values["batches_since"] for row in audit_rows("qualification.recorded")
            if row.entity_id == record.id] == [[batch.code]]
    with pytest.raises(InvalidState, match=f"{technician.display_name} was not qualified when {batch.code} was made"):
        batches.verify_batch(make_user("pharmacist"), batch.id, PASSWORD)


def test_a_failed_calibration_recorded_late_stops_the_verification_of_a_batch_made_with_it(make_user, pharmacist,
                                                                                          formula):
    balance = equipment.create_equipment(pharmacist, code="BAL-01", kind="balance", due_on=TODAY + timedelta(days=90))
    batch = compound(make_user("technician"), formula, equipment_ids=[balance.id])
    equipment.record_calibration(pharmacist, balance.id, performed_on=TODAY - timedelta(days=1), result="fail")
    with pytest.raises(InvalidState, match=f"BAL-01 had failed its calibration when {batch.code} was made"):
        batches.verify_batch(make_user("pharmacist"), batch.id, PASSWORD)
    [row] = audit_rows("equipment.calibrated")[-1:]
    assert row.new_values["batches_since"] == [batch.code]


def test_an_older_calibration_entered_late_is_kept_without_moving_the_due_date(pharmacist):
    balance = equipment.create_equipment(pharmacist, code="BAL-01", kind="balance", due_on=TODAY + timedelta(days=90))
    equipment.record_calibration(pharmacist, balance.id, performed_on=TODAY, result="pass",
                                 next_due_on=TODAY + timedelta(days=365))
    older = equipment.record_calibration(pharmacist, balance.id, performed_on=TODAY - timedelta(days=3),
                                         result="fail")
    assert older.id and balance.due_on == TODAY + timedelta(days=365) and not balance.out_of_service


# --- codes that a scanner must read one way ------------------------------------------------------------

def test_a_location_cannot_take_an_equipment_code_nor_equipment_a_location_shaped_or_long_one(make_user, pharmacist):
    balance = equipment.create_equipment(pharmacist, code="BAL-01", kind="balance", due_on=TODAY + timedelta(days=9))
    with pytest.raises(InvalidState, match="equipment"):
        sites.create_location(make_user("admin"), balance.site_id, "Shelf", "room", code="BAL-01")
    with pytest.raises(InvalidInput, match="location"):
        equipment.create_equipment(pharmacist, code="LOC0777", kind="balance", due_on=TODAY)
    with pytest.raises(InvalidInput, match="2 to 16"):
        equipment.create_equipment(pharmacist, code="BALANCE-CLEANROOM-NORTH-01", kind="balance", due_on=TODAY)
    assert scan.resolve("BAL-01").kind == "equipment"


# --- the audit workbook follows the people pages' scope ---------------------------------------------------

def test_the_qualifications_sheet_of_one_site_lists_its_people_only(make_user, pharmacist):
    lyon = add_site("LYON")
    here = make_user("technician", qualified=False)
    there = make_user("technician", qualified=False, site_codes=["LYON"])
    for person in (here, there):
        qualifications.record_qualification(pharmacist, user_id=person.id, kind="media_fill", passed_on=TODAY,
                                            result="pass")
    out = io.BytesIO()
    workbooks.audit_workbook(out, TODAY - timedelta(days=1), TODAY, generated_by="t", clinic_name="c",
                             site_ids=[lyon.id])
    sheet = load_workbook(io.BytesIO(out.getvalue()))["Qualifications"]
    people = {row[1] for row in sheet.iter_rows(min_row=2, values_only=True) if row[1]}
    assert there.username in people and here.username not in people


def test_judging_is_pure_and_ignores_a_second_pass_on_the_same_day():
    from types import SimpleNamespace
    kind = SimpleNamespace(code="g", name="g", initial_passes=3, counts_cfu=True, valid_months=6, category3_months=3)
    records = [SimpleNamespace(passed_on=TODAY - timedelta(days=d), result="pass", cfu=0, valid_until=None,
                               voided_at=None, id=i) for i, d in enumerate((5, 5, 4))]
    assert judge(kind, records, TODAY).text.endswith("(2 of 3 passes)")


def test_the_person_page_names_the_batches_a_late_fail_reaches(client, make_user, formula):
    from testkit import sign_in

    technician, recorder = make_user("technician"), make_user("pharmacist")
    batch = compound(technician, formula)
    sign_in(client, recorder)
    page = client.post(f"/people/{technician.id}/qualifications", data={
        "kind": "media_fill", "passed_on": (TODAY - timedelta(days=2)).isoformat(), "result": "fail"},
        follow_redirects=True).get_data(as_text=True)
    assert f"compounded or verified 1 batch(es) since {(TODAY - timedelta(days=2)).isoformat()}: {batch.code}" in page
