"""Camera scanning: the vendored zxing-wasm decoder, under the real CSP, fed by a stand-in camera."""

import json

import sqlalchemy as sa
from playwright.sync_api import expect
from testkit import login

from compounding.models import Patient

NO_CAMERA_API = "Object.defineProperty(Navigator.prototype, 'mediaDevices', {get: () => undefined});"
REFUSED_CAMERA = ("navigator.mediaDevices.getUserMedia = () => "
                  "Promise.reject(new DOMException('Permission denied', 'NotAllowedError'));")


# getUserMedia answers a live canvas stream showing an image: a vial held up to the camera.
CAMERA_SHOWING = """
    navigator.mediaDevices.getUserMedia = async () => {
        const image = new Image();
        image.src = IMAGE_URL;
        await image.decode();
        const canvas = document.createElement("canvas");
        canvas.width = 640;
        canvas.height = 360;
        const context = canvas.getContext("2d");
        const paint = () => {
            context.fillStyle = "#fff";
            context.fillRect(0, 0, canvas.width, canvas.height);
            context.drawImage(image, 60, 100, 520, 160);
        };
        paint();
        setInterval(paint, 100);
        return canvas.captureStream(10);
    };
"""


def camera_showing(image_url: str) -> str:
    return CAMERA_SHOWING.replace("IMAGE_URL", json.dumps(image_url))


def test_the_camera_button_shows_only_with_a_camera_api_and_a_refusal_gives_the_field_back(
        page, new_context, live_server):
    login(page, "practitioner")
    page.add_init_script(REFUSED_CAMERA)
    page.goto("/scan/")
    button = page.get_by_role("button", name="Use camera")
    expect(button).to_be_visible()
    button.click()
    expect(page.get_by_label("Scan or type a vial, batch, lot or supplier code, then Enter")).to_be_focused()
    expect(button).to_have_text("Use camera")
    expect(page.locator("#camera-preview")).to_be_hidden()
    assert "code=" not in page.url

    bare = new_context().new_page()
    bare.add_init_script(NO_CAMERA_API)
    login(bare, "practitioner")
    patient = live_server.scalar(sa.select(Patient.id).where(Patient.chart_number == "CH-1002"))
    for path in ("/scan/", f"/treatments/patients/{patient}/sessions/new"):
        bare.goto(path)
        assert bare.evaluate("navigator.mediaDevices") is None
        expect(bare.get_by_role("button", name="Use camera")).to_be_hidden()
        expect(bare.locator("button[data-camera-for]")).to_have_count(1)


def test_the_camera_reads_a_vial_at_the_scan_station_as_a_scanner_would(page, live_server):
    batch_id, code = live_server.released_batch()
    login(page, "practitioner")
    page.add_init_script(camera_showing(f"/api/v1/batches/{batch_id}/barcode.svg"))
    page.goto("/scan/")
    page.get_by_role("button", name="Use camera").click()
    card = page.locator("#scan-result")
    expect(card).to_have_attribute("data-kind", "batch", timeout=10_000)
    expect(card.locator(".card-header")).to_contain_text(f"USABLE · batch {code}")
    # The decoder and its .wasm came from /static under script-src 'self' 'wasm-unsafe-eval'
    # (the page fixture fails the test on any CSP report).
    assert f"code={code}" in page.url


def test_the_camera_fills_the_sessions_batch_field_and_moves_on_to_the_volume(page, live_server):
    batch_id, code = live_server.released_batch()
    patient = live_server.scalar(sa.select(Patient.id).where(Patient.chart_number == "CH-1002"))
    login(page, "practitioner")
    page.add_init_script(camera_showing(f"/api/v1/batches/{batch_id}/barcode.svg"))
    page.goto(f"/treatments/patients/{patient}/sessions/new")
    page.get_by_label("Vial code, use 2", exact=True).focus()  # the row the practitioner is on
    page.get_by_role("button", name="Use camera").click()
    expect(page.get_by_label("Vial code, use 2", exact=True)).to_have_value(code, timeout=10_000)
    expect(page.get_by_label("Volume in mL, use 2", exact=True)).to_be_focused()
    expect(page.locator("#camera-preview")).to_be_hidden()
    assert "/sessions/new" in page.url
    assert page.evaluate("typeof window.ZXingWASM.readBarcodes") == "function"
