"""A batch's vials on its page and in the API, and each vial's own page: history, uses, ledger, holds."""

import re
from decimal import Decimal

import pytest
import sqlalchemy as sa
from testkit import QueryCounter, sign_in

from compounding.extensions import db
from compounding.models import SessionUse, Vial
from compounding.services import holds, treatments
from compounding.services.ledger import move_vial

EVIDENCE = "AET report 2026-014: passed (USP <51>)"


def vials_of(batch) -> list[Vial]:
    return db.session.scalars(sa.select(Vial).where(Vial.batch_id == batch.id).order_by(Vial.number)).all()


def vial_rows(html: str) -> list[str]:
    return re.findall(r'<tr class="vial-row[^"]*">.*?</tr>', html, re.DOTALL)


@pytest.fixture
def use_vial(practitioner, make_patient):
    """A session taking `volume` from a batch by its code (the session takes the open vial, else the next
    sealed one): the session, its patient and the vial it drew from."""

    def use(batch, volume="2", patient=None):
        patient = patient or make_patient()
        session = treatments.record_session(practitioner, patient_id=patient.id,
                                            uses=[{"batch_code": batch.code, "volume_ml": volume}])
        use = db.session.scalar(sa.select(SessionUse).where(SessionUse.session_id == session.id))
        return session, patient, db.session.get(Vial, use.vial_id)

    return use


@pytest.fixture
def reader(client, make_user):
    sign_in(client, make_user("practitioner"))
    return client


# --- the batch page -------------------------------------------------------------------------------


def test_the_batch_page_lists_each_vial_with_its_code_dose_status_and_volume(reader, make_batch):
    batch = make_batch(units=3)
    html = reader.get(f"/batches/{batch.id}").get_data(as_text=True)

    rows = vial_rows(html)
    assert len(rows) == 3
    for row, vial in zip(rows, vials_of(batch), strict=True):
        text = " ".join(re.sub(r"<[^>]+>", " ", row).split())
        assert text.startswith(f"{vial.code} single sealed 10 mL"), text
        assert f'href="/batches/{batch.id}/vials/{vial.number}"' in row


def test_a_spent_single_dose_vial_names_the_session_it_served(reader, make_batch, use_vial):
    batch = make_batch(units=2)
    session, _, vial = use_vial(batch, "2")
    html = reader.get(f"/batches/{batch.id}").get_data(as_text=True)

    [first, second] = vial_rows(html)
    assert vial.code in first and "spent" in first and f"/treatments/sessions/{session.id}" in first
    assert "sealed" in second


def test_an_opened_multiple_dose_vial_shows_its_puncture_and_in_use_deadline(reader, make_formula, make_batch,
                                                                              make_lot, use_vial):
    formula = make_formula(dose="multiple", in_use_hours=48, antimicrobial_evidence=EVIDENCE)
    for component in formula.components:
        make_lot(component.ingredient, quantity="1000")
    batch = make_batch(formula, units=2)
    session, _, vial = use_vial(batch, "3")
    html = reader.get(f"/batches/{batch.id}").get_data(as_text=True)

    [first, _] = vial_rows(html)
    text = " ".join(re.sub(r"<[^>]+>", " ", first).split())
    assert "multiple" in text and "open" in text and "7 mL" in text
    until = vial.in_use_until(batch.beyond_use_at)
    assert vial.punctured_at is not None and until < batch.beyond_use_at
    assert f'datetime="{until.isoformat()}"' in first or until.strftime("%Y-%m-%d") in text


def test_the_vials_section_costs_the_same_statements_for_3_and_40_vials(reader, make_batch):
    def statements(batch) -> int:
        with QueryCounter(db.engine) as counter:
            response = reader.get(f"/batches/{batch.id}")
        assert response.status_code == 200
        assert len(vial_rows(response.get_data(as_text=True))) == min(batch.units, 50)
        return counter.count

    small, large = make_batch(units=3), make_batch(units=40)
    assert statements(small) == statements(large)


def test_a_large_batch_shows_its_vials_fifty_to_a_page(reader, make_batch):
    batch = make_batch(units=60)
    first = reader.get(f"/batches/{batch.id}").get_data(as_text=True)
    second = reader.get(f"/batches/{batch.id}?vial_page=2").get_data(as_text=True)

    assert len(vial_rows(first)) == 50 and len(vial_rows(second)) == 10
    assert f"{batch.code}-60" in vial_rows(second)[-1]
    assert not any(f"{batch.code}-60" in row for row in vial_rows(first))
    assert "vial_page=2" in first


# --- a vial's page --------------------------------------------------------------------------------


def test_a_vial_page_shows_its_history_uses_ledger_and_holds(reader, make_batch, use_vial, make_user):
    batch = make_batch(units=2)
    session, patient, vial = use_vial(batch, "2")
    holds.place_hold(make_user("pharmacist"), vials_of(batch)[1], "quality_signal", "nodule reported")
    db.session.commit()

    spent = reader.get(f"/batches/{batch.id}/vials/1")
    html = spent.get_data(as_text=True)
    assert spent.status_code == 200
    assert vial.code in html and "Single-dose" in html
    for status in ("sealed", "open", "spent"):
        assert f'<td class="vial-status">{status}</td>' in html, status
    assert patient.chart_number in html and f"/treatments/sessions/{session.id}" in html
    assert "Do not use" in html

    held = reader.get(f"/batches/{batch.id}/vials/2").get_data(as_text=True)
    assert "nodule reported" in held and "on hold" in held


def test_the_vial_page_shows_its_ledger_rows(reader, make_batch, make_user):
    batch = make_batch(units=2)
    vial = vials_of(batch)[0]
    move_vial(vial, batch, "waste", Decimal("-1.5"), make_user("pharmacist"), reason="spill", note="dropped")
    db.session.commit()

    html = reader.get(f"/batches/{batch.id}/vials/1").get_data(as_text=True)
    [row] = re.findall(r'<tr class="ledger-row">.*?</tr>', html, re.DOTALL)
    assert "waste" in row and "-1.5 mL" in row and "spill" in row


def test_an_administrator_sees_a_vial_but_not_who_received_it(client, make_user, make_batch, use_vial):
    batch = make_batch(units=2)
    _, patient, _ = use_vial(batch, "2")
    sign_in(client, make_user("admin"))

    html = client.get(f"/batches/{batch.id}/vials/1").get_data(as_text=True)
    assert f"{batch.code}-01" in html
    assert patient.chart_number not in html


def test_a_vial_page_read_with_patients_is_logged_once(reader, make_batch, use_vial):
    from compounding.models import PatientAccess

    batch = make_batch(units=2)
    use_vial(batch, "2")
    before = db.session.scalar(sa.select(sa.func.count(PatientAccess.id)))
    reader.get(f"/batches/{batch.id}/vials/1")

    rows = db.session.scalars(sa.select(PatientAccess).order_by(PatientAccess.id.desc())).all()
    assert len(rows) == before + 1 and (rows[0].target_type, rows[0].target_id) == ("vial", vials_of(batch)[0].id)


def test_a_vial_code_leads_to_its_page_and_an_unknown_vial_is_404(reader, make_batch):
    batch = make_batch(units=2)

    found = reader.get(f"/batches/vials/{batch.code.lower()}-02")
    assert found.status_code == 302 and found.headers["Location"].endswith(f"/batches/{batch.id}/vials/2")
    assert reader.get(f"/batches/{batch.id}/vials/3").status_code == 404
    assert reader.get(f"/batches/vials/{batch.code}-03").status_code == 404
    assert reader.get("/batches/vials/B26-").status_code == 422


# --- the API ----------------------------------------------------------------------------------------


def test_the_batch_api_answers_its_vials(client, auth, make_batch, use_vial):
    batch = make_batch(units=3)
    use_vial(batch, "2")

    body = client.get(f"/api/v1/batches/{batch.id}", headers=auth()).get_json()

    assert [(v["code"], v["dose"], v["status"], v["remaining_ml"]) for v in body["vials"]] == [
        (f"{batch.code}-01", "single", "spent", "0"), (f"{batch.code}-02", "single", "sealed", "10"),
        (f"{batch.code}-03", "single", "sealed", "10")]
    assert {"punctured_at", "in_use_until"} <= set(body["vials"][0])
    assert body["vials"][1]["punctured_at"] is None and body["vials"][1]["in_use_until"] is None


def test_the_batch_api_costs_the_same_statements_for_3_and_40_vials(client, auth, make_batch):
    headers = auth()

    def statements(batch) -> int:
        with QueryCounter(db.engine) as counter:
            body = client.get(f"/api/v1/batches/{batch.id}", headers=headers).get_json()
        assert len(body["vials"]) == batch.units
        return counter.count

    assert statements(make_batch(units=3)) == statements(make_batch(units=40))
