"""A batch's holds, recall, discard and rejection reach its vials; a vial carries holds of its own."""

import pytest
import sqlalchemy as sa
from testkit import PASSWORD, QueryCounter, bearer
from vialkit import use_vial, vials_of

from compounding.extensions import db
from compounding.models import Batch, Hold, StatusChange, StockMovement, Vial
from compounding.services import batches, holds, recalls, treatments, users
from compounding.services.errors import InvalidState


def statuses(batch) -> list[str]:
    return [vial.status for vial in vials_of(batch)]


def vial_history(vial) -> list[tuple]:
    return db.session.execute(sa.select(StatusChange.from_status, StatusChange.to_status)
                              .where(StatusChange.entity_type == "vial", StatusChange.entity_id == vial.id)
                              .order_by(StatusChange.id)).all()


def books_balance(batch) -> bool:
    db.session.expire_all()
    batch = db.session.get(Batch, batch.id)
    return batch.remaining_volume_ml == sum(vial.remaining_ml for vial in vials_of(batch))


def test_a_hold_on_a_batch_holds_its_sealed_and_open_vials_each_with_a_history_row(
        pharmacist, practitioner, make_batch, multiple_dose, make_patient):
    batch = make_batch(multiple_dose, units=3)
    first, second, third = vials_of(batch)
    use_vial(practitioner, make_patient(), first, "2")
    db.session.get(Vial, third.id).status = "discarded"  # a vial already gone stays gone
    db.session.commit()
    holds.quality_signal_hold(pharmacist, "batch", batch.id, "two nodules this week")
    assert statuses(batch) == ["on_hold", "on_hold", "discarded"]
    assert vial_history(first)[-1] == ("open", "on_hold")
    assert vial_history(second)[-1] == ("sealed", "on_hold")


def test_releasing_the_batch_s_last_hold_returns_each_vial_to_its_status_before_the_hold(
        client, pharmacist, practitioner, make_batch, multiple_dose, make_patient):
    batch = make_batch(multiple_dose, units=2)
    first, _ = vials_of(batch)
    use_vial(practitioner, make_patient(), first, "2")
    holds.quality_signal_hold(pharmacist, "batch", batch.id, "two nodules this week")
    headers = bearer(users.create_token(None, pharmacist, "test"))
    response = client.post(f"/api/v1/batches/{batch.id}/release-hold", headers=headers,
                           json={"hold": "quality_signal", "reason": "reviewed", "password": PASSWORD})
    assert response.status_code == 200 and response.get_json()["status"] == "released"
    assert statuses(batch) == ["open", "sealed"]
    assert vial_history(first)[-1] == ("on_hold", "open")


def test_a_serious_event_holds_the_vial_used_which_stays_held_until_its_own_hold_is_released(
        client, pharmacist, practitioner, make_batch, multiple_dose, make_patient):
    batch = make_batch(multiple_dose, units=2)
    used, other = vials_of(batch)
    session_row = use_vial(practitioner, make_patient(), used, "2")
    treatments.record_adverse_event(practitioner, session_id=session_row.id, type="abscess", severity="moderate")
    held = {(h.entity_type, h.entity_id) for h in db.session.scalars(sa.select(Hold))}
    assert held == {("batch", batch.id), ("vial", used.id)}
    assert statuses(batch) == ["on_hold", "on_hold"]
    holds.release_hold(pharmacist, "batch", batch.id, "adverse_event", "batch cleared by the lab", PASSWORD)
    # The batch is back in use, and its other vial; the vial given to the patient is still held.
    assert db.session.get(Batch, batch.id).status == "released"
    assert statuses(batch) == ["on_hold", "sealed"]
    headers = bearer(users.create_token(None, pharmacist, "test"))
    url = f"/api/v1/vials/{used.id}/release-hold"
    other_user = bearer(users.create_token(None, practitioner, "test"))
    body = {"hold": "adverse_event", "reason": "vial cultured: no growth", "password": PASSWORD}
    assert client.post(url, headers=other_user, json=body).status_code == 403
    assert client.post(url, headers=headers, json={**body, "password": "wrong"}).status_code == 403
    assert client.post(url, headers=headers, json={**body, "hold": "excursion"}).status_code == 409
    response = client.post(url, headers=headers, json=body)
    assert response.status_code == 200
    answer = response.get_json()
    assert (answer["code"], answer["status"], answer["holds"]) == (used.code, "open", [])
    assert answer["in_use_until"] is not None
    assert statuses(batch) == ["open", "sealed"]


def test_a_vial_s_own_hold_released_while_its_batch_is_held_keeps_the_vial_on_hold(
        pharmacist, practitioner, make_batch, multiple_dose, make_patient):
    batch = make_batch(multiple_dose, units=2)
    used, _ = vials_of(batch)
    session_row = use_vial(practitioner, make_patient(), used, "2")
    treatments.record_adverse_event(practitioner, session_id=session_row.id, type="necrosis", severity="mild")
    holds.release_hold(pharmacist, "vial", used.id, "adverse_event", "vial cultured: no growth", PASSWORD)
    assert statuses(batch) == ["on_hold", "on_hold"]
    holds.release_hold(pharmacist, "batch", batch.id, "adverse_event", "cleared", PASSWORD)
    assert statuses(batch) == ["open", "sealed"]


def test_a_vial_s_hold_is_not_released_while_its_batch_is_in_an_open_recall(
        pharmacist, practitioner, make_batch, multiple_dose, make_patient):
    batch = make_batch(multiple_dose, units=2)
    used, _ = vials_of(batch)
    session_row = use_vial(practitioner, make_patient(), used, "2")
    treatments.record_adverse_event(practitioner, session_id=session_row.id, type="infection", severity="severe")
    recall = recalls.open_recall(pharmacist, reason="infections", password=PASSWORD, batch_id=batch.id)
    with pytest.raises(InvalidState, match=f"open recall {recall.id}"):
        holds.release_hold(pharmacist, "vial", used.id, "adverse_event", "no growth", PASSWORD)
    db.session.rollback()
    assert statuses(batch) == ["recalled", "recalled"]


def test_a_recall_of_the_batch_recalls_its_sealed_open_and_held_vials_but_not_spent_ones(
        pharmacist, practitioner, make_batch, make_patient):
    batch = make_batch(units=3)
    first, _, third = vials_of(batch)
    use_vial(practitioner, make_patient(), first, "2")  # single-dose: spent
    holds.place_hold(pharmacist, db.session.get(Vial, third.id), "quality_signal", "cloudy")
    recalls.open_recall(pharmacist, reason="supplier alert", password=PASSWORD, batch_id=batch.id)
    assert statuses(batch) == ["spent", "recalled", "recalled"]
    assert vial_history(third)[-1] == ("on_hold", "recalled")


def test_a_recall_of_a_lot_reaches_the_vials_of_every_batch_made_from_it(pharmacist, chain):
    recalls.open_recall(pharmacist, reason="supplier alert", password=PASSWORD, lot_id=chain["lot"].id)
    for batch in (chain["first"], chain["second"]):
        reached = statuses(batch)
        assert "recalled" in reached and set(reached) <= {"recalled", "spent"}


def test_discarding_a_batch_discards_its_vials_writing_off_each_one_s_remainder(
        pharmacist, practitioner, make_batch, multiple_dose, make_patient):
    batch = make_batch(multiple_dose, units=3)
    first, *_ = vials_of(batch)
    use_vial(practitioner, make_patient(), first, "4")
    batches.discard_batch(pharmacist, batch.id, "damaged", "dropped tray")
    assert statuses(batch) == ["discarded"] * 3
    waste = db.session.execute(sa.select(StockMovement.vial_id, StockMovement.quantity, StockMovement.reason)
                               .where(StockMovement.batch_id == batch.id, StockMovement.kind == "waste")
                               .order_by(StockMovement.id)).all()
    assert [(vial_id, quantity) for vial_id, quantity, _ in waste] == [
        (vial.id, -vial.volume_ml + (4 if vial.id == first.id else 0)) for vial in vials_of(batch)]
    assert {reason for *_, reason in waste} == {"damaged"}
    assert db.session.get(Batch, batch.id).remaining_volume_ml == 0 and books_balance(batch)
    assert all(vial.remaining_ml == 0 for vial in vials_of(batch))


def test_rejecting_a_batch_discards_its_vials_and_writes_off_their_volume(make_batch, make_user):
    batch = make_batch(units=2, release=False)
    verifier = make_user("pharmacist")
    batches.reject_batch(verifier, batch.id, PASSWORD, "wrong colour")
    assert statuses(batch) == ["discarded", "discarded"]
    assert all("wrong colour" in vial.status_reason for vial in vials_of(batch))
    assert db.session.get(Batch, batch.id).remaining_volume_ml == 0 and books_balance(batch)


def test_a_hold_reaches_forty_vials_in_as_many_statements_as_two(pharmacist, make_batch):
    small, large = make_batch(units=2), make_batch(units=40)
    counts = []
    for batch in (small, large):
        with QueryCounter(db.engine) as counter:
            holds.quality_signal_hold(pharmacist, "batch", batch.id, "events")
        counts.append(counter.count)
        with QueryCounter(db.engine) as counter:
            holds.release_hold(pharmacist, "batch", batch.id, "quality_signal", "reviewed", PASSWORD)
        counts.append(counter.count)
    assert counts[2:] == counts[:2]
    assert statuses(large) == ["sealed"] * 40
