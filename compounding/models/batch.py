"""Compounding records: a batch made from a formula version and the lots it consumed."""

from datetime import datetime
from decimal import Decimal
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from ._common import one_of, utcnow
from .formula import Formula
from .lot import Lot
from .user import User


class BatchStatus(StrEnum):
    """Where a batch stands; each member equals the string stored in `batches.status`."""

    PREPARED = "prepared"
    RELEASED = "released"
    REJECTED = "rejected"
    RECALLED = "recalled"
    DISCARDED = "discarded"
    DEPLETED = "depleted"
    ON_HOLD = "on_hold"


BATCH_STATUSES = tuple(BatchStatus)
DISCARD_REASONS = ("expired", "damaged", "contaminated", "out_of_specification", "other")


class Batch(db.Model):
    __tablename__ = "batches"
    __table_args__ = (
        one_of("status", BATCH_STATUSES, "status_known"),
        sa.CheckConstraint("units > 0", name="units_positive"),
        sa.CheckConstraint("remaining_volume_ml >= 0", name="remaining_not_negative"),
        sa.CheckConstraint(
            "remaining_volume_ml <= total_volume_ml", name="remaining_within_total"
        ),
        sa.Index("ix_batches_status_beyond_use", "status", "beyond_use_at"),
        # Batches of one status, oldest or newest first (e.g. those awaiting verification).
        sa.Index("ix_batches_status_compounded", "status", "compounded_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(16), unique=True)
    formula_id: Mapped[int] = mapped_column(sa.ForeignKey("formulas.id"), index=True)
    units: Mapped[int]
    total_volume_ml: Mapped[Decimal]
    remaining_volume_ml: Mapped[Decimal]
    compounded_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    compounded_by_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    verified_at: Mapped[datetime | None]
    verified_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    beyond_use_at: Mapped[datetime] = mapped_column(index=True)
    storage: Mapped[str] = mapped_column(sa.String(30))
    notes: Mapped[str] = mapped_column(sa.Text, default="")
    deviations: Mapped[str] = mapped_column(sa.Text, default="")
    status: Mapped[str] = mapped_column(sa.String(20), default="prepared")
    status_reason: Mapped[str] = mapped_column(sa.Text, default="")
    discard_reason: Mapped[str | None] = mapped_column(sa.String(30))

    formula: Mapped[Formula] = relationship(lazy="raise")
    compounded_by: Mapped[User] = relationship(foreign_keys=[compounded_by_id], lazy="raise")
    verified_by: Mapped[User | None] = relationship(foreign_keys=[verified_by_id], lazy="raise")
    components: Mapped[list["BatchComponent"]] = relationship(
        back_populates="batch", order_by="BatchComponent.id", lazy="raise"
    )

    def __repr__(self) -> str:
        return f"<Batch {self.code} {self.status}>"


class BatchComponent(db.Model):
    """One lot consumed by one batch: the upstream link of every trace."""

    __tablename__ = "batch_components"
    __table_args__ = (sa.CheckConstraint("quantity > 0", name="quantity_positive"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[int] = mapped_column(sa.ForeignKey("batches.id"), index=True)
    lot_id: Mapped[int] = mapped_column(sa.ForeignKey("lots.id"), index=True)
    ingredient_id: Mapped[int] = mapped_column(sa.ForeignKey("ingredients.id"))
    theoretical_quantity: Mapped[Decimal]
    quantity: Mapped[Decimal]
    scanned: Mapped[bool] = mapped_column(default=False)

    batch: Mapped[Batch] = relationship(back_populates="components")
    lot: Mapped[Lot] = relationship(lazy="raise")
