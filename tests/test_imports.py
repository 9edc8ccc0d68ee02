"""The supplier delivery-sheet import: preview, then all or nothing, with the receiving rules."""

import io
import re
import zipfile
from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa
from openpyxl import Workbook, load_workbook
from openpyxl.cell import WriteOnlyCell
from testkit import audit_rows, count_rows

from compounding.extensions import db
from compounding.models import Lot, StockMovement
from compounding.services import imports, inventory
from compounding.services.errors import NotAllowed

HEADERS = ["Ingredient (name or GTIN)", "Supplier", "Lot number", "Expiry (YYYY-MM-DD or YYYY-MM)", "Quantity",
           "Certificate reference", "GTIN", "Location"]
NEXT_YEAR = date.today().year + 1
GTIN = "05012345678900"


def sheet_bytes(rows, headers=HEADERS, title="Delivery") -> bytes:
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(title)
    if headers is not None:
        sheet.append(headers)
    for values in rows:
        sheet.append([_text_cell(sheet, v) if isinstance(v, str) and v.startswith("=") else v for v in values])
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def _text_cell(sheet, value: str):
    """Text that looks like a formula, typed into a text-formatted cell (as the template's are)."""
    cell = WriteOnlyCell(sheet, value)
    cell.data_type = "s"
    return cell


def row(ingredient="Biotin", supplier="Pharma Ltd", lot="L-1", expiry=f"{NEXT_YEAR}-06", quantity=100,
        coa="COA-1", gtin=None, location="Fridge 2"):
    return [ingredient, supplier, lot, expiry, quantity, coa, gtin, location]


@pytest.fixture
def biotin(make_ingredient):
    return make_ingredient(name="Biotin", unit="g", gtins=[GTIN])


def upload(client, data: bytes, filename="delivery.xlsx"):
    return client.post("/exports/import", data={"file": (io.BytesIO(data), filename)},
                       content_type="multipart/form-data")


def confirm(client, preview_html: str):
    content = re.search(r'id="content" name="content" type="hidden" value="([^"]+)"', preview_html).group(1)
    filename = re.search(r'id="filename" name="filename" type="hidden" value="([^"]*)"', preview_html).group(1)
    return client.post("/exports/import/confirm", data={"content": content, "filename": filename})


def lots() -> list[Lot]:
    return list(db.session.scalars(sa.select(Lot).order_by(Lot.id)))


# --- the happy path -----------------------------------------------------------------------------------


def test_a_good_sheet_is_previewed_then_imported_whole_into_quarantine(client, as_role, biotin, make_ingredient):
    technician = as_role("technician")
    lidocaine = make_ingredient(name="Lidocaine 2%", unit="mL")
    data = sheet_bytes([
        row(lot="007", expiry=f"{NEXT_YEAR}-06", quantity=12.5),
        row(ingredient=GTIN, lot="1E5", expiry=datetime(NEXT_YEAR, 3, 31), quantity="250", gtin=GTIN),
        row(ingredient="lidocaine 2%", supplier="<script>alert(1)</script>", lot="=1+1", quantity=0.125,
            coa=None, location=None),
        [None] * 8,  # an empty row is skipped
    ])
    preview = upload(client, data)
    html = preview.get_data(as_text=True)
    assert preview.status_code == 200, re.findall(r"<li>.*?</li>", html)
    assert "All 3 rows pass the receiving rules" in html and "Import 3 lots into quarantine" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert(1)" not in html
    assert lots() == []  # the preview saves nothing

    response = confirm(client, html)
    assert response.status_code == 302
    assert "/lots/?status=quarantine" in response.headers["Location"]
    first, second, third = lots()
    assert (first.supplier_lot_number, first.expires_on, first.quantity_received) == (
        "007", date(NEXT_YEAR, 6, 30), Decimal("12.5"))
    assert (second.ingredient_id, second.supplier_lot_number, second.expires_on, second.gtin) == (
        biotin.id, "1E5", date(NEXT_YEAR, 3, 31), GTIN)
    assert (third.ingredient_id, third.supplier, third.supplier_lot_number, third.quantity_received) == (
        lidocaine.id, "<script>alert(1)</script>", "=1+1", Decimal("0.125"))
    assert {lot.status for lot in lots()} == {"quarantine"}
    assert {lot.received_by_id for lot in lots()} == {technician.id}
    assert count_rows(StockMovement) == 3
    assert len(audit_rows("lot.received")) == 3
    [imported] = audit_rows("lots.imported")
    assert imported.new_values["file"] == "delivery.xlsx" and imported.new_values["count"] == 3
    assert imported.new_values["lots"] == [first.code, second.code, third.code]
    assert len(imported.new_values["sha256"]) == 64
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "3 lots imported from delivery.xlsx into quarantine" in page


def test_the_template_has_the_columns_the_import_reads_formatted_as_text(client, as_role, biotin):
    pharmacist = as_role("pharmacist")
    response = client.get("/exports/import/template.xlsx")
    assert response.status_code == 200
    wb = load_workbook(io.BytesIO(response.get_data()))
    response.close()
    assert wb.sheetnames == ["Delivery", "Help", "Ingredients"]
    ws = wb["Delivery"]
    assert [c.value for c in ws[1]] == HEADERS == [c.header for c in imports.COLUMNS]
    assert all(c.font.b for c in ws[1]) and ws.freeze_panes == "A2"
    assert ws.column_dimensions["C"].number_format == "@"  # lot numbers stay text: 007 is not 7
    assert ws.column_dimensions["E"].number_format == "General"
    assert [c.value for c in wb["Ingredients"][2]][:3] == ["Biotin", "g", GTIN]
    # The template filled in and uploaded as it is, is a valid sheet.
    ws.append(row())
    out = io.BytesIO()
    wb.save(out)
    assert imports.check_delivery(pharmacist, out.getvalue(), "t.xlsx").ok


# --- whole-file refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize(("data", "message"), [
    (b"lot,quantity\nL1,3\n", "This file is not an Excel workbook (.xlsx)"),
    (b"PK\x03\x04 broken zip", "This file is not an Excel workbook (.xlsx)"),
    (sheet_bytes([], headers=None), "The sheet is empty"),
    (sheet_bytes([], headers=HEADERS), "The sheet has its header row but no lots under it."),
    (sheet_bytes([["Biotin", "L-1", "2030-01"]], headers=["Ingredient", "Lot number", "Expiry"]),
     "Missing columns: Supplier, Quantity."),
    (sheet_bytes([["Biotin"]], headers=["Ingredient", "Supplier", "Lot", "Expiry", "Qty.", "Colour"]), None),
])
def test_a_file_that_is_not_a_delivery_sheet_gets_a_clear_answer(client, as_role, biotin, data, message):
    as_role("technician")
    response = upload(client, data)
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    if message is None:  # that one has every column (aliases): its row fails instead
        assert "Nothing was imported: row 2" in html and "Columns not read: Colour" in html
    else:
        assert message in html
    assert lots() == []


def test_more_rows_than_the_limit_are_refused_with_the_limit_named(client, as_role, biotin):
    as_role("technician")
    data = sheet_bytes(row(lot=f"L-{n}") for n in range(10_000))
    response = upload(client, data)
    assert response.status_code == 422
    assert "more than 2,000 lots: import at most 2,000 rows at a time" in response.get_data(as_text=True)
    assert lots() == []


def test_an_upload_over_2_mb_is_refused(app, technician):
    with pytest.raises(imports.SheetRefused) as caught:
        imports.check_delivery(technician, b"PK" + b"\0" * (imports.MAX_IMPORT_BYTES + 1), "big.xlsx")
    assert "larger than 2 MB" in caught.value.message


def forged_sheet(extra_rows: str, good_rows=()) -> bytes:
    """A delivery sheet whose XML claims the whole grid (A1:XFD1048576) and ends with `extra_rows`.

    Built as a spreadsheet program would never write it: the declared dimension is a claim of
    the file, and the rows are whatever its author wrote.
    """
    original = zipfile.ZipFile(io.BytesIO(sheet_bytes(good_rows)))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as forged:
        for info in original.infolist():
            data = original.read(info.filename)
            if info.filename == "xl/worksheets/sheet1.xml":
                text = re.sub(r'<dimension ref="[^"]*"/>', "", data.decode())
                text = text.replace("<sheetViews>", '<dimension ref="A1:XFD1048576"/><sheetViews>', 1)
                data = text.replace("</sheetData>", extra_rows + "</sheetData>").encode()
            forged.writestr(info.filename, data)
    return out.getvalue()


def test_a_sheet_claiming_every_cell_with_sparse_rows_is_refused_within_the_cell_budget(client, as_role, biotin):
    """A 31 kB file: its dimension names 17 billion cells, and 5,000 rows each reach the last column."""
    as_role("technician")
    rows = "".join(f'<row r="{n}"><c r="XFD{n}" t="inlineStr"><is><t></t></is></c></row>' for n in range(3, 5003))
    data = forged_sheet(rows, good_rows=[row(lot="S-1")])
    assert len(data) < 100_000
    response = upload(client, data)
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "too large to read" in html and "delete the empty rows and columns" in html
    assert lots() == [] and audit_rows("lots.imported") == []


def test_a_declared_dimension_is_not_trusted_and_empty_rows_cost_nothing(client, as_role, biotin):
    as_role("technician")
    rows = "".join(f'<row r="{n}"/>' for n in range(4, 900)) + '<row r="1048576"/>'
    response = upload(client, forged_sheet(rows, good_rows=[row(lot="D-1"), row(lot="D-2")]))
    html = response.get_data(as_text=True)
    assert response.status_code == 200, html[-2000:]
    assert "All 2 rows pass the receiving rules" in html
    assert lots() == []  # a preview


def test_a_long_run_of_empty_rows_ends_the_sheet(app, technician, biotin):
    """Row numbers can jump to any size in a forged file: reading stops after a run of empty rows."""
    far = imports.MAX_EMPTY_RUN + 3
    late = "".join(f'<c r="{col}{far}" t="inlineStr"><is><t>{value}</t></is></c>'
                   for col, value in zip("ABCDE", row(lot="LATE")[:4] + ["5"], strict=True))
    data = forged_sheet(f'<row r="{far}">{late}</row><row r="999999999999"/>', good_rows=[row(lot="EARLY")])
    sheet = imports.check_delivery(technician, data, "late.xlsx")
    assert [r.values["lot_number"] for r in sheet.rows] == ["EARLY"]


def test_a_sheet_that_takes_too_long_to_read_is_refused(app, technician, biotin):
    with pytest.raises(imports.SheetRefused) as caught:
        imports.read_sheet(sheet_bytes([row()]), seconds=0)
    assert "took too long to read" in caught.value.message


def test_no_file_at_all_asks_for_one(client, as_role):
    as_role("technician")
    response = client.post("/exports/import", data={}, content_type="multipart/form-data")
    assert response.status_code == 422
    assert "Choose the .xlsx file to upload." in response.get_data(as_text=True)


# --- row refusals: one bad row imports nothing ----------------------------------------------------


@pytest.mark.parametrize(("bad", "column", "message"), [
    ({"quantity": "12,5"}, "Quantity", "Enter a number such as 12.5."),
    ({"quantity": 0}, "Quantity", "The quantity must be greater than zero."),
    ({"quantity": 1.2345}, "Quantity", "Use at most 3 decimals."),
    ({"quantity": None}, "Quantity", "This field is required."),
    ({"expiry": "next june"}, "Expiry (YYYY-MM-DD or YYYY-MM)", "Give a real date as YYYY-MM-DD"),
    ({"expiry": "2020-01"}, "Expiry (YYYY-MM-DD or YYYY-MM)", "This lot expired on 2020-01-31"),
    ({"ingredient": "Unobtainium"}, "Ingredient (name or GTIN)", "No ingredient is named 'Unobtainium'"),
    ({"supplier": ""}, "Supplier", "This field is required."),
    ({"lot": "x" * 61}, "Lot number", "At most 60 characters."),
    ({"gtin": "12345"}, "GTIN", "8 to 14 digits."),
    ({"gtin": "05012345678901"}, "GTIN", "is not a valid GTIN (check digit or length)."),
    ({"location": "y" * 121}, "Location", "At most 120 characters."),
])
def test_one_bad_row_imports_nothing_and_names_its_row_and_field(client, as_role, biotin, bad, column, message):
    as_role("technician")
    rows = [row(lot="A"), row(lot="B"), row(**{"lot": "C", **bad})]
    response = upload(client, sheet_bytes(rows))
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert f"Nothing was imported: row 4, {column}: " in html
    assert message.replace("'", "&#39;") in html
    assert "Import 3 lots" not in html  # no confirm button
    assert lots() == [] and audit_rows("lots.imported") == []


def test_an_inactive_ingredient_or_a_lot_already_received_is_refused_by_the_receiving_rules(
        client, as_role, biotin, make_ingredient, make_lot):
    as_role("pharmacist")
    existing = make_lot(biotin, supplier="Pharma Ltd", supplier_lot_number="DUP")
    retired = make_ingredient(name="Old stuff")
    retired.active = False
    db.session.commit()
    response = upload(client, sheet_bytes([row(lot="DUP"), row(ingredient="Old stuff"), row(lot="OK")]))
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert f"Lot DUP of Biotin from Pharma Ltd was already received as {existing.code}." in html
    assert "Old stuff is inactive and cannot be received." in html
    assert "2 rows have errors" in html
    assert [lot.id for lot in lots()] == [existing.id]


def test_the_same_lot_twice_in_one_sheet_is_caught_before_either_is_saved(client, as_role, biotin):
    as_role("technician")
    response = upload(client, sheet_bytes([row(lot="X-1"), row(lot="X-2"), row(lot="X-1")]))
    assert response.status_code == 422
    assert "Row 2 already has this lot of Biotin from Pharma Ltd." in response.get_data(as_text=True)
    assert lots() == []


def test_confirming_checks_the_file_again_and_trusts_nothing_from_the_preview(client, as_role, biotin, make_lot):
    as_role("technician")
    preview = upload(client, sheet_bytes([row(lot="R-1"), row(lot="R-2")])).get_data(as_text=True)
    # Between preview and confirm, someone receives R-2 by hand.
    make_lot(biotin, supplier="Pharma Ltd", supplier_lot_number="R-2")
    response = confirm(client, preview)
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "Nothing was imported: row 3, Lot number" in html
    assert [lot.supplier_lot_number for lot in lots()] == ["R-2"]
    # A forged confirm (another file, or garbage) is read and checked like any upload.
    tampered = client.post("/exports/import/confirm", data={"content": "not base64!!", "filename": "x.xlsx"})
    assert tampered.status_code == 422 and "did not come back intact" in tampered.get_data(as_text=True)
    import base64

    forged = base64.urlsafe_b64encode(sheet_bytes([row(lot="F-1", quantity=-5)])).decode()
    response = client.post("/exports/import/confirm", data={"content": forged, "filename": "x.xlsx"})
    assert response.status_code == 422 and "The quantity must be greater than zero." in response.get_data(
        as_text=True)
    assert len(lots()) == 1


def test_a_large_previewed_file_comes_back_through_the_confirm_form(client, as_role, biotin):
    """Flask allows 500 kB per form field by default; the confirm step raises it for itself only."""
    import random

    as_role("technician")
    noise = random.Random(7)
    filler = ["".join(noise.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(30_000)) for _ in range(20)]
    data = sheet_bytes([[*row(lot=f"N-{n}"), text] for n, text in enumerate(filler)], headers=[*HEADERS, "Remarks"])
    assert len(data) > 400_000
    preview = upload(client, data)
    assert preview.status_code == 200
    response = confirm(client, preview.get_data(as_text=True))
    assert response.status_code == 302
    assert len(lots()) == 20


# --- who may import ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["auditor", "practitioner", "admin"])
def test_only_pharmacists_and_technicians_import(client, as_role, biotin, role):
    as_role(role)
    assert client.get("/exports/import").status_code == 403
    assert client.get("/exports/import/template.xlsx").status_code == 403
    assert upload(client, sheet_bytes([row()])).status_code == 403
    assert client.post("/exports/import/confirm", data={"content": "eA==", "filename": "x"}).status_code == 403
    assert lots() == []


def test_the_service_itself_refuses_an_auditor(app, make_user, biotin):
    auditor = make_user("auditor")
    with pytest.raises(NotAllowed):
        imports.import_delivery(auditor, sheet_bytes([row()]), "x.xlsx")
    assert lots() == []


def test_receive_lot_and_the_import_share_one_set_of_rules(app, technician, biotin):
    receipt = inventory.validate_receipt(technician, ingredient_id=biotin.id, supplier=" Pharma ",
                                         supplier_lot_number=" 9 ", expires_on=date.today() + timedelta(days=30),
                                         quantity="1.5", gtin="5012345678900")
    assert (receipt.supplier, receipt.supplier_lot_number, receipt.gtin) == ("Pharma", "9", GTIN)
    assert lots() == []  # validating writes nothing
    lot = inventory.receive_lot(technician, ingredient_id=biotin.id, supplier="Pharma", supplier_lot_number="9",
                                expires_on=receipt.expires_on, quantity="1.5")
    assert lot.status == "quarantine" and lot.remaining == Decimal("1.5")


@pytest.mark.parametrize("config_overrides", [{"WTF_CSRF_ENABLED": True}], indirect=True)
def test_with_csrf_on_the_import_works_with_the_pages_tokens_and_refuses_without(client, make_user, biotin):
    from testkit import PASSWORD, csrf_token_from, submission_key_from

    technician = make_user("technician")
    login_page = client.get("/login").get_data(as_text=True)
    client.post("/login", data={"username": technician.username, "password": PASSWORD,
                                "csrf_token": csrf_token_from(login_page)})
    upload_page = client.get("/exports/import").get_data(as_text=True)
    preview = client.post("/exports/import", content_type="multipart/form-data",
                          data={"file": (io.BytesIO(sheet_bytes([row(lot="C-1")])), "d.xlsx"),
                                "csrf_token": csrf_token_from(upload_page),
                                "submission_key": submission_key_from(upload_page)})
    html = preview.get_data(as_text=True)
    assert preview.status_code == 200, html[-3000:]
    content = re.search(r'id="content" name="content" type="hidden" value="([^"]+)"', html).group(1)
    refused = client.post("/exports/import/confirm", data={"content": content, "filename": "d.xlsx"})
    assert refused.status_code == 400 and lots() == []
    response = client.post("/exports/import/confirm", data={"content": content, "filename": "d.xlsx",
                                                            "csrf_token": csrf_token_from(html),
                                                            "submission_key": submission_key_from(html)})
    assert response.status_code == 302
    assert [lot.supplier_lot_number for lot in lots()] == ["C-1"]
