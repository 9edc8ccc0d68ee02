"""Treatment pages: patients, recording a session by scanning vials, refusals, voiding, adverse events."""

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa
from testkit import PASSWORD, QueryCounter, age_batch, sign_in, spoil_batch

from compounding.extensions import db
from compounding.models import AdverseEvent, Batch, Patient, SessionUse, StockMovement, TreatmentSession
from compounding.services import treatments, voids
from compounding.services.clock import clinic_today, to_clinic, utcnow


def use(batch, volume="2", area="abdomen"):
    return {"batch_code": batch.code, "volume_ml": volume, "area": area}


def session_form(rows, practitioner, **extra):
    """The new-session form: rows of (batch code, volume, area), performed now (the time left blank)."""
    data = {"practitioner_id": str(practitioner.id), "performed_at": "",
            "indication": "submental fat", "notes": ""}
    for index, (code, volume, area) in enumerate(rows):
        data[f"uses-{index}-batch_code"] = code
        data[f"uses-{index}-volume_ml"] = volume
        data[f"uses-{index}-area"] = area
    data.update(extra)
    return data


def counts() -> tuple[int, int, int]:
    return (db.session.scalar(sa.select(sa.func.count(TreatmentSession.id))),
            db.session.scalar(sa.select(sa.func.count(SessionUse.id))),
            db.session.scalar(sa.select(sa.func.count(StockMovement.id))))


def remaining(batch) -> Decimal:
    db.session.expire_all()
    return db.session.get(Batch, batch.id).remaining_volume_ml


# --- patients -------------------------------------------------------------------------------------


def test_a_practitioner_registers_a_patient_and_edits_their_details(client, practitioner):
    sign_in(client, practitioner)
    response = client.post("/treatments/patients/new", data={
        "chart_number": " CH-0042 ", "name": "Ana Ruiz", "birth_on": "1985-04-23", "phone": "+34 600 000 000",
        "email": "ana@example.org"})
    assert response.status_code == 302
    patient = db.session.scalar(sa.select(Patient))
    assert (patient.chart_number, patient.name, patient.birth_on.isoformat()) == ("CH-0042", "Ana Ruiz", "1985-04-23")
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "CH-0042" in page and "Ana Ruiz" in page and "registered" in page

    response = client.post(f"/treatments/patients/{patient.id}/edit", data={
        "chart_number": "CH-0042", "name": "Ana Ruiz Gómez", "birth_on": "", "phone": "", "email": ""})
    assert response.status_code == 302
    db.session.expire_all()
    patient = db.session.get(Patient, patient.id)
    assert (patient.name, patient.birth_on, patient.phone) == ("Ana Ruiz Gómez", None, "")


def test_a_taken_chart_number_is_refused_next_to_the_field_with_a_link_to_that_patient(client, practitioner,
                                                                                        make_patient):
    existing = make_patient(chart_number="CH-7")
    sign_in(client, practitioner)
    response = client.post("/treatments/patients/new", data={"chart_number": "CH-7", "name": "Someone else"})
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "already registered" in page and f"/treatments/patients/{existing.id}" in page
    assert 'value="Someone else"' in page
    assert db.session.scalar(sa.select(sa.func.count(Patient.id))) == 1


@pytest.mark.parametrize("data, message", [
    ({"chart_number": ""}, "This field is required."),
    ({"chart_number": "C-1", "email": "not-an-address"}, "not an e-mail address"),
    ({"chart_number": "C-1", "birth_on": "2099-01-01"}, "must be in the past"),
    ({"chart_number": "C-1", "birth_on": "23/04/1985"}, "Not a valid date value."),
])
def test_bad_patient_details_rerender_with_a_message_and_save_nothing(client, practitioner, data, message):
    sign_in(client, practitioner)
    response = client.post("/treatments/patients/new", data=data)
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.count(Patient.id))) == 0


def test_the_patient_list_finds_by_chart_number_or_name_and_offers_to_register_an_unknown_chart(
        client, practitioner, make_patient):
    make_patient(chart_number="CH-100", name="Lucía Fernández")
    make_patient(chart_number="CH-200", name="Bob Stone")
    sign_in(client, practitioner)
    page = client.get("/treatments/patients?q=ch-1").get_data(as_text=True)
    assert "CH-100" in page and "CH-200" not in page
    page = client.get("/treatments/patients?q=stone").get_data(as_text=True)
    assert "CH-200" in page and "CH-100" not in page
    page = client.get("/treatments/patients?q=100%25").get_data(as_text=True)  # % is taken literally
    assert "CH-100" not in page
    page = client.get("/treatments/patients?q=CH-999").get_data(as_text=True)
    assert "No patient matches" in page and "/treatments/patients/new?chart_number=CH-999" in page


# --- recording a session --------------------------------------------------------------------------


def test_the_new_session_page_defaults_to_the_signed_in_practitioner_and_now_in_clinic_time(
        client, practitioner, make_patient, make_user):
    patient = make_patient()
    make_user("practitioner", display_name="Dr Other")
    make_user("technician", display_name="Tech Not Eligible")
    sign_in(client, practitioner)
    page = client.get(f"/treatments/patients/{patient.id}/sessions/new").get_data(as_text=True)
    assert re.search(rf'<option selected value="{practitioner.id}">Dr Nina Costa', page)
    assert "Dr Other" in page and "Tech Not Eligible" not in page
    now_local = to_clinic(utcnow()).strftime("%Y-%m-%dT%H:")
    performed_at = re.search(r'<input[^>]*name="performed_at"[^>]*>', page).group(0)
    assert 'type="datetime-local"' in performed_at and f'value="{now_local}' in performed_at


def test_the_batch_code_fields_carry_the_scanner_hooks_for_app_js(client, practitioner, make_patient):
    patient = make_patient()
    sign_in(client, practitioner)
    page = client.get(f"/treatments/patients/{patient.id}/sessions/new").get_data(as_text=True)
    inputs = re.findall(r"<input[^>]*batch-scan[^>]*>", page)
    assert len(inputs) == 6
    for index, tag in enumerate(inputs):
        assert f'name="uses-{index}-batch_code"' in tag
        assert f'data-scan-next="uses-{index}-volume_ml"' in tag and 'autocomplete="off"' in tag
        assert f'id="uses-{index}-volume_ml"' in page
    assert "autofocus" in inputs[0] and "autofocus" not in inputs[1]
    assert "<script>" not in page  # behaviour lives in static/js/app.js (no inline scripts)


def test_a_practitioner_records_a_session_by_scanning_two_vials(client, practitioner, make_patient, make_batch):
    patient = make_patient()
    first, second = make_batch(units=2), make_batch(units=1)
    sign_in(client, practitioner)
    # Rows 1 and 3 filled (a blank row between): blank rows are ignored.
    # A vial code as a scanner types it; a batch code alone (the next sealed vial is taken).
    response = client.post(f"/treatments/patients/{patient.id}/sessions/new", data=session_form(
        [(f" {first.code.lower()}-02 ", "2.5", "abdomen"), ("", "", ""), (second.code, "1", "flanks")], practitioner))
    assert response.status_code == 302, response.get_data(as_text=True)
    record = db.session.scalar(sa.select(TreatmentSession))
    assert record.practitioner_id == practitioner.id and record.indication == "submental fat"
    # Single-dose vials: spent with the session, their remainders written off.
    assert (remaining(first), remaining(second)) == (Decimal("10"), Decimal("0"))
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert f"{first.code}-02, {second.code}-01" in page  # the flash names the vials
    uses = page.split("Vials used</h2>")[1].split("</table>")[0]
    assert f"{first.code}-02" in uses and f"{second.code}-01" in uses and "2.5 mL" in uses and "flanks" in uses
    assert "Dr Nina Costa" in page


# A session of last summer: back-dating is allowed without a signature here (not the rule under test).
@pytest.mark.parametrize("config_overrides", [{"BACKDATE_HOURS": 24 * 800}], indirect=True)
def test_the_typed_time_is_clinic_time_and_is_stored_in_utc(client, practitioner, make_patient, make_batch):
    patient, batch = make_patient(), make_batch()
    year = clinic_today().year - 1
    age_batch(batch, batch.compounded_at - datetime(year, 6, 1, tzinfo=UTC))
    batch.beyond_use_at = datetime(year, 12, 1, tzinfo=UTC)
    db.session.commit()
    sign_in(client, practitioner)
    # London in summer is UTC+1: 10:15 at the clinic is 09:15 UTC.
    response = client.post(f"/treatments/patients/{patient.id}/sessions/new", data=session_form(
        [(batch.code, "1", "")], practitioner, performed_at=f"{year}-07-01T10:15"))
    assert response.status_code == 302
    record = db.session.scalar(sa.select(TreatmentSession))
    assert record.performed_at == datetime(year, 7, 1, 9, 15, tzinfo=UTC)
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert f"{year}-07-01 10:15 BST" in page


def test_a_session_cannot_be_dated_before_its_batch_was_compounded(client, practitioner, make_patient,
                                                                   make_batch):
    patient, batch = make_patient(), make_batch()
    sign_in(client, practitioner)
    yesterday = to_clinic(utcnow() - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    response = client.post(f"/treatments/patients/{patient.id}/sessions/new", data=session_form(
        [(batch.code, "1", "")], practitioner, performed_at=yesterday))
    assert response.status_code == 422
    assert "had not been compounded yet" in response.get_data(as_text=True)
    assert counts()[0] == 0


def test_the_offered_time_left_as_it_was_records_the_moment_of_saving(client, practitioner, make_patient,
                                                                    make_batch):
    """The page opened two minutes ago offered that minute; the vial was compounded since."""
    patient, batch = make_patient(), make_batch()
    sign_in(client, practitioner)
    page = client.get(f"/treatments/patients/{patient.id}/sessions/new").get_data(as_text=True)
    assert re.search(r'<input[^>]*name="offered_at" type="hidden" value="[0-9T:-]+"', page)
    opened = to_clinic(utcnow() - timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M")
    # Typed by hand, that minute is taken literally: the batch did not exist yet.
    response = client.post(f"/treatments/patients/{patient.id}/sessions/new", data=session_form(
        [(batch.code, "1", "")], practitioner, performed_at=opened))
    assert response.status_code == 422 and "had not been compounded yet" in response.get_data(as_text=True)
    # Left as the page offered it: the session is "now", to the second.
    response = client.post(f"/treatments/patients/{patient.id}/sessions/new", data=session_form(
        [(batch.code, "1", "")], practitioner, performed_at=opened, offered_at=opened))
    assert response.status_code == 302
    record = db.session.scalar(sa.select(TreatmentSession))
    assert abs(record.performed_at - utcnow()) < timedelta(seconds=30)


def test_a_session_in_the_future_is_refused_next_to_the_time(client, practitioner, make_patient, make_batch):
    patient, batch = make_patient(), make_batch()
    sign_in(client, practitioner)
    later = to_clinic(utcnow() + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M")
    response = client.post(f"/treatments/patients/{patient.id}/sessions/new", data=session_form(
        [(batch.code, "1", "")], practitioner, performed_at=later))
    assert response.status_code == 422
    assert "cannot be recorded in the future" in response.get_data(as_text=True)
    assert counts()[0] == 0


@pytest.mark.parametrize("state, reason", [
    ("prepared", "not released"), ("recalled", "recalled: supplier alert"), ("expired", "expired at"),
    ("empty", "empty: no volume left"),
])
def test_an_unusable_batch_is_refused_on_the_page_with_its_reasons_keeping_the_input_and_saving_nothing(
        client, practitioner, pharmacist, make_patient, make_batch, state, reason):
    patient = make_patient()
    good = make_batch()
    bad = make_batch(release=state != "prepared")
    spoil_batch(state, bad, practitioner, make_patient)
    before, good_before = counts(), remaining(good)
    sign_in(client, practitioner)
    response = client.post(f"/treatments/patients/{patient.id}/sessions/new", data=session_form(
        [(good.code, "1.5", "forehead"), (bad.code, "1", "cheeks")], practitioner, notes="keep me"))
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert re.search(rf"Do not use — <span class=\"code\">{bad.code}</span></strong>: [^<]*{reason}", page)
    assert "Nothing was saved" in page and good.code not in page.split('id="refusals"')[1].split("</div>")[0]
    # The user's input stays on the page, the refused row is marked.
    assert f'value="{good.code}"' in page and 'value="1.5"' in page and 'value="forehead"' in page
    assert "keep me</textarea>" in page
    assert page.count("use-row refused") == 1
    assert counts() == before and remaining(good) == good_before


def test_more_volume_than_the_batch_holds_is_refused_on_the_page(client, practitioner, make_patient, make_batch):
    patient, batch = make_patient(), make_batch(units=1)  # 10 mL
    sign_in(client, practitioner)
    before = counts()
    response = client.post(f"/treatments/patients/{patient.id}/sessions/new", data=session_form(
        [(batch.code, "6", "abdomen"), (batch.code, "5", "flanks")], practitioner))
    assert response.status_code == 422
    assert "only 10 mL left, 11 mL asked" in response.get_data(as_text=True)
    assert counts() == before and remaining(batch) == Decimal("10")


@pytest.mark.parametrize("rows, message", [
    ([], "Scan at least one vial"),
    ([("B0000000000", "1", "")], "B0000000000 is not one of our batch codes"),
    ([("{code}", "", "")], "Enter the volume used."),
    ([("", "2", "")], "Scan or type the vial code."),
    ([("{code}-", "1", "")], "the vial number after the hyphen is missing"),
    ([("-00", "1", "")], "no batch code before the hyphen"),
    ([("{code}-00", "1", "")], "vial numbers start at 01"),
    ([("{code}-999", "1", "")], "has no vial 999 (its vials run to {code}-02)"),
    ([("{code}", "two", "")], "Enter a number"),
    ([("{code}", "0.0001", "")], "at most 3 decimals"),
    ([("{code}", "-1", "")], "greater than zero"),
])
def test_bad_use_rows_rerender_with_a_message_and_save_nothing(client, practitioner, make_patient, make_batch,
                                                               rows, message):
    patient, batch = make_patient(), make_batch()
    sign_in(client, practitioner)
    rows = [(code.format(code=batch.code), volume, area) for code, volume, area in rows]
    response = client.post(f"/treatments/patients/{patient.id}/sessions/new", data=session_form(rows, practitioner))
    assert response.status_code == 422
    assert message.format(code=batch.code) in response.get_data(as_text=True)
    assert counts()[0] == 0


def test_the_service_numbers_uses_as_the_page_does_even_after_a_blank_row(client, practitioner, make_patient,
                                                                          make_batch):
    patient, batch = make_patient(), make_batch()
    sign_in(client, practitioner)
    response = client.post(f"/treatments/patients/{patient.id}/sessions/new", data=session_form(
        [(batch.code, "1", ""), ("", "", ""), ("B0000000000", "1", "")], practitioner))
    page = response.get_data(as_text=True)
    assert "Use 2: B0000000000 is not one of our batch codes" in page
    assert re.search(r'<input[^>]*name="uses-1-batch_code"[^>]*value="B0000000000"', page)


def test_only_a_practitioner_or_pharmacist_can_be_named_as_practitioner(client, practitioner, technician,
                                                                       make_patient, make_batch):
    patient, batch = make_patient(), make_batch()
    sign_in(client, practitioner)
    response = client.post(f"/treatments/patients/{patient.id}/sessions/new", data=session_form(
        [(batch.code, "1", "")], technician))
    assert response.status_code == 422
    assert counts()[0] == 0


# --- session record: void, adverse events ---------------------------------------------------------


def test_voiding_strikes_the_session_through_gives_the_volume_back_and_asks_for_confirmation(
        client, practitioner, make_patient, make_shared_batch):
    patient, batch = make_patient(), make_shared_batch()
    record = treatments.record_session(practitioner, patient_id=patient.id, uses=[use(batch, "3")])
    sign_in(client, practitioner)
    page = client.get(f"/treatments/sessions/{record.id}").get_data(as_text=True)
    assert re.search(r'<form[^>]*id="void-form"[^>]*data-confirm="[^"]+"', page, re.S)
    assert 'name="void-reason_code"' in page and 'name="void-password"' in page
    response = client.post(f"/treatments/sessions/{record.id}/void", data={"void-reason": ""})
    assert response.status_code == 422 and "Say why the session is voided." in response.get_data(as_text=True)
    assert "Choose the reason code." in response.get_data(as_text=True)
    response = client.post(f"/treatments/sessions/{record.id}/void",
                           data={"void-reason_code": "entered_in_error", "void-reason": "wrong patient"},
                           follow_redirects=True)
    page = response.get_data(as_text=True)
    assert "Voided</strong>" in page and "wrong patient" in page and 'id="void-form"' not in page
    assert f"{batch.code}-01</span>, 3 mL:\n      returned to the vial, still open" in page
    assert remaining(batch) == Decimal("20")
    page = client.get(f"/treatments/patients/{patient.id}").get_data(as_text=True)
    assert "text-decoration-line-through" in page and "wrong patient" in page
    # A voided session is no longer something the patient received.
    received = page.split("Every batch and lot received")[1]
    assert batch.code not in received.split("Adverse events")[0]


def test_an_adverse_event_is_recorded_on_the_session_and_shows_on_the_patient(client, practitioner,
                                                                             make_patient, make_batch):
    patient, batch = make_patient(), make_batch()
    record = treatments.record_session(practitioner, patient_id=patient.id, uses=[use(batch)])
    sign_in(client, practitioner)
    response = client.post(f"/treatments/sessions/{record.id}/adverse-events", data={
        "event-type": "nodule", "event-severity": "moderate", "event-onset_on": clinic_today().isoformat(),
        "event-outcome": "resolving", "event-notes": "firm, 5 mm"})
    assert response.status_code == 302
    event = db.session.scalar(sa.select(AdverseEvent))
    assert (event.type, event.severity, event.onset_on) == ("nodule", "moderate", clinic_today())
    page = client.get(f"/treatments/patients/{patient.id}").get_data(as_text=True)
    assert "nodule" in page and "firm, 5 mm" in page and "resolving" in page


def test_an_adverse_event_before_the_session_or_with_an_unknown_type_is_refused(client, practitioner,
                                                                               make_patient, make_batch):
    record = treatments.record_session(practitioner, patient_id=make_patient().id, uses=[use(make_batch())])
    sign_in(client, practitioner)
    yesterday = (clinic_today() - timedelta(days=1)).isoformat()
    response = client.post(f"/treatments/sessions/{record.id}/adverse-events", data={
        "event-type": "pain", "event-severity": "mild", "event-onset_on": yesterday})
    assert response.status_code == 422 and "between the session and today" in response.get_data(as_text=True)
    response = client.post(f"/treatments/sessions/{record.id}/adverse-events", data={
        "event-type": "itch", "event-severity": "mild"})
    assert response.status_code == 422 and "Not a valid choice" in response.get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.count(AdverseEvent.id))) == 0


def test_the_patient_page_lists_every_batch_and_lot_they_received(client, practitioner, make_patient,
                                                                  make_batch, make_ingredient, make_lot,
                                                                  make_formula):
    pc = make_ingredient(name="Phosphatidylcholine")
    deoxy = make_ingredient(name="Sodium deoxycholate", kind="excipient")
    formula = make_formula([(pc, "2"), (deoxy, "8")])
    pc_lot, deoxy_lot = make_lot(pc, quantity="100"), make_lot(deoxy, quantity="500")
    batch = make_batch(formula)
    other = make_batch()  # its own lots: never injected into this patient
    patient = make_patient()
    treatments.record_session(practitioner, patient_id=patient.id, uses=[use(batch, "1")])
    treatments.record_session(practitioner, patient_id=patient.id, uses=[use(batch, "2")])
    treatments.record_session(practitioner, patient_id=make_patient().id, uses=[use(other, "1")])
    sign_in(client, practitioner)
    page = client.get(f"/treatments/patients/{patient.id}").get_data(as_text=True)
    received = page.split("Every batch and lot received")[1].split("Adverse events")[0]
    assert batch.code in received and ">3 mL<" in received and other.code not in received
    for lot, name in ((pc_lot, "Phosphatidylcholine"), (deoxy_lot, "Sodium deoxycholate")):
        assert lot.code in received and name in received
    assert received.count("/lots/") == 2


# --- sessions list --------------------------------------------------------------------------------


def test_the_sessions_list_filters_by_clinic_day_and_practitioner(client, practitioner, make_user, make_patient,
                                                                  make_batch):
    other = make_user("practitioner", display_name="Dr Other")
    batch = make_batch(units=3)
    patient = make_patient(chart_number="CH-TODAY")
    old_patient = make_patient(chart_number="CH-OLD")
    age_batch(batch, timedelta(days=3))
    treatments.record_session(practitioner, patient_id=patient.id, uses=[use(batch, "1")])
    treatments.record_session(other, patient_id=old_patient.id, uses=[use(batch, "1")],
                              performed_at=utcnow() - timedelta(days=2))
    sign_in(client, practitioner)
    today = clinic_today().isoformat()
    page = client.get(f"/treatments/sessions?from={today}&to={today}").get_data(as_text=True)
    assert "CH-TODAY" in page and "CH-OLD" not in page
    page = client.get(f"/treatments/sessions?practitioner_id={other.id}").get_data(as_text=True)
    assert "CH-OLD" in page and "CH-TODAY" not in page
    page = client.get("/treatments/sessions?from=garbage").get_data(as_text=True)
    assert "CH-OLD" in page and "CH-TODAY" in page
    assert "My sessions today" in page


# --- permissions and escaping ---------------------------------------------------------------------


def test_a_technician_reads_patients_but_cannot_register_patients_or_record_sessions(
        client, as_role, make_patient, make_batch, practitioner):
    patient, batch = make_patient(), make_batch()
    record = treatments.record_session(practitioner, patient_id=patient.id, uses=[use(batch)])
    as_role("technician")
    assert client.get(f"/treatments/patients/{patient.id}").status_code == 200
    assert client.post("/treatments/patients/new", data={"chart_number": "T-1"}).status_code == 403
    response = client.post(f"/treatments/patients/{patient.id}/sessions/new",
                           data=session_form([(batch.code, "1", "")], practitioner))
    assert response.status_code == 403
    assert client.get(f"/treatments/patients/{patient.id}/sessions/new").status_code == 403
    assert client.post(f"/treatments/sessions/{record.id}/void", data={"void-reason": "x"}).status_code == 403
    assert counts()[0] == 1


def test_an_auditor_reads_every_page_and_every_post_is_refused(client, as_role, make_patient, make_batch,
                                                               practitioner):
    patient, batch = make_patient(), make_batch()
    record = treatments.record_session(practitioner, patient_id=patient.id, uses=[use(batch)])
    as_role("auditor")
    for url in ("/treatments/patients", f"/treatments/patients/{patient.id}", "/treatments/sessions",
                f"/treatments/sessions/{record.id}"):
        response = client.get(url)
        assert response.status_code == 200, url
        page = response.get_data(as_text=True)
        assert 'method="post"' not in page.replace('action="/logout"', "").split("</nav>", 1)[1], url
    for url, data in (
            ("/treatments/patients/new", {"chart_number": "A-1"}),
            (f"/treatments/patients/{patient.id}/edit", {"chart_number": "A-2"}),
            (f"/treatments/patients/{patient.id}/sessions/new", session_form([(batch.code, "1", "")], practitioner)),
            (f"/treatments/sessions/{record.id}/void", {"void-reason": "audit"}),
            (f"/treatments/sessions/{record.id}/adverse-events", {"event-type": "pain", "event-severity": "mild"})):
        assert client.post(url, data=data).status_code == 403, url
    assert counts()[0] == 1 and db.session.get(TreatmentSession, record.id).voided_at is None


def test_markup_typed_into_names_and_notes_is_shown_as_text(client, practitioner, make_patient, make_batch):
    patient = make_patient(chart_number="<b>CH</b>", name="<script>alert(1)</script>")
    record = treatments.record_session(practitioner, patient_id=patient.id, uses=[use(make_batch(), area="<i>x</i>")],
                                       notes="<img src=x onerror=alert(1)>\nsecond line")
    treatments.record_adverse_event(practitioner, session_id=record.id, type="pain", severity="mild",
                                    notes="<u>sore</u>")
    sign_in(client, practitioner)
    for url in (f"/treatments/patients/{patient.id}", f"/treatments/sessions/{record.id}", "/treatments/patients",
                "/treatments/sessions"):
        page = client.get(url).get_data(as_text=True)
        assert "<script>alert(1)" not in page and "<img src=x" not in page and "<b>CH</b>" not in page, url
        assert "&lt;b&gt;CH&lt;/b&gt;" in page, url
    page = client.get(f"/treatments/sessions/{record.id}").get_data(as_text=True)
    assert "&lt;img src=x onerror=alert(1)&gt;<br>second line" in page and "&lt;u&gt;sore&lt;/u&gt;" in page
    assert "&lt;i&gt;x&lt;/i&gt;" in page


# --- query budgets --------------------------------------------------------------------------------


def measured(client, url):
    """Statements for one page, from the same starting point (a fresh transaction, nothing cached)."""
    db.session.commit()
    with QueryCounter(db.engine) as counter:
        response = client.get(url)
    assert response.status_code == 200, url
    return counter.count, response.get_data(as_text=True)


def _many_patients(make_patient, practitioner, batch, n):
    for _ in range(n):
        patient = make_patient()
        treatments.record_session(practitioner, patient_id=patient.id, uses=[use(batch, "0.1")])


def test_the_patient_and_session_lists_cost_the_same_statements_for_5_or_60_rows(
        client, practitioner, make_patient, make_shared_batch):
    batch = make_shared_batch(units=2)
    _many_patients(make_patient, practitioner, batch, 5)
    sign_in(client, practitioner)
    small_patients, _ = measured(client, "/treatments/patients")
    small_sessions, _ = measured(client, "/treatments/sessions")
    _many_patients(make_patient, practitioner, batch, 55)
    large_patients, page = measured(client, "/treatments/patients")
    assert page.count('href="/treatments/patients/') >= 50  # a full page of rows was rendered
    large_sessions, page = measured(client, "/treatments/sessions")
    assert page.count('href="/treatments/sessions/') == 50
    assert small_patients == large_patients
    assert small_sessions == large_sessions


def test_the_patient_page_costs_the_same_statements_for_1_or_30_sessions(
        client, practitioner, pharmacist, make_patient, make_shared_batch):
    batch, other = make_shared_batch(units=4), make_shared_batch(units=4)
    one, many = make_patient(), make_patient()
    record = treatments.record_session(practitioner, patient_id=one.id, uses=[use(batch, "1")])
    treatments.record_adverse_event(practitioner, session_id=record.id, type="pain", severity="mild")
    for index in range(30):
        made = treatments.record_session(practitioner, patient_id=many.id,
                                         uses=[use(batch, "0.5"), use(other, "0.5", "scalp")])
        if index % 3 == 0:
            treatments.record_adverse_event(practitioner, session_id=made.id, type="redness", severity="mild")
        if index % 7 == 0:
            voids.void_session(pharmacist, made.id, reason_code="duplicate", reason="test", password=PASSWORD)
    sign_in(client, practitioner)
    small, _ = measured(client, f"/treatments/patients/{one.id}")
    large, page = measured(client, f"/treatments/patients/{many.id}")
    assert page.count("scalp") == 30
    assert small == large


def test_the_session_record_page_has_a_fixed_query_budget(client, practitioner, make_patient, make_batch):
    one_use = treatments.record_session(practitioner, patient_id=make_patient().id, uses=[use(make_batch())])
    batches_used = [make_batch() for _ in range(5)]
    five_uses = treatments.record_session(practitioner, patient_id=make_patient().id,
                                          uses=[use(b, "1") for b in batches_used])
    for _ in range(4):
        treatments.record_adverse_event(practitioner, session_id=five_uses.id, type="pain", severity="mild")
    sign_in(client, practitioner)
    small, _ = measured(client, f"/treatments/sessions/{one_use.id}")
    large, page = measured(client, f"/treatments/sessions/{five_uses.id}")
    assert all(b.code in page for b in batches_used)
    assert small == large


def test_a_released_batch_used_to_the_last_drop_is_depleted_and_a_void_leaves_it_depleted(
        client, practitioner, make_patient, make_batch):
    batch = make_batch(units=1)
    patient = make_patient()
    sign_in(client, practitioner)
    response = client.post(f"/treatments/patients/{patient.id}/sessions/new",
                           data=session_form([(batch.code, "10", "")], practitioner))
    assert response.status_code == 302
    db.session.expire_all()
    assert db.session.get(Batch, batch.id).status == "depleted"
    record = db.session.scalar(sa.select(TreatmentSession))
    page = client.post(f"/treatments/sessions/{record.id}/void",
                       data={"void-reason_code": "entered_in_error", "void-reason": "wrong vial"},
                       follow_redirects=True).get_data(as_text=True)
    db.session.expire_all()
    # A void never brings a spent batch back; the page says so for the use.
    assert db.session.get(Batch, batch.id).status == "depleted"
    assert "not returned: a depleted batch is never brought back" in page
