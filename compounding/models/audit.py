"""The hash-chained audit trail and the e-signatures it vouches for."""

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from ._common import utcnow

SIGNATURE_MEANINGS = (
    "released", "rejected", "verified", "approved", "recall opened", "recall closed",
    # Second tranche, rule 10.1: corrections and overrides a pharmacist answers for.
    "voided", "patient corrected", "not exposed", "hold released", "stock raised", "back-dated",
    # DESIGN 10.11: an admin answers for every new admin and every change to or from the admin role.
    "admin created", "role changed",
)


class AuditEvent(db.Model):
    __tablename__ = "audit_events"
    __table_args__ = (sa.Index("ix_audit_events_entity", "entity_type", "entity_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"), index=True)
    actor_name: Mapped[str] = mapped_column(sa.String(120), default="")
    action: Mapped[str] = mapped_column(sa.String(60), index=True)
    entity_type: Mapped[str] = mapped_column(sa.String(40))
    entity_id: Mapped[int | None]
    old_values: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    new_values: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    reason: Mapped[str] = mapped_column(sa.Text, default="")
    prev_hash: Mapped[str] = mapped_column(sa.String(64))
    hash: Mapped[str] = mapped_column(sa.String(64), unique=True)


class Signature(db.Model):
    """An electronic signature: who (printed name), when, what it means, on which record."""

    __tablename__ = "signatures"
    __table_args__ = (sa.Index("ix_signatures_entity", "entity_type", "entity_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    signer_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), index=True)
    signer_name: Mapped[str] = mapped_column(sa.String(120))
    signed_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    meaning: Mapped[str] = mapped_column(sa.String(30))
    entity_type: Mapped[str] = mapped_column(sa.String(40))
    entity_id: Mapped[int]
