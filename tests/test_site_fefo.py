"""FEFO at a site: a batch is compounded from the lots on that site's shelves, never from another site's."""

from datetime import date, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa
from testkit import PASSWORD, sign_in_session

from compounding.extensions import db
from compounding.models import Batch, BatchComponent, Location, Lot, Site
from compounding.services import batches, inventory
from compounding.services.errors import InvalidState


def add_site(code: str, location_code: str) -> tuple[Site, Location]:
    site = Site(code=code, name=f"{code.title()} clinic", timezone="Europe/Paris", address="")
    db.session.add(site)
    db.session.flush()
    location = Location(site_id=site.id, code=location_code, name=f"{code.title()} store", kind="room",
                        is_default=True)
    db.session.add(location)
    db.session.commit()
    return site, location


@pytest.fixture
def two_sites(app, make_user, make_formula):
    """A formula with, for each ingredient, a lot at MAIN expiring first and a lot at LYON expiring later:
    FEFO over the chain would take MAIN's."""
    main = db.session.scalar(sa.select(Site).where(Site.code == "MAIN"))
    lyon, lyon_store = add_site("LYON", "LOC0002")
    receiver = make_user("technician", site_codes=["MAIN", "LYON"])
    releaser = make_user("pharmacist", site_codes=["MAIN", "LYON"])
    formula = make_formula()
    lots = {"MAIN": [], "LYON": []}
    for n, component in enumerate(formula.components):
        for site, days in ((main, 60), (lyon, 300)):
            lot = inventory.receive_lot(
                receiver, ingredient_id=component.ingredient_id, supplier="Supplier A",
                supplier_lot_number=f"SL-{site.code}-{n}", expires_on=date.today() + timedelta(days=days),
                quantity="1000", site_id=site.id)
            inventory.release_lot(releaser, lot.id, PASSWORD, reason="Certificate requested")
            lots[site.code].append(lot)
    return {"main": main, "lyon": lyon, "lyon_store": lyon_store, "formula": formula, "lots": lots,
            "lyon_tech": make_user("technician", site_codes=["LYON"]), "releaser": releaser}


def test_the_proposal_at_lyon_offers_only_lyon_s_lots(two_sites):
    proposal = batches.propose(two_sites["formula"], 2, site_id=two_sites["lyon"].id)
    offered = {lot.id for component in proposal for lot in component.lots}
    assert offered == {lot.id for lot in two_sites["lots"]["LYON"]}
    assert set().union(*(component.proposed for component in proposal)) == offered
    chain_wide = batches.propose(two_sites["formula"], 2)
    assert set().union(*(c.proposed for c in chain_wide)) == {lot.id for lot in two_sites["lots"]["MAIN"]}


def test_compounding_at_lyon_never_consumes_main_s_lots(two_sites):
    batch = batches.compound_batch(two_sites["lyon_tech"], two_sites["formula"].id, 2)
    assert batch.site_id == two_sites["lyon"].id
    used = set(db.session.scalars(sa.select(BatchComponent.lot_id).where(BatchComponent.batch_id == batch.id)))
    assert used == {lot.id for lot in two_sites["lots"]["LYON"]}
    for lot in two_sites["lots"]["MAIN"]:
        assert db.session.get(Lot, lot.id).remaining == Decimal("1000")


def test_compounding_at_a_named_location_takes_that_site_s_lots(two_sites, make_user):
    both = make_user("technician", site_codes=["MAIN", "LYON"])
    batch = batches.compound_batch(both, two_sites["formula"].id, 1, location_id=two_sites["lyon_store"].id)
    used = set(db.session.scalars(sa.select(BatchComponent.lot_id).where(BatchComponent.batch_id == batch.id)))
    assert used <= {lot.id for lot in two_sites["lots"]["LYON"]}


def test_a_lot_at_another_site_named_in_the_allocations_is_refused_naming_where_it_is(two_sites):
    main_lot = two_sites["lots"]["MAIN"][0]
    with pytest.raises(InvalidState) as refused:
        batches.compound_batch(two_sites["lyon_tech"], two_sites["formula"].id, 1,
                               allocations=[{"lot_id": main_lot.id, "quantity": "1"}])
    assert f"{main_lot.code} is at site MAIN" in refused.value.message
    assert "LYON" in refused.value.message and refused.value.field == "allocations"
    assert db.session.scalar(sa.select(sa.func.count(Batch.id))) == 0


def test_the_api_refuses_a_lot_from_another_site_with_a_409(client, two_sites):
    main_lot = two_sites["lots"]["MAIN"][0]
    sign_in_session(client, two_sites["lyon_tech"])
    response = client.post("/api/v1/batches", json={
        "formula_id": two_sites["formula"].id, "units": 1,
        "allocations": [{"lot_id": main_lot.id, "quantity": "1"}]})
    assert response.status_code == 409, response.get_json()
    assert "is at site MAIN" in response.get_json()["error"]


def test_the_bench_page_proposes_only_the_lots_of_the_site_where_it_compounds(client, two_sites):
    sign_in_session(client, two_sites["lyon_tech"])
    html = client.get(f"/batches/new?formula_id={two_sites['formula'].id}&units=1").get_data(as_text=True)
    assert all(lot.code in html for lot in two_sites["lots"]["LYON"])
    assert not any(lot.code in html for lot in two_sites["lots"]["MAIN"])
