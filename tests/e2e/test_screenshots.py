"""The README's screenshots, taken from the seeded demo at 1280 × 800 (see save_screenshot)."""

import sqlalchemy as sa
from playwright.sync_api import expect
from testkit import VIEWPORT, login, save_screenshot

from compounding.models import Patient


def test_the_main_screens_render_for_the_readme(page, live_server):
    batch_id, code = live_server.released_batch("LIPO-PCDC", 2)
    recall_batch, _ = live_server.released_batch()
    live_server.treat(live_server.patient("CH-2041", "Elena Petrova"), _, "2.5")
    recall_id = live_server.recall(recall_batch, "Particles seen in the retained vial")
    patient = live_server.scalar(sa.select(Patient.id).where(Patient.chart_number == "CH-1005"))
    assert page.viewport_size == VIEWPORT

    login(page, "pharmacist")
    shots = {
        "dashboard-pharmacist": ("/", "h1"),
        "lots": ("/lots/", "table"),
        "batch": (f"/batches/{batch_id}", "h1 .code"),
        "compound": ("/batches/new?formula_id=1&units=4", "#compound-form"),
        "label": (f"/batches/{batch_id}/label", ".label"),
        "scan": (f"/scan/?code={code}", "#scan-result"),
        "recall": (f"/recalls/{recall_id}", "h1"),
    }
    for name, (path, ready) in shots.items():
        page.goto(path)
        expect(page.locator(ready).first).to_be_visible()
        if name == "compound":  # each proposed container scanned, as at the bench
            for scan in page.locator("tr:has(input[name$='-quantity']:not([value=''])) input.scan-confirm").all():
                scan.fill(scan.locator("xpath=ancestor::tr/td[1]").inner_text().split()[0])
        assert save_screenshot(page, name).stat().st_size > 10_000

    page.goto(f"/treatments/patients/{patient}/sessions/new")
    field = page.get_by_label("Vial code, use 1", exact=True)
    field.press_sequentially(code)
    field.press("Enter")
    page.keyboard.type("4")
    page.get_by_label("Injection area, use 1", exact=True).fill("submental")
    page.get_by_label("Indication / treated area", exact=True).fill("submental fat")
    assert save_screenshot(page, "session").stat().st_size > 10_000
