"""The scan at a chain's sites: stock at a site the scanner may not see says only where it is; a vial at
another site than the scanner's is unusable here; a storage location's code says what is stored there."""

from datetime import date, timedelta

import pytest
import sqlalchemy as sa
from testkit import PASSWORD, QueryCounter, sign_in_session

from compounding.extensions import db
from compounding.models import Location, Site, Vial
from compounding.services import inventory
from compounding.services.scan import resolve

NOT_YOURS = "at site MAIN, not one of yours"


def add_site(code: str, location_code: str) -> tuple[Site, Location]:
    site = Site(code=code, name=f"{code.title()} clinic", timezone="Europe/Paris", address="")
    db.session.add(site)
    db.session.flush()
    location = Location(site_id=site.id, code=location_code, name=f"{code.title()} fridge", kind="fridge",
                        is_default=True)
    db.session.add(location)
    db.session.commit()
    return site, location


@pytest.fixture
def sites(app, make_user, make_batch, make_ingredient):
    """A released batch (three vials) and a lot at MAIN; a LYON fridge holding one lot; people of each site."""
    main = db.session.scalar(sa.select(Site).where(Site.code == "MAIN"))
    lyon, fridge = add_site("LYON", "LOC0002")
    receiver = make_user("technician", site_codes=["MAIN", "LYON"])
    releaser = make_user("pharmacist", site_codes=["MAIN", "LYON"])
    ingredient = make_ingredient(name="Hyaluronic acid")
    lots = {}
    for site in (main, lyon):
        lot = inventory.receive_lot(receiver, ingredient_id=ingredient.id, supplier="Supplier A",
                                    supplier_lot_number=f"SL-{site.code}", quantity="50",
                                    expires_on=date.today() + timedelta(days=200), site_id=site.id)
        inventory.release_lot(releaser, lot.id, PASSWORD, reason="Certificate requested")
        lots[site.code] = lot
    batch = make_batch(units=3)
    return {"main": main, "lyon": lyon, "fridge": fridge, "lots": lots, "batch": batch,
            "lyon_user": make_user("practitioner", site_codes=["LYON"]),
            "both": make_user("pharmacist", site_codes=["MAIN", "LYON"]),
            "auditor": make_user("auditor")}


def move_vial(batch, number: int, location: Location) -> str:
    """Put a vial at another site's location, as a received transfer leaves it; answer its code."""
    vial = db.session.scalar(sa.select(Vial).where(Vial.batch_id == batch.id, Vial.number == number))
    db.session.execute(sa.update(Vial).where(Vial.id == vial.id).values(location_id=location.id,
                                                                        site_id=location.site_id))
    db.session.commit()
    return vial.code


def scan(client, user, code: str) -> dict:
    sign_in_session(client, user)
    response = client.get("/api/v1/scan", query_string={"code": code})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


@pytest.mark.parametrize("what", ["lot", "batch", "vial"])
def test_stock_at_a_site_the_scanner_may_not_see_answers_do_not_use_with_its_site_only(client, sites, what):
    code = {"lot": sites["lots"]["MAIN"].code, "batch": sites["batch"].code,
            "vial": f"{sites['batch'].code}-01"}[what]
    answer = scan(client, sites["lyon_user"], code)
    assert answer["kind"] == what and answer["usable"] is False
    assert answer["reasons"] == [NOT_YOURS] and answer["site"] == "MAIN"
    # Nothing else: no id, status, formula, ingredient or dates of another site's stock.
    assert set(answer) <= {"kind", "usable", "reasons", "received", "code", "site"}


def test_the_scan_station_page_shows_only_the_site_of_stock_that_is_not_yours(client, sites):
    sign_in_session(client, sites["lyon_user"])
    html = client.get("/scan/", query_string={"code": sites["lots"]["MAIN"].code}).get_data(as_text=True)
    assert "DO NOT USE" in html and NOT_YOURS in html
    assert "Hyaluronic acid" not in html and "Lot record" not in html


def test_the_same_codes_are_answered_in_full_for_who_sees_the_site(client, sites):
    answer = scan(client, sites["auditor"], sites["lots"]["MAIN"].code)
    assert answer["usable"] is True and answer["ingredient"] == "Hyaluronic acid" and answer["site"] == "MAIN"
    assert scan(client, sites["lyon_user"], sites["lots"]["LYON"].code)["usable"] is True


def test_a_vial_at_another_site_than_the_scanner_s_is_named_and_unusable_here(client, sites):
    code = move_vial(sites["batch"], 2, sites["fridge"])
    answer = scan(client, sites["both"], code)  # acting at MAIN, their first site; they see LYON too
    assert answer["usable"] is False and "is at site LYON" in answer["reasons"]
    assert answer["code"] == code and answer["batch_code"] == sites["batch"].code and answer["site"] == "LYON"
    sign_in_session(client, sites["both"])
    with client.session_transaction() as session:
        session["site_id"] = sites["lyon"].id
    html = client.get("/scan/", query_string={"code": code}).get_data(as_text=True)
    assert 'data-usable="yes"' in html  # acting at LYON, where the vial is
    assert scan(client, sites["lyon_user"], code)["usable"] is True


def test_a_batch_is_seen_by_a_site_holding_one_of_its_vials(client, sites):
    move_vial(sites["batch"], 3, sites["fridge"])
    answer = scan(client, sites["lyon_user"], sites["batch"].code)
    assert answer["reasons"] != [NOT_YOURS] and answer["code"] == sites["batch"].code and answer["site"] == "MAIN"
    # Its other vials are still at MAIN: not the LYON practitioner's to see.
    assert scan(client, sites["lyon_user"], f"{sites['batch'].code}-01")["reasons"] == [NOT_YOURS]


def test_a_vial_scan_stays_at_two_statements_with_sites(sites):
    code = move_vial(sites["batch"], 2, sites["fridge"])
    main, lyon = sites["main"].id, sites["lyon"].id
    with QueryCounter(db.engine) as counter:
        result = resolve(code, site_ids=frozenset({main, lyon}), acting_site_id=main)
    assert result.vial is not None and counter.count == 2, counter.statements
    with QueryCounter(db.engine) as counter:
        assert resolve(code, site_ids=frozenset({main})).hidden
    assert counter.count == 1


def test_a_location_code_answers_its_site_name_kind_and_what_is_stored_there(client, sites):
    move_vial(sites["batch"], 2, sites["fridge"])
    answer = scan(client, sites["lyon_user"], "loc0002")
    assert answer["kind"] == "location" and answer["site"] == "LYON" and answer["code"] == "LOC0002"
    assert answer["name"] == "Lyon fridge" and answer["location_kind"] == "fridge"
    assert answer["stored"] == {"lots": 1, "batches": 0, "vials": 1}
    main_store = scan(client, sites["auditor"], "LOC0001")
    assert main_store["stored"]["lots"] >= 1 and main_store["stored"]["batches"] == 1
    assert main_store["stored"]["vials"] == 2


def test_a_location_scan_costs_two_statements(sites):
    with QueryCounter(db.engine) as counter:
        result = resolve("LOC0002", site_ids=None)
    assert result.kind == "location" and result.stored["lots"] == 1 and counter.count == 2


def test_a_location_at_a_site_the_scanner_may_not_see_says_only_its_site(client, sites):
    answer = scan(client, sites["lyon_user"], "LOC0001")
    assert answer["reasons"] == [NOT_YOURS] and "stored" not in answer and "name" not in answer


def test_an_unknown_location_code_is_unknown(client, sites):
    answer = scan(client, sites["lyon_user"], "LOC9999")
    assert answer["kind"] == "unknown" and answer["usable"] is False


def test_the_scan_station_shows_a_location_card(client, sites):
    sign_in_session(client, sites["lyon_user"])
    html = client.get("/scan/", query_string={"code": "LOC0002"}).get_data(as_text=True)
    assert 'data-kind="location"' in html and "Lyon fridge" in html and 'data-stored="lots">1<' in html
