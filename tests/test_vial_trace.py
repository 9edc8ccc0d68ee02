"""Trace and recall go down to vials: which vial went to which patient, in which session."""

import io
import re

import pytest
import sqlalchemy as sa
from openpyxl import load_workbook
from testkit import PASSWORD, QueryCounter, sign_in_session
from vialkit import use_vial, vials_of

from compounding import workbooks
from compounding.extensions import db
from compounding.models import BatchComponent, SessionUse
from compounding.queries.recalls import recall_record, split_codes
from compounding.services import recalls, trace, treatments


def pooled_use(actor, patient, batch, volume="1"):
    """A use recorded before vials had codes: it names the batch only."""
    row = treatments.record_session(actor, patient_id=patient.id,
                                    uses=[{"batch_code": batch.code, "volume_ml": volume}])
    db.session.execute(sa.update(SessionUse).where(SessionUse.session_id == row.id).values(vial_id=None))
    db.session.commit()
    return row


@pytest.fixture
def vial_scene(practitioner, make_batch, multiple_dose, make_patient):
    """One multiple-dose batch of 3 vials: vial 1 to patients A and B, vial 2 to C, vial 3 untouched; D got a
    pooled use."""
    batch = make_batch(multiple_dose, units=3)
    first, second, _ = vials_of(batch)
    a, b, c, d = (make_patient() for _ in range(4))
    sessions = {"a": use_vial(practitioner, a, first, "2"), "b": use_vial(practitioner, b, first, "3"),
                "c": use_vial(practitioner, c, second, "1"), "d": pooled_use(practitioner, d, batch, "1")}
    return {"batch": batch, "vials": vials_of(batch), "a": a, "b": b, "c": c, "d": d, "sessions": sessions}


def test_a_batch_s_trace_lists_each_vial_with_its_status_and_the_patients_and_sessions_it_went_to(vial_scene):
    scene = vial_scene
    scope = trace.trace_batch(scene["batch"].id)
    assert scope.counts["vials"] == 3
    rows = {row.code: row for row in scope.vials}
    first, second, third = scene["vials"]
    assert [row.code for row in scope.vials] == [first.code, second.code, third.code]
    assert rows[first.code].status == "open" and rows[third.code].status == "sealed"
    assert split_codes(rows[first.code].chart_numbers) == sorted([scene["a"].chart_number, scene["b"].chart_number])
    assert split_codes(rows[first.code].session_ids) == sorted(
        [str(scene["sessions"]["a"].id), str(scene["sessions"]["b"].id)])
    assert split_codes(rows[second.code].chart_numbers) == [scene["c"].chart_number]
    assert rows[third.code].sessions == 0 and rows[third.code].chart_numbers is None


def test_each_session_and_patient_names_its_vials_and_a_use_before_vials_shows_as_pooled(vial_scene):
    scene = vial_scene
    scope = trace.trace_batch(scene["batch"].id)
    sessions = {row.id: row for row in scope.sessions}
    first, second, _ = scene["vials"]
    assert split_codes(sessions[scene["sessions"]["a"].id].vial_codes) == [first.code]
    assert sessions[scene["sessions"]["a"].id].pooled == 0
    pooled = sessions[scene["sessions"]["d"].id]
    assert pooled.vial_codes is None and pooled.pooled == 1
    patients = {row.id: row for row in scope.patients}
    assert split_codes(patients[scene["c"].id].vial_codes) == [second.code]
    assert patients[scene["d"].id].pooled == 1


def test_a_lot_s_trace_reaches_the_vials_of_its_batches(vial_scene):
    lot_id = db.session.scalar(sa.select(BatchComponent.lot_id)
                               .where(BatchComponent.batch_id == vial_scene["batch"].id).limit(1))
    scope = trace.trace_lot(lot_id)
    assert [row.code for row in scope.vials] == [vial.code for vial in vial_scene["vials"]]
    every = trace.trace_lot(lot_id, per_page=None)
    assert [row.code for row in every.vials] == [vial.code for vial in vial_scene["vials"]]


def test_the_trace_page_shows_the_vials_and_pooled_uses(client, make_user, vial_scene):
    sign_in_session(client, make_user("pharmacist"))
    page = client.get(f"/trace/batches/{vial_scene['batch'].id}").get_data(as_text=True)
    first = vial_scene["vials"][0]
    assert 'id="vials"' in page and page.count('<tr id="vial-') == 3
    row = re.search(rf'<tr id="vial-{first.id}">(.*?)</tr>', page, re.S).group(1)
    assert vial_scene["a"].chart_number in row and vial_scene["b"].chart_number in row
    assert "pooled, no vial" in page


def test_the_api_trace_answers_the_vials(client, make_user, make_token, vial_scene):
    token = make_token(make_user("pharmacist"))
    body = client.get(f"/api/v1/trace/batches/{vial_scene['batch'].id}",
                      headers={"Authorization": f"Bearer {token}"}).json
    first = vial_scene["vials"][0]
    vial = next(row for row in body["vials"] if row["code"] == first.code)
    assert vial["status"] == "open" and sorted(vial["chart_numbers"]) == sorted(
        [vial_scene["a"].chart_number, vial_scene["b"].chart_number])
    patient = next(row for row in body["patients"] if row["id"] == vial_scene["a"].id)
    assert patient["vial_codes"] == [first.code]
    session = next(row for row in body["sessions"] if row["id"] == vial_scene["sessions"]["d"].id)
    assert session["vial_codes"] == [] and session["pooled"] is True


def test_a_recall_lists_the_vials_per_patient_on_its_page_report_and_workbook(
        client, make_user, pharmacist, vial_scene):
    recall = recalls.open_recall(pharmacist, reason="endotoxin", password=PASSWORD, batch_id=vial_scene["batch"].id)
    first, second, _ = vial_scene["vials"]
    sign_in_session(client, make_user("pharmacist"))
    for url in (f"/recalls/{recall.id}", f"/recalls/{recall.id}/report"):
        page = client.get(url).get_data(as_text=True)
        row = re.search(rf'<tr id="patient-{vial_scene["c"].id}"[^>]*>(.*?)</tr>', page, re.S).group(1)
        assert second.code in row and first.code not in row, url
    record = recall_record(recall.id, per_page=None)
    out = io.BytesIO()
    workbooks.recall_workbook(record.recall, record.scope, record.contacts, out)
    book = load_workbook(io.BytesIO(out.getvalue()))
    patients = _table(book["Patients"])
    assert {row["Patient chart"]: row["Vials"] for row in patients}[vial_scene["c"].chart_number] == second.code
    assert {row["Patient chart"]: row["Vials"] for row in patients}[vial_scene["d"].chart_number] == \
        "pooled, no vial"
    vials = {row["Vial code"]: row for row in _table(book["Vials"])}
    assert vials[first.code]["Status"] == "recalled" and vials[second.code]["Patient charts"] == \
        vial_scene["c"].chart_number


def test_the_trace_workbook_gains_a_vial_column_and_a_vials_sheet(vial_scene):
    out = io.BytesIO()
    workbooks.trace_workbook(trace.trace_batch(vial_scene["batch"].id, per_page=None), out)
    book = load_workbook(io.BytesIO(out.getvalue()))
    assert book.sheetnames == ["Trace", "Patients", "Sessions", "Vials", "Batches", "Lots"]
    sessions = {row["Session id"]: row for row in _table(book["Sessions"])}
    first = vial_scene["vials"][0]
    assert sessions[vial_scene["sessions"]["a"].id]["Vials"] == first.code
    assert sessions[vial_scene["sessions"]["d"].id]["Vials"] == "pooled, no vial"
    assert len(_table(book["Vials"])) == 3


def test_tracing_a_batch_costs_the_same_statements_for_2_or_40_vials_used(
        client, make_user, practitioner, make_batch, make_patient):
    small, large = make_batch(units=2), make_batch(units=40)
    for batch in (small, large):
        for vial in vials_of(batch):
            use_vial(practitioner, make_patient(), vial, "1")
    sign_in_session(client, make_user("pharmacist"))
    client.get(f"/trace/batches/{small.id}")  # warm-up
    counted = {}
    for batch in (small, large):
        with QueryCounter(db.engine) as counter:
            page = client.get(f"/trace/batches/{batch.id}").get_data(as_text=True)
        counted[batch.id] = counter.count
    assert counted[small.id] == counted[large.id]
    assert page.count('<tr id="vial-') == 40


def _table(ws) -> list[dict]:
    headers = [cell.value for cell in ws[1]]
    return [dict(zip(headers, (cell.value for cell in row), strict=False)) for row in ws.iter_rows(min_row=2)]


def test_a_recall_page_costs_the_same_statements_for_2_or_40_vials_used(
        client, make_user, pharmacist, practitioner, make_batch, make_patient):
    small, large = make_batch(units=2), make_batch(units=40)
    opened = {}
    for batch in (small, large):
        for vial in vials_of(batch):
            use_vial(practitioner, make_patient(), vial, "1")
        opened[batch.id] = recalls.open_recall(pharmacist, reason="particles", password=PASSWORD,
                                               batch_id=batch.id).id
    sign_in_session(client, make_user("pharmacist"))
    client.get(f"/recalls/{opened[small.id]}")  # warm-up
    counted = {}
    for batch in (small, large):
        with QueryCounter(db.engine) as counter:
            page = client.get(f"/recalls/{opened[batch.id]}").get_data(as_text=True)
        counted[batch.id] = counter.count
    assert counted[small.id] == counted[large.id]
    assert page.count('<tr id="vial-') == 40
