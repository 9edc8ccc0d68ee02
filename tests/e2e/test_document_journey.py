"""A certificate of analysis attached in the browser, refused when it lies, downloaded back, then the release."""

import uuid
from datetime import date, timedelta
from pathlib import Path

import sqlalchemy as sa
from documentkit import pdf, png
from playwright.sync_api import expect
from testkit import login

from compounding.models import Document, Lot
from compounding.services import inventory


def test_a_technician_attaches_the_certificate_and_a_pharmacist_releases_without_a_reason(page, live_server,
                                                                                         tmp_path):
    number = f"DOC-{uuid.uuid4().hex[:6].upper()}"
    with live_server.app.app_context():
        lot = inventory.receive_lot(live_server._user("technician"), ingredient_id=1, supplier="TrichoSource Ltd",
                                    supplier_lot_number=number, expires_on=date.today() + timedelta(days=300),
                                    quantity="20")
        lot_id, code = lot.id, lot.code
    lying, certificate = tmp_path / "certificate.pdf", tmp_path / f"CoA {number} é.pdf"
    lying.write_bytes(png())
    certificate.write_bytes(pdf(number))

    login(page, "technician")
    page.goto(f"/lots/{lot_id}")
    expect(page.locator(".lot-certificate")).to_have_text("none attached")
    panel = page.locator(f"#documents-lot-{lot_id}")
    panel.get_by_label("File (PDF, PNG or JPEG)").set_input_files(lying)
    panel.get_by_role("button", name="Attach").click()
    expect(page.get_by_role("alert").filter(has_text="claims to be a PDF but its content is a PNG image")
           ).to_be_visible()
    panel.get_by_label("File (PDF, PNG or JPEG)").set_input_files(certificate)
    panel.get_by_label("Note (optional)").fill("From the supplier's portal")
    panel.get_by_role("button", name="Attach").click()
    expect(page.get_by_role("alert").filter(has_text=f"{certificate.name} attached")).to_be_visible()
    with page.expect_download() as download:
        panel.get_by_role("link", name=certificate.name).click()
    assert download.value.suggested_filename == certificate.name
    assert Path(download.value.path()).read_bytes() == certificate.read_bytes()

    login(page, "pharmacist")
    page.goto(f"/lots/{lot_id}")
    expect(page.locator(".lot-certificate")).to_have_text(certificate.name)
    expect(page.locator("#release-reason")).to_have_count(0)
    page.wait_for_load_state("load")
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#release-password").fill("meso-demo-2026")
    page.get_by_role("button", name="Release lot").click()
    expect(page.get_by_role("alert").filter(has_text=f"{code} released")).to_be_visible()
    assert live_server.scalar(sa.select(Lot.status).where(Lot.id == lot_id)) == "released"
    assert live_server.scalar(sa.select(sa.func.count()).select_from(Document).where(
        Document.entity_type == "lot", Document.entity_id == lot_id)) == 1
