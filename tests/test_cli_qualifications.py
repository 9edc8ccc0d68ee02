"""The command line of qualified people: recording a result as the operator, and who is due."""

from datetime import date, timedelta

import pytest
from peoplekit import due_in, lapse
from testkit import audit_rows, count_rows

from compounding.extensions import db
from compounding.models import Qualification
from compounding.services.qualifications import add_months

TODAY = date.today()


def _run(runner, *args):
    result = runner.invoke(args=list(args))
    return result.exit_code, result.output + (result.stderr or "")


def test_recording_a_pass_prints_the_standing_after_and_is_audited_as_the_operator(runner, make_user):
    tech = make_user("technician", username="tess", qualified=False)
    passed = TODAY - timedelta(days=3)
    code, output = _run(runner, "record-qualification", "Tess", "media_fill", "--passed-on", passed.isoformat(),
                        "--result", "pass", "--assessor", "QA lead")
    assert code == 0, output
    assert f"Recorded media_fill pass on {passed.isoformat()}, valid until {add_months(passed, 6).isoformat()} " \
           "for tess" in output
    assert f"ok  Media-fill test: valid until {add_months(passed, 6).isoformat()}" in output
    assert "NO  Hand hygiene and garbing: never recorded" in output
    [row] = audit_rows("qualification.recorded")
    assert row.actor_id is None and row.new_values["assessor"] == "QA lead"
    record = db.session.get(Qualification, row.entity_id)
    assert (record.user_id, record.recorded_by_id) == (tech.id, None)


def test_a_gloved_fingertip_sampling_takes_its_cfu_count(runner, make_user):
    make_user("technician", username="tess", qualified=False)
    code, output = _run(runner, "record-qualification", "tess", "gloved_fingertip", "--passed-on",
                        TODAY.isoformat(), "--result", "pass", "--cfu", "0")
    assert code == 0, output
    assert "Gloved fingertip and thumb sampling: initial qualification incomplete (1 of 3 passes)" in output


@pytest.mark.parametrize("args, message", [
    (["--passed-on", (TODAY + timedelta(days=1)).isoformat(), "--result", "pass"], "is in the future"),
    (["--passed-on", TODAY.isoformat(), "--result", "pass", "--valid-until", TODAY.isoformat()],
     "is not after the day it was passed"),
    (["--passed-on", TODAY.isoformat(), "--result", "pass", "--cfu", "1"], "counts no colony-forming units"),
    (["--passed-on", "1850-01-01", "--result", "pass"], "between 1900 and 2100"),
    (["--passed-on", "30/11/2026", "--result", "pass"], "Invalid value for '--passed-on'"),
    (["--passed-on", TODAY.isoformat(), "--result", "maybe"], "Invalid value for '--result'"),
])
def test_bad_input_fails_with_the_message_and_records_nothing(runner, make_user, args, message):
    make_user("technician", username="tess", qualified=False)
    code, output = _run(runner, "record-qualification", "tess", "media_fill", *args)
    assert code != 0 and message in output
    assert count_rows(Qualification) == 0


def test_an_unknown_person_or_kind_fails(runner, make_user):
    make_user("technician", username="tess", qualified=False)
    code, output = _run(runner, "record-qualification", "nobody", "media_fill", "--passed-on", TODAY.isoformat(),
                        "--result", "pass")
    assert code == 1 and "No user named 'nobody'" in output
    code, output = _run(runner, "record-qualification", "tess", "astrology", "--passed-on", TODAY.isoformat(),
                        "--result", "pass")
    assert code == 1 and "No qualification kind astrology" in output
    assert count_rows(Qualification) == 0


def test_qualifications_lists_who_is_due_within_the_days_asked(runner, make_user):
    soon = make_user("technician", username="soon")
    later = make_user("technician", username="later")
    lapsed = make_user("pharmacist", username="lapsed")
    make_user("technician", username="steady")
    make_user("practitioner", username="doctor")  # neither compounds nor verifies
    due_in(soon, 10)
    due_in(later, 50)
    until = lapse(lapsed, "hand_hygiene_garbing")
    code, output = _run(runner, "qualifications")
    assert code == 0, output
    lines = output.splitlines()
    assert [line.split(" ")[0] for line in lines[:-1]] == ["lapsed", "soon"]  # by name
    assert f"Hand hygiene and garbing: lapsed on {until.isoformat()}" in lines[0]
    assert "Media-fill test: due, valid until" in lines[1] and "Hand hygiene" not in lines[1]
    assert lines[-1] == "2 people due within 30 days."
    code, output = _run(runner, "qualifications", "--due-within", "60")
    assert code == 0 and "later (" in output and output.splitlines()[-1] == "3 people due within 60 days."
    assert _run(runner, "qualifications", "--due-within", "-1")[0] == 2
