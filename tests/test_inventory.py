"""Inventory rules: receiving, release and reject, adjustments, expiry and the ledger."""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from testkit import PASSWORD

from compounding.extensions import db
from compounding.models import AuditEvent, Lot, Signature, StockMovement
from compounding.services import expiry, inventory
from compounding.services.errors import (
    InsufficientStock,
    InvalidInput,
    InvalidState,
    NotAllowed,
    SignatureRejected,
)
from compounding.services.ledger import ledger_balance


def counts():
    return (db.session.scalar(sa.select(sa.func.count(Lot.id))),
            db.session.scalar(sa.select(sa.func.count(StockMovement.id))))


def receive(user, ingredient, **overrides):
    data = dict(ingredient_id=ingredient.id, supplier="Lipo Pharma", supplier_lot_number="PC-1",
                expires_on=date.today() + timedelta(days=200), quantity=Decimal("100"))
    data.update(overrides)
    return inventory.receive_lot(user, **data)


def test_a_received_lot_gets_its_code_lands_in_quarantine_and_writes_a_receive_row(
        technician, make_ingredient):
    ingredient = make_ingredient()
    lot = receive(technician, ingredient, quantity=Decimal("12.5"))
    assert lot.code == "L000001"
    assert lot.status == "quarantine"
    assert lot.remaining == Decimal("12.5")
    movement = db.session.scalar(sa.select(StockMovement).where(StockMovement.lot_id == lot.id))
    assert (movement.kind, movement.quantity) == ("receive", Decimal("12.5"))
    assert movement.actor_id == technician.id
    assert db.session.scalar(sa.select(AuditEvent.action).where(
        AuditEvent.entity_type == "lot", AuditEvent.entity_id == lot.id)) == "lot.received"


def test_lot_codes_count_up_with_six_digits(technician, make_ingredient):
    ingredient = make_ingredient()
    codes = [receive(technician, ingredient, supplier_lot_number=f"X{i}").code for i in range(3)]
    assert codes == ["L000001", "L000002", "L000003"]


@pytest.mark.parametrize("quantity, message", [
    ("0", "greater than zero"), ("-1", "greater than zero"), ("1.2345", "3 decimals"),
    ("abc", "number"), ("NaN", "number"), ("1e20", "too large"),
])
def test_a_bad_quantity_is_refused_and_nothing_is_saved(technician, make_ingredient, quantity, message):
    ingredient = make_ingredient()
    before = counts()
    with pytest.raises(InvalidInput) as caught:
        receive(technician, ingredient, quantity=quantity)
    assert message in caught.value.message and caught.value.field == "quantity"
    db.session.rollback()
    assert counts() == before


def test_a_lot_already_expired_at_receipt_is_refused(technician, make_ingredient):
    ingredient = make_ingredient()
    with pytest.raises(InvalidInput) as caught:
        receive(technician, ingredient, expires_on=date.today() - timedelta(days=2))
    assert caught.value.field == "expiry_date"


def test_the_same_supplier_lot_twice_is_refused_with_the_existing_code(technician, make_ingredient):
    ingredient = make_ingredient()
    first = receive(technician, ingredient)
    with pytest.raises(InvalidState) as caught:
        receive(technician, ingredient)
    assert first.code in caught.value.message
    assert caught.value.details["existing_lot_id"] == first.id


def test_the_same_lot_number_from_another_supplier_is_a_different_lot(technician, make_ingredient):
    ingredient = make_ingredient()
    receive(technician, ingredient)
    assert receive(technician, ingredient, supplier="Other supplier").code == "L000002"


def test_an_unknown_ingredient_is_refused(technician):
    with pytest.raises(InvalidInput) as caught:
        inventory.receive_lot(technician, ingredient_id=999, supplier="S", supplier_lot_number="1",
                              expires_on=date.today() + timedelta(days=10), quantity=Decimal("1"))
    assert caught.value.field == "ingredient_id"


def test_a_bad_gtin_check_digit_is_refused(technician, make_ingredient):
    with pytest.raises(InvalidInput) as caught:
        receive(technician, make_ingredient(), gtin="05012345000016")
    assert caught.value.field == "gtin"


def test_month_only_expiry_is_the_last_day_of_the_month():
    assert expiry.parse_expiry("2028-02") == date(2028, 2, 29)
    assert expiry.parse_expiry("2027-11") == date(2027, 11, 30)
    assert expiry.parse_expiry("2027-06-15") == date(2027, 6, 15)
    for bad in ("2027-02-30", "2027-13", "27-06", "", "tomorrow"):
        with pytest.raises(ValueError):
            expiry.parse_expiry(bad)


@pytest.mark.parametrize("config_overrides", [{"CLINIC_TIMEZONE": "Pacific/Auckland"}], indirect=True)
def test_a_lot_is_expired_from_the_start_of_the_next_clinic_day(app):
    expires_on = date(2026, 11, 27)
    # 10:59 UTC on the 27th is 23:59 on the 27th in Auckland (UTC+13 in summer).
    assert not expiry.is_expired(expires_on, datetime(2026, 11, 27, 10, 59, tzinfo=UTC))
    # 11:00 UTC is midnight starting the 28th in Auckland: expired, though UTC still says the 27th.
    assert expiry.is_expired(expires_on, datetime(2026, 11, 27, 11, 0, tzinfo=UTC))


def test_a_technician_cannot_release_a_lot(technician, make_ingredient):
    lot = receive(technician, make_ingredient())
    with pytest.raises(NotAllowed):
        inventory.release_lot(technician, lot.id, PASSWORD)


def test_a_wrong_password_does_not_sign_and_the_lot_stays_in_quarantine(technician, pharmacist,
                                                                         make_ingredient):
    lot = receive(technician, make_ingredient())
    with pytest.raises(SignatureRejected):
        inventory.release_lot(pharmacist, lot.id, "not-my-password", reason="Certificate requested")
    db.session.rollback()
    assert db.session.get(Lot, lot.id).status == "quarantine"
    assert db.session.scalar(sa.select(sa.func.count(Signature.id))) == 0


def test_release_records_the_signers_name_and_time(technician, pharmacist, make_ingredient):
    lot = receive(technician, make_ingredient())
    inventory.release_lot(pharmacist, lot.id, PASSWORD, reason="Certificate requested")
    signature = db.session.scalar(sa.select(Signature).where(Signature.entity_id == lot.id))
    assert (signature.meaning, signature.signer_name) == ("released", pharmacist.display_name)
    assert signature.signed_at.tzinfo is not None
    assert lot.status == "released" and lot.released_by_id == pharmacist.id


def test_a_released_lot_cannot_be_released_again(make_lot, pharmacist):
    lot = make_lot()
    with pytest.raises(InvalidState):
        inventory.release_lot(pharmacist, lot.id, PASSWORD)


def test_rejecting_needs_a_reason_and_a_signature(technician, pharmacist, make_ingredient):
    lot = receive(technician, make_ingredient())
    with pytest.raises(InvalidInput):
        inventory.reject_lot(pharmacist, lot.id, PASSWORD, "  ")
    inventory.reject_lot(pharmacist, lot.id, PASSWORD, "Certificate does not match the label")
    assert lot.status == "rejected"
    assert lot.status_reason == "Certificate does not match the label"


def test_an_adjustment_can_never_take_a_lot_below_zero(make_lot, technician):
    lot = make_lot(quantity="5")
    with pytest.raises(InsufficientStock):
        inventory.adjust_lot(technician, lot.id, reason="damaged", quantity="5.001")
    db.session.rollback()
    assert db.session.get(Lot, lot.id).remaining == Decimal("5")


def test_wasting_the_last_of_a_released_lot_makes_it_depleted(make_lot, technician):
    lot = make_lot(quantity="5")
    inventory.adjust_lot(technician, lot.id, reason="damaged", quantity="5", note="vial cracked")
    assert (lot.remaining, lot.status) == (Decimal("0"), "depleted")
    movement = db.session.scalar(sa.select(StockMovement).where(StockMovement.lot_id == lot.id)
                                 .order_by(StockMovement.id.desc()))
    assert (movement.kind, movement.reason, movement.note) == ("waste", "damaged", "vial cracked")


def test_only_a_count_correction_with_a_note_can_add_stock(make_lot, technician, pharmacist):
    # A rise is a pharmacist's signed action, never above the quantity received.
    lot = make_lot(quantity="5")
    inventory.adjust_lot(technician, lot.id, reason="damaged", quantity="1", note="vial cracked")
    with pytest.raises(InvalidInput):
        inventory.adjust_lot(pharmacist, lot.id, reason="damaged", quantity="1", direction="in",
                             password=PASSWORD)
    with pytest.raises(InvalidInput):
        inventory.adjust_lot(pharmacist, lot.id, reason="count_correction", quantity="1", direction="in",
                             password=PASSWORD)
    inventory.adjust_lot(pharmacist, lot.id, reason="count_correction", quantity="1", direction="in",
                         note="recount found a spare vial", password=PASSWORD)
    assert lot.remaining == Decimal("5")


def test_an_expired_lot_can_only_leave_stock(make_lot, technician, pharmacist):
    lot = make_lot(quantity="5")
    inventory.adjust_lot(technician, lot.id, reason="damaged", quantity="1", note="vial cracked")
    lot.expires_on = date.today() - timedelta(days=1)
    db.session.commit()
    with pytest.raises(InvalidState):
        inventory.adjust_lot(pharmacist, lot.id, reason="count_correction", quantity="1",
                             direction="in", note="recount", password=PASSWORD)
    inventory.adjust_lot(technician, lot.id, reason="expired", quantity="4")
    assert lot.remaining == 0


def test_only_released_unexpired_lots_with_stock_are_eligible(make_lot, make_ingredient, technician):
    ingredient = make_ingredient()
    good = make_lot(ingredient)
    make_lot(ingredient, release=False)
    empty = make_lot(ingredient, quantity="1")
    inventory.adjust_lot(technician, empty.id, reason="damaged", quantity="1")
    expired = make_lot(ingredient)
    expired.expires_on = date.today() - timedelta(days=1)
    db.session.commit()
    assert [c.lot_id for c in inventory.eligible_candidates(ingredient.id)] == [good.id]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(st.tuples(
    st.sampled_from(["expired", "damaged", "contaminated", "count_correction", "returned_to_supplier"]),
    st.sampled_from(["in", "out"]),
    st.decimals(min_value=Decimal("0.001"), max_value=Decimal("60"), places=3)), max_size=12))
def test_remaining_always_equals_the_sum_of_the_ledger(make_lot, pharmacist, steps):
    lot = make_lot(quantity="50")
    for reason, direction, quantity in steps:
        try:
            inventory.adjust_lot(pharmacist, lot.id, reason=reason, quantity=quantity,
                                 direction=direction, note="property test", password=PASSWORD)
        except (InvalidInput, InvalidState, InsufficientStock):
            db.session.rollback()
        lot = db.session.get(Lot, lot.id)
        assert 0 <= lot.remaining <= lot.quantity_received
        assert lot.remaining == ledger_balance(lot_id=lot.id)
        assert (lot.status == "depleted") == (lot.remaining == 0)
