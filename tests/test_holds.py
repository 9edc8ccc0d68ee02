"""Serious adverse events hold the batches used; held stock is usable nowhere."""

from datetime import timedelta

import pytest
import sqlalchemy as sa
from testkit import PASSWORD, bearer, sign_in

from compounding.extensions import db
from compounding.models import Batch, Hold, Lot
from compounding.services import recalls, treatments, users
from compounding.services.clock import utcnow
from compounding.services.errors import InvalidInput, InvalidState, NotAllowed

SERIOUS = [("infection", "severe"), ("necrosis", "mild")]


def use(batch, volume="2"):
    return {"batch_code": batch.code, "volume_ml": volume, "area": "abdomen"}


@pytest.fixture
def practitioner(make_user):
    return make_user("practitioner")


def _event_after_use(practitioner, batch, patient, type_, severity, *more):
    session_row = treatments.record_session(practitioner, patient_id=patient.id,
                                            uses=[use(batch), *(use(b) for b in more)])
    return treatments.record_adverse_event(practitioner, session_id=session_row.id, type=type_, severity=severity)


# --- the findings: a serious event left the batch looking usable ------------------------------------


@pytest.mark.parametrize(("type_", "severity"), SERIOUS)
def test_after_a_serious_event_the_scan_station_says_do_not_use(client, practitioner, make_batch, make_patient,
                                                                 type_, severity):
    batch = make_batch()
    _event_after_use(practitioner, batch, make_patient(), type_, severity)
    sign_in(client, practitioner)
    page = client.get(f"/scan/?code={batch.code}").get_data(as_text=True)
    assert 'data-usable="no"' in page and "DO NOT USE" in page and "adverse event" in page
    answer = client.get(f"/api/v1/scan?code={batch.code}").get_json()
    assert answer["usable"] is False and any(type_.replace("_", " ") in r for r in answer["reasons"])


@pytest.mark.parametrize(("type_", "severity"), SERIOUS)
def test_after_a_serious_event_the_dashboard_no_longer_lists_the_batch_as_usable(
        client, practitioner, make_batch, make_patient, type_, severity):
    held, other = make_batch(), make_batch()
    _event_after_use(practitioner, held, make_patient(), type_, severity)
    sign_in(client, practitioner)
    page = client.get("/").get_data(as_text=True)
    usable = page.split("Batches usable now", 1)[1]
    assert other.code in usable and held.code not in usable


@pytest.mark.parametrize(("type_", "severity"), SERIOUS)
def test_after_a_serious_event_the_session_form_refuses_the_batch(client, practitioner, make_batch, make_patient,
                                                                   type_, severity):
    batch = make_batch()
    _event_after_use(practitioner, batch, make_patient(), type_, severity)
    patient = make_patient()
    sign_in(client, practitioner)
    response = client.post(f"/treatments/patients/{patient.id}/sessions/new", data={
        "practitioner_id": str(practitioner.id), "performed_at": "", "indication": "", "notes": "",
        "uses-0-batch_code": batch.code, "uses-0-volume_ml": "1", "uses-0-area": ""})
    assert response.status_code == 422
    assert "Do not use" in response.get_data(as_text=True) and "on hold" in response.get_data(as_text=True)


# --- placing holds ----------------------------------------------------------------------------------


def test_a_serious_event_holds_every_batch_of_the_session_in_the_same_transaction(practitioner, make_batch,
                                                                                  make_patient):
    first, second = make_batch(), make_batch()
    event = _event_after_use(practitioner, first, make_patient(), "abscess", "moderate", second)
    held = db.session.scalars(sa.select(Hold).where(Hold.entity_type == "batch").order_by(Hold.entity_id)).all()
    assert [(h.entity_type, h.entity_id, h.kind, h.source_id) for h in held] == [
        ("batch", first.id, "adverse_event", event.id), ("batch", second.id, "adverse_event", event.id)]
    assert {db.session.get(Batch, b.id).status for b in (first, second)} == {"on_hold"}


def test_a_mild_common_reaction_holds_nothing(practitioner, make_batch, make_patient):
    batch = make_batch()
    _event_after_use(practitioner, batch, make_patient(), "redness", "mild")
    assert db.session.get(Batch, batch.id).status == "released"
    assert db.session.scalar(sa.select(sa.func.count(Hold.id))) == 0


def test_a_recalled_batch_stays_recalled_but_its_hold_is_recorded(practitioner, pharmacist, make_batch,
                                                                   make_patient):
    batch = make_batch()
    session_row = treatments.record_session(practitioner, patient_id=make_patient().id, uses=[use(batch)])
    recalls.open_recall(pharmacist, reason="supplier alert", password=PASSWORD, batch_id=batch.id)
    treatments.record_adverse_event(practitioner, session_id=session_row.id, type="granuloma", severity="mild")
    assert db.session.get(Batch, batch.id).status == "recalled"
    assert db.session.scalar(sa.select(Hold.kind).where(Hold.entity_id == batch.id)) == "adverse_event"


# --- releasing holds --------------------------------------------------------------------------------


def _held_batch(practitioner, make_batch, make_patient):
    batch = make_batch()
    _event_after_use(practitioner, batch, make_patient(), "nodule", "mild")
    return db.session.get(Batch, batch.id)


def test_a_pharmacist_releases_the_hold_and_the_batch_is_released_again(practitioner, pharmacist, make_batch,
                                                                        make_patient):
    from compounding.services.holds import release_hold, standing_holds

    batch = _held_batch(practitioner, make_batch, make_patient)
    with pytest.raises(NotAllowed):
        release_hold(practitioner, "batch", batch.id, "adverse_event", "reviewed", PASSWORD)
    with pytest.raises(InvalidInput):
        release_hold(pharmacist, "batch", batch.id, "adverse_event", "  ", PASSWORD)
    with pytest.raises(InvalidState):
        release_hold(pharmacist, "batch", batch.id, "excursion", "reviewed", PASSWORD)
    release_hold(pharmacist, "batch", batch.id, "adverse_event", "nodule unrelated to the batch", PASSWORD)
    assert db.session.get(Batch, batch.id).status == "released"
    assert standing_holds("batch", batch.id) == []


def test_several_reasons_stand_at_once_and_each_is_released_apart(client, practitioner, pharmacist, make_batch,
                                                                  make_patient):
    from compounding.services.holds import quality_signal_hold, release_hold

    batch = _held_batch(practitioner, make_batch, make_patient)
    quality_signal_hold(pharmacist, "batch", batch.id, "2 events in 3 sessions")
    release_hold(pharmacist, "batch", batch.id, "adverse_event", "reviewed", PASSWORD)
    assert db.session.get(Batch, batch.id).status == "on_hold"
    release_hold(pharmacist, "batch", batch.id, "quality_signal", "rate back to normal", PASSWORD)
    assert db.session.get(Batch, batch.id).status == "released"


def test_a_release_while_a_recall_of_the_item_is_open_is_refused(practitioner, pharmacist, make_batch,
                                                                  make_patient):
    from compounding.services.holds import release_hold

    batch = _held_batch(practitioner, make_batch, make_patient)
    recall = recalls.open_recall(pharmacist, reason="events", password=PASSWORD, batch_id=batch.id)
    assert db.session.get(Batch, batch.id).status == "recalled"
    with pytest.raises(InvalidState) as caught:
        release_hold(pharmacist, "batch", batch.id, "adverse_event", "reviewed", PASSWORD)
    assert caught.value.details == {"recall_id": recall.id}


def test_the_api_releases_a_batch_hold_and_answers_the_status_after(client, practitioner, pharmacist, make_batch,
                                                                    make_patient):
    batch = _held_batch(practitioner, make_batch, make_patient)
    headers = bearer(users.create_token(None, pharmacist, "test"))
    answer = client.get(f"/api/v1/batches/{batch.id}", headers=headers).get_json()
    assert answer["status"] == "on_hold" and answer["usable"] is False
    assert [(h["kind"], h["released_at"]) for h in answer["holds"]] == [("adverse_event", None)]
    url = f"/api/v1/batches/{batch.id}/release-hold"
    assert client.post(url, headers=headers, json={"hold": "adverse_event", "password": PASSWORD}).status_code == 422
    other = bearer(users.create_token(None, practitioner, "test"))
    response = client.post(url, headers=other, json={"hold": "adverse_event", "reason": "ok", "password": PASSWORD})
    assert response.status_code == 403
    response = client.post(url, headers=headers, json={"hold": "adverse_event", "reason": "ok", "password": "bad"})
    assert response.status_code == 403
    response = client.post(url, headers=headers, json={"hold": "adverse_event", "reason": "ok", "password": PASSWORD})
    assert response.status_code == 200 and response.get_json()["status"] == "released"


def test_a_held_lot_leaves_fefo_and_its_release_returns_it(client, pharmacist, make_lot, make_ingredient,
                                                           make_formula):
    from compounding.services.batches import propose
    from compounding.services.holds import quality_signal_hold

    ingredient = make_ingredient()
    first = make_lot(ingredient, expires_on=None)
    second = make_lot(ingredient)
    first.expires_on = second.expires_on - timedelta(days=30)
    db.session.commit()
    formula = make_formula(components=[(ingredient, "1")], unit_volume_ml="1")
    assert list(propose(formula, 1)[0].proposed) == [first.id]
    quality_signal_hold(pharmacist, "lot", first.id, "events")
    assert db.session.get(Lot, first.id).status == "on_hold"
    assert list(propose(formula, 1)[0].proposed) == [second.id]
    headers = bearer(users.create_token(None, pharmacist, "test"))
    answer = client.get(f"/api/v1/scan?code={first.code}", headers=headers).get_json()
    assert answer["usable"] is False and any("quality signal" in r for r in answer["reasons"])
    response = client.post(f"/api/v1/lots/{first.id}/release-hold", headers=headers,
                           json={"hold": "quality_signal", "reason": "reviewed", "password": PASSWORD})
    assert response.status_code == 200 and response.get_json()["status"] == "released"


def test_a_label_of_a_held_batch_or_lot_is_refused_naming_the_holds(client, practitioner, pharmacist, make_batch,
                                                                    make_patient, make_lot):
    from compounding.services.holds import quality_signal_hold

    batch = _held_batch(practitioner, make_batch, make_patient)
    lot = make_lot()
    quality_signal_hold(pharmacist, "lot", lot.id, "events after use")
    sign_in(client, pharmacist)
    response = client.get(f"/batches/{batch.id}/label")
    assert response.status_code == 409 and "adverse event" in response.get_data(as_text=True)
    response = client.get(f"/lots/{lot.id}/label")
    assert response.status_code == 409 and "quality signal" in response.get_data(as_text=True)
    headers = bearer(users.create_token(None, pharmacist, "test"))
    response = client.get(f"/api/v1/batches/{batch.id}/label", headers=headers)
    assert response.status_code == 409 and "on hold" in response.get_json()["error"]


def test_the_batch_page_shows_the_holds_and_a_release_form_for_pharmacists(client, practitioner, pharmacist,
                                                                           make_batch, make_patient):
    batch = _held_batch(practitioner, make_batch, make_patient)
    sign_in(client, pharmacist)
    page = client.get(f"/batches/{batch.id}").get_data(as_text=True)
    assert "Hold reasons" in page and "nodule" in page and "Release this hold" in page
    response = client.post(f"/batches/{batch.id}/release-hold", data={
        "hold": "adverse_event", "reason": "reviewed", "password": PASSWORD})
    assert response.status_code == 302
    assert db.session.get(Batch, batch.id).status == "released"


def test_the_dashboard_quality_signal_click_places_a_hold(client, practitioner, pharmacist, make_batch,
                                                          make_patient):
    batch = make_batch()
    _event_after_use(practitioner, batch, make_patient(), "bruising", "mild")
    sign_in(client, pharmacist)
    response = client.post(f"/quality-signals/batch/{batch.id}/hold", data={"reason": "quality signal: 1 event"})
    assert response.status_code == 302
    assert db.session.scalar(sa.select(Hold.kind).where(Hold.entity_id == batch.id)) == "quality_signal"
    assert db.session.get(Batch, batch.id).status == "on_hold"


def test_a_session_performed_before_the_hold_was_placed_is_judged_at_its_time(practitioner, make_batch,
                                                                              make_patient):
    batch = make_batch()
    before_hold = batch.verified_at + (utcnow() - batch.verified_at) / 2
    _event_after_use(practitioner, batch, make_patient(), "infection", "severe")
    late = treatments.record_session(practitioner, patient_id=make_patient().id, uses=[use(batch, "1")],
                                     performed_at=before_hold)
    assert late.performed_at == before_hold
    with pytest.raises(InvalidState) as caught:
        treatments.record_session(practitioner, patient_id=make_patient().id, uses=[use(batch, "1")])
    assert "on hold: adverse event: severe infection" in caught.value.message


def test_the_usability_rule_names_the_hold_reasons_without_a_database(app):
    from datetime import UTC, datetime
    from decimal import Decimal

    from compounding.services.batches import unusable_reasons

    made = datetime(2026, 1, 5, 9, tzinfo=UTC)
    batch = Batch(code="B2601050001", status="released", compounded_at=made, verified_at=made,
                  beyond_use_at=made + timedelta(days=2), remaining_volume_ml=Decimal("5"), status_reason="")
    at = made + timedelta(hours=1)
    assert unusable_reasons(batch, at) == []
    assert unusable_reasons(batch, at, holds=["adverse event: severe infection"]) == [
        "on hold: adverse event: severe infection"]
    assert unusable_reasons(batch, at, status="on_hold") == ["on hold"]
    assert unusable_reasons(batch, at, status="recalled") == ["recalled"]


# --- held stock that reaches zero -------------------


def _waste_all(actor, lot):
    from compounding.services import inventory

    return inventory.adjust_lot(actor, lot.id, reason="damaged", quantity=str(lot.remaining), direction="out")


def test_a_held_lot_wasted_to_zero_is_depleted_and_stays_so_when_the_hold_is_released(pharmacist, make_lot):
    from compounding.services import inventory
    from compounding.services.holds import quality_signal_hold, release_hold

    lot = make_lot()
    quality_signal_hold(pharmacist, "lot", lot.id, "events after use")
    assert _waste_all(pharmacist, lot).status == "depleted"
    with pytest.raises(InvalidState) as caught:
        inventory.adjust_lot(pharmacist, lot.id, reason="count_correction", quantity="5", direction="in",
                             note="found a bottle", password=PASSWORD)
    assert "depleted" in caught.value.message
    release_hold(pharmacist, "lot", lot.id, "quality_signal", "reviewed", PASSWORD)
    lot = db.session.get(Lot, lot.id)
    assert (lot.status, lot.remaining) == ("depleted", 0)
    assert db.session.scalar(sa.select(Hold.released_at).where(Hold.entity_id == lot.id)) is not None


def test_a_quarantined_lot_wasted_to_zero_is_depleted_through_its_history(pharmacist, make_lot):
    from compounding.services.history import history_of

    lot = make_lot(release=False)
    assert _waste_all(pharmacist, lot).status == "depleted"
    assert [(row.from_status, row.to_status) for row in history_of("lot", lot.id)][-1] == ("quarantine", "depleted")


def test_a_held_batch_emptied_by_a_session_entered_late_is_depleted_and_stays_so(practitioner, pharmacist,
                                                                                  make_batch, make_patient):
    import time

    from compounding.services.holds import quality_signal_hold, release_hold

    batch = make_batch()
    performed_at = utcnow()
    time.sleep(0.01)  # the hold comes after the session it did not stop
    quality_signal_hold(pharmacist, "batch", batch.id, "events after use")
    treatments.record_session(practitioner, patient_id=make_patient().id, uses=[use(batch, "10")] * 2,
                              performed_at=performed_at)
    batch = db.session.get(Batch, batch.id)
    assert (batch.status, batch.remaining_volume_ml) == ("depleted", 0)
    release_hold(pharmacist, "batch", batch.id, "quality_signal", "reviewed", PASSWORD)
    assert db.session.get(Batch, batch.id).status == "depleted"


def test_a_lot_left_on_hold_at_zero_by_earlier_code_is_depleted_when_its_hold_is_released(pharmacist, make_lot):
    from compounding.services.holds import quality_signal_hold, release_hold
    from compounding.services.ledger import move_lot

    lot = make_lot()
    quality_signal_hold(pharmacist, "lot", lot.id, "events after use")
    # What a waste of a held lot did before: emptied, still on hold.
    move_lot(lot, "waste", -lot.remaining, pharmacist, reason="damaged", reference_type="adjustment")
    db.session.commit()
    assert db.session.get(Lot, lot.id).status == "on_hold"
    assert release_hold(pharmacist, "lot", lot.id, "quality_signal", "reviewed", PASSWORD).status == "depleted"
