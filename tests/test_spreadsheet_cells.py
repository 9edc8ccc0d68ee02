"""A spreadsheet shows every text cell as typed, checked by opening it in LibreOffice."""

import csv
import io
import shutil
import subprocess
from pathlib import Path

from openpyxl import load_workbook
from testkit import tool_missing

from compounding import workbooks
from compounding.services import recalls, trace, treatments
from compounding.workbooks.writer import Column, WorkbookWriter

TYPED = ["+44 7700 900123", "=1+1", "-12", "@SUM(A1)", "007", "1E5", "it's fine", "a=b"]


def soffice() -> str:
    """LibreOffice, or a skip where it is missing (a failure on CI, where it must be there)."""
    found = shutil.which("soffice")
    if found is None:
        tool_missing("LibreOffice (soffice) is not installed: it checks what a spreadsheet shows")
    return found


def shown_by_libreoffice(data: bytes, tmp_path: Path, sheet: int = 1) -> list[list[str]]:
    """The cells of one sheet as LibreOffice displays them (its CSV export of the shown text)."""
    source = tmp_path / "book.xlsx"
    source.write_bytes(data)
    out = tmp_path / "out"
    # A private profile: parallel runs would otherwise fight over the user's one.
    profile = (tmp_path / "profile").as_uri()
    # 44,34,76,1,,0,false,true,true (... sheet N): comma, quote, UTF-8, the text as shown, one sheet.
    options = f"csv:Text - txt - csv (StarCalc):44,34,76,1,,0,false,true,true,false,false,{sheet}"
    subprocess.run([soffice(), f"-env:UserInstallation={profile}", "--headless", "--convert-to", options,
                    "--outdir", str(out), str(source)], capture_output=True, timeout=180, check=False)
    # LibreOffice exits 0 even when it converted nothing: the file is the proof.
    produced = sorted(out.glob("*.csv"))
    assert produced, "LibreOffice wrote no CSV"
    return list(csv.reader(io.StringIO(produced[0].read_text(encoding="utf-8"))))


def test_text_a_spreadsheet_could_run_is_stored_as_typed_with_the_quote_prefix_style(app):
    out = io.BytesIO()
    book = WorkbookWriter()
    book.table("Typed", [Column("Phone"), Column("Code", "code")], [(value, value) for value in TYPED])
    book.save(out)
    ws = load_workbook(io.BytesIO(out.getvalue()))["Typed"]
    for row, value in zip(ws.iter_rows(min_row=2), TYPED, strict=True):
        for cell in row:
            assert cell.data_type == "s" and cell.value == value
            assert cell.quotePrefix == value.startswith(("=", "+", "-", "@"))


def test_libreoffice_shows_each_text_cell_exactly_as_typed_and_evaluates_none(app, tmp_path):
    out = io.BytesIO()
    book = WorkbookWriter()
    book.table("Typed", [Column("Phone"), Column("Code", "code")], [(value, value) for value in TYPED])
    book.save(out)
    rows = shown_by_libreoffice(out.getvalue(), tmp_path)
    assert rows[0] == ["Phone", "Code"]
    assert rows[1:] == [[value, value] for value in TYPED]


def _trace_clinic(make_batch, make_patient, make_user):
    batch = make_batch()
    patient = make_patient(chart_number="CH-2001", phone="+44 7700 900123", name="=1+1")
    practitioner = make_user("practitioner")
    treatments.record_session(practitioner, patient_id=patient.id,
                              uses=[{"batch_code": batch.code, "volume_ml": "1.5"}])
    return batch, patient


def _patients_sheet(data: bytes, tmp_path: Path) -> dict[str, str]:
    names = load_workbook(io.BytesIO(data), read_only=True).sheetnames
    rows = shown_by_libreoffice(data, tmp_path, sheet=names.index("Patients") + 1)
    return dict(zip(rows[0], rows[1], strict=False))


def test_a_phone_number_in_the_trace_workbook_shows_without_an_apostrophe(make_batch, make_patient, make_user,
                                                                            tmp_path):
    batch, _ = _trace_clinic(make_batch, make_patient, make_user)
    out = io.BytesIO()
    workbooks.trace_workbook(trace.trace_batch(batch.id, per_page=None), out, clinic_name="Test Clinic")
    patient = _patients_sheet(out.getvalue(), tmp_path)
    assert patient["Phone"] == "+44 7700 900123"
    assert patient["Name"] == "=1+1"


def test_a_phone_number_in_the_recall_workbook_shows_without_an_apostrophe(make_batch, make_patient, make_user,
                                                                             tmp_path):
    from testkit import PASSWORD

    batch, _ = _trace_clinic(make_batch, make_patient, make_user)
    recall = recalls.open_recall(make_user("pharmacist"), reason="Cloudy vials", password=PASSWORD,
                                 batch_id=batch.id)
    out = io.BytesIO()
    workbooks.recall_workbook(recall, recalls.recall_scope(recall), {}, out, clinic_name="Test Clinic",
                              opened_by="Pharmacist")
    patient = _patients_sheet(out.getvalue(), tmp_path)
    assert patient["Phone"] == "+44 7700 900123"


def test_libreoffice_opens_the_audit_workbook_s_evidence_sheets_as_typed(app, tmp_path, make_user, make_lot):
    from datetime import timedelta

    from documentkit import pdf

    from compounding.services import documents, equipment, qualifications
    from compounding.services.clock import clinic_today

    app.config["FILE_STORE_PATH"] = str(tmp_path / "store")
    pharmacist = make_user("pharmacist")
    today = clinic_today()
    person = make_user("technician", username="tessa", qualified=False)
    qualifications.record_qualification(pharmacist, user_id=person.id, kind="media_fill", passed_on=today,
                                        result="pass", assessor="=1+1")
    equipment.create_equipment(pharmacist, code="BAL-01", kind="balance", serial_number="007", due_on=today)
    document = documents.attach(pharmacist, "lot", make_lot(release=False).id, data=pdf("CoA"), filename="-1.pdf")
    out = io.BytesIO()
    workbooks.audit_workbook(out, today - timedelta(days=1), today, generated_by="Auditor", clinic_name="Clinic")
    data = out.getvalue()
    names = load_workbook(io.BytesIO(data), read_only=True).sheetnames

    def shown(sheet: str) -> dict[str, str]:
        folder = tmp_path / sheet
        folder.mkdir()
        rows = shown_by_libreoffice(data, folder, sheet=names.index(sheet) + 1)
        return dict(zip(rows[0], rows[1], strict=True))

    qualification = shown("Qualifications")
    assert qualification["Assessor"] == "=1+1" and qualification["Performed on"] == today.isoformat()
    assert qualification["Valid until"] == qualifications.add_months(today, 6).isoformat()
    listed = shown("Documents")
    assert listed["SHA-256"] == document.sha256 and listed["File name"] == "-1.pdf"
    assert listed["Size (bytes)"] == str(document.size)
