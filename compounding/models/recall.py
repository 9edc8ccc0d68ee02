"""Recalls of a lot or a batch; the scope is computed from the links, never typed in."""

from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from ._common import one_of, transition, utcnow
from .batch import Batch
from .lot import Lot
from .patient import Patient


class RecallStatus(StrEnum):
    """Whether a recall is still being worked; each member equals `recalls.status`."""

    OPEN = "open"
    CLOSED = "closed"


RECALL_STATUSES = tuple(RecallStatus)
# What may happen to a recall in each status, and what a refusal says.
RECALL_TRANSITIONS = {
    "contact": transition({RecallStatus.OPEN}, None, "This recall is closed."),
    "close": transition({RecallStatus.OPEN}, RecallStatus.CLOSED, "This recall is already closed."),
    # A session entered late that reaches a closed recall reopens it: its patient must be contacted.
    "reopen": transition({RecallStatus.CLOSED}, RecallStatus.OPEN, "This recall is open."),
}
CONTACT_METHODS = ("phone", "email", "in_person", "letter", "other")
# What came of trying to reach a patient. Every outcome but a failed
# attempt is final: a patient's latest final outcome is their outcome in the recall.
CONTACT_OUTCOMES = ("reached", "attempt_failed", "unreachable", "declined", "not_exposed")
FINAL_OUTCOMES = tuple(outcome for outcome in CONTACT_OUTCOMES if outcome != "attempt_failed")


class Recall(db.Model):
    __tablename__ = "recalls"
    __table_args__ = (
        one_of("status", RECALL_STATUSES, "status_known"),
        sa.CheckConstraint(
            "(lot_id IS NULL) <> (batch_id IS NULL)", name="exactly_one_target"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    lot_id: Mapped[int | None] = mapped_column(sa.ForeignKey("lots.id"), index=True)
    batch_id: Mapped[int | None] = mapped_column(sa.ForeignKey("batches.id"), index=True)
    reason: Mapped[str] = mapped_column(sa.Text)
    opened_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    opened_by_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    status: Mapped[str] = mapped_column(sa.String(10), default=RecallStatus.OPEN, index=True)
    closed_at: Mapped[datetime | None]
    closed_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    outcome: Mapped[str] = mapped_column(sa.Text, default="")

    lot: Mapped[Lot | None] = relationship(lazy="raise")
    batch: Mapped[Batch | None] = relationship(lazy="raise")


class RecallContact(db.Model):
    """One attempt to reach a patient in a recall's scope, and what came of it: a history per patient."""

    __tablename__ = "recall_contacts"
    __table_args__ = (
        # NULL (no method, e.g. not exposed) passes the check.
        one_of("method", CONTACT_METHODS, "method_known"),
        one_of("outcome", CONTACT_OUTCOMES, "outcome_known"),
        sa.Index("ix_recall_contacts_recall_patient", "recall_id", "patient_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    recall_id: Mapped[int] = mapped_column(sa.ForeignKey("recalls.id"), index=True)
    patient_id: Mapped[int] = mapped_column(sa.ForeignKey("patients.id"), index=True)
    contacted_at: Mapped[datetime] = mapped_column(default=utcnow)
    contacted_by_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    outcome: Mapped[str] = mapped_column(sa.String(20), default="reached")
    method: Mapped[str | None] = mapped_column(sa.String(20))
    note: Mapped[str] = mapped_column(sa.Text, default="")

    patient: Mapped[Patient] = relationship(lazy="raise")
