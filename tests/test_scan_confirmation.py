"""Every container is scanned by default, at the bench and over the API."""

import re

import pytest
import sqlalchemy as sa
from testkit import bearer

from compounding import config
from compounding.extensions import db
from compounding.models import Batch
from compounding.services import users


@pytest.fixture
def formula(make_formula, make_ingredient, make_lot):
    pc = make_ingredient(name="Phosphatidylcholine", unit="mg")
    saline = make_ingredient(name="Sodium chloride 0.9 %", kind="diluent", unit="mL")
    formula = make_formula([(pc, "2"), (saline, "8")], code="PCDC", name="Lipolytic", unit_volume_ml="8")
    make_lot(pc, quantity="100")
    make_lot(saline, quantity="1000")
    return formula


def _batches() -> int:
    return db.session.scalar(sa.select(sa.func.count(Batch.id)))


def test_scan_confirmation_is_read_from_the_environment_and_on_by_default(monkeypatch):
    monkeypatch.delenv("REQUIRE_SCAN_CONFIRMATION", raising=False)
    assert config.from_environment()["REQUIRE_SCAN_CONFIRMATION"] is True
    assert config.DEFAULTS["REQUIRE_SCAN_CONFIRMATION"] is True
    monkeypatch.setenv("REQUIRE_SCAN_CONFIRMATION", "off")
    assert config.from_environment()["REQUIRE_SCAN_CONFIRMATION"] is False


def test_the_api_answers_409_with_the_proposed_lots_when_fefo_containers_are_not_scanned(client, make_user,
                                                                                        formula):
    headers = bearer(users.create_token(None, make_user("technician"), "test"))
    response = client.post("/api/v1/batches", headers=headers, json={"formula_id": formula.id, "units": 2})
    assert response.status_code == 409 and _batches() == 0
    proposed = response.json["details"]["proposed_lots"]
    assert {(row["lot_code"], row["quantity"]) for row in proposed} == {("L000001", "4"), ("L000002", "16")}
    assert all(isinstance(row["lot_id"], int) for row in proposed)
    # The client scans them and sends them back.
    response = client.post("/api/v1/batches", headers=headers, json={
        "formula_id": formula.id, "units": 2,
        "allocations": [{"lot_id": row["lot_id"], "quantity": row["quantity"]} for row in proposed],
        "scanned_lot_ids": [row["lot_id"] for row in proposed]})
    assert response.status_code == 201, response.json
    assert all(component["scanned"] for component in response.json["components"])


def test_the_api_answers_409_naming_the_unscanned_lots_of_explicit_allocations(client, make_user, formula):
    headers = bearer(users.create_token(None, make_user("technician"), "test"))
    lots = db.session.scalars(sa.text("SELECT id FROM lots ORDER BY id")).all()
    response = client.post("/api/v1/batches", headers=headers, json={
        "formula_id": formula.id, "units": 2, "scanned_lot_ids": [lots[0]],
        "allocations": [{"lot_id": lots[0], "quantity": "4"}, {"lot_id": lots[1], "quantity": "16"}]})
    assert response.status_code == 409 and "L000002" in response.json["error"] and "L000001" not in (
        response.json["error"])
    assert [row["lot_code"] for row in response.json["details"]["unscanned_lots"]] == ["L000002"]
    assert "proposed_lots" not in response.json["details"] and _batches() == 0


@pytest.mark.parametrize("config_overrides", [{"REQUIRE_SCAN_CONFIRMATION": False}], indirect=True)
def test_a_clinic_that_turns_scanning_off_compounds_fefo_without_scans(client, make_user, formula):
    headers = bearer(users.create_token(None, make_user("technician"), "test"))
    response = client.post("/api/v1/batches", headers=headers, json={"formula_id": formula.id, "units": 2})
    assert response.status_code == 201


def test_the_bench_scan_field_never_shows_the_expected_code(client, as_role, formula):
    as_role("technician")
    page = client.get(f"/batches/new?formula_id={formula.id}&units=2").get_data(as_text=True)
    fields = re.findall(r"<input[^>]*scan-confirm[^>]*>", page)
    assert len(fields) == 2
    for field in fields:
        assert not re.search(r"L\d{6}", field), field
    labels = re.findall(r'<label[^>]*for="lot-\d+-scan"[^>]*>[^<]*</label>', page)
    assert labels and not any(re.search(r"L\d{6}", label) for label in labels)
    assert "Every container must be scanned" in page


def test_the_bench_refuses_to_save_a_batch_with_no_container_scanned(client, as_role, formula):
    as_role("technician")
    response = client.post(f"/batches/new?formula_id={formula.id}&units=2", data={
        "formula_id": formula.id, "units": 2, "lot-1-quantity": "4", "lot-2-quantity": "16"})
    assert response.status_code == 422 and "not scanned" in response.get_data(as_text=True)
    assert _batches() == 0
    response = client.post(f"/batches/new?formula_id={formula.id}&units=2", data={
        "formula_id": formula.id, "units": 2, "lot-1-quantity": "4", "lot-2-quantity": "16",
        "lot-1-scan": "L000001", "lot-2-scan": "l000002"})
    assert response.status_code == 302 and _batches() == 1
