"""Transfers between sites: drafted, scanned out, scanned in; a vial is used only where it is."""

from decimal import Decimal

import pytest
import sqlalchemy as sa
from sitekit import add_site
from testkit import audit_rows, fresh
from vialkit import vials_of

from compounding.extensions import db
from compounding.models import (
    Batch,
    Location,
    Lot,
    StatusChange,
    StockMovement,
    Transfer,
    TransferLine,
    Vial,
)
from compounding.services import holds, transfers, treatments
from compounding.services.codes import TRANSFER_CODE
from compounding.services.errors import InvalidInput, InvalidState, NotAllowed
from compounding.services.sites import main_site


def _hold(pharmacist, vial, why: str) -> None:
    holds.place_hold(pharmacist, db.session.get(Vial, vial.id), "quality_signal", why)
    db.session.commit()



@pytest.fixture
def lyon(app):
    return add_site("LYON")


@pytest.fixture
def hub(make_user, lyon):
    """A pharmacist who works at MAIN (the hub) only."""
    return make_user("pharmacist", username="hub")


@pytest.fixture
def lyon_staff(make_user, lyon):
    return make_user("practitioner", username="lyon-doc", site_codes=["LYON"])


def _send(actor, to_site, vials, **extra):
    return transfers.create_transfer(actor, main_site().id, to_site.id,
                                     [{"vial_code": v.code} for v in vials], **extra)


def _lines(transfer) -> list[TransferLine]:
    db.session.expire_all()
    return list(db.session.scalars(sa.select(TransferLine).where(TransferLine.transfer_id == transfer.id)
                                   .order_by(TransferLine.id)))


def _statuses(vials) -> list[str]:
    return [fresh(Vial, v.id).status for v in vials]


def test_three_vials_travel_from_the_hub_to_lyon_and_arrive_sealed_at_its_store(make_batch, hub, lyon, lyon_staff):
    batch = make_batch(units=3)
    vials = vials_of(batch)
    transfer = _send(hub, lyon, vials, note="Monday run")
    assert TRANSFER_CODE.match(transfer.code) and transfer.status == "draft"
    assert [line.kind for line in _lines(transfer)] == ["vial"] * 3
    transfers.dispatch(hub, transfer.id, scanned_codes=[v.code for v in vials])
    assert _statuses(vials) == ["in_transit"] * 3
    assert {fresh(Vial, v.id).site_id for v in vials} == {main_site().id}
    transfers.receive(lyon_staff, transfer.id)
    lyon_store = db.session.scalar(sa.select(Location).where(Location.site_id == lyon.id))
    assert _statuses(vials) == ["sealed"] * 3
    assert {(fresh(Vial, v.id).site_id, fresh(Vial, v.id).location_id) for v in vials} == {(lyon.id, lyon_store.id)}
    assert fresh(Batch, batch.id).site_id == main_site().id  # the batch record stays where it was made
    assert fresh(Transfer, transfer.id).status == "received"
    assert [r.action for r in audit_rows(entity_type="transfer")] == [
        "transfer.created", "transfer.dispatched", "transfer.received"]
    steps = db.session.scalars(sa.select(StatusChange.to_status).where(
        StatusChange.entity_type == "vial", StatusChange.entity_id == vials[0].id).order_by(StatusChange.id)).all()
    assert steps == ["sealed", "in_transit", "sealed"]


def test_a_batch_line_sends_the_vials_that_can_travel_and_leaves_a_held_one(make_batch, hub, lyon, pharmacist):
    batch = make_batch(units=3)
    held = vials_of(batch)[1]
    _hold(pharmacist, held, "cloudy")
    transfer = transfers.create_transfer(hub, main_site().id, lyon.id, [{"batch_id": batch.id}])
    assert [line.vial_id for line in _lines(transfer)] == [v.id for v in vials_of(batch) if v.id != held.id]


def test_a_transfer_to_the_same_site_is_refused(make_batch, hub):
    batch = make_batch(units=1)
    with pytest.raises(InvalidInput, match="another site"):
        _send(hub, main_site(), vials_of(batch))


def test_dispatching_from_a_site_the_user_does_not_belong_to_is_refused(make_batch, make_user, hub, lyon):
    batch = make_batch(units=1)
    transfer = _send(hub, lyon, vials_of(batch))
    outsider = make_user("technician", username="lyon-tech", site_codes=["LYON"])
    with pytest.raises(NotAllowed, match="You do not belong to site MAIN"):
        transfers.dispatch(outsider, transfer.id)
    with pytest.raises(NotAllowed, match="You do not belong to site MAIN"):
        transfers.create_transfer(outsider, main_site().id, lyon.id, [{"vial_code": vials_of(batch)[0].code}])
    assert fresh(Transfer, transfer.id).status == "draft"
    assert _statuses(vials_of(batch)) == ["sealed"]


def test_a_recalled_or_held_item_is_not_sent(make_batch, make_lot, hub, lyon, pharmacist):
    batch = make_batch(units=2)
    first, second = vials_of(batch)
    _hold(pharmacist, first, "a crack")
    with pytest.raises(InvalidState, match=f"{first.code} is on hold"):
        _send(hub, lyon, [first])
    lot = make_lot(quantity="10")
    db.session.get(Lot, lot.id).status = "recalled"
    db.session.commit()
    with pytest.raises(InvalidState, match=f"{lot.code} is recalled"):
        transfers.create_transfer(hub, main_site().id, lyon.id, [{"lot_id": lot.id, "quantity": "1"}])
    assert db.session.scalar(sa.select(sa.func.count(Transfer.id))) == 0


def test_a_vial_held_after_the_draft_is_refused_at_dispatch_and_nothing_moves(make_batch, hub, lyon, pharmacist):
    batch = make_batch(units=2)
    vials = vials_of(batch)
    transfer = _send(hub, lyon, vials)
    _hold(pharmacist, vials[0], "leaking")
    with pytest.raises(InvalidState, match="is on hold"):
        transfers.dispatch(hub, transfer.id)
    assert _statuses(vials) == ["on_hold", "sealed"]
    assert fresh(Transfer, transfer.id).status == "draft"


def test_lines_are_checked_empty_twice_too_much_and_not_at_the_source(make_batch, make_lot, make_user, hub, lyon):
    batch = make_batch(units=2)
    vial = vials_of(batch)[0]
    with pytest.raises(InvalidInput, match="at least one"):
        transfers.create_transfer(hub, main_site().id, lyon.id, [])
    with pytest.raises(InvalidState, match=f"{vial.code} is named twice"):
        transfers.create_transfer(hub, main_site().id, lyon.id, [{"vial_code": vial.code}, {"batch_id": batch.id}])
    lot = make_lot(quantity="5")
    with pytest.raises(InvalidState, match=f"{lot.code} has 5 left, 6 asked"):
        transfers.create_transfer(hub, main_site().id, lyon.id, [{"lot_id": lot.id, "quantity": "6"}])
    both = make_user("technician", username="both", site_codes=["MAIN", "LYON"])
    with pytest.raises(InvalidState, match="is at site MAIN, not at LYON"):
        transfers.create_transfer(both, lyon.id, main_site().id, [{"vial_code": vial.code}])


def test_every_line_must_be_scanned_out_when_scans_are_given(make_batch, hub, lyon):
    vials = vials_of(make_batch(units=2))
    transfer = _send(hub, lyon, vials)
    with pytest.raises(InvalidInput, match=f"not scanned: {vials[1].code}"):
        transfers.dispatch(hub, transfer.id, scanned_codes=[vials[0].code])
    assert _statuses(vials) == ["sealed", "sealed"]


def test_receiving_more_than_was_sent_or_twice_is_refused(make_batch, hub, lyon, lyon_staff):
    vials = vials_of(make_batch(units=1))
    transfer = _send(hub, lyon, vials)
    transfers.dispatch(hub, transfer.id)
    line = _lines(transfer)[0]
    with pytest.raises(InvalidInput, match="received"):
        transfers.receive(lyon_staff, transfer.id, [{"line_id": line.id, "received": 2}])
    with pytest.raises(NotAllowed, match="You do not belong to site LYON"):
        transfers.receive(hub, transfer.id)
    assert _statuses(vials) == ["in_transit"]
    transfers.receive(lyon_staff, transfer.id)
    with pytest.raises(InvalidState, match="only a dispatched transfer is received"):
        transfers.receive(lyon_staff, transfer.id)


def test_a_damaged_vial_and_a_missing_one_are_written_off_and_recorded_on_their_lines(
        make_batch, hub, lyon, lyon_staff):
    batch = make_batch(units=3)
    vials = vials_of(batch)
    transfer = _send(hub, lyon, vials)
    transfers.dispatch(hub, transfer.id)
    ok, damaged, lost = _lines(transfer)
    transfers.receive(lyon_staff, transfer.id, [{"line_id": ok.id, "received": 1},
                                                {"line_id": damaged.id, "received": 1, "damaged": 1},
                                                {"line_id": lost.id, "received": 0}])
    assert _statuses(vials) == ["sealed", "discarded", "discarded"]
    assert fresh(Vial, vials[1].id).status_reason.startswith("damaged in transit")
    assert fresh(Vial, vials[2].id).status_reason.startswith("lost in transit")
    assert fresh(Vial, vials[1].id).site_id == lyon.id and fresh(Vial, vials[2].id).site_id == main_site().id
    counted = [(line.received, line.damaged) for line in _lines(transfer)]
    assert counted == [(1, 0), (1, 1), (0, 0)]
    waste = db.session.scalars(sa.select(StockMovement.vial_id).where(
        StockMovement.kind == "waste", StockMovement.reference_type == "transfer")).all()
    assert sorted(waste) == [vials[1].id, vials[2].id]
    assert fresh(Batch, batch.id).remaining_volume_ml == sum(v.remaining_ml for v in vials_of(batch))


def test_only_a_draft_is_cancelled(make_batch, hub, lyon):
    vials = vials_of(make_batch(units=2))
    draft = _send(hub, lyon, vials[:1])
    transfers.cancel(hub, draft.id, "wrong clinic")
    assert fresh(Transfer, draft.id).status == "cancelled"
    sent = _send(hub, lyon, vials[1:])
    transfers.dispatch(hub, sent.id)
    with pytest.raises(InvalidState, match="only a draft can be cancelled"):
        transfers.cancel(hub, sent.id, "changed my mind")


def test_a_vial_is_used_only_at_its_site_and_never_in_transit(make_batch, make_patient, hub, lyon, lyon_staff,
                                                              practitioner):
    batch = make_batch(units=3)
    vials = vials_of(batch)
    patient = make_patient()
    transfer = _send(hub, lyon, vials[:2])
    transfers.dispatch(hub, transfer.id)
    with pytest.raises(InvalidState, match=f"in transit on {transfer.code}"):
        treatments.record_session(lyon_staff, patient_id=patient.id,
                                  uses=[{"vial_code": vials[0].code, "volume_ml": "1"}])
    transfers.receive(lyon_staff, transfer.id)
    with pytest.raises(InvalidState, match="is at site LYON, not at MAIN"):
        treatments.record_session(practitioner, patient_id=patient.id,
                                  uses=[{"vial_code": vials[0].code, "volume_ml": "1"}])
    # By batch code each site takes its own vials.
    at_main = treatments.record_session(practitioner, patient_id=patient.id,
                                        uses=[{"batch_code": batch.code, "volume_ml": "1"}])
    assert at_main.vial_codes == [vials[2].code] and at_main.site_id == main_site().id
    at_lyon = treatments.record_session(lyon_staff, patient_id=patient.id,
                                        uses=[{"batch_code": batch.code, "volume_ml": "1"}])
    assert at_lyon.vial_codes == [vials[0].code] and fresh(type(at_lyon), at_lyon.id).site_id == lyon.id
    with pytest.raises(InvalidState, match="no vial of it is left to use at this site"):
        treatments.record_session(practitioner, patient_id=patient.id,
                                  uses=[{"batch_code": batch.code, "volume_ml": "1"}])


def test_a_session_at_a_site_the_user_does_not_belong_to_is_refused(make_batch, make_patient, practitioner, lyon):
    batch = make_batch(units=1)
    with pytest.raises(NotAllowed, match="site LYON"):
        treatments.record_session(practitioner, patient_id=make_patient().id, site_id=lyon.id,
                                  uses=[{"batch_code": batch.code, "volume_ml": "1"}])


def test_stock_moves_inside_its_site_but_never_into_another_sites_location(make_batch, make_lot, hub, lyon):
    fridge = Location(site_id=main_site().id, code="LOC-F1", name="Fridge 1", kind="fridge")
    closed = Location(site_id=main_site().id, code="LOC-OLD", name="Old cabinet", kind="cabinet", active=False)
    db.session.add_all([fridge, closed])
    db.session.commit()
    lyon_store = db.session.scalar(sa.select(Location).where(Location.site_id == lyon.id))
    batch = make_batch(units=2)
    with pytest.raises(InvalidState, match="use a transfer"):
        transfers.move_within_site(hub, "batch", batch.code, lyon_store.id)
    with pytest.raises(InvalidInput, match="no longer in use"):
        transfers.move_within_site(hub, "batch", batch.id, closed.id)
    assert fresh(Batch, batch.id).site_id == main_site().id
    transfers.move_within_site(hub, "batch", batch.code, fridge.id)
    assert fresh(Batch, batch.id).location_id == fridge.id
    assert {v.location_id for v in vials_of(batch)} == {fridge.id}
    lot = make_lot(quantity="3")
    transfers.move_within_site(hub, "lot", lot.code, fridge.id)
    assert fresh(Lot, lot.id).location_id == fridge.id and fresh(Lot, lot.id).remaining == 3
    assert [r.action for r in audit_rows(entity_type="lot")][-1] == "lot.moved"


def test_a_lot_line_is_drafted_with_its_quantity(make_lot, hub, lyon):
    lot = make_lot(quantity="10")
    transfer = transfers.create_transfer(hub, main_site().id, lyon.id, [{"lot_id": lot.id, "quantity": "4"}])
    (line,) = _lines(transfer)
    assert (line.kind, line.lot_id, line.quantity) == ("lot", lot.id, Decimal(4))
    assert fresh(Lot, lot.id).remaining == 10  # nothing leaves before dispatch


def test_a_lot_line_makes_a_child_lot_at_the_destination_with_the_damaged_part_written_off(
        make_lot, hub, lyon, lyon_staff):
    lot = make_lot(quantity="10")
    transfer = transfers.create_transfer(hub, main_site().id, lyon.id, [{"lot_id": lot.id, "quantity": "4"}])
    transfers.dispatch(hub, transfer.id, scanned_codes=[lot.code])
    assert fresh(Lot, lot.id).remaining == 6
    (line,) = _lines(transfer)
    transfers.receive(lyon_staff, transfer.id, [{"line_id": line.id, "received": "3", "damaged": "1"}])
    child = fresh(Lot, _lines(transfer)[0].child_lot_id)
    assert (child.parent_lot_id, child.site_id, child.supplier_lot_number) == (lot.id, lyon.id,
                                                                               lot.supplier_lot_number)
    assert (child.quantity_received, child.remaining, child.status) == (3, 2, "released")
