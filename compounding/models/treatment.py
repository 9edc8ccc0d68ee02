"""Treatment sessions, the batches used in them, and the adverse events that followed."""

from datetime import date, datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from ..limits import NAME_MAX, SHORT_TEXT_MAX
from ._common import one_of, utcnow
from .batch import Batch
from .patient import Patient
from .site import main_site_id
from .user import User
from .vial import Vial  # noqa: F401 (named by the relationship)

ADVERSE_EVENT_TYPES = (
    "redness",
    "swelling",
    "bruising",
    "pain",
    "nodule",
    "infection",
    "allergic_reaction",
    "necrosis",
    "abscess",
    "granuloma",
    "other",
)
SEVERE_EVENT_TYPES = ("infection", "necrosis", "allergic_reaction")
# These hold the batch used at any severity (any type holds it when severe).
HOLDING_EVENT_TYPES = ("infection", "necrosis", "allergic_reaction", "nodule", "abscess", "granuloma")
SEVERITIES = ("mild", "moderate", "severe")
# Why a session was voided: the code is required, the free text explains.
VOID_CODES = ("entered_in_error", "wrong_patient", "not_administered", "duplicate")
# `wrong_patient` is written only by a patient correction, which keeps the volume taken and
# moves the uses to the right patient; a plain void with it would lose the real recipient.
PLAIN_VOID_CODES = tuple(code for code in VOID_CODES if code != "wrong_patient")


class TreatmentSession(db.Model):
    __tablename__ = "treatment_sessions"
    __table_args__ = (
        sa.Index("ix_treatment_sessions_patient_performed", "patient_id", "performed_at"),
        # The session list's order: its pages are found on this index alone (PostgreSQL: index-only).
        sa.Index("ix_treatment_sessions_performed_id", "performed_at", "id"),
        # Voided sessions are rare: a partial index finds them without reading every session.
        sa.Index("ix_treatment_sessions_voided", "voided_at", sqlite_where=sa.text("voided_at IS NOT NULL"),
                 postgresql_where=sa.text("voided_at IS NOT NULL")),
        # NULL (a session that stands) passes the check.
        one_of("void_code", VOID_CODES, "void_code_known"),
        # A site's sessions, in the list's order.
        sa.Index("ix_treatment_sessions_site_performed_id", "site_id", "performed_at", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(sa.ForeignKey("patients.id"))
    practitioner_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), index=True)
    performed_at: Mapped[datetime] = mapped_column(default=utcnow)
    indication: Mapped[str] = mapped_column(sa.String(SHORT_TEXT_MAX), default="")
    notes: Mapped[str] = mapped_column(sa.Text, default="")
    # The site where it was performed: its vials were there.
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("sites.id"), default=main_site_id())
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)
    voided_at: Mapped[datetime | None]
    voided_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    void_code: Mapped[str | None] = mapped_column(sa.String(30))
    void_reason: Mapped[str] = mapped_column(sa.Text, default="")
    # A patient correction: the session that moved these uses from the wrongly named patient.
    corrects_session_id: Mapped[int | None] = mapped_column(sa.ForeignKey("treatment_sessions.id"), index=True)

    patient: Mapped[Patient] = relationship(lazy="raise")
    practitioner: Mapped[User] = relationship(foreign_keys=[practitioner_id], lazy="raise")
    uses: Mapped[list["SessionUse"]] = relationship(
        back_populates="treatment_session", order_by="SessionUse.id", lazy="raise"
    )


class SessionUse(db.Model):
    """One batch injected in one session: the downstream link of every trace."""

    __tablename__ = "session_uses"
    __table_args__ = (
        sa.CheckConstraint("volume_ml > 0", name="volume_positive"),
        # Covers trace, recall and quality signals: a batch's sessions and volumes from the index alone.
        sa.Index("ix_session_uses_batch_session", "batch_id", "session_id", "volume_ml"),
        # A vial's uses (its page, trace to the vial, the single-dose rule).
        sa.Index("ix_session_uses_vial", "vial_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(sa.ForeignKey("treatment_sessions.id"), index=True)
    batch_id: Mapped[int] = mapped_column(sa.ForeignKey("batches.id"))
    # The vial it was drawn from; None for a use recorded before vials (pooled on the batch).
    vial_id: Mapped[int | None] = mapped_column(sa.ForeignKey("vials.id"))
    volume_ml: Mapped[Decimal]
    area: Mapped[str] = mapped_column(sa.String(NAME_MAX), default="")

    treatment_session: Mapped[TreatmentSession] = relationship(back_populates="uses")
    batch: Mapped[Batch] = relationship(lazy="raise")
    vial: Mapped["Vial | None"] = relationship(lazy="raise")


class AdverseEvent(db.Model):
    __tablename__ = "adverse_events"
    __table_args__ = (
        one_of("type", ADVERSE_EVENT_TYPES, "type_known"),
        one_of("severity", SEVERITIES, "severity_known"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(sa.ForeignKey("treatment_sessions.id"), index=True)
    type: Mapped[str] = mapped_column(sa.String(30), index=True)
    severity: Mapped[str] = mapped_column(sa.String(10))
    onset_on: Mapped[date | None]
    outcome: Mapped[str] = mapped_column(sa.String(SHORT_TEXT_MAX), default="")
    notes: Mapped[str] = mapped_column(sa.Text, default="")
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    recorded_by_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))

    treatment_session: Mapped[TreatmentSession] = relationship(lazy="raise")
