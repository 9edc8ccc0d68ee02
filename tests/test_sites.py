"""Sites, storage locations and memberships: the rules of services/sites.py."""

from decimal import Decimal

import pytest
import sqlalchemy as sa
from testkit import audit_rows, count_rows

from compounding.extensions import db
from compounding.models import Location, Site, UserSite
from compounding.services import site_reads, sites
from compounding.services.codes import LOCATION_CODE
from compounding.services.errors import InvalidInput, InvalidState, NotAllowed


@pytest.fixture
def chief(make_user):
    return make_user("admin", username="chief")


def _lyon(actor, **overrides):
    data = {"code": "LYON", "name": "Lyon clinic", "timezone": "Europe/Paris", "address": "1 rue de la Paix"}
    data.update(overrides)
    return sites.create_site(actor, **data)


def _unchanged(model):
    return count_rows(model)


# --- sites -------------------------------------------------------------------------------------


def test_creating_a_site_makes_its_default_main_store_and_audits_both(chief):
    site = _lyon(chief)

    store = sites.default_location(site.id)
    assert (site.code, site.timezone, site.address) == ("LYON", "Europe/Paris", "1 rue de la Paix")
    assert (store.name, store.kind, store.is_default, store.active) == ("Main store", "room", True, True)
    assert LOCATION_CODE.match(store.code) and store.code != "LOC0001"
    assert [row.entity_id for row in audit_rows("site.created")] == [site.id]
    assert [row.entity_id for row in audit_rows("location.created")] == [store.id]


# A lower-case code is upper-cased as the form does (tests/test_site_guards.py), never refused.
@pytest.mark.parametrize("code", ["L", "l", "LYON CITY", "ABCDEFGHIJKLM", "LY_ON", ""])
def test_a_site_code_is_two_to_twelve_upper_case_letters_digits_or_hyphens(chief, code):
    before = _unchanged(Site)
    with pytest.raises(InvalidInput) as refused:
        _lyon(chief, code=code)
    assert refused.value.field == "code"
    assert count_rows(Site) == before


def test_a_site_code_is_unique(chief):
    _lyon(chief)
    with pytest.raises(InvalidState, match="LYON"):
        _lyon(chief, name="Another Lyon")
    assert count_rows(Site) == 2


@pytest.mark.parametrize("zone", ["Europe/Lyon", "CET+1", "../etc/passwd", "x" * 65])
def test_a_site_time_zone_must_be_a_real_iana_zone(chief, zone):
    with pytest.raises(InvalidInput) as refused:
        _lyon(chief, timezone=zone)
    assert refused.value.field == "timezone"
    assert count_rows(Location) == 1


def test_a_site_without_a_time_zone_takes_the_clinics(chief, app):
    assert _lyon(chief, timezone="").timezone == app.config["CLINIC_TIMEZONE"]


def test_only_admins_and_pharmacists_manage_sites(make_user):
    with pytest.raises(NotAllowed):
        _lyon(make_user("technician"))
    assert _lyon(make_user("pharmacist")).code == "LYON"


def test_updating_a_site_keeps_its_code_and_audits_the_change(chief):
    site = _lyon(chief)
    sites.update_site(chief, site.id, name="Lyon Part-Dieu", timezone="Europe/Paris", address="2 place")
    assert (site.code, site.name, site.address) == ("LYON", "Lyon Part-Dieu", "2 place")
    (row,) = audit_rows("site.updated")
    assert row.old_values["name"] == "Lyon clinic" and row.new_values["name"] == "Lyon Part-Dieu"
    with pytest.raises(InvalidInput):
        sites.update_site(chief, site.id, name="Lyon", timezone="Mars/Olympus", address="")


# --- locations ---------------------------------------------------------------------------------


def test_a_location_gets_the_next_loc_code_and_its_range(chief):
    main = sites.main_site()
    fridge = sites.create_location(chief, main.id, "Fridge 1", "fridge", min_celsius="2", max_celsius="8")

    assert LOCATION_CODE.match(fridge.code) and fridge.code != "LOC0001"
    assert (fridge.min_celsius, fridge.max_celsius) == (Decimal("2"), Decimal("8"))
    assert fridge.parent_id is None and not fridge.is_default
    second = sites.create_location(chief, main.id, "Fridge 2", "fridge")
    assert second.code != fridge.code
    assert audit_rows("location.created")[-1].new_values["code"] == second.code


def test_a_given_location_code_is_upper_case_unique_and_not_like_our_stock_codes(chief):
    main = sites.main_site()
    made = sites.create_location(chief, main.id, "Cold room", "room", code="COLD-1")
    assert made.code == "COLD-1"
    assert sites.create_location(chief, main.id, "Cold room 2", "room", code="cold-2").code == "COLD-2"
    for code in ("l000123", "L000123", "B2612060001", "B2612060001-03", "COLD 2"):
        with pytest.raises(InvalidInput) as refused:
            sites.create_location(chief, main.id, f"Room {code}", "room", code=code)
        assert refused.value.field == "code"
    with pytest.raises(InvalidState, match="COLD-1"):
        sites.create_location(chief, main.id, "Another", "room", code="COLD-1")
    assert count_rows(Location) == 3


def test_a_location_refuses_an_unknown_kind_a_reversed_range_and_a_name_used_at_the_site(chief):
    main = sites.main_site()
    with pytest.raises(InvalidInput):
        sites.create_location(chief, main.id, "Box", "drawer")
    with pytest.raises(InvalidInput):
        sites.create_location(chief, main.id, "Fridge", "fridge", min_celsius="8", max_celsius="2")
    with pytest.raises(InvalidState):
        sites.create_location(chief, main.id, "Main store", "room")
    assert count_rows(Location) == 1


def test_a_parent_must_be_at_the_same_site(chief):
    lyon = _lyon(chief)
    with pytest.raises(InvalidInput, match="another site") as refused:
        sites.create_location(chief, sites.main_site().id, "Fridge", "fridge",
                              parent_id=sites.default_location(lyon.id).id)
    assert refused.value.field == "parent_id"
    assert count_rows(Location) == 2


def test_moving_a_location_under_its_own_child_is_refused_as_a_cycle(chief):
    main = sites.main_site()
    room = sites.create_location(chief, main.id, "Clean room", "room")
    cabinet = sites.create_location(chief, main.id, "Cabinet A", "cabinet", parent_id=room.id)
    fridge = sites.create_location(chief, main.id, "Fridge A", "fridge", parent_id=cabinet.id)

    for parent in (fridge, room):
        with pytest.raises(InvalidInput, match="inside itself"):
            sites.update_location(chief, room.id, name=room.name, kind="room", parent_id=parent.id)
    db.session.expire_all()
    assert db.session.get(Location, room.id).parent_id is None
    sites.update_location(chief, fridge.id, name="Fridge A1", kind="fridge", parent_id=room.id,
                          min_celsius="2", max_celsius="8")
    assert (fridge.parent_id, fridge.name) == (room.id, "Fridge A1")
    assert audit_rows("location.updated")[-1].new_values["parent_id"] == room.id


def test_a_location_holding_stock_or_the_default_cannot_be_deactivated(chief, make_lot):
    main = sites.main_site()
    shelf = sites.create_location(chief, main.id, "Shelf", "cabinet")
    make_lot(location_id=shelf.id)

    with pytest.raises(InvalidState, match="still holds"):
        sites.deactivate_location(chief, shelf.id)
    with pytest.raises(InvalidState, match="default"):
        sites.deactivate_location(chief, sites.default_location(main.id).id)
    db.session.expire_all()
    assert db.session.get(Location, shelf.id).active


def test_an_empty_location_is_deactivated_and_no_longer_takes_stock(chief, make_lot):
    main = sites.main_site()
    shelf = sites.create_location(chief, main.id, "Shelf", "cabinet")
    sites.deactivate_location(chief, shelf.id, reason="removed")
    assert not shelf.active
    assert audit_rows("location.deactivated")[-1].reason == "removed"
    with pytest.raises(InvalidState, match="no longer in use"):
        make_lot(location_id=shelf.id)


def test_the_default_location_moves_to_another_active_one_of_the_site(chief):
    main = sites.main_site()
    old = sites.default_location(main.id)
    fridge = sites.create_location(chief, main.id, "Fridge", "fridge")
    sites.set_default_location(chief, fridge.id)
    db.session.expire_all()
    assert sites.default_location(main.id).id == fridge.id
    assert not db.session.get(Location, old.id).is_default
    assert audit_rows("site.default_location_set")[-1].new_values["location"] == fridge.code


def test_stock_counts_per_location_come_in_one_statement(chief, make_lot, make_batch):
    from testkit import QueryCounter

    main = sites.main_site()
    shelf = sites.create_location(chief, main.id, "Shelf", "cabinet")
    make_lot(location_id=shelf.id)
    make_lot(location_id=shelf.id)
    make_batch(units=2)
    site_id = main.id
    with QueryCounter(db.engine) as counted:
        counts = site_reads.stock_counts(site_id)
    assert counted.count == 1
    store = sites.default_location(main.id)
    assert counts[shelf.id] == {"lots": 2, "batches": 0, "vials": 0}
    assert counts[store.id]["batches"] == 1 and counts[store.id]["vials"] == 2


def test_the_location_tree_is_in_depth_first_order_with_depths(chief):
    main = sites.main_site()
    room = sites.create_location(chief, main.id, "B room", "room")
    sites.create_location(chief, main.id, "Fridge", "fridge", parent_id=room.id)
    tree = site_reads.location_tree(main.id)
    assert [(node.location.name, node.depth) for node in tree] == [("B room", 0), ("Fridge", 1), ("Main store", 0)]


# --- memberships -------------------------------------------------------------------------------


def test_an_admin_sets_a_users_sites_and_chain_wide_view(chief, make_user):
    lyon = _lyon(chief)
    nurse = make_user("practitioner")
    sites.set_user_sites(chief, nurse.id, [lyon.id], all_sites=False)
    assert sites.member_site_ids(nurse) == [lyon.id]
    sites.set_user_sites(chief, nurse.id, [lyon.id, sites.main_site().id], all_sites=True)
    assert nurse.all_sites and set(sites.member_site_ids(nurse)) == {lyon.id, sites.main_site().id}
    row = audit_rows("user.sites_changed")[-1]
    assert row.old_values == {"sites": ["LYON"], "all_sites": False}
    assert row.new_values == {"sites": ["LYON", "MAIN"], "all_sites": True}


def test_a_user_keeps_at_least_one_site_and_only_admins_change_memberships(chief, make_user):
    nurse = make_user("practitioner")
    with pytest.raises(InvalidInput, match="at least one site"):
        sites.set_user_sites(chief, nurse.id, [], all_sites=True)
    with pytest.raises(NotAllowed):
        sites.set_user_sites(make_user("pharmacist"), nurse.id, [sites.main_site().id], all_sites=True)
    assert db.session.scalar(sa.select(sa.func.count()).where(UserSite.user_id == nurse.id)) == 1
