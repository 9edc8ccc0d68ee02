"""The audit trail: append-only, hash-chained rows written in the caller's transaction."""

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum

import sqlalchemy as sa

from ..extensions import db
from ..models import AuditEvent, User
from .clock import utcnow

GENESIS_HASH = "0" * 64
# Any constant; PostgreSQL advisory locks are keyed by a 64-bit integer.
AUDIT_CHAIN_LOCK = 7_150_422_001


def jsonable(value):
    """Turn Decimals, dates and enums into JSON-safe values that compare exactly."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [jsonable(v) for v in value]
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value == value.to_integral() else str(value)
    if isinstance(value, datetime):
        return _timestamp(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    return value


def _timestamp(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_content(event: AuditEvent) -> str:
    content = {
        "occurred_at": _timestamp(event.occurred_at),
        "actor_id": event.actor_id,
        "actor_name": event.actor_name,
        "action": event.action,
        "entity_type": event.entity_type,
        "entity_id": event.entity_id,
        "old_values": event.old_values,
        "new_values": event.new_values,
        "reason": event.reason or "",
    }
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def chain_hash(prev_hash: str, event: AuditEvent) -> str:
    return hashlib.sha256((prev_hash + canonical_content(event)).encode("utf-8")).hexdigest()


def _lock_chain() -> None:
    """Serialise appends so the chain stays linear under concurrent writers.

    On PostgreSQL a transaction-scoped advisory lock is held until commit; SQLite write
    transactions are already serialised (BEGIN IMMEDIATE).
    """
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": AUDIT_CHAIN_LOCK})


def record(
    actor: User | None,
    action: str,
    entity_type: str,
    entity_id: int | None,
    *,
    old: dict | None = None,
    new: dict | None = None,
    reason: str = "",
) -> AuditEvent:
    """Append one audit row to the current transaction (the caller commits)."""
    info = db.session.info
    if not info.get("audit_chain_locked"):
        _lock_chain()
        info["audit_chain_locked"] = True
    prev_hash = db.session.scalar(
        sa.select(AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(1)
    ) or GENESIS_HASH
    event = AuditEvent(
        occurred_at=utcnow(),
        actor_id=actor.id if actor else None,
        actor_name=(actor.display_name if actor else "system"),
        action=action,
        entity_type=entity_type,
        entity_id=entity_id,
        old_values=jsonable(old) if old is not None else None,
        new_values=jsonable(new) if new is not None else None,
        reason=reason or "",
        prev_hash=prev_hash,
    )
    event.hash = chain_hash(prev_hash, event)
    db.session.add(event)
    db.session.flush()
    return event


@sa.event.listens_for(sa.orm.Session, "after_transaction_end")
def _forget_chain_lock(session, transaction):
    if transaction.parent is None:
        session.info.pop("audit_chain_locked", None)


def snapshot(obj, fields) -> dict:
    """The values of `fields` on a model, for old/new audit columns."""
    return {name: getattr(obj, name) for name in fields}


@dataclass
class ChainReport:
    checked: int
    first_bad_id: int | None = None
    problem: str = ""

    @property
    def ok(self) -> bool:
        return self.first_bad_id is None


def _rows(chunk: int = 5000) -> Iterator[sa.Row]:
    """Plain rows in id order, read in keyset chunks so memory stays flat."""
    columns = [c for c in AuditEvent.__table__.c]
    last_id = 0
    while True:
        rows = db.session.execute(
            sa.select(*columns).where(AuditEvent.id > last_id).order_by(AuditEvent.id).limit(chunk)
        ).all()
        if not rows:
            return
        yield from rows
        last_id = rows[-1].id


def verify_chain() -> ChainReport:
    """Recompute every row's hash in order; report the first row that does not fit."""
    expected_prev = GENESIS_HASH
    checked = 0
    for event in _rows():
        if event.prev_hash != expected_prev:
            return ChainReport(checked, event.id, "its previous-hash does not match the row before it")
        if chain_hash(event.prev_hash, event) != event.hash:
            return ChainReport(checked, event.id, "its content does not match its hash")
        expected_prev = event.hash
        checked += 1
    return ChainReport(checked)
