"""The equipment API, equipment_ids on a new batch, what a batch answers it was made with, and the scan."""

from datetime import date, timedelta

import pytest
import sqlalchemy as sa
from sitekit import add_site
from testkit import QueryCounter, count_rows

from compounding.extensions import db
from compounding.models import Batch, Calibration, Equipment
from compounding.services import batches, equipment

TODAY = date.today()


def day(offset: int) -> str:
    return (TODAY + timedelta(days=offset)).isoformat()


@pytest.fixture
def lyon():
    return add_site("LYON")


@pytest.fixture
def balance(pharmacist):
    return equipment.create_equipment(pharmacist, code="BAL-01", kind="balance", name="Analytical balance",
                                      due_on=TODAY + timedelta(days=90))


@pytest.fixture
def late(pharmacist):
    return equipment.create_equipment(pharmacist, code="BAL-02", kind="balance", name="Old balance",
                                      due_on=TODAY - timedelta(days=3))


def test_registering_answers_201_with_the_piece_as_it_stands(client, auth):
    response = client.post("/api/v1/equipment", headers=auth("pharmacist"), json={
        "code": "hood-01", "kind": "hood", "due_on": day(100), "serial_number": "SN-1"})
    assert response.status_code == 201, response.json
    body = response.json
    assert (body["code"], body["kind"], body["name"], body["site"], body["due_on"]) == (
        "HOOD-01", "hood", "HOOD-01", "MAIN", day(100))
    assert body["usable"] and body["reasons"] == [] and body["state"] == "usable" and body["calibrations"] == []


@pytest.mark.parametrize(("body", "status", "field"), [
    ({"code": "BAL-01"}, 409, "code"),
    ({"code": "LOC0001"}, 422, "code"),
    ({"code": "B2612070001"}, 422, "code"),
    ({"code": ""}, 422, "code"),
    ({"kind": "scale"}, 422, "kind"),
    ({"due_on": "2027-02-30"}, 422, "due_on"),
    ({"due_on": "next week"}, 422, "due_on"),
    ({"due_on": "2150-01-01"}, 422, "due_on"),
    ({"site_id": 999999}, 404, None),
])
def test_bad_equipment_is_refused_and_nothing_is_made(client, auth, balance, body, status, field):
    response = client.post("/api/v1/equipment", headers=auth("pharmacist"),
                           json={"code": "BAL-09", "kind": "balance", "due_on": day(30), **body})
    assert response.status_code == status, response.json
    assert set(response.json) == {"error", "details"}
    if field:
        assert field in (response.json["details"] or {}), response.json
    assert count_rows(Equipment) == 1


def test_equipment_is_registered_only_at_ones_own_sites_and_only_by_who_manages_it(client, auth, lyon):
    response = client.post("/api/v1/equipment", headers=auth("pharmacist"),
                           json={"code": "BAL-LY", "kind": "balance", "due_on": day(30), "site_id": lyon.id})
    assert response.status_code == 403 and "LYON" in response.json["error"]
    response = client.post("/api/v1/equipment", headers=auth("technician"),
                           json={"code": "BAL-LY", "kind": "balance", "due_on": day(30)})
    assert response.status_code == 403
    assert count_rows(Equipment) == 0


def test_the_list_is_scoped_to_the_callers_sites_and_filtered(client, auth, make_user, balance, late, lyon):
    admin = make_user("admin", all_sites=True)
    equipment.create_equipment(admin, code="BAL-LY", kind="balance", due_on=TODAY, site_id=lyon.id)
    headers = auth("pharmacist")
    listed = client.get("/api/v1/equipment", headers=headers).json
    assert [item["code"] for item in listed["items"]] == ["BAL-01", "BAL-02"] and listed["total"] == 2
    overdue = client.get("/api/v1/equipment?state=overdue", headers=headers).json["items"]
    assert [item["code"] for item in overdue] == ["BAL-02"] and not overdue[0]["usable"]
    assert "was due for calibration" in overdue[0]["reasons"][0]
    assert client.get(f"/api/v1/equipment?site_id={lyon.id}", headers=headers).status_code == 403
    assert client.get("/api/v1/equipment?state=broken", headers=headers).status_code == 422
    everywhere = client.get("/api/v1/equipment", headers=auth(admin)).json
    assert {item["site"] for item in everywhere["items"]} == {"MAIN", "LYON"}


def test_the_list_reads_a_fixed_number_of_statements(client, auth, pharmacist):
    headers = auth("pharmacist")
    for n in range(3):
        equipment.create_equipment(pharmacist, code=f"PIP-{n}", kind="pipette", due_on=TODAY)
    with QueryCounter(db.engine) as few:
        client.get("/api/v1/equipment", headers=headers)
    for n in range(3, 30):
        equipment.create_equipment(pharmacist, code=f"PIP-{n}", kind="pipette", due_on=TODAY)
    with QueryCounter(db.engine) as many:
        assert client.get("/api/v1/equipment", headers=headers).json["total"] == 30
    assert many.count == few.count


def test_one_piece_answers_with_its_calibrations_and_another_sites_is_404(client, auth, pharmacist, make_user,
                                                                        balance, lyon):
    equipment.record_calibration(pharmacist, balance.id, performed_on=TODAY - timedelta(days=300), result="pass",
                                 next_due_on=TODAY + timedelta(days=60))
    equipment.record_calibration(pharmacist, balance.id, performed_on=TODAY, result="pass",
                                 next_due_on=TODAY + timedelta(days=365), certificate_number="C-2")
    body = client.get(f"/api/v1/equipment/{balance.id}", headers=auth("technician")).json
    assert [c["certificate_number"] for c in body["calibrations"]] == ["C-2", ""]
    assert body["due_on"] == day(365)
    stranger = make_user("pharmacist", site_codes=["LYON"])
    assert client.get(f"/api/v1/equipment/{balance.id}", headers=auth(stranger)).status_code == 404
    assert client.post(f"/api/v1/equipment/{balance.id}/calibrations", headers=auth(stranger),
                       json={"performed_on": day(0), "result": "fail"}).status_code == 404
    assert client.get("/api/v1/equipment/999999", headers=auth("technician")).status_code == 404


def test_a_calibration_answers_201_and_a_fail_takes_it_out_of_service(client, auth, balance):
    headers = auth("pharmacist")
    response = client.post(f"/api/v1/equipment/{balance.id}/calibrations", headers=headers, json={
        "performed_on": day(0), "result": "pass", "next_due_on": day(365), "performed_by": "Metrology Ltd",
        "certificate_number": "C-1"})
    assert response.status_code == 201, response.json
    assert response.json["result"] == "pass" and response.json["equipment"]["due_on"] == day(365)
    response = client.post(f"/api/v1/equipment/{balance.id}/calibrations", headers=headers,
                           json={"performed_on": day(0), "result": "fail"})
    assert response.status_code == 201
    assert response.json["equipment"]["state"] == "out_of_service" and not response.json["equipment"]["usable"]


@pytest.mark.parametrize(("body", "status"), [
    ({"performed_on": day(1), "result": "pass", "next_due_on": day(30)}, 422),
    ({"performed_on": day(0), "result": "pass"}, 422),
    ({"performed_on": day(0), "result": "pass", "next_due_on": day(0)}, 422),
    ({"performed_on": "2026-13-01", "result": "pass", "next_due_on": day(30)}, 422),
    ({"performed_on": day(0), "result": "maybe"}, 422),
])
def test_bad_calibrations_are_refused_and_change_nothing(client, auth, pharmacist, balance, body, status):
    equipment.record_calibration(pharmacist, balance.id, performed_on=TODAY - timedelta(days=10), result="pass",
                                 next_due_on=TODAY + timedelta(days=90))
    response = client.post(f"/api/v1/equipment/{balance.id}/calibrations", headers=auth("pharmacist"), json=body)
    assert response.status_code == status, response.json
    assert count_rows(Calibration) == 1


def test_patch_renames_and_retires(client, auth, balance):
    headers = auth("pharmacist")
    response = client.patch(f"/api/v1/equipment/{balance.id}", headers=headers, json={"serial_number": "SN-2"})
    assert response.status_code == 200 and response.json["serial_number"] == "SN-2"
    assert response.json["name"] == "Analytical balance"
    response = client.patch(f"/api/v1/equipment/{balance.id}", headers=headers, json={"active": False})
    assert response.json["state"] == "retired" and "retired" in response.json["reasons"][0]
    assert client.patch(f"/api/v1/equipment/{balance.id}", headers=headers, json={"name": ""}).status_code == 422
    assert client.patch(f"/api/v1/equipment/{balance.id}", headers=auth("technician"),
                        json={"name": "x"}).status_code == 403


def scanned(formula, units: int = 1) -> dict:
    """The FEFO lots allocated and every container scanned, as the API client at the bench sends them."""
    allocations = [{"lot_id": lot_id, "quantity": str(quantity)} for component in batches.propose(formula, units)
                   for lot_id, quantity in component.proposed.items()]
    return {"allocations": allocations, "scanned_lot_ids": [row["lot_id"] for row in allocations]}


def test_a_batch_is_made_with_the_equipment_named_and_answers_it(client, auth, balance, stocked_formula):
    headers = auth("technician")
    response = client.post("/api/v1/batches", headers=headers, json={
        "formula_id": stocked_formula.id, "units": 1, "equipment_ids": [balance.id], **scanned(stocked_formula)})
    assert response.status_code == 201, response.json
    assert response.json["equipment"] == [{"id": balance.id, "code": "BAL-01", "kind": "balance",
                                           "name": "Analytical balance", "due_on": balance.due_on.isoformat()}]
    again = client.get(f"/api/v1/batches/{response.json['id']}", headers=headers).json
    assert again["equipment"] == response.json["equipment"]


@pytest.mark.parametrize(("ids", "status", "message"), [
    ("late", 409, "was due for calibration on"),
    (None, 422, "Scan or choose the equipment used"),
    ([], 422, "Scan or choose the equipment used"),
    ("other", 409, "registered at another site"),
    (["BAL-01"], 422, None),
])
def test_a_batch_with_overdue_missing_or_foreign_equipment_is_refused(client, auth, make_user, balance, late, lyon,
                                                                      stocked_formula, ids, status, message):
    if ids == "late":
        ids = [balance.id, late.id]
    elif ids == "other":
        admin = make_user("admin", all_sites=True)
        ids = [equipment.create_equipment(admin, code="BAL-LY", kind="balance", due_on=TODAY, site_id=lyon.id).id]
    body = {"formula_id": stocked_formula.id, "units": 1, **scanned(stocked_formula)}
    if ids is not None:
        body["equipment_ids"] = ids
    response = client.post("/api/v1/batches", headers=auth("technician"), json=body)
    assert response.status_code == status, response.json
    if message:
        assert message in response.json["error"]
    assert count_rows(Batch) == 0


def test_the_batch_list_reads_equipment_in_a_fixed_number_of_statements(client, auth, technician, balance,
                                                                         stocked_formula):
    headers = auth("pharmacist")
    batches.compound_batch(technician, stocked_formula.id, 1, equipment_ids=[balance.id])
    with QueryCounter(db.engine) as one:
        listed = client.get("/api/v1/batches", headers=headers).json
    assert listed["items"][0]["equipment"][0]["code"] == "BAL-01"
    for _ in range(4):
        batches.compound_batch(technician, stocked_formula.id, 1, equipment_ids=[balance.id])
    with QueryCounter(db.engine) as five:
        assert client.get("/api/v1/batches", headers=headers).json["total"] == 5
    assert five.count == one.count


def test_the_scan_answers_an_equipment_code_with_whether_it_may_be_used(client, auth, make_user, balance, late,
                                                                        lyon):
    headers = auth("technician")
    good = client.get("/api/v1/scan?code=bal-01", headers=headers).json
    assert (good["kind"], good["code"], good["usable"], good["reasons"]) == ("equipment", "BAL-01", True, [])
    assert good["equipment_kind"] == "balance" and good["due_on"] == balance.due_on.isoformat()
    bad = client.get("/api/v1/scan?code=BAL-02", headers=headers).json
    assert bad["kind"] == "equipment" and not bad["usable"] and "was due for calibration" in bad["reasons"][0]
    stranger = make_user("technician", site_codes=["LYON"])
    hidden = client.get("/api/v1/scan?code=BAL-01", headers=auth(stranger)).json
    assert hidden["kind"] == "equipment" and hidden["site"] == "MAIN" and "name" not in hidden
    assert client.get("/api/v1/scan?code=NOPE-1", headers=headers).json["kind"] == "unknown"
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Equipment)) == 2
