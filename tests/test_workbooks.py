"""The Excel adapter: typed, formula-safe cells; the audit workbook's sheets, range and counts."""

import io
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from openpyxl import load_workbook
from openpyxl.utils import get_column_letter
from testkit import PASSWORD, age_batch

from compounding import workbooks
from compounding.extensions import db
from compounding.services import recalls, trace, treatments
from compounding.services.clock import clinic_today, end_of_clinic_day, start_of_clinic_day, utcnow
from compounding.services.errors import InvalidInput
from compounding.workbooks.writer import Column, WorkbookWriter, needs_quote_prefix

# What a person might type that a spreadsheet would run, or "helpfully" turn into a number.
DANGEROUS = ["=1+1", "+1", "-1", "@SUM(A1)", "\t=1", "\r=1"]
NUMBER_LIKE = ["007", "1E5"]
MARKUP = "<script>alert(1)</script>"
AUDIT_SHEET_NAMES = ["Cover", "Lots", "Batches", "Batch components", "Sessions", "Adverse events", "Recalls",
                     "Signatures", "Audit trail", "Patient access", "Readings", "Excursions",
                     "Qualifications", "Equipment", "Calibrations", "Documents"]


def reopen(data) -> object:
    data = data.getvalue() if isinstance(data, io.BytesIO) else data
    return load_workbook(io.BytesIO(data))


def table(ws) -> list[dict]:
    """The data rows of a sheet as {header: cell}."""
    headers = [cell.value for cell in ws[1]]
    return [dict(zip(headers, row, strict=False)) for row in ws.iter_rows(min_row=2)]


def assert_is_a_table(ws) -> None:
    header = ws[1]
    assert all(cell.font.b for cell in header), f"{ws.title}: header not bold"
    assert ws.freeze_panes == "A2", ws.title
    assert ws.auto_filter.ref == f"A1:{get_column_letter(len(header))}{ws.max_row}", ws.title
    widths = [ws.column_dimensions[get_column_letter(i)].width for i in range(1, len(header) + 1)]
    assert all(8 <= width <= 60 for width in widths), (ws.title, widths)


def build_audit(start=None, end=None, **kwargs):
    out = io.BytesIO()
    today = clinic_today()
    summary = workbooks.audit_workbook(out, start or today - timedelta(days=1), end or today + timedelta(days=1),
                                       generated_by="Test Auditor (auditor)", clinic_name="Test Clinic", **kwargs)
    return reopen(out), summary


# --- safe_text, with no app at all ---------------------------------------------------------------


@pytest.mark.parametrize("value", DANGEROUS)
def test_text_that_a_spreadsheet_would_run_is_kept_as_typed_and_marked_for_the_quote_prefix(value):
    assert workbooks.safe_text(value) == value
    assert needs_quote_prefix(value)


@pytest.mark.parametrize("value", [*NUMBER_LIKE, MARKUP, "Phosphatidylcholine 50 mg/mL", "a=b", "L000123", ""])
def test_ordinary_text_numbers_as_text_and_markup_are_left_exactly_as_typed(value):
    assert workbooks.safe_text(value) == value
    assert not needs_quote_prefix(value)


def test_control_characters_xml_cannot_hold_are_dropped_and_overlong_text_is_cut():
    assert workbooks.safe_text("a\x00b\x07c\nd") == "ab" + "c\nd"
    long = workbooks.safe_text("x" * 40_000)
    assert len(long) == 32_767 and long.endswith("[truncated]")


def test_every_kind_of_cell_is_written_typed_and_dangerous_text_is_a_string(app):
    out = io.BytesIO()
    book = WorkbookWriter()
    columns = [Column("Text", "code"), Column("Note"), Column("When (Europe/London)", "datetime"),
               Column("Day", "date"), Column("Quantity", "decimal"), Column("Count", "int"), Column("Flag", "bool"),
               Column("Values", "json")]
    values = [*DANGEROUS, *NUMBER_LIKE, MARKUP]
    at = datetime(2026, 7, 1, 22, 30, tzinfo=UTC)
    book.table("Things", columns, [(v, v, at, date(2027, 6, 30), Decimal("12.125"), 3, i % 2 == 0, {"v": v})
                                   for i, v in enumerate(values)])
    book.save(out)
    ws = reopen(out)["Things"]
    assert_is_a_table(ws)
    for i, (row, value) in enumerate(zip(table(ws), values, strict=True)):
        text = row["Text"]
        assert text.data_type == "s" and text.number_format == "@"
        assert text.value == value and text.quotePrefix == (value in DANGEROUS)
        assert row["Note"].data_type == "s" and row["Note"].value == text.value  # free text: string type too
        assert row["When (Europe/London)"].value == datetime(2026, 7, 1, 23, 30)  # BST, naive
        assert row["When (Europe/London)"].is_date
        assert row["Day"].value == datetime(2027, 6, 30) and row["Day"].number_format == "yyyy-mm-dd"
        assert row["Quantity"].value == 12.125 and row["Quantity"].number_format == "0.000"
        assert row["Count"].value == 3 and row["Count"].data_type == "n"
        assert row["Flag"].value == ("yes" if i % 2 == 0 else "no")
        assert row["Values"].data_type == "s" and row["Values"].value.startswith("{")


def test_past_the_row_limit_a_table_continues_on_a_numbered_sheet_with_its_header(app):
    out = io.BytesIO()
    book = WorkbookWriter()
    parts = book.table("Sessions", [Column("Session id", "int"), Column("Batch code")],
                       ((n, f"B{n:010d}") for n in range(7)), max_rows=3)
    book.save(out)
    assert parts == [("Sessions", 3), ("Sessions (2)", 3), ("Sessions (3)", 1)]
    wb = reopen(out)
    assert wb.sheetnames == ["Sessions", "Sessions (2)", "Sessions (3)"]
    ids = []
    for ws in wb.worksheets:
        assert_is_a_table(ws)
        assert [c.value for c in ws[1]] == ["Session id", "Batch code"]
        ids += [row["Session id"].value for row in table(ws)]
    assert ids == list(range(7))


def test_an_empty_table_still_has_its_header_filter_and_frozen_row(app):
    out = io.BytesIO()
    book = WorkbookWriter()
    assert book.table("Recalls", [Column("Recall id", "int"), Column("Reason")], []) == [("Recalls", 0)]
    book.save(out)
    ws = reopen(out)["Recalls"]
    assert_is_a_table(ws)
    assert ws.max_row == 1


# --- the audit workbook ----------------------------------------------------------------------------


@pytest.fixture
def clinic(app, make_user, make_formula, make_lot, make_batch, make_patient):
    """A small clinic whose free-text fields hold everything a spreadsheet could misread."""
    practitioner = make_user("practitioner", display_name="=cmd|' /C calc'!A0")
    pharmacist = make_user("pharmacist", display_name="Dr <b>Paula</b> Reyes")
    formula = make_formula()
    lots = [make_lot(component.ingredient, quantity="1000", supplier=supplier, supplier_lot_number=number)
            for component, supplier, number in zip(formula.components, ["=1+1", "@SUM(A1)"], ["007", "1E5"],
                                                   strict=True)]
    lots[0].location = "\t=1"  # as an older import could have left it: the services strip input
    lots[1].coa_reference = "\r=1"
    db.session.commit()
    batch = make_batch(formula)
    patient = make_patient(name=MARKUP, chart_number="+1")
    session_row = treatments.record_session(practitioner, patient_id=patient.id, indication="-1",
                                            uses=[{"batch_code": batch.code, "volume_ml": "2.5", "area": "=1+1"}])
    event = treatments.record_adverse_event(practitioner, session_id=session_row.id, type="redness",
                                            severity="mild", notes=MARKUP, outcome="@SUM(A1)")
    recall = recalls.open_recall(pharmacist, reason="=HYPERLINK(\"http://x\")", password=PASSWORD,
                                 batch_id=batch.id)
    recalls.record_contact(pharmacist, recall.id, patient.id, "phone", note="-1")
    return {"lots": lots, "batch": batch, "patient": patient, "session": session_row, "event": event,
            "recall": recall, "practitioner": practitioner, "pharmacist": pharmacist}


def test_the_audit_workbook_has_its_sheets_each_a_proper_table(clinic):
    wb, summary = build_audit()
    assert wb.sheetnames == AUDIT_SHEET_NAMES
    for ws in wb.worksheets[1:]:
        assert_is_a_table(ws)
    assert [title for title, _ in summary.parts] == AUDIT_SHEET_NAMES[1:]


def test_the_cover_names_the_clinic_range_author_bud_table_and_counts_that_match_the_sheets(clinic):
    today = clinic_today()
    wb, summary = build_audit(today - timedelta(days=3), today)
    cover = {row[0].value: row[1] for row in wb["Cover"].iter_rows() if row[0].value}
    assert cover["Clinic"].value == "Test Clinic"
    assert cover["From (clinic day)"].value == datetime.combine(today - timedelta(days=3), datetime.min.time())
    assert cover["To (clinic day, inclusive)"].value == datetime.combine(today, datetime.min.time())
    assert cover["Generated at (Europe/London)"].is_date
    assert cover["Generated by"].value == "Test Auditor (auditor)"
    assert cover["BUD table version"].value.startswith("USP797")
    counted = {title: cover[title].value for title in AUDIT_SHEET_NAMES[1:]}
    assert counted == {ws.title: ws.max_row - 1 for ws in wb.worksheets[1:]} == dict(summary.parts)
    assert counted["Sessions"] == 1 and counted["Recalls"] == 1 and counted["Lots"] == 2


def test_dates_are_real_clinic_times_codes_are_text_and_quantities_are_numbers(clinic):
    wb, _ = build_audit()
    lot_rows = table(wb["Lots"])
    lot = lot_rows[0]
    assert lot["Lot code"].value == clinic["lots"][0].code and lot["Lot code"].number_format == "@"
    received = lot["Received (Europe/London)"]
    assert received.is_date and isinstance(received.value, datetime) and received.value.tzinfo is None
    expected = clinic["lots"][0].received_at.astimezone(ZoneInfo("Europe/London"))
    assert abs(received.value - expected.replace(tzinfo=None)) < timedelta(milliseconds=5)
    assert lot["Expiry"].is_date and lot["Expiry"].number_format == "yyyy-mm-dd"
    assert lot["Quantity received"].value == 1000 and lot["Quantity received"].number_format == "0.000"
    assert lot["Expired at export"].value == "no"
    session = table(wb["Sessions"])[0]
    assert session["Volume (mL)"].value == 2.5 and session["Volume (mL)"].number_format == "0.000"
    assert session["Batch code"].value == clinic["batch"].code and session["Batch code"].data_type == "s"
    assert session["Session id"].value == clinic["session"].id
    assert session["Voided"].value == "no"
    batch = table(wb["Batches"])[0]
    assert batch["Use by (Europe/London)"].is_date and batch["Status"].value == "recalled"
    components = table(wb["Batch components"])
    assert sorted(c["Supplier lot number"].value for c in components) == ["007", "1E5"]
    assert all(c["Supplier lot number"].data_type == "s" for c in components)
    audit_rows = table(wb["Audit trail"])
    assert [r["Event id"].value for r in audit_rows] == sorted(r["Event id"].value for r in audit_rows)
    assert all(len(r["Hash"].value) == 64 for r in audit_rows)
    signatures = table(wb["Signatures"])
    assert {s["Meaning"].value for s in signatures} >= {"released", "verified", "recall opened", "approved"}
    assert {s["Record code"].value for s in signatures} >= {clinic["batch"].code, clinic["lots"][0].code}


def test_every_text_a_person_typed_is_inert_in_the_audit_workbook(clinic):
    wb, _ = build_audit()
    cells = [cell for ws in wb.worksheets for row in ws.iter_rows() for cell in row if cell.value is not None]
    formulas = [cell.coordinate for cell in cells if cell.data_type == "f"]
    assert not formulas
    texts = {cell.value for cell in cells if cell.data_type == "s"}
    for value in DANGEROUS:
        assert value in texts, value
        assert "'" + value not in texts, value
    assert all(cell.quotePrefix for cell in cells if cell.data_type == "s" and needs_quote_prefix(cell.value))
    assert not any(cell.quotePrefix for cell in cells if not needs_quote_prefix(cell.value))
    assert {"007", "1E5"} <= texts
    assert "=cmd|' /C calc'!A0" in texts  # a user's name (Sessions: practitioner)
    assert "=HYPERLINK(\"http://x\")" in texts
    events = table(wb["Adverse events"])[0]
    assert events["Notes"].value == MARKUP and events["Outcome"].value == "@SUM(A1)"
    lots = table(wb["Lots"])
    assert [lot["Supplier"].value for lot in lots] == ["=1+1", "@SUM(A1)"]
    assert [lot["Location"].value for lot in lots][0] == "\t=1"
    assert lots[1]["CoA reference"].value == "\r=1"
    recall = table(wb["Recalls"])[0]
    assert recall["Patient chart"].value == "+1" and recall["Contact note"].value == "-1"


def test_rows_belong_to_the_range_by_their_own_time(clinic, make_lot):
    old = make_lot(received_at=utcnow() - timedelta(days=40), expires_on=date.today() + timedelta(days=400))
    today = clinic_today()
    wb, _ = build_audit(today - timedelta(days=45), today - timedelta(days=35))
    assert [r["Lot code"].value for r in table(wb["Lots"])] == [old.code]
    assert all(wb[name].max_row == 1 for name in ("Batches", "Sessions", "Adverse events", "Recalls", "Signatures"))
    wb, _ = build_audit(today, today)
    assert old.code not in [r["Lot code"].value for r in table(wb["Lots"])]
    assert wb["Sessions"].max_row == 2 and wb["Recalls"].max_row == 2


@pytest.mark.parametrize("config_overrides", [{"CLINIC_TIMEZONE": "America/New_York"}], indirect=True)
def test_a_clinic_day_runs_midnight_to_midnight_in_the_clinic_zone(app, make_user, make_batch, make_patient):
    practitioner = make_user("practitioner")
    day = clinic_today() - timedelta(days=1)
    batch = make_batch(units=3)
    # Made and verified before the first of the times below (a session before verification is refused).
    age_batch(batch, timedelta(days=3))
    times = {"too early": start_of_clinic_day(day) - timedelta(minutes=1), "first": start_of_clinic_day(day),
             "last": end_of_clinic_day(day) - timedelta(minutes=1)}
    made = {name: treatments.record_session(practitioner, patient_id=make_patient().id, performed_at=at,
                                            uses=[{"batch_code": batch.code, "volume_ml": "1"}])
            for name, at in times.items()}
    wb, _ = build_audit(day, day)
    rows = table(wb["Sessions"])
    assert [r["Session id"].value for r in rows] == [made["first"].id, made["last"].id]
    header = "Performed (America/New_York)"
    assert rows[0][header].value == datetime.combine(day, datetime.min.time())
    assert rows[1][header].value == datetime.combine(day, datetime.min.time()) + timedelta(hours=23, minutes=59)


def test_a_reversed_range_is_refused_before_anything_is_written(app):
    out = io.BytesIO()
    with pytest.raises(InvalidInput) as caught:
        workbooks.audit_workbook(out, date(2026, 3, 2), date(2026, 3, 1), generated_by="x", clinic_name="y")
    assert "before the start date" in caught.value.message
    assert out.getvalue() == b""


def test_past_the_row_limit_every_audit_sheet_continues_and_the_cover_counts_each_part(clinic):
    wb, summary = build_audit(max_rows=1)
    assert "Audit trail (2)" in wb.sheetnames and "Lots (2)" in wb.sheetnames
    cover = {row[0].value: row[1].value for row in wb["Cover"].iter_rows() if row[0].value}
    for ws in wb.worksheets[1:]:
        assert_is_a_table(ws)
        assert cover[ws.title] == ws.max_row - 1 <= 1
    assert summary.total == sum(ws.max_row - 1 for ws in wb.worksheets[1:])


def test_progress_is_reported_for_every_row_written(clinic):
    reported = []
    _, summary = build_audit(progress=reported.append)
    assert sum(reported) == summary.total > 0


def test_the_row_counts_for_a_progress_bar_match_what_is_written(clinic):
    today = clinic_today()
    counts = workbooks.audit_row_counts(today - timedelta(days=1), today + timedelta(days=1))
    _, summary = build_audit()
    assert counts == dict(summary.parts)


# --- trace and recall reports -----------------------------------------------------------------------


def test_a_trace_workbook_lists_patients_sessions_batches_and_lots(clinic):
    out = io.BytesIO()
    workbooks.trace_workbook(trace.trace_lot(clinic["lots"][0].id), out, clinic_name="Test Clinic")
    wb = reopen(out)
    assert wb.sheetnames == ["Trace", "Patients", "Sessions", "Vials", "Batches", "Lots"]
    for ws in wb.worksheets[1:]:
        assert_is_a_table(ws)
    patient = table(wb["Patients"])[0]
    assert patient["Patient chart"].value == "+1" and patient["Patient chart"].quotePrefix
    assert patient["Name"].value == MARKUP
    assert patient["Volume received (mL)"].value == 2.5
    assert table(wb["Lots"])[0]["Supplier lot number"].value == "007"
    batch = table(wb["Batches"])[0]
    assert batch["Batch code"].value == clinic["batch"].code
    assert any(header.startswith(f"Quantity of {clinic['lots'][0].code}") for header in batch)


def test_a_recall_workbook_gives_each_patient_with_their_contact(clinic):
    out = io.BytesIO()
    recall = clinic["recall"]
    contact = type("Contact", (), {"contacted_at": utcnow(), "contacted_by": "=Dr Who", "method": "phone",
                                   "note": "-1", "outcome": "reached"})()
    workbooks.recall_workbook(recall, recalls.recall_scope(recall), {clinic["patient"].id: contact}, out,
                              clinic_name="Test Clinic", opened_by="Pharmacist")
    wb = reopen(out)
    assert wb.sheetnames == ["Recall", "Patients", "Sessions", "Vials", "Batches", "Lots"]
    patient = table(wb["Patients"])[0]
    assert patient["Contacted"].value == "yes" and patient["Contacted by"].value == "=Dr Who"
    assert patient["Contact note"].value == "-1" and patient["Phone"].value == "+44 20 7946 0000"
    assert patient["Phone"].quotePrefix and patient["Phone"].data_type == "s"
    lots = table(wb["Lots"])
    assert sorted(lot["Supplier lot number"].value for lot in lots) == ["007", "1E5"]
    cover = {row[0].value: row[1].value for row in wb["Recall"].iter_rows() if row[0].value}
    assert cover["Reason"] == "=HYPERLINK(\"http://x\")" and cover["Patients with an outcome"] == "1 of 1"
    assert patient["Outcome"].value == "reached" and patient["Voided sessions"].value == 0


def test_the_batch_sheets_show_the_record_as_made_not_the_ingredient_as_edited_later(
        app, make_formula, make_lot, make_batch, pharmacist):
    from compounding.services import ingredients
    from compounding.services.bud import last_usable_minute

    formula = make_formula()
    for component in formula.components:
        make_lot(component.ingredient, quantity="1000")
    batch = make_batch(formula)
    first = formula.components[0].ingredient
    made_as = (first.name, first.strength)
    ingredients.update_ingredient(pharmacist, first, {"name": "Renamed later", "kind": first.kind,
                                                      "unit": first.unit, "strength": "999 mg/mL",
                                                      "storage": first.storage})
    wb, _ = build_audit()
    rows = [r for r in table(wb["Batch components"]) if r["Batch code"].value == batch.code]
    assert made_as in {(r["Ingredient"].value, r["Strength"].value) for r in rows}
    assert "Renamed later" not in {r["Ingredient"].value for r in rows}
    sheet = next(r for r in table(wb["Batches"]) if r["Batch code"].value == batch.code)
    # The last usable minute, as the label prints it: one minute before the stored exclusive instant.
    use_by = sheet["Use by (Europe/London)"].value
    expected = last_usable_minute(batch.beyond_use_at).astimezone(ZoneInfo("Europe/London"))
    assert abs(use_by - expected.replace(tzinfo=None)) < timedelta(seconds=1)
    assert sheet["Protect from light"].value == "no" and sheet["Required tests"].value in ("", None)
