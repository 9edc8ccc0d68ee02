"""The cold chain's rules: readings, excursions that hold the stock, and the pharmacist's decisions."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa
from sitekit import stored_since
from testkit import PASSWORD, audit_rows, fresh
from vialkit import use_vial, vials_of

from compounding.extensions import db
from compounding.models import (
    Batch,
    Excursion,
    ExcursionItem,
    Hold,
    Lot,
    StockMovement,
    TemperatureReading,
    Vial,
)
from compounding.services import cold_chain, inventory, sites, transfers
from compounding.services.errors import InvalidInput, InvalidState, NotAllowed, SignatureRejected


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


@pytest.fixture
def stocked(fridge, make_batch, make_lot, pharmacist):
    """A lot, and a released batch of two vials, moved into the fridge; another lot left on the shelf."""
    batch = make_batch(units=2)
    lot = make_lot()
    shelf_lot = make_lot()
    transfers.move_within_site(pharmacist, "batch", batch.id, fridge.id)
    transfers.move_within_site(pharmacist, "lot", lot.id, fridge.id)
    db.session.commit()
    stored_since(timedelta(days=2))
    return {"batch": batch, "lot": lot, "shelf_lot": shelf_lot}


def record(actor, location, celsius, at=None, **kw):
    at = at or datetime.now(UTC) - timedelta(minutes=1)
    return cold_chain.record_reading(actor, location.id, measured_at=iso(at), celsius=celsius, **kw)


def test_an_out_of_range_reading_holds_everything_stored_there_in_one_transaction(stocked, fridge, pharmacist):
    reading = record(pharmacist, fridge, "11.5")
    assert reading.in_range is False
    excursion = db.session.get(Excursion, reading.excursion_id)
    assert excursion.ended_at is None and excursion.high_celsius == Decimal("11.5")
    batch, lot = fresh(Batch, stocked["batch"].id), fresh(Lot, stocked["lot"].id)
    assert batch.status == "on_hold" and lot.status == "on_hold"
    assert {v.status for v in vials_of(batch)} == {"on_hold"}
    assert fresh(Lot, stocked["shelf_lot"].id).status == "released"
    held = {(i.entity_type, i.code) for i in cold_chain.excursion_items(excursion.id)}
    assert held == {("lot", lot.code), ("batch", batch.code)}
    # The holds, the reading and the excursion were written together: one audit row opened it.
    assert audit_rows("excursion.opened")
    holds = db.session.scalars(sa.select(Hold).where(Hold.source_type == "excursion")).all()
    assert {h.kind for h in holds} == {"excursion"} and len(holds) == 2
    assert all(excursion.code in h.detail and "FRIDGE1" in h.detail for h in holds)


def test_a_refused_hold_leaves_no_reading_behind(stocked, fridge, pharmacist, monkeypatch):
    """One transaction: when holding the stock fails, the reading and the excursion are not kept."""
    def broken(*args, **kwargs):
        raise InvalidState("the hold could not be placed")

    monkeypatch.setattr(cold_chain.holds, "place_hold", broken)
    with pytest.raises(InvalidState):
        record(pharmacist, fridge, "12")
    db.session.rollback()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(TemperatureReading)) == 0
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Excursion)) == 0
    assert fresh(Lot, stocked["lot"].id).status == "released"


def test_back_in_range_ends_it_and_keep_releases_every_item(stocked, fridge, pharmacist, make_user):
    start = datetime.now(UTC) - timedelta(hours=3)
    record(pharmacist, fridge, "10", at=start)
    record(pharmacist, fridge, "12.25", at=start + timedelta(hours=1))
    back = record(pharmacist, fridge, "5", at=start + timedelta(hours=2))
    excursion = db.session.scalars(sa.select(Excursion)).one()
    assert back.in_range and back.excursion_id is None
    assert excursion.ended_at == start + timedelta(hours=2) and excursion.high_celsius == Decimal("12.25")
    deciding = make_user("pharmacist")
    cold_chain.decide(deciding, excursion.id, "keep", "Stability data: 24 h at 25 °C allowed", PASSWORD)
    assert fresh(Batch, stocked["batch"].id).status == "released"
    assert fresh(Lot, stocked["lot"].id).status == "released"
    assert {v.status for v in vials_of(stocked["batch"])} == {"sealed"}
    assert fresh(Excursion, excursion.id).decided_at is not None
    assert {i.decision for i in cold_chain.excursion_items(excursion.id)} == {"keep"}


def test_discard_writes_every_item_off(stocked, fridge, pharmacist):
    record(pharmacist, fridge, "15", at=datetime.now(UTC) - timedelta(hours=2))
    record(pharmacist, fridge, "4")
    excursion = db.session.scalars(sa.select(Excursion)).one()
    cold_chain.decide(pharmacist, excursion.id, "discard", "Out for the night", PASSWORD)
    lot, batch = fresh(Lot, stocked["lot"].id), fresh(Batch, stocked["batch"].id)
    assert lot.remaining == 0 and lot.status == "depleted"
    assert batch.status == "discarded"
    assert {v.status for v in vials_of(batch)} == {"discarded"}
    waste = db.session.scalars(sa.select(StockMovement).where(StockMovement.reference_type == "excursion")).all()
    assert waste and all(m.kind == "waste" and m.quantity < 0 for m in waste)


def test_item_by_item_and_a_shortened_use_by(stocked, fridge, pharmacist):
    record(pharmacist, fridge, "9", at=datetime.now(UTC) - timedelta(hours=2))
    record(pharmacist, fridge, "6")
    excursion = db.session.scalars(sa.select(Excursion)).one()
    batch = stocked["batch"]
    earlier = fresh(Batch, batch.id).beyond_use_at - timedelta(hours=6)
    with pytest.raises(InvalidState, match="supplier's lot"):
        cold_chain.decide(pharmacist, excursion.id, "keep_shortened", "Room temperature column", PASSWORD,
                          items=[stocked["lot"].code], use_by=iso(earlier))
    cold_chain.decide(pharmacist, excursion.id, "keep_shortened", "Room temperature column", PASSWORD,
                      items=[batch.code], use_by=iso(earlier))
    assert fresh(Batch, batch.id).beyond_use_at == earlier
    assert fresh(Batch, batch.id).status == "released"
    assert fresh(Lot, stocked["lot"].id).status == "on_hold"
    assert fresh(Excursion, excursion.id).decided_at is None
    with pytest.raises(InvalidState, match="already decided"):
        cold_chain.decide(pharmacist, excursion.id, "keep", "again", PASSWORD, items=[batch.code])
    cold_chain.decide(pharmacist, excursion.id, "keep", "Unopened, assessed", PASSWORD)
    assert fresh(Excursion, excursion.id).decided_at is not None


def test_decisions_need_a_pharmacists_signature(stocked, fridge, pharmacist, technician):
    record(pharmacist, fridge, "9", at=datetime.now(UTC) - timedelta(hours=2))
    record(pharmacist, fridge, "6")
    excursion = db.session.scalars(sa.select(Excursion)).one()
    with pytest.raises(NotAllowed):
        cold_chain.decide(technician, excursion.id, "keep", "ok", PASSWORD)
    with pytest.raises(SignatureRejected):
        cold_chain.decide(pharmacist, excursion.id, "keep", "ok", "wrong password")
    db.session.rollback()
    assert fresh(Lot, stocked["lot"].id).status == "on_hold"


def test_keep_is_refused_while_the_stock_is_still_out_of_range(stocked, fridge, pharmacist):
    record(pharmacist, fridge, "14")
    excursion = db.session.scalars(sa.select(Excursion)).one()
    with pytest.raises(InvalidState, match="still where"):
        cold_chain.decide(pharmacist, excursion.id, "keep", "fine", PASSWORD)
    # Moved to the shelf (in range), the lot may be kept; discard is never refused.
    transfers.move_within_site(pharmacist, "lot", stocked["lot"].id,
                               sites.default_location(fridge.site_id).id)
    cold_chain.decide(pharmacist, excursion.id, "keep", "Moved within 20 minutes", PASSWORD,
                      items=[stocked["lot"].code])
    cold_chain.decide(pharmacist, excursion.id, "discard", "Too warm", PASSWORD)


def test_no_stock_moves_into_a_location_with_an_open_excursion(stocked, fridge, pharmacist, make_lot):
    record(pharmacist, fridge, "14")
    other = make_lot()
    with pytest.raises(InvalidState, match="open temperature excursion"):
        transfers.move_within_site(pharmacist, "lot", other.id, fridge.id)
    db.session.rollback()
    with pytest.raises(InvalidState, match="open temperature excursion"):
        make_lot(location_id=fridge.id)
    db.session.rollback()
    record(pharmacist, fridge, "5")
    transfers.move_within_site(pharmacist, "lot", other.id, fridge.id)


def test_min_max_thermometer_extremes_open_an_excursion_since_the_last_reading(fridge, pharmacist):
    evening = datetime.now(UTC) - timedelta(hours=14)
    record(pharmacist, fridge, "5", at=evening)
    morning = record(pharmacist, fridge, "5.5", at=evening + timedelta(hours=13), min_celsius="3",
                     max_celsius="10.5")
    excursion = db.session.get(Excursion, morning.excursion_id)
    assert excursion.started_at == evening and excursion.ended_at == evening + timedelta(hours=13)
    assert excursion.found_late and excursion.high_celsius == Decimal("10.5")


def test_a_late_logger_file_opens_the_excursion_at_its_true_start_and_lists_the_uses(
        fridge, pharmacist, make_batch, make_user, make_patient):
    batch = make_batch(units=3)
    transfers.move_within_site(pharmacist, "batch", batch.id, fridge.id)
    stored_since(timedelta(hours=6))
    practitioner = make_user("practitioner")
    patient = make_patient()
    start = datetime.now(UTC) - timedelta(hours=3)
    record(pharmacist, fridge, "5", at=start - timedelta(hours=1))
    # Treated from the fridge this morning, before anyone knew it had been warm.
    use_vial(practitioner, patient, vials_of(batch)[0])
    logged = [cold_chain.checked_reading(measured_at=iso(start + timedelta(minutes=15 * n)), source="logger",
                                         celsius="9.5" if 4 <= n < 8 else "5", row=n + 2) for n in range(11)]
    location = cold_chain.monitored_location(fridge.id, lock=True)
    cold_chain.add_readings(pharmacist, location, logged)
    db.session.commit()
    excursion = db.session.scalars(sa.select(Excursion)).one()
    # It began after the last reading in range (15 minutes before the first one out) at the latest.
    assert excursion.started_at == start + timedelta(minutes=45)
    assert excursion.ended_at == start + timedelta(hours=2)
    assert excursion.found_late
    uses = cold_chain.uses_for_review(excursion)
    assert [u.patient_id for u in uses] == [patient.id]


def test_refused_readings(fridge, pharmacist, app):
    now = datetime.now(UTC)
    with pytest.raises(InvalidInput, match="future"):
        record(pharmacist, fridge, "5", at=now + timedelta(hours=1))
    with pytest.raises(InvalidInput, match="offset"):
        cold_chain.record_reading(pharmacist, fridge.id, measured_at="2026-12-01T08:00:00", celsius="5")
    for bad in ("warm", "-91", "60.5", "nan", "inf"):
        with pytest.raises(InvalidInput):
            record(pharmacist, fridge, bad)
    record(pharmacist, fridge, "5", at=now - timedelta(hours=1))
    with pytest.raises(InvalidState, match="already has a manual reading"):
        record(pharmacist, fridge, "5", at=now - timedelta(hours=1))
    shelf = sites.default_location(fridge.site_id)
    with pytest.raises(InvalidState, match="no allowed temperature range"):
        record(pharmacist, shelf, "20")
    db.session.rollback()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(TemperatureReading)) == 1


def test_only_vials_here_are_held_when_the_rest_of_the_batch_is_elsewhere(fridge, pharmacist, make_batch):
    batch = make_batch(units=3)
    first = vials_of(batch)[0]
    transfers.move_within_site(pharmacist, "vial", first.id, fridge.id)
    db.session.commit()
    record(pharmacist, fridge, "12")
    assert fresh(Batch, batch.id).status == "released"
    statuses = {v.code: v.status for v in vials_of(batch)}
    assert statuses[first.code] == "on_hold" and list(statuses.values()).count("sealed") == 2
    items = db.session.scalars(sa.select(ExcursionItem)).all()
    assert [(i.entity_type, i.code) for i in items] == [("vial", first.code)]


def test_a_vial_kept_with_a_shorter_use_by_is_refused_after_it(fridge, pharmacist, make_batch):
    batch = make_batch(units=2)
    vial = vials_of(batch)[0]
    transfers.move_within_site(pharmacist, "vial", vial.id, fridge.id)
    record(pharmacist, fridge, "12", at=datetime.now(UTC) - timedelta(hours=2))
    record(pharmacist, fridge, "5")
    excursion = db.session.scalars(sa.select(Excursion)).one()
    use_by = datetime.now(UTC) + timedelta(hours=1)
    cold_chain.decide(pharmacist, excursion.id, "keep_shortened", "Room temperature column", PASSWORD,
                      use_by=iso(use_by))
    vial = fresh(Vial, vial.id)
    assert vial.status == "sealed" and vial.use_by_at == use_by
    from compounding.services.vials import vial_reasons
    assert any("use-by" in r for r in vial_reasons(vial, fresh(Batch, batch.id), use_by + timedelta(minutes=1)))
    assert not vial_reasons(vial, fresh(Batch, batch.id), use_by - timedelta(minutes=1))
    # A label printed again carries the earlier use-by.
    from compounding import labels
    label = labels.vial_label(labels.batch_label(labels.load_batch(batch.id)), vial)
    assert label.beyond_use_at == use_by and label.use_by_at <= labels.last_usable_minute(use_by)


def test_missed_readings(fridge, pharmacist):
    now = datetime.now(UTC)
    record(pharmacist, fridge, "5", at=now - timedelta(hours=20))
    assert [m.location.code for m in cold_chain.missed_readings(None, now=now)] == ["FRIDGE1"]
    record(pharmacist, fridge, "5", at=now - timedelta(hours=1))
    assert cold_chain.missed_readings(None, now=now) == []


def test_receiving_into_a_fridge_out_of_range_is_refused(fridge, pharmacist, make_ingredient, technician):
    record(pharmacist, fridge, "20")
    with pytest.raises(InvalidState, match="open temperature excursion"):
        inventory.receive_lot(technician, ingredient_id=make_ingredient().id, supplier="S", supplier_lot_number="X1",
                              expires_on=(datetime.now(UTC) + timedelta(days=300)).date(), quantity=Decimal("5"),
                              location_id=fridge.id)


# --- Sequences: late readings, moves, second excursions, edits of the range -----------------------------

def test_a_late_reading_that_raises_a_decided_excursions_peak_holds_the_kept_stock_again(stocked, fridge,
                                                                                          pharmacist):
    now = datetime.now(UTC)
    record(pharmacist, fridge, "5", at=now - timedelta(hours=5))
    record(pharmacist, fridge, "9", at=now - timedelta(hours=3))
    record(pharmacist, fridge, "5", at=now - timedelta(hours=1))
    excursion = db.session.scalars(sa.select(Excursion)).one()
    cold_chain.decide(pharmacist, excursion.id, "keep", "9 °C briefly: stable", PASSWORD)
    assert fresh(Batch, stocked["batch"].id).status == "released"
    location = cold_chain.monitored_location(fridge.id, lock=True)
    cold_chain.add_readings(pharmacist, location, [cold_chain.checked_reading(
        measured_at=iso(now - timedelta(hours=4)), celsius="30", source="logger")])
    db.session.commit()
    excursion = fresh(Excursion, excursion.id)
    assert excursion.high_celsius == Decimal("30") and excursion.decided_at is None
    assert fresh(Batch, stocked["batch"].id).status == "on_hold" and fresh(Lot, stocked["lot"].id).status == "on_hold"
    assert {i.decision for i in cold_chain.excursion_items(excursion.id)} == {None}
    assert audit_rows("excursion.changed")


def test_a_late_excursion_holds_what_was_there_then_not_what_came_after(fridge, pharmacist, make_batch, make_lot):
    left = make_batch(units=2)
    transfers.move_within_site(pharmacist, "batch", left.id, fridge.id)
    stored_since(timedelta(hours=12))
    shelf = sites.default_location(fridge.site_id)
    transfers.move_within_site(pharmacist, "batch", left.id, shelf.id)  # taken out after the excursion began
    came = make_lot()
    transfers.move_within_site(pharmacist, "lot", came.id, fridge.id)  # put in after it ended
    db.session.commit()
    now = datetime.now(UTC)
    location = cold_chain.monitored_location(fridge.id, lock=True)
    cold_chain.add_readings(pharmacist, location, [
        cold_chain.checked_reading(measured_at=iso(at), celsius=c, source="logger")
        for at, c in ((now - timedelta(hours=10), "5"), (now - timedelta(hours=9), "14"),
                      (now - timedelta(minutes=30), "5"))])
    db.session.commit()
    # The batch was in the fridge while it was warm and left after: held where it is now. The lot came in
    # after the fridge was back in range: not held.
    assert fresh(Batch, left.id).status == "on_hold"
    assert fresh(Lot, came.id).status == "released"


def test_an_excursion_holds_no_child_lot_sent_away_before_it(fridge, pharmacist, make_lot, make_user):
    from sitekit import add_site
    lyon = add_site("LYON")
    mover = make_user("pharmacist", site_codes=["MAIN", "LYON"])
    lot = make_lot(quantity="10")
    transfers.move_within_site(pharmacist, "lot", lot.id, fridge.id)
    transfer = transfers.create_transfer(mover, sites.main_site().id, lyon.id, [{"lot_id": lot.id, "quantity": "2"}])
    transfers.dispatch(mover, transfer.id, scanned_codes=[lot.code])
    transfers.receive(mover, transfer.id)
    db.session.commit()
    stored_since(timedelta(hours=3))
    child = db.session.scalar(sa.select(Lot).where(Lot.parent_lot_id == lot.id))
    record(pharmacist, fridge, "5", at=datetime.now(UTC) - timedelta(hours=1))
    record(pharmacist, fridge, "14")
    assert fresh(Lot, lot.id).status == "on_hold"
    assert fresh(Lot, child.id).status == "released"


def test_an_excursion_that_held_nothing_is_decided_when_it_ends(fridge, pharmacist):
    record(pharmacist, fridge, "12", at=datetime.now(UTC) - timedelta(hours=1))
    assert fresh(Excursion, 1).state == "out_of_range"
    record(pharmacist, fridge, "5")
    assert fresh(Excursion, 1).state == "decided"


def test_a_second_excursion_follows_the_first_ones_discard(stocked, fridge, pharmacist):
    now = datetime.now(UTC)
    for hours, celsius in ((4, "12"), (3, "5"), (2, "13"), (1, "5")):
        record(pharmacist, fridge, celsius, at=now - timedelta(hours=hours))
    first, second = db.session.scalars(sa.select(Excursion).order_by(Excursion.id)).all()
    cold_chain.decide(pharmacist, first.id, "discard", "Too warm twice", PASSWORD)
    assert {i.decision for i in cold_chain.excursion_items(second.id)} == {"discard"}
    assert fresh(Excursion, second.id).state == "decided"
    with pytest.raises(InvalidState):
        cold_chain.decide(pharmacist, second.id, "keep", "fine", PASSWORD)


def test_keep_is_refused_for_stock_already_written_off(stocked, fridge, pharmacist):
    record(pharmacist, fridge, "12", at=datetime.now(UTC) - timedelta(hours=1))
    record(pharmacist, fridge, "5")
    excursion = db.session.scalars(sa.select(Excursion)).one()
    inventory.adjust_lot(pharmacist, stocked["lot"].id, reason="damaged", quantity=fresh(Lot, stocked["lot"].id)
                         .remaining, direction="out")
    with pytest.raises(InvalidState, match="nothing to keep"):
        cold_chain.decide(pharmacist, excursion.id, "keep", "fine", PASSWORD, items=[stocked["lot"].code])


def test_the_range_cannot_change_while_an_excursion_is_open(fridge, pharmacist):
    record(pharmacist, fridge, "14")
    with pytest.raises(InvalidState, match="open temperature excursion"):
        sites.update_location(pharmacist, fridge.id, name=fridge.name, kind="fridge", parent_id=fridge.parent_id,
                              min_celsius="2", max_celsius="25")


def test_a_manual_reading_out_dates_the_excursion_from_the_last_reading_in_range(fridge, pharmacist):
    evening = datetime.now(UTC) - timedelta(hours=12)
    record(pharmacist, fridge, "5", at=evening)
    reading = record(pharmacist, fridge, "14")
    assert db.session.get(Excursion, reading.excursion_id).started_at == evening


def test_a_min_max_thermometer_not_reset_opens_no_second_excursion(fridge, pharmacist):
    now = datetime.now(UTC)
    record(pharmacist, fridge, "5", at=now - timedelta(hours=24))
    first = record(pharmacist, fridge, "5", at=now - timedelta(hours=12), min_celsius="4", max_celsius="11")
    again = record(pharmacist, fridge, "5", at=now - timedelta(minutes=5), min_celsius="4", max_celsius="11")
    # The same extremes again belong to the first excursion (not a new one); the reading is out, as read.
    assert first.excursion_id is not None and again.excursion_id == first.excursion_id and again.in_range is False
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Excursion)) == 1


def test_a_transfer_bound_for_a_warm_fridge_is_received_elsewhere(pharmacist, make_lot, make_user):
    from sitekit import add_fridge, add_site
    lyon = add_site("LYON")
    lyon_fridge = add_fridge(lyon.id, "LY-FRIDGE")
    mover = make_user("pharmacist", site_codes=["MAIN", "LYON"])
    lot = make_lot(quantity="10")
    transfer = transfers.create_transfer(mover, sites.main_site().id, lyon.id, [{"lot_id": lot.id, "quantity": "2"}],
                                         to_location_id=lyon_fridge.id)
    transfers.dispatch(mover, transfer.id, scanned_codes=[lot.code])
    record(mover, lyon_fridge, "15")
    with pytest.raises(InvalidState, match="open temperature excursion"):
        transfers.receive(mover, transfer.id)
    db.session.rollback()
    store = sites.default_location(lyon.id)
    transfers.receive(mover, transfer.id, to_location_id=store.id)
    child = db.session.scalar(sa.select(Lot).where(Lot.parent_lot_id == lot.id))
    assert child.location_id == store.id and child.status == "released"


def test_held_stock_scans_do_not_use_with_the_excursion_and_fefo_skips_it(client, as_role, stocked, fridge,
                                                                          pharmacist, make_formula, make_lot):
    from datetime import date
    from urllib.parse import quote

    from compounding.services import batches
    batch, lot = stocked["batch"], stocked["lot"]
    # The formula's first ingredient: the lot expiring first is in the fridge, a later one on the shelf.
    formula = make_formula()
    for component in formula.components:
        make_lot(component.ingredient, quantity="1000", expires_on=date.today() + timedelta(days=300))
    first = make_lot(formula.components[0].ingredient, quantity="1000", expires_on=date.today() + timedelta(days=30))
    assert first.id in batches.propose(formula, 1)[0].proposed
    transfers.move_within_site(pharmacist, "lot", first.id, fridge.id)
    stored_since(timedelta(hours=1))
    reading = record(pharmacist, fridge, "13")
    code = f"E{reading.excursion_id:06d}"
    as_role("practitioner")
    for scanned in (batch.code, vials_of(batch)[0].code, lot.code):
        answer = client.get(f"/api/v1/scan?code={quote(scanned)}").get_json()
        assert answer["usable"] is False, answer
        assert any("temperature excursion" in r and code in r for r in answer["reasons"]), answer
    page = client.get(f"/scan/?code={batch.code}").get_data(as_text=True)
    assert "DO NOT USE" in page and code in page
    proposal = batches.propose(formula, 1)[0].proposed
    assert first.id not in proposal and proposal


# --- Where stock was while it lasted, and holds that reach child lots -----------------------------------

def late_file(pharmacist, fridge, rows):
    """A logger's readings recorded now for moments in the past: [(hours ago, °C)]."""
    now = datetime.now(UTC)
    location = cold_chain.monitored_location(fridge.id, lock=True)
    cold_chain.add_readings(pharmacist, location, [cold_chain.checked_reading(
        measured_at=iso(now - timedelta(hours=h)), celsius=c, source="logger") for h, c in rows])
    db.session.commit()


def test_stock_moved_out_and_back_after_a_late_excursion_is_held(fridge, pharmacist, make_lot):
    lot = make_lot()
    transfers.move_within_site(pharmacist, "lot", lot.id, fridge.id)
    stored_since(timedelta(hours=12))
    shelf = sites.default_location(fridge.site_id)
    transfers.move_within_site(pharmacist, "lot", lot.id, shelf.id)
    transfers.move_within_site(pharmacist, "lot", lot.id, fridge.id)
    db.session.commit()
    late_file(pharmacist, fridge, [(11, "5"), (10, "14"), (8, "5")])
    assert fresh(Lot, lot.id).status == "on_hold"


def lot_with_child_at_lyon(make_lot, make_user) -> tuple[Lot, Lot]:
    """A lot of 10 at MAIN, 2 of them sent to a new site LYON and received there: (the lot, its child lot)."""
    from sitekit import add_site
    lyon = add_site("LYON")
    mover = make_user("pharmacist", site_codes=["MAIN", "LYON"])
    lot = make_lot(quantity="10")
    transfer = transfers.create_transfer(mover, sites.main_site().id, lyon.id, [{"lot_id": lot.id, "quantity": "2"}])
    transfers.dispatch(mover, transfer.id, scanned_codes=[lot.code])
    transfers.receive(mover, transfer.id)
    return lot, db.session.scalar(sa.select(Lot).where(Lot.parent_lot_id == lot.id))


def test_a_hold_that_reaches_child_lots_is_not_undone_by_an_excursions_discard(fridge, pharmacist, make_lot,
                                                                               make_user):
    from compounding.services import holds
    lot, child = lot_with_child_at_lyon(make_lot, make_user)
    transfers.move_within_site(pharmacist, "lot", lot.id, fridge.id)
    db.session.commit()
    stored_since(timedelta(hours=3))
    # An excursion holds the lot only; a quality signal placed after reaches the child at LYON too.
    record(pharmacist, fridge, "5", at=datetime.now(UTC) - timedelta(hours=2))
    record(pharmacist, fridge, "14", at=datetime.now(UTC) - timedelta(hours=1))
    assert (fresh(Lot, lot.id).status, fresh(Lot, child.id).status) == ("on_hold", "released")
    holds.quality_signal_hold(pharmacist, "lot", lot.id, "three nodules this month")
    assert fresh(Lot, child.id).status == "on_hold"
    record(pharmacist, fridge, "5")
    excursion = db.session.scalars(sa.select(Excursion)).one()
    cold_chain.decide(pharmacist, excursion.id, "discard", "Warm for an hour", PASSWORD)
    assert fresh(Lot, lot.id).status == "depleted"
    assert fresh(Lot, child.id).status == "on_hold"  # the quality signal still stands on its parent


def test_a_quality_signal_released_while_an_excursion_stays_lets_the_child_lot_go(fridge, pharmacist, make_lot,
                                                                                  make_user):
    from compounding.services import holds
    lot, child = lot_with_child_at_lyon(make_lot, make_user)
    holds.quality_signal_hold(pharmacist, "lot", lot.id, "nodules")
    transfers.move_within_site(pharmacist, "lot", lot.id, fridge.id)
    db.session.commit()
    stored_since(timedelta(hours=3))
    record(pharmacist, fridge, "5", at=datetime.now(UTC) - timedelta(hours=2))
    record(pharmacist, fridge, "14", at=datetime.now(UTC) - timedelta(hours=1))
    holds.release_hold(pharmacist, "lot", lot.id, "quality_signal", "Investigated: unrelated", PASSWORD)
    assert (fresh(Lot, lot.id).status, fresh(Lot, child.id).status) == ("on_hold", "released")


def test_a_thermometer_left_unreset_for_several_readings_is_one_excursion(fridge, pharmacist):
    now = datetime.now(UTC)
    record(pharmacist, fridge, "5", at=now - timedelta(hours=40))
    for hours in (30, 20, 10):
        record(pharmacist, fridge, "5", at=now - timedelta(hours=hours), min_celsius="4", max_celsius="11")
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Excursion)) == 1


def test_stock_dispatched_during_a_late_excursion_arrives_held(fridge, pharmacist, make_lot, make_user):
    from sitekit import add_site
    lyon = add_site("LYON")
    mover = make_user("pharmacist", site_codes=["MAIN", "LYON"])
    lot = make_lot(quantity="10")
    transfers.move_within_site(pharmacist, "lot", lot.id, fridge.id)
    stored_since(timedelta(hours=12))
    # Warm from 10 h ago; two units dispatched (now) after it began; the file is read while they travel.
    transfer = transfers.create_transfer(mover, sites.main_site().id, lyon.id, [{"lot_id": lot.id, "quantity": "2"}])
    transfers.dispatch(mover, transfer.id, scanned_codes=[lot.code])
    db.session.commit()
    late_file(pharmacist, fridge, [(11, "5"), (10, "14"), (9, "14")])
    transfers.receive(mover, transfer.id)
    child = db.session.scalar(sa.select(Lot).where(Lot.parent_lot_id == lot.id))
    assert fresh(Lot, child.id).status == "on_hold"
    excursion = db.session.scalars(sa.select(Excursion)).one()
    assert {i.code for i in cold_chain.excursion_items(excursion.id)} == {lot.code, child.code}


def test_an_earlier_warm_spell_found_later_is_its_own_excursion_holding_what_was_there(fridge, pharmacist,
                                                                                       make_lot, make_batch):
    left = make_lot()
    kept = make_batch(units=1)
    transfers.move_within_site(pharmacist, "lot", left.id, fridge.id)
    transfers.move_within_site(pharmacist, "batch", kept.id, fridge.id)
    stored_since(timedelta(hours=10))
    transfers.move_within_site(pharmacist, "lot", left.id, sites.default_location(fridge.site_id).id)
    stored_since(timedelta(hours=5))  # the lot left the fridge 5 h ago
    late_file(pharmacist, fridge, [(4, "5"), (3, "12"), (2, "5")])
    excursion = db.session.scalars(sa.select(Excursion)).one()
    assert fresh(Lot, left.id).status == "released"  # it had left before this excursion began
    cold_chain.decide(pharmacist, excursion.id, "keep", "An hour at 12 °C: stable", PASSWORD)
    late_file(pharmacist, fridge, [(8, "5"), (7, "12"), (6, "12"), (5, "12")])
    # A reading in range (4 h ago) stands between the two warm spells: the kept decision stands, and the
    # earlier spell holds the lot that was in the fridge then.
    first, earlier = db.session.scalars(sa.select(Excursion).order_by(Excursion.id)).all()
    assert first.state == "decided" and earlier.state == "awaiting_decision"
    assert fresh(Lot, left.id).status == "on_hold"


def test_a_place_inside_a_warm_fridge_cannot_be_moved_out(fridge, pharmacist):
    cabinet = sites.create_location(None, fridge.site_id, "Door shelf", "cabinet", parent_id=fridge.id)
    record(pharmacist, fridge, "14")
    room = sites.default_location(fridge.site_id)
    with pytest.raises(InvalidState, match="open temperature excursion"):
        sites.update_location(pharmacist, cabinet.id, name=cabinet.name, kind="cabinet", parent_id=room.id)
