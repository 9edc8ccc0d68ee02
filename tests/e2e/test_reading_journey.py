"""A fridge reading on the tablet by the fridge: scan the label, type the temperature, see it in range."""

import sqlalchemy as sa
from playwright.sync_api import expect
from testkit import login

from compounding.models import Location, TemperatureReading

TABLET = {"width": 768, "height": 1024}


def _no_sideways_scroll(page) -> None:
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), page.evaluate(
        "[document.documentElement.scrollWidth, window.innerWidth]")


def test_a_reading_scanned_and_typed_on_the_tablet_is_confirmed_in_range(page, live_server, tmp_path):
    code = live_server.scalar(sa.select(Location.code).where(Location.name == "Fridge 1"))  # LYON's, LOC0003
    before = live_server.scalar(sa.select(sa.func.count(TemperatureReading.id)))
    page.set_viewport_size(TABLET)
    login(page, "lyon")
    page.goto("/cold-chain/read")
    scan = page.get_by_label("Scan the fridge's label")
    expect(scan).to_be_focused()
    scan.press_sequentially(code)  # a keyboard-wedge scanner types the code, then Enter
    scan.press("Enter")
    expect(page.locator("#reading-location")).to_contain_text("2 to 8 °C")
    current = page.get_by_label("Current temperature (°C)")
    expect(current).to_be_focused()
    _no_sideways_scroll(page)
    page.screenshot(path=tmp_path / "reading-form-768.png", full_page=True)
    current.fill("4,7")
    page.get_by_role("button", name="Save the reading").click()
    outcome = page.locator("#reading-outcome")
    expect(outcome).to_contain_text("In range")
    expect(outcome).to_contain_text("4.7 °C")
    expect(page.get_by_label("Scan the fridge's label")).to_be_focused()  # ready for the next fridge
    assert live_server.scalar(sa.select(sa.func.count(TemperatureReading.id))) == before + 1
    _no_sideways_scroll(page)
    page.screenshot(path=tmp_path / "reading-done-768.png", full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    _no_sideways_scroll(page)
    page.screenshot(path=tmp_path / "reading-done-390.png", full_page=True)
    page.goto(page.url.split("/cold-chain")[0] + "/cold-chain")
    expect(page.locator(f'tr[data-location="{code}"]')).to_contain_text("in range")
    page.screenshot(path=tmp_path / "overview-390.png", full_page=True)
    print(f"screenshots in {tmp_path}")
