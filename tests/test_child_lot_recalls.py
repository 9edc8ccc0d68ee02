"""A recall or a hold of a lot reaches its child lots (sent to another site) and what was made from them.

A partial transfer makes a child lot at the destination: the same supplier lot. Its batches,
their vials and the patients treated with them are in the parent lot's recall (its contact list
grouped under the child's site), a late entry on them joins and reopens the parent's recall, voiding
one of their sessions needs a pharmacist, their adverse events count in the parent's quality signal,
and the parent's recall or hold marks the child lots too. A child lot recalled on its own leaves the
parent alone.
"""

import pytest
import sqlalchemy as sa
from testkit import PASSWORD, QueryCounter, audit_rows, sign_in

from compounding.extensions import db
from compounding.models import Batch, BatchComponent, Ingredient, Location, Lot, Recall, Site, Vial
from compounding.models.exposure import ALL_SITES, exposure_patients
from compounding.queries.recalls import late_sessions, progress_for, recall_record
from compounding.services import batches, exposure, holds, recalls, signals, sites, transfers, treatments, voids
from compounding.services.clock import utcnow
from compounding.services.errors import InvalidState, NotAllowed
from compounding.services.history import history_of
from compounding.services.sites import main_site


@pytest.fixture
def suspect_quantity() -> str:
    """More than `chain`'s two batches take: what is left is sent to LYON."""
    return "20"


def fresh(model, item_id):
    return db.session.get(model, item_id, populate_existing=True)


@pytest.fixture
def lyon(app):
    site = Site(code="LYON", name="Lyon", timezone="Europe/Paris", address="", active=True, created_at=utcnow())
    db.session.add(site)
    db.session.flush()
    db.session.add(Location(site_id=site.id, code="LOC0900", name="Lyon store", kind="room", is_default=True))
    db.session.commit()
    return site


@pytest.fixture
def sent(chain, lyon, make_user, make_patient):
    """Part of the suspect lot (and saline) sent to LYON, a batch compounded there from the child lot, used there."""
    parent = chain["lot"]
    saline = db.session.scalar(sa.select(Lot).join(Ingredient, Ingredient.id == Lot.ingredient_id)
                               .where(Ingredient.name == "Saline").order_by(Lot.id).limit(1))
    hub = chain["pharmacist"]
    receiver = make_user("practitioner", username="lyon-doc", site_codes=["LYON"])
    technician = make_user("technician", username="lyon-tech", site_codes=["LYON"])
    sites.join_sites(hub, [lyon.id])
    db.session.commit()
    transfer = transfers.create_transfer(hub, main_site().id, lyon.id, [
        {"lot_id": parent.id, "quantity": "6"}, {"lot_id": saline.id, "quantity": "100"}])
    transfers.dispatch(hub, transfer.id)
    transfers.receive(receiver, transfer.id)
    child = db.session.scalar(sa.select(Lot).where(Lot.parent_lot_id == parent.id))
    store = db.session.scalar(sa.select(Location.id).where(Location.code == "LOC0900"))
    batch = batches.compound_batch(technician, chain["first"].formula_id, 1, location_id=store)
    batches.verify_batch(hub, batch.id, PASSWORD)
    patient = make_patient(chart_number="CH-LYON")
    session = treatments.record_session(receiver, patient_id=patient.id, site_id=lyon.id,
                                        uses=[{"batch_code": batch.code, "volume_ml": "2"}])
    return {**chain, "parent": parent, "child": child, "batch": batch, "patient": patient, "session": session,
            "receiver": receiver, "lyon": lyon, "hub": hub}


def _recall(sent) -> Recall:
    return recalls.open_recall(sent["hub"], lot_id=sent["parent"].id, reason="endotoxin", password=PASSWORD)


def test_the_fixture_compounds_from_the_child_lot_at_lyon(sent):
    child, batch = sent["child"], sent["batch"]
    assert (child.site_id, child.parent_lot_id) == (sent["lyon"].id, sent["parent"].id)
    assert batch.site_id == sent["lyon"].id
    assert child.id in set(db.session.scalars(sa.select(BatchComponent.lot_id).where(
        BatchComponent.batch_id == batch.id)))


def test_a_recall_of_the_parent_recalls_the_child_lot_its_batch_and_vials_and_reaches_the_patient(sent, client):
    recall = _recall(sent)
    assert fresh(Lot, sent["parent"].id).status == "recalled"
    assert fresh(Lot, sent["child"].id).status == "recalled"
    assert fresh(Batch, sent["batch"].id).status == "recalled"
    assert {v.status for v in db.session.scalars(sa.select(Vial).where(Vial.batch_id == sent["batch"].id))} == {
        "recalled"}
    record = recall_record(recall.id)
    lyon_rows = [row for row in record.scope.patients if row.site_code == "LYON"]
    assert [row.id for row in lyon_rows] == [sent["patient"].id]
    assert record.progress == {"contacted": 0, "total": 4}
    assert progress_for([recall.id]) == {recall.id: (0, 4)}
    # The patient treated at LYON is in the scope: a contact is recorded and counts.
    recalls.record_contact(sent["receiver"], recall.id, sent["patient"].id, "phone")
    assert progress_for([recall.id]) == {recall.id: (1, 4)}
    assert recalls.patients_without_outcome(fresh(Recall, recall.id)) == 3
    sign_in(client, sent["hub"])
    page = client.get(f"/recalls/{recall.id}").get_data(as_text=True)
    assert "CH-LYON" in page and "LYON" in page


def test_a_child_lot_recalled_on_its_own_leaves_the_parent_alone(sent):
    recalls.open_recall(sent["hub"], lot_id=sent["child"].id, reason="fridge failure", password=PASSWORD)
    assert fresh(Lot, sent["child"].id).status == "recalled"
    assert fresh(Lot, sent["parent"].id).status != "recalled"
    assert fresh(Batch, sent["first"].id).status == "released"


def _close_everyone_reached(sent, recall) -> None:
    for patient in (sent["a"], sent["b"], sent["c"], sent["patient"]):
        recalls.record_contact(sent["receiver"] if patient is sent["patient"] else sent["practitioner"],
                               recall.id, patient.id, "phone")
    recalls.close_recall(sent["hub"], recall.id, "Everyone reached", PASSWORD)
    assert fresh(Recall, recall.id).status == "closed"


def test_a_late_session_on_a_child_lot_batch_joins_the_parents_recall_and_reopens_it(sent):
    recall = _recall(sent)
    _close_everyone_reached(sent, recall)
    first = sent["session"]
    late = treatments.record_session(sent["receiver"], patient_id=sent["patient"].id, site_id=sent["lyon"].id,
                                     uses=[{"batch_code": sent["batch"].code, "volume_ml": "1"}],
                                     performed_at=first.performed_at + (recall.opened_at - first.performed_at) / 2)
    recall = fresh(Recall, recall.id)
    assert recall.status == "open"
    assert late.id in late_sessions(recall)
    # The outcome recorded before the late entry no longer counts: the patient is contacted again.
    assert progress_for([recall.id]) == {recall.id: (3, 4)}
    assert recalls.patients_without_outcome(recall) == 1
    assert [r.id for r in voids.recalls_reaching(late.id)] == [recall.id]


def test_voiding_a_child_lot_session_in_an_open_recall_needs_a_pharmacist(sent):
    _recall(sent)
    session_id = sent["session"].id
    assert any("open recall" in why for why in voids.signature_reasons(session_id))
    with pytest.raises(NotAllowed):
        voids.void_session(sent["receiver"], session_id, reason_code="entered_in_error", reason="wrong day")
    db.session.rollback()
    voids.void_session(sent["hub"], session_id, reason_code="entered_in_error", reason="wrong day",
                       password=PASSWORD)


def test_adverse_events_on_a_child_lot_batch_count_in_the_parent_lots_signal(sent):
    treatments.record_adverse_event(sent["receiver"], session_id=sent["session"].id, type="infection",
                                    severity="moderate")
    signal = signals.signal_for("lot", sent["parent"].id)
    assert signal is not None and signal.events == 1 and signal.event_patients == 1
    assert signal.patients == 4  # the same scope as its exposure: the child lot's patient is one of them
    assert signals.adverse_event_counts("lot", [sent["parent"].id]) == {sent["parent"].id: (1, 1)}
    listed = {(s.kind, s.id) for s in signals.quality_signals()}
    assert ("lot", sent["parent"].id) in listed and ("lot", sent["child"].id) in listed


def test_a_hold_on_the_parent_holds_the_child_lot_and_its_release_releases_it(sent):
    parent, child = sent["parent"], sent["child"]
    holds.quality_signal_hold(sent["hub"], "lot", parent.id, "infections at two sites")
    assert fresh(Lot, child.id).status == "on_hold"
    held = history_of("lot", child.id)[-1]
    assert (held.to_status, held.reference) == ("on_hold", f"lot {parent.id}") and parent.code in held.reason
    assert [r.action for r in audit_rows(entity_type="lot") if r.entity_id == child.id][-1] == "lot.held_with_parent"
    holds.release_hold(sent["hub"], "lot", parent.id, "quality_signal", "cultures negative", PASSWORD)
    assert fresh(Lot, parent.id).status == "released" and fresh(Lot, child.id).status == "released"


def test_a_child_lot_with_a_hold_of_its_own_stays_held_when_the_parent_is_released(sent):
    parent, child = sent["parent"], sent["child"]
    holds.quality_signal_hold(sent["hub"], "lot", child.id, "fridge excursion at LYON")
    assert fresh(Lot, parent.id).status == "released"  # a child's hold leaves the parent alone
    holds.quality_signal_hold(sent["hub"], "lot", parent.id, "infections")
    holds.release_hold(sent["hub"], "lot", parent.id, "quality_signal", "cultures negative", PASSWORD)
    assert fresh(Lot, child.id).status == "on_hold"
    holds.release_hold(sent["hub"], "lot", child.id, "quality_signal", "fridge checked", PASSWORD)
    assert fresh(Lot, child.id).status == "released"


def test_the_child_lot_stays_held_while_its_parent_is(sent):
    parent, child = sent["parent"], sent["child"]
    holds.quality_signal_hold(sent["hub"], "lot", parent.id, "infections")
    holds.quality_signal_hold(sent["hub"], "lot", child.id, "and here too")
    rows = len(history_of("lot", child.id))
    holds.release_hold(sent["hub"], "lot", child.id, "quality_signal", "checked here", PASSWORD)
    assert fresh(Lot, child.id).status == "on_hold" and len(history_of("lot", child.id)) == rows
    assert fresh(Lot, parent.id).status == "on_hold"


def test_a_child_lots_hold_stays_while_the_parents_recall_is_open(sent):
    child = sent["child"]
    holds.quality_signal_hold(sent["hub"], "lot", child.id, "fridge excursion")
    _recall(sent)
    with pytest.raises(InvalidState, match="open recall"):
        holds.release_hold(sent["hub"], "lot", child.id, "quality_signal", "fridge checked", PASSWORD)
    db.session.rollback()
    assert holds.open_recall_of("batch", sent["batch"].id) is not None


def test_exposure_check_finds_drift_in_a_membership_table(sent):
    assert exposure.check_all()[0] == []
    m = exposure_patients
    db.session.execute(sa.update(m).where(m.c.kind == "lot", m.c.item_id == sent["parent"].id,
                                          m.c.site_id == ALL_SITES, m.c.patient_id == sent["patient"].id)
                       .values(uses=m.c.uses + 5))
    drifts, _ = exposure.check_all()
    assert [(d.kind, d.item_id, d.site_id) for d in drifts] == [("lot", sent["parent"].id, ALL_SITES)]
    assert "patient" in drifts[0].field and str(sent["patient"].id) in drifts[0].field
    db.session.execute(sa.delete(m).where(m.c.kind == "lot", m.c.item_id == sent["child"].id))
    drifts, _ = exposure.check_all()
    assert {(d.kind, d.item_id) for d in drifts} == {("lot", sent["parent"].id), ("lot", sent["child"].id)}


def test_the_recall_reads_stay_bounded_however_deep_the_lineage(sent, make_patient):
    recall = _recall(sent)

    def statements() -> int:
        db.session.expire_all()
        with QueryCounter(db.engine) as counter:
            progress_for([recall.id])
            late_sessions(fresh(Recall, recall.id))
            voids.recalls_reaching(sent["session"].id)
            recalls.patients_without_outcome(fresh(Recall, recall.id))
        return counter.count

    before = statements()
    # A grandchild lot (the child sent on once more): the same statements, no more.
    grandchild = fresh(Lot, sent["child"].id)
    db.session.add(Lot(code="L-GRAND", ingredient_id=grandchild.ingredient_id, supplier=grandchild.supplier,
                       supplier_lot_number=grandchild.supplier_lot_number + "-G", received_at=utcnow(),
                       received_by_id=sent["hub"].id,
                       expires_on=grandchild.expires_on, quantity_received=1, remaining=1, status="recalled",
                       parent_lot_id=grandchild.id, site_id=grandchild.site_id,
                       location_id=grandchild.location_id))
    db.session.commit()
    assert statements() == before


@pytest.mark.parametrize("what", ["recall", "hold"])
def test_a_child_lot_received_after_its_parent_was_recalled_or_held_on_the_road_arrives_so(chain, lyon, make_user,
                                                                                          what):
    parent, hub = chain["lot"], chain["pharmacist"]
    receiver = make_user("practitioner", username="lyon-doc", site_codes=["LYON"])
    sites.join_sites(hub, [lyon.id])
    db.session.commit()
    transfer = transfers.create_transfer(hub, main_site().id, lyon.id, [{"lot_id": parent.id, "quantity": "3"}])
    transfers.dispatch(hub, transfer.id)
    if what == "recall":
        recalls.open_recall(hub, lot_id=parent.id, reason="endotoxin", password=PASSWORD)
    else:
        holds.quality_signal_hold(hub, "lot", parent.id, "three nodules")
    transfers.receive(receiver, transfer.id)
    child = db.session.scalar(sa.select(Lot).where(Lot.parent_lot_id == parent.id))
    assert child.status == ("recalled" if what == "recall" else "on_hold")
    if what == "hold":  # released with its parent, it is a released lot like its parent was
        holds.release_hold(hub, "lot", parent.id, "quality_signal", "cultures negative", PASSWORD)
        assert fresh(Lot, child.id).status == "released"
