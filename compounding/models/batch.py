"""Compounding records: a batch made from a formula version and the lots it consumed."""

from datetime import date, datetime, tzinfo
from decimal import Decimal
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from ..limits import NAME_MAX, SHORT_TEXT_MAX
from ..services.clock import to_clinic
from ._common import one_of, transition, utcnow
from .formula import Formula
from .ingredient import STORAGE_CONDITIONS
from .lot import Lot
from .site import main_location_id, main_site_id
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
    # Verified, but its category's BUD needs test results (sterility, endotoxins) before any use.
    AWAITING_TESTS = "awaiting_tests"


BATCH_STATUSES = tuple(BatchStatus)
# The statuses a hold suspends; the last is where a batch returns when its history says nothing.
BATCH_HOLDABLE = (BatchStatus.PREPARED, BatchStatus.AWAITING_TESTS, BatchStatus.RELEASED)
# Every change of a batch's status: where it may start, where it leads, what a refusal says.
BATCH_TRANSITIONS = {
    "verify": transition({BatchStatus.PREPARED}, BatchStatus.RELEASED,
                         "{label} is {status}; only a prepared batch can be verified."),
    # Verified, but the category's BUD rests on tests whose results are not in yet.
    "await_tests": transition({BatchStatus.PREPARED}, BatchStatus.AWAITING_TESTS,
                              "{label} is {status}; only a prepared batch can be verified."),
    "pass_tests": transition({BatchStatus.AWAITING_TESTS}, BatchStatus.RELEASED,
                             "{label} is {status}, not awaiting test results."),
    "fail_tests": transition({BatchStatus.AWAITING_TESTS, BatchStatus.ON_HOLD}, BatchStatus.REJECTED,
                             "{label} is {status}; a failed test rejects only a batch awaiting its results."),
    "reject": transition({BatchStatus.PREPARED}, BatchStatus.REJECTED,
                         "{label} is {status}; only a prepared batch can be rejected."),
    "discard": transition(set(BatchStatus) - {BatchStatus.DISCARDED, BatchStatus.DEPLETED}, BatchStatus.DISCARDED,
                          "{label} is already {status}."),
    # Rejected and discarded batches never reached anyone: a recall leaves them as they are.
    "recall": transition({BatchStatus.PREPARED, BatchStatus.AWAITING_TESTS, BatchStatus.RELEASED,
                          BatchStatus.DEPLETED, BatchStatus.ON_HOLD},
                         BatchStatus.RECALLED, "{label} is {status}."),
    "hold": transition(BATCH_HOLDABLE, BatchStatus.ON_HOLD, "{label} is {status}."),
    # The last hold released: back to the status the history shows before the hold (`to` is read there).
    "unhold": transition({BatchStatus.ON_HOLD}, None, "{label} is {status}, not on hold."),
    "deplete": transition({*BATCH_HOLDABLE, BatchStatus.ON_HOLD}, BatchStatus.DEPLETED, "{label} is {status}."),
}
DISCARD_REASONS = ("expired", "damaged", "contaminated", "out_of_specification", "other")
TEST_KINDS = ("sterility", "endotoxin")
TEST_RESULTS = ("pass", "fail")
TEST_METHODS = ("compendial", "rapid")


class Batch(db.Model):
    __tablename__ = "batches"
    __table_args__ = (
        one_of("status", BATCH_STATUSES, "status_known"),
        one_of("storage", STORAGE_CONDITIONS, "storage_known"),
        sa.CheckConstraint("units > 0", name="units_positive"),
        sa.CheckConstraint("remaining_volume_ml >= 0", name="remaining_not_negative"),
        sa.CheckConstraint(
            "remaining_volume_ml <= total_volume_ml", name="remaining_within_total"
        ),
        sa.Index("ix_batches_status_beyond_use", "status", "beyond_use_at"),
        # Batches of one status, oldest or newest first (e.g. those awaiting verification).
        sa.Index("ix_batches_status_compounded", "status", "compounded_at"),
        sa.ForeignKeyConstraint(["location_id", "site_id"], ["locations.id", "locations.site_id"],
                                name="fk_batches_location_at_site"),
        # A site's batch list, newest first.
        sa.Index("ix_batches_site_compounded_id", "site_id", "compounded_at", "id"),
        sa.Index("ix_batches_location", "location_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(16), unique=True)
    formula_id: Mapped[int] = mapped_column(sa.ForeignKey("formulas.id"), index=True)
    units: Mapped[int]
    total_volume_ml: Mapped[Decimal]
    remaining_volume_ml: Mapped[Decimal]
    # The BUD clock starts here (the bench page opened, or the API's `preparation_started_at`).
    preparation_started_at: Mapped[datetime] = mapped_column(default=utcnow)
    compounded_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    compounded_by_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    verified_at: Mapped[datetime | None]
    verified_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    beyond_use_at: Mapped[datetime] = mapped_column(index=True)
    storage: Mapped[str] = mapped_column(sa.String(30))
    protect_from_light: Mapped[bool] = mapped_column(default=False)
    # The tests its category's BUD rests on, fixed at compounding: "sterility" or "sterility,endotoxin".
    required_tests: Mapped[str] = mapped_column(sa.String(40), default="")
    notes: Mapped[str] = mapped_column(sa.Text, default="")
    deviations: Mapped[str] = mapped_column(sa.Text, default="")
    status: Mapped[str] = mapped_column(sa.String(20), default=BatchStatus.PREPARED)
    status_reason: Mapped[str] = mapped_column(sa.Text, default="")
    # Where it is: a location, and that location's site (a pair the database keeps consistent).
    location_id: Mapped[int] = mapped_column(default=main_location_id())
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("sites.id"), default=main_site_id())
    discard_reason: Mapped[str | None] = mapped_column(sa.String(30))

    formula: Mapped[Formula] = relationship(lazy="raise")
    compounded_by: Mapped[User] = relationship(foreign_keys=[compounded_by_id], lazy="raise")
    verified_by: Mapped[User | None] = relationship(foreign_keys=[verified_by_id], lazy="raise")
    components: Mapped[list["BatchComponent"]] = relationship(
        back_populates="batch", order_by="BatchComponent.id", lazy="raise"
    )
    # The equipment it was made with, as copied at compounding (models/equipment.py: BatchEquipment).
    equipment_used: Mapped[list["BatchEquipment"]] = relationship(  # noqa: F821 (mapped by name)
        order_by="BatchEquipment.id", lazy="raise", viewonly=True
    )

    def is_expired(self, at: datetime | None = None) -> bool:
        """A batch is expired from its beyond-use date and time on."""
        return (at or utcnow()) >= self.beyond_use_at

    def unusable_reasons(self, at: datetime | None = None, volume_ml: Decimal | None = None, *,
                         status: str | None = None, holds: list[str] | None = None,
                         zone: tzinfo | None = None) -> list[str]:
        """Every reason this batch may not be injected at `at` (empty list: usable).

        Pure: `status` is the batch's status at `at` (its current one when None) and `holds`
        the hold reasons standing then (services.batches.reasons_at reads both from the
        history). Times are shown in `zone`, the clinic's when None.
        """
        reasons = []
        status = status or self.status
        if at is not None and at < self.compounded_at:
            reasons.append("it had not been compounded yet at that time")
        elif at is not None and self.verified_at is not None and at < self.verified_at:
            reasons.append(f"not verified yet at that time (verified {_shown(self.verified_at, zone)})")
        elif status == BatchStatus.PREPARED:
            reasons.append("not released: awaiting verification by a second pharmacist")
        if status == BatchStatus.AWAITING_TESTS:
            reasons.append("not released: awaiting test results (" + ", ".join(self.tests_required) + ")")
        if status in (BatchStatus.REJECTED, BatchStatus.RECALLED, BatchStatus.DISCARDED):
            reasons.append(status + (f": {self.status_reason}" if self.status_reason else ""))
        if holds:
            reasons.append("on hold: " + "; ".join(holds))
        elif status == BatchStatus.ON_HOLD:
            reasons.append("on hold")
        if self.is_expired(at):
            reasons.append(f"expired at {_shown(self.beyond_use_at, zone)} (beyond-use date)")
        if self.remaining_volume_ml <= 0:
            reasons.append("empty: no volume left")
        elif volume_ml is not None and volume_ml > self.remaining_volume_ml:
            reasons.append(f"only {self.remaining_volume_ml.normalize():f} mL left, {volume_ml} mL asked")
        return reasons

    @property
    def tests_required(self) -> tuple[str, ...]:
        """The test kinds this batch's BUD rests on, in TEST_KINDS order (empty: none)."""
        return tuple(kind for kind in (self.required_tests or "").split(",") if kind)

    def __repr__(self) -> str:
        return f"<Batch {self.code} {self.status}>"


def _shown(moment: datetime, zone: tzinfo | None) -> str:
    local = to_clinic(moment, zone)
    return f"{local:%Y-%m-%d %H:%M} {local.tzname()}"


class BatchComponent(db.Model):
    """One lot consumed by one batch: the upstream link of every trace.

    What the ingredient and lot were at compounding is copied here (name, strength, unit,
    lot code, supplier lot, expiry): labels, pages, exports and the API read the copy, so
    a later edit of the ingredient changes no batch already made.
    """

    __tablename__ = "batch_components"
    __table_args__ = (sa.CheckConstraint("quantity > 0", name="quantity_positive"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[int] = mapped_column(sa.ForeignKey("batches.id"), index=True)
    lot_id: Mapped[int] = mapped_column(sa.ForeignKey("lots.id"), index=True)
    ingredient_id: Mapped[int] = mapped_column(sa.ForeignKey("ingredients.id"))
    theoretical_quantity: Mapped[Decimal]
    quantity: Mapped[Decimal]
    scanned: Mapped[bool] = mapped_column(default=False)
    ingredient_name: Mapped[str] = mapped_column(sa.String(NAME_MAX))
    ingredient_kind: Mapped[str] = mapped_column(sa.String(20))
    ingredient_strength: Mapped[str] = mapped_column(sa.String(60), default="")
    ingredient_unit: Mapped[str] = mapped_column(sa.String(10))
    ingredient_sterile: Mapped[bool] = mapped_column(default=False)
    ingredient_vehicle: Mapped[bool] = mapped_column(default=False)
    lot_code: Mapped[str] = mapped_column(sa.String(12))
    supplier_lot_number: Mapped[str] = mapped_column(sa.String(60))
    lot_expires_on: Mapped[date]

    batch: Mapped[Batch] = relationship(back_populates="components")
    lot: Mapped[Lot] = relationship(lazy="raise")


class BatchTest(db.Model):
    """A release test result (sterility, bacterial endotoxins) of a batch, e-signed by a pharmacist.

    One result per test kind and method: a result is never overwritten; a rapid result may be
    confirmed by the compendial one.
    """

    __tablename__ = "batch_tests"
    __table_args__ = (
        sa.UniqueConstraint("batch_id", "kind", "method"),
        one_of("kind", TEST_KINDS, "kind_known"),
        one_of("result", TEST_RESULTS, "result_known"),
        one_of("method", TEST_METHODS, "method_known"),
        sa.CheckConstraint("units_sampled >= 0", name="units_sampled_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[int] = mapped_column(sa.ForeignKey("batches.id"), index=True)
    kind: Mapped[str] = mapped_column(sa.String(20))
    result: Mapped[str] = mapped_column(sa.String(10))
    method: Mapped[str] = mapped_column(sa.String(20))
    lab: Mapped[str] = mapped_column(sa.String(SHORT_TEXT_MAX), default="")
    sampled_on: Mapped[date]
    # Units taken as samples leave the batch (their volume is written off when the result is recorded).
    units_sampled: Mapped[int] = mapped_column(default=0)
    note: Mapped[str] = mapped_column(sa.Text, default="")
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)
    recorded_by_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))

    batch: Mapped[Batch] = relationship(lazy="raise")
