"""Transfer pages: list per site, a draft from scanned codes, dispatch by scanning, receipt, the delivery note."""

import re

import pytest
import sqlalchemy as sa
from sitekit import add_site
from testkit import QueryCounter, sign_in
from vialkit import vials_of

from compounding.extensions import db
from compounding.models import Transfer, TransferLine
from compounding.services import transfers
from compounding.services.sites import main_site


@pytest.fixture
def lyon(app):
    return add_site("LYON")


@pytest.fixture
def hub(make_user, lyon):
    return make_user("pharmacist", username="hub")


def test_a_pharmacist_drafts_a_transfer_from_scanned_codes(client, make_batch, hub, lyon):
    batch = make_batch(units=2)
    sign_in(client, hub)
    page = client.get("/transfers/new")
    assert page.status_code == 200 and "LYON" in page.get_data(as_text=True)
    answer = client.post("/transfers/new", data={"from_site_id": main_site().id, "to_site_id": lyon.id,
                                                 "codes": f"{batch.code}\n", "note": "boxes"})
    assert answer.status_code == 302, answer.get_data(as_text=True)[:2000]
    transfer = db.session.scalar(sa.select(Transfer))
    assert db.session.scalar(sa.select(sa.func.count(TransferLine.id))) == 2
    detail = client.get(f"/transfers/{transfer.id}").get_data(as_text=True)
    assert all(v.code in detail for v in vials_of(batch)) and 'id="dispatch-button"' in detail


def test_a_draft_with_a_held_item_shows_the_refusal_on_the_form(client, make_batch, hub, lyon):
    sign_in(client, hub)
    answer = client.post("/transfers/new", data={"from_site_id": main_site().id, "to_site_id": main_site().id,
                                                 "codes": vials_of(make_batch(units=1))[0].code})
    assert answer.status_code == 422 and "another site" in answer.get_data(as_text=True)


def test_dispatch_needs_every_line_scanned_then_lyon_receives_with_one_damaged(client, make_batch, make_user,
                                                                              hub, lyon):
    vials = vials_of(make_batch(units=2))
    transfer = transfers.create_transfer(hub, main_site().id, lyon.id, [{"vial_code": v.code} for v in vials])
    sign_in(client, hub)
    half = client.post(f"/transfers/{transfer.id}/dispatch", data={"scanned_codes": vials[0].code})
    assert half.status_code == 422 and f"not scanned: {vials[1].code}" in half.get_data(as_text=True)
    sent = client.post(f"/transfers/{transfer.id}/dispatch",
                       data={"scanned_codes": "\n".join(v.code for v in vials)}, follow_redirects=True)
    assert sent.status_code == 200 and "In transit" in sent.get_data(as_text=True)
    client.post("/logout")
    sign_in(client, make_user("practitioner", username="lyon-doc", site_codes=["LYON"]))
    lines = [line.id for line in db.session.scalars(sa.select(TransferLine).order_by(TransferLine.id))]
    page = client.get(f"/transfers/{transfer.id}").get_data(as_text=True)
    assert 'id="receive-form"' in page and 'id="dispatch-button"' not in page
    received = client.post(f"/transfers/{transfer.id}/receive", data={
        f"received-{lines[0]}": "1", f"damaged-{lines[0]}": "0",
        f"received-{lines[1]}": "1", f"damaged-{lines[1]}": "1"}, follow_redirects=True)
    text = received.get_data(as_text=True)
    assert received.status_code == 200 and "Received: the counts" in text
    assert re.search(r"sealed at <span class=\"code\">LOC-LYON", text)
    assert re.search(r"discarded at <span class=\"code\">LOC-LYON", text)
    again = client.post(f"/transfers/{transfer.id}/receive", data={f"received-{lines[0]}": "1",
                                                                   f"received-{lines[1]}": "1"})
    assert again.status_code in (409, 422) and "only a dispatched transfer is received" in again.get_data(
        as_text=True)


def test_the_list_shows_only_transfers_of_the_users_sites_in_few_queries(client, make_batch, make_user, hub, lyon):
    vials = vials_of(make_batch(units=5))
    for vial in vials:
        transfers.create_transfer(hub, main_site().id, lyon.id, [{"vial_code": vial.code}])
    add_site("NICE")
    sign_in(client, hub)
    with QueryCounter(db.engine) as counter:
        page = client.get("/transfers/?status=draft")
    assert page.status_code == 200 and page.get_data(as_text=True).count("T0000") == 5
    assert counter.count <= 12
    client.post("/logout")
    sign_in(client, make_user("technician", site_codes=["NICE"]))
    assert "T0000" not in client.get("/transfers/").get_data(as_text=True)
    assert client.get(f"/transfers/{db.session.scalar(sa.select(Transfer.id).limit(1))}").status_code == 404


def test_the_delivery_note_carries_a_barcode_for_the_transfer_and_each_line(client, make_batch, hub, lyon):
    vials = vials_of(make_batch(units=2))
    transfer = transfers.create_transfer(hub, main_site().id, lyon.id, [{"vial_code": v.code} for v in vials])
    sign_in(client, hub)
    note = client.get(f"/transfers/{transfer.id}/note").get_data(as_text=True)
    for code in (transfer.code, *(v.code for v in vials)):
        assert f'aria-label="Barcode {code}"' in note
