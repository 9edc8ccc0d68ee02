"""A received lot of an ingredient, from quarantine to release and depletion."""

from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from ._common import one_of, utcnow
from .ingredient import Ingredient
from .user import User


class LotStatus(StrEnum):
    """Where a lot stands; each member equals the string stored in `lots.status`."""

    QUARANTINE = "quarantine"
    RELEASED = "released"
    REJECTED = "rejected"
    RECALLED = "recalled"
    DEPLETED = "depleted"
    ON_HOLD = "on_hold"


LOT_STATUSES = tuple(LotStatus)


class Lot(db.Model):
    __tablename__ = "lots"
    __table_args__ = (
        one_of("status", LOT_STATUSES, "status_known"),
        sa.CheckConstraint("remaining >= 0", name="remaining_not_negative"),
        sa.CheckConstraint("quantity_received > 0", name="quantity_received_positive"),
        sa.UniqueConstraint("ingredient_id", "supplier", "supplier_lot_number"),
        sa.Index("ix_lots_ingredient_status_expiry", "ingredient_id", "status", "expires_on"),
        # The lot list's default order: a page's ids are read off this index alone.
        sa.Index("ix_lots_expires_on_id", "expires_on", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(12), unique=True)
    ingredient_id: Mapped[int] = mapped_column(sa.ForeignKey("ingredients.id"))
    supplier: Mapped[str] = mapped_column(sa.String(120))
    supplier_lot_number: Mapped[str] = mapped_column(sa.String(60))
    gtin: Mapped[str | None] = mapped_column(sa.String(14), index=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    received_by_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    expires_on: Mapped[date]
    quantity_received: Mapped[Decimal]
    remaining: Mapped[Decimal]
    coa_reference: Mapped[str] = mapped_column(sa.String(120), default="")
    location: Mapped[str] = mapped_column(sa.String(120), default="")
    status: Mapped[str] = mapped_column(sa.String(20), default="quarantine", index=True)
    status_reason: Mapped[str] = mapped_column(sa.Text, default="")
    released_at: Mapped[datetime | None]
    released_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))

    ingredient: Mapped[Ingredient] = relationship(lazy="raise")
    received_by: Mapped[User] = relationship(foreign_keys=[received_by_id], lazy="raise")
    released_by: Mapped[User | None] = relationship(foreign_keys=[released_by_id], lazy="raise")

    def __repr__(self) -> str:
        return f"<Lot {self.code} {self.status}>"
