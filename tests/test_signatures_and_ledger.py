"""E-signatures (password re-entry) and the stock ledger behind every quantity change."""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa
from testkit import PASSWORD, audit_rows, count_rows

from compounding.extensions import db
from compounding.models import AuditEvent, Batch, Formula, Ingredient, Lot, Signature, StockMovement
from compounding.services import ledger, signatures, users
from compounding.services.clock import utcnow
from compounding.services.errors import InsufficientStock, SignatureRejected

# --- rows made by hand: the inventory services are built elsewhere -------------------------


def _lot(actor, code: str = "L000001") -> Lot:
    """A bare lot with nothing in it yet (stock arrives through the ledger)."""
    ingredient = Ingredient(name=f"Ingredient {code}", kind="active", unit="mL")
    db.session.add(ingredient)
    db.session.flush()
    lot = Lot(code=code, ingredient_id=ingredient.id, supplier="Acme Pharma",
              supplier_lot_number=f"S-{code}", received_by_id=actor.id, expires_on=date(2030, 1, 31),
              quantity_received=Decimal("100"), remaining=Decimal("0"))
    db.session.add(lot)
    db.session.commit()
    return lot


def _batch(actor, code: str = "B2603010001") -> Batch:
    formula = Formula(code="F-LIPO", name="Lipolytic", indication="fat_reduction", route="subcutaneous",
                      unit_volume_ml=Decimal("10"), bud_category="category_1", created_by_id=actor.id)
    db.session.add(formula)
    db.session.flush()
    batch = Batch(code=code, formula_id=formula.id, units=2, total_volume_ml=Decimal("20"),
                  remaining_volume_ml=Decimal("0"), compounded_by_id=actor.id,
                  beyond_use_at=utcnow() + timedelta(hours=12), storage="fridge")
    db.session.add(batch)
    db.session.commit()
    return batch


def _movements(**owner) -> list[StockMovement]:
    column, value = next(iter(owner.items()))
    return list(db.session.scalars(sa.select(StockMovement)
                                   .where(getattr(StockMovement, column) == value)
                                   .order_by(StockMovement.id)))


# --- signatures ---------------------------------------------------------------------------


@pytest.mark.parametrize("password", ["not-my-password", "", None, PASSWORD.upper(), PASSWORD + " "])
def test_a_signature_with_a_wrong_or_empty_password_is_refused_signs_nothing_and_is_audited(make_user, make_lot,
                                                                                          password):
    lot = make_lot(release=False)
    pharmacist = make_user("pharmacist")
    before = count_rows(Signature), count_rows(AuditEvent)
    with pytest.raises(SignatureRejected) as refused:
        signatures.sign(pharmacist, password, "released", "lot", lot.id)
    assert refused.value.field == "password"
    assert refused.value.status_code == 403
    db.session.commit()
    # The only row written is the refusal itself.
    assert (count_rows(Signature), count_rows(AuditEvent)) == (before[0], before[1] + 1)
    [event] = audit_rows("signature.refused", "lot", lot.id)
    assert event.actor_id == pharmacist.id and event.new_values == {"meaning": "released"}


def test_an_inactive_account_cannot_sign_even_with_its_password(make_user):
    admin, pharmacist = make_user("admin"), make_user("pharmacist")
    users.set_active(admin, pharmacist, False, "left")
    with pytest.raises(SignatureRejected):
        signatures.sign(pharmacist, PASSWORD, "released", "lot", 1)


def test_a_signature_with_an_unknown_meaning_is_a_programming_error(make_user):
    with pytest.raises(ValueError, match="meaning"):
        signatures.sign(make_user("pharmacist"), PASSWORD, "looked at", "lot", 1)


def test_a_right_password_records_the_signers_name_time_and_meaning(make_user):
    pharmacist = make_user("pharmacist", display_name="Dr Paula Reyes")
    before = datetime.now(UTC)
    signature = signatures.sign(pharmacist, PASSWORD, "verified", "batch", 42)
    db.session.commit()

    [stored] = signatures.signatures_for("batch", 42)
    assert stored.id == signature.id
    assert (stored.signer_id, stored.signer_name, stored.meaning) == (
        pharmacist.id, "Dr Paula Reyes", "verified")
    assert before <= stored.signed_at <= datetime.now(UTC)
    [event] = audit_rows("signature.verified", "batch", 42)
    assert event.actor_id == pharmacist.id
    assert event.new_values["signature_id"] == signature.id
    assert event.new_values["signer"] == "Dr Paula Reyes"
    assert event.new_values["meaning"] == "verified"


def test_the_printed_name_on_a_signature_survives_a_later_rename(make_user):
    admin, pharmacist = make_user("admin"), make_user("pharmacist", display_name="Dr P Reyes")
    signatures.sign(pharmacist, PASSWORD, "approved", "formula", 3)
    db.session.commit()
    users.update_user(admin, pharmacist, display_name="Dr Paula Reyes-Smith", role="pharmacist")
    [stored] = signatures.signatures_for("formula", 3)
    assert stored.signer_name == "Dr P Reyes"


# --- the ledger ---------------------------------------------------------------------------


def test_a_lot_movement_below_zero_raises_and_writes_no_ledger_row(make_user):
    technician = make_user("technician")
    lot = _lot(technician)
    ledger.move_lot(lot, "receive", Decimal("5"), technician)
    db.session.commit()

    with pytest.raises(InsufficientStock, match="L000001 has 5.000 left, 5.001 was asked for"):
        ledger.move_lot(lot, "consume", Decimal("-5.001"), technician)
    db.session.rollback()
    assert [m.quantity for m in _movements(lot_id=lot.id)] == [Decimal("5")]
    assert db.session.get(Lot, lot.id).remaining == Decimal("5")


def test_a_batch_movement_below_zero_raises_and_writes_no_ledger_row(make_user):
    pharmacist = make_user("pharmacist")
    batch = _batch(pharmacist)
    ledger.move_batch(batch, "receive", Decimal("20"), pharmacist)
    ledger.move_batch(batch, "use", Decimal("-19.5"), pharmacist)
    db.session.commit()

    with pytest.raises(InsufficientStock):
        ledger.move_batch(batch, "use", Decimal("-0.6"), pharmacist)
    db.session.rollback()
    assert len(_movements(batch_id=batch.id)) == 2
    assert db.session.get(Batch, batch.id).remaining_volume_ml == Decimal("0.5")


@pytest.mark.parametrize("moves", [
    ["100", "-12.5", "-0.125", "3", "-90.375"],
    # Decimal tenths are not exact in binary floats: 0.3 - 0.1 - 0.2 must still reach zero.
    ["0.3", "-0.1", "-0.2"],
    ["1", "-0.001", "-0.999", "2.5", "-2.5"],
    ["7.777", "-1.111", "-1.111", "-1.111", "-1.111", "-1.111", "-1.111", "-1.111"],
])
def test_after_several_lot_moves_remaining_equals_the_ledger_balance(make_user, moves):
    technician = make_user("technician")
    lot = _lot(technician)
    running = Decimal("0")
    for quantity in moves:
        movement = ledger.move_lot(lot, "receive" if Decimal(quantity) > 0 else "consume",
                                   Decimal(quantity), technician, reference_type="test")
        db.session.commit()
        running += Decimal(quantity)
        assert movement.balance_after == running
        assert lot.remaining == running
    db.session.expire_all()
    assert db.session.get(Lot, lot.id).remaining == ledger.ledger_balance(lot_id=lot.id) == running
    assert [m.actor_id for m in _movements(lot_id=lot.id)] == [technician.id] * len(moves)


def test_after_several_batch_moves_remaining_equals_the_ledger_balance(make_user):
    pharmacist = make_user("pharmacist")
    batch = _batch(pharmacist)
    for kind, volume in [("receive", "20"), ("use", "-2.5"), ("use", "-0.3"), ("waste", "-1"),
                         ("return", "0.3"), ("use", "-16.5")]:
        ledger.move_batch(batch, kind, Decimal(volume), pharmacist)
        db.session.commit()
    db.session.expire_all()
    assert db.session.get(Batch, batch.id).remaining_volume_ml == Decimal("0")
    assert ledger.ledger_balance(batch_id=batch.id) == Decimal("0")
    assert ledger.ledger_balance(lot_id=999) == Decimal("0")


def test_the_ledger_of_one_lot_ignores_the_movements_of_another(make_user):
    technician = make_user("technician")
    first, second = _lot(technician, "L000001"), _lot(technician, "L000002")
    ledger.move_lot(first, "receive", Decimal("4"), technician)
    ledger.move_lot(second, "receive", Decimal("9"), technician)
    db.session.commit()
    assert ledger.ledger_balance(lot_id=first.id) == Decimal("4")
    assert ledger.ledger_balance(lot_id=second.id) == Decimal("9")
