"""Quality signals measure exposure: rates per exposed session and patient, with intervals, a baseline and a class."""

import pytest
import sqlalchemy as sa
from testkit import QueryCounter, bearer

from compounding.extensions import db
from compounding.models import Batch, BatchComponent
from compounding.services import treatments
from compounding.services.signals import quality_signals, signal_for


def use(batch, volume="1"):
    return {"batch_code": batch.code, "volume_ml": volume}


class Clinic:
    """Sessions recorded now, their adverse events (type, severity) reported later: a holding event
    puts the batch on hold, and the sessions before it were given while it was usable."""

    def __init__(self, practitioner):
        self.practitioner, self.pending = practitioner, []

    def __call__(self, batch, patient, *events):
        session_row = treatments.record_session(self.practitioner, patient_id=patient.id, uses=[use(batch)])
        self.pending += [(session_row.id, kind, severity) for kind, severity in events]
        return session_row

    def report(self):
        for session_id, kind, severity in self.pending:
            treatments.record_adverse_event(self.practitioner, session_id=session_id, type=kind, severity=severity)
        self.pending = []


@pytest.fixture
def treat(practitioner):
    return Clinic(practitioner)


def lot_ids(batch) -> set[int]:
    return set(db.session.scalars(sa.select(BatchComponent.lot_id).where(BatchComponent.batch_id == batch.id)))


def test_four_events_in_one_session_give_rates_of_one_not_four_hundred_percent(make_batch, make_patient, treat):
    batch = make_batch()
    treat(batch, make_patient(), ("nodule", "mild"), ("redness", "mild"), ("swelling", "mild"), ("pain", "mild"))
    treat.report()
    signals = {(s.kind, s.id): s for s in quality_signals()}
    signal = signals[("batch", batch.id)]
    assert (signal.events, signal.sessions, signal.patients) == (4, 1, 1)
    assert signal.session_rate == signal.patient_rate == signal.rate == 1.0
    for s in signals.values():
        for value in (s.rate, s.session_rate, s.patient_rate, s.session_ci_low, s.session_ci_high,
                      s.patient_ci_low, s.patient_ci_high, s.baseline_session_rate, s.baseline_patient_rate):
            assert 0.0 <= value <= 1.0, (s.kind, s.code, value)


def test_rates_count_sessions_and_patients_with_an_event_not_the_events(make_batch, make_patient, treat):
    batch = make_batch(units=4)
    first, second = make_patient(), make_patient()
    treat(batch, first, ("infection", "moderate"), ("redness", "mild"))
    treat(batch, first, ("swelling", "mild"))
    treat(batch, second)
    treat(batch, second)
    treat.report()
    signal = signal_for("batch", batch.id)
    assert (signal.events, signal.sessions, signal.patients) == (3, 4, 2)
    assert (signal.session_rate, signal.patient_rate) == (0.5, 0.5)
    assert (round(signal.session_ci_low, 4), round(signal.session_ci_high, 4)) == (0.1500, 0.8500)
    assert (signal.baseline_session_rate, signal.baseline_patient_rate) == (0.5, 0.5)


def test_one_patient_with_three_mild_reactions_flags_no_batch_no_lot_and_not_the_shared_saline_lot(
        make_ingredient, make_lot, make_formula, make_batch, make_patient, treat):
    actives = [make_ingredient(name=f"Active {n}") for n in range(4)]
    saline = make_ingredient(name="Saline", kind="diluent")
    formula = make_formula([*((a, "0.5") for a in actives), (saline, "8")])
    for ingredient in (*actives, saline):
        make_lot(ingredient, quantity="1000")
    batch, other = make_batch(formula, units=40), make_batch(formula, units=20)
    assert len(lot_ids(batch)) == 5 and lot_ids(batch) & lot_ids(other)  # the saline lot at least is shared
    patients = [make_patient() for _ in range(20)]
    treat(batch, patients[0], ("redness", "mild"), ("swelling", "mild"))
    treat(batch, patients[0], ("bruising", "mild"))
    for n in range(38):
        treat(batch, patients[1 + n % 19])
    for _ in range(20):
        treat(other, make_patient())
    treat.report()
    assert signal_for("batch", batch.id).sessions == 40
    assert quality_signals() == []
    assert not signal_for("batch", batch.id).flagged


def test_a_moderate_nodule_flags_the_batch_and_its_lots_as_a_quality_signal(make_batch, make_patient, treat):
    batch = make_batch(units=30)
    patients = [make_patient() for _ in range(10)]
    treat(batch, patients[0], ("nodule", "moderate"))
    for n in range(29):
        treat(batch, patients[n % 10])
    treat.report()
    signals = quality_signals()
    assert {(s.kind, s.id) for s in signals} == {("batch", batch.id)} | {("lot", i) for i in lot_ids(batch)}
    for signal in signals:
        assert signal.signal_class == "quality" and signal.flagged
        assert (signal.events, signal.severe, signal.sessions, signal.patients) == (1, 0, 30, 10)
        assert "1 nodule (quality-class)" in signal.reasons


def test_mild_reactions_in_many_patients_flag_when_the_patient_rate_s_lower_bound_is_above_the_clinic_s(
        app, make_batch, make_patient, treat):
    suspect, quiet = make_batch(units=10), make_batch(units=40)
    for n in range(10):
        treat(suspect, make_patient(), *([("redness", "mild")] if n < 4 else []))
    for _ in range(40):
        treat(quiet, make_patient())
    treat.report()
    signals = {(s.kind, s.id): s for s in quality_signals()}
    assert set(signals) == {("batch", suspect.id)} | {("lot", i) for i in lot_ids(suspect)}
    signal = signals[("batch", suspect.id)]
    assert signal.signal_class == "expected" and signal.baseline_patient_rate == 4 / 50
    assert signal.reasons == ["4 redness (expected-class)",
                              "patient rate 40 % (95 % CI 17–69 %) above the clinic's 8 %"]
    app.config["QUALITY_EVENT_RATE_THRESHOLD"] = 0.2  # the floor under the baseline is now above 17 %
    assert quality_signals() == []
    app.config["QUALITY_EVENT_RATE_THRESHOLD"] = 0.0
    app.config["QUALITY_MIN_EVENTS"] = 5
    assert quality_signals() == []


def test_one_event_graded_severe_flags_even_when_its_type_is_expected(make_batch, make_patient, treat):
    batch = make_batch(units=10)
    treat(batch, make_patient(), ("swelling", "severe"))
    for _ in range(9):
        treat(batch, make_patient())
    treat.report()
    signal = signal_for("batch", batch.id)
    assert signal.flagged and signal.signal_class == "expected" and signal.severe == 1
    assert "1 event graded severe" in signal.reasons
    assert ("batch", batch.id) in {(s.kind, s.id) for s in quality_signals()}


def test_quality_class_ranks_before_severe_and_then_by_the_lower_bound(app, make_batch, make_patient, treat):
    app.config["QUALITY_EVENT_RATE_THRESHOLD"] = 0.0
    severe_redness, granuloma, busy_nodule = make_batch(units=3), make_batch(units=5), make_batch(units=5)
    treat(severe_redness, make_patient(), ("redness", "severe"))
    treat(granuloma, make_patient(), ("granuloma", "mild"))
    treat(busy_nodule, make_patient(), ("nodule", "mild"))
    for _ in range(4):
        treat(busy_nodule, make_patient())
    treat.report()
    batches = [s.id for s in quality_signals() if s.kind == "batch"]
    assert batches == [granuloma.id, busy_nodule.id, severe_redness.id]


def test_signal_for_gives_a_batch_or_a_lot_its_figures_in_a_few_statements_and_none_without_events(
        make_batch, make_patient, treat):
    batch, calm = make_batch(units=10), make_batch()
    treat(batch, make_patient(), ("abscess", "moderate"))
    treat(calm, make_patient())
    treat.report()
    batch_id, lot_id, calm_id, calm_lot_id = batch.id, min(lot_ids(batch)), calm.id, min(lot_ids(calm))
    counts = []
    for kind, item_id in (("batch", batch_id), ("lot", lot_id), ("batch", calm_id), ("lot", calm_lot_id),
                          ("batch", 0)):
        with QueryCounter(db.engine) as counted:
            answer = signal_for(kind, item_id)
        counts.append((counted.count, answer is None))
    assert counts == [(3, False), (3, False), (1, True), (1, True), (1, True)]
    for_batch, for_lot = signal_for("batch", batch_id), signal_for("lot", lot_id)
    assert (for_batch.kind, for_batch.id, for_batch.code, for_batch.flagged) == ("batch", batch.id, batch.code, True)
    assert (for_lot.kind, for_lot.id, for_lot.signal_class) == ("lot", lot_id, "quality")
    assert for_batch.reasons == ["1 abscess (quality-class)"]
    with pytest.raises(ValueError):
        signal_for("vial", 1)


def test_the_api_gives_every_exposure_figure_and_rate_equals_the_session_rate(
        client, make_user, make_token, make_batch, make_patient, treat):
    batch = make_batch(units=4)
    first, second = make_patient(), make_patient()
    treat(batch, first, ("nodule", "mild"), ("nodule", "moderate"), ("redness", "mild"))
    treat(batch, second)
    treat.report()
    body = client.get("/api/v1/quality-signals", headers=bearer(make_token(make_user("pharmacist")))).json
    item = {(i["kind"], i["id"]): i for i in body["items"]}[("batch", batch.id)]
    assert (item["events"], item["severe"], item["sessions"], item["patients"]) == (3, 0, 2, 2)
    assert item["rate"] == item["session_rate"] == "0.5000" and item["patient_rate"] == "0.5000"
    assert (item["session_ci_low"], item["session_ci_high"]) == ("0.0945", "0.9055")
    assert (item["patient_ci_low"], item["patient_ci_high"]) == ("0.0945", "0.9055")
    assert (item["baseline_session_rate"], item["baseline_patient_rate"]) == ("0.5000", "0.5000")
    assert item["signal_class"] == "quality" and item["reasons"] == [
        "2 nodules (quality-class)", "1 redness (expected-class)",
        "patient rate 50 % (95 % CI 9–91 %) not above the clinic's 50 %"]
    db.session.expire_all()
    assert item["code"] == batch.code and item["status"] == db.session.get(Batch, batch.id).status
    assert item["open_recall_id"] is None


def test_the_api_and_the_dashboard_cost_the_same_statements_with_more_data(
        client, make_user, make_token, as_role, make_batch, make_patient, treat):
    headers = bearer(make_token(make_user("pharmacist")))
    as_role("pharmacist")
    batch = make_batch(units=20)
    treat(batch, make_patient(), ("nodule", "mild"))  # a flagged batch and lots: every statement runs
    treat(batch, make_patient(), ("redness", "mild"))

    def count() -> tuple[int, int]:
        treat.report()
        with QueryCounter(db.engine) as api:
            assert client.get("/api/v1/quality-signals", headers=headers).status_code == 200
        with QueryCounter(db.engine) as page:
            assert client.get("/").status_code == 200
        return api.count, page.count

    small = count()
    for _ in range(3):
        more = make_batch(units=5)
        treat(more, make_patient(), ("granuloma", "mild"))
        for _ in range(4):
            treat(more, make_patient(), ("pain", "mild"))
    busy = make_batch(units=10)
    for _ in range(10):
        treat(busy, make_patient())
    assert count() == small


def test_the_dashboard_shows_exposure_rates_with_intervals_the_baseline_the_class_and_why(
        client, as_role, make_batch, make_patient, treat):
    batch = make_batch(units=4)
    treat(batch, make_patient(), ("nodule", "moderate"))
    for _ in range(3):
        treat(batch, make_patient())
    as_role("pharmacist")
    treat.report()
    page = client.get("/").get_data(as_text=True)
    section = page.split('id="quality-signals"')[1]
    for text in (batch.code, "Patients", "25 %", "95 % CI 5–70 %", "clinic 25 %", "quality",
                 "1 nodule (quality-class)"):
        assert text in section, text


def test_the_lot_page_says_why_its_lot_is_flagged(client, as_role, make_batch, make_patient, treat):
    batch = make_batch(units=4)
    treat(batch, make_patient(), ("granuloma", "moderate"))
    lot_id = min(lot_ids(batch))
    as_role("pharmacist")
    treat.report()
    page = client.get(f"/lots/{lot_id}").get_data(as_text=True)
    assert 'id="quality-signal"' in page and "1 granuloma (quality-class)" in page
    assert f"/quality-signals/lot/{lot_id}/hold" in page
    calm = make_batch()
    assert 'id="quality-signal"' not in client.get(f"/lots/{min(lot_ids(calm))}").get_data(as_text=True)


def test_a_lot_with_one_mild_reaction_says_it_is_not_flagged_and_why(client, as_role, make_batch, make_patient,
                                                                    treat):
    batch = make_batch(units=4)
    treat(batch, make_patient(), ("redness", "mild"))
    treat(batch, make_patient())
    treat.report()
    lot_id = min(lot_ids(batch))
    as_role("pharmacist")
    page = client.get(f"/lots/{lot_id}").get_data(as_text=True)
    section = page.split('id="quality-signal"')[1].split("</section>")[0]
    assert "not flagged" in section and "1 redness (expected-class)" in section
    assert "fewer than the 2 a rate needs to flag" in section
    assert "/hold" not in section and "Open recall" not in section
