"""The hash-chained audit trail and the e-signatures it vouches for."""

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from ..limits import NAME_MAX
from ._common import utcnow

KEYED_SCHEME = "hmac-sha256"
LEGACY_SCHEME = "sha256"

SIGNATURE_MEANINGS = (
    "released", "rejected", "verified", "approved", "recall opened", "recall closed", "test result",
    # Corrections and overrides a pharmacist answers for.
    "voided", "patient corrected", "not exposed", "hold released", "stock raised", "back-dated",
    # What a temperature excursion's stock becomes (keep, keep with a shorter use-by, discard).
    "excursion decided",
    # An admin answers for every new admin and every change to or from the admin role.
    "admin created", "role changed",
)


class AuditEvent(db.Model):
    __tablename__ = "audit_events"
    __table_args__ = (sa.Index("ix_audit_events_entity", "entity_type", "entity_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"), index=True)
    actor_name: Mapped[str] = mapped_column(sa.String(NAME_MAX), default="")
    action: Mapped[str] = mapped_column(sa.String(60), index=True)
    entity_type: Mapped[str] = mapped_column(sa.String(40))
    entity_id: Mapped[int | None]
    old_values: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    new_values: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    reason: Mapped[str] = mapped_column(sa.Text, default="")
    prev_hash: Mapped[str] = mapped_column(sa.String(64))
    hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    # How `hash` was made: HMAC with the audit key (every new row) or, for rows written
    # before the key existed, plain SHA-256 (services.audit verifies each by its own).
    hash_scheme: Mapped[str] = mapped_column(sa.String(16), default=KEYED_SCHEME)


# The database refuses to change or remove an audit row: a correction is a new
# row. The same triggers are created by the migration that introduced them; an insider with
# DDL rights can still drop them, which is why `audit verify` also checks outside checkpoints.
APPEND_ONLY_MESSAGE = "audit rows are append-only"
POSTGRESQL_GUARDS = (
    f"""CREATE OR REPLACE FUNCTION audit_events_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'restrict_violation',
        MESSAGE = '{APPEND_ONLY_MESSAGE}: ' || TG_OP || ' refused on audit_events';
END
$$""",
    "CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events "
    "FOR EACH ROW EXECUTE FUNCTION audit_events_refuse_change()",
    "CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events "
    "FOR EACH STATEMENT EXECUTE FUNCTION audit_events_refuse_change()",
)
SQLITE_GUARDS = tuple(
    f"CREATE TRIGGER audit_events_no_{verb.lower()} BEFORE {verb} ON audit_events "
    f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY_MESSAGE}: {verb} refused on audit_events'); END"
    for verb in ("UPDATE", "DELETE")
)


def _create_guards(table, connection, **kw) -> None:
    guards = {"postgresql": POSTGRESQL_GUARDS, "sqlite": SQLITE_GUARDS}.get(connection.dialect.name, ())
    for statement in guards:
        connection.exec_driver_sql(statement)


sa.event.listen(AuditEvent.__table__, "after_create", _create_guards)


class Signature(db.Model):
    """An electronic signature: who (printed name), when, what it means, on which record."""

    __tablename__ = "signatures"
    __table_args__ = (sa.Index("ix_signatures_entity", "entity_type", "entity_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    signer_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), index=True)
    signer_name: Mapped[str] = mapped_column(sa.String(NAME_MAX))
    signed_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    meaning: Mapped[str] = mapped_column(sa.String(30))
    entity_type: Mapped[str] = mapped_column(sa.String(40))
    entity_id: Mapped[int]
