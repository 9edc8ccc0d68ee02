"""What a batch record fixes at compounding: the copy of each component, the preparation start, the tests owed.

The rules here are checked before anything is written (compound_batch calls them), so a
refusal changes nothing.
"""

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from ..extensions import db
from ..models import Batch, BatchComponent, BatchTest, Formula
from .bud import IMMEDIATE_USE, immediate_use_refusals, required_tests
from .errors import InvalidInput, InvalidState

# A bench clock a few minutes ahead of the server is not an error; a start in the future is.
CLOCK_SKEW = timedelta(minutes=5)
# Preparation longer than this is not one sitting at the bench: the start was mistyped.
LONGEST_PREPARATION = timedelta(days=2)


def checked_preparation_start(started_at: datetime | None, compounded_at: datetime) -> datetime:
    """When preparation started (the BUD clock's start): not in the future, not days before the record."""
    if started_at is None:
        return compounded_at
    started_at = started_at if started_at.tzinfo else started_at.replace(tzinfo=UTC)
    if started_at > compounded_at + CLOCK_SKEW:
        raise InvalidInput("Preparation cannot start in the future.", field="preparation_started_at")
    if started_at < compounded_at - LONGEST_PREPARATION:
        raise InvalidInput("Preparation started more than two days before this record: check the start time.",
                           field="preparation_started_at")
    return min(started_at, compounded_at)


def ensure_immediate_use_limits(formula: Formula, units: int) -> None:
    """Immediate use: one unit, from at most three sterile products (409 naming what breaks the limit)."""
    if formula.bud_category != IMMEDIATE_USE:
        return
    reasons = immediate_use_refusals(units, [(c.ingredient.name, c.ingredient.sterile) for c in formula.components])
    if reasons:
        raise InvalidState("Not allowed as immediate use: " + "; ".join(reasons) + ".", field="units",
                           details={"reasons": reasons})


def tests_owed(formula: Formula, components: list[BatchComponent]) -> str:
    """The tests the batch owes, as stored in `required_tests` ("sterility" or "sterility,endotoxin")."""
    all_sterile = all(component.ingredient_sterile for component in components)
    return ",".join(required_tests(formula.bud_category, all_sterile))


def tests_outstanding(batch: Batch) -> list[str]:
    """The tests the batch owes that have no recorded pass yet (empty: its BUD's evidence is complete)."""
    if not batch.tests_required:
        return []
    passed = set(db.session.scalars(sa.select(BatchTest.kind).where(BatchTest.batch_id == batch.id,
                                                                  BatchTest.result == "pass")))
    return [kind for kind in batch.tests_required if kind not in passed]


def component_record(batch: Batch, planned, ingredient) -> BatchComponent:
    """One component row with the ingredient and lot copied as they are now, at compounding."""
    lot = planned.lot
    return BatchComponent(
        batch_id=batch.id, lot_id=lot.id, ingredient_id=planned.ingredient_id,
        theoretical_quantity=planned.theoretical, quantity=planned.quantity, scanned=planned.scanned,
        ingredient_name=ingredient.name, ingredient_kind=ingredient.kind, ingredient_strength=ingredient.strength,
        ingredient_unit=ingredient.unit, ingredient_sterile=ingredient.sterile, ingredient_vehicle=ingredient.vehicle,
        lot_code=lot.code, supplier_lot_number=lot.supplier_lot_number, lot_expires_on=lot.expires_on)
