"""Dashboards by role: each shows what that role acts on, with charts, in a fixed number of statements."""

import pytest
from testkit import PASSWORD, QueryCounter

from compounding.extensions import db
from compounding.services import treatments


@pytest.mark.parametrize("role, present, absent", [
    ("pharmacist", ["Lots awaiting release", "Batches awaiting verification", "Quality signals", "Trends"],
     ["Scan a vial before using it"]),
    ("technician", ["Lots awaiting release", "Compound a batch", "Scan station"], ["Trends", "Quality signals"]),
    ("practitioner", ["Scan a vial before using it", "My sessions today", "Batches usable now"],
     ["Lots awaiting release", "Trends"]),
    ("auditor", ["Audit workbook", "Audit trail", "Latest changes", "Quality signals", "Trends"],
     ["Compound a batch"]),
    ("admin", ["Users", "Trends"], ["Scan a vial before using it"]),
])
def test_each_role_lands_on_its_own_dashboard(client, as_role, role, present, absent):
    as_role(role)
    page = client.get("/").get_data(as_text=True)
    for text in present:
        assert text in page, text
    for text in absent:
        assert text not in page, text


def test_the_charts_are_inline_svg_with_titles_and_no_script(client, as_role, make_batch):
    make_batch()
    as_role("pharmacist")
    page = client.get("/").get_data(as_text=True)
    assert page.count('<svg xmlns="http://www.w3.org/2000/svg"') >= 3
    assert "<title" in page and "Lots in stock expiring per week" in page


def test_a_practitioner_sees_today_s_sessions_and_usable_batches(client, make_user, make_batch, make_patient):
    from testkit import sign_in

    practitioner = make_user("practitioner")
    batch = make_batch()
    patient = make_patient(name="Maria Gomez")
    treatments.record_session(practitioner, patient_id=patient.id, uses=[{"batch_code": batch.code, "volume_ml": "1"}])
    sign_in(client, practitioner)
    page = client.get("/").get_data(as_text=True)
    assert "Maria Gomez" in page and batch.code in page


def test_the_pharmacist_dashboard_costs_the_same_statements_with_more_data(client, as_role, make_batch,
                                                                           make_patient, make_user):
    practitioner = make_user("practitioner")
    as_role("pharmacist")
    batch = make_batch(units=20)

    def treat(count):
        for _ in range(count):
            session_row = treatments.record_session(practitioner, patient_id=make_patient().id,
                                                    uses=[{"batch_code": batch.code, "volume_ml": "1"}])
            treatments.record_adverse_event(practitioner, session_id=session_row.id, type="redness",
                                            severity="mild")

    nodule = make_batch()  # a flagged batch and its lots: every statement of the dashboard runs
    session_row = treatments.record_session(practitioner, patient_id=make_patient().id,
                                            uses=[{"batch_code": nodule.code, "volume_ml": "1"}])
    treatments.record_adverse_event(practitioner, session_id=session_row.id, type="nodule", severity="moderate")
    treat(2)
    with QueryCounter(db.engine) as small:
        assert client.get("/").status_code == 200
    for _ in range(3):
        make_batch(units=1)
        make_batch(units=1, release=False)
    treat(15)
    with QueryCounter(db.engine) as large:
        assert client.get("/").status_code == 200
    assert small.count == large.count, "\n".join(s[:150].replace("\n", " ") for s in large.statements)


def test_the_activity_chart_counts_the_clinic_s_weeks_and_leaves_voided_sessions_out(app, make_user, make_patient):
    from datetime import datetime, time, timedelta

    from compounding.models import TreatmentSession
    from compounding.services import dashboard
    from compounding.services.clock import clinic_zone

    practitioner, patient = make_user("practitioner"), make_patient()
    today = datetime(2026, 7, 15).date()  # a Wednesday in summer: London is an hour ahead of UTC
    monday = today - timedelta(days=today.weekday())
    zone = clinic_zone()

    def session(day, hour, minute, voided=False):
        performed = datetime.combine(day, time(hour, minute), tzinfo=zone)
        db.session.add(TreatmentSession(patient_id=patient.id, practitioner_id=practitioner.id,
                                        performed_at=performed, recorded_at=performed,
                                        voided_at=performed if voided else None))

    session(monday, 0, 30)  # 23:30 UTC on Sunday: still this week's, in the clinic's days
    session(monday - timedelta(days=1), 23, 30)  # Sunday night: last week's
    session(today, 10, 0)
    session(today, 11, 0, voided=True)
    session(monday - timedelta(weeks=12), 9, 0)  # the first week shown
    session(monday - timedelta(weeks=12, days=1), 9, 0)  # the day before it: not shown
    db.session.commit()
    labels, (_, sessions) = dashboard.activity_by_week(today, site_ids=None)
    assert len(labels) == len(sessions.values) == 13
    assert sessions.values[-1] == 2 and sessions.values[-2] == 1 and sessions.values[0] == 1
    assert sum(sessions.values) == 4


def test_the_pharmacist_sees_how_many_batches_await_their_test_results(client, as_role, make_formula,
                                                                         make_ingredient, make_lot, make_user):
    from compounding.services import batches

    active = make_ingredient(name="Hyaluronic acid")
    saline = make_ingredient(name="Sodium chloride 0.9 %", kind="diluent", vehicle=True)
    formula = make_formula([(active, "2"), (saline, "qs")], bud_category="category_2_aseptic_sterility_tested")
    for ingredient in (active, saline):
        make_lot(ingredient, quantity="100")
    batch = batches.compound_batch(make_user("technician"), formula.id, 1)
    batches.verify_batch(make_user("pharmacist"), batch.id, PASSWORD)
    as_role("pharmacist")

    page = client.get("/").get_data(as_text=True)
    tile = page[page.index("status=awaiting_tests"):]
    assert "Batches awaiting test results" in tile[:600] and ">1<" in tile[:600].replace(" ", "")
