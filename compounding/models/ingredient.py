"""Raw materials: the ingredients a clinic keeps in stock."""

from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from ..limits import NAME_MAX
from ._common import one_of, utcnow

INGREDIENT_KINDS = ("active", "excipient", "diluent")
STOCK_UNITS = ("mg", "g", "mL", "IU", "unit")
# Storage is a temperature; light protection is a flag of its own (DESIGN 10.2).
STORAGE_CONDITIONS = ("room", "fridge", "freezer")


class Ingredient(db.Model):
    __tablename__ = "ingredients"
    __table_args__ = (
        one_of("kind", INGREDIENT_KINDS, "kind_known"),
        one_of("unit", STOCK_UNITS, "unit_known"),
        one_of("storage", STORAGE_CONDITIONS, "storage_known"),
        sa.CheckConstraint("reorder_level >= 0", name="reorder_level_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(NAME_MAX), unique=True)
    kind: Mapped[str] = mapped_column(sa.String(20))
    unit: Mapped[str] = mapped_column(sa.String(10))
    strength: Mapped[str] = mapped_column(sa.String(60), default="")
    storage: Mapped[str] = mapped_column(sa.String(30), default="room")
    protect_from_light: Mapped[bool] = mapped_column(default=False)
    # Supplied sterile: the BUD categories that assume only sterile starting components check it.
    sterile: Mapped[bool] = mapped_column(default=False)
    # A pure vehicle (water for injection, sodium chloride 0.9 %): not a drug, so not named on a label.
    vehicle: Mapped[bool] = mapped_column(default=False)
    reorder_level: Mapped[Decimal] = mapped_column(default=Decimal("0"))
    active: Mapped[bool] = mapped_column(default=True, index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    gtins: Mapped[list["IngredientGtin"]] = relationship(
        back_populates="ingredient",
        cascade="all, delete-orphan",
        order_by="IngredientGtin.gtin",
        lazy="selectin",
    )

    @property
    def gtin_list(self) -> list[str]:
        return [g.gtin for g in self.gtins]

    def __repr__(self) -> str:
        return f"<Ingredient {self.name}>"


class IngredientGtin(db.Model):
    """A supplier's trade item number for this ingredient (one ingredient, many packs)."""

    __tablename__ = "ingredient_gtins"

    id: Mapped[int] = mapped_column(primary_key=True)
    ingredient_id: Mapped[int] = mapped_column(sa.ForeignKey("ingredients.id"), index=True)
    gtin: Mapped[str] = mapped_column(sa.String(14), unique=True)

    ingredient: Mapped[Ingredient] = relationship(back_populates="gtins")
