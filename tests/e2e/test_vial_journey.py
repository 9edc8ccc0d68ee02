"""Every vial its own code, in a real browser: compound three vials, print and decode their labels,
use vial 2 in a session, see it refused when scanned again, and trace the batch to the patient."""

import io
import re

import sqlalchemy as sa
import zxingcpp
from PIL import Image
from playwright.sync_api import expect
from testkit import login, save_screenshot

from compounding.demo import DEMO_PASSWORD
from compounding.models import Batch, SessionUse, Vial

PT_PER_MM = 72 / 25.4


def _compound_three_vials(page) -> tuple[str, str]:
    """At the bench, as the technician: LIPO-PCDC, 3 units, each proposed container scanned. Answers (url, code)."""
    login(page, "technician")
    page.goto("/batches/new")
    formula = page.get_by_label("Formula (approved versions)", exact=True)
    formula.select_option(formula.locator("option", has_text="LIPO-PCDC v").first.get_attribute("value"))
    page.get_by_label("Units", exact=True).fill("3")
    page.get_by_role("button", name="Propose lots (FEFO)").click()
    expect(page.locator("#compound-form")).to_be_visible()
    for row in page.locator("#compound-form tbody tr").all():
        quantity = row.locator("input[name$='-quantity']")
        if not quantity.count() or not quantity.input_value():
            continue
        scan = row.locator("input.scan-confirm")
        scan.press_sequentially(row.locator("td.code").first.inner_text().split()[0])
        scan.press("Enter")
    # MAIN's bench equipment: the balance and the hood, ticked.
    for code in ("BAL-01", "HOOD-01"):
        page.locator(f"#equipment-used input[data-code='{code}']").check()
    page.get_by_role("button", name="Save batch (consume the lots)").click()
    expect(page.get_by_role("alert").filter(has_text="awaiting verification")).to_be_visible()
    return page.url, page.locator("h1 .code").inner_text()


def _verify(page, batch_url: str, code: str) -> None:
    login(page, "pharmacist2")
    page.goto(batch_url)
    page.locator("#verify-password").fill(DEMO_PASSWORD)
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Verify and release").click()
    expect(page.get_by_role("alert").filter(has_text=f"{code} verified and released")).to_be_visible()


def _printed_codes(new_context, batch_id: int) -> list[str]:
    """Each label of the print dialog as the printer gets it (print media, 4 device pixels per CSS px), decoded."""
    sharp = new_context(device_scale_factor=4).new_page()
    login(sharp, "pharmacist")
    sharp.emulate_media(media="print")
    sharp.goto(f"/batches/{batch_id}/label")
    decoded = []
    for label in sharp.locator(".label").all():
        results = zxingcpp.read_barcodes(Image.open(io.BytesIO(label.screenshot())))
        assert [r.format for r in results] == [zxingcpp.BarcodeFormat.Code128]
        decoded.append(results[0].text)
    return decoded


def test_three_vials_are_labelled_one_is_used_scanned_again_refused_and_traced_to_its_patient(
        page, new_context, live_server):
    batch_url, code = _compound_three_vials(page)
    batch_id = int(re.search(r"/batches/(\d+)", batch_url).group(1))
    _verify(page, batch_url, code)
    vials = [f"{code}-01", f"{code}-02", f"{code}-03"]
    expect(page.locator("table").filter(has_text=vials[2]).first).to_be_visible()  # the batch page lists them

    # One label per vial in the print dialog, one 50 x 30 mm page each; each barcode decodes to its vial.
    page.goto(f"/batches/{batch_id}/label")
    pdf = page.pdf(prefer_css_page_size=True, print_background=True)
    boxes = re.findall(rb"/MediaBox\s*\[\s*0 0 ([\d.]+) ([\d.]+)\s*\]", pdf)
    assert len(boxes) == 3, f"one page per vial: {boxes}"
    assert {(round(float(w) / PT_PER_MM), round(float(h) / PT_PER_MM)) for w, h in boxes} == {(50, 30)}
    assert _printed_codes(new_context, batch_id) == vials

    # Vial 2, scanned at the station, goes into a session of patient CH-1004.
    login(page, "practitioner")
    page.goto("/scan/")
    field = page.get_by_label(re.compile("Scan or type"))
    field.fill(vials[1])
    field.press("Enter")
    card = page.locator("#scan-result")
    expect(card).to_have_attribute("data-kind", "vial")
    expect(card).to_have_attribute("data-usable", "yes")
    page.get_by_role("link", name="Record a session with this vial").click()
    page.get_by_role("link", name="CH-1004").click()
    expect(page.get_by_label("Vial code, use 1", exact=True)).to_have_value(vials[1])
    page.get_by_label("Volume in mL, use 1", exact=True).fill("2")
    page.get_by_label("Injection area, use 1", exact=True).fill("abdomen")
    page.get_by_role("button", name="Save session").click()
    expect(page.get_by_role("alert").filter(has_text=vials[1])).to_be_visible()
    used = live_server.execute(sa.select(Vial.code, Vial.status, Vial.remaining_ml).join(
        SessionUse, SessionUse.vial_id == Vial.id).join(Batch, Batch.id == Vial.batch_id).where(Batch.id == batch_id))
    assert [(c, s, float(r)) for c, s, r in used] == [(vials[1], "spent", 0.0)]

    # Scanned again: DO NOT USE, spent; typed into another session: refused on the form, nothing saved.
    page.goto("/scan/")
    field = page.get_by_label(re.compile("Scan or type"))
    field.fill(vials[1])
    field.press("Enter")
    expect(card).to_have_attribute("data-usable", "no")
    expect(card.locator(".card-header")).to_contain_text("DO NOT USE")
    expect(card).to_contain_text("spent")
    save_screenshot(page, "vial-spent-scan")
    page.goto("/treatments/patients")
    page.get_by_role("link", name="CH-1003").click()
    page.get_by_role("link", name="Record a treatment session").click()
    page.get_by_label("Vial code, use 1", exact=True).fill(vials[1])
    page.get_by_label("Volume in mL, use 1", exact=True).fill("1")
    page.get_by_role("button", name="Save session").click()
    expect(page.locator(".use-row.refused")).to_contain_text("spent")
    assert len(live_server.execute(sa.select(SessionUse.id).join(Vial, Vial.id == SessionUse.vial_id)
                                   .where(Vial.batch_id == batch_id))) == 1

    # The trace goes down to the vial: vial 2 -> CH-1004; vials 1 and 3 still sealed.
    login(page, "pharmacist")
    page.goto(f"/trace/batches/{batch_id}")
    row = page.locator("tr", has=page.locator("td", has_text=re.compile(f"^{re.escape(vials[1])}$")))
    expect(row.first).to_contain_text("CH-1004")
    expect(row.first).to_contain_text("spent")
    for sealed in (vials[0], vials[2]):
        expect(page.locator("tr", has=page.locator("td", has_text=re.compile(f"^{re.escape(sealed)}$")))
               .first).to_contain_text("sealed")
    page.set_viewport_size({"width": 1280, "height": 1200})  # down to the vials table
    save_screenshot(page, "vial-trace")
