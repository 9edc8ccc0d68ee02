"""The audit trail: append-only, hash-chained rows written in the caller's transaction."""

import hashlib
import hmac
import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum

import sqlalchemy as sa
from flask import current_app

from ..extensions import db
from ..models import AuditEvent, User
from ..models.audit import KEYED_SCHEME, LEGACY_SCHEME
from .audit_checkpoints import CheckpointFileError, CheckpointWalk, read_checkpoints
from .clock import utcnow

GENESIS_HASH = "0" * 64
# Any constant; PostgreSQL advisory locks are keyed by a 64-bit integer.
AUDIT_CHAIN_LOCK = 7_150_422_001
# Rows read at a time when the whole trail is walked.
TRAIL_CHUNK = 5000


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


def audit_key() -> bytes:
    """The secret the chain is keyed with: AUDIT_KEY, or instance/audit_key (never in the database)."""
    return current_app.config["AUDIT_KEY"].encode("utf-8")


def chain_hash(prev_hash: str, event, *, scheme: str = KEYED_SCHEME, key: bytes | None = None) -> str:
    """A row's hash: HMAC-SHA256 under the audit key, so rewriting a row needs the key too.

    LEGACY_SCHEME is the unkeyed SHA-256 of rows written before the key existed; it is
    only ever verified, never written.
    """
    message = (prev_hash + canonical_content(event)).encode("utf-8")
    if scheme == LEGACY_SCHEME:
        return hashlib.sha256(message).hexdigest()
    return hmac.new(key if key is not None else audit_key(), message, hashlib.sha256).hexdigest()


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
        hash_scheme=KEYED_SCHEME,
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


def _values(item, fields) -> dict:
    return fields(item) if callable(fields) else snapshot(item, fields)


def _entity_type(action: str, entity_type: str | None) -> str:
    # "lot.released" is about a lot: the action names its entity unless told otherwise.
    return entity_type or action.split(".", 1)[0]


@dataclass
class Change:
    """What `change` records: extra values for the new side, and the reason (settable in the block)."""

    reason: str = ""
    new: dict = field(default_factory=dict)


@contextmanager
def change(actor: User | None, action: str, item, fields, *, reason: str = "", old: dict | None = None,
           entity_type: str | None = None, only_if_changed: bool = False) -> Iterator[Change]:
    """Record the change the block makes to `item`: `fields` before and after, in one audit row.

    `fields` names the attributes (or is a function answering the values); `old` adds values
    to the before side, `Change.new` to the after side. With `only_if_changed`, a block that
    changed nothing writes no row. Nothing is written when the block raises.
    """
    before = {**_values(item, fields), **(old or {})}
    noted = Change(reason=reason)
    yield noted
    after = {**_values(item, fields), **noted.new}
    if only_if_changed and after == before:
        return
    record(actor, action, _entity_type(action, entity_type), item.id, old=before, new=after, reason=noted.reason)


def created(actor: User | None, action: str, item, fields, *, extra: dict | None = None, reason: str = "",
            entity_type: str | None = None) -> AuditEvent:
    """Record a new item: its `fields` (names, or a function answering the values) as the new side."""
    return record(actor, action, _entity_type(action, entity_type), item.id,
                  new={**_values(item, fields), **(extra or {})}, reason=reason)


@dataclass
class ChainReport:
    """What a walk of the trail found: rows checked, the trail's head, and the first problem."""

    checked: int
    first_bad_id: int | None = None
    problem: str = ""
    head_id: int | None = None
    head_hash: str | None = None
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return not self.problem

    @property
    def message(self) -> str:
        if self.ok:
            return f"Audit trail intact: {self.checked} rows verified."
        if self.first_bad_id is None or self.truncated:
            return f"Audit trail BROKEN: {self.problem}."
        return (f"Audit trail BROKEN at row {self.first_bad_id}: {self.problem} "
                f"({self.checked} rows before it verified).")


def trail_rows(connection=None, *, chunk: int = TRAIL_CHUNK, legacy_only: bool = False) -> Iterator[sa.Row]:
    """Plain rows in id order, read in keyset chunks so memory stays flat.

    `connection` reads another database (a backup); `legacy_only` is for a trail from before
    the key, whose table has no hash_scheme column.
    """
    table = AuditEvent.__table__
    columns = [c for c in table.c if not (legacy_only and c.name == "hash_scheme")]
    if legacy_only:
        columns.append(sa.literal(LEGACY_SCHEME).label("hash_scheme"))
    execute = connection.execute if connection is not None else db.session.execute
    last_id = 0
    while True:
        rows = execute(sa.select(*columns).where(table.c.id > last_id).order_by(table.c.id).limit(chunk)).all()
        if not rows:
            return
        yield from rows
        last_id = rows[-1].id


def verify_chain(rows: Iterable | None = None, checkpoints=(), *, require_keyed: bool = True,
                 subject: str = "the database") -> ChainReport:
    """Recompute every row's hash in order; report the first row that does not fit.

    Rows from before the key (LEGACY_SCHEME) may only come first, and must be followed by a
    keyed row (the upgrade writes one): otherwise anyone could rewrite the whole trail
    without the key. `checkpoints` (services.audit_checkpoints) are what earlier checks saw
    outside the database: each must find its head row, with the same hash and row count.
    `require_keyed=False` is for a backup made before the key existed; `subject` names
    where the rows come from in messages.
    """
    key = audit_key()
    walk = CheckpointWalk(checkpoints, subject)
    expected_prev, checked, keyed_seen, last = GENESIS_HASH, 0, False, None
    for event in (trail_rows() if rows is None else rows):
        problem = _row_problem(event, expected_prev, keyed_seen, key)
        if not problem:
            problem = walk.before(event.id, checked + 1, event.hash)
        if problem:
            return ChainReport(checked, event.id, problem, *(last or (None, None)))
        keyed_seen = keyed_seen or event.hash_scheme == KEYED_SCHEME
        expected_prev, checked, last = event.hash, checked + 1, (event.id, event.hash)
    head_id, head_hash = last or (None, None)
    if checked and require_keyed and not keyed_seen:
        return ChainReport(checked, None, "every row is hashed without the audit key, but the upgrade that "
                           "introduced the key wrote a keyed row after the old ones: keyed rows were removed or "
                           "rehashed", head_id, head_hash)
    problem = walk.after(checked, head_id)
    if problem:
        return ChainReport(checked, (head_id or 0) + 1, problem, head_id, head_hash, truncated=True)
    return ChainReport(checked, None, "", head_id, head_hash)


def _row_problem(event, expected_prev: str, keyed_seen: bool, key: bytes) -> str:
    if event.prev_hash != expected_prev:
        return "its previous-hash does not match the row before it"
    if event.hash_scheme not in (KEYED_SCHEME, LEGACY_SCHEME):
        return f"its hash scheme {event.hash_scheme!r} is not one this application writes"
    if event.hash_scheme == LEGACY_SCHEME and keyed_seen:
        return "it is hashed without the audit key after keyed rows: it was rewritten"
    if chain_hash(event.prev_hash, event, scheme=event.hash_scheme, key=key) != event.hash:
        if event.hash_scheme == KEYED_SCHEME:
            return ("its content does not match its hash: it was changed, or AUDIT_KEY is not the key "
                    "the trail was written with")
        return "its content does not match its hash"
    return ""


def verify_trail() -> ChainReport:
    """The chain, and every checkpoint kept outside the database (`audit verify`)."""
    try:
        checkpoints = read_checkpoints()
    except CheckpointFileError as exc:
        return ChainReport(0, None, str(exc))
    return verify_chain(checkpoints=checkpoints)
