"""Trace answers where every lot, batch and vial is now, follows child lots, and pages by keyset."""

import re
from decimal import Decimal

import sqlalchemy as sa
from testkit import PASSWORD, QueryCounter, lot_used_by_sessions, sign_in_session
from vialkit import vials_of

from compounding.extensions import db
from compounding.models import BatchComponent, Ingredient, Location, Lot, Site, Transfer, TransferLine, Vial
from compounding.services import batches, sites, trace, treatments
from compounding.services.clock import utcnow
from compounding.services.trace_places import place_text


def _lyon():
    site = Site(code="LYON", name="Lyon", timezone="Europe/Paris", address="", active=True, created_at=utcnow())
    db.session.add(site)
    db.session.flush()
    db.session.add(Location(site_id=site.id, code="LOC0900", name="Lyon store", kind="room", is_default=True))
    db.session.flush()
    return site


def _dispatch_vial(vial, user) -> Transfer:
    """A dispatched transfer carrying the vial (written as the transfer service leaves it)."""
    main = db.session.scalar(sa.select(Site.id).where(Site.code == "MAIN"))
    lyon = _lyon()
    transfer = Transfer(code="T000123", from_site_id=main, to_site_id=lyon.id, status="dispatched",
                        created_by_id=user.id, dispatched_by_id=user.id, dispatched_at=utcnow())
    db.session.add(transfer)
    db.session.flush()
    db.session.add(TransferLine(transfer_id=transfer.id, kind="vial", vial_id=vial.id, batch_id=vial.batch_id,
                                quantity=Decimal("1")))
    db.session.execute(sa.update(Vial).where(Vial.id == vial.id).values(status="in_transit"))
    db.session.commit()
    return transfer


def test_each_vial_and_batch_says_where_it_is_and_a_dispatched_vial_is_in_transit(make_batch, make_user):
    batch = make_batch(units=3)
    first, second, _ = vials_of(batch)
    _dispatch_vial(second, make_user("pharmacist"))
    scope = trace.trace_batch(batch.id)
    places = {row.code: place_text(row) for row in scope.vials}
    assert places[first.code] == "MAIN · LOC0001 Main store"
    assert places[second.code] == "in transit on T000123"
    assert place_text(scope.batches[0]) == "MAIN · LOC0001 Main store"
    assert place_text(scope.places[0]) == "MAIN · LOC0001 Main store"
    assert {place_text(row) for row in scope.lots} == {"MAIN · LOC0001 Main store"}


def test_the_trace_page_and_api_show_the_places(client, make_batch, make_user, make_token):
    batch = make_batch(units=2)
    _, second = vials_of(batch)
    _dispatch_vial(second, make_user("pharmacist"))
    sign_in_session(client, make_user("pharmacist"))
    page = client.get(f"/trace/batches/{batch.id}").get_data(as_text=True)
    row = re.search(rf'<tr id="vial-{second.id}">(.*?)</tr>', page, re.S).group(1)
    assert "in transit on T000123" in row
    body = client.get(f"/api/v1/trace/batches/{batch.id}",
                      headers={"Authorization": f"Bearer {make_token(make_user('pharmacist'))}"}).json
    vial = next(v for v in body["vials"] if v["code"] == second.code)
    assert vial["place"] == "in transit on T000123" and vial["transit_code"] == "T000123"
    assert body["batches"][0]["site_code"] == "MAIN" and body["places"][0]["place"].startswith("MAIN")
    assert [s["site_code"] for s in body["sites"]] == []  # no session yet


def test_tracing_a_parent_lot_reaches_batches_made_from_its_child_lot(chain, make_lot, make_patient):
    parent = chain["lot"]
    child = make_lot(chain["pc"], quantity="100")
    lyon = _lyon()
    db.session.execute(sa.update(Lot).where(Lot.id == child.id).values(
        parent_lot_id=parent.id, site_id=lyon.id,
        location_id=db.session.scalar(sa.select(Location.id).where(Location.code == "LOC0900"))))
    store = db.session.scalar(sa.select(Location.id).where(Location.code == "LOC0900"))
    saline = make_lot(db.session.scalar(sa.select(Ingredient).where(Ingredient.name == "Saline")), quantity="100")
    db.session.execute(sa.update(Lot).where(Lot.id == saline.id).values(site_id=lyon.id, location_id=store))
    for who in ("technician", "practitioner", "pharmacist"):  # the verifier acts at LYON too
        sites.join_sites(chain[who], [lyon.id])
    db.session.commit()
    # Compounded at LYON, where the child lot is (FEFO takes only that site's lots).
    batch = batches.compound_batch(chain["technician"], chain["first"].formula_id, 1, location_id=store)
    assert db.session.scalar(sa.select(BatchComponent.lot_id).where(BatchComponent.batch_id == batch.id,
                                                                    BatchComponent.lot_id == child.id))

    batches.verify_batch(chain["pharmacist"], batch.id, PASSWORD)
    patient = make_patient()
    treatments.record_session(chain["practitioner"], patient_id=patient.id, site_id=lyon.id,
                              uses=[{"batch_code": batch.code, "volume_ml": "2"}])
    scope = trace.trace_lot(parent.id)
    assert batch.id in {row.id for row in scope.batches}
    assert patient.id in {row.id for row in scope.patients}
    assert scope.counts["batches"] == 3 and scope.counts["patients"] == 4
    places = {row.code: place_text(row) for row in scope.places}
    assert places[child.code] == "LYON · LOC0900 Lyon store" and places[parent.code].startswith("MAIN")


def test_a_deep_keyset_page_costs_the_statements_of_the_first(client, make_batch, make_patient, practitioner,
                                                               make_user, make_token):
    lot_id = lot_used_by_sessions(make_batch, make_patient, practitioner, 25)
    headers = {"Authorization": f"Bearer {make_token(make_user('pharmacist'))}"}
    url = f"/api/v1/trace/lots/{lot_id}?per_page=5"
    client.get(url, headers=headers)  # warm-up
    seen, cursor, costs = [], None, []
    while True:
        with QueryCounter(db.engine) as counter:
            body = client.get(url + (f"&after={cursor}" if cursor else ""), headers=headers).json
        costs.append(counter.count)
        seen += [s["id"] for s in body["sessions"]]
        cursor = body["next_cursor"]
        if not cursor:
            break
    # Deep pages cost what the first does (less once a list, here the one batch, is read to its end).
    assert max(costs[1:]) <= costs[0] and len(set(costs[1:-1])) == 1
    assert len(seen) == len(set(seen)) == 25 and body["counts"]["sessions"] == 25


def test_the_trace_totals_are_one_statement_whatever_the_scope(make_batch, make_patient, practitioner):
    small = lot_used_by_sessions(make_batch, make_patient, practitioner, 2)
    large = lot_used_by_sessions(make_batch, make_patient, practitioner, 30)
    counted = {}
    for lot_id in (small, large):
        db.session.expire_all()
        with QueryCounter(db.engine) as counter:
            scope = trace.trace_lot(lot_id, per_page=10)
        counted[lot_id] = counter.count
    assert counted[small] == counted[large]
    assert scope.counts["sessions"] == 30 and scope.total_volume_ml == 30 and scope.next_after is not None
