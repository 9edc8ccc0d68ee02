"""Equipment pages: the list at the viewer's sites, registering, a piece's page with its calibrations and the
batches made with it, its label, and the list as a workbook."""

import io
from datetime import date, timedelta

import openpyxl
import pytest
from sitekit import add_site
from testkit import QueryCounter, audit_rows, count_rows, sign_in

from compounding.extensions import db
from compounding.limits import PER_PAGE_DEFAULT
from compounding.models import Calibration, Equipment
from compounding.services import batches, equipment
from compounding.services.sites import main_site

TODAY = date.today()


def register(actor, code: str, kind: str = "balance", days: int = 90, **extra) -> Equipment:
    return equipment.create_equipment(actor, code=code, kind=kind, name=extra.pop("name", f"{kind} {code}"),
                                      due_on=TODAY + timedelta(days=days), **extra)


@pytest.fixture
def lyon():
    return add_site("LYON")


def test_the_list_shows_the_viewers_sites_with_badges_for_overdue_and_due_soon(client, pharmacist, make_user,
                                                                                lyon):
    register(pharmacist, "BAL-01", days=120)
    register(pharmacist, "PIP-01", "pipette", days=10)
    register(pharmacist, "BAL-02", days=-3)
    admin = make_user("admin", all_sites=True)
    register(admin, "BAL-LY", site_id=lyon.id)
    sign_in(client, pharmacist)
    page = client.get("/equipment").get_data(as_text=True)
    assert "BAL-01" in page and "PIP-01" in page and "BAL-02" in page and "BAL-LY" not in page
    assert '<span class="badge text-bg-danger">overdue</span>' in page
    assert '<span class="badge text-bg-warning">due soon</span>' in page
    assert page.count('<span class="badge text-bg-success">usable</span>') == 1


@pytest.mark.parametrize("query, shown", [
    ("state=overdue", {"BAL-02"}),
    ("state=due_soon", {"PIP-01"}),
    ("state=usable", {"BAL-01", "PIP-01"}),
    ("state=out_of_service", {"HOOD-01"}),
    ("state=retired", {"THERM-01"}),
    ("kind=pipette", {"PIP-01"}),
    ("q=hood", {"HOOD-01"}),
    ("state=nonsense", {"BAL-01", "PIP-01", "BAL-02", "HOOD-01", "THERM-01"}),
])
def test_the_list_filters_by_kind_and_state(client, pharmacist, query, shown):
    for code, kind, days in (("BAL-01", "balance", 120), ("PIP-01", "pipette", 10), ("BAL-02", "balance", -3),
                             ("HOOD-01", "hood", 100), ("THERM-01", "thermometer", 100)):
        register(pharmacist, code, kind, days=days)
    hood = equipment.find_by_code("HOOD-01")
    equipment.record_calibration(pharmacist, hood.id, performed_on=TODAY, result="fail")
    therm = equipment.find_by_code("THERM-01")
    equipment.update_equipment(pharmacist, therm.id, name=therm.name, active=False)
    sign_in(client, pharmacist)
    page = client.get(f"/equipment?{query}").get_data(as_text=True)
    listed = {code for code in ("BAL-01", "PIP-01", "BAL-02", "HOOD-01", "THERM-01") if f'data-code="{code}"' in page}
    assert listed == shown


def test_the_list_issues_the_same_number_of_queries_for_5_rows_as_for_60(client, pharmacist):
    for n in range(5):
        register(pharmacist, f"BAL-{n:02d}")
    sign_in(client, pharmacist)
    with QueryCounter(db.engine) as small:
        assert client.get("/equipment").status_code == 200
    for n in range(5, 60):
        register(pharmacist, f"BAL-{n:02d}", days=n - 30)
    with QueryCounter(db.engine) as large:
        page = client.get("/equipment")
    assert page.status_code == 200 and page.get_data(as_text=True).count('data-code="BAL-') == PER_PAGE_DEFAULT
    assert small.count == large.count, (small.statements, large.statements)


def test_a_pharmacist_registers_equipment_at_one_of_their_sites(client, pharmacist):
    sign_in(client, pharmacist)
    form = client.get("/equipment/new").get_data(as_text=True)
    assert "MAIN" in form and "LYON" not in form
    response = client.post("/equipment/new", data={
        "code": "bal-07", "kind": "balance", "name": "Analytical balance", "serial_number": "SN-7",
        "site_id": str(main_site().id), "due_on": (TODAY + timedelta(days=200)).isoformat()})
    assert response.status_code == 302
    item = equipment.find_by_code("BAL-07")
    assert response.headers["Location"].endswith(f"/equipment/{item.id}")
    assert item.serial_number == "SN-7" and item.created_by_id == pharmacist.id
    assert len(audit_rows("equipment.created")) == 1


@pytest.mark.parametrize("values, message", [
    ({"code": "BAL-01"}, "Equipment code BAL-01 is taken"),
    ({"code": "L000123"}, "looks like a lot, batch or vial code"),
    ({"code": "LOC0001"}, "storage location&#39;s code"),
    ({"due_on": ""}, "When is it due?"),
    ({"due_on": "2027-02-30"}, "Not a valid date value."),
])
def test_registering_is_refused_on_the_form_and_changes_nothing(client, pharmacist, values, message):
    register(pharmacist, "BAL-01")
    sign_in(client, pharmacist)
    data = {"code": "BAL-09", "kind": "balance", "site_id": str(main_site().id),
            "due_on": (TODAY + timedelta(days=30)).isoformat(), **values}
    response = client.post("/equipment/new", data=data)
    assert response.status_code == 422 and message in response.get_data(as_text=True)
    assert count_rows(Equipment) == 1


def test_a_technician_cannot_register_equipment(client, technician):
    sign_in(client, technician)
    assert client.get("/equipment/new").status_code == 403
    assert "Register equipment" not in client.get("/equipment").get_data(as_text=True)


def test_equipment_of_another_site_answers_404(client, pharmacist, make_user, lyon):
    admin = make_user("admin", all_sites=True)
    there = register(admin, "BAL-LY", site_id=lyon.id)
    sign_in(client, pharmacist)
    for path in (f"/equipment/{there.id}", f"/equipment/{there.id}/label"):
        assert client.get(path).status_code == 404
    assert client.post(f"/equipment/{there.id}/calibrations", data={
        "calibration-performed_on": TODAY.isoformat(), "calibration-result": "fail"}).status_code == 404
    assert not there.out_of_service


def test_a_calibration_recorded_on_the_page_moves_the_due_date_and_shows_newest_first(client, pharmacist):
    item = register(pharmacist, "BAL-01", days=-2)
    equipment.record_calibration(pharmacist, item.id, performed_on=TODAY - timedelta(days=400), result="pass",
                                 next_due_on=TODAY - timedelta(days=2), certificate_number="C-OLD")
    sign_in(client, pharmacist)
    page = client.get(f"/equipment/{item.id}").get_data(as_text=True)
    assert "Not usable at the bench." in page and "was due for calibration" in page
    response = client.post(f"/equipment/{item.id}/calibrations", data={
        "calibration-performed_on": TODAY.isoformat(), "calibration-result": "pass",
        "calibration-next_due_on": (TODAY + timedelta(days=365)).isoformat(),
        "calibration-performed_by": "Metrology Ltd", "calibration-certificate_number": "C-NEW"})
    assert response.status_code == 302
    db.session.refresh(item)
    assert item.due_on == TODAY + timedelta(days=365)
    page = client.get(f"/equipment/{item.id}").get_data(as_text=True)
    assert page.index("C-NEW") < page.index("C-OLD") and "Not usable at the bench." not in page


@pytest.mark.parametrize("values, message", [
    ({"calibration-performed_on": (TODAY + timedelta(days=1)).isoformat(), "calibration-result": "pass",
      "calibration-next_due_on": (TODAY + timedelta(days=9)).isoformat()}, "is in the future"),
    ({"calibration-performed_on": TODAY.isoformat(), "calibration-result": "pass"}, "says when the next one is due"),
    ({"calibration-performed_on": "yesterday", "calibration-result": "pass"}, "Not a valid date value."),
])
def test_a_refused_calibration_shows_on_the_form_and_changes_nothing(client, pharmacist, values, message):
    item = register(pharmacist, "BAL-01")
    sign_in(client, pharmacist)
    response = client.post(f"/equipment/{item.id}/calibrations", data=values)
    assert response.status_code == 422 and message in response.get_data(as_text=True)
    assert count_rows(Calibration) == 0


def test_retiring_on_the_page_takes_it_off_the_bench(client, pharmacist):
    item = register(pharmacist, "BAL-01")
    sign_in(client, pharmacist)
    response = client.post(f"/equipment/{item.id}/edit", data={"edit-name": "Old balance", "edit-serial_number": ""})
    assert response.status_code == 302
    db.session.refresh(item)
    assert not item.active and item.name == "Old balance"
    assert '<span class="badge text-bg-secondary" id="equipment-state">retired</span>' in client.get(
        f"/equipment/{item.id}").get_data(as_text=True)
    assert client.post(f"/equipment/{item.id}/edit", data={"edit-name": ""}).status_code == 422


def test_the_page_lists_only_the_batches_the_viewer_may_see(client, pharmacist, technician, make_user, lyon,
                                                             stocked_formula):
    item = register(pharmacist, "BAL-01")
    batch = batches.compound_batch(technician, stocked_formula.id, 1, equipment_ids=[item.id])
    sign_in(client, pharmacist)
    page = client.get(f"/equipment/{item.id}").get_data(as_text=True)
    assert batch.code in page and item.due_on.isoformat() in page
    client.post("/logout")
    auditor = make_user("auditor")
    sign_in(client, auditor)
    assert batch.code in client.get(f"/equipment/{item.id}").get_data(as_text=True)


def test_the_label_carries_the_code_as_code_128(client, pharmacist):
    item = register(pharmacist, "HOOD-01", "hood", serial_number="SN-9")
    sign_in(client, pharmacist)
    page = client.get(f"/equipment/{item.id}/label").get_data(as_text=True)
    assert 'aria-label="Barcode HOOD-01"' in page and "<rect" in page and "S/N SN-9" in page
    assert client.get(f"/equipment/{item.id}/label?copies=0").status_code == 400


def test_the_workbook_lists_what_the_filtered_list_shows(client, pharmacist):
    register(pharmacist, "BAL-01", days=120)
    register(pharmacist, "BAL-02", days=-3)
    sign_in(client, pharmacist)
    response = client.get("/equipment.xlsx?state=overdue")
    assert response.status_code == 200 and response.mimetype.endswith("spreadsheetml.sheet")
    sheet = openpyxl.load_workbook(io.BytesIO(response.data))["Equipment"]
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0][:3] == ("Code", "Kind", "Name") and [row[0] for row in rows[1:]] == ["BAL-02"]
    assert rows[1][6] == "Overdue"
    assert client.get(f"/equipment.xlsx?q={'x' * 500}").status_code == 422


def test_the_header_offers_equipment_to_every_role(client, make_user):
    sign_in(client, make_user("practitioner"))
    assert 'href="/equipment">Equipment</a>' in client.get("/equipment").get_data(as_text=True)
