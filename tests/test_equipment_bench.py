"""Equipment at the bench: the compounding page asks which was used, the batch page and its A4 record name it,
the scan station reads its code, and the command line registers and calibrates it."""

import re
from datetime import date, timedelta

import pytest
import sqlalchemy as sa
from sitekit import add_site
from testkit import audit_rows, count_rows, sign_in

from compounding.extensions import db
from compounding.models import Batch, BatchEquipment, Calibration, Equipment, StockMovement
from compounding.services import batches, equipment

TODAY = date.today()


@pytest.fixture
def bench(make_ingredient, make_lot, make_formula):
    pc = make_ingredient(name="Phosphatidylcholine")
    saline = make_ingredient(name="Saline", kind="diluent")
    formula = make_formula([(pc, "2"), (saline, "8")])
    return formula, make_lot(pc, quantity="100"), make_lot(saline, quantity="500")


@pytest.fixture
def kit(pharmacist):
    """A usable balance and hood, an overdue balance and an out-of-service pipette at MAIN."""
    made = {}
    for code, kind, days in (("BAL-01", "balance", 120), ("HOOD-01", "hood", 150), ("BAL-02", "balance", -3),
                             ("PIP-01", "pipette", 60)):
        made[code] = equipment.create_equipment(pharmacist, code=code, kind=kind, name=f"The {kind}",
                                                due_on=TODAY + timedelta(days=days))
    equipment.record_calibration(pharmacist, made["PIP-01"].id, performed_on=TODAY, result="fail")
    return made


def compound_data(formula, pc_lot, saline_lot, **extra) -> dict:
    return {"formula_id": str(formula.id), "units": "1", f"lot-{pc_lot.id}-quantity": "2",
            f"lot-{pc_lot.id}-scan": pc_lot.code, f"lot-{saline_lot.id}-quantity": "8",
            f"lot-{saline_lot.id}-scan": saline_lot.code, **extra}


def test_the_bench_offers_the_sites_equipment_with_unusable_ones_disabled_and_why(client, technician, bench, kit):
    formula = bench[0]
    sign_in(client, technician)
    page = client.get(f"/batches/new?formula_id={formula.id}&units=1").get_data(as_text=True)
    assert 'id="equipment-used"' in page and "js/equipment-pick.js" in page
    for code in ("BAL-01", "HOOD-01"):
        item = kit[code]
        assert re.search(rf'value="{item.id}" id="equipment-{item.id}"\s+data-code="{code}">', page)
    assert f'data-code="BAL-02" disabled aria-describedby="equipment-{kit["BAL-02"].id}-reasons"' in page
    assert "BAL-02 (The balance) was due for calibration" in page
    assert "PIP-01 failed its last calibration and is out of service" in page
    assert "<script>" not in page


def test_a_site_without_equipment_asks_for_none(client, technician, bench):
    formula, pc_lot, saline_lot = bench
    sign_in(client, technician)
    assert 'id="equipment-used"' not in client.get(f"/batches/new?formula_id={formula.id}&units=1").get_data(
        as_text=True)
    assert client.post("/batches/new", data=compound_data(formula, pc_lot, saline_lot)).status_code == 302


@pytest.mark.parametrize("chosen, message", [
    (lambda kit: {"equipment_ids": [str(kit["BAL-02"].id), str(kit["HOOD-01"].id)]}, "was due for calibration on"),
    (lambda kit: {"equipment_ids": [str(kit["PIP-01"].id)]}, "is out of service"),
    (lambda kit: {}, "Scan or choose the equipment used"),
    (lambda kit: {"equipment_scan": "BAL-02"}, "was due for calibration on"),
    (lambda kit: {"equipment_scan": "NOPE-9"}, "No equipment has the code NOPE-9"),
])
def test_overdue_or_missing_equipment_is_refused_on_the_form_and_nothing_is_consumed(
        client, technician, bench, kit, chosen, message):
    formula, pc_lot, saline_lot = bench
    sign_in(client, technician)
    moves = count_rows(StockMovement)
    response = client.post("/batches/new", data=compound_data(formula, pc_lot, saline_lot, **chosen(kit)))
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert message in page and 'id="equipment-used"' in page
    assert count_rows(Batch) == 0 and count_rows(BatchEquipment) == 0 and count_rows(StockMovement) == moves


def test_equipment_ticked_and_scanned_goes_onto_the_batch_record_and_its_printout(client, technician, bench, kit):
    formula, pc_lot, saline_lot = bench
    sign_in(client, technician)
    response = client.post("/batches/new", data=compound_data(
        formula, pc_lot, saline_lot, equipment_ids=[str(kit["HOOD-01"].id)], equipment_scan="bal-01"))
    assert response.status_code == 302, response.get_data(as_text=True)
    batch = db.session.scalar(sa.select(Batch))
    used = db.session.scalars(sa.select(BatchEquipment).where(BatchEquipment.batch_id == batch.id)
                              .order_by(BatchEquipment.id)).all()
    assert [(row.code, row.due_on) for row in used] == [("HOOD-01", kit["HOOD-01"].due_on),
                                                        ("BAL-01", kit["BAL-01"].due_on)]
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert 'id="equipment"' in page and "HOOD-01" in page and "BAL-01" in page
    assert kit["BAL-01"].due_on.isoformat() in page
    record = client.get(f"/batches/{batch.id}/record").get_data(as_text=True)
    assert 'id="record-equipment"' in record
    for code, kind in (("BAL-01", "Balance"), ("HOOD-01", "Hood / biological safety cabinet")):
        assert f'<th scope="row" class="font-monospace fw-normal">{code}</th><td>{kind}</td>' in record
    [row] = audit_rows("batch.compounded")
    assert {e["code"] for e in row.new_values["equipment"]} == {"BAL-01", "HOOD-01"}


def test_the_record_keeps_the_due_date_at_use_after_a_later_calibration(client, technician, pharmacist, bench,
                                                                        kit):
    formula = bench[0]
    batch = batches.compound_batch(technician, formula.id, 1, equipment_ids=[kit["BAL-01"].id])
    equipment.record_calibration(pharmacist, kit["BAL-01"].id, performed_on=TODAY, result="pass",
                                 next_due_on=TODAY + timedelta(days=700))
    sign_in(client, technician)
    record = client.get(f"/batches/{batch.id}/record").get_data(as_text=True)
    assert (TODAY + timedelta(days=120)).isoformat() in record
    assert (TODAY + timedelta(days=700)).isoformat() not in record


def test_the_scan_station_says_whether_equipment_may_be_used(client, technician, kit):
    sign_in(client, technician)
    good = client.get("/scan/?code=HOOD-01").get_data(as_text=True)
    assert 'data-kind="equipment" data-usable="yes"' in good and "USABLE" in good
    bad = client.get("/scan/?code=BAL-02").get_data(as_text=True)
    assert 'data-kind="equipment" data-usable="no"' in bad and "was due for calibration" in bad


def test_another_sites_equipment_scans_as_not_yours(client, make_user, kit):
    add_site("LYON")
    sign_in(client, make_user("technician", site_codes=["LYON"]))
    page = client.get("/scan/?code=BAL-01").get_data(as_text=True)
    assert "at site MAIN, not one of yours" in page and "The balance" not in page


def _run(runner, *args):
    result = runner.invoke(args=list(args))
    return result.exit_code, result.output + (result.stderr or "")


def test_the_command_line_registers_and_calibrates_equipment(runner):
    code, output = _run(runner, "create-equipment", "bal-07", "--kind", "balance",
                        "--due-on", (TODAY + timedelta(days=30)).isoformat(), "--name", "Bench balance")
    assert code == 0, output
    assert f"Registered BAL-07 (Bench balance, balance) at site MAIN; due {(TODAY + timedelta(days=30))}" in output
    item = equipment.find_by_code("BAL-07")
    assert item.created_by_id is None
    code, output = _run(runner, "record-calibration", "BAL-07", "--performed-on", TODAY.isoformat(),
                        "--result", "pass", "--next-due-on", (TODAY + timedelta(days=365)).isoformat(),
                        "--certificate-number", "C-77")
    assert code == 0, output
    db.session.refresh(item)
    assert item.due_on == TODAY + timedelta(days=365) and "next due" in output
    [row] = audit_rows("equipment.calibrated")
    assert row.actor_id is None and row.new_values["certificate_number"] == "C-77"


@pytest.mark.parametrize("args, message", [
    (["create-equipment", "L000001", "--kind", "balance", "--due-on", "2027-01-01"], "looks like a lot"),
    (["create-equipment", "BAL-08", "--kind", "balance", "--due-on", "2027-01-01", "--site", "NOWHERE"],
     "There is no site"),
    (["create-equipment", "BAL-08", "--kind", "balance", "--due-on", "2027-02-30"], "2027-02-30"),
    (["record-calibration", "NOPE-1", "--performed-on", "2026-01-01", "--result", "fail"], "no equipment"),
    (["record-calibration", "BAL-01", "--performed-on", "2026-01-01", "--result", "pass"], "next one is due"),
])
def test_the_command_line_refuses_bad_input_and_saves_nothing(runner, pharmacist, args, message):
    equipment.create_equipment(pharmacist, code="BAL-01", kind="balance", due_on=TODAY)
    code, output = _run(runner, *args)
    assert code != 0 and message in output
    assert count_rows(Equipment) == 1 and count_rows(Calibration) == 0
