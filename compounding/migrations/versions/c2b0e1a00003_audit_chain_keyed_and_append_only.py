"""The audit chain is keyed and append-only.

Adds `audit_events.hash_scheme`: the rows already written keep their plain SHA-256 hashes
(`sha256`) and keep verifying; every new row is an HMAC-SHA256 under the audit key
(`hmac-sha256`). When there are old rows, one keyed row (`audit.keyed`) is appended at
once: it seals them, so the old rows cannot be rewritten without the key either (a trail
of unkeyed rows only is refused by `audit verify`). Then triggers make the database refuse
UPDATE and DELETE of audit rows (and TRUNCATE on PostgreSQL).

The downgrade drops the triggers and the column; rows keyed since then no longer verify
with the earlier code, and a later upgrade tells them apart again by recomputing each
row's hash both ways.

Revision ID: c2b0e1a00003
Revises: b1a0d5e70001
Create Date: 2026-12-06 23:00:00

"""
import hashlib
import hmac
import json
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op
from flask import current_app

import compounding.extensions

# revision identifiers, used by Alembic.
revision = 'c2b0e1a00003'
down_revision = 'b1a0d5e70001'
branch_labels = None
depends_on = None

UTC_DATETIME = compounding.extensions.UTCDateTime(timezone=True)
AUDIT = sa.table(
    'audit_events', sa.column('id', sa.Integer), sa.column('occurred_at', UTC_DATETIME),
    sa.column('actor_id', sa.Integer), sa.column('actor_name', sa.String), sa.column('action', sa.String),
    sa.column('entity_type', sa.String), sa.column('entity_id', sa.Integer), sa.column('old_values', sa.JSON),
    sa.column('new_values', sa.JSON), sa.column('reason', sa.Text), sa.column('prev_hash', sa.String),
    sa.column('hash', sa.String), sa.column('hash_scheme', sa.String))

MESSAGE = "audit rows are append-only"
POSTGRESQL_GUARDS = (
    f"""CREATE OR REPLACE FUNCTION audit_events_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'restrict_violation',
        MESSAGE = '{MESSAGE}: ' || TG_OP || ' refused on audit_events';
END
$$""",
    "CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events "
    "FOR EACH ROW EXECUTE FUNCTION audit_events_refuse_change()",
    "CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events "
    "FOR EACH STATEMENT EXECUTE FUNCTION audit_events_refuse_change()",
)
SQLITE_GUARDS = tuple(
    f"CREATE TRIGGER audit_events_no_{verb.lower()} BEFORE {verb} ON audit_events "
    f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}: {verb} refused on audit_events'); END"
    for verb in ("UPDATE", "DELETE")
)


def upgrade():
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('hash_scheme', sa.String(length=16), nullable=True))
    op.execute("UPDATE audit_events SET hash_scheme = 'sha256'")
    _mark_keyed_rows()
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.alter_column('hash_scheme', existing_type=sa.String(length=16), nullable=False)
    _seal_unkeyed_rows()
    bind = op.get_bind()
    for statement in POSTGRESQL_GUARDS if bind.dialect.name == 'postgresql' else SQLITE_GUARDS:
        op.execute(statement)


def downgrade():
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("DROP TRIGGER IF EXISTS audit_events_append_only ON audit_events")
        op.execute("DROP TRIGGER IF EXISTS audit_events_no_truncate ON audit_events")
        op.execute("DROP FUNCTION IF EXISTS audit_events_refuse_change()")
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_events_no_update")
        op.execute("DROP TRIGGER IF EXISTS audit_events_no_delete")
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_column('hash_scheme')


def _canonical(row: dict) -> str:
    """services.audit.canonical_content, as it is at this revision."""
    content = {key: row[key] for key in ("actor_id", "actor_name", "action", "entity_type", "entity_id",
                                         "old_values", "new_values")}
    content["occurred_at"] = row["occurred_at"].astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    content["reason"] = row["reason"] or ""
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _key() -> bytes:
    return current_app.config["AUDIT_KEY"].encode("utf-8")


def _mark_keyed_rows() -> None:
    """Rows written keyed before a downgrade and this upgrade again: their HMAC is what fits."""
    bind, key, last_id, keyed = op.get_bind(), _key(), 0, []
    while True:
        rows = bind.execute(sa.select(AUDIT).where(AUDIT.c.id > last_id).order_by(AUDIT.c.id).limit(5_000)).all()
        if not rows:
            break
        for row in rows:
            message = (row.prev_hash + _canonical(row._mapping)).encode("utf-8")
            if (hashlib.sha256(message).hexdigest() != row.hash
                    and hmac.new(key, message, hashlib.sha256).hexdigest() == row.hash):
                keyed.append(row.id)
        last_id = rows[-1].id
    for start in range(0, len(keyed), 500):
        bind.execute(sa.update(AUDIT).where(AUDIT.c.id.in_(keyed[start:start + 500])).values(hash_scheme='hmac-sha256'))


def _seal_unkeyed_rows() -> None:
    """Append one keyed row after the unkeyed ones, so the key is needed to rewrite any of them."""
    bind = op.get_bind()
    count, last_id = bind.execute(sa.select(sa.func.count(AUDIT.c.id), sa.func.max(AUDIT.c.id))).one()
    if not count:
        return
    last_hash, last_scheme = bind.execute(sa.select(AUDIT.c.hash, AUDIT.c.hash_scheme)
                                          .where(AUDIT.c.id == last_id)).one()
    if last_scheme == 'hmac-sha256':
        return
    row = {
        "occurred_at": datetime.now(UTC), "actor_id": None, "actor_name": "system", "action": "audit.keyed",
        "entity_type": "audit", "entity_id": None, "old_values": None,
        "new_values": {"rows_before": count, "last_id_before": last_id, "last_hash_before": last_hash},
        "reason": "From here on every audit row is keyed with the audit key (HMAC-SHA256).",
        "prev_hash": last_hash, "hash_scheme": "hmac-sha256",
    }
    row["hash"] = hmac.new(_key(), (last_hash + _canonical(row)).encode("utf-8"), hashlib.sha256).hexdigest()
    bind.execute(sa.insert(AUDIT).values(**row))
