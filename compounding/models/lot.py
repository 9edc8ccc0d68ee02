"""A received lot of an ingredient, from quarantine to release and depletion."""

from datetime import date, datetime, tzinfo
from decimal import Decimal
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from ..limits import NAME_MAX
from ..services.clock import clinic_today
from ._common import one_of, transition, utcnow
from .ingredient import Ingredient
from .site import main_location_id, main_site_id
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
# The statuses a hold suspends; the last is where a lot returns when its history says nothing.
LOT_HOLDABLE = (LotStatus.QUARANTINE, LotStatus.RELEASED)
# Every change of a lot's status: where it may start, where it leads, what a refusal says.
LOT_TRANSITIONS = {
    "release": transition({LotStatus.QUARANTINE}, LotStatus.RELEASED,
                          "{label} is {status}; only a lot in quarantine can be released."),
    "reject": transition({LotStatus.QUARANTINE}, LotStatus.REJECTED,
                         "{label} is {status}; only a lot in quarantine can be rejected."),
    "quarantine": transition({LotStatus.RELEASED}, LotStatus.QUARANTINE,
                             "{label} is {status}; only a released lot can be put back into quarantine."),
    # Stock raised by a signed adjustment never brings a finished lot back.
    "raise_stock": transition(set(LotStatus) - {LotStatus.REJECTED, LotStatus.RECALLED, LotStatus.DEPLETED},
                              None, "{label} is {status}: an adjustment does not bring it back."),
    "recall": transition(set(LotStatus), LotStatus.RECALLED, "{label} is {status}."),
    "hold": transition(LOT_HOLDABLE, LotStatus.ON_HOLD, "{label} is {status}."),
    # The last hold released: back to the status the history shows before the hold (`to` is read there).
    "unhold": transition({LotStatus.ON_HOLD}, None, "{label} is {status}, not on hold."),
    # Rejected and recalled say more about a lot than that it is empty.
    "deplete": transition({*LOT_HOLDABLE, LotStatus.ON_HOLD}, LotStatus.DEPLETED, "{label} is {status}."),
}


def expired_by(expires_on: date, day: date) -> bool:
    """A lot is expired from the start of the day after its expiry date (`day` is the clinic's)."""
    return expires_on < day


class Lot(db.Model):
    __tablename__ = "lots"
    __table_args__ = (
        one_of("status", LOT_STATUSES, "status_known"),
        sa.CheckConstraint("remaining >= 0", name="remaining_not_negative"),
        sa.CheckConstraint("quantity_received > 0", name="quantity_received_positive"),
        # A supplier lot is received once per site (two clinics may each buy from the same supplier
        # lot); its child lots (made by transfers) share its number.
        sa.Index("uq_lots_received_once", "site_id", "ingredient_id", "supplier", "supplier_lot_number", unique=True,
                 sqlite_where=sa.text("parent_lot_id IS NULL"), postgresql_where=sa.text("parent_lot_id IS NULL")),
        sa.Index("ix_lots_ingredient_status_expiry", "ingredient_id", "status", "expires_on"),
        # The lot list's default order: a page's ids are read off this index alone.
        sa.Index("ix_lots_expires_on_id", "expires_on", "id"),
        sa.ForeignKeyConstraint(["location_id", "site_id"], ["locations.id", "locations.site_id"],
                                name="fk_lots_location_at_site"),
        # A site's lot list, in the list's order.
        sa.Index("ix_lots_site_expires_on_id", "site_id", "expires_on", "id"),
        sa.Index("ix_lots_location", "location_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(12), unique=True)
    ingredient_id: Mapped[int] = mapped_column(sa.ForeignKey("ingredients.id"))
    supplier: Mapped[str] = mapped_column(sa.String(NAME_MAX))
    supplier_lot_number: Mapped[str] = mapped_column(sa.String(60))
    gtin: Mapped[str | None] = mapped_column(sa.String(14), index=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    received_by_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    expires_on: Mapped[date]
    quantity_received: Mapped[Decimal]
    remaining: Mapped[Decimal]
    coa_reference: Mapped[str] = mapped_column(sa.String(NAME_MAX), default="")
    location: Mapped[str] = mapped_column(sa.String(NAME_MAX), default="")
    status: Mapped[str] = mapped_column(sa.String(20), default=LotStatus.QUARANTINE, index=True)
    status_reason: Mapped[str] = mapped_column(sa.Text, default="")
    released_at: Mapped[datetime | None]
    released_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    # Why it was released with no certificate of analysis attached (empty when one was).
    released_without_coa_reason: Mapped[str] = mapped_column(sa.Text, default="")
    # Where it is: a location, and that location's site (a pair the database keeps consistent).
    location_id: Mapped[int] = mapped_column(default=main_location_id())
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("sites.id"), default=main_site_id())
    # A child lot: made at a transfer's destination from part of this lot (same supplier lot and expiry).
    parent_lot_id: Mapped[int | None] = mapped_column(sa.ForeignKey("lots.id"), index=True)

    ingredient: Mapped[Ingredient] = relationship(lazy="raise")
    received_by: Mapped[User] = relationship(foreign_keys=[received_by_id], lazy="raise")
    released_by: Mapped[User | None] = relationship(foreign_keys=[released_by_id], lazy="raise")

    def is_expired(self, at: datetime | None = None, zone: tzinfo | None = None) -> bool:
        """Expired at `at` (now when None), judged on the clinic's day (`zone`, the clinic's when None)."""
        return expired_by(self.expires_on, clinic_today(at, zone))

    def __repr__(self) -> str:
        return f"<Lot {self.code} {self.status}>"
