"""The append-only stock ledger: every quantity change of a lot or a batch."""

from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from ._common import one_of, utcnow

# `transfer`: stock leaving its site on a transfer (negative), or arriving as a child lot (positive).
MOVEMENT_KINDS = ("receive", "consume", "use", "waste", "adjust", "return", "transfer")
# Coded reasons for manual adjustments and waste.
ADJUST_REASONS = (
    "expired",
    "damaged",
    "contaminated",
    "count_correction",
    "returned_to_supplier",
    # An unopened container back on the shelf: adds stock, with a pharmacist's signature.
    "returned_to_stock",
)


class StockMovement(db.Model):
    __tablename__ = "stock_movements"
    __table_args__ = (
        one_of("kind", MOVEMENT_KINDS, "kind_known"),
        sa.CheckConstraint("(lot_id IS NULL) <> (batch_id IS NULL)", name="exactly_one_target"),
        sa.CheckConstraint("quantity <> 0", name="quantity_not_zero"),
        sa.CheckConstraint("balance_after >= 0", name="balance_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    lot_id: Mapped[int | None] = mapped_column(sa.ForeignKey("lots.id"), index=True)
    batch_id: Mapped[int | None] = mapped_column(sa.ForeignKey("batches.id"), index=True)
    # A batch movement drawn from (or written off) one vial; the vial's balance is its fill plus these.
    vial_id: Mapped[int | None] = mapped_column(sa.ForeignKey("vials.id"), index=True)
    kind: Mapped[str] = mapped_column(sa.String(10))
    # Signed: positive adds to stock, negative takes from it. Lots in the ingredient's
    # unit, batches in mL.
    quantity: Mapped[Decimal]
    balance_after: Mapped[Decimal]
    reason: Mapped[str] = mapped_column(sa.String(30), default="")
    note: Mapped[str] = mapped_column(sa.Text, default="")
    reference_type: Mapped[str] = mapped_column(sa.String(30), default="")
    reference_id: Mapped[int | None]
    actor_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    # Where the stock was when it moved (its lot's, batch's or vial's location at that moment).
    location_id: Mapped[int | None] = mapped_column(sa.ForeignKey("locations.id"), index=True)
