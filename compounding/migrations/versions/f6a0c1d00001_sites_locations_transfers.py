"""A clinic chain: sites, storage locations, transfers, and stock per site.

- Tables `sites`, `locations` (a tree inside a site, scannable codes), `user_sites`,
  `transfers` and `transfer_lines`.
- Site `MAIN` with one default location `LOC0001`; every lot, batch and vial is put there,
  every ledger row names it, every treatment session was performed there, and every user
  belongs to MAIN: a one-site clinic sees no change.
- Lots may name their parent (a child lot made at a transfer's destination, sharing its
  supplier lot number: a supplier lot is now received once per site, and the rule holds for
  lots without a parent); the ledger takes the movement kind `transfer`.

The downgrade refuses once the clinic is a chain (a second site, or any transfer): folding
sites back into one pool would put stock where it is not.

Revision ID: f6a0c1d00001
Revises: e5d0a1b00001
Create Date: 2026-12-07 13:00:00

"""
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

import compounding.extensions

# revision identifiers, used by Alembic.
revision = 'f6a0c1d00001'
down_revision = 'e5d0a1b00001'
branch_labels = None
depends_on = None

OLD_KINDS = "kind IN ('receive', 'consume', 'use', 'waste', 'adjust', 'return')"
NEW_KINDS = "kind IN ('receive', 'consume', 'use', 'waste', 'adjust', 'return', 'transfer')"


def _sqlite_foreign_keys(on: bool) -> None:
    """SQLite rebuilds a table to add a constraint, which its children's foreign keys would refuse."""
    if op.get_bind().dialect.name == 'sqlite':
        with op.get_context().autocommit_block():
            op.execute(f"PRAGMA foreign_keys = {'ON' if on else 'OFF'}")


def _main_site(bind) -> None:
    """Site MAIN and its default location; everything that exists is put there."""
    now = datetime.now(UTC)
    zone = op.get_context().opts.get('clinic_timezone') or 'Europe/London'
    try:
        from flask import current_app
        zone = current_app.config.get('CLINIC_TIMEZONE', zone)
    except RuntimeError:  # outside an application (plain alembic)
        pass
    sites = sa.table('sites', sa.column('id', sa.Integer), sa.column('code', sa.String),
                     sa.column('name', sa.String), sa.column('timezone', sa.String), sa.column('address', sa.Text),
                     sa.column('active', sa.Boolean),
                     sa.column('created_at', compounding.extensions.UTCDateTime(timezone=True)))
    locations = sa.table('locations', sa.column('id', sa.Integer), sa.column('site_id', sa.Integer),
                         sa.column('code', sa.String), sa.column('name', sa.String), sa.column('kind', sa.String),
                         sa.column('is_default', sa.Boolean), sa.column('active', sa.Boolean),
                         sa.column('created_at', compounding.extensions.UTCDateTime(timezone=True)))
    site_id = bind.execute(sites.insert().values(code='MAIN', name='Main site', timezone=zone, address='',
                                                 active=True, created_at=now).returning(sites.c.id)).scalar_one()
    location_id = bind.execute(locations.insert().values(
        site_id=site_id, code='LOC0001', name='Main store', kind='room', is_default=True, active=True,
        created_at=now).returning(locations.c.id)).scalar_one()
    for table in ('lots', 'batches', 'vials'):
        bind.execute(sa.text(f"UPDATE {table} SET location_id = :location, site_id = :site"),
                     {'location': location_id, 'site': site_id})
    bind.execute(sa.text("UPDATE stock_movements SET location_id = :location"), {'location': location_id})
    bind.execute(sa.text("UPDATE treatment_sessions SET site_id = :site"), {'site': site_id})
    bind.execute(sa.text("INSERT INTO user_sites (user_id, site_id, created_at) SELECT id, :site, :now FROM users"),
                 {'site': site_id, 'now': now})


def _refuse_a_chain(bind) -> None:
    sites = bind.execute(sa.text("SELECT count(*) FROM sites")).scalar_one()
    transfers = bind.execute(sa.text("SELECT count(*) FROM transfers")).scalar_one()
    if sites > 1 or transfers:
        raise RuntimeError(f"This database holds {sites} sites and {transfers} transfers: the schema before "
                           "sites has one pool of stock and would put items where they are not. Not downgraded.")


def upgrade():
    bind = op.get_bind()
    op.create_table('sites',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=12), nullable=False),
    sa.Column('name', sa.String(length=120), nullable=False),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('address', sa.Text(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', compounding.extensions.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sites')),
    sa.UniqueConstraint('code', name=op.f('uq_sites_code'))
    )
    op.create_table('locations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.Column('parent_id', sa.Integer(), nullable=True),
    sa.Column('code', sa.String(length=16), nullable=False),
    sa.Column('name', sa.String(length=120), nullable=False),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('is_default', sa.Boolean(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('min_celsius', sa.Numeric(precision=14, scale=3), nullable=True),
    sa.Column('max_celsius', sa.Numeric(precision=14, scale=3), nullable=True),
    sa.Column('created_at', compounding.extensions.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("kind IN ('room', 'cabinet', 'fridge', 'freezer')", name=op.f('ck_locations_kind_known')),
    sa.CheckConstraint('min_celsius IS NULL OR max_celsius IS NULL OR min_celsius < max_celsius',
        name=op.f('ck_locations_range_ordered')),
    sa.ForeignKeyConstraint(['parent_id'], ['locations.id'], name=op.f('fk_locations_parent_id_locations')),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_locations_site_id_sites')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_locations')),
    sa.UniqueConstraint('code', name=op.f('uq_locations_code')),
    sa.UniqueConstraint('id', 'site_id', name='uq_locations_id_site_id'),
    sa.UniqueConstraint('site_id', 'name', name=op.f('uq_locations_site_id_name'))
    )
    with op.batch_alter_table('locations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_locations_parent_id'), ['parent_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_locations_site_id'), ['site_id'], unique=False)
        batch_op.create_index('uq_locations_default_per_site', ['site_id'], unique=True,
            sqlite_where=sa.text('is_default'), postgresql_where=sa.text('is_default'))

    op.create_table('user_sites',
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.Column('created_at', compounding.extensions.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_user_sites_site_id_sites')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_user_sites_user_id_users')),
    sa.PrimaryKeyConstraint('user_id', 'site_id', name=op.f('pk_user_sites'))
    )
    with op.batch_alter_table('user_sites', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_user_sites_site_id'), ['site_id'], unique=False)

    op.create_table('transfers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=12), nullable=False),
    sa.Column('from_site_id', sa.Integer(), nullable=False),
    sa.Column('to_site_id', sa.Integer(), nullable=False),
    sa.Column('to_location_id', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=False),
    sa.Column('created_at', compounding.extensions.UTCDateTime(timezone=True), nullable=False),
    sa.Column('dispatched_by_id', sa.Integer(), nullable=True),
    sa.Column('dispatched_at', compounding.extensions.UTCDateTime(timezone=True), nullable=True),
    sa.Column('received_by_id', sa.Integer(), nullable=True),
    sa.Column('received_at', compounding.extensions.UTCDateTime(timezone=True), nullable=True),
    sa.Column('cancelled_by_id', sa.Integer(), nullable=True),
    sa.Column('cancelled_at', compounding.extensions.UTCDateTime(timezone=True), nullable=True),
    sa.Column('cancel_reason', sa.Text(), nullable=False),
    sa.CheckConstraint("status IN ('draft', 'dispatched', 'received', 'cancelled')",
        name=op.f('ck_transfers_status_known')),
    sa.CheckConstraint('from_site_id <> to_site_id', name=op.f('ck_transfers_between_two_sites')),
    sa.ForeignKeyConstraint(['cancelled_by_id'], ['users.id'], name=op.f('fk_transfers_cancelled_by_id_users')),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_transfers_created_by_id_users')),
    sa.ForeignKeyConstraint(['dispatched_by_id'], ['users.id'], name=op.f('fk_transfers_dispatched_by_id_users')),
    sa.ForeignKeyConstraint(['from_site_id'], ['sites.id'], name=op.f('fk_transfers_from_site_id_sites')),
    sa.ForeignKeyConstraint(['received_by_id'], ['users.id'], name=op.f('fk_transfers_received_by_id_users')),
    sa.ForeignKeyConstraint(['to_location_id'], ['locations.id'], name=op.f('fk_transfers_to_location_id_locations')),
    sa.ForeignKeyConstraint(['to_site_id'], ['sites.id'], name=op.f('fk_transfers_to_site_id_sites')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_transfers')),
    sa.UniqueConstraint('code', name=op.f('uq_transfers_code'))
    )
    with op.batch_alter_table('transfers', schema=None) as batch_op:
        batch_op.create_index('ix_transfers_from_status', ['from_site_id', 'status', 'id'], unique=False)
        batch_op.create_index('ix_transfers_to_status', ['to_site_id', 'status', 'id'], unique=False)

    op.create_table('transfer_lines',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('transfer_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=5), nullable=False),
    sa.Column('lot_id', sa.Integer(), nullable=True),
    sa.Column('batch_id', sa.Integer(), nullable=True),
    sa.Column('vial_id', sa.Integer(), nullable=True),
    sa.Column('quantity', sa.Numeric(precision=14, scale=3), nullable=False),
    sa.Column('received', sa.Numeric(precision=14, scale=3), nullable=True),
    sa.Column('damaged', sa.Numeric(precision=14, scale=3), nullable=True),
    sa.Column('child_lot_id', sa.Integer(), nullable=True),
    sa.Column('scanned_out_at', compounding.extensions.UTCDateTime(timezone=True), nullable=True),
    sa.Column('scanned_in_at', compounding.extensions.UTCDateTime(timezone=True), nullable=True),
    sa.CheckConstraint(
        "(kind = 'lot' AND lot_id IS NOT NULL AND batch_id IS NULL AND vial_id IS NULL) OR "
        "(kind = 'vial' AND vial_id IS NOT NULL AND batch_id IS NOT NULL AND lot_id IS NULL AND quantity = 1)",
        name=op.f('ck_transfer_lines_one_item')),
    sa.CheckConstraint("kind IN ('lot', 'vial')", name=op.f('ck_transfer_lines_kind_known')),
    sa.CheckConstraint('damaged IS NULL OR (damaged >= 0 AND damaged <= received)',
        name=op.f('ck_transfer_lines_damaged_within_received')),
    sa.CheckConstraint('quantity > 0', name=op.f('ck_transfer_lines_quantity_positive')),
    sa.CheckConstraint('received IS NULL OR received <= quantity', name=op.f('ck_transfer_lines_received_within_sent')),
    sa.CheckConstraint('received IS NULL OR received >= 0', name=op.f('ck_transfer_lines_received_not_negative')),
    sa.ForeignKeyConstraint(['batch_id'], ['batches.id'], name=op.f('fk_transfer_lines_batch_id_batches')),
    sa.ForeignKeyConstraint(['child_lot_id'], ['lots.id'], name=op.f('fk_transfer_lines_child_lot_id_lots')),
    sa.ForeignKeyConstraint(['lot_id'], ['lots.id'], name=op.f('fk_transfer_lines_lot_id_lots')),
    sa.ForeignKeyConstraint(['transfer_id'], ['transfers.id'], name=op.f('fk_transfer_lines_transfer_id_transfers')),
    sa.ForeignKeyConstraint(['vial_id'], ['vials.id'], name=op.f('fk_transfer_lines_vial_id_vials')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_transfer_lines'))
    )
    with op.batch_alter_table('transfer_lines', schema=None) as batch_op:
        batch_op.create_index('ix_transfer_lines_batch', ['batch_id'], unique=False)
        batch_op.create_index('ix_transfer_lines_lot', ['lot_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_transfer_lines_transfer_id'), ['transfer_id'], unique=False)
        batch_op.create_index('ix_transfer_lines_vial', ['vial_id'], unique=False)

    _sqlite_foreign_keys(False)
    with op.batch_alter_table('batches', schema=None) as batch_op:
        batch_op.add_column(sa.Column('location_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('site_id', sa.Integer(), nullable=True))

    with op.batch_alter_table('lots', schema=None) as batch_op:
        batch_op.add_column(sa.Column('location_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('site_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('parent_lot_id', sa.Integer(), nullable=True))

    with op.batch_alter_table('stock_movements', schema=None) as batch_op:
        batch_op.add_column(sa.Column('location_id', sa.Integer(), nullable=True))

    with op.batch_alter_table('treatment_sessions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('site_id', sa.Integer(), nullable=True))

    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('all_sites', sa.Boolean(), nullable=False, server_default=sa.false()))

    with op.batch_alter_table('vials', schema=None) as batch_op:
        batch_op.add_column(sa.Column('location_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('site_id', sa.Integer(), nullable=True))
    _main_site(bind)
    with op.batch_alter_table('batches', schema=None) as batch_op:
        batch_op.create_index('ix_batches_location', ['location_id'], unique=False)
        batch_op.create_index('ix_batches_site_compounded_id', ['site_id', 'compounded_at', 'id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_batches_site_id_sites'), 'sites', ['site_id'], ['id'])
        batch_op.create_foreign_key('fk_batches_location_at_site',
            'locations', ['location_id', 'site_id'], ['id', 'site_id'])
        batch_op.alter_column('location_id', existing_type=sa.Integer(), nullable=False)
        batch_op.alter_column('site_id', existing_type=sa.Integer(), nullable=False)

    with op.batch_alter_table('lots', schema=None) as batch_op:
        batch_op.create_index('ix_lots_location', ['location_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_lots_parent_lot_id'), ['parent_lot_id'], unique=False)
        batch_op.create_index('ix_lots_site_expires_on_id', ['site_id', 'expires_on', 'id'], unique=False)
        batch_op.create_foreign_key('fk_lots_location_at_site',
            'locations', ['location_id', 'site_id'], ['id', 'site_id'])
        batch_op.create_foreign_key(batch_op.f('fk_lots_site_id_sites'), 'sites', ['site_id'], ['id'])
        batch_op.create_foreign_key(batch_op.f('fk_lots_parent_lot_id_lots'), 'lots', ['parent_lot_id'], ['id'])
        batch_op.drop_constraint('uq_lots_ingredient_id_supplier_supplier_lot_number', type_='unique')
        batch_op.create_index('uq_lots_received_once', ['site_id', 'ingredient_id', 'supplier', 'supplier_lot_number'],
                              unique=True, sqlite_where=sa.text('parent_lot_id IS NULL'),
                              postgresql_where=sa.text('parent_lot_id IS NULL'))
        batch_op.alter_column('location_id', existing_type=sa.Integer(), nullable=False)
        batch_op.alter_column('site_id', existing_type=sa.Integer(), nullable=False)

    with op.batch_alter_table('stock_movements', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_stock_movements_location_id'), ['location_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_stock_movements_location_id_locations'),
            'locations', ['location_id'], ['id'])
        batch_op.drop_constraint(batch_op.f('ck_stock_movements_kind_known'), type_='check')
        batch_op.create_check_constraint(batch_op.f('ck_stock_movements_kind_known'), NEW_KINDS)

    with op.batch_alter_table('treatment_sessions', schema=None) as batch_op:
        batch_op.create_index('ix_treatment_sessions_site_performed_id', ['site_id', 'performed_at', 'id'],
            unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_treatment_sessions_site_id_sites'), 'sites', ['site_id'], ['id'])
        batch_op.alter_column('site_id', existing_type=sa.Integer(), nullable=False)

    with op.batch_alter_table('vials', schema=None) as batch_op:
        batch_op.create_index('ix_vials_location', ['location_id'], unique=False)
        batch_op.create_index('ix_vials_site_batch', ['site_id', 'batch_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_vials_site_id_sites'), 'sites', ['site_id'], ['id'])
        batch_op.create_foreign_key('fk_vials_location_at_site',
            'locations', ['location_id', 'site_id'], ['id', 'site_id'])
        batch_op.alter_column('location_id', existing_type=sa.Integer(), nullable=False)
        batch_op.alter_column('site_id', existing_type=sa.Integer(), nullable=False)
    _sqlite_foreign_keys(True)


def downgrade():
    _refuse_a_chain(op.get_bind())
    _sqlite_foreign_keys(False)
    with op.batch_alter_table('vials', schema=None) as batch_op:
        batch_op.drop_constraint('fk_vials_location_at_site', type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('fk_vials_site_id_sites'), type_='foreignkey')
        batch_op.drop_index('ix_vials_site_batch')
        batch_op.drop_index('ix_vials_location')
        batch_op.drop_column('site_id')
        batch_op.drop_column('location_id')

    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('all_sites')

    with op.batch_alter_table('treatment_sessions', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_treatment_sessions_site_id_sites'), type_='foreignkey')
        batch_op.drop_index('ix_treatment_sessions_site_performed_id')
        batch_op.drop_column('site_id')

    with op.batch_alter_table('stock_movements', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_stock_movements_location_id_locations'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_stock_movements_location_id'))
        batch_op.drop_column('location_id')
        batch_op.drop_constraint(batch_op.f('ck_stock_movements_kind_known'), type_='check')
        batch_op.create_check_constraint(batch_op.f('ck_stock_movements_kind_known'), OLD_KINDS)

    with op.batch_alter_table('lots', schema=None) as batch_op:
        batch_op.drop_index('uq_lots_received_once')
        batch_op.create_unique_constraint('uq_lots_ingredient_id_supplier_supplier_lot_number',
                                          ['ingredient_id', 'supplier', 'supplier_lot_number'])
        batch_op.drop_constraint(batch_op.f('fk_lots_parent_lot_id_lots'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('fk_lots_site_id_sites'), type_='foreignkey')
        batch_op.drop_constraint('fk_lots_location_at_site', type_='foreignkey')
        batch_op.drop_index('ix_lots_site_expires_on_id')
        batch_op.drop_index(batch_op.f('ix_lots_parent_lot_id'))
        batch_op.drop_index('ix_lots_location')
        batch_op.drop_column('parent_lot_id')
        batch_op.drop_column('site_id')
        batch_op.drop_column('location_id')

    with op.batch_alter_table('batches', schema=None) as batch_op:
        batch_op.drop_constraint('fk_batches_location_at_site', type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('fk_batches_site_id_sites'), type_='foreignkey')
        batch_op.drop_index('ix_batches_site_compounded_id')
        batch_op.drop_index('ix_batches_location')
        batch_op.drop_column('site_id')
        batch_op.drop_column('location_id')

    with op.batch_alter_table('transfer_lines', schema=None) as batch_op:
        batch_op.drop_index('ix_transfer_lines_vial')
        batch_op.drop_index(batch_op.f('ix_transfer_lines_transfer_id'))
        batch_op.drop_index('ix_transfer_lines_lot')
        batch_op.drop_index('ix_transfer_lines_batch')

    op.drop_table('transfer_lines')
    with op.batch_alter_table('transfers', schema=None) as batch_op:
        batch_op.drop_index('ix_transfers_to_status')
        batch_op.drop_index('ix_transfers_from_status')

    op.drop_table('transfers')
    with op.batch_alter_table('user_sites', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_user_sites_site_id'))

    op.drop_table('user_sites')
    with op.batch_alter_table('locations', schema=None) as batch_op:
        batch_op.drop_index('uq_locations_default_per_site',
            sqlite_where=sa.text('is_default'), postgresql_where=sa.text('is_default'))
        batch_op.drop_index(batch_op.f('ix_locations_site_id'))
        batch_op.drop_index(batch_op.f('ix_locations_parent_id'))

    _sqlite_foreign_keys(True)
    op.drop_table('locations')
    op.drop_table('sites')
