"""Who saw or exported patient data, when, and what: one row a request."""

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from ..limits import NAME_MAX
from ._common import utcnow


class PatientAccess(db.Model):
    """One request that showed or exported patient data.

    `action` says what was opened (patient.view, trace.batch, export.recall, ...); the patient
    when one was named, else the target (a lot, batch, recall, or a list with its filters).
    """

    __tablename__ = "patient_access_log"
    __table_args__ = (
        sa.Index("ix_patient_access_log_user_id_occurred_at", "user_id", "occurred_at"),
        sa.Index("ix_patient_access_log_target", "target_type", "target_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    user_name: Mapped[str] = mapped_column(sa.String(NAME_MAX), default="")
    role: Mapped[str] = mapped_column(sa.String(20), default="")
    action: Mapped[str] = mapped_column(sa.String(40))
    patient_id: Mapped[int | None] = mapped_column(sa.ForeignKey("patients.id"), index=True)
    target_type: Mapped[str] = mapped_column(sa.String(40), default="")
    target_id: Mapped[int | None]
    # The request's path and query (filters, page), cut to fit.
    detail: Mapped[str] = mapped_column(sa.String(500), default="")
