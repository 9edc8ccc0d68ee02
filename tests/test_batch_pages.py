"""Batch pages: compounding at the bench with scan confirmation, verification, the record."""

from datetime import date, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa
from testkit import PASSWORD, QueryCounter, sign_in

from compounding.extensions import db
from compounding.models import Batch, BatchComponent, BatchTest, Lot, StockMovement
from compounding.services import batches, ingredients
from compounding.services.clock import clinic_today


@pytest.fixture
def bench(make_ingredient, make_lot, make_formula):
    pc = make_ingredient(name="Phosphatidylcholine")
    saline = make_ingredient(name="Saline", kind="diluent")
    formula = make_formula([(pc, "2"), (saline, "8")])
    pc_soon = make_lot(pc, quantity="10", expires_on=date.today() + timedelta(days=40))
    pc_late = make_lot(pc, quantity="100", expires_on=date.today() + timedelta(days=400))
    saline_lot = make_lot(saline, quantity="500")
    return formula, pc_soon, pc_late, saline_lot


def compound_data(formula, units, rows, **extra):
    data = {"formula_id": str(formula.id), "units": str(units)}
    for lot, quantity, scan in rows:
        data[f"lot-{lot.id}-quantity"] = quantity
        data[f"lot-{lot.id}-scan"] = scan
    data.update(extra)
    return data


def test_the_compounding_page_proposes_the_earliest_expiring_lots(client, as_role, bench):
    formula, pc_soon, pc_late, saline_lot = bench
    as_role("technician")
    page = client.get(f"/batches/new?formula_id={formula.id}&units=3").get_data(as_text=True)
    assert f'name="lot-{pc_soon.id}-quantity" inputmode="decimal" value="6"' in page
    assert f'name="lot-{pc_late.id}-quantity" inputmode="decimal" value=""' in page
    assert "needs 24 mL" in page


# Only a clinic that turned scan confirmation off saves a partly scanned batch.
@pytest.mark.parametrize("config_overrides", [{"REQUIRE_SCAN_CONFIRMATION": False}], indirect=True)
def test_a_technician_compounds_with_scanned_containers_and_the_record_shows_it(client, as_role, bench):
    formula, pc_soon, pc_late, saline_lot = bench
    as_role("technician")
    response = client.post("/batches/new", data=compound_data(
        formula, 3, [(pc_soon, "6", pc_soon.code), (saline_lot, "24", "")]))
    assert response.status_code == 302
    batch = db.session.scalar(sa.select(Batch))
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert batch.code in page and "awaiting verification" in page
    assert page.count(">scanned<") == 1 and page.count(">not scanned<") == 1
    assert db.session.get(Lot, pc_soon.id).remaining == Decimal("4")


def test_a_scan_of_the_wrong_container_is_refused_with_the_reason_and_nothing_is_consumed(
        client, as_role, bench):
    formula, pc_soon, pc_late, saline_lot = bench
    as_role("technician")
    before = db.session.scalar(sa.select(sa.func.count(StockMovement.id)))
    response = client.post("/batches/new", data=compound_data(
        formula, 3, [(pc_soon, "6", saline_lot.code), (saline_lot, "24", "")]))
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "Scan refused" in page and "Saline" in page and pc_soon.code in page
    assert db.session.scalar(sa.select(sa.func.count(StockMovement.id))) == before
    assert db.session.scalar(sa.select(sa.func.count(Batch.id))) == 0


def test_scan_confirmation_can_be_made_mandatory(client, make_user, bench, app):
    formula, pc_soon, pc_late, saline_lot = bench
    app.config["REQUIRE_SCAN_CONFIRMATION"] = True
    sign_in(client, make_user("technician"))
    response = client.post("/batches/new", data=compound_data(
        formula, 3, [(pc_soon, "6", pc_soon.code), (saline_lot, "24", "")]))
    assert response.status_code == 422
    assert f"{saline_lot.code} not scanned" in response.get_data(as_text=True)


def test_a_changed_quantity_needs_a_deviation_note(client, as_role, bench):
    formula, pc_soon, pc_late, saline_lot = bench
    as_role("technician")
    rows = [(pc_soon, "6.5", pc_soon.code), (saline_lot, "24", saline_lot.code)]
    response = client.post("/batches/new", data=compound_data(formula, 3, rows))
    assert response.status_code == 422
    assert "explain the deviation" in response.get_data(as_text=True)
    response = client.post("/batches/new", data=compound_data(formula, 3, rows, deviation_note="overfill"))
    assert response.status_code == 302


def test_not_enough_stock_is_a_form_error_naming_the_shortfall(client, as_role, bench):
    formula, pc_soon, pc_late, saline_lot = bench
    as_role("technician")
    page = client.get(f"/batches/new?formula_id={formula.id}&units=60").get_data(as_text=True)
    assert "short by 10 mL" in page


@pytest.mark.parametrize("units", ["0", "-2", "many", "10001"])
def test_bad_units_rerender_with_a_message(client, as_role, bench, units):
    formula = bench[0]
    as_role("technician")
    response = client.post("/batches/new", data={"formula_id": str(formula.id), "units": units})
    assert response.status_code == 422
    assert db.session.scalar(sa.select(sa.func.count(Batch.id))) == 0


def _batch(bench, user):
    formula, pc_soon, pc_late, saline_lot = bench
    return batches.compound_batch(user, formula.id, 1)


def test_the_compounder_is_refused_when_verifying_their_own_batch(client, make_user, bench):
    pharmacist = make_user("pharmacist")
    batch = _batch(bench, pharmacist)
    sign_in(client, pharmacist)
    response = client.post(f"/batches/{batch.id}/verify", data={"verify-password": PASSWORD})
    assert response.status_code == 422
    assert "cannot verify it" in response.get_data(as_text=True)
    assert db.session.get(Batch, batch.id).status == "prepared"


def test_a_second_pharmacist_verifies_and_the_signature_shows(client, make_user, technician, bench):
    batch = _batch(bench, technician)
    verifier = make_user("pharmacist", display_name="Dr Second Check")
    sign_in(client, verifier)
    response = client.post(f"/batches/{batch.id}/verify", data={"verify-password": PASSWORD},
                           follow_redirects=True)
    page = response.get_data(as_text=True)
    assert "Verified</strong> by Dr Second Check" in page and "Usable" in page


def test_a_technician_cannot_verify(client, as_role, technician, bench):
    batch = _batch(bench, technician)
    as_role("technician")
    assert client.post(f"/batches/{batch.id}/verify", data={"verify-password": PASSWORD}).status_code == 403


def test_discarding_needs_a_coded_reason(client, as_role, technician, bench):
    batch = _batch(bench, technician)
    as_role("pharmacist")
    response = client.post(f"/batches/{batch.id}/discard", data={"discard-reason": "other", "discard-note": ""})
    assert response.status_code == 422
    response = client.post(f"/batches/{batch.id}/discard", data={"discard-reason": "damaged",
                                                                 "discard-note": "vial cracked"})
    assert response.status_code == 302
    assert db.session.get(Batch, batch.id).status == "discarded"


def test_the_batch_list_filters_by_status_and_formula(client, as_role, technician, pharmacist, bench):
    first = _batch(bench, technician)
    second = _batch(bench, technician)
    batches.verify_batch(pharmacist, second.id, PASSWORD)
    as_role("auditor")
    page = client.get("/batches/?status=released").get_data(as_text=True)
    assert second.code in page and first.code not in page
    page = client.get(f"/batches/?formula={bench[0].code}&bud_within_hours=1000").get_data(as_text=True)
    assert first.code in page and second.code in page


def test_the_lot_page_shows_the_batches_that_used_it(client, as_role, technician, bench):
    batch = _batch(bench, technician)
    as_role("auditor")
    assert batch.code in client.get(f"/lots/{bench[1].id}").get_data(as_text=True)


def test_batch_list_and_detail_have_fixed_query_budgets(client, as_role, technician, bench, make_ingredient,
                                                        make_lot, make_formula):
    as_role("pharmacist")
    first = _batch(bench, technician)
    with QueryCounter(db.engine) as small_list:
        client.get("/batches/")
    with QueryCounter(db.engine) as small_detail:
        client.get(f"/batches/{first.id}")
    # Many more batches, and a batch with many more components.
    ingredients = [make_ingredient() for _ in range(6)]
    for ingredient in ingredients:
        make_lot(ingredient, quantity="1000")
    big_formula = make_formula([(i, "1") for i in ingredients], unit_volume_ml="6")
    big = batches.compound_batch(technician, big_formula.id, 2)
    for _ in range(12):
        batches.compound_batch(technician, big_formula.id, 1)
    with QueryCounter(db.engine) as large_list:
        client.get("/batches/")
    with QueryCounter(db.engine) as large_detail:
        client.get(f"/batches/{big.id}")
    assert small_list.count == large_list.count
    assert small_detail.count == large_detail.count


# --- the record as made, and its release tests ------------------------------------------------------


@pytest.fixture
def tested(make_ingredient, make_lot, make_formula):
    """A sterility-tested formula (sterile components, 2 + 8 mL in a 10 mL vial), stocked."""
    active = make_ingredient(name="Hyaluronic acid", unit="mL", strength="20 mg/mL", sterile=True)
    saline = make_ingredient(name="Sterile saline", kind="diluent", unit="mL", strength="", sterile=True,
                             vehicle=True)
    formula = make_formula([(active, "2"), (saline, "8")], bud_category="category_2_aseptic_sterility_tested")
    make_lot(active, quantity="100", supplier_lot_number="HA-7781")
    make_lot(saline, quantity="100")
    return formula


@pytest.fixture
def awaiting(tested, technician, pharmacist):
    batch = batches.compound_batch(technician, tested.id, 3)
    batches.verify_batch(pharmacist, batch.id, PASSWORD)
    return batch


def _test_form(**overrides) -> dict:
    data = {"test-kind": "sterility", "test-result": "pass", "test-method": "rapid", "test-lab": "North Lab",
            "test-sampled_on": clinic_today().isoformat(), "test-units_sampled": "0", "test-note": "",
            "test-password": PASSWORD}
    data.update(overrides)
    return data


def test_the_batch_page_shows_the_components_as_copied_at_compounding(client, as_role, make_user, technician,
                                                                      tested):
    batch = batches.compound_batch(technician, tested.id, 1)
    active = tested.components[0].ingredient
    lot = db.session.get(Lot, db.session.scalar(sa.select(BatchComponent.lot_id).limit(1)))
    ingredients.update_ingredient(make_user("pharmacist"), active, {
        "name": "Hyaluronic acid HMW", "kind": "active", "unit": "mL", "strength": "40 mg/mL", "storage": "fridge"})
    as_role("auditor")
    page = client.get(f"/batches/{batch.id}").get_data(as_text=True)

    assert "Hyaluronic acid 20 mg/mL" in page
    assert "HMW" not in page and "40 mg/mL" not in page
    assert lot.code in page and "HA-7781" in page and lot.expires_on.isoformat() in page


def test_a_batch_awaiting_tests_says_so_and_offers_the_result_form_to_a_pharmacist(app, client, as_role,
                                                                                     make_user, awaiting):
    as_role("pharmacist")
    page = client.get(f"/batches/{awaiting.id}").get_data(as_text=True)
    assert "awaiting tests" in page
    assert "Awaiting test results: sterility" in page
    assert 'name="test-password"' in page and 'name="test-sampled_on"' in page

    bench_client = app.test_client()
    sign_in(bench_client, make_user("technician"))
    page = bench_client.get(f"/batches/{awaiting.id}").get_data(as_text=True)
    assert "Awaiting test results: sterility" in page
    assert 'name="test-password"' not in page


def test_a_pharmacist_records_a_result_on_the_batch_page_and_it_is_released(client, make_user, awaiting):
    sign_in(client, make_user("pharmacist", display_name="Lena Lab"))
    response = client.post(f"/batches/{awaiting.id}/tests", data=_test_form(**{"test-units_sampled": "1"}))
    assert response.status_code == 302

    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "sterility" in page and "North Lab" in page and "rapid" in page
    assert "Lena Lab" in page
    assert "Usable" in page
    assert db.session.get(Batch, awaiting.id).status == "released"
    assert db.session.get(Batch, awaiting.id).remaining_volume_ml == Decimal("20")


@pytest.mark.parametrize(("overrides", "reason"), [
    ({"test-method": "compendial"}, "no earlier than"),
    ({"test-kind": "endotoxin"}, "needs no endotoxin test"),
    ({"test-sampled_on": (date.today() + timedelta(days=2)).isoformat()}, "in the future"),
    ({"test-password": "wrong-password"}, "password is not correct"),
    ({"test-lab": ""}, "This field is required"),
])
def test_a_refused_result_redraws_the_form_with_the_reason_and_saves_nothing(client, as_role, awaiting,
                                                                             overrides, reason):
    as_role("pharmacist")
    response = client.post(f"/batches/{awaiting.id}/tests", data=_test_form(**overrides))

    assert response.status_code == 422
    assert reason in response.get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.count(BatchTest.id))) == 0
    assert db.session.get(Batch, awaiting.id).status == "awaiting_tests"


def test_a_result_for_a_batch_that_needs_none_is_refused_on_the_page(client, as_role, technician, bench):
    batch = _batch(bench, technician)
    as_role("pharmacist")
    response = client.post(f"/batches/{batch.id}/tests", data=_test_form())
    assert response.status_code == 422
    assert "needs no test result" in response.get_data(as_text=True)


def test_a_technician_cannot_record_a_result(client, as_role, awaiting):
    as_role("technician")
    assert client.post(f"/batches/{awaiting.id}/tests", data=_test_form()).status_code == 403
    assert db.session.get(Batch, awaiting.id).status == "awaiting_tests"


def test_the_batch_list_filters_batches_awaiting_tests(client, as_role, technician, awaiting, bench):
    other = _batch(bench, technician)
    as_role("auditor")
    page = client.get("/batches/?status=awaiting_tests").get_data(as_text=True)
    assert awaiting.code in page and other.code not in page
    assert '<option value="awaiting_tests" selected>' in page


def test_verifying_a_tested_batch_on_the_page_says_it_still_waits_for_its_results(client, make_user, technician,
                                                                                   tested):
    batch = batches.compound_batch(technician, tested.id, 1)
    sign_in(client, make_user("pharmacist"))
    response = client.post(f"/batches/{batch.id}/verify", data={"verify-password": PASSWORD}, follow_redirects=True)

    page = response.get_data(as_text=True)
    assert "may not be used until its test results are recorded (sterility)" in page
    assert "verified and released" not in page
    assert db.session.get(Batch, batch.id).status == "awaiting_tests"


def test_the_batch_page_and_the_list_say_use_by_as_the_label_does(client, as_role, make_batch):
    from compounding.labels import batch_label, load_batch

    batch = make_batch()
    batch.beyond_use_at = batch.beyond_use_at.replace(hour=0, minute=0, second=0, microsecond=0)
    db.session.commit()
    label = batch_label(load_batch(batch.id))
    as_role("pharmacist")
    page = client.get(f"/batches/{batch.id}").get_data(as_text=True)
    listed = client.get("/batches/").get_data(as_text=True)

    # The label's minute, e.g. 23:59, never the exclusive instant's 00:00 of the next day.
    shown = label.use_by_text.removeprefix("Use by ")
    assert shown.endswith(":59") and shown in page and shown in listed
    assert batch.beyond_use_at.strftime("%Y-%m-%d 00:00") not in page
