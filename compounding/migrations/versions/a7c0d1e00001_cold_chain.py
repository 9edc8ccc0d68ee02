"""Cold chain: temperature readings, excursions and their holds (DESIGN 10.5).

- `temperature_readings` (manual, logger, sensor), once per location, moment and source.
- `excursions` and `excursion_items` (each held item and the pharmacist's decision).
- `reading_imports`: a data logger's file, imported whole or not at all.
- `stock_moves`: each move of a lot, batch or vial between locations from now on, so that an
  excursion found late holds what was stored there while it lasted.
- `locations.readings_per_day` (2: morning and evening), `vials.use_by_at` (a use-by kept
  shorter after an excursion), `api_tokens.scope` and `location_id` (a sensor's token).
- The downgrade refuses once a reading or an excursion is recorded.

Revision ID: a7c0d1e00001
Revises: f6a0c1d00002
Create Date: 2026-12-07 16:01:58.227742

"""
from alembic import op
import sqlalchemy as sa
import compounding.extensions


# revision identifiers, used by Alembic.
revision = 'a7c0d1e00001'
down_revision = 'f6a0c1d00002'
branch_labels = None
depends_on = None


def _sqlite_foreign_keys(on: bool) -> None:
    """SQLite rebuilds `locations` to add or drop a column with a CHECK, which its children's foreign keys
    would refuse. PRAGMA foreign_keys cannot change inside a transaction: it is switched between two."""
    if op.get_bind().dialect.name == 'sqlite':
        with op.get_context().autocommit_block():
            op.execute(f"PRAGMA foreign_keys = {'ON' if on else 'OFF'}")


def upgrade():
    op.create_table('excursions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('location_id', sa.Integer(), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.Column('started_at', compounding.extensions.UTCDateTime(timezone=True), nullable=False),
    sa.Column('ended_at', compounding.extensions.UTCDateTime(timezone=True), nullable=True),
    sa.Column('low_celsius', sa.Numeric(precision=5, scale=2), nullable=False),
    sa.Column('high_celsius', sa.Numeric(precision=5, scale=2), nullable=False),
    sa.Column('range_min', sa.Numeric(precision=5, scale=2), nullable=True),
    sa.Column('range_max', sa.Numeric(precision=5, scale=2), nullable=True),
    sa.Column('source', sa.String(length=10), nullable=False),
    sa.Column('held_at', compounding.extensions.UTCDateTime(timezone=True), nullable=False),
    sa.Column('opened_by_id', sa.Integer(), nullable=True),
    sa.Column('found_late', sa.Boolean(), nullable=False),
    sa.Column('decided_at', compounding.extensions.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['location_id'], ['locations.id'], name=op.f('fk_excursions_location_id_locations')),
    sa.ForeignKeyConstraint(['opened_by_id'], ['users.id'], name=op.f('fk_excursions_opened_by_id_users')),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_excursions_site_id_sites')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_excursions'))
    )
    with op.batch_alter_table('excursions', schema=None) as batch_op:
        batch_op.create_index('ix_excursions_location_started', ['location_id', 'started_at'], unique=False)
        batch_op.create_index('ix_excursions_site_open', ['site_id', 'ended_at'], unique=False)

    op.create_table('reading_imports',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('location_id', sa.Integer(), nullable=False),
    sa.Column('filename', sa.String(length=255), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('rows', sa.Integer(), nullable=False),
    sa.Column('imported', sa.Integer(), nullable=False),
    sa.Column('duplicates', sa.Integer(), nullable=False),
    sa.Column('first_at', compounding.extensions.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_at', compounding.extensions.UTCDateTime(timezone=True), nullable=True),
    sa.Column('uploaded_by_id', sa.Integer(), nullable=True),
    sa.Column('uploaded_at', compounding.extensions.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['location_id'], ['locations.id'], name=op.f('fk_reading_imports_location_id_locations')),
    sa.ForeignKeyConstraint(['uploaded_by_id'], ['users.id'], name=op.f('fk_reading_imports_uploaded_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reading_imports'))
    )
    with op.batch_alter_table('reading_imports', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_reading_imports_location_id'), ['location_id'], unique=False)

    op.create_table('excursion_items',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('excursion_id', sa.Integer(), nullable=False),
    sa.Column('entity_type', sa.String(length=10), nullable=False),
    sa.Column('entity_id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=24), nullable=False),
    sa.Column('hold_id', sa.Integer(), nullable=True),
    sa.Column('decision', sa.String(length=20), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('use_by_before', compounding.extensions.UTCDateTime(timezone=True), nullable=True),
    sa.Column('use_by_after', compounding.extensions.UTCDateTime(timezone=True), nullable=True),
    sa.Column('decided_by_id', sa.Integer(), nullable=True),
    sa.Column('decided_at', compounding.extensions.UTCDateTime(timezone=True), nullable=True),
    sa.CheckConstraint("decision IS NULL OR decision IN ('keep', 'keep_shortened', 'discard')", name=op.f('ck_excursion_items_decision_known')),
    sa.CheckConstraint("entity_type IN ('lot', 'batch', 'vial')", name=op.f('ck_excursion_items_entity_type_known')),
    sa.ForeignKeyConstraint(['decided_by_id'], ['users.id'], name=op.f('fk_excursion_items_decided_by_id_users')),
    sa.ForeignKeyConstraint(['excursion_id'], ['excursions.id'], name=op.f('fk_excursion_items_excursion_id_excursions')),
    sa.ForeignKeyConstraint(['hold_id'], ['holds.id'], name=op.f('fk_excursion_items_hold_id_holds')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_excursion_items')),
    sa.UniqueConstraint('excursion_id', 'entity_type', 'entity_id', name='uq_excursion_items_once')
    )
    with op.batch_alter_table('excursion_items', schema=None) as batch_op:
        batch_op.create_index('ix_excursion_items_entity', ['entity_type', 'entity_id'], unique=False)

    op.create_table('temperature_readings',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('location_id', sa.Integer(), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.Column('measured_at', compounding.extensions.UTCDateTime(timezone=True), nullable=False),
    sa.Column('utc_offset_minutes', sa.Integer(), nullable=False),
    sa.Column('celsius', sa.Numeric(precision=5, scale=2), nullable=False),
    sa.Column('min_celsius', sa.Numeric(precision=5, scale=2), nullable=True),
    sa.Column('max_celsius', sa.Numeric(precision=5, scale=2), nullable=True),
    sa.Column('source', sa.String(length=10), nullable=False),
    sa.Column('in_range', sa.Boolean(), nullable=False),
    sa.Column('excursion_id', sa.Integer(), nullable=True),
    sa.Column('import_id', sa.Integer(), nullable=True),
    sa.Column('recorded_by_id', sa.Integer(), nullable=True),
    sa.Column('token_id', sa.Integer(), nullable=True),
    sa.Column('recorded_at', compounding.extensions.UTCDateTime(timezone=True), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.CheckConstraint("source IN ('manual', 'logger', 'sensor')", name=op.f('ck_temperature_readings_source_known')),
    sa.CheckConstraint('celsius >= -90 AND celsius <= 60', name=op.f('ck_temperature_readings_celsius_plausible')),
    sa.ForeignKeyConstraint(['excursion_id'], ['excursions.id'], name=op.f('fk_temperature_readings_excursion_id_excursions')),
    sa.ForeignKeyConstraint(['import_id'], ['reading_imports.id'], name=op.f('fk_temperature_readings_import_id_reading_imports')),
    sa.ForeignKeyConstraint(['location_id'], ['locations.id'], name=op.f('fk_temperature_readings_location_id_locations')),
    sa.ForeignKeyConstraint(['recorded_by_id'], ['users.id'], name=op.f('fk_temperature_readings_recorded_by_id_users')),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_temperature_readings_site_id_sites')),
    sa.ForeignKeyConstraint(['token_id'], ['api_tokens.id'], name=op.f('fk_temperature_readings_token_id_api_tokens')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_temperature_readings')),
    sa.UniqueConstraint('location_id', 'measured_at', 'source', name='uq_readings_once')
    )
    with op.batch_alter_table('temperature_readings', schema=None) as batch_op:
        batch_op.create_index('ix_readings_location_measured', ['location_id', 'measured_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_temperature_readings_excursion_id'), ['excursion_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_temperature_readings_import_id'), ['import_id'], unique=False)

    op.create_table('stock_moves',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('entity_type', sa.String(length=10), nullable=False),
    sa.Column('entity_id', sa.Integer(), nullable=False),
    sa.Column('from_location_id', sa.Integer(), nullable=False),
    sa.Column('to_location_id', sa.Integer(), nullable=False),
    sa.Column('moved_at', compounding.extensions.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("entity_type IN ('lot', 'batch', 'vial')", name=op.f('ck_stock_moves_entity_type_known')),
    sa.ForeignKeyConstraint(['from_location_id'], ['locations.id'], name=op.f('fk_stock_moves_from_location_id_locations')),
    sa.ForeignKeyConstraint(['to_location_id'], ['locations.id'], name=op.f('fk_stock_moves_to_location_id_locations')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stock_moves'))
    )
    with op.batch_alter_table('stock_moves', schema=None) as batch_op:
        batch_op.create_index('ix_stock_moves_entity', ['entity_type', 'entity_id'], unique=False)
        batch_op.create_index('ix_stock_moves_from_moved', ['from_location_id', 'moved_at'], unique=False)
        batch_op.create_index('ix_stock_moves_to_moved', ['to_location_id', 'moved_at'], unique=False)

    _sqlite_foreign_keys(False)
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('scope', sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column('location_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_api_tokens_location_id_locations'), 'locations', ['location_id'], ['id'])

    with op.batch_alter_table('locations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('readings_per_day', sa.Integer(), server_default='2', nullable=False))
        batch_op.create_check_constraint(op.f('ck_locations_readings_per_day_range'),
                                         'readings_per_day >= 1 AND readings_per_day <= 96')

    with op.batch_alter_table('vials', schema=None) as batch_op:
        batch_op.add_column(sa.Column('use_by_at', compounding.extensions.UTCDateTime(timezone=True), nullable=True))
    _sqlite_foreign_keys(True)



def downgrade():
    bind = op.get_bind()
    readings = bind.execute(sa.text("SELECT count(*) FROM temperature_readings")).scalar_one()
    excursions = bind.execute(sa.text("SELECT count(*) FROM excursions")).scalar_one()
    if readings or excursions:
        raise RuntimeError(f"This database holds {readings} temperature readings and {excursions} excursions: "
                           "the schema before the cold chain cannot keep them. Not downgraded.")
    _sqlite_foreign_keys(False)
    with op.batch_alter_table('locations', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_locations_readings_per_day_range'), type_='check')
        batch_op.drop_column('readings_per_day')
    with op.batch_alter_table('vials', schema=None) as batch_op:
        batch_op.drop_column('use_by_at')

    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_api_tokens_location_id_locations'), type_='foreignkey')
        batch_op.drop_column('location_id')
        batch_op.drop_column('scope')
    _sqlite_foreign_keys(True)

    with op.batch_alter_table('temperature_readings', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_temperature_readings_import_id'))
        batch_op.drop_index(batch_op.f('ix_temperature_readings_excursion_id'))
        batch_op.drop_index('ix_readings_location_measured')

    op.drop_table('stock_moves')
    op.drop_table('temperature_readings')
    with op.batch_alter_table('excursion_items', schema=None) as batch_op:
        batch_op.drop_index('ix_excursion_items_entity')

    op.drop_table('excursion_items')
    with op.batch_alter_table('reading_imports', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_reading_imports_location_id'))

    op.drop_table('reading_imports')
    with op.batch_alter_table('excursions', schema=None) as batch_op:
        batch_op.drop_index('ix_excursions_site_open')
        batch_op.drop_index('ix_excursions_location_started')

    op.drop_table('excursions')
