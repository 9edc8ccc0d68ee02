"""A clinic chain in a real browser: the hub sends three vials to LYON by scanning them out; LYON cannot
use them on the road, receives two and one damaged, and uses one in a session; the pages say where each is."""

import re

import sqlalchemy as sa
from playwright.sync_api import expect
from testkit import login, save_screenshot

from compounding.extensions import db
from compounding.models import Location, Site, TreatmentSession, Vial
from compounding.services import treatments, users

LYON_PASSWORD = "Rhone-Saone-confluence-1893"


def _lyon(live_server) -> tuple[int, int, str]:
    """Site LYON (the demo's, or made here) with a practitioner who works there only, and a patient:
    (patient id, site id, the code of LYON's default location where transfers arrive)."""
    with live_server.app.app_context():
        site = db.session.scalar(sa.select(Site).where(Site.code == "LYON"))
        if site is None:
            site = Site(code="LYON", name="Lyon clinic", timezone="Europe/Paris", address="")
            db.session.add(site)
            db.session.flush()
            db.session.add(Location(site_id=site.id, code="LOC-LYON", name="Lyon store", kind="room",
                                    is_default=True))
            db.session.commit()
        if not db.session.scalar(sa.select(users.User.id).where(users.User.username == "lyon-doc")):
            users.create_user(None, username="lyon-doc", display_name="Dr Lea Martin", role="practitioner",
                              password=LYON_PASSWORD, site_codes=["LYON"])
        doctor = db.session.scalar(sa.select(users.User).where(users.User.username == "lyon-doc"))
        patient = treatments.create_patient(doctor, {"chart_number": "LY-0001", "name": "Lyon Patient"})
        store = db.session.scalar(sa.select(Location.code).where(Location.site_id == site.id, Location.is_default))
        return patient.id, site.id, store


def _session_with(page, patient_id: int, vial: str):
    page.goto(f"/treatments/patients/{patient_id}/sessions/new")
    page.get_by_label("Vial code, use 1", exact=True).fill(vial)
    page.get_by_label("Volume in mL, use 1", exact=True).fill("1")
    page.get_by_role("button", name="Save session").click()


def test_the_hub_sends_three_vials_to_lyon_which_uses_one_only_after_receiving_them(page, live_server):
    batch_id, code = live_server.released_batch(units=3)
    vials = [f"{code}-01", f"{code}-02", f"{code}-03"]
    patient_id, lyon_id, store = _lyon(live_server)

    # The hub pharmacist drafts the transfer by scanning the batch, then scans each vial out.
    login(page, "pharmacist")
    page.goto("/transfers/new")
    page.get_by_label("To site").select_option(str(lyon_id))
    page.get_by_label("Codes").fill(code)
    page.get_by_role("button", name="Draft the transfer").click()
    expect(page.get_by_role("alert").filter(has_text="drafted")).to_be_visible()
    transfer_code = page.locator("h1 .code").inner_text()
    transfer_url = page.url
    dispatch = page.get_by_role("button", name="Dispatch")
    expect(dispatch).to_be_disabled()
    scan = page.get_by_label("Scan each line's code")
    for vial in vials:
        scan.press_sequentially(vial)
        scan.press("Enter")
    expect(page.locator("#scan-out-status")).to_have_text("3 of 3 lines scanned")
    expect(dispatch).to_be_enabled()
    dispatch.click()
    expect(page.get_by_role("alert").filter(has_text="in transit")).to_be_visible()
    # The trace says where the three are: on the road.
    page.goto(f"/trace/batches/{batch_id}")
    for vial in vials:
        expect(page.locator("#vials tr", has_text=vial)).to_contain_text(f"in transit on {transfer_code}")

    # In LYON, before receipt: the vial is refused, naming the transfer it travels on.
    login(page, "lyon-doc", LYON_PASSWORD)
    _session_with(page, patient_id, vials[0])
    expect(page.locator(".use-row.refused")).to_contain_text(f"in transit on {transfer_code}")

    # Received: two as sent, the third damaged.
    page.goto(transfer_url)
    page.get_by_label(f"Damaged of {vials[2]}").fill("1")
    save_screenshot(page, "transfer-receive")
    page.get_by_role("button", name="Receive").click()
    expect(page.get_by_role("alert").filter(has_text="Received")).to_be_visible()
    lines = page.locator("#transfer-lines")
    for vial, place in ((vials[0], f"sealed at {store}"), (vials[1], f"sealed at {store}"),
                        (vials[2], f"discarded at {store}")):
        expect(lines.locator("tr", has_text=vial)).to_contain_text(place)

    # Now usable there: one goes into a session at LYON.
    _session_with(page, patient_id, vials[0])
    expect(page.get_by_role("alert").filter(has_text=vials[0])).to_be_visible()
    sites = live_server.execute(sa.select(TreatmentSession.site_id).where(TreatmentSession.patient_id == patient_id))
    assert sites == [(lyon_id,)]

    # Each vial's page and the transfer page say where the three are now.
    login(page, "pharmacist")
    for vial, status in ((vials[0], "spent"), (vials[1], "sealed"), (vials[2], "discarded")):
        page.goto(f"/batches/vials/{vial}")
        expect(page.locator("main")).to_contain_text(re.compile(status, re.IGNORECASE))
    places = dict(live_server.execute(sa.select(Vial.code, Vial.site_id).where(Vial.batch_id == batch_id)))
    assert places == {vials[0]: lyon_id, vials[1]: lyon_id, vials[2]: lyon_id}
    page.goto(f"/trace/batches/{batch_id}")  # the trace: all three at LYON now, one spent, one discarded
    for vial, status in ((vials[0], "spent"), (vials[1], "sealed"), (vials[2], "discarded")):
        row = page.locator("#vials tr", has_text=vial)
        expect(row).to_contain_text(f"LYON · {store}")
        expect(row).to_contain_text(status)
    page.goto(transfer_url)
    expect(page.locator("#transfer-lines tr", has_text=vials[0])).to_contain_text(f"spent at {store}")
    save_screenshot(page, "transfer-received")
