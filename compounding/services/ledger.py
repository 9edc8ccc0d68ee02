"""The one way a quantity changes: an atomic update of the cached balance plus a ledger row."""

from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm.attributes import set_committed_value

from ..extensions import db
from ..models import Batch, Lot, StockMovement, User, Vial
from .clock import utcnow
from .errors import InsufficientStock


def _move(model, column, owner, kind, quantity, actor, occurred_at=None, **ledger) -> StockMovement:
    quantity = Decimal(quantity)
    # SQLite keeps Numeric as binary floats (0.3 - 0.1 - 0.2 < 0): round to the column's
    # scale in SQL so taking exactly what is left works there too. Exact on PostgreSQL.
    balance = sa.func.round(column + quantity, column.type.scale)
    # A conditional UPDATE is the last guard against two people taking the same stock at
    # the same moment: the database refuses to go below zero, whatever the caller read.
    new_balance = db.session.execute(
        sa.update(model)
        .where(model.id == owner.id, balance >= 0)
        .values({column.key: balance})
        .returning(column)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    if new_balance is None:
        db.session.refresh(owner)
        raise InsufficientStock(
            f"{getattr(owner, 'code', owner.id)} has {getattr(owner, column.key)} left, "
            f"{-quantity} was asked for."
        )
    set_committed_value(owner, column.key, new_balance)
    movement = StockMovement(
        kind=kind,
        quantity=quantity,
        balance_after=new_balance,
        actor_id=actor.id,
        occurred_at=occurred_at or utcnow(),
        location_id=owner.location_id,
        **ledger,
    )
    db.session.add(movement)
    return movement


def move_lot(lot: Lot, kind: str, quantity, actor: User, *, reason="", note="",
             reference_type="", reference_id=None, occurred_at=None) -> StockMovement:
    """Change a lot's remaining quantity by `quantity` (signed) and write its ledger row."""
    return _move(Lot, Lot.remaining, lot, kind, quantity, actor, occurred_at, lot_id=lot.id,
                 reason=reason, note=note, reference_type=reference_type, reference_id=reference_id)


def move_batch(batch: Batch, kind: str, volume_ml, actor: User, *, reason="", note="",
               reference_type="", reference_id=None, occurred_at=None) -> StockMovement:
    """Change a batch's remaining volume by `volume_ml` (signed) and write its ledger row."""
    return _move(Batch, Batch.remaining_volume_ml, batch, kind, volume_ml, actor, occurred_at,
                 batch_id=batch.id, reason=reason, note=note, reference_type=reference_type,
                 reference_id=reference_id)


def move_vial(vial: Vial, batch: Batch, kind: str, volume_ml, actor: User, *, reason="", note="",
              reference_type="", reference_id=None, occurred_at=None) -> StockMovement:
    """Change one vial's volume and its batch's by `volume_ml` (signed): one ledger row naming both.

    The vial's balance is guarded like the batch's: a conditional UPDATE never lets it go
    below zero or above its fill, whatever two callers read at the same moment.
    """
    volume_ml = Decimal(volume_ml)
    balance = sa.func.round(Vial.remaining_ml + volume_ml, Vial.remaining_ml.type.scale)
    new_balance = db.session.execute(
        sa.update(Vial).where(Vial.id == vial.id, balance >= 0, balance <= Vial.volume_ml)
        .values(remaining_ml=balance).returning(Vial.remaining_ml)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    if new_balance is None:
        db.session.refresh(vial)
        raise InsufficientStock(f"{vial.code} holds {vial.remaining_ml.normalize():f} mL, "
                                f"{(-volume_ml).normalize():f} mL was asked for.")
    set_committed_value(vial, "remaining_ml", new_balance)
    movement = move_batch(batch, kind, volume_ml, actor, reason=reason, note=note, reference_type=reference_type,
                          reference_id=reference_id, occurred_at=occurred_at)
    movement.vial_id = vial.id
    movement.location_id = vial.location_id
    return movement


def vial_ledger_balance(vial: Vial) -> Decimal:
    """A vial's fill plus its movements: what its `remaining_ml` must equal.

    Not for a legacy vial (made by the migration): its opening balance is the batch's pooled
    remainder, which has no ledger row of its own.
    """
    total = db.session.scalar(sa.select(sa.func.coalesce(sa.func.sum(StockMovement.quantity), 0))
                              .where(StockMovement.vial_id == vial.id))
    return Decimal(vial.volume_ml) + Decimal(total) + 0


def ledger_balance(*, lot_id: int | None = None, batch_id: int | None = None) -> Decimal:
    """The sum of a lot's or a batch's movements: what `remaining` must always equal."""
    column = StockMovement.lot_id if lot_id is not None else StockMovement.batch_id
    total = db.session.scalar(
        sa.select(sa.func.coalesce(sa.func.sum(StockMovement.quantity), 0)).where(
            column == (lot_id if lot_id is not None else batch_id)
        )
    )
    # Adding zero turns SQLite's float "-0.000" into 0.000.
    return Decimal(total) + 0
