"""Separation of duties: who did the first step does not sign the second."""

import sqlalchemy as sa
from flask import Flask, current_app

from ..extensions import db
from ..models import AuditEvent, User
from . import audit
from .errors import NotAllowed
from .transaction import transaction, transactional

SETTING_ACTION = "setting.second_person_rules"


def second_person_rules() -> str:
    """`all` (the default) or `verify-only` (a single-pharmacist clinic), from SECOND_PERSON_RULES."""
    return current_app.config.get("SECOND_PERSON_RULES", "all")


def ensure_second_person(actor: User, first_person_id: int | None, refusal: str, *,
                         always: bool = False) -> None:
    """Refuse (403) when `actor` did the first step, unless the clinic turned the rule off.

    `always` is for the one rule no setting turns off: a batch is verified by someone else.
    """
    if first_person_id is None or actor.id != first_person_id:
        return
    if always or second_person_rules() != "verify-only":
        raise NotAllowed(refusal)


def recorded_second_person_rules() -> str | None:
    """The value the audit trail last recorded, or None before the first record."""
    event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == SETTING_ACTION)
                              .order_by(AuditEvent.id.desc()).limit(1))
    return (event.new_values or {}).get("SECOND_PERSON_RULES") if event is not None else None


def record_second_person_rules() -> bool:
    """Write an audit row when the running setting differs from the last one recorded.

    Several workers start at once. A first read takes no lock, so that an unchanged
    setting (every start but the first after a change) writes nothing and blocks no one;
    on a difference the audit chain's write lock is taken (PostgreSQL advisory lock, SQLite
    write lock) and the value read again, so only the first worker writes the row.
    Returns whether a row was written.
    """
    current = second_person_rules()
    # The first read is a transaction of its own: on SQLite a read snapshot kept open could
    # not take the write lock below once another worker has written.
    with transaction():
        unchanged = recorded_second_person_rules() == current
    if unchanged:
        return False
    return _record_under_lock(current)


@transactional
def _record_under_lock(current: str) -> bool:
    _lock_audit_chain()
    recorded = recorded_second_person_rules()
    if recorded == current:  # another worker wrote it while this one waited for the lock
        return False
    audit.record(None, SETTING_ACTION, "setting", None,
                 old={"SECOND_PERSON_RULES": recorded} if recorded is not None else None,
                 new={"SECOND_PERSON_RULES": current},
                 reason="setting at application start differs from the one last recorded")
    return True


def _lock_audit_chain() -> None:
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": audit.AUDIT_CHAIN_LOCK})
    else:
        # Outside a request SQLite begins deferred: a first (empty) write takes the write lock
        # before the read, as BEGIN IMMEDIATE would.
        db.session.execute(sa.text("UPDATE audit_events SET id = id WHERE 1 = 0"))


def record_settings_now() -> bool:
    """Record a change of SECOND_PERSON_RULES once the schema exists; whether it could be checked.

    Looks on the session's own connection: a second one would wait on SQLite's write lock
    that a request's session may already hold.
    """
    if not sa.inspect(db.session.connection()).has_table(AuditEvent.__tablename__):
        return False
    record_second_person_rules()
    return True


def record_settings_on_start(app: Flask) -> None:
    """At start: record a change of SECOND_PERSON_RULES once the schema exists (else nothing to do)."""
    with app.app_context():
        try:
            record_settings_now()
        finally:
            db.session.remove()
            url = db.engine.url
            if url.get_backend_name() != "sqlite" or url.database not in (None, "", ":memory:"):
                # Forked workers (gunicorn --preload) must not share the connection used here
                # (an in-memory database would be lost with its only connection).
                db.engine.dispose()
