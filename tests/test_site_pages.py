"""Site and location pages, the location label, and the site switcher in the header."""

import re

import pytest
import sqlalchemy as sa
from testkit import QueryCounter, count_rows, sign_in, submission_key_from

from compounding.extensions import db
from compounding.models import Location, Site
from compounding.services import sites
from compounding.site_scope import SITE_KEY


def _post(client, url, data, page=None):
    html = client.get(page or url).get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html) or \
        re.search(r'name="csrf_token" value="([^"]+)"', html)
    body = {"csrf_token": token.group(1), **data}
    key = submission_key_from(html) if "submission_key" in html else None
    if key:
        body["submission_key"] = key
    return client.post(url, data=body)


@pytest.fixture
def manager(client, make_user):
    user = make_user("pharmacist", username="hubpharm")
    sign_in(client, user)
    return user


def test_a_pharmacist_creates_a_site_from_the_page_and_lands_on_its_location_tree(client, manager):
    response = _post(client, "/sites/new", {"code": "LYON", "name": "Lyon clinic", "timezone": "Europe/Paris",
                                            "address": "1 rue"})
    assert response.status_code == 302
    site = db.session.scalar(sa.select(Site).where(Site.code == "LYON"))
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Lyon clinic" in page and "Main store" in page and sites.default_location(site.id).code in page


def test_a_bad_site_is_shown_on_the_form_and_nothing_is_made(client, manager):
    before = count_rows(Site)
    response = _post(client, "/sites/new", {"code": "MAIN", "name": "Again", "timezone": "Europe/Nowhere"})
    assert response.status_code == 422
    assert "is not a time zone" in response.get_data(as_text=True)
    assert count_rows(Site) == before


def test_a_location_is_made_inside_another_and_shown_indented_with_its_stock(client, manager, make_lot):
    main = sites.main_site()
    room = sites.create_location(manager, main.id, "Clean room", "room")
    response = _post(client, f"/sites/{main.id}/locations/new",
                     {"name": "Fridge A", "kind": "fridge", "parent_id": str(room.id), "code": "",
                      "min_celsius": "2", "max_celsius": "8"})
    assert response.status_code == 302, response.get_data(as_text=True)
    fridge = db.session.scalar(sa.select(Location).where(Location.name == "Fridge A"))
    assert fridge.parent_id == room.id
    make_lot(location_id=fridge.id)
    page = client.get(f"/sites/{main.id}").get_data(as_text=True)
    assert re.search(r'class="ps-2">.*?Fridge A', page, re.S)
    assert "2–8 °C" in page
    contents = client.get(f"/locations/{fridge.id}").get_data(as_text=True)
    assert "L0" in contents and "Take out of use" in contents


def test_a_location_at_another_site_cannot_be_the_parent(client, manager):
    lyon = sites.create_site(manager, "LYON", "Lyon", "Europe/Paris")
    main = sites.main_site()
    before = count_rows(Location)
    response = _post(client, f"/sites/{main.id}/locations/new",
                     {"name": "Fridge", "kind": "fridge", "parent_id": str(sites.default_location(lyon.id).id)},
                     page=f"/sites/{main.id}/locations/new")
    assert response.status_code == 422
    assert count_rows(Location) == before


def test_deactivating_a_location_with_stock_is_refused_with_the_reason(client, manager, make_lot):
    shelf = sites.create_location(manager, sites.main_site().id, "Shelf", "cabinet")
    make_lot(location_id=shelf.id)
    response = _post(client, f"/locations/{shelf.id}/deactivate", {"reason": "gone"}, page=f"/locations/{shelf.id}")
    assert response.status_code == 302
    assert "still holds 1" in client.get(response.headers["Location"]).get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Location, shelf.id).active


def test_the_site_page_reads_a_large_tree_in_a_fixed_number_of_statements(client, manager):
    main = sites.main_site()
    site_id = main.id
    client.get(f"/sites/{site_id}")
    with QueryCounter(db.engine) as few:
        client.get(f"/sites/{site_id}")
    for number in range(8):
        sites.create_location(manager, site_id, f"Fridge {number}", "fridge")
    client.get(f"/sites/{site_id}")
    with QueryCounter(db.engine) as many:
        assert client.get(f"/sites/{site_id}").status_code == 200
    assert many.count == few.count, many.statements


def test_a_location_label_carries_its_code_as_code_128(client, manager):
    fridge = sites.create_location(manager, sites.main_site().id, "Fridge", "fridge", code="COLD-1")
    page = client.get(f"/locations/{fridge.id}/label").get_data(as_text=True)
    assert 'aria-label="Barcode COLD-1"' in page and "<rect" in page


def test_a_technician_sees_sites_but_cannot_make_one(client, make_user):
    sign_in(client, make_user("technician"))
    assert client.get("/sites").status_code == 200
    assert client.get("/sites/new").status_code == 403


# --- the site switcher --------------------------------------------------------------------------


def test_a_user_with_one_site_sees_no_switcher(client, manager):
    assert 'id="site-switch"' not in client.get("/sites").get_data(as_text=True)


def test_a_user_of_two_sites_switches_and_goes_back_to_all(client, make_user):
    boss = make_user("admin")
    lyon = sites.create_site(boss, "LYON", "Lyon", "Europe/Paris")
    nurse = make_user("practitioner", site_codes=["MAIN", "LYON"])
    sign_in(client, nurse)
    page = client.get("/sites").get_data(as_text=True)
    assert 'id="site-switch"' in page and "All my sites" in page
    response = _post(client, "/site-scope", {"site_id": str(lyon.id), "next": "/sites"}, page="/sites")
    assert response.status_code == 302 and response.headers["Location"] == "/sites"
    with client.session_transaction() as stored:
        assert stored[SITE_KEY] == lyon.id
    assert re.search(rf'<option value="{lyon.id}" selected>', client.get("/sites").get_data(as_text=True))
    _post(client, "/site-scope", {"site_id": ""}, page="/sites")
    with client.session_transaction() as stored:
        assert SITE_KEY not in stored


def test_the_switcher_refuses_a_site_the_user_may_not_see(client, make_user):
    boss = make_user("admin")
    sites.create_site(boss, "LYON", "Lyon", "Europe/Paris")
    madrid = sites.create_site(boss, "MAD", "Madrid", "Europe/Madrid")
    sign_in(client, make_user("practitioner", site_codes=["MAIN", "LYON"]))
    response = _post(client, "/site-scope", {"site_id": str(madrid.id)}, page="/sites")
    assert response.status_code == 403
    with client.session_transaction() as stored:
        assert SITE_KEY not in stored


def test_an_auditor_may_look_at_any_one_site(client, make_user):
    boss = make_user("admin")
    lyon = sites.create_site(boss, "LYON", "Lyon", "Europe/Paris")
    sign_in(client, make_user("auditor"))
    response = _post(client, "/site-scope", {"site_id": str(lyon.id)}, page="/sites")
    assert response.status_code == 302


# --- memberships on the admin pages ------------------------------------------------------------


def test_an_admin_creates_a_user_at_the_sites_ticked(client, admin):
    lyon = sites.create_site(admin, "LYON", "Lyon", "Europe/Paris")
    page = client.get("/admin/users/new").get_data(as_text=True)
    main_id = sites.main_site().id
    assert re.search(rf'<input checked[^>]*value="{main_id}"|value="{main_id}"[^>]*checked', page)
    response = _post(client, "/admin/users/new", {
        "username": "lyonnurse", "display_name": "Lyon Nurse", "role": "practitioner",
        "temporary_password": "a long temporary passphrase 42", "site_ids": [str(lyon.id)]})
    assert response.status_code == 302, response.get_data(as_text=True)
    from compounding.models import User
    nurse = db.session.scalar(sa.select(User).where(User.username == "lyonnurse"))
    assert sites.member_site_ids(nurse) == [lyon.id] and not nurse.all_sites


def test_an_admin_changes_a_users_sites_and_cannot_leave_none(client, admin, make_user):
    lyon = sites.create_site(admin, "LYON", "Lyon", "Europe/Paris")
    nurse = make_user("practitioner")
    page = f"/admin/users/{nurse.id}"
    response = _post(client, f"{page}/sites", {"sites-site_ids": [str(lyon.id)], "sites-all_sites": "y"}, page=page)
    assert response.status_code == 302
    db.session.expire_all()
    assert sites.member_site_ids(nurse) == [lyon.id] and nurse.all_sites
    response = _post(client, f"{page}/sites", {}, page=page)
    assert response.status_code == 422
    assert "at least one site" in response.get_data(as_text=True)
    assert sites.member_site_ids(nurse) == [lyon.id]


# --- receiving and compounding ask where -------------------------------------------------------


def test_the_receive_form_offers_locations_by_site_with_the_default_chosen(client, make_user, make_ingredient):
    boss = make_user("admin")
    lyon = sites.create_site(boss, "LYON", "Lyon", "Europe/Paris")
    fridge = sites.create_location(boss, lyon.id, "Fridge L", "fridge")
    sign_in(client, make_user("technician", site_codes=["LYON"]))
    page = client.get("/lots/receive").get_data(as_text=True)
    default = sites.default_location(lyon.id)
    assert re.search(rf'<option selected value="{default.id}"|<option value="{default.id}" selected', page)
    assert 'optgroup label="LYON — Lyon"' in page and "Fridge L" in page
    assert 'optgroup label="MAIN' not in page
    ingredient = make_ingredient()
    response = _post(client, "/lots/receive", {
        "ingredient_id": str(ingredient.id), "supplier": "Acme", "lot_number": "Z1", "expiry_date": "2031-01",
        "quantity": "5", "location_id": str(fridge.id)}, page="/lots/receive")
    assert response.status_code == 302, response.get_data(as_text=True)
    from compounding.models import Lot
    lot = db.session.scalar(sa.select(Lot).where(Lot.supplier_lot_number == "Z1"))
    assert (lot.location_id, lot.site_id) == (fridge.id, lyon.id)
    detail = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Fridge L" in detail and fridge.code in detail and "LYON" in detail


def test_the_receive_form_refuses_a_location_of_another_site(client, make_user, make_ingredient):
    boss = make_user("admin")
    lyon = sites.create_site(boss, "LYON", "Lyon", "Europe/Paris")
    sign_in(client, make_user("technician"))
    from compounding.models import Lot
    before = count_rows(Lot)
    response = _post(client, "/lots/receive", {
        "ingredient_id": str(make_ingredient().id), "supplier": "Acme", "lot_number": "Z2",
        "expiry_date": "2031-01", "quantity": "5", "location_id": str(sites.default_location(lyon.id).id)},
        page="/lots/receive")
    assert response.status_code == 422
    assert count_rows(Lot) == before
