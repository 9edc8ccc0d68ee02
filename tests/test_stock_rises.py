"""Stock only goes up with a signature: rises signed, capped, never a revival."""

from decimal import Decimal

import pytest
import sqlalchemy as sa
from testkit import PASSWORD, bearer

from compounding.extensions import db
from compounding.models import Lot, Signature, StockMovement
from compounding.services import inventory, users
from compounding.services.errors import InvalidInput, InvalidState, NotAllowed, SignatureRejected


@pytest.fixture
def biotin_lot(make_ingredient, make_lot, technician):
    """A biotin lot received as 40 mL, 7 mL of it since wasted: 33 mL left."""
    lot = make_lot(make_ingredient(name="Biotin", unit="mL"), quantity="40")
    inventory.adjust_lot(technician, lot.id, reason="damaged", quantity="7", note="vial cracked")
    return lot


def _remaining(lot_id: int) -> Decimal:
    db.session.expire_all()
    return db.session.get(Lot, lot_id).remaining


def _movements(lot_id: int) -> int:
    return db.session.scalar(sa.select(sa.func.count(StockMovement.id)).where(StockMovement.lot_id == lot_id))


def test_a_technicians_count_correction_upwards_is_refused_and_changes_nothing(biotin_lot, technician):
    before = _movements(biotin_lot.id)
    with pytest.raises(NotAllowed) as caught:
        inventory.adjust_lot(technician, biotin_lot.id, reason="count_correction", quantity="500",
                             direction="in", note="found more", password=PASSWORD)
    assert "pharmacist" in caught.value.message
    assert _remaining(biotin_lot.id) == Decimal("33") and _movements(biotin_lot.id) == before


def test_a_return_to_stock_is_a_pharmacists_signed_action_too(biotin_lot, technician, pharmacist):
    with pytest.raises(NotAllowed):
        inventory.adjust_lot(technician, biotin_lot.id, reason="returned_to_stock", quantity="2",
                             direction="in", note="unopened vial back from room 2")
    inventory.adjust_lot(pharmacist, biotin_lot.id, reason="returned_to_stock", quantity="2",
                         direction="in", note="unopened vial back from room 2", password=PASSWORD)
    assert _remaining(biotin_lot.id) == Decimal("35")


def test_a_pharmacist_raises_a_lot_with_a_signature_meaning_stock_raised(biotin_lot, pharmacist):
    inventory.adjust_lot(pharmacist, biotin_lot.id, reason="count_correction", quantity="5", direction="in",
                         note="recount", password=PASSWORD)
    assert _remaining(biotin_lot.id) == Decimal("38")
    signature = db.session.scalar(sa.select(Signature).where(Signature.entity_type == "lot",
                                                             Signature.entity_id == biotin_lot.id,
                                                             Signature.meaning == "stock raised"))
    assert signature is not None and signature.signer_id == pharmacist.id


def test_a_rise_with_a_wrong_or_missing_password_changes_nothing(biotin_lot, pharmacist):
    for password in ("wrong-password", None):
        with pytest.raises(SignatureRejected):
            inventory.adjust_lot(pharmacist, biotin_lot.id, reason="count_correction", quantity="5",
                                 direction="in", note="recount", password=password)
    assert _remaining(biotin_lot.id) == Decimal("33")
    assert db.session.scalar(sa.select(sa.func.count(Signature.id)).where(Signature.meaning == "stock raised")) == 0


def test_nothing_raises_a_lot_above_its_quantity_received_naming_both(biotin_lot, pharmacist):
    with pytest.raises(InvalidState) as caught:
        inventory.adjust_lot(pharmacist, biotin_lot.id, reason="count_correction", quantity="500",
                             direction="in", note="found more", password=PASSWORD)
    assert "533" in caught.value.message and "40" in caught.value.message
    assert _remaining(biotin_lot.id) == Decimal("33")
    inventory.adjust_lot(pharmacist, biotin_lot.id, reason="count_correction", quantity="7", direction="in",
                         note="the cracked vial was found intact", password=PASSWORD)
    assert _remaining(biotin_lot.id) == Decimal("40")


def test_a_depleted_lot_is_not_brought_back_to_released_by_an_adjustment(make_lot, technician, pharmacist):
    lot = make_lot(quantity="10")
    inventory.adjust_lot(technician, lot.id, reason="damaged", quantity="10", note="dropped")
    assert db.session.get(Lot, lot.id).status == "depleted"
    with pytest.raises(InvalidState) as caught:
        inventory.adjust_lot(pharmacist, lot.id, reason="count_correction", quantity="4", direction="in",
                             note="recount", password=PASSWORD)
    assert "depleted" in caught.value.message
    db.session.expire_all()
    assert db.session.get(Lot, lot.id).status == "depleted" and db.session.get(Lot, lot.id).remaining == 0


def test_a_rejected_lot_is_not_brought_back_by_an_adjustment(make_lot, make_user, pharmacist):
    lot = make_lot(quantity="10", release=False)
    inventory.reject_lot(make_user("pharmacist"), lot.id, PASSWORD, "certificate missing")
    inventory.adjust_lot(make_user("technician"), lot.id, reason="returned_to_supplier", quantity="10")
    with pytest.raises(InvalidState):
        inventory.adjust_lot(pharmacist, lot.id, reason="count_correction", quantity="1", direction="in",
                             note="recount", password=PASSWORD)
    assert _remaining(lot.id) == 0 and db.session.get(Lot, lot.id).status == "rejected"


@pytest.mark.parametrize("quantity", ["0", "1.0001", "-3"])
def test_an_adjustment_of_zero_or_too_many_decimals_is_refused_and_changes_nothing(biotin_lot, pharmacist,
                                                                                  quantity):
    before = _movements(biotin_lot.id)
    with pytest.raises(InvalidInput):
        inventory.adjust_lot(pharmacist, biotin_lot.id, reason="damaged", quantity=quantity, note="x")
    assert _remaining(biotin_lot.id) == Decimal("33") and _movements(biotin_lot.id) == before


# --- API ---------------------------------------------------------------------------------------------


def _adjust(client, user, lot_id, **body):
    body = {"reason": "count_correction", "direction": "in", "note": "recount", **body}
    return client.post(f"/api/v1/lots/{lot_id}/adjust", json=body,
                       headers=bearer(users.create_token(None, user, "test")))


def test_the_api_refuses_a_rise_without_a_pharmacists_signature_with_403(client, biotin_lot, technician,
                                                                         pharmacist):
    response = _adjust(client, technician, biotin_lot.id, quantity="500", password=PASSWORD)
    assert response.status_code == 403 and "pharmacist" in response.json["error"]
    response = _adjust(client, pharmacist, biotin_lot.id, quantity="5")
    assert response.status_code == 403
    assert _remaining(biotin_lot.id) == Decimal("33")


def test_the_api_raises_a_lot_with_the_pharmacists_password(client, biotin_lot, pharmacist):
    response = _adjust(client, pharmacist, biotin_lot.id, quantity="5", password=PASSWORD)
    assert response.status_code == 200 and response.json["remaining"] == "38"


def test_the_api_answers_409_above_the_quantity_received_naming_both(client, biotin_lot, pharmacist):
    response = _adjust(client, pharmacist, biotin_lot.id, quantity="500", password=PASSWORD)
    assert response.status_code == 409
    assert "533" in response.json["error"] and "40" in response.json["error"]
    assert response.json["details"]["quantity_received"] == "40"
    assert _remaining(biotin_lot.id) == Decimal("33")


@pytest.mark.parametrize("quantity", ["0", "1.0001"])
def test_the_api_answers_422_for_zero_or_too_many_decimals(client, biotin_lot, pharmacist, quantity):
    response = _adjust(client, pharmacist, biotin_lot.id, quantity=quantity, direction="out", reason="damaged")
    assert response.status_code == 422
    assert _remaining(biotin_lot.id) == Decimal("33")


# --- the lot page ------------------------------------------------------------------------------------


def test_the_lot_pages_adjust_form_asks_for_a_password_for_a_rise(client, as_role, biotin_lot):
    as_role("pharmacist")
    page = client.get(f"/lots/{biotin_lot.id}").get_data(as_text=True)
    assert 'id="adjust-password"' in page and 'type="password"' in page
    response = client.post(f"/lots/{biotin_lot.id}/adjust", data={
        "adjust-reason": "count_correction", "adjust-direction": "in", "adjust-quantity": "5",
        "adjust-note": "recount"})
    assert response.status_code == 422 and "password is not correct" in response.get_data(as_text=True)
    assert _remaining(biotin_lot.id) == Decimal("33")
    response = client.post(f"/lots/{biotin_lot.id}/adjust", data={
        "adjust-reason": "count_correction", "adjust-direction": "in", "adjust-quantity": "5",
        "adjust-note": "recount", "adjust-password": PASSWORD})
    assert response.status_code == 302 and _remaining(biotin_lot.id) == Decimal("38")
