"""Supplier barcodes are checked against the record."""

from datetime import date
from urllib.parse import quote

import pytest
from testkit import bearer

from compounding.extensions import db
from compounding.gs1 import GS
from compounding.services import batches, users
from compounding.services.errors import InvalidInput
from compounding.services.scan import resolve

GTIN = "05012345000015"
OTHER_GTIN = "05012345000022"


@pytest.fixture
def biotin_lot(make_ingredient, make_lot):
    ingredient = make_ingredient(name="Biotin", gtins=[GTIN])
    return make_lot(ingredient, supplier_lot_number="BT-3310", gtin=GTIN, expires_on=date(2027, 8, 3))


def gs1(gtin=GTIN, expiry="270803", lot_number="BT-3310"):
    return f"]C101{gtin}17{expiry}10{lot_number}{GS}21SER1"


def test_a_supplier_barcode_whose_expiry_differs_from_the_record_is_refused_with_both_dates(client, as_role,
                                                                                              biotin_lot):
    result = resolve(gs1(expiry="261201"))
    assert result.lot is not None and result.lot.id == biotin_lot.id and not result.usable
    assert any("2026-12-01" in r and "2027-08-03" in r for r in result.reasons)
    as_role("technician")
    page = client.get("/scan/?code=" + quote(gs1(expiry="261201"))).get_data(as_text=True)
    assert 'data-usable="no"' in page and "text-bg-danger" in page and "DO NOT USE" in page
    assert "2026-12-01" in page and "2027-08-03" in page


def test_the_scan_api_refuses_a_barcode_whose_expiry_differs_from_the_record(client, make_user, biotin_lot):
    headers = bearer(users.create_token(None, make_user("technician"), "test"))
    answer = client.get("/api/v1/scan?code=" + quote(gs1(expiry="261201")), headers=headers).json
    assert answer["kind"] == "gs1" and answer["usable"] is False
    assert any("2026-12-01" in r and "2027-08-03" in r for r in answer["reasons"])
    assert (answer["expiry_date"], answer["lot"]["expiry_date"]) == ("2026-12-01", "2027-08-03")
    assert client.get("/api/v1/scan?code=" + quote(gs1()), headers=headers).json["usable"] is True


def test_a_day_00_expiry_is_the_last_day_of_the_month_when_compared(make_ingredient, make_lot):
    ingredient = make_ingredient(name="Lidocaine", gtins=[OTHER_GTIN])
    make_lot(ingredient, supplier_lot_number="LD-1", gtin=OTHER_GTIN, expires_on=date(2027, 2, 28))
    assert resolve(gs1(gtin=OTHER_GTIN, expiry="270200", lot_number="LD-1")).usable is True


@pytest.mark.parametrize("status", ["recalled", "rejected", "quarantine", "depleted"])
def test_a_gs1_scan_of_an_unusable_lot_answers_the_same_red_do_not_use_as_its_lot_code(client, as_role,
                                                                                      biotin_lot, status):
    biotin_lot.status = status
    db.session.commit()
    by_code, by_gs1 = resolve(biotin_lot.code), resolve(gs1())
    assert not by_gs1.usable and by_gs1.reasons == by_code.reasons and by_gs1.reasons
    as_role("technician")
    page = client.get("/scan/?code=" + quote(gs1())).get_data(as_text=True)
    assert "card-header text-bg-danger" in page and "DO NOT USE" in page
    assert "card-header text-bg-warning" not in page
    assert by_code.reasons[0] in page


def test_a_gs1_scan_of_an_expired_lot_says_do_not_use(client, as_role, biotin_lot):
    biotin_lot.expires_on = date(2020, 1, 31)
    db.session.commit()
    as_role("technician")
    page = client.get("/scan/?code=" + quote(gs1(expiry="200131"))).get_data(as_text=True)
    assert "DO NOT USE" in page and "expired on 2020-01-31" in page


@pytest.mark.parametrize("barcode, part", [
    (gs1(expiry="261201"), "expiry (17) 2026-12-01"),
    (gs1(gtin=OTHER_GTIN), f"GTIN (01) {OTHER_GTIN}"),
    (gs1(lot_number="BT-9999"), "lot (10) BT-9999"),
])
def test_at_the_bench_a_supplier_barcode_must_match_the_allocated_lot_naming_the_part(biotin_lot, barcode,
                                                                                      part):
    with pytest.raises(InvalidInput) as caught:
        batches.check_scans({biotin_lot.id: biotin_lot.code}, {biotin_lot.id: barcode})
    assert part in caught.value.message
    assert batches.check_scans({biotin_lot.id: biotin_lot.code}, {biotin_lot.id: gs1()}) == {biotin_lot.id}


def test_at_the_bench_a_lot_received_without_a_gtin_matches_its_ingredients_gtin(make_ingredient, make_lot):
    ingredient = make_ingredient(name="Minoxidil", gtins=[OTHER_GTIN])
    lot = make_lot(ingredient, supplier_lot_number="MX-1", expires_on=date(2027, 8, 3))
    barcode = gs1(gtin=OTHER_GTIN, lot_number="MX-1")
    assert batches.check_scans({lot.id: lot.code}, {lot.id: barcode}) == {lot.id}
    with pytest.raises(InvalidInput) as caught:
        batches.check_scans({lot.id: lot.code}, {lot.id: gs1(lot_number="MX-1")})
    assert f"GTIN (01) {GTIN}" in caught.value.message
