"""Status history and hold reasons.

Adds `status_changes` (every status change of a lot, batch or recall, with its time) and
`holds` (hold reasons on lots and batches); lots and batches may be `on_hold`; adverse
events may be an abscess or a granuloma. Existing lots, batches and recalls get a history
rebuilt from what their rows know (received, compounded, released, opened, closed) and,
for later changes, from the statuses the audit trail recorded; a status the trail cannot
explain is recorded at the time of this migration, saying so.

Revision ID: b1a0d5e70001
Revises: b1a0d5e70005
Create Date: 2026-12-06 20:00:00

"""
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

import compounding.extensions

# revision identifiers, used by Alembic.
revision = 'b1a0d5e70001'
down_revision = 'b1a0d5e70005'
branch_labels = None
depends_on = None

OLD_LOT = "status IN ('quarantine', 'released', 'rejected', 'recalled', 'depleted')"
NEW_LOT = "status IN ('quarantine', 'released', 'rejected', 'recalled', 'depleted', 'on_hold')"
OLD_BATCH = "status IN ('prepared', 'released', 'rejected', 'recalled', 'discarded', 'depleted')"
NEW_BATCH = "status IN ('prepared', 'released', 'rejected', 'recalled', 'discarded', 'depleted', 'on_hold')"
OLD_TYPES = ("'redness', 'swelling', 'bruising', 'pain', 'nodule', 'infection', 'allergic_reaction', "
             "'necrosis', 'other'")
NEW_TYPES = ("'redness', 'swelling', 'bruising', 'pain', 'nodule', 'infection', 'allergic_reaction', "
             "'necrosis', 'abscess', 'granuloma', 'other'")
UTC_DATETIME = compounding.extensions.UTCDateTime(timezone=True)


def _sqlite_foreign_keys(on: bool) -> None:
    """SQLite rebuilds a table to change a CHECK, which its children's foreign keys would refuse.

    PRAGMA foreign_keys cannot change inside a transaction: it is switched between two.
    """
    if op.get_bind().dialect.name == 'sqlite':
        with op.get_context().autocommit_block():
            op.execute(f"PRAGMA foreign_keys = {'ON' if on else 'OFF'}")


def _swap_check(table: str, name: str, condition: str) -> None:
    with op.batch_alter_table(table, schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f(name), type_='check')
        batch_op.create_check_constraint(batch_op.f(name), condition)


def upgrade():
    op.create_table('status_changes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('entity_type', sa.String(length=20), nullable=False),
    sa.Column('entity_id', sa.Integer(), nullable=False),
    sa.Column('from_status', sa.String(length=20), nullable=True),
    sa.Column('to_status', sa.String(length=20), nullable=False),
    sa.Column('changed_at', UTC_DATETIME, nullable=False),
    sa.Column('actor_id', sa.Integer(), nullable=True),
    sa.Column('actor_name', sa.String(length=120), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('reference', sa.String(length=120), nullable=False),
    sa.ForeignKeyConstraint(['actor_id'], ['users.id'], name=op.f('fk_status_changes_actor_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_status_changes'))
    )
    with op.batch_alter_table('status_changes', schema=None) as batch_op:
        batch_op.create_index('ix_status_changes_entity_changed', ['entity_type', 'entity_id', 'changed_at'],
                              unique=False)
    op.create_table('holds',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('entity_type', sa.String(length=20), nullable=False),
    sa.Column('entity_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.Column('source_type', sa.String(length=40), nullable=False),
    sa.Column('source_id', sa.Integer(), nullable=True),
    sa.Column('placed_at', UTC_DATETIME, nullable=False),
    sa.Column('placed_by_id', sa.Integer(), nullable=True),
    sa.Column('released_at', UTC_DATETIME, nullable=True),
    sa.Column('released_by_id', sa.Integer(), nullable=True),
    sa.Column('release_reason', sa.Text(), nullable=False),
    sa.CheckConstraint("kind IN ('adverse_event', 'excursion', 'quality_signal')", name=op.f('ck_holds_kind_known')),
    sa.CheckConstraint("entity_type IN ('lot', 'batch')", name=op.f('ck_holds_entity_type_known')),
    sa.ForeignKeyConstraint(['placed_by_id'], ['users.id'], name=op.f('fk_holds_placed_by_id_users')),
    sa.ForeignKeyConstraint(['released_by_id'], ['users.id'], name=op.f('fk_holds_released_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_holds'))
    )
    with op.batch_alter_table('holds', schema=None) as batch_op:
        batch_op.create_index('ix_holds_entity', ['entity_type', 'entity_id', 'released_at'], unique=False)
    _sqlite_foreign_keys(False)
    _swap_check('lots', 'ck_lots_status_known', NEW_LOT)
    _swap_check('batches', 'ck_batches_status_known', NEW_BATCH)
    _swap_check('adverse_events', 'ck_adverse_events_type_known', f"type IN ({NEW_TYPES})")
    _sqlite_foreign_keys(True)
    _backfill_history(op.get_bind())


def downgrade():
    bind = op.get_bind()
    # Held items go back to the status they had before their hold: the old vocabulary has no on_hold.
    for table, kind in (('lots', 'lot'), ('batches', 'batch')):
        bind.execute(sa.text(
            f"UPDATE {table} SET status = COALESCE((SELECT sc.from_status FROM status_changes sc "
            f"WHERE sc.entity_type = '{kind}' AND sc.entity_id = {table}.id AND sc.to_status = 'on_hold' "
            f"ORDER BY sc.changed_at DESC, sc.id DESC LIMIT 1), 'released') WHERE status = 'on_hold'"))
    bind.execute(sa.text("UPDATE adverse_events SET type = 'other' WHERE type IN ('abscess', 'granuloma')"))
    _sqlite_foreign_keys(False)
    _swap_check('adverse_events', 'ck_adverse_events_type_known', f"type IN ({OLD_TYPES})")
    _swap_check('batches', 'ck_batches_status_known', OLD_BATCH)
    _swap_check('lots', 'ck_lots_status_known', OLD_LOT)
    _sqlite_foreign_keys(True)
    with op.batch_alter_table('holds', schema=None) as batch_op:
        batch_op.drop_index('ix_holds_entity')
    op.drop_table('holds')
    with op.batch_alter_table('status_changes', schema=None) as batch_op:
        batch_op.drop_index('ix_status_changes_entity_changed')
    op.drop_table('status_changes')


# --- the backfill ----------------------------------------------------------------------------

def _table(name, *columns):
    return sa.table(name, *(sa.column(c, t) for c, t in columns))


LOTS = _table('lots', ('id', sa.Integer), ('status', sa.String), ('received_at', UTC_DATETIME),
              ('received_by_id', sa.Integer), ('released_at', UTC_DATETIME), ('released_by_id', sa.Integer))
BATCHES = _table('batches', ('id', sa.Integer), ('status', sa.String), ('compounded_at', UTC_DATETIME),
                 ('compounded_by_id', sa.Integer), ('verified_at', UTC_DATETIME), ('verified_by_id', sa.Integer))
RECALLS = _table('recalls', ('id', sa.Integer), ('status', sa.String), ('opened_at', UTC_DATETIME),
                 ('opened_by_id', sa.Integer), ('closed_at', UTC_DATETIME), ('closed_by_id', sa.Integer))
AUDIT = _table('audit_events', ('id', sa.Integer), ('occurred_at', UTC_DATETIME), ('actor_id', sa.Integer),
               ('actor_name', sa.String), ('entity_type', sa.String), ('entity_id', sa.Integer),
               ('new_values', sa.JSON), ('reason', sa.Text))
USERS = _table('users', ('id', sa.Integer), ('display_name', sa.String))
CHANGES = _table('status_changes', ('entity_type', sa.String), ('entity_id', sa.Integer),
                 ('from_status', sa.String), ('to_status', sa.String), ('changed_at', UTC_DATETIME),
                 ('actor_id', sa.Integer), ('actor_name', sa.String), ('reason', sa.Text),
                 ('reference', sa.String))
CHUNK = 5_000


def _backfill_history(bind) -> None:
    """One history per existing lot, batch and recall; set-based reads, chunked inserts."""
    names = dict(bind.execute(sa.select(USERS.c.id, USERS.c.display_name)).all())
    histories: dict[tuple[str, int], list[dict]] = {}
    current: dict[tuple[str, int], str] = {}

    def add(key, to_status, at, actor_id, reason, reference=""):
        rows = histories.setdefault(key, [])
        from_status = rows[-1]['to_status'] if rows else None
        if from_status == to_status:
            return
        rows.append({'entity_type': key[0], 'entity_id': key[1], 'from_status': from_status,
                     'to_status': to_status, 'changed_at': at, 'actor_id': actor_id,
                     'actor_name': names.get(actor_id, ''), 'reason': (reason or '')[:2000],
                     'reference': reference})

    for row in bind.execute(sa.select(LOTS)):
        key = ('lot', row.id)
        current[key] = row.status
        add(key, 'quarantine', row.received_at, row.received_by_id, 'received')
        if row.released_at is not None:
            add(key, 'released', row.released_at, row.released_by_id, 'released')
    for row in bind.execute(sa.select(BATCHES)):
        key = ('batch', row.id)
        current[key] = row.status
        add(key, 'prepared', row.compounded_at, row.compounded_by_id, 'compounded')
        if row.verified_at is not None:
            add(key, 'released', row.verified_at, row.verified_by_id, 'verified')
    for row in bind.execute(sa.select(RECALLS)):
        key = ('recall', row.id)
        current[key] = row.status
        add(key, 'open', row.opened_at, row.opened_by_id, 'opened')
        if row.closed_at is not None:
            add(key, 'closed', row.closed_at, row.closed_by_id, 'closed')
    _replay_audit(bind, histories, add)
    now = datetime.now(UTC)
    for key, status in current.items():
        rows = histories.get(key)
        if not rows or rows[-1]['to_status'] != status:
            add(key, status, max(now, rows[-1]['changed_at']) if rows else now, None,
                'status found at the start of the status history (time of the change unknown)')
    batch = []
    for rows in histories.values():
        batch.extend(rows)
        if len(batch) >= CHUNK:
            bind.execute(CHANGES.insert(), batch)
            batch = []
    if batch:
        bind.execute(CHANGES.insert(), batch)


def _replay_audit(bind, histories, add) -> None:
    """Later changes (rejected, recalled, depleted, quarantined...) as the audit trail recorded them."""
    query = (sa.select(AUDIT).where(AUDIT.c.entity_type.in_(('lot', 'batch')), AUDIT.c.new_values.is_not(None))
             .order_by(AUDIT.c.id))
    for row in bind.execute(query.execution_options(yield_per=CHUNK)):
        values = row.new_values if isinstance(row.new_values, dict) else {}
        status = values.get('status')
        key = (row.entity_type, row.entity_id)
        if not isinstance(status, str) or key not in histories:
            continue
        rows = histories[key]
        # The rows already rebuilt from the record itself (received, released) come first in time.
        if rows and row.occurred_at < rows[-1]['changed_at']:
            continue
        reference = f"recall {values['recall_id']}" if values.get('recall_id') else ''
        add(key, status, row.occurred_at, row.actor_id, row.reason, reference)
