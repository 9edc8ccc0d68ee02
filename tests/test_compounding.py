"""Compounding rules: formulas, FEFO consumption, deviations, BUD, verification."""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa
from testkit import PASSWORD

from compounding.extensions import db
from compounding.models import Batch, BatchComponent, Lot, Signature, StockMovement
from compounding.services import batches, bud, formulas
from compounding.services.errors import (
    InsufficientStock,
    InvalidInput,
    InvalidState,
    NotAllowed,
    SignatureRejected,
)
from compounding.services.ledger import ledger_balance


@pytest.fixture
def setup(make_ingredient, make_lot, make_formula):
    pc = make_ingredient(name="Phosphatidylcholine")
    saline = make_ingredient(name="Saline", kind="diluent")
    formula = make_formula([(pc, "2"), (saline, "8")])
    return pc, saline, formula


def table(category):
    return bud.BUD_TABLE[category]


@pytest.mark.parametrize("key, room, fridge, freezer", [
    ("immediate_use", 4, 4, 4),
    ("category_1", 12, 24, None),
    ("category_2_aseptic_nonsterile_components", 24, 96, 45 * 24),
    ("category_2_aseptic_sterile_components", 96, 240, 45 * 24),
    ("category_2_aseptic_sterility_tested", 30 * 24, 45 * 24, 60 * 24),
    ("category_2_terminal", 14 * 24, 28 * 24, 45 * 24),
    ("category_2_terminal_sterility_tested", 45 * 24, 60 * 24, 90 * 24),
    ("category_3_aseptic_tested", 60 * 24, 90 * 24, 120 * 24),
    ("category_3_terminal_tested", 90 * 24, 120 * 24, 180 * 24),
])
def test_every_row_of_the_bud_table_matches_usp_797(key, room, fridge, freezer):
    def hours(value):
        return None if value is None else value.total_seconds() / 3600

    row = table(key)
    assert (hours(row.room), hours(row.fridge), hours(row.freezer)) == (room, fridge, freezer)


def test_bud_is_the_earlier_of_the_duration_and_the_end_of_the_earliest_lot_expiry_day(app):
    start = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
    assert bud.beyond_use_at(start, timedelta(days=10), [date(2027, 1, 1)]) == start + timedelta(days=10)
    # Europe/London in winter is UTC: the lot expiring on the 30th is usable until midnight.
    assert bud.beyond_use_at(start, timedelta(days=10), [date(2026, 11, 30), date(2027, 1, 1)]) == datetime(
        2026, 12, 1, 0, 0, tzinfo=UTC)


def test_a_formula_can_shorten_the_bud_with_a_reason_but_never_lengthen_it(make_formula):
    with pytest.raises(InvalidInput) as caught:
        make_formula(bud_hours=241)
    assert caught.value.field == "bud_hours"
    with pytest.raises(InvalidInput):
        make_formula(bud_hours=48)  # no reason
    formula = make_formula(bud_hours=48, bud_reason="Vitamin C oxidises quickly")
    assert formula.bud_hours == 48


def test_category_1_cannot_be_stored_frozen(make_formula):
    with pytest.raises(InvalidInput) as caught:
        make_formula(bud_category="category_1", storage="freezer")
    assert caught.value.field == "storage"


def test_a_formula_without_components_cannot_be_approved(make_formula, pharmacist):
    formula = make_formula(components=[], approve=False)
    with pytest.raises(InvalidState):
        formulas.approve_formula(pharmacist, formula.id, PASSWORD)


def test_an_approved_formula_is_read_only_and_edit_makes_a_new_version(make_formula, pharmacist, make_user):
    formula = make_formula()
    with pytest.raises(InvalidState):
        formulas.update_draft(pharmacist, formula.id, {"name": "changed"})
    draft = formulas.new_version(pharmacist, formula.id)
    assert (draft.code, draft.version, draft.status) == (formula.code, 2, "draft")
    assert [c.quantity for c in draft.components] == [c.quantity for c in formula.components]
    # Who wrote the version does not approve it.
    formulas.approve_formula(make_user("pharmacist"), draft.id, PASSWORD)
    assert db.session.get(type(formula), formula.id).status == "retired"
    assert draft.status == "approved"


def test_compounding_takes_the_earliest_expiring_lot_first(setup, make_lot, technician):
    pc, saline, formula = setup
    later = make_lot(pc, expires_on=date.today() + timedelta(days=300))
    sooner = make_lot(pc, expires_on=date.today() + timedelta(days=100))
    make_lot(saline, quantity="500")
    batch = batches.compound_batch(technician, formula.id, 3)
    used = {c.lot_id: c.quantity for c in db.session.scalars(
        sa.select(BatchComponent).where(BatchComponent.ingredient_id == pc.id))}
    assert used == {sooner.id: Decimal("6")}
    assert later.remaining == Decimal("100")
    assert batch.total_volume_ml == Decimal("30") == batch.remaining_volume_ml
    assert batch.status == "prepared"
    assert batch.code.startswith("B") and len(batch.code) == 11


def test_compounding_spans_lots_and_writes_a_consume_row_for_each(setup, make_lot, technician):
    pc, saline, formula = setup
    first = make_lot(pc, quantity="5", expires_on=date.today() + timedelta(days=50))
    second = make_lot(pc, quantity="50", expires_on=date.today() + timedelta(days=80))
    make_lot(saline, quantity="500")
    batches.compound_batch(technician, formula.id, 4)
    assert first.remaining == 0 and first.status == "depleted"
    assert second.remaining == Decimal("47")
    for lot in (first, second):
        assert lot.remaining == ledger_balance(lot_id=lot.id)


def test_not_enough_stock_names_the_ingredient_and_shortfall_and_consumes_nothing(setup, make_lot, technician):
    pc, saline, formula = setup
    lot = make_lot(pc, quantity="3")
    make_lot(saline, quantity="500")
    movements = db.session.scalar(sa.select(sa.func.count(StockMovement.id)))
    with pytest.raises(InsufficientStock) as caught:
        batches.compound_batch(technician, formula.id, 2)
    assert "Phosphatidylcholine" in caught.value.message and "short by 1" in caught.value.message
    db.session.rollback()
    assert db.session.get(Lot, lot.id).remaining == Decimal("3")
    assert db.session.scalar(sa.select(sa.func.count(StockMovement.id))) == movements
    assert db.session.scalar(sa.select(sa.func.count(Batch.id))) == 0


@pytest.mark.parametrize("state", ["quarantine", "expired", "recalled"])
def test_ineligible_lots_are_never_used(setup, make_lot, technician, state):
    pc, saline, formula = setup
    lot = make_lot(pc, release=state != "quarantine")
    if state == "expired":
        lot.expires_on = date.today() - timedelta(days=1)
    elif state == "recalled":
        lot.status = "recalled"
    db.session.commit()
    make_lot(saline, quantity="500")
    with pytest.raises(InsufficientStock):
        batches.compound_batch(technician, formula.id, 1)
    db.session.rollback()
    with pytest.raises(InvalidState):
        batches.compound_batch(technician, formula.id, 1,
                               allocations=[{"lot_id": lot.id, "quantity": "2"}], deviation_note="x")


def test_a_draft_or_retired_formula_cannot_be_compounded(make_formula, technician, pharmacist):
    draft = make_formula(approve=False)
    with pytest.raises(InvalidState):
        batches.compound_batch(technician, draft.id, 1)
    approved = make_formula()
    formulas.retire_formula(pharmacist, approved.id, "withdrawn")
    with pytest.raises(InvalidState):
        batches.compound_batch(technician, approved.id, 1)


@pytest.mark.parametrize("units", [0, -1, "two", 10_001])
def test_units_must_be_a_positive_whole_number(setup, technician, units):
    with pytest.raises(InvalidInput) as caught:
        batches.compound_batch(technician, setup[2].id, units)
    assert caught.value.field == "units"


def test_a_different_quantity_needs_a_deviation_note(setup, make_lot, technician):
    pc, saline, formula = setup
    pc_lot = make_lot(pc)
    make_lot(saline, quantity="500")
    picked = [{"lot_id": pc_lot.id, "quantity": "2.2"}]
    with pytest.raises(InvalidInput) as caught:
        batches.compound_batch(technician, formula.id, 1, allocations=picked)
    assert caught.value.field == "deviation_note"
    db.session.rollback()
    batch = batches.compound_batch(technician, formula.id, 1, allocations=picked,
                                   deviation_note="Overfill to cover the syringe dead space")
    assert "2.2 mL used instead of 2 mL" in batch.deviations
    assert "dead space" in batch.deviations


def test_the_batch_bud_is_capped_by_the_earliest_component_expiry(setup, make_lot, technician):
    pc, saline, formula = setup
    make_lot(pc, expires_on=date.today() + timedelta(days=3))
    make_lot(saline, quantity="500")
    batch = batches.compound_batch(technician, formula.id, 1)
    assert batch.beyond_use_at <= datetime.now(UTC) + timedelta(days=4)
    assert batch.beyond_use_at < batch.compounded_at + timedelta(days=10)


def test_the_compounder_cannot_verify_their_own_batch(setup, make_lot, make_user):
    pc, saline, formula = setup
    make_lot(pc)
    make_lot(saline, quantity="500")
    pharmacist = make_user("pharmacist")
    batch = batches.compound_batch(pharmacist, formula.id, 1)
    with pytest.raises(NotAllowed):
        batches.verify_batch(pharmacist, batch.id, PASSWORD)


def test_a_technician_compounds_and_a_second_pharmacist_verifies_with_a_signature(
        setup, make_lot, technician, pharmacist):
    pc, saline, formula = setup
    make_lot(pc)
    make_lot(saline, quantity="500")
    batch = batches.compound_batch(technician, formula.id, 1)
    with pytest.raises(NotAllowed):
        batches.verify_batch(technician, batch.id, PASSWORD)
    with pytest.raises(SignatureRejected):
        batches.verify_batch(pharmacist, batch.id, "wrong-password-1")
    db.session.rollback()
    batches.verify_batch(pharmacist, batch.id, PASSWORD)
    assert batch.status == "released" and batch.verified_by_id == pharmacist.id
    assert db.session.scalar(sa.select(Signature.meaning).where(
        Signature.entity_type == "batch", Signature.entity_id == batch.id)) == "verified"


def test_a_rejected_batch_keeps_its_stock_consumed(setup, make_lot, technician, pharmacist):
    pc, saline, formula = setup
    lot = make_lot(pc)
    make_lot(saline, quantity="500")
    batch = batches.compound_batch(technician, formula.id, 1)
    batches.reject_batch(pharmacist, batch.id, PASSWORD, "Particles seen on inspection")
    assert batch.status == "rejected" and lot.remaining == Decimal("98")
    assert batches.unusable_reasons(batch)


def test_discarding_writes_off_the_remaining_volume(setup, make_lot, technician, pharmacist):
    pc, saline, formula = setup
    make_lot(pc)
    make_lot(saline, quantity="500")
    batch = batches.compound_batch(technician, formula.id, 2)
    with pytest.raises(InvalidInput):
        batches.discard_batch(pharmacist, batch.id, "because")
    batches.discard_batch(pharmacist, batch.id, "damaged", "dropped tray")
    assert (batch.status, batch.remaining_volume_ml) == ("discarded", Decimal("0"))
    assert ledger_balance(batch_id=batch.id) == 0


def test_an_expired_batch_is_unusable_with_the_time_it_expired(setup, make_lot, technician, pharmacist):
    pc, saline, formula = setup
    make_lot(pc)
    make_lot(saline, quantity="500")
    batch = batches.compound_batch(technician, formula.id, 1)
    batches.verify_batch(pharmacist, batch.id, PASSWORD)
    assert batches.unusable_reasons(batch) == []
    later = batch.beyond_use_at + timedelta(minutes=1)
    assert any(r.startswith("expired at") for r in batches.unusable_reasons(batch, later))
    assert batches.unusable_reasons(batch, volume_ml=Decimal("11"))[0].startswith("only 10 mL left")


def test_batch_codes_follow_the_day_and_count_up(setup, make_lot, technician):
    pc, saline, formula = setup
    make_lot(pc)
    make_lot(saline, quantity="500")
    first = batches.compound_batch(technician, formula.id, 1)
    second = batches.compound_batch(technician, formula.id, 1)
    assert first.code[-4:] == "0001" and second.code[-4:] == "0002"
    assert first.code[:7] == second.code[:7]


def test_a_sterile_only_formula_is_not_compounded_once_an_ingredient_is_no_longer_sterile(
        make_formula, make_ingredient, make_lot, technician, pharmacist):
    from compounding.services import ingredients

    active = make_ingredient(name="Hyaluronic acid")
    saline = make_ingredient(name="Sodium chloride 0.9 %", kind="diluent", vehicle=True)
    formula = make_formula([(active, "2"), (saline, "8")])  # only sterile starting components, approved
    for ingredient in (active, saline):
        make_lot(ingredient, quantity="100")
    ingredients.update_ingredient(pharmacist, active, {"name": active.name, "kind": "active", "unit": "mL",
                                                       "storage": "fridge", "sterile": False})
    before = db.session.scalar(sa.select(sa.func.count()).select_from(Batch))

    with pytest.raises(InvalidState, match="Hyaluronic acid is not sterile"):
        batches.compound_batch(technician, formula.id, 1)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Batch)) == before


def test_an_ingredient_kept_from_light_keeps_its_batch_from_light(make_formula, make_ingredient, make_lot,
                                                                   technician):
    vitamin_c = make_ingredient(name="Ascorbic acid", protect_from_light=True)
    saline = make_ingredient(name="Sodium chloride 0.9 %", kind="diluent", vehicle=True)
    formula = make_formula([(vitamin_c, "1"), (saline, "qs")], unit_volume_ml="5")
    for ingredient in (vitamin_c, saline):
        make_lot(ingredient, quantity="100")

    batch = batches.compound_batch(technician, formula.id, 1)
    assert formula.protect_from_light is False and batch.protect_from_light is True
