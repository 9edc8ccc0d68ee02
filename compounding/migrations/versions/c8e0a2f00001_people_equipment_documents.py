"""Qualified people, calibrated equipment and the documents that prove them (DESIGN 10.6).

- `qualification_kinds` (the three USP <797> kinds are written here; admins add more) and
  `qualifications` (a dated pass or fail per person and kind, valid until a day).
- `equipment` (balances, pipettes, hoods, thermometers, data loggers: a scannable code, a site,
  the next calibration's due date), `calibrations` (their history) and `batch_equipment` (what
  each batch was made with, copied as it stood).
- `documents`: files kept in the file store by SHA-256, attached to a lot, batch, test result,
  qualification or piece of equipment.
- `lots.released_without_coa_reason`: why a lot was released with no certificate attached.
- The downgrade refuses once any of these holds a row.

Revision ID: c8e0a2f00001
Revises: a7c0d1e00001
Create Date: 2026-12-07 18:35:17.775761

"""
from alembic import op
import sqlalchemy as sa
from datetime import UTC, datetime

import compounding.extensions

# As written by this revision (compounding.models.people.BUILTIN_KINDS may grow later).
BUILTIN_KINDS = (
    ("hand_hygiene_garbing", "Hand hygiene and garbing", 6, 3, 1, False),
    ("gloved_fingertip", "Gloved fingertip and thumb sampling", 6, 3, 3, True),
    ("media_fill", "Media-fill test", 6, 3, 1, False),
)


# revision identifiers, used by Alembic.
revision = 'c8e0a2f00001'
down_revision = 'a7c0d1e00001'
branch_labels = None
depends_on = None


def _sqlite_foreign_keys(on: bool) -> None:
    """SQLite rebuilds `lots` to drop a column, which its children's foreign keys would refuse. PRAGMA
    foreign_keys cannot change inside a transaction: it is switched between two."""
    if op.get_bind().dialect.name == 'sqlite':
        with op.get_context().autocommit_block():
            op.execute(f"PRAGMA foreign_keys = {'ON' if on else 'OFF'}")


def upgrade():
    op.create_table('documents',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('entity_type', sa.String(length=20), nullable=False),
    sa.Column('entity_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=30), nullable=False),
    sa.Column('filename', sa.String(length=255), nullable=False),
    sa.Column('content_type', sa.String(length=40), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('received_sha256', sa.String(length=64), nullable=False),
    sa.Column('store', sa.String(length=10), nullable=False),
    sa.Column('storage_key', sa.String(length=255), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('uploaded_by_id', sa.Integer(), nullable=True),
    sa.Column('uploaded_at', compounding.extensions.UTCDateTime(timezone=True), nullable=False),
    sa.Column('withdrawn_at', compounding.extensions.UTCDateTime(timezone=True), nullable=True),
    sa.Column('withdrawn_by_id', sa.Integer(), nullable=True),
    sa.Column('withdraw_reason', sa.Text(), nullable=False),
    sa.CheckConstraint("content_type IN ('application/pdf', 'image/png', 'image/jpeg')", name=op.f('ck_documents_content_type_known')),
    sa.CheckConstraint("entity_type IN ('lot', 'batch', 'batch_test', 'qualification', 'equipment')", name=op.f('ck_documents_entity_type_known')),
    sa.CheckConstraint("kind IN ('certificate_of_analysis', 'test_report', 'calibration_certificate', 'evidence', 'other')", name=op.f('ck_documents_kind_known')),
    sa.CheckConstraint('size > 0', name=op.f('ck_documents_size_positive')),
    sa.ForeignKeyConstraint(['uploaded_by_id'], ['users.id'], name=op.f('fk_documents_uploaded_by_id_users')),
    sa.ForeignKeyConstraint(['withdrawn_by_id'], ['users.id'], name=op.f('fk_documents_withdrawn_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_documents'))
    )
    with op.batch_alter_table('documents', schema=None) as batch_op:
        batch_op.create_index('ix_documents_entity', ['entity_type', 'entity_id', 'id'], unique=False)
        batch_op.create_index(batch_op.f('ix_documents_sha256'), ['sha256'], unique=False)

    op.create_table('equipment',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=40), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('name', sa.String(length=120), nullable=False),
    sa.Column('serial_number', sa.String(length=120), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.Column('due_on', sa.Date(), nullable=False),
    sa.Column('out_of_service', sa.Boolean(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', compounding.extensions.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.CheckConstraint("kind IN ('balance', 'pipette', 'hood', 'thermometer', 'data_logger')", name=op.f('ck_equipment_kind_known')),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_equipment_created_by_id_users')),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_equipment_site_id_sites')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_equipment')),
    sa.UniqueConstraint('code', name=op.f('uq_equipment_code'))
    )
    with op.batch_alter_table('equipment', schema=None) as batch_op:
        batch_op.create_index('ix_equipment_due_on', ['due_on'], unique=False)
        batch_op.create_index('ix_equipment_site_code', ['site_id', 'code'], unique=False)

    op.create_table('qualification_kinds',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=60), nullable=False),
    sa.Column('name', sa.String(length=120), nullable=False),
    sa.Column('valid_months', sa.Integer(), nullable=False),
    sa.Column('category3_months', sa.Integer(), nullable=False),
    sa.Column('initial_passes', sa.Integer(), nullable=False),
    sa.Column('counts_cfu', sa.Boolean(), nullable=False),
    sa.Column('required', sa.Boolean(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('builtin', sa.Boolean(), nullable=False),
    sa.Column('created_at', compounding.extensions.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.CheckConstraint('category3_months >= 1 AND category3_months <= valid_months', name=op.f('ck_qualification_kinds_category3_months_range')),
    sa.CheckConstraint('initial_passes >= 1 AND initial_passes <= 10', name=op.f('ck_qualification_kinds_initial_passes_range')),
    sa.CheckConstraint('valid_months >= 1 AND valid_months <= 60', name=op.f('ck_qualification_kinds_valid_months_range')),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_qualification_kinds_created_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_qualification_kinds')),
    sa.UniqueConstraint('code', name=op.f('uq_qualification_kinds_code'))
    )
    op.create_table('calibrations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('equipment_id', sa.Integer(), nullable=False),
    sa.Column('performed_on', sa.Date(), nullable=False),
    sa.Column('result', sa.String(length=10), nullable=False),
    sa.Column('next_due_on', sa.Date(), nullable=False),
    sa.Column('performed_by', sa.String(length=120), nullable=False),
    sa.Column('certificate_number', sa.String(length=120), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('recorded_by_id', sa.Integer(), nullable=True),
    sa.Column('recorded_at', compounding.extensions.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("result IN ('pass', 'fail')", name=op.f('ck_calibrations_result_known')),
    sa.CheckConstraint('next_due_on > performed_on', name=op.f('ck_calibrations_due_after_performed')),
    sa.ForeignKeyConstraint(['equipment_id'], ['equipment.id'], name=op.f('fk_calibrations_equipment_id_equipment')),
    sa.ForeignKeyConstraint(['recorded_by_id'], ['users.id'], name=op.f('fk_calibrations_recorded_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_calibrations'))
    )
    with op.batch_alter_table('calibrations', schema=None) as batch_op:
        batch_op.create_index('ix_calibrations_equipment_performed', ['equipment_id', 'performed_on'], unique=False)

    op.create_table('qualifications',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('kind_id', sa.Integer(), nullable=False),
    sa.Column('passed_on', sa.Date(), nullable=False),
    sa.Column('result', sa.String(length=10), nullable=False),
    sa.Column('cfu', sa.Integer(), nullable=True),
    sa.Column('valid_until', sa.Date(), nullable=True),
    sa.Column('assessor', sa.String(length=120), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('recorded_by_id', sa.Integer(), nullable=True),
    sa.Column('recorded_at', compounding.extensions.UTCDateTime(timezone=True), nullable=False),
    sa.Column('voided_at', compounding.extensions.UTCDateTime(timezone=True), nullable=True),
    sa.Column('voided_by_id', sa.Integer(), nullable=True),
    sa.Column('void_reason', sa.Text(), nullable=False),
    sa.CheckConstraint("result IN ('pass', 'fail')", name=op.f('ck_qualifications_result_known')),
    sa.CheckConstraint('cfu IS NULL OR cfu >= 0', name=op.f('ck_qualifications_cfu_not_negative')),
    sa.CheckConstraint('valid_until IS NULL OR valid_until > passed_on', name=op.f('ck_qualifications_valid_after_passed')),
    sa.ForeignKeyConstraint(['kind_id'], ['qualification_kinds.id'], name=op.f('fk_qualifications_kind_id_qualification_kinds')),
    sa.ForeignKeyConstraint(['recorded_by_id'], ['users.id'], name=op.f('fk_qualifications_recorded_by_id_users')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_qualifications_user_id_users')),
    sa.ForeignKeyConstraint(['voided_by_id'], ['users.id'], name=op.f('fk_qualifications_voided_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_qualifications'))
    )
    with op.batch_alter_table('qualifications', schema=None) as batch_op:
        batch_op.create_index('ix_qualifications_user_kind_passed', ['user_id', 'kind_id', 'passed_on'], unique=False)
        batch_op.create_index('ix_qualifications_valid_until', ['valid_until'], unique=False)

    op.create_table('batch_equipment',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('batch_id', sa.Integer(), nullable=False),
    sa.Column('equipment_id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=40), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('name', sa.String(length=120), nullable=False),
    sa.Column('due_on', sa.Date(), nullable=False),
    sa.ForeignKeyConstraint(['batch_id'], ['batches.id'], name=op.f('fk_batch_equipment_batch_id_batches')),
    sa.ForeignKeyConstraint(['equipment_id'], ['equipment.id'], name=op.f('fk_batch_equipment_equipment_id_equipment')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_batch_equipment')),
    sa.UniqueConstraint('batch_id', 'equipment_id', name='uq_batch_equipment_once')
    )
    with op.batch_alter_table('batch_equipment', schema=None) as batch_op:
        batch_op.create_index('ix_batch_equipment_equipment', ['equipment_id'], unique=False)

    _sqlite_foreign_keys(False)
    with op.batch_alter_table('lots', schema=None) as batch_op:
        batch_op.add_column(sa.Column('released_without_coa_reason', sa.Text(), server_default='', nullable=False))
    _sqlite_foreign_keys(True)

    kinds = sa.table('qualification_kinds', sa.column('code', sa.String), sa.column('name', sa.String),
                     sa.column('valid_months', sa.Integer), sa.column('category3_months', sa.Integer),
                     sa.column('initial_passes', sa.Integer), sa.column('counts_cfu', sa.Boolean),
                     sa.column('required', sa.Boolean), sa.column('active', sa.Boolean),
                     sa.column('builtin', sa.Boolean), sa.column('created_at', compounding.extensions.UTCDateTime))
    now = datetime.now(UTC)
    op.bulk_insert(kinds, [
        {'code': code, 'name': name, 'valid_months': months, 'category3_months': months3,
         'initial_passes': passes, 'counts_cfu': cfu, 'required': True, 'active': True, 'builtin': True,
         'created_at': now}
        for code, name, months, months3, passes, cfu in BUILTIN_KINDS])


def downgrade():
    bind = op.get_bind()
    for table in ('qualifications', 'equipment', 'documents'):
        if bind.execute(sa.text(f'SELECT 1 FROM {table} LIMIT 1')).first():
            raise RuntimeError(f'{table} holds records: downgrading would lose them. Export them first.')
    if bind.execute(sa.text("SELECT 1 FROM lots WHERE released_without_coa_reason <> '' LIMIT 1")).first():
        raise RuntimeError('Lots were released without a certificate of analysis for a recorded reason: '
                           'downgrading would lose the reasons.')
    _sqlite_foreign_keys(False)
    with op.batch_alter_table('lots', schema=None) as batch_op:
        batch_op.drop_column('released_without_coa_reason')
    _sqlite_foreign_keys(True)

    with op.batch_alter_table('batch_equipment', schema=None) as batch_op:
        batch_op.drop_index('ix_batch_equipment_equipment')

    op.drop_table('batch_equipment')
    with op.batch_alter_table('qualifications', schema=None) as batch_op:
        batch_op.drop_index('ix_qualifications_valid_until')
        batch_op.drop_index('ix_qualifications_user_kind_passed')

    op.drop_table('qualifications')
    with op.batch_alter_table('calibrations', schema=None) as batch_op:
        batch_op.drop_index('ix_calibrations_equipment_performed')

    op.drop_table('calibrations')
    op.drop_table('qualification_kinds')
    with op.batch_alter_table('equipment', schema=None) as batch_op:
        batch_op.drop_index('ix_equipment_site_code')
        batch_op.drop_index('ix_equipment_due_on')

    op.drop_table('equipment')
    with op.batch_alter_table('documents', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_documents_sha256'))
        batch_op.drop_index('ix_documents_entity')

    op.drop_table('documents')
