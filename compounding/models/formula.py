"""Master formulation records, versioned: an approved version is never edited."""

from datetime import datetime
from decimal import Decimal
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from ..limits import SHORT_TEXT_MAX
from ._common import one_of, transition, utcnow
from .ingredient import STORAGE_CONDITIONS, Ingredient


class FormulaStatus(StrEnum):
    """Where a formula version stands; each member equals the string stored in `formulas.status`."""

    DRAFT = "draft"
    APPROVED = "approved"
    RETIRED = "retired"


FORMULA_STATUSES = tuple(FormulaStatus)
# What may happen to a formula version in each status, and what a refusal says.
FORMULA_TRANSITIONS = {
    "edit": transition({FormulaStatus.DRAFT}, None, "{label} is {status} and read-only; make a new version."),
    "new_version": transition({FormulaStatus.APPROVED, FormulaStatus.RETIRED}, None,
                              "{label} is still a draft: edit it directly."),
    "approve": transition({FormulaStatus.DRAFT}, FormulaStatus.APPROVED,
                          "{label} is {status}; only a draft can be approved."),
    # Approving a version retires the approved one it replaces.
    "replace": transition({FormulaStatus.APPROVED}, FormulaStatus.RETIRED, "{label} is {status}."),
    "retire": transition({FormulaStatus.DRAFT, FormulaStatus.APPROVED}, FormulaStatus.RETIRED,
                         "{label} is already retired."),
    "compound": transition({FormulaStatus.APPROVED}, None,
                           "{label} is {status}; only an approved formula can be compounded."),
}
INDICATIONS = ("fat_reduction", "skin_rejuvenation", "hair_loss", "other")
ROUTES = ("intradermal", "subcutaneous")


class Formula(db.Model):
    __tablename__ = "formulas"
    __table_args__ = (
        sa.UniqueConstraint("code", "version"),
        one_of("status", FORMULA_STATUSES, "status_known"),
        one_of("indication", INDICATIONS, "indication_known"),
        one_of("route", ROUTES, "route_known"),
        one_of("storage", STORAGE_CONDITIONS, "storage_known"),
        sa.CheckConstraint("unit_volume_ml > 0", name="unit_volume_positive"),
        sa.CheckConstraint("bud_hours IS NULL OR bud_hours > 0", name="bud_hours_positive"),
        one_of("dose", ("single", "multiple"), "dose_known"),
        # Multiple-dose: an in-use period of at most 28 days (USP <797>); single-dose: none.
        sa.CheckConstraint("(dose = 'single' AND in_use_hours IS NULL) OR "
                           "(dose = 'multiple' AND in_use_hours > 0 AND in_use_hours <= 672)",
                           name="in_use_hours_for_dose"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(30), index=True)
    version: Mapped[int] = mapped_column(default=1)
    name: Mapped[str] = mapped_column(sa.String(SHORT_TEXT_MAX))
    indication: Mapped[str] = mapped_column(sa.String(30))
    route: Mapped[str] = mapped_column(sa.String(20))
    dosage_form: Mapped[str] = mapped_column(sa.String(60), default="solution for injection")
    unit_label: Mapped[str] = mapped_column(sa.String(60), default="vial")
    unit_volume_ml: Mapped[Decimal]
    instructions: Mapped[str] = mapped_column(sa.Text, default="")
    storage: Mapped[str] = mapped_column(sa.String(30), default="fridge")
    protect_from_light: Mapped[bool] = mapped_column(default=False)
    # Single-dose (default): one patient, one session. Multiple-dose: needs recorded
    # antimicrobial-effectiveness evidence (USP <51>) and an in-use period after first puncture.
    dose: Mapped[str] = mapped_column(sa.String(10), default="single")
    in_use_hours: Mapped[int | None]
    antimicrobial_evidence: Mapped[str] = mapped_column(sa.Text, default="")
    bud_category: Mapped[str] = mapped_column(sa.String(60))
    bud_hours: Mapped[int | None]
    bud_reason: Mapped[str] = mapped_column(sa.Text, default="")
    status: Mapped[str] = mapped_column(sa.String(20), default=FormulaStatus.DRAFT, index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    approved_at: Mapped[datetime | None]
    approved_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    retired_at: Mapped[datetime | None]
    previous_version_id: Mapped[int | None] = mapped_column(sa.ForeignKey("formulas.id"))

    components: Mapped[list["FormulaComponent"]] = relationship(
        back_populates="formula",
        cascade="all, delete-orphan",
        order_by="FormulaComponent.position",
        lazy="selectin",
    )

    @property
    def label(self) -> str:
        return f"{self.code} v{self.version}"


class FormulaComponent(db.Model):
    __tablename__ = "formula_components"
    __table_args__ = (
        sa.UniqueConstraint("formula_id", "ingredient_id"),
        sa.CheckConstraint("quantity > 0", name="quantity_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    formula_id: Mapped[int] = mapped_column(sa.ForeignKey("formulas.id"), index=True)
    ingredient_id: Mapped[int] = mapped_column(sa.ForeignKey("ingredients.id"), index=True)
    quantity: Mapped[Decimal]  # per unit, in the ingredient's stock unit
    # "To volume": the one diluent that fills the unit; its quantity is computed, never typed.
    qs: Mapped[bool] = mapped_column(default=False)
    position: Mapped[int] = mapped_column(default=0)

    formula: Mapped[Formula] = relationship(back_populates="components")
    ingredient: Mapped[Ingredient] = relationship(lazy="joined")
