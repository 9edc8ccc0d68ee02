"""Every vial its own code: vials, single- and multiple-dose formulas, uses drawn from a vial.

- Formulas get `dose` (`single`, the default for every existing formula, or `multiple`),
  `in_use_hours` (multiple-dose only, at most 672) and `antimicrobial_evidence`.
- The table `vials`: one row per unit, `<batch code>-NN`, with its status, volume and dose.
- Session uses and ledger rows may name the vial (`vial_id`); holds may be placed on a vial.
- Existing batches keep their pooled history and get vials marked `legacy` for the volume
  they have left: whole vials sealed, a part-used one open (punctured at the batch's last
  use). A held or recalled batch's vials are held or recalled with it (a status-history row
  each). A depleted, rejected or discarded batch has nothing left and gets none.

Revision ID: e5d0a1b00001
Revises: d4c0b1a00001
Create Date: 2026-12-07 10:00:00

"""
from datetime import UTC, datetime
from decimal import ROUND_FLOOR, Decimal

import sqlalchemy as sa
from alembic import op

import compounding.extensions

# revision identifiers, used by Alembic.
revision = 'e5d0a1b00001'
down_revision = 'd4c0b1a00001'
branch_labels = None
depends_on = None

UTC_DATETIME = compounding.extensions.UTCDateTime(timezone=True)
QUANTITY = compounding.extensions.Quantity
OLD_HOLD_ENTITIES = "entity_type IN ('lot', 'batch')"
NEW_HOLD_ENTITIES = "entity_type IN ('lot', 'batch', 'vial')"
VIAL_STATUSES = ('sealed', 'open', 'spent', 'sampled', 'on_hold', 'recalled', 'discarded', 'in_transit')
# A batch in one of these statuses gets legacy vials for its remaining volume, held or recalled with it.
WITH_VIALS = {'prepared': None, 'awaiting_tests': None, 'released': None, 'on_hold': 'on_hold',
              'recalled': 'recalled'}
MILLILITRE = Decimal('0.001')

BATCHES = sa.table('batches', sa.column('id', sa.Integer), sa.column('code', sa.String),
                   sa.column('formula_id', sa.Integer), sa.column('units', sa.Integer),
                   sa.column('remaining_volume_ml', QUANTITY), sa.column('status', sa.String))
FORMULAS = sa.table('formulas', sa.column('id', sa.Integer), sa.column('unit_volume_ml', QUANTITY))
USES = sa.table('session_uses', sa.column('batch_id', sa.Integer), sa.column('session_id', sa.Integer))
SESSIONS = sa.table('treatment_sessions', sa.column('id', sa.Integer), sa.column('performed_at', UTC_DATETIME))
VIALS = sa.table('vials', sa.column('id', sa.Integer), sa.column('batch_id', sa.Integer),
                 sa.column('number', sa.Integer), sa.column('code', sa.String), sa.column('dose', sa.String),
                 sa.column('volume_ml', QUANTITY), sa.column('remaining_ml', QUANTITY),
                 sa.column('status', sa.String), sa.column('status_reason', sa.Text),
                 sa.column('legacy', sa.Boolean), sa.column('punctured_at', UTC_DATETIME),
                 sa.column('created_at', UTC_DATETIME))
HISTORY = sa.table('status_changes', sa.column('entity_type', sa.String), sa.column('entity_id', sa.Integer),
                   sa.column('from_status', sa.String), sa.column('to_status', sa.String),
                   sa.column('changed_at', UTC_DATETIME), sa.column('actor_name', sa.String),
                   sa.column('reason', sa.Text), sa.column('reference', sa.String))


def _sqlite_foreign_keys(on: bool) -> None:
    """SQLite rebuilds a table to change a CHECK, which its children's foreign keys would refuse."""
    if op.get_bind().dialect.name == 'sqlite':
        with op.get_context().autocommit_block():
            op.execute(f"PRAGMA foreign_keys = {'ON' if on else 'OFF'}")


def _ml(value) -> Decimal:
    return Decimal(str(value)).quantize(MILLILITRE)


def _last_uses(bind) -> dict[int, datetime]:
    """Each batch's latest use (when a part-used legacy vial was last punctured)."""
    query = (sa.select(USES.c.batch_id, sa.func.max(SESSIONS.c.performed_at))
             .join(SESSIONS, SESSIONS.c.id == USES.c.session_id).group_by(USES.c.batch_id))
    moments = {}
    for batch_id, moment in bind.execute(query):
        if isinstance(moment, str):  # SQLite answers an aggregate of a datetime as text
            moment = datetime.fromisoformat(moment)
        moments[batch_id] = moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment
    return moments


def _legacy_vials(bind) -> None:
    """Vials for what each batch made before vials has left: whole ones sealed, the remainder open."""
    now = datetime.now(UTC)
    last_use = _last_uses(bind)
    query = (sa.select(BATCHES.c.id, BATCHES.c.code, BATCHES.c.units, BATCHES.c.remaining_volume_ml,
                       BATCHES.c.status, FORMULAS.c.unit_volume_ml)
             .join(FORMULAS, FORMULAS.c.id == BATCHES.c.formula_id)
             .where(BATCHES.c.remaining_volume_ml > 0, BATCHES.c.status.in_(list(WITH_VIALS)))
             .order_by(BATCHES.c.id))
    for batch in bind.execute(query).all():
        unit, left = _ml(batch.unit_volume_ml), _ml(batch.remaining_volume_ml)
        whole = int((left / unit).to_integral_value(ROUND_FLOOR))
        part = left - unit * whole
        volumes = [unit] * whole + ([part] if part > 0 else [])
        width = max(2, len(str(batch.units)))
        follows = WITH_VIALS[batch.status]
        for number, volume in enumerate(volumes[:batch.units], start=1):
            opened = volume < unit
            status = 'open' if opened else 'sealed'
            vial_id = bind.execute(VIALS.insert().values(
                batch_id=batch.id, number=number, code=f"{batch.code}-{number:0{width}d}", dose='single',
                volume_ml=unit, remaining_ml=volume, status=follows or status, status_reason='', legacy=True,
                punctured_at=last_use.get(batch.id) if opened else None, created_at=now)
                .returning(VIALS.c.id)).scalar_one()
            rows = [{'from_status': None, 'to_status': status,
                     'reason': 'made for the volume left in a batch compounded before vials had codes'}]
            if follows:
                rows.append({'from_status': status, 'to_status': follows, 'reason': f'the batch is {follows}'})
            bind.execute(HISTORY.insert(), [{'entity_type': 'vial', 'entity_id': vial_id, 'changed_at': now,
                                             'actor_name': '', 'reference': f'batch {batch.id}', **row}
                                            for row in rows])


def upgrade():
    bind = op.get_bind()
    _sqlite_foreign_keys(False)
    with op.batch_alter_table('formulas', schema=None) as batch_op:
        batch_op.add_column(sa.Column('dose', sa.String(length=10), nullable=False, server_default='single'))
        batch_op.add_column(sa.Column('in_use_hours', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('antimicrobial_evidence', sa.Text(), nullable=False, server_default=''))
        batch_op.create_check_constraint(batch_op.f('ck_formulas_dose_known'), "dose IN ('single', 'multiple')")
        batch_op.create_check_constraint(
            batch_op.f('ck_formulas_in_use_hours_for_dose'),
            "(dose = 'single' AND in_use_hours IS NULL) OR "
            "(dose = 'multiple' AND in_use_hours > 0 AND in_use_hours <= 672)")
    with op.batch_alter_table('holds', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_holds_entity_type_known'), type_='check')
        batch_op.create_check_constraint(batch_op.f('ck_holds_entity_type_known'), NEW_HOLD_ENTITIES)
    _sqlite_foreign_keys(True)
    op.create_table('vials',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('batch_id', sa.Integer(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=24), nullable=False),
    sa.Column('dose', sa.String(length=10), nullable=False),
    sa.Column('in_use_hours', sa.Integer(), nullable=True),
    sa.Column('volume_ml', QUANTITY, nullable=False),
    sa.Column('remaining_ml', QUANTITY, nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('status_reason', sa.Text(), nullable=False),
    sa.Column('legacy', sa.Boolean(), nullable=False),
    sa.Column('punctured_at', UTC_DATETIME, nullable=True),
    sa.Column('first_session_id', sa.Integer(), nullable=True),
    sa.Column('spent_at', UTC_DATETIME, nullable=True),
    sa.Column('created_at', UTC_DATETIME, nullable=False),
    sa.CheckConstraint("status IN (" + ", ".join(f"'{s}'" for s in VIAL_STATUSES) + ")",
                       name=op.f('ck_vials_status_known')),
    sa.CheckConstraint("dose IN ('single', 'multiple')", name=op.f('ck_vials_dose_known')),
    sa.CheckConstraint('volume_ml > 0', name=op.f('ck_vials_volume_positive')),
    sa.CheckConstraint('remaining_ml >= 0', name=op.f('ck_vials_remaining_not_negative')),
    sa.CheckConstraint('remaining_ml <= volume_ml', name=op.f('ck_vials_remaining_within_volume')),
    sa.CheckConstraint('number > 0', name=op.f('ck_vials_number_positive')),
    sa.CheckConstraint('in_use_hours IS NULL OR (in_use_hours > 0 AND in_use_hours <= 672)',
                       name=op.f('ck_vials_in_use_hours_range')),
    sa.ForeignKeyConstraint(['batch_id'], ['batches.id'], name=op.f('fk_vials_batch_id_batches')),
    sa.ForeignKeyConstraint(['first_session_id'], ['treatment_sessions.id'],
                            name=op.f('fk_vials_first_session_id_treatment_sessions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_vials')),
    sa.UniqueConstraint('batch_id', 'number', name=op.f('uq_vials_batch_id_number')),
    sa.UniqueConstraint('code', name=op.f('uq_vials_code'))
    )
    with op.batch_alter_table('vials', schema=None) as batch_op:
        batch_op.create_index('ix_vials_batch_status_number', ['batch_id', 'status', 'number'], unique=False)
    with op.batch_alter_table('session_uses', schema=None) as batch_op:
        batch_op.add_column(sa.Column('vial_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_session_uses_vial_id_vials'), 'vials', ['vial_id'], ['id'])
        batch_op.create_index('ix_session_uses_vial', ['vial_id'], unique=False)
    with op.batch_alter_table('stock_movements', schema=None) as batch_op:
        batch_op.add_column(sa.Column('vial_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_stock_movements_vial_id_vials'), 'vials', ['vial_id'], ['id'])
        batch_op.create_index(batch_op.f('ix_stock_movements_vial_id'), ['vial_id'], unique=False)
    _legacy_vials(bind)


def downgrade():
    bind = op.get_bind()
    # A hold on a single vial has no place in the old schema. Where its batch stands held too, the
    # batch's hold keeps the vial out of use and the vial's row may go; a vial held on its own would
    # silently become usable: stop and let the clinic release it or hold the batch first.
    alone = list(bind.execute(sa.text(
        "SELECT v.code FROM holds h JOIN vials v ON v.id = h.entity_id "
        "WHERE h.entity_type = 'vial' AND h.released_at IS NULL AND NOT EXISTS ("
        "SELECT 1 FROM holds b WHERE b.entity_type = 'batch' AND b.entity_id = v.batch_id "
        "AND b.released_at IS NULL) ORDER BY v.code")).scalars())
    if alone:
        raise RuntimeError("Vials are held on their own (their batches are not): release their holds or hold the "
                           "batches before this downgrade: " + ", ".join(alone))
    bind.execute(sa.text("DELETE FROM holds WHERE entity_type = 'vial'"))
    with op.batch_alter_table('stock_movements', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_stock_movements_vial_id'))
        batch_op.drop_constraint(batch_op.f('fk_stock_movements_vial_id_vials'), type_='foreignkey')
        batch_op.drop_column('vial_id')
    with op.batch_alter_table('session_uses', schema=None) as batch_op:
        batch_op.drop_index('ix_session_uses_vial')
        batch_op.drop_constraint(batch_op.f('fk_session_uses_vial_id_vials'), type_='foreignkey')
        batch_op.drop_column('vial_id')
    bind.execute(sa.text("DELETE FROM status_changes WHERE entity_type = 'vial'"))
    with op.batch_alter_table('vials', schema=None) as batch_op:
        batch_op.drop_index('ix_vials_batch_status_number')
    op.drop_table('vials')
    _sqlite_foreign_keys(False)
    with op.batch_alter_table('holds', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_holds_entity_type_known'), type_='check')
        batch_op.create_check_constraint(batch_op.f('ck_holds_entity_type_known'), OLD_HOLD_ENTITIES)
    with op.batch_alter_table('formulas', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_formulas_in_use_hours_for_dose'), type_='check')
        batch_op.drop_constraint(batch_op.f('ck_formulas_dose_known'), type_='check')
        batch_op.drop_column('antimicrobial_evidence')
        batch_op.drop_column('in_use_hours')
        batch_op.drop_column('dose')
    _sqlite_foreign_keys(True)
