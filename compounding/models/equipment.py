"""Equipment used at the bench, its calibrations or certifications, and what each batch was made with."""

from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from ..limits import CODE_MAX, NAME_MAX
from ._common import one_of, utcnow

EQUIPMENT_KINDS = ("balance", "pipette", "hood", "thermometer", "data_logger")
EQUIPMENT_KIND_TEXT = {"balance": "Balance", "pipette": "Pipette", "hood": "Hood / biological safety cabinet",
                       "thermometer": "Thermometer", "data_logger": "Data logger"}
CALIBRATION_RESULTS = ("pass", "fail")


class Equipment(db.Model):
    __tablename__ = "equipment"
    __table_args__ = (
        one_of("kind", EQUIPMENT_KINDS, "kind_known"),
        # A site's equipment in code order; overdue ones are found by their due date.
        sa.Index("ix_equipment_site_code", "site_id", "code"),
        sa.Index("ix_equipment_due_on", "due_on"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # Printed on the equipment's label and scanned at the bench (upper case, unique).
    code: Mapped[str] = mapped_column(sa.String(CODE_MAX), unique=True)
    kind: Mapped[str] = mapped_column(sa.String(20))
    name: Mapped[str] = mapped_column(sa.String(NAME_MAX))
    serial_number: Mapped[str] = mapped_column(sa.String(NAME_MAX), default="")
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("sites.id"))
    # The day the next calibration or certification is due: usable until this day included.
    due_on: Mapped[date]
    # A failed calibration takes it out of service until a passing one.
    out_of_service: Mapped[bool] = mapped_column(default=False)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))

    @property
    def kind_text(self) -> str:
        return EQUIPMENT_KIND_TEXT[self.kind]

    def overdue_on(self, day: date) -> bool:
        return self.due_on < day


class Calibration(db.Model):
    """One calibration or certification of a piece of equipment (its certificate is a document)."""

    __tablename__ = "calibrations"
    __table_args__ = (
        one_of("result", CALIBRATION_RESULTS, "result_known"),
        sa.CheckConstraint("next_due_on > performed_on", name="due_after_performed"),
        sa.Index("ix_calibrations_equipment_performed", "equipment_id", "performed_on"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    equipment_id: Mapped[int] = mapped_column(sa.ForeignKey("equipment.id"))
    performed_on: Mapped[date]
    result: Mapped[str] = mapped_column(sa.String(10))
    # The due date it set (a pass), or the one it left (a fail).
    next_due_on: Mapped[date]
    performed_by: Mapped[str] = mapped_column(sa.String(NAME_MAX), default="")
    certificate_number: Mapped[str] = mapped_column(sa.String(NAME_MAX), default="")
    note: Mapped[str] = mapped_column(sa.Text, default="")
    recorded_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)


class BatchEquipment(db.Model):
    """A piece of equipment a batch was made with, copied as it stood then (the record never moves)."""

    __tablename__ = "batch_equipment"
    __table_args__ = (
        sa.UniqueConstraint("batch_id", "equipment_id", name="uq_batch_equipment_once"),
        sa.Index("ix_batch_equipment_equipment", "equipment_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[int] = mapped_column(sa.ForeignKey("batches.id"))
    equipment_id: Mapped[int] = mapped_column(sa.ForeignKey("equipment.id"))
    code: Mapped[str] = mapped_column(sa.String(CODE_MAX))
    kind: Mapped[str] = mapped_column(sa.String(20))
    name: Mapped[str] = mapped_column(sa.String(NAME_MAX))
    due_on: Mapped[date]
