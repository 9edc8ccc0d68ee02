"""What the clinic's people do in a real browser, on the seeded demo data, through the real pages."""

import io
import re
import time
import uuid
from datetime import date, timedelta

import openpyxl
import pytest
import sqlalchemy as sa
import zxingcpp
from PIL import Image
from playwright.sync_api import expect
from testkit import fill_login, forget_sign_in, login

from compounding.extensions import db
from compounding.models import Batch, IngredientGtin, Lot, Patient, User, UserSession
from compounding.services import treatments
from compounding.services.clock import utcnow
from compounding.templating import quantity

LABEL_MM = (50, 30)
PT_PER_MM = 72 / 25.4


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6].upper()}"


def accept_next_dialog(page) -> list[str]:
    """Accept the next confirm() (an e-signature asks first) and remember what it said.

    The confirm comes from app.js, which runs at the end of the page: wait for the page's load
    event so a fast click cannot submit the form before the script that asks is there.
    """
    page.wait_for_load_state("load")
    seen = []

    def accept(dialog):
        seen.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    return seen


def test_a_technician_receives_a_lot_and_a_pharmacist_releases_it_with_an_e_signature(page, live_server):
    supplier_lot = unique("E2E")
    login(page, "technician")
    page.goto("/lots/receive")
    page.get_by_label("Ingredient", exact=True).select_option(label="Biotin (mL)")
    page.get_by_label("Supplier", exact=True).fill("TrichoSource Ltd")
    page.get_by_label("Supplier lot number", exact=True).fill(supplier_lot)
    page.get_by_label("Expiry", exact=True).fill((date.today() + timedelta(days=400)).strftime("%Y-%m"))
    page.get_by_label("Quantity received", exact=True).fill("25")
    page.get_by_label("Certificate of analysis reference", exact=True).fill(f"CoA {supplier_lot}")
    page.get_by_label("Shelf or box (optional)", exact=True).fill("Cabinet A")
    page.get_by_role("button", name="Receive into quarantine").click()
    expect(page.get_by_role("alert").filter(has_text="received into quarantine")).to_be_visible()
    lot_url = page.url
    code = page.locator("h1 .code").inner_text()
    assert re.fullmatch(r"L\d{6}", code)
    expect(page.locator(".badge", has_text="quarantine").first).to_be_visible()
    # A technician cannot release: the signature form is not offered.
    expect(page.get_by_role("button", name="Release lot")).to_have_count(0)

    login(page, "pharmacist")
    page.goto(lot_url)
    page.locator("#release-reason").fill("Certificate requested from TrichoSource")
    page.locator("#release-password").fill("meso-demo-2026")
    asked = accept_next_dialog(page)
    page.get_by_role("button", name="Release lot").click()
    expect(page.get_by_role("alert").filter(has_text=f"{code} released")).to_be_visible()
    assert asked and "e-signature" in asked[0]
    expect(page.locator(".badge", has_text="released").first).to_be_visible()
    expect(page.get_by_text("Released by Dr Paula Reyes")).to_be_visible()
    assert live_server.scalar(sa.select(Lot.status).where(Lot.code == code)) == "released"


def test_b_a_technician_compounds_a_batch_scanning_each_lot_and_a_second_pharmacist_verifies_it(page, live_server):
    login(page, "technician")
    page.goto("/batches/new")
    formula = page.get_by_label("Formula (approved versions)", exact=True)
    formula.select_option(formula.locator("option", has_text="LIPO-PCDC v").first.get_attribute("value"))
    page.get_by_label("Units", exact=True).fill("2")
    page.get_by_role("button", name="Propose lots (FEFO)").click()
    expect(page.locator("#compound-form")).to_be_visible()

    proposed = 0
    for row in page.locator("#compound-form tbody tr").all():
        quantity = row.locator("input[name$='-quantity']")
        if not quantity.count() or not quantity.input_value():
            continue  # an alternative lot, not proposed: left unscanned and unused
        scan = row.locator("input.scan-confirm")
        # The field never shows the code: it is read off the container's label,
        # here the lot code printed in the row's first cell.
        expect(scan).not_to_have_attribute("placeholder", re.compile(r"L\d{6}"))
        scan.press_sequentially(row.locator("td.code").first.inner_text().split()[0])
        scan.press("Enter")  # a wedge scanner's Enter ends the scan; it must not submit the form
        proposed += 1
    assert proposed >= 3  # phosphatidylcholine, deoxycholate, saline
    assert "/batches/new" in page.url

    # MAIN's equipment: the balance's label is scanned (Enter adds it, the form stays), the hood ticked;
    # the overdue balance cannot be chosen, and says why.
    equipment = page.locator("#equipment-used")
    overdue = equipment.locator("input[data-code='BAL-02']")
    expect(overdue).to_be_disabled()
    expect(equipment.get_by_text(re.compile(r"Cannot be chosen: BAL-02 .* was due for calibration"))).to_be_visible()
    scan = page.get_by_label("Scan or type an equipment code", exact=True)
    scan.press_sequentially("BAL-02")
    scan.press("Enter")
    expect(page.locator("#equipment-scan-status")).to_have_text(re.compile(r"^BAL-02 cannot be used: .*due for"))
    expect(overdue).not_to_be_checked()
    scan.press_sequentially("BAL-01")
    scan.press("Enter")
    expect(page.locator("#equipment-scan-status")).to_have_text("BAL-01 added.")
    expect(equipment.locator("input[data-code='BAL-01']")).to_be_checked()
    expect(scan).to_have_value("")
    equipment.locator("input[data-code='HOOD-01']").check()
    assert "/batches/new" in page.url

    page.get_by_role("button", name="Save batch (consume the lots)").click()
    expect(page.get_by_role("alert").filter(has_text="awaiting verification")).to_be_visible()
    batch_url, code = page.url, page.locator("h1 .code").inner_text()
    expect(page.locator("td .badge", has_text=re.compile(r"^scanned$"))).to_have_count(proposed)
    expect(page.locator("td .badge", has_text="not scanned")).to_have_count(0)
    used = page.locator("h2#equipment + p + .table-responsive tbody tr")
    expect(used).to_have_count(2)
    expect(used.filter(has_text="BAL-01")).to_have_count(1)
    expect(used.filter(has_text="HOOD-01")).to_have_count(1)

    login(page, "pharmacist2")
    page.goto(batch_url)
    page.locator("#verify-password").fill("meso-demo-2026")
    accept_next_dialog(page)
    page.get_by_role("button", name="Verify and release").click()
    expect(page.get_by_role("alert").filter(has_text=f"{code} verified and released")).to_be_visible()
    expect(page.locator(".badge", has_text="released").first).to_be_visible()
    expect(page.get_by_text("Verified by Dr Omar Haddad")).to_be_visible()
    assert live_server.scalar(sa.select(Batch.status).where(Batch.code == code)) == "released"


def test_c_the_label_prints_as_a_50_by_30_mm_pdf_whose_barcode_decodes_to_the_batch_code(
        page, new_context, live_server):

    batch_id, code = live_server.released_batch()
    login(page, "pharmacist")
    page.goto(f"/batches/{batch_id}/label")
    pdf = page.pdf(prefer_css_page_size=True, print_background=True)
    boxes = re.findall(rb"/MediaBox\s*\[\s*0 0 ([\d.]+) ([\d.]+)\s*\]", pdf)
    assert len(boxes) == 1, f"one label, one page: {boxes}"
    width, height = (float(v) for v in boxes[0])
    assert width == pytest.approx(LABEL_MM[0] * PT_PER_MM, abs=0.5)   # 141.7 pt
    assert height == pytest.approx(LABEL_MM[1] * PT_PER_MM, abs=0.5)  # 85.0 pt

    # The label as the printer gets it (print media), rasterised at 4 device pixels per CSS pixel.
    sharp = new_context(device_scale_factor=4).new_page()
    login(sharp, "pharmacist")
    sharp.emulate_media(media="print")
    sharp.goto(f"/batches/{batch_id}/label")
    png = sharp.locator(".label").first.screenshot()
    results = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    assert [r.text for r in results] == [f"{code}-01"]  # the batch's one vial, its own code
    assert results[0].format == zxingcpp.BarcodeFormat.Code128


def test_d_a_practitioner_scans_a_vial_into_a_patients_session_and_the_batch_volume_drops(page, live_server):
    batch_id, code = live_server.released_batch()
    total = live_server.scalar(sa.select(Batch.remaining_volume_ml).where(Batch.id == batch_id))
    login(page, "practitioner")
    page.goto("/treatments/patients")
    page.get_by_role("link", name="CH-1004").click()
    page.get_by_role("link", name="Record a treatment session").click()

    batch_field = page.get_by_label("Vial code, use 1", exact=True)
    expect(batch_field).to_be_focused()  # ready for the scanner as soon as the page opens
    batch_field.press_sequentially(code.lower())
    batch_field.press("Enter")
    expect(page.get_by_label("Volume in mL, use 1", exact=True)).to_be_focused()
    assert "/sessions/new" in page.url, "the scanner's Enter must not submit the form"
    expect(batch_field).to_have_value(code)
    page.keyboard.type("1.5")
    page.get_by_label("Injection area, use 1", exact=True).fill("scalp, vertex")
    page.get_by_role("button", name="Save session").click()

    expect(page.get_by_role("alert").filter(has_text=f"Session recorded: {code}")).to_be_visible()
    expect(page.get_by_text(code).first).to_be_visible()
    page.goto(f"/batches/{batch_id}")
    # One single-dose vial: 1.5 mL injected, the rest written off when the session was saved; the vial is spent.
    expect(page.get_by_text(f"0 of {quantity(total)} mL")).to_be_visible()
    expect(page.locator("tr", has=page.get_by_text(f"{code}-01", exact=True)).first).to_contain_text("spent")
    expect(page.locator("table").filter(has_text="Patient chart").get_by_text("CH-1004")).to_be_visible()


def test_e_a_pharmacist_opens_a_recall_on_a_batch_and_sees_the_patient_who_received_it(page, live_server):
    batch_id, code = live_server.released_batch()
    chart = unique("CH-R")
    live_server.treat(live_server.patient(chart, "Recall Patient"), code, "2")
    login(page, "pharmacist")
    page.goto(f"/trace/batches/{batch_id}")
    expect(page.get_by_text(chart).first).to_be_visible()
    page.get_by_role("link", name="Open a recall on this batch").click()
    page.get_by_label("Reason", exact=True).fill("Supplier alert: endotoxin out of specification")
    page.get_by_label("Your password (e-signature)", exact=True).fill("meso-demo-2026")
    asked = accept_next_dialog(page)
    page.get_by_role("button", name="Open recall (e-signature)").click()

    expect(page.get_by_role("alert").filter(has_text=f"opened on batch {code}")).to_be_visible()
    assert asked and code in asked[0]
    assert re.search(r"/recalls/\d+$", page.url)
    patient_id = live_server.scalar(sa.select(Patient.id).where(Patient.chart_number == chart))
    expect(page.locator(f"#patient-{patient_id}")).to_contain_text("Recall Patient")
    assert live_server.scalar(sa.select(Batch.status).where(Batch.id == batch_id)) == "recalled"


def test_f_an_auditor_downloads_the_audit_workbook_and_it_opens_with_its_sheets(page, live_server, tmp_path):
    login(page, "auditor")
    page.goto("/exports/")
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Download the audit workbook").click()
    download = download_info.value
    assert re.fullmatch(r"audit-\d{4}-\d\d-\d\d_\d{4}-\d\d-\d\d\.xlsx", download.suggested_filename)
    path = tmp_path / download.suggested_filename
    download.save_as(path)
    workbook = openpyxl.load_workbook(path, read_only=True)
    try:
        names = workbook.sheetnames
    finally:
        workbook.close()
    assert names == ["Cover", "Lots", "Batches", "Batch components", "Sessions", "Adverse events", "Recalls",
                     "Signatures", "Audit trail", "Patient access", "Readings", "Excursions",
                     "Qualifications", "Equipment", "Calibrations", "Documents"]
    # The button comes back once the file has arrived (the page watches the download cookie).
    expect(page.get_by_role("button", name="Download the audit workbook")).to_be_enabled()


def test_g_the_scan_station_reads_a_gs1_code_with_its_group_separator_and_batch_codes_green_or_red(
        page, live_server):
    lot_code, expiry, gtin = live_server.execute(
        sa.select(Lot.code, Lot.expires_on, IngredientGtin.gtin)
        .join(IngredientGtin, IngredientGtin.ingredient_id == Lot.ingredient_id)
        .where(Lot.supplier_lot_number == "PC-24117"))[0]
    _, usable = live_server.released_batch()
    _, unverified = live_server.released_batch(verify=False)

    login(page, "technician")
    page.goto("/scan/")
    field = page.get_by_label(re.compile("Scan or type a vial, batch, lot or supplier code"))
    expect(field).to_be_focused()
    # What a keyboard-wedge scanner types for a GS1-128 label: the GS separator arrives as a character.
    field.press_sequentially(f"01{gtin}10PC-24117")
    page.keyboard.insert_text("\x1d")
    field.press_sequentially(f"17{expiry:%y%m%d}")
    field.press("Enter")
    card = page.locator("#scan-result")
    assert "%1D" in page.url  # the separator went to the server as typed
    expect(card).to_have_attribute("data-kind", "gs1")
    expect(card).to_contain_text("PC-24117")
    expect(card.get_by_role("link", name=lot_code)).to_be_visible()
    expect(card).to_have_attribute("data-usable", "yes")

    page.locator("h1").click()  # focus leaves the field
    expect(field).not_to_be_focused()
    page.keyboard.press("/")
    expect(field).to_be_focused()

    page.keyboard.type(usable)
    page.keyboard.press("Enter")
    expect(card).to_have_attribute("data-kind", "batch")
    expect(card).to_have_attribute("data-usable", "yes")
    expect(card.locator(".card-header")).to_have_class(re.compile(r"\btext-bg-success\b"))
    expect(card.locator(".card-header")).to_contain_text(f"USABLE · batch {usable}")

    field.fill(unverified)
    field.press("Enter")
    expect(card).to_have_attribute("data-usable", "no")
    expect(card.locator(".card-header")).to_have_class(re.compile(r"\btext-bg-danger\b"))
    expect(card.locator(".card-header")).to_contain_text("DO NOT USE")
    expect(card.locator("ul.text-danger li").first).to_be_visible()  # the reasons
    expect(page.locator("#recent-scans")).to_contain_text(usable)


def test_h_clicking_save_again_while_it_saves_registers_one_patient_not_two(page, live_server, monkeypatch):
    chart = unique("CH-D")
    real_create = treatments.create_patient

    def slow_create(*args, **kwargs):  # a busy server: the clicks arrive while the first one is saving
        time.sleep(0.5)
        return real_create(*args, **kwargs)

    monkeypatch.setattr(treatments, "create_patient", slow_create)
    login(page, "practitioner")
    page.goto("/treatments/patients/new")
    page.get_by_label("Chart number", exact=True).fill(chart)
    page.get_by_label("Name", exact=True).fill("Double Click")
    button = page.get_by_role("button", name="Register patient")
    box = button.bounding_box()
    button.dblclick()
    page.wait_for_timeout(200)  # the request is on its way; an impatient user clicks again
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    expect(page.get_by_role("alert").filter(has_text="Patient registered.")).to_be_visible()
    assert re.search(r"/treatments/patients/\d+$", page.url)
    expect(page.get_by_text("already")).to_have_count(0)
    count = sa.select(sa.func.count()).select_from(Patient).where(Patient.chart_number == chart)
    assert live_server.scalar(count) == 1


def test_i_an_idle_session_signs_out_and_signing_in_again_returns_to_the_same_page(page, live_server):
    login(page, "practitioner")
    page.goto("/treatments/patients?q=CH-1003")
    # Time passes past SESSION_IDLE_MINUTES (30) without a request: the server judges by last_seen_at.
    with live_server.app.app_context():
        practitioner = sa.select(User.id).where(User.username == "practitioner").scalar_subquery()
        db.session.execute(sa.update(UserSession).where(UserSession.user_id == practitioner)
                           .values(last_seen_at=utcnow() - timedelta(minutes=31)))
        db.session.commit()
    forget_sign_in("practitioner")  # the cached cookie names the session that just ended
    page.get_by_role("link", name="CH-1003").click()
    patient_path = page.url  # the login page, with where we were going as `next`
    assert "/login" in patient_path and "next=" in patient_path
    expect(page.get_by_role("alert").filter(has_text="period of inactivity")).to_be_visible()
    fill_login(page, "practitioner")
    assert re.search(r"/treatments/patients/\d+$", page.url)
    expect(page.locator("h1")).to_contain_text("CH-1003")


def test_j_a_refused_form_keeps_what_was_typed_and_says_why_next_to_the_field(page, live_server):
    login(page, "technician")
    page.goto("/lots/receive")
    page.get_by_label("Ingredient", exact=True).select_option(label="Minoxidil (mL)")
    page.get_by_label("Supplier", exact=True).fill("TrichoSource Ltd")
    page.get_by_label("Supplier lot number", exact=True).fill("MX-ZERO")
    page.get_by_label("Expiry", exact=True).fill("2031-02")
    page.get_by_label("Quantity received", exact=True).fill("0")
    page.get_by_role("button", name="Receive into quarantine").click()

    quantity = page.get_by_label("Quantity received", exact=True)
    expect(quantity).to_have_attribute("aria-invalid", "true")
    message = page.locator("#quantity ~ .invalid-feedback")
    expect(message).to_be_visible()
    expect(message).not_to_be_empty()
    expect(quantity).to_have_value("0")
    expect(page.get_by_label("Supplier", exact=True)).to_have_value("TrichoSource Ltd")
    expect(page.get_by_label("Supplier lot number", exact=True)).to_have_value("MX-ZERO")
    expect(page.get_by_label("Expiry", exact=True)).to_have_value("2031-02")
    expect(page.get_by_label("Ingredient", exact=True).locator("option:checked")).to_have_text("Minoxidil (mL)")
    assert live_server.scalar(sa.select(sa.func.count()).select_from(Lot).where(
        Lot.supplier_lot_number == "MX-ZERO")) == 0


# The `page` fixture fails any browser test whose pages report a CSP violation, so the journeys,
# the accessibility pass and the screenshots already cover their pages: these are the others.
OTHER_PAGES = {
    "pharmacist": ["/batches/", "/formulas/", "/formulas/1", "/ingredients/", "/ingredients/1", "/recalls/",
                   "/recalls/new", "/trace", "/scan/setup", "/lots/1/label", "/lots/1/label?sheet=a4&copies=3"],
    "practitioner": ["/treatments/sessions"],
    "admin": ["/admin/users", "/admin/users/1"],
}


def test_k_no_page_breaks_the_content_security_policy(page, live_server, csp_violations):
    batch_id, code = live_server.released_batch()
    for role, paths in OTHER_PAGES.items():
        login(page, role)
        if role == "pharmacist":
            paths = [*paths, f"/trace/batches/{batch_id}", f"/scan/?code={code}"]
        for path in paths:
            response = page.goto(path)
            assert response.status < 400, f"{role} {path}: {response.status}"
            assert "script-src 'self'" in response.headers["content-security-policy"]
    assert csp_violations == []  # the page fixture checks again after the last page's scripts ran


def test_k_the_csp_check_would_see_an_inline_script(page, live_server, csp_violations):
    page.goto("/login")
    page.evaluate("""() => {
        const script = document.createElement("script");
        script.textContent = "window.inlineRan = true";
        document.body.append(script);
    }""")
    assert page.evaluate("window.inlineRan") is None
    page.wait_for_timeout(50)  # console messages arrive asynchronously
    assert any("Content Security Policy" in text for text in csp_violations)
    csp_violations.clear()  # seen: the fixture's own check must not fail this test
