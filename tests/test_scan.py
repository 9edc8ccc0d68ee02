"""Scanning: the scan station, the scan API, receiving by scan and the scanner set-up page."""

import re
from datetime import date
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from markupsafe import escape

from compounding.errors import NUL_MESSAGE
from compounding.extensions import db
from compounding.gs1 import GS
from compounding.models import Lot
from compounding.services import batches
from compounding.services.errors import InvalidInput

GTIN = "05012345000015"


@pytest.fixture
def supplier_lot(make_ingredient, make_lot):
    ingredient = make_ingredient(name="Biotin", gtins=[GTIN])
    return make_lot(ingredient, supplier_lot_number="BT-3310", gtin=GTIN, expires_on=date(2031, 1, 31))


def gs1(lot_number="BT-3310", expiry="310131", prefix="]C1", sep=GS):
    return f"{prefix}01{GTIN}17{expiry}10{lot_number}{sep}21SER1"


def test_a_released_batch_scans_green_with_its_bud_and_volume(client, as_role, make_batch):
    batch = make_batch()
    as_role("practitioner")
    page = client.get(f"/scan/?code={batch.code}").get_data(as_text=True)
    assert 'data-kind="batch" data-usable="yes"' in page and "USABLE" in page
    assert "20 of 20 mL" in page


def test_an_unreleased_batch_scans_red_with_every_reason(client, as_role, make_batch):
    batch = make_batch(release=False)
    as_role("practitioner")
    page = client.get(f"/scan/?code={batch.code.lower()}").get_data(as_text=True)
    assert 'data-usable="no"' in page and "DO NOT USE" in page and "not released" in page


def test_a_lot_scans_with_its_status_and_expiry(client, as_role, supplier_lot):
    as_role("technician")
    page = client.get(f"/scan/?code={supplier_lot.code}").get_data(as_text=True)
    assert 'data-kind="lot" data-usable="yes"' in page and "2031-01-31" in page


def test_a_supplier_barcode_finds_the_received_lot(client, as_role, supplier_lot):
    as_role("technician")
    page = client.get("/scan/?code=" + quote(gs1())).get_data(as_text=True)
    assert 'data-kind="gs1"' in page and supplier_lot.code in page


def test_a_new_supplier_lot_offers_a_prefilled_receipt(client, as_role, supplier_lot):
    as_role("technician")
    page = client.get("/scan/?code=" + quote(gs1(lot_number="BT-9999"))).get_data(as_text=True)
    assert "Receive this lot" in page and "lot_number=BT-9999" in page and "expiry_date=2031-01-31" in page


def test_receiving_by_scan_fills_ingredient_lot_number_and_expiry(client, as_role, supplier_lot):
    as_role("technician")
    page = client.get("/lots/receive?scan=" + quote(gs1(lot_number="BT-4242", expiry="301100"))).get_data(as_text=True)
    assert 'value="BT-4242"' in page and 'value="2030-11-30"' in page
    assert f'<option selected value="{supplier_lot.ingredient_id}">' in page


def test_receiving_by_scan_with_a_bad_barcode_says_why(client, as_role, supplier_lot):
    as_role("technician")
    page = client.get("/lots/receive?scan=" + quote(f"01{GTIN}17261332")).get_data(as_text=True)
    assert "Impossible date" in page


def test_the_scan_api_answers_the_design_shape_for_each_kind(client, make_user, make_batch, supplier_lot):
    from compounding.services.users import create_token

    token = create_token(None, make_user("practitioner"), "test")
    headers = {"Authorization": f"Bearer {token}"}
    batch = make_batch()
    answer = client.get(f"/api/v1/scan?code={batch.code}", headers=headers).json
    assert answer["kind"] == "batch" and answer["usable"] is True and answer["reasons"] == []
    assert answer["code"] == batch.code and answer["remaining_volume_ml"] == "20"
    answer = client.get("/api/v1/scan?code=" + quote(gs1()), headers=headers).json
    assert answer["kind"] == "gs1" and answer["gtin"] == GTIN and answer["lot_number"] == "BT-3310"
    assert answer["expiry_date"] == "2031-01-31" and answer["serial"] == "SER1"
    assert answer["lot"]["code"] == supplier_lot.code
    answer = client.get("/api/v1/scan?code=hello", headers=headers).json
    assert answer == {"kind": "unknown", "usable": False, "reasons": ["unknown code"], "received": "hello"}
    assert client.get("/api/v1/scan", headers=headers).status_code == 422


def test_a_recalled_batch_scanned_over_the_api_is_not_usable(client, make_user, make_batch):
    from compounding.services.users import create_token

    batch = make_batch()
    batch.status = "recalled"
    db.session.commit()
    token = create_token(None, make_user("auditor"), "test")
    answer = client.get(f"/api/v1/scan?code={batch.code}", headers={"Authorization": f"Bearer {token}"}).json
    assert answer["usable"] is False and "recalled" in answer["reasons"][0]


NOT_GS1 = "unknown code"
NO_GTIN = "no ingredient has this GTIN"
PREFIX_ONLY = "Only a symbology prefix or separators were received, no data."
TOO_LONG = "This is far too long to be a GS1 barcode."
EMPTY_HRI = ("Not a valid GS1 human-readable string: Could not find any GS1 Application Identifiers in '(01)'. "
             "Expected format: '(AI)DATA(AI)DATA'.")
NO_PRIMARY = "Expected a primary identifier in the path, got '/x'."
# Each junk scan and its one answer. A scan resolves anything to a card and never raises: a code
# that is not ours and does not look like GS1 is an "unknown code"; one that looks like GS1 but
# does not parse is unknown with the parser's reason, shown on the card; a GS1 code of a GTIN
# we do not stock is a supplier barcode with no ingredient. A blank scan shows no card.
JUNK = [
    # (junk, the page's card (None: no card), the API's one reason, the reason the card shows in red)
    pytest.param(" ", None, NOT_GS1, None, id="blank"),
    pytest.param("\x1d\x1d\x1d", "unknown", NOT_GS1, None, id="separators"),
    pytest.param("\x01\x02\x03", "unknown", NOT_GS1, None, id="control-characters"),
    pytest.param("9" * 5000, "unknown", TOO_LONG, TOO_LONG, id="5000-digits"),
    pytest.param("<script>alert(1)</script>", "unknown", NOT_GS1, None, id="markup"),
    pytest.param(f"01{GTIN}10AB", "gs1", NO_GTIN, None, id="gs1-of-an-unknown-gtin"),
    pytest.param("]C1", "unknown", PREFIX_ONLY, PREFIX_ONLY, id="code128-prefix-only"),
    pytest.param("]d2", "unknown", PREFIX_ONLY, PREFIX_ONLY, id="datamatrix-prefix-only"),
    pytest.param("]", "unknown", NOT_GS1, None, id="bracket"),
    pytest.param("]0", "unknown", NOT_GS1, None, id="bracket-zero"),
    pytest.param("(01)", "unknown", EMPTY_HRI, EMPTY_HRI, id="empty-human-readable"),
    pytest.param("https://example.org/x", "unknown", NO_PRIMARY, NO_PRIMARY, id="digital-link-without-gtin"),
    pytest.param("B26112700", "unknown", NOT_GS1, None, id="batch-code-of-no-batch"),
    pytest.param("L12", "unknown", NOT_GS1, None, id="lot-code-of-no-lot"),
]


@pytest.mark.parametrize(("junk", "card", "reason", "shown_error"), JUNK)
def test_junk_gets_its_one_answer_and_never_a_server_error(client, as_role, junk, card, reason, shown_error):
    as_role("practitioner")
    page = client.get("/scan/?code=" + quote(junk))
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "<script>alert(1)</script>" not in html
    cards = re.findall(r'id="scan-result" data-kind="(\w+)" data-usable="(\w+)"', html)
    assert cards == ([] if card is None else [(card, "no")])
    errors = re.findall(r'<p class="text-danger">(.*?)</p>', html)
    assert errors == ([] if shown_error is None else [str(escape(shown_error))])
    if card == "gs1":
        assert f"This lot has not been received, and {NO_GTIN}." in html
    api = client.get("/api/v1/scan?code=" + quote(junk))
    assert api.status_code == 200
    answer = api.get_json()
    api_kind = "unknown" if card is None else card  # a blank scan has no card, and is unknown to the API
    assert (answer["kind"], answer["usable"], answer["reasons"]) == (api_kind, False, [reason])
    assert answer.get("error") == shown_error


def test_a_nul_in_a_scan_is_refused_before_any_lookup(client, as_role):
    as_role("practitioner")
    page = client.get("/scan/?code=" + quote("\u202e\u0000"))
    assert page.status_code == 400 and NUL_MESSAGE in page.get_data(as_text=True)
    api = client.get("/api/v1/scan?code=" + quote("\u202e\u0000"))
    assert api.status_code == 422
    assert api.get_json() == {"error": NUL_MESSAGE, "details": {"code": [NUL_MESSAGE]}}


def test_unknown_codes_show_the_characters_received_with_control_characters_visible(client, as_role):
    as_role("practitioner")
    page = client.get("/scan/?code=" + quote("ABC\x1dDEF")).get_data(as_text=True)
    assert "Unknown code" in page and "ABC&lt;GS&gt;DEF" in page


def test_the_station_remembers_the_last_scans(client, as_role, make_batch, supplier_lot):
    batch = make_batch()
    as_role("practitioner")
    client.get(f"/scan/?code={batch.code}")
    client.get(f"/scan/?code={supplier_lot.code}")
    recent = client.get("/scan/").get_data(as_text=True).split('id="recent-scans"')[1]
    assert recent.index(supplier_lot.code) < recent.index(batch.code)


def test_the_setup_page_shows_the_separator_and_suggests_the_setting(client, as_role):
    as_role("technician")
    page = client.get("/scan/setup?test=" + quote(f"]C101{GTIN}10AB|17310131")).get_data(as_text=True)
    assert "&lt;GS&gt;" not in page and "GS1_SEPARATOR=|" in page
    page = client.get("/scan/setup?test=" + quote(f"01{GTIN}10AB\x1d17310131")).get_data(as_text=True)
    assert "&lt;GS&gt;" in page and "leave GS1_SEPARATOR empty" in page


@pytest.mark.parametrize("config_overrides", [{"GS1_SEPARATOR": "|"}], indirect=True)
def test_the_configured_substitute_separator_is_used_when_scanning(client, as_role, supplier_lot):
    as_role("technician")
    page = client.get("/scan/?code=" + quote(gs1(sep="|"))).get_data(as_text=True)
    assert supplier_lot.code in page


def test_a_bench_scan_of_another_eligible_lot_is_refused_with_an_offer(technician, make_ingredient, make_lot,
                                                                       make_formula):
    biotin = make_ingredient(name="Biotin")
    saline = make_ingredient(name="Saline", kind="diluent")
    make_formula([(biotin, "1"), (saline, "4")], unit_volume_ml="5")
    first = make_lot(biotin, expires_on=date(2030, 1, 31))
    second = make_lot(biotin, expires_on=date(2031, 1, 31))
    make_lot(saline)
    with pytest.raises(InvalidInput) as caught:
        batches.check_scans({first.id: first.code}, {first.id: second.code})
    assert "another eligible lot of Biotin" in caught.value.message and first.code in caught.value.message
    second.status = "quarantine"
    db.session.commit()
    with pytest.raises(InvalidInput) as caught:
        batches.check_scans({first.id: first.code}, {first.id: second.code})
    assert "not eligible" in caught.value.message
    assert db.session.scalar(sa.select(sa.func.count(Lot.id))) == 3


def test_the_bench_accepts_the_suppliers_gs1_barcode_for_the_allocated_lot(supplier_lot):
    assert batches.check_scans({supplier_lot.id: supplier_lot.code}, {supplier_lot.id: gs1()}) == {supplier_lot.id}
    with pytest.raises(InvalidInput) as caught:
        batches.check_scans({supplier_lot.id: supplier_lot.code}, {supplier_lot.id: gs1(lot_number="ZZ-1")})
    # The refusal names the part of the barcode that differs.
    assert "lot (10) ZZ-1 is not the lot's BT-3310" in caught.value.message


def test_a_usable_batch_scanned_at_the_station_leads_to_a_session_form_with_it(client, as_role, make_batch,
                                                                               make_patient):
    batch = make_batch()
    patient = make_patient()
    as_role("practitioner")
    page = client.get(f"/scan/?code={batch.code}").get_data(as_text=True)
    assert f"/treatments/patients?batch_code={batch.code}" in page and f"/trace/batches/{batch.id}" in page
    listing = client.get(f"/treatments/patients?batch_code={batch.code}").get_data(as_text=True)
    link = f"/treatments/patients/{patient.id}/sessions/new?batch_code={batch.code}"
    assert link in listing
    assert f'value="{batch.code}"' in client.get(link).get_data(as_text=True)
