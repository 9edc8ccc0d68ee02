"""Trace, recall and quality-signal pages: from a typed or scanned code to every patient, and back to safety."""

import re

import pytest
import sqlalchemy as sa
from testkit import PASSWORD, QueryCounter, audit_rows, lot_used_by_sessions, sign_in_session

from compounding.extensions import db
from compounding.models import Batch, Lot, Recall, RecallContact
from compounding.services import inventory, recalls, treatments, voids
from compounding.services.errors import InvalidState
from compounding.services.holds import release_hold


def use(batch, volume):
    return {"batch_code": batch.code, "volume_ml": volume}


def patient_rows(page: str) -> dict[int, str]:
    return {int(pid): row for pid, row in re.findall(r'<tr id="patient-(\d+)"[^>]*>(.*?)</tr>', page, re.S)}


def open_lot_recall(chain):
    return recalls.open_recall(chain["pharmacist"], lot_id=chain["lot"].id, reason="Supplier alert: endotoxin",
                               password=PASSWORD)


def test_a_lot_typed_in_lower_case_with_spaces_traces_to_exactly_its_three_patients_and_volumes(
        client, as_role, chain):
    as_role("pharmacist")
    response = client.get("/trace", query_string={"code": f"  {chain['lot'].code.lower()} \t"})
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/trace/lots/{chain['lot'].id}")
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    rows = patient_rows(page)
    assert set(rows) == {chain["a"].id, chain["b"].id, chain["c"].id}
    assert "3 mL" in rows[chain["a"].id] and "3 mL" in rows[chain["b"].id] and "5 mL" in rows[chain["c"].id]
    assert chain["a"].email in rows[chain["a"].id] and chain["a"].phone in rows[chain["a"].id]
    assert chain["other"].chart_number not in page
    assert chain["first"].code in page and chain["second"].code in page
    assert "<strong>11 mL</strong> injected in all" in page and "<strong>4</strong> sessions" in page


def test_a_batch_code_traces_up_to_its_lots_and_down_to_its_patients(client, as_role, chain):
    as_role("technician")
    response = client.get("/trace", query_string={"code": f" {chain['second'].code.lower()}"}, follow_redirects=True)
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and chain["lot"].code in page and "Phosphatidylcholine" in page
    assert set(patient_rows(page)) == {chain["b"].id, chain["c"].id}
    assert "Open a recall" not in page  # technicians do not open recalls


def test_an_unknown_code_is_shown_back_escaped(client, as_role, chain):
    as_role("practitioner")
    response = client.get("/trace", query_string={"code": "<b>x</b>"})
    page = response.get_data(as_text=True)
    assert response.status_code == 404
    assert "No batch or lot has the code" in page and "&lt;b&gt;x&lt;/b&gt;" in page
    assert "<b>x</b>" not in page


def test_a_wrong_password_opens_no_recall_and_the_right_one_recalls_the_lot_and_both_batches(
        client, as_role, chain):
    as_role("pharmacist")
    lot = chain["lot"]
    form_page = client.get(f"/recalls/new?lot_id={lot.id}").get_data(as_text=True)
    assert "<strong>2</strong> batches" in form_page and "<strong>3</strong> patients" in form_page
    refused = client.post(f"/recalls/new?lot_id={lot.id}", data={"reason": "Supplier alert", "password": "nope-nope"})
    assert refused.status_code == 422 and "Signature refused" in refused.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.scalar(sa.select(sa.func.count(Recall.id))) == 0
    assert db.session.get(Lot, lot.id).status == "depleted"  # both batches drew it down to zero
    assert {db.session.get(Batch, b.id).status for b in (chain["first"], chain["second"])} == {"released"}

    opened = client.post(f"/recalls/new?lot_id={lot.id}", data={"reason": "Supplier alert", "password": PASSWORD})
    assert opened.status_code == 302
    recall = db.session.scalar(sa.select(Recall))
    assert opened.headers["Location"].endswith(f"/recalls/{recall.id}")
    db.session.expire_all()
    assert db.session.get(Lot, lot.id).status == "recalled"
    assert {db.session.get(Batch, b.id).status for b in (chain["first"], chain["second"])} == {"recalled"}
    with pytest.raises(InvalidState):
        treatments.record_session(chain["practitioner"], patient_id=chain["a"].id, uses=[use(chain["first"], "1")])
    db.session.rollback()
    page = client.get(opened.headers["Location"]).get_data(as_text=True)
    assert "Recall opened</strong> by" in page and "0 of 3</strong> patients with an outcome" in page


def test_recording_outcomes_moves_the_progress_and_keeps_every_attempt_with_who_when_how(client, as_role, chain):
    recall = open_lot_recall(chain)
    technician = as_role("technician")
    url = f"/recalls/{recall.id}"
    page = client.get(url).get_data(as_text=True)
    assert "0 of 3</strong>" in page and 'value="0" max="3"' in page
    assert page.count('class="row g-1 align-items-start recall-outcome-form"') == 3
    a = chain["a"].id
    failed = client.post(f"{url}/contacts/{a}", data={f"contact-{a}-outcome": "attempt_failed",
                                                      f"contact-{a}-method": "phone",
                                                      f"contact-{a}-note": "left a voicemail"})
    assert failed.status_code == 302
    page = client.get(url).get_data(as_text=True)
    assert "0 of 3</strong>" in page and "Attempt failed" in patient_rows(page)[a]
    response = client.post(f"{url}/contacts/{a}", data={f"contact-{a}-method": "email", f"contact-{a}-note": "ok"})
    assert response.status_code == 302
    page = client.get(url).get_data(as_text=True)
    assert "1 of 3</strong>" in page and 'value="1" max="3"' in page
    row = patient_rows(page)[a]
    assert "Phone" in row and "Email" in row and technician.display_name in row and "left a voicemail" in row
    assert "Outcome: " in row and 'text-bg-success">Reached</span>' in row
    no_method = client.post(f"{url}/contacts/{chain['b'].id}", data={f"contact-{chain['b'].id}-outcome": "reached"})
    assert no_method.status_code == 422 and "Say how the patient was contacted" in no_method.get_data(as_text=True)
    stranger = client.post(f"{url}/contacts/{chain['other'].id}",
                           data={f"contact-{chain['other'].id}-method": "phone"})
    assert stranger.status_code == 422 and "not in the recall" in stranger.get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.count(RecallContact.id))) == 2


def test_closing_a_recall_needs_an_outcome_for_every_patient_and_a_signature(client, as_role, chain):
    recall = open_lot_recall(chain)
    as_role("pharmacist")
    url = f"/recalls/{recall.id}/close"
    no_outcome = client.post(url, data={"outcome": "", "password": PASSWORD})
    assert no_outcome.status_code == 422 and "Record the outcome" in no_outcome.get_data(as_text=True)
    recalls.record_contact(chain["practitioner"], recall.id, chain["a"].id, "phone")
    waiting = client.post(url, data={"outcome": "All reviewed", "password": PASSWORD})
    assert waiting.status_code == 422
    assert "2 patients in the recall&#39;s scope have no outcome yet" in waiting.get_data(as_text=True)
    for patient in (chain["b"], chain["c"]):
        recalls.record_contact(chain["practitioner"], recall.id, patient.id, "letter")
    wrong = client.post(url, data={"outcome": "All reviewed", "password": "wrong-password"})
    assert wrong.status_code == 422 and "Signature refused" in wrong.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Recall, recall.id).status == "open"
    closed = client.post(url, data={"outcome": "All reviewed; no infection.", "password": PASSWORD})
    assert closed.status_code == 302
    page = client.get(f"/recalls/{recall.id}").get_data(as_text=True)
    assert "All reviewed; no infection." in page and "Recall closed</strong> by" in page
    assert "recall-outcome-form" not in page and "Close recall" not in page
    assert db.session.get(Lot, chain["lot"].id).status == "recalled"  # recalled stock stays recalled
    again = client.post(url, data={"outcome": "Twice", "password": PASSWORD})
    assert again.status_code == 422 and "already closed" in again.get_data(as_text=True)
    assert client.post(f"/recalls/{recall.id + 1000}/close", data={"outcome": "x", "password": PASSWORD}
                       ).status_code == 404


@pytest.mark.parametrize("role", ["technician", "practitioner"])
def test_technicians_and_practitioners_tick_contacts_but_cannot_open_or_close(client, as_role, chain, role):
    recall = open_lot_recall(chain)
    as_role(role)
    lot_id = chain["lot"].id
    assert client.get(f"/recalls/new?batch_id={chain['first'].id}").status_code == 403
    assert client.post(f"/recalls/new?lot_id={lot_id}", data={"reason": "x", "password": PASSWORD}).status_code == 403
    assert client.post(f"/recalls/{recall.id}/close",
                       data={"outcome": "x", "password": PASSWORD}).status_code == 403
    page = client.get(f"/recalls/{recall.id}").get_data(as_text=True)
    assert "Close recall" not in page and "recall-outcome-form" in page
    ticked = client.post(f"/recalls/{recall.id}/contacts/{chain['c'].id}",
                         data={f"contact-{chain['c'].id}-method": "in_person"})
    assert ticked.status_code == 302
    assert db.session.get(Recall, recall.id).status == "open"


def test_an_auditor_reads_every_page_but_every_post_is_forbidden(client, as_role, chain):
    recall = open_lot_recall(chain)
    as_role("auditor")
    for url in ("/", "/recalls/", f"/recalls/{recall.id}", f"/recalls/{recall.id}/report",
                f"/trace/lots/{chain['lot'].id}", f"/trace/batches/{chain['first'].id}"):
        assert client.get(url).status_code == 200, url
    page = client.get(f"/recalls/{recall.id}").get_data(as_text=True)
    assert "recall-outcome-form" not in page and "Close recall" not in page
    for url, data in ((f"/recalls/new?batch_id={chain['first'].id}", {"reason": "x", "password": PASSWORD}),
                      (f"/recalls/{recall.id}/contacts/{chain['a'].id}", {f"contact-{chain['a'].id}-method": "phone"}),
                      (f"/recalls/{recall.id}/close", {"outcome": "x", "password": PASSWORD}),
                      (f"/quality-signals/lots/{chain['lot'].id}/quarantine", {"reason": "x"})):
        assert client.post(url, data=data).status_code == 403, url
    assert db.session.scalar(sa.select(sa.func.count(RecallContact.id))) == 0


# A lot with stock left, so it is still eligible for compounding when flagged.
@pytest.mark.parametrize("suspect_quantity", ["58"])
def test_a_severe_event_flags_the_lot_and_one_click_hold_makes_it_ineligible_and_is_audited(
        client, as_role, chain):
    lot = chain["lot"]
    treatments.record_adverse_event(chain["practitioner"], session_id=chain["sessions"][0].id, type="infection",
                                    severity="severe")
    assert lot.id in {c.lot_id for c in inventory.eligible_candidates(chain["pc"].id)}
    as_role("pharmacist")
    page = client.get("/").get_data(as_text=True)
    assert "Quality signals" in page and lot.code in page and chain["first"].code in page
    # The one click places a quality-signal hold (it used to put the lot back into quarantine).
    assert "Hold lot" in page and "Open recall</a>" in page and f"lot_id={lot.id}" in page
    reason = re.search(r'name="reason" value="([^"]+)"', page).group(1)
    assert reason == "1 adverse event (1 severe) in 4 sessions"
    response = client.post(f"/quality-signals/lot/{lot.id}/hold", data={"reason": reason})
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/lots/{lot.id}")
    db.session.expire_all()
    assert db.session.get(Lot, lot.id).status == "on_hold"
    assert lot.id not in {c.lot_id for c in inventory.eligible_candidates(chain["pc"].id)}
    [event] = audit_rows("lot.hold_placed", "lot", lot.id)
    assert event.new_values["kind"] == "quality_signal" and event.new_values["detail"] == reason
    # Usable again only once a pharmacist releases the hold, by signature.
    release_hold(chain["pharmacist"], "lot", lot.id, "quality_signal", "reviewed: not the lot", PASSWORD)
    assert lot.id in {c.lot_id for c in inventory.eligible_candidates(chain["pc"].id)}


def test_quarantining_a_lot_that_is_not_released_is_refused_with_a_message(client, as_role, chain):
    open_lot_recall(chain)
    as_role("pharmacist")
    response = client.post(f"/quality-signals/lots/{chain['lot'].id}/quarantine",
                           data={"reason": "quality signal", "back": "trace"}, follow_redirects=True)
    assert response.status_code == 200 and "only a released lot" in response.get_data(as_text=True)
    assert db.session.get(Lot, chain["lot"].id).status == "recalled"


def test_the_dashboard_shows_signals_read_only_to_an_auditor_and_counts_open_recalls(client, as_role, chain,
                                                                                     make_user):
    treatments.record_adverse_event(chain["practitioner"], session_id=chain["sessions"][2].id, type="necrosis",
                                    severity="moderate")
    open_lot_recall(chain)
    as_role("auditor")
    page = client.get("/").get_data(as_text=True)
    assert "Quality signals" in page and chain["second"].code in page
    assert "Quarantine lot" not in page and "Open recall</a>" not in page
    assert re.search(r'<div class="display-6">1</div>\s*<div class="h6 mb-1">Open recalls</div>', page)
    sign_in_session(client, make_user("practitioner"))
    assert "Quality signals" not in client.get("/").get_data(as_text=True)


def test_the_recall_list_puts_open_recalls_first_with_their_progress(client, as_role, chain, make_batch,
                                                                     make_patient):
    earlier = recalls.open_recall(chain["pharmacist"], batch_id=chain["first"].id, reason="Cloudy vial",
                                  password=PASSWORD)
    recalls.record_contact(chain["practitioner"], earlier.id, chain["a"].id, "phone")
    recalls.record_contact(chain["practitioner"], earlier.id, chain["b"].id, None, outcome="declined")
    recalls.close_recall(chain["pharmacist"], earlier.id, "Reviewed", PASSWORD)
    later = recalls.open_recall(chain["pharmacist"], batch_id=chain["second"].id, reason="Supplier alert",
                                password=PASSWORD)
    recalls.record_contact(chain["practitioner"], later.id, chain["b"].id, "phone", outcome="attempt_failed")
    as_role("auditor")
    page = client.get("/recalls/").get_data(as_text=True)
    assert page.index(f"Recall {later.id}<") < page.index(f"Recall {earlier.id}<")
    assert "2 of 2" in page and "0 of 2" in page
    closed_only = client.get("/recalls/?status=closed").get_data(as_text=True)
    assert f"Recall {earlier.id}<" in closed_only and f"Recall {later.id}<" not in closed_only


def test_the_printable_report_has_the_clinic_the_signature_the_scope_and_the_contacts(client, as_role, chain):
    recall = open_lot_recall(chain)
    recalls.record_contact(chain["practitioner"], recall.id, chain["b"].id, "email", "replied, no symptoms")
    as_role("auditor")
    page = client.get(f"/recalls/{recall.id}/report").get_data(as_text=True)
    assert "Test Clinic" in page and "Recall report" in page and "Supplier alert: endotoxin" in page
    assert "Recall opened</strong> by" in page and "1 of 3</strong>" in page
    assert all(chain[p].chart_number in page for p in "abc") and chain["other"].chart_number not in page
    assert "replied, no symptoms" in page and page.count("no outcome yet") == 2
    assert "css/recalls.css" in page and 'class="app-navbar' not in page
    stylesheet = client.get("/static/css/recalls.css")
    assert "@media print" in stylesheet.get_data(as_text=True)
    stylesheet.close()


def test_no_page_here_carries_inline_styles_or_inline_scripts(client, as_role, chain):
    treatments.record_adverse_event(chain["practitioner"], session_id=chain["sessions"][0].id, type="infection",
                                    severity="severe")
    recall = recalls.open_recall(chain["pharmacist"], batch_id=chain["first"].id, reason="r", password=PASSWORD)
    as_role("pharmacist")
    for url in ("/", "/trace", f"/trace/lots/{chain['lot'].id}", f"/trace/batches/{chain['second'].id}",
                f"/recalls/new?lot_id={chain['lot'].id}", "/recalls/", f"/recalls/{recall.id}",
                f"/recalls/{recall.id}/report"):
        page = client.get(url).get_data(as_text=True)
        assert " style=" not in page and "<style" not in page, url
        assert not re.search(r"<script(?![^>]*\bsrc=)", page), url


def test_tracing_a_lot_costs_the_same_statements_for_10_or_120_sessions(
        client, make_user, make_batch, make_patient, practitioner):
    small = lot_used_by_sessions(make_batch, make_patient, practitioner, 10)
    large = lot_used_by_sessions(make_batch, make_patient, practitioner, 120)
    sign_in_session(client, make_user("pharmacist"))
    client.get(f"/trace/lots/{small}")  # warm-up: first-request work is not the page's
    counted = {}
    for lot_id in (small, large):
        with QueryCounter(db.engine) as counter:
            response = client.get(f"/trace/lots/{lot_id}")
        assert response.status_code == 200
        counted[lot_id] = counter.count
    assert counted[small] == counted[large]
    page = response.get_data(as_text=True)
    # Counts and totals cover the whole scope; the lists show their first page of 100.
    assert page.count('<tr id="patient-') == 100
    assert "<strong>120</strong> patients" in page and "<strong>120 mL</strong> injected in all" in page
    assert "1–100 of 120 patients" in page and "Page 1 of 2" in page
    with QueryCounter(db.engine) as counter:
        second = client.get(f"/trace/lots/{large}?page=2").get_data(as_text=True)
    assert counter.count <= counted[large]  # no batch on page 2: no adverse events to count for them
    assert second.count('<tr id="patient-') == 20 and "101–120 of 120 patients" in second
    assert "Nothing more on this page: 1 in all, on earlier pages." in second
    first_ids = set(re.findall(r'<tr id="patient-(\d+)"', page))
    assert first_ids.isdisjoint(re.findall(r'<tr id="patient-(\d+)"', second))


def test_a_voided_session_stays_in_the_counts_and_the_recall_scope_but_leaves_the_volume(chain, pharmacist):
    from compounding.services import trace
    from compounding.services.errors import InvalidInput

    voids.void_session(chain["practitioner"], chain["sessions"][0].id, reason_code="entered_in_error",
                       reason="recorded on the wrong chart")
    scope = trace.trace_lot(chain["lot"].id)
    assert scope.counts == {"batches": 2, "vials": 4, "sessions": 4, "patients": 3} and scope.voided_sessions == 1
    assert scope.total_volume_ml == 8 and scope.pages == 1 and scope.complete
    assert {p.id for p in scope.patients} == {chain["a"].id, chain["b"].id, chain["c"].id}
    recall = open_lot_recall(chain)
    with pytest.raises(InvalidInput, match="not in the recall"):
        recalls.record_contact(pharmacist, recall.id, chain["other"].id, "phone")
    recalls.record_contact(pharmacist, recall.id, chain["a"].id, None, outcome="not_exposed", password=PASSWORD)
    recalls.record_contact(pharmacist, recall.id, chain["c"].id, "phone")
    assert recalls.contact_progress(recall, scope) == (2, 3)


def test_a_large_recall_is_worked_page_by_page(client, as_role, make_batch, make_patient, practitioner, pharmacist):
    lot_id = lot_used_by_sessions(make_batch, make_patient, practitioner, 120)
    recall = recalls.open_recall(pharmacist, lot_id=lot_id, reason="Supplier alert", password=PASSWORD)
    as_role("technician")
    second = client.get(f"/recalls/{recall.id}?page=2").get_data(as_text=True)
    rows = patient_rows(second)
    assert len(rows) == 20 and "101–120 of 120 patients" in second and "<strong>0 of 120</strong>" in second
    patient_id = max(rows)
    action = f"/recalls/{recall.id}/contacts/{patient_id}?page=2"
    assert f'action="{action}"' in second
    response = client.post(action, data={f"contact-{patient_id}-method": "phone"})
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/recalls/{recall.id}?page=2#patient-{patient_id}")
    again = client.get(f"/recalls/{recall.id}?page=2").get_data(as_text=True)
    assert "Phone · " in patient_rows(again)[patient_id] and "<strong>1 of 120</strong>" in again
    first = client.get(f"/recalls/{recall.id}").get_data(as_text=True)
    assert len(patient_rows(first)) == 100 and patient_id not in patient_rows(first)
    # The printed report holds every patient, ticked or not.
    report = client.get(f"/recalls/{recall.id}/report").get_data(as_text=True)
    assert report.count("<strong>no outcome yet</strong>") == 119 and report.count("Phone · ") == 1


def test_only_a_pharmacist_quarantines_and_only_a_released_lot_with_a_reason(chain, technician):
    from compounding.services.errors import InvalidInput, NotAllowed

    lot = chain["lot"]  # depleted: both batches drew it to zero
    with pytest.raises(NotAllowed):
        inventory.quarantine_lot(technician, lot.id, "quality signal")
    with pytest.raises(InvalidInput):
        inventory.quarantine_lot(chain["pharmacist"], lot.id, "  ")
    with pytest.raises(InvalidState):
        inventory.quarantine_lot(chain["pharmacist"], lot.id, "quality signal")
    db.session.rollback()
    assert db.session.get(Lot, lot.id).status == "depleted" and audit_rows("lot.quarantined") == []
