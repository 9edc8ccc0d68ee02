"""Batch records that tell the truth: copied components, light as a flag, tests, preparation start.

- Ingredients and formulas: `storage` is a temperature (`room`, `fridge`, `freezer`) and
  `protect_from_light` a flag of its own; today's `protect_from_light` storage becomes
  `room` + the flag (batches likewise). Ingredients get `sterile` and `vehicle` (a pure
  vehicle is not named on a label as a drug); diluents named as water for injection or
  sodium chloride 0.9 % are marked vehicles, the pharmacist confirms the rest on the
  ingredient page. Batches of a tested category not yet verified owe their tests.
- Formula components may be `qs` (filled to volume).
- Every batch component copies what its ingredient and lot were at compounding: name, kind,
  strength, unit, sterility, lot code, supplier lot and expiry. For existing batches the copy
  is what the ingredient was *when the batch was made*: where the audit trail shows a later
  edit of the ingredient, the value before that edit is taken.
- Batches get `preparation_started_at` (existing ones: their compounding time), the status
  `awaiting_tests`, `required_tests`, and the table `batch_tests` for e-signed results.

Revision ID: d4c0b1a00001
Revises: c2b0e1a00001
Create Date: 2026-12-07 05:30:00

"""
from collections import defaultdict
from datetime import UTC

import sqlalchemy as sa
from alembic import op

import compounding.extensions

# revision identifiers, used by Alembic.
revision = 'd4c0b1a00001'
down_revision = 'c2b0e1a00001'
branch_labels = None
depends_on = None

UTC_DATETIME = compounding.extensions.UTCDateTime(timezone=True)
OLD_STORAGE = "storage IN ('room', 'fridge', 'freezer', 'protect_from_light')"
NEW_STORAGE = "storage IN ('room', 'fridge', 'freezer')"
OLD_BATCH = "status IN ('prepared', 'released', 'rejected', 'recalled', 'discarded', 'depleted', 'on_hold')"
NEW_BATCH = ("status IN ('prepared', 'released', 'rejected', 'recalled', 'discarded', 'depleted', 'on_hold', "
             "'awaiting_tests')")
# Diluents that are pure vehicles, by the start of their folded name; anything else in the
# name beyond a strength (a drug "in saline", bacteriostatic water's preservative) is not one.
VEHICLE_NAMES = ("water for injection", "sterile water", "sodium chloride 0.9", "sodium chloride 0,9",
                 "saline 0.9", "normal saline", "nacl 0.9", "nacl 0,9")
TESTED_CATEGORIES = ("category_2_aseptic_sterility_tested", "category_2_terminal_sterility_tested",
                     "category_3_aseptic_tested", "category_3_terminal_tested")
COPIED = {'ingredient_name': 'name', 'ingredient_kind': 'kind', 'ingredient_strength': 'strength',
          'ingredient_unit': 'unit'}

INGREDIENTS = sa.table('ingredients', sa.column('id', sa.Integer), sa.column('name', sa.String),
                       sa.column('kind', sa.String), sa.column('strength', sa.String), sa.column('unit', sa.String),
                       sa.column('storage', sa.String), sa.column('sterile', sa.Boolean),
                       sa.column('vehicle', sa.Boolean), sa.column('protect_from_light', sa.Boolean))
LOTS = sa.table('lots', sa.column('id', sa.Integer), sa.column('code', sa.String),
                sa.column('supplier_lot_number', sa.String), sa.column('expires_on', sa.Date))
BATCHES = sa.table('batches', sa.column('id', sa.Integer), sa.column('compounded_at', UTC_DATETIME))
COMPONENTS = sa.table('batch_components', sa.column('id', sa.Integer), sa.column('batch_id', sa.Integer),
                      sa.column('lot_id', sa.Integer), sa.column('ingredient_id', sa.Integer),
                      *(sa.column(name, sa.String) for name in COPIED),
                      sa.column('ingredient_sterile', sa.Boolean), sa.column('ingredient_vehicle', sa.Boolean),
                      sa.column('lot_code', sa.String), sa.column('supplier_lot_number', sa.String),
                      sa.column('lot_expires_on', sa.Date))
AUDIT = sa.table('audit_events', sa.column('id', sa.Integer), sa.column('occurred_at', UTC_DATETIME),
                 sa.column('action', sa.String), sa.column('entity_type', sa.String),
                 sa.column('entity_id', sa.Integer), sa.column('old_values', sa.JSON))


def _sqlite_foreign_keys(on: bool) -> None:
    """SQLite rebuilds a table to change a CHECK, which its children's foreign keys would refuse."""
    if op.get_bind().dialect.name == 'sqlite':
        with op.get_context().autocommit_block():
            op.execute(f"PRAGMA foreign_keys = {'ON' if on else 'OFF'}")


def _swap_check(table: str, name: str, condition: str | None, new: str | None) -> None:
    with op.batch_alter_table(table, schema=None) as batch_op:
        if condition is not None:
            batch_op.drop_constraint(batch_op.f(name), type_='check')
        if new is not None:
            batch_op.create_check_constraint(batch_op.f(name), new)


def _light_becomes_a_flag(bind) -> None:
    for table in ('ingredients', 'formulas', 'batches'):
        bind.execute(sa.text(f"UPDATE {table} SET protect_from_light = true, storage = 'room' "
                             "WHERE storage = 'protect_from_light'"))


def _mark_vehicles(bind) -> None:
    for row in bind.execute(sa.select(INGREDIENTS.c.id, INGREDIENTS.c.name).where(INGREDIENTS.c.kind == 'diluent')):
        name = ' '.join((row.name or '').casefold().split())
        if name.startswith(VEHICLE_NAMES) and ' in ' not in name and 'bacteriostatic' not in name:
            bind.execute(INGREDIENTS.update().where(INGREDIENTS.c.id == row.id).values(vehicle=True))


def _unverified_batches_owe_their_tests(bind) -> None:
    """A batch of a tested category not yet verified owes its tests like a new one (endotoxins too:
    whether its components were sterile was never recorded)."""
    bind.execute(sa.text(
        "UPDATE batches SET required_tests = 'sterility,endotoxin' WHERE status = 'prepared' AND formula_id IN "
        "(SELECT id FROM formulas WHERE bud_category IN (" + ", ".join(f"'{c}'" for c in TESTED_CATEGORIES) + "))"))


def _as_utc(moment):
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


def _edits_by_ingredient(bind) -> dict[int, list]:
    """Each ingredient's audited edits, oldest first: (when, old values)."""
    edits = defaultdict(list)
    for row in bind.execute(sa.select(AUDIT.c.entity_id, AUDIT.c.occurred_at, AUDIT.c.old_values)
                            .where(AUDIT.c.entity_type == 'ingredient', AUDIT.c.action == 'ingredient.updated')
                            .order_by(AUDIT.c.occurred_at, AUDIT.c.id)):
        edits[row.entity_id].append((_as_utc(row.occurred_at), row.old_values or {}))
    return edits


def _value_at(current: dict, edits: list, moment, field: str):
    """The field as it was at `moment`: the old value of the first later edit that changed it, else today's."""
    for occurred_at, old in edits:
        if moment is not None and occurred_at > moment and field in old:
            return old[field]
    return current[field]


def _copy_components(bind) -> None:
    """Copy ingredient and lot onto every existing batch component, as they were at compounding."""
    ingredients = {row.id: row._asdict() for row in bind.execute(sa.select(INGREDIENTS))}
    lots = {row.id: row for row in bind.execute(sa.select(LOTS))}
    made_at = {row.id: _as_utc(row.compounded_at) for row in bind.execute(sa.select(BATCHES))}
    edits = _edits_by_ingredient(bind)
    updates = []
    for row in bind.execute(sa.select(COMPONENTS.c.id, COMPONENTS.c.batch_id, COMPONENTS.c.lot_id,
                                      COMPONENTS.c.ingredient_id)):
        ingredient, lot = ingredients[row.ingredient_id], lots[row.lot_id]
        moment, history = made_at.get(row.batch_id), edits.get(row.ingredient_id, [])
        values = {copy: _value_at(ingredient, history, moment, field) or '' for copy, field in COPIED.items()}
        updates.append({'component_id': row.id, **values,
                        'ingredient_sterile': bool(ingredient['sterile']),
                        'ingredient_vehicle': bool(ingredient['vehicle']), 'lot_code': lot.code,
                        'supplier_lot_number': lot.supplier_lot_number, 'lot_expires_on': lot.expires_on})
    statement = COMPONENTS.update().where(COMPONENTS.c.id == sa.bindparam('component_id')).values(
        **{name: sa.bindparam(name) for name in (*COPIED, 'ingredient_sterile', 'ingredient_vehicle', 'lot_code',
                                                 'supplier_lot_number', 'lot_expires_on')})
    for start in range(0, len(updates), 5000):
        bind.execute(statement, updates[start:start + 5000])


def upgrade():
    bind = op.get_bind()
    false = sa.text('false')
    _sqlite_foreign_keys(False)
    for table in ('ingredients', 'formulas', 'batches'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('protect_from_light', sa.Boolean(), nullable=False, server_default=false))
    with op.batch_alter_table('ingredients', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sterile', sa.Boolean(), nullable=False, server_default=false))
        batch_op.add_column(sa.Column('vehicle', sa.Boolean(), nullable=False, server_default=false))
    with op.batch_alter_table('formula_components', schema=None) as batch_op:
        batch_op.add_column(sa.Column('qs', sa.Boolean(), nullable=False, server_default=false))
    with op.batch_alter_table('batches', schema=None) as batch_op:
        batch_op.add_column(sa.Column('preparation_started_at', UTC_DATETIME, nullable=True))
        batch_op.add_column(sa.Column('required_tests', sa.String(length=40), nullable=False, server_default=''))
    with op.batch_alter_table('batch_components', schema=None) as batch_op:
        for name, length in (('ingredient_name', 120), ('ingredient_kind', 20), ('ingredient_strength', 60),
                             ('ingredient_unit', 10), ('lot_code', 12), ('supplier_lot_number', 60)):
            batch_op.add_column(sa.Column(name, sa.String(length=length), nullable=True))
        batch_op.add_column(sa.Column('ingredient_sterile', sa.Boolean(), nullable=False, server_default=false))
        batch_op.add_column(sa.Column('ingredient_vehicle', sa.Boolean(), nullable=False, server_default=false))
        batch_op.add_column(sa.Column('lot_expires_on', sa.Date(), nullable=True))
    _light_becomes_a_flag(bind)
    _mark_vehicles(bind)
    bind.execute(sa.text("UPDATE batches SET preparation_started_at = compounded_at"))
    _unverified_batches_owe_their_tests(bind)
    _copy_components(bind)
    with op.batch_alter_table('batches', schema=None) as batch_op:
        batch_op.alter_column('preparation_started_at', existing_type=UTC_DATETIME, nullable=False)
        batch_op.drop_constraint(batch_op.f('ck_batches_status_known'), type_='check')
        batch_op.create_check_constraint(batch_op.f('ck_batches_status_known'), NEW_BATCH)
        batch_op.create_check_constraint(batch_op.f('ck_batches_storage_known'), NEW_STORAGE)
    with op.batch_alter_table('batch_components', schema=None) as batch_op:
        for name, length in (('ingredient_name', 120), ('ingredient_kind', 20), ('ingredient_strength', 60),
                             ('ingredient_unit', 10), ('lot_code', 12), ('supplier_lot_number', 60)):
            batch_op.alter_column(name, existing_type=sa.String(length=length), nullable=False)
        batch_op.alter_column('lot_expires_on', existing_type=sa.Date(), nullable=False)
    _swap_check('ingredients', 'ck_ingredients_storage_known', OLD_STORAGE, NEW_STORAGE)
    _swap_check('formulas', 'ck_formulas_storage_known', None, NEW_STORAGE)
    _sqlite_foreign_keys(True)
    op.create_table('batch_tests',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('batch_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('result', sa.String(length=10), nullable=False),
    sa.Column('method', sa.String(length=20), nullable=False),
    sa.Column('lab', sa.String(length=160), nullable=False),
    sa.Column('sampled_on', sa.Date(), nullable=False),
    sa.Column('units_sampled', sa.Integer(), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('recorded_at', UTC_DATETIME, nullable=False),
    sa.Column('recorded_by_id', sa.Integer(), nullable=False),
    sa.CheckConstraint("kind IN ('sterility', 'endotoxin')", name=op.f('ck_batch_tests_kind_known')),
    sa.CheckConstraint("result IN ('pass', 'fail')", name=op.f('ck_batch_tests_result_known')),
    sa.CheckConstraint("method IN ('compendial', 'rapid')", name=op.f('ck_batch_tests_method_known')),
    sa.CheckConstraint('units_sampled >= 0', name=op.f('ck_batch_tests_units_sampled_not_negative')),
    sa.ForeignKeyConstraint(['batch_id'], ['batches.id'], name=op.f('fk_batch_tests_batch_id_batches')),
    sa.ForeignKeyConstraint(['recorded_by_id'], ['users.id'], name=op.f('fk_batch_tests_recorded_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_batch_tests')),
    sa.UniqueConstraint('batch_id', 'kind', 'method', name=op.f('uq_batch_tests_batch_id_kind_method'))
    )
    with op.batch_alter_table('batch_tests', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_batch_tests_batch_id'), ['batch_id'], unique=False)


def downgrade():
    bind = op.get_bind()
    # The old schema cannot say that a verified batch still waits for its tests: it would be released
    # by a second verification with no result. Stop and let the clinic settle those batches first.
    waiting = list(bind.execute(sa.text("SELECT code FROM batches WHERE status = 'awaiting_tests'")).scalars())
    if waiting:
        raise RuntimeError("Batches await their test results: record them (or reject or discard the batches) "
                           "before this downgrade: " + ", ".join(waiting))
    with op.batch_alter_table('batch_tests', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_batch_tests_batch_id'))
    op.drop_table('batch_tests')
    _sqlite_foreign_keys(False)
    _swap_check('formulas', 'ck_formulas_storage_known', NEW_STORAGE, None)
    _swap_check('ingredients', 'ck_ingredients_storage_known', NEW_STORAGE, OLD_STORAGE)
    with op.batch_alter_table('batches', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_batches_storage_known'), type_='check')
        batch_op.drop_constraint(batch_op.f('ck_batches_status_known'), type_='check')
        batch_op.create_check_constraint(batch_op.f('ck_batches_status_known'), OLD_BATCH)
    for table in ('ingredients', 'formulas', 'batches'):
        bind.execute(sa.text(f"UPDATE {table} SET storage = 'protect_from_light' "
                             "WHERE protect_from_light AND storage = 'room'"))
    with op.batch_alter_table('batch_components', schema=None) as batch_op:
        for name in (*COPIED, 'ingredient_sterile', 'ingredient_vehicle', 'lot_code', 'supplier_lot_number',
                     'lot_expires_on'):
            batch_op.drop_column(name)
    with op.batch_alter_table('batches', schema=None) as batch_op:
        batch_op.drop_column('required_tests')
        batch_op.drop_column('preparation_started_at')
    with op.batch_alter_table('formula_components', schema=None) as batch_op:
        batch_op.drop_column('qs')
    with op.batch_alter_table('ingredients', schema=None) as batch_op:
        batch_op.drop_column('vehicle')
        batch_op.drop_column('sterile')
    for table in ('ingredients', 'formulas', 'batches'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('protect_from_light')
    _sqlite_foreign_keys(True)
