"""Qualified people (DESIGN 10.6): recording results, judging standing, refusing compounding and verifying."""

from datetime import date, timedelta
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from testkit import PASSWORD, audit_rows

from compounding.extensions import db
from compounding.models import Batch, Qualification, QualificationKind
from compounding.services import batches, qualifications
from compounding.services.errors import InvalidInput, InvalidState, NotAllowed
from compounding.services.qualifications import add_months, judge

TODAY = date.today()


def kind(code="media_fill", *, initial=1, cfu=False, months=6, months3=3):
    return SimpleNamespace(code=code, name=code.replace("_", " "), initial_passes=initial, counts_cfu=cfu,
                           valid_months=months, category3_months=months3)


def rec(passed_on, result="pass", cfu=None, valid_until=None, voided=False, id=None):
    return SimpleNamespace(passed_on=passed_on, result=result, cfu=cfu, valid_until=valid_until,
                           voided_at=object() if voided else None, id=id)


# --- the pure rule -------------------------------------------------------------------------------

def test_add_months_keeps_the_day_or_the_months_last():
    assert add_months(date(2026, 8, 31), 6) == date(2027, 2, 28)
    assert add_months(date(2027, 8, 31), 6) == date(2028, 2, 29)
    assert add_months(date(2026, 11, 15), 3) == date(2027, 2, 15)


def test_a_pass_stands_until_its_end_and_is_due_in_the_last_30_days():
    day = date(2026, 12, 1)
    assert judge(kind(), [rec(date(2026, 11, 1), valid_until=date(2027, 5, 1))], day).state == "valid"
    assert judge(kind(), [rec(date(2026, 6, 20), valid_until=date(2026, 12, 20))], day).state == "due_soon"
    lapsed = judge(kind(), [rec(date(2026, 5, 1), valid_until=date(2026, 11, 1))], day)
    assert lapsed.state == "lapsed" and "lapsed on 2026-11-01" in lapsed.text


def test_category_3_needs_a_pass_within_its_shorter_interval():
    day = date(2026, 12, 1)
    passed = [rec(date(2026, 8, 15), valid_until=date(2027, 2, 15))]
    assert judge(kind(), passed, day, category="category_2_terminal").state == "valid"
    assert judge(kind(), passed, day, category="category_3_aseptic_tested").state == "lapsed"


def test_a_fail_suspends_at_once_until_a_later_pass():
    day = date(2026, 12, 1)
    records = [rec(date(2026, 11, 1), valid_until=date(2027, 5, 1), id=1), rec(date(2026, 11, 20), "fail", id=2)]
    failed = judge(kind(), records, day)
    assert failed.state == "failed" and "failed on 2026-11-20" in failed.text
    records.append(rec(date(2026, 11, 25), valid_until=date(2027, 5, 25), id=3))
    assert judge(kind(), records, day).state == "valid"


def test_a_late_entry_of_an_earlier_pass_does_not_lift_a_later_fail():
    day = date(2026, 12, 1)
    records = [rec(date(2026, 11, 20), "fail", id=1), rec(date(2026, 11, 10), valid_until=date(2027, 5, 10), id=2)]
    assert judge(kind(), records, day).state == "failed"


def test_gloved_fingertip_qualifies_after_three_passes_at_zero_cfu_in_a_row():
    gft = kind("gloved_fingertip", initial=3, cfu=True)
    day = date(2026, 12, 1)
    first = [rec(date(2026, 11, 1), cfu=0, id=1), rec(date(2026, 11, 2), cfu=0, id=2)]
    standing = judge(gft, first, day)
    assert standing.state == "initial" and "2 of 3" in standing.text
    broken = [*first, rec(date(2026, 11, 3), "fail", cfu=4, id=3), rec(date(2026, 11, 4), cfu=0, id=4)]
    assert judge(gft, broken, day).text.endswith("(1 of 3 passes)")
    done = [*first, rec(date(2026, 11, 3), cfu=0, valid_until=date(2027, 5, 3), id=3)]
    assert judge(gft, done, day).state == "valid"


def test_voided_records_and_records_after_the_day_do_not_count():
    day = date(2026, 12, 1)
    assert judge(kind(), [rec(date(2026, 11, 1), valid_until=date(2027, 5, 1), voided=True)], day).state == "missing"
    assert judge(kind(), [rec(date(2026, 12, 2), valid_until=date(2027, 6, 2))], day).state == "missing"


# --- recording -----------------------------------------------------------------------------------

@pytest.fixture
def person(make_user):
    return make_user("technician", qualified=False)


def test_recording_a_pass_writes_the_record_and_an_audit_row_with_its_default_end(pharmacist, person):
    passed = TODAY - timedelta(days=3)
    record = qualifications.record_qualification(pharmacist, user_id=person.id, kind="media_fill",
                                                 passed_on=passed, result="pass", assessor="QA lead")
    assert record.valid_until == add_months(passed, 6)
    [row] = audit_rows("qualification.recorded")
    assert row.new_values["user"] == person.username and row.new_values["result"] == "pass"
    assert row.actor_id == pharmacist.id


@pytest.mark.parametrize("changes, field, message", [
    ({"passed_on": TODAY + timedelta(days=1)}, "passed_on", "in the future"),
    ({"valid_until": TODAY - timedelta(days=10)}, "valid_until", "not after the day it was passed"),
    ({"valid_until": TODAY - timedelta(days=3)}, "valid_until", "not after the day it was passed"),
    ({"valid_until": TODAY + timedelta(days=400)}, "valid_until", "at most 6 months"),
    ({"result": "maybe"}, "result", "pass or fail"),
    ({"result": "fail", "valid_until": TODAY + timedelta(days=30)}, "valid_until", "valid for nothing"),
    ({"cfu": 2}, "cfu", "counts no colony-forming units"),
])
def test_bad_records_are_refused_and_nothing_is_stored(pharmacist, person, changes, field, message):
    values = {"user_id": person.id, "kind": "media_fill", "passed_on": TODAY - timedelta(days=3), "result": "pass",
              **changes}
    with pytest.raises(InvalidInput) as refused:
        qualifications.record_qualification(pharmacist, **values)
    assert refused.value.field == field and message in refused.value.message
    mine = sa.select(sa.func.count()).select_from(Qualification).where(Qualification.user_id == person.id)
    assert db.session.scalar(mine) == 0 and audit_rows("qualification.recorded") == []


def test_gloved_fingertip_needs_a_count_and_zero_cfu_while_initial(pharmacist, person):
    base = {"user_id": person.id, "kind": "gloved_fingertip", "passed_on": TODAY - timedelta(days=5)}
    with pytest.raises(InvalidInput, match="colony-forming units counted"):
        qualifications.record_qualification(pharmacist, result="pass", **base)
    with pytest.raises(InvalidInput, match="1 CFU fails an initial qualification"):
        qualifications.record_qualification(pharmacist, result="pass", cfu=1, **base)
    for days in (5, 4, 3):
        qualifications.record_qualification(pharmacist, user_id=person.id, kind="gloved_fingertip",
                                            passed_on=TODAY - timedelta(days=days), result="pass", cfu=0)
    # Qualified: a routine sampling passes up to 3 CFU (USP <797> action level: more than 3).
    qualifications.record_qualification(pharmacist, result="pass", cfu=3, **{**base, "passed_on": TODAY})
    with pytest.raises(InvalidInput, match="4 CFU fails a routine sampling"):
        qualifications.record_qualification(pharmacist, result="pass", cfu=4, **{**base, "passed_on": TODAY})


def test_only_pharmacists_and_admins_record_and_only_admins_add_kinds(make_user, person):
    with pytest.raises(NotAllowed):
        qualifications.record_qualification(make_user("technician"), user_id=person.id, kind="media_fill",
                                            passed_on=TODAY, result="pass")
    with pytest.raises(NotAllowed):
        qualifications.create_kind(make_user("pharmacist"), code="aseptic_technique", name="Aseptic technique")
    kind = qualifications.create_kind(make_user("admin"), code="Aseptic_Technique", name="Aseptic technique",
                                      valid_months=12, category3_months=6)
    # Not required until the admin says so: a new kind does not stop every bench in the chain at once.
    assert kind.code == "aseptic_technique" and not kind.required and not kind.builtin
    with pytest.raises(InvalidState, match="exists already"):
        qualifications.create_kind(make_user("admin"), code="aseptic_technique", name="Again")


def test_a_voided_record_stops_counting_and_stays(pharmacist, person):
    record = qualifications.record_qualification(pharmacist, user_id=person.id, kind="media_fill",
                                                 passed_on=TODAY, result="fail")
    qualifications.void_qualification(pharmacist, record.id, "Entered for the wrong person")
    assert db.session.get(Qualification, record.id).voided_at is not None
    [standing] = qualifications.standings(person.id, kinds=[qualifications.get_kind("media_fill")])
    assert standing.state == "missing"
    with pytest.raises(InvalidState, match="already voided"):
        qualifications.void_qualification(pharmacist, record.id, "again")


# --- compounding and verifying -------------------------------------------------------------------

def lapse_media_fill(user):
    """Move the user's media fill back so that it lapsed yesterday."""
    kind_id = db.session.scalar(sa.select(QualificationKind.id).where(QualificationKind.code == "media_fill"))
    db.session.execute(sa.update(Qualification).where(Qualification.user_id == user.id,
                                                      Qualification.kind_id == kind_id)
                       .values(passed_on=add_months(TODAY, -6) - timedelta(days=1),
                               valid_until=TODAY - timedelta(days=1)))
    db.session.commit()


def test_a_lapsed_media_fill_refuses_compounding_and_a_new_one_allows_it(technician, pharmacist, stocked_formula):
    lapse_media_fill(technician)
    with pytest.raises(InvalidState) as refused:
        batches.compound_batch(technician, stocked_formula.id, 1)
    assert f"Media-fill test: lapsed on {(TODAY - timedelta(days=1)).isoformat()}" in refused.value.message
    assert refused.value.details["qualifications"][0]["kind"] == "media_fill"
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Batch)) == 0
    qualifications.record_qualification(pharmacist, user_id=technician.id, kind="media_fill", passed_on=TODAY,
                                        result="pass")
    assert batches.compound_batch(technician, stocked_formula.id, 1).code


def test_a_fail_suspends_compounding_at_once(technician, pharmacist, stocked_formula):
    qualifications.record_qualification(pharmacist, user_id=technician.id, kind="hand_hygiene_garbing",
                                        passed_on=TODAY, result="fail")
    with pytest.raises(InvalidState, match="Hand hygiene and garbing: failed on"):
        batches.compound_batch(technician, stocked_formula.id, 1)


def test_someone_never_qualified_is_refused_naming_every_kind(make_user, stocked_formula):
    newcomer = make_user("technician", qualified=False)
    with pytest.raises(InvalidState) as refused:
        batches.compound_batch(newcomer, stocked_formula.id, 1)
    assert [q["kind"] for q in refused.value.details["qualifications"]] == [
        "hand_hygiene_garbing", "gloved_fingertip", "media_fill"]


def test_a_late_entry_is_judged_on_the_day_it_was_made(technician, stocked_formula):
    from compounding.services.clock import utcnow
    # Qualified 80 days ago (the fixtures): a batch made 100 days ago was made unqualified.
    with pytest.raises(InvalidState, match="never recorded"):
        batches.compound_batch(technician, stocked_formula.id, 1, compounded_at=utcnow() - timedelta(days=100),
                               preparation_started_at=utcnow() - timedelta(days=100))


def test_a_lapsed_verifier_cannot_verify(make_batch, make_user):
    batch = make_batch(release=False)
    verifier = make_user("pharmacist")
    lapse_media_fill(verifier)
    with pytest.raises(InvalidState, match="may not verify: Media-fill test: lapsed"):
        batches.verify_batch(verifier, batch.id, PASSWORD)
    assert db.session.get(Batch, batch.id).status == "prepared"


@pytest.mark.parametrize("config_overrides", [{"REQUIRE_QUALIFICATIONS": False}], indirect=True)
def test_the_requirement_can_be_turned_off(make_user, stocked_formula):
    newcomer = make_user("technician", qualified=False)
    assert batches.compound_batch(newcomer, stocked_formula.id, 1).code
