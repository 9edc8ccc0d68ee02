"""The audit workbook's evidence: qualifications, equipment and calibrations, documents, the equipment a batch
was made with and why a lot was released without its certificate."""

import io
from datetime import timedelta

import pytest
from documentkit import jpeg_with_gps, pdf
from openpyxl import load_workbook
from sitekit import add_site
from testkit import NO_COA, PASSWORD, QueryCounter

from compounding import workbooks
from compounding.extensions import db
from compounding.services import batch_tests, batches, documents, equipment, inventory, qualifications
from compounding.services.clock import clinic_today
from compounding.workbooks import records


def build(start=None, end=None, **kwargs):
    out = io.BytesIO()
    today = clinic_today()
    summary = workbooks.audit_workbook(out, start or today - timedelta(days=1), end or today,
                                       generated_by="Test Auditor (auditor)", clinic_name="Test Clinic", **kwargs)
    return load_workbook(io.BytesIO(out.getvalue())), summary


def table(ws) -> list[dict]:
    """The data rows of a sheet as {header: value}."""
    headers = [cell.value for cell in ws[1]]
    return [dict(zip(headers, row, strict=True)) for row in ws.iter_rows(min_row=2, values_only=True)]


def day(value):
    """A date as openpyxl reads a date cell back (a datetime at midnight)."""
    from datetime import datetime

    return datetime.combine(value, datetime.min.time())


def test_the_qualifications_sheet_holds_each_record_performed_in_the_period_voided_ones_too(pharmacist, make_user):
    today = clinic_today()
    person = make_user("technician", display_name="Tessa Tech", qualified=False)
    record = qualifications.record_qualification(
        pharmacist, user_id=person.id, kind="media_fill", passed_on=today - timedelta(days=10), result="pass",
        assessor="Dr Paula Reyes", note="=1+1")
    qualifications.record_qualification(pharmacist, username=person.username, kind="gloved_fingertip",
                                        passed_on=today - timedelta(days=2), result="fail", cfu=4)
    wrong = qualifications.record_qualification(pharmacist, user_id=person.id, kind="hand_hygiene_garbing",
                                                passed_on=today, result="pass")
    qualifications.void_qualification(pharmacist, wrong.id, "Entered for the wrong person")
    qualifications.record_qualification(pharmacist, user_id=person.id, kind="hand_hygiene_garbing",
                                        passed_on=today - timedelta(days=11), result="pass")  # the day before

    wb, summary = build(today - timedelta(days=10), today)
    rows = table(wb["Qualifications"])
    assert [(r["Username"], r["Kind"], r["Result"]) for r in rows] == [
        (person.username, "Media-fill test", "pass"), (person.username, "Gloved fingertip and thumb sampling", "fail"),
        (person.username, "Hand hygiene and garbing", "pass")]
    passed, failed, voided = rows
    assert passed["Record id"] == record.id and passed["Name"] == "Tessa Tech"
    assert passed["Performed on"] == day(today - timedelta(days=10))
    assert passed["Valid until"] == day(record.valid_until) and passed["CFU"] is None
    assert passed["Assessor"] == "Dr Paula Reyes" and passed["Note"] == "=1+1"
    assert passed["Recorded by"] == pharmacist.display_name and passed["Recorded (Europe/London)"] is not None
    assert passed["Voided (Europe/London)"] is None and passed["Void reason"] is None
    assert failed["CFU"] == 4 and failed["Valid until"] is None
    assert voided["Voided by"] == pharmacist.display_name and voided["Void reason"] == "Entered for the wrong person"
    assert voided["Voided (Europe/London)"] is not None
    assert wb["Qualifications"]["J2"].quotePrefix  # a note a spreadsheet could run stays text
    assert dict(summary.parts)["Qualifications"] == 3


def test_the_equipment_sheet_lists_every_piece_and_the_calibrations_sheet_each_calibration(pharmacist):
    today = clinic_today()
    balance = equipment.create_equipment(pharmacist, code="BAL-01", kind="balance", name="Analytical balance",
                                         serial_number="007", due_on=today + timedelta(days=5))
    equipment.create_equipment(pharmacist, code="HOOD-01", kind="hood", due_on=today + timedelta(days=90))
    equipment.record_calibration(pharmacist, balance.id, performed_on=today - timedelta(days=3), result="pass",
                                 next_due_on=today + timedelta(days=180), performed_by="Metrologia",
                                 certificate_number="CAL-0042")
    equipment.record_calibration(pharmacist, balance.id, performed_on=today, result="fail", note="Drifts 2 mg")

    wb, summary = build(today - timedelta(days=7), today)
    register = {r["Code"]: r for r in table(wb["Equipment"])}
    assert list(register) == ["BAL-01", "HOOD-01"]
    assert register["BAL-01"]["Kind"] == "Balance" and register["BAL-01"]["Serial number"] == "007"
    assert register["BAL-01"]["Calibrations recorded"] == 2 and register["BAL-01"]["Last calibrated on"] == day(today)
    assert register["BAL-01"]["Out of service (at export)"] == "yes"
    assert register["BAL-01"]["Due on (at export)"] == day(today + timedelta(days=180))
    assert register["BAL-01"]["Site"] == "MAIN" and register["BAL-01"]["Registered by"] == pharmacist.display_name
    never = register["HOOD-01"]  # registered, never calibrated: listed with nothing in its calibration columns
    assert never["Calibrations recorded"] == 0 and never["Last calibrated on"] is None
    assert never["Name"] == "HOOD-01" and never["Retired (at export)"] == "no"
    calibrations = table(wb["Calibrations"])
    assert [(c["Equipment code"], c["Result"]) for c in calibrations] == [("BAL-01", "pass"), ("BAL-01", "fail")]
    assert calibrations[0]["Performed on"] == day(today - timedelta(days=3))
    assert calibrations[0]["Next due on"] == day(today + timedelta(days=180))
    assert calibrations[0]["Certificate number"] == "CAL-0042" and calibrations[0]["Performed by"] == "Metrologia"
    assert calibrations[1]["Note"] == "Drifts 2 mg" and calibrations[1]["Recorded by"] == pharmacist.display_name
    assert dict(summary.parts)["Equipment"] == 2 and dict(summary.parts)["Calibrations"] == 2

    wb, _ = build(today - timedelta(days=2), today)  # the earlier calibration is before the period
    assert [c["Result"] for c in table(wb["Calibrations"])] == ["fail"]
    wb, _ = build(today - timedelta(days=30), today - timedelta(days=5))  # the register stands whatever the period
    assert wb["Equipment"].max_row == 3 and wb["Calibrations"].max_row == 1


def test_a_site_s_equipment_and_documents_stay_out_of_another_site_s_workbook(pharmacist, make_user, make_lot):
    lyon = add_site("LYON")
    lyon_pharmacist = make_user("pharmacist", site_codes=["LYON"])
    today = clinic_today()
    equipment.create_equipment(pharmacist, code="BAL-01", kind="balance", due_on=today + timedelta(days=5))
    far = equipment.create_equipment(lyon_pharmacist, code="BAL-02", kind="balance", due_on=today + timedelta(days=5))
    documents.attach(lyon_pharmacist, "equipment", far.id, data=pdf("Lyon"), filename="lyon.pdf")
    lot = make_lot(release=False)
    documents.attach(pharmacist, "lot", lot.id, data=pdf("Main"), filename="main.pdf")
    person = make_user("technician", qualified=False)
    evidence = qualifications.record_qualification(pharmacist, user_id=person.id, kind="media_fill",
                                                   passed_on=today, result="pass")
    documents.attach(pharmacist, "qualification", evidence.id, data=pdf("Plate"), filename="plate.pdf")

    wb, _ = build(site_ids=[lyon.id])
    assert [r["Code"] for r in table(wb["Equipment"])] == ["BAL-02"]
    # A person's qualifications and their evidence go with the person, as the people pages show them: the MAIN
    # technician's are not in LYON's workbook.
    assert [r["File name"] for r in table(wb["Documents"])] == ["lyon.pdf"]
    assert [r["Username"] for r in table(wb["Qualifications"])] == []
    wb, _ = build()
    assert [r["Site"] for r in table(wb["Equipment"])] == ["MAIN", "LYON"]
    assert [r["File name"] for r in table(wb["Documents"])] == ["lyon.pdf", "main.pdf", "plate.pdf"]


@pytest.fixture
def tested_batch(make_formula, make_ingredient, make_lot, technician, make_user):
    """A released batch whose sterility was tested (rapid, today)."""
    active = make_ingredient(name="Hyaluronic acid", unit="mL", sterile=True)
    saline = make_ingredient(name="Sodium chloride 0.9 %", kind="diluent", unit="mL", sterile=True, vehicle=True)
    formula = make_formula([(active, "2"), (saline, "8")], bud_category="category_2_aseptic_sterility_tested")
    make_lot(active, quantity="1000")
    make_lot(saline, quantity="1000")
    batch = batches.compound_batch(technician, formula.id, 4)
    verifier = make_user("pharmacist")
    batches.verify_batch(verifier, batch.id, PASSWORD)
    test = batch_tests.record_test_result(verifier, batch.id, kind="sterility", result="pass", method="rapid",
                                          lab="North Lab", sampled_on=clinic_today(), password=PASSWORD)
    return batch, test, verifier


def test_the_documents_sheet_names_each_document_s_record_hash_and_withdrawal(pharmacist, make_user, make_lot,
                                                                             tested_batch):
    batch, test, verifier = tested_batch
    lot = make_lot(release=False)
    certificate = documents.attach(pharmacist, "lot", lot.id, data=pdf("CoA 1"), filename="CoA 1.pdf")
    photo = documents.attach(pharmacist, "lot", lot.id, data=jpeg_with_gps(), filename="label.jpg", kind="other",
                             note="Photo of the label")
    documents.withdraw(pharmacist, photo.id, "Not this lot's label")
    report = documents.attach(verifier, "batch_test", test.id, data=pdf("Sterility"), filename="sterility.pdf")
    record = documents.attach(make_user("technician"), "batch", batch.id, data=pdf("Record"), filename="rec.pdf")
    hood = equipment.create_equipment(pharmacist, code="HOOD-01", kind="hood", due_on=clinic_today())
    calibration = documents.attach(pharmacist, "equipment", hood.id, data=pdf("Hood"), filename="hood.pdf")
    person = make_user("technician", username="tessa", qualified=False)
    evidence = qualifications.record_qualification(pharmacist, user_id=person.id, kind="media_fill",
                                                   passed_on=clinic_today() - timedelta(days=1), result="pass")
    plate = documents.attach(pharmacist, "qualification", evidence.id, data=pdf("Plate"), filename="plate.pdf")

    wb, summary = build()
    rows = {r["Document id"]: r for r in table(wb["Documents"])}
    assert list(rows) == [certificate.id, photo.id, report.id, record.id, calibration.id, plate.id]
    assert {i: (r["Record"], r["Record code"]) for i, r in rows.items()} == {
        certificate.id: ("lot", lot.code), photo.id: ("lot", lot.code),
        report.id: ("test result", f"{batch.code} sterility (rapid)"), record.id: ("batch", batch.code),
        calibration.id: ("equipment", "HOOD-01"),
        plate.id: ("qualification", f"tessa media_fill {(clinic_today() - timedelta(days=1)).isoformat()}")}
    pdf_row = rows[certificate.id]
    assert pdf_row["Kind"] == "Certificate of analysis" and pdf_row["Content type"] == "application/pdf"
    assert pdf_row["SHA-256"] == certificate.sha256 and pdf_row["Size (bytes)"] == certificate.size
    assert pdf_row["Received SHA-256 (when different)"] is None  # a PDF is kept as received
    assert pdf_row["Store"] == "folder" and pdf_row["Uploaded by"] == pharmacist.display_name
    assert pdf_row["Record id"] == lot.id and pdf_row["Site"] == "MAIN"
    assert pdf_row["Withdrawn (Europe/London)"] is None
    image = rows[photo.id]  # stored without its metadata: both hashes
    assert image["Received SHA-256 (when different)"] == photo.received_sha256 != image["SHA-256"]
    assert image["Withdrawn by"] == pharmacist.display_name and image["Withdraw reason"] == "Not this lot's label"
    assert image["Withdrawn (Europe/London)"] is not None and image["Note"] == "Photo of the label"
    assert rows[plate.id]["Site"] is None and rows[report.id]["Site"] == "MAIN"
    assert dict(summary.parts)["Documents"] == 6


def test_lots_say_why_one_was_released_without_its_certificate(pharmacist, make_lot, make_user):
    without = make_lot()  # released with the reason the fixture gives
    certified = make_lot(release=False)
    documents.attach(pharmacist, "lot", certified.id, data=pdf("CoA"), filename="CoA.pdf")
    inventory.release_lot(make_user("pharmacist"), certified.id, PASSWORD)
    wb, _ = build()
    reasons = {r["Lot code"]: r["Released without CoA: reason"] for r in table(wb["Lots"])}
    assert reasons == {without.code: NO_COA, certified.code: None}


@pytest.fixture
def bench(pharmacist, make_formula, make_lot, technician):
    """A formula with stock, and a balance and hood at MAIN: compound(units) makes a batch with both."""
    made_before = None
    formula = make_formula()
    for component in formula.components:
        make_lot(component.ingredient, quantity="1000")
    made_before = batches.compound_batch(technician, formula.id, 1)  # before the site had equipment
    due = clinic_today() + timedelta(days=30)
    tools = [equipment.create_equipment(pharmacist, code=code, kind=kind, due_on=due)
             for code, kind in (("HOOD-01", "hood"), ("BAL-01", "balance"))]

    def compound(units=1):
        return batches.compound_batch(technician, formula.id, units, equipment_ids=[t.id for t in tools])

    return made_before, compound


def test_the_batches_sheets_list_the_equipment_each_batch_was_made_with(bench, make_user):
    made_before, compound = bench
    batch = compound()
    wb, _ = build()
    used = {r["Batch code"]: r["Equipment"] for r in table(wb["Batches"])}
    assert used == {made_before.code: None, batch.code: "BAL-01, HOOD-01"}
    # The batch list's own download carries the same column.
    from compounding.queries.batches import BatchFilters, batch_list_query

    out = io.BytesIO()
    workbooks.batch_list_workbook(out, batch_list_query(BatchFilters(), site_ids=None))
    listed = {r["Batch code"]: r["Equipment"] for r in table(load_workbook(out)["Batches"])}
    assert listed == used


def test_the_batches_sheet_reads_equipment_once_per_chunk_of_batches_never_per_batch(bench, monkeypatch):
    _, compound = bench
    made = [compound() for _ in range(5)]
    monkeypatch.setattr(records, "CHUNK_ROWS", 2)
    with QueryCounter(db.engine) as counted:
        wb, _ = build()
    reads = [s for s in counted.statements if "batch_equipment" in s.lower()]
    assert len(reads) == 3  # six batches in chunks of two
    used = {r["Batch code"]: r["Equipment"] for r in table(wb["Batches"])}
    assert all(used[batch.code] == "BAL-01, HOOD-01" for batch in made)


def test_the_row_counts_for_a_progress_bar_count_the_new_sheets_too(bench, pharmacist, make_user):
    _, compound = bench
    compound()
    person = make_user("technician", qualified=False)
    qualifications.record_qualification(pharmacist, user_id=person.id, kind="media_fill", passed_on=clinic_today(),
                                        result="pass")
    today = clinic_today()
    counts = workbooks.audit_row_counts(today - timedelta(days=1), today)
    _, summary = build()
    assert counts == dict(summary.parts)
    assert counts["Qualifications"] == 1 and counts["Equipment"] == 2 and counts["Batches"] == 2
