"""Excursion pages: the list and one excursion per role and site, the signed decision, the hold's link."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sitekit import add_fridge, add_site, stored_since
from testkit import PASSWORD, QueryCounter, fresh, sign_in_session
from vialkit import use_vial, vials_of

from compounding.extensions import db
from compounding.models import Batch, Excursion, ExcursionItem, Hold, Lot
from compounding.permissions import ROLES
from compounding.services import cold_chain, sites, transfers


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def record(actor, location, celsius, at=None):
    at = at or datetime.now(UTC) - timedelta(minutes=1)
    return cold_chain.record_reading(actor, location.id, measured_at=iso(at), celsius=celsius)


def ended_excursion(actor, location) -> Excursion:
    """Warm two hours ago, back in range a minute ago: over, awaiting a decision."""
    record(actor, location, "11.5", at=datetime.now(UTC) - timedelta(hours=2))
    record(actor, location, "5")
    return db.session.scalars(sa.select(Excursion).where(Excursion.location_id == location.id)).one()


@pytest.fixture
def found_late(fridge, pharmacist, make_batch, make_patient, practitioner):
    """A logger file shows the fridge warm while a patient was treated from it: a use to review."""
    batch = make_batch(units=3)
    transfers.move_within_site(pharmacist, "batch", batch.id, fridge.id)
    stored_since(timedelta(hours=6))
    patient = make_patient(name="Ada Lovelace", chart_number="CH-ADA")
    start = datetime.now(UTC) - timedelta(hours=3)
    record(pharmacist, fridge, "5", at=start - timedelta(hours=1))
    use_vial(practitioner, patient, vials_of(batch)[0])
    logged = [cold_chain.checked_reading(measured_at=iso(start + timedelta(minutes=15 * n)), source="logger",
                                         celsius="9.5" if 4 <= n < 8 else "5") for n in range(11)]
    cold_chain.add_readings(pharmacist, cold_chain.monitored_location(fridge.id, lock=True), logged)
    db.session.commit()
    return db.session.scalars(sa.select(Excursion)).one()


def items_of(excursion) -> dict[str, ExcursionItem]:
    db.session.expire_all()
    return {i.code: i for i in cold_chain.excursion_items(excursion.id)}


def decide(client, excursion, **data):
    data = {"decision": "keep", "reason": "Stability data allow 24 h at 25 °C", "password": PASSWORD, **data}
    return client.post(f"/excursions/{excursion.id}/decide", data=data)


@pytest.mark.parametrize("role", ROLES)
def test_the_list_and_the_excursion_render_for_every_role_with_patients_as_far_as_it_may_see(
        client, make_user, found_late, role):
    sign_in_session(client, make_user(role))
    listing = client.get("/excursions").get_data(as_text=True)
    assert found_late.code in listing and "found late" in listing and "FRIDGE1" in listing
    page = client.get(f"/excursions/{found_late.id}")
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and "Uses to review" in text and "logger" in text
    assert "9.5" in text and "2 to 8 °C" in text
    may_read, may_identify = role != "admin", role in ("pharmacist", "practitioner", "auditor")
    assert ("CH-ADA" in text) is may_read
    assert ("Ada Lovelace" in text) is may_identify
    assert ("A treatment session" in text) is not may_read
    assert ('id="decide-form"' in text) is (role == "pharmacist")


def test_another_sites_excursion_is_not_found_and_not_listed(client, make_user, pharmacist, make_lot):
    lyon = add_site("LYON")
    lyon_fridge = add_fridge(lyon.id, "LY-FRIDGE")
    lyon_pharmacist = make_user("pharmacist", site_codes=["LYON"])
    excursion = ended_excursion(lyon_pharmacist, lyon_fridge)
    sign_in_session(client, pharmacist)  # MAIN only
    assert excursion.code not in client.get("/excursions").get_data(as_text=True)
    assert client.get(f"/excursions/{excursion.id}").status_code == 404
    assert decide(client, excursion).status_code == 404
    sign_in_session(client, lyon_pharmacist)
    assert excursion.code in client.get(f"/excursions?site={lyon.id}").get_data(as_text=True)
    assert client.get(f"/excursions/{excursion.id}").status_code == 200


def test_the_list_filters_by_state(client, pharmacist, fridge, stocked, make_user):
    second = add_fridge(fridge.site_id, "FRIDGE2")
    over = ended_excursion(pharmacist, fridge)
    lasting = record(pharmacist, second, "12")
    sign_in_session(client, pharmacist)
    awaiting = client.get("/excursions?state=awaiting_decision").get_data(as_text=True)
    assert over.code in awaiting and f"E{lasting.excursion_id:06d}" not in awaiting
    ongoing = client.get("/excursions?state=out_of_range").get_data(as_text=True)
    assert over.code not in ongoing and f"E{lasting.excursion_id:06d}" in ongoing and "ongoing" in ongoing
    assert over.code not in client.get("/excursions?state=decided").get_data(as_text=True)


def test_keep_with_nothing_ticked_keeps_every_undecided_item(client, stocked, fridge, pharmacist):
    excursion = ended_excursion(pharmacist, fridge)
    sign_in_session(client, pharmacist)
    answer = decide(client, excursion)
    assert answer.status_code == 302, answer.get_data(as_text=True)[:3000]
    assert {i.decision for i in items_of(excursion).values()} == {"keep"}
    assert fresh(Lot, stocked["lot"].id).status == "released" and fresh(Batch, stocked["batch"].id).status == "released"
    assert fresh(Excursion, excursion.id).state == "decided"
    page = client.get(f"/excursions/{excursion.id}").get_data(as_text=True)
    assert "2 items kept" in page and "Stability data allow" in page and 'id="decide-form"' not in page


def test_item_by_item_then_a_shorter_use_by_typed_in_the_sites_zone(client, stocked, fridge, pharmacist):
    excursion = ended_excursion(pharmacist, fridge)
    lot, batch = stocked["lot"], stocked["batch"]
    sign_in_session(client, pharmacist)
    assert decide(client, excursion, items=[lot.code]).status_code == 302
    items = items_of(excursion)
    assert items[lot.code].decision == "keep" and items[batch.code].decision is None
    assert fresh(Batch, batch.id).status == "on_hold"
    # A site far from the clinic's zone: the typed wall time is read on the site's clock.
    main = sites.main_site()
    main.timezone = "Asia/Tokyo"
    db.session.commit()
    zone = ZoneInfo("Asia/Tokyo")
    wall = (datetime.now(zone) + timedelta(hours=5)).replace(second=0, microsecond=0, tzinfo=None)
    answer = decide(client, excursion, decision="keep_shortened", items=[batch.code],
                    beyond_use_at=wall.strftime("%Y-%m-%dT%H:%M"), reason="Room temperature column")
    assert answer.status_code == 302, answer.get_data(as_text=True)[:3000]
    row = items_of(excursion)[batch.code]
    expected = wall.replace(tzinfo=zone).astimezone(UTC)
    assert row.decision == "keep_shortened" and row.use_by_after == expected
    assert fresh(Batch, batch.id).beyond_use_at == expected and fresh(Batch, batch.id).status == "released"
    assert fresh(Excursion, excursion.id).decided_at is not None


def test_discard_writes_off_exactly_the_items_ticked(client, stocked, fridge, pharmacist):
    excursion = ended_excursion(pharmacist, fridge)
    sign_in_session(client, pharmacist)
    assert decide(client, excursion, decision="discard", items=[stocked["batch"].code],
                  reason="Out all night").status_code == 302
    assert fresh(Batch, stocked["batch"].id).status == "discarded"
    assert fresh(Lot, stocked["lot"].id).status == "on_hold"
    assert items_of(excursion)[stocked["lot"].code].decision is None


def snapshot(excursion, stocked):
    db.session.expire_all()
    return ([(i.code, i.decision) for i in cold_chain.excursion_items(excursion.id)],
            fresh(Lot, stocked["lot"].id).status, fresh(Batch, stocked["batch"].id).status,
            fresh(Excursion, excursion.id).decided_at)


def test_refusals_are_shown_with_their_status_and_change_nothing(client, stocked, fridge, pharmacist, technician):
    excursion = ended_excursion(pharmacist, fridge)
    before = snapshot(excursion, stocked)
    sign_in_session(client, pharmacist)
    wrong = decide(client, excursion, password="not-my-password")
    assert wrong.status_code == 403 and "Signature refused" in wrong.get_data(as_text=True)
    no_date = decide(client, excursion, decision="keep_shortened", items=[stocked["batch"].code])
    assert no_date.status_code == 422 and "Give the new, earlier use-by" in no_date.get_data(as_text=True)
    lot_shortened = decide(client, excursion, decision="keep_shortened", items=[stocked["lot"].code],
                           beyond_use_at=(datetime.now() + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M"))
    assert lot_shortened.status_code == 409 and "supplier&#39;s lot" in lot_shortened.get_data(as_text=True)
    no_reason = decide(client, excursion, reason="")
    assert no_reason.status_code == 422 and "Say why" in no_reason.get_data(as_text=True)
    unknown = decide(client, excursion, items=["L999999"])
    assert unknown.status_code == 422
    sign_in_session(client, technician)
    assert decide(client, excursion).status_code == 403
    assert snapshot(excursion, stocked) == before


def test_keep_is_refused_while_the_fridge_is_still_warm(client, stocked, fridge, pharmacist):
    reading = record(pharmacist, fridge, "12")
    excursion = fresh(Excursion, reading.excursion_id)
    before = snapshot(excursion, stocked)
    sign_in_session(client, pharmacist)
    answer = decide(client, excursion)
    assert answer.status_code == 409 and "still where" in answer.get_data(as_text=True)
    assert snapshot(excursion, stocked) == before


def test_the_list_reads_a_fixed_number_of_statements(client, pharmacist, app, make_lot):
    def listed():
        with QueryCounter(db.engine) as counter:
            page = client.get("/excursions")
        assert page.status_code == 200
        return counter.count, page.get_data(as_text=True).count('<tr data-code="E')

    sign_in_session(client, pharmacist)
    first = add_fridge(sites.main_site().id, "F0")
    make_lot()
    ended_excursion(pharmacist, first)
    few, shown = listed()
    assert shown == 1
    for n in range(1, 8):
        ended_excursion(pharmacist, add_fridge(sites.main_site().id, f"F{n}"))
    many, shown = listed()
    assert shown == 8 and many == few


def test_the_excursion_reads_a_fixed_number_of_statements_whatever_it_holds(
        client, fridge, pharmacist, make_lot, make_batch):
    def shown(excursion):
        with QueryCounter(db.engine) as counter:
            page = client.get(f"/excursions/{excursion.id}")
        assert page.status_code == 200
        return counter.count, page.get_data(as_text=True).count('<tr data-code="')

    def stock(location, count):
        """`count` lots, batches and single vials (the rest of each vial's batch left on the shelf)."""
        for _ in range(count):
            transfers.move_within_site(pharmacist, "lot", make_lot().id, location.id)
            transfers.move_within_site(pharmacist, "batch", make_batch(units=1).id, location.id)
            transfers.move_within_site(pharmacist, "vial", vials_of(make_batch(units=2))[0].id, location.id)
        db.session.commit()
        return ended_excursion(pharmacist, location)

    sign_in_session(client, pharmacist)
    few, rows = shown(stock(fridge, 1))
    assert rows == 3
    many, rows = shown(stock(add_fridge(fridge.site_id, "FRIDGE2"), 6))
    assert rows == 18 and many == few


def test_the_lots_hold_links_to_its_excursion_and_releasing_it_there_records_keep(
        client, stocked, fridge, pharmacist):
    excursion = ended_excursion(pharmacist, fridge)
    lot = stocked["lot"]
    sign_in_session(client, pharmacist)
    page = client.get(f"/lots/{lot.id}").get_data(as_text=True)
    assert f'href="/excursions/{excursion.id}"' in page and f"excursion {excursion.code}" in page
    answer = client.post(f"/lots/{lot.id}/release-hold", data={"hold": "excursion", "reason": "Assessed, unopened",
                                                               "password": PASSWORD})
    assert answer.status_code == 302, answer.get_data(as_text=True)[:3000]
    row = items_of(excursion)[lot.code]
    assert row.decision == "keep" and row.reason == "Assessed, unopened" and row.decided_by_id == pharmacist.id
    assert fresh(Lot, lot.id).status == "released"
    assert items_of(excursion)[stocked["batch"].code].decision is None
    assert fresh(Excursion, excursion.id).state == "awaiting_decision"


def test_a_hold_release_while_the_excursion_lasts_is_refused_and_changes_nothing(
        client, stocked, fridge, pharmacist):
    reading = record(pharmacist, fridge, "12")
    lot = stocked["lot"]
    sign_in_session(client, pharmacist)
    answer = client.post(f"/lots/{lot.id}/release-hold", data={"hold": "excursion", "reason": "Looks fine",
                                                               "password": PASSWORD})
    assert answer.status_code == 422 and "still where" in answer.get_data(as_text=True)
    assert fresh(Lot, lot.id).status == "on_hold"
    assert items_of(fresh(Excursion, reading.excursion_id))[lot.code].decision is None
    assert db.session.scalar(sa.select(Hold.released_at).where(Hold.entity_type == "lot",
                                                               Hold.entity_id == lot.id)) is None
