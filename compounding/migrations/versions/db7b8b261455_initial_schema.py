"""Initial schema: every entity of the design, with named constraints and indexes.

Revision ID: db7b8b261455
Revises: 
Create Date: 2026-11-27 04:04:28.298498

"""
import sqlalchemy as sa
from alembic import op

import compounding.extensions

# revision identifiers, used by Alembic.
revision = 'db7b8b261455'
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('code_counters',
    sa.Column('key', sa.String(length=20), nullable=False),
    sa.Column('value', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_code_counters'))
    )
    op.create_table('ingredients',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=120), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('unit', sa.String(length=10), nullable=False),
    sa.Column('strength', sa.String(length=60), nullable=False),
    sa.Column('storage', sa.String(length=30), nullable=False),
    sa.Column('reorder_level', sa.Numeric(precision=14, scale=3), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', compounding.extensions.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("kind IN ('active', 'excipient', 'diluent')", name=op.f('ck_ingredients_kind_known')),
    sa.CheckConstraint("storage IN ('room', 'fridge', 'freezer', 'protect_from_light')", name=op.f('ck_ingredients_storage_known')),
    sa.CheckConstraint("unit IN ('mg', 'g', 'mL', 'IU', 'unit')", name=op.f('ck_ingredients_unit_known')),
    sa.CheckConstraint('reorder_level >= 0', name=op.f('ck_ingredients_reorder_level_not_negative')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ingredients')),
    sa.UniqueConstraint('name', name=op.f('uq_ingredients_name'))
    )
    with op.batch_alter_table('ingredients', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ingredients_active'), ['active'], unique=False)

    op.create_table('patients',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('chart_number', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=160), nullable=False),
    sa.Column('birth_on', sa.Date(), nullable=True),
    sa.Column('phone', sa.String(length=40), nullable=False),
    sa.Column('email', sa.String(length=160), nullable=False),
    sa.Column('created_at', compounding.extensions.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_patients')),
    sa.UniqueConstraint('chart_number', name=op.f('uq_patients_chart_number'))
    )
    with op.batch_alter_table('patients', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_patients_name'), ['name'], unique=False)

    op.create_table('users',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('display_name', sa.String(length=120), nullable=False),
    sa.Column('role', sa.String(length=20), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('must_change_password', sa.Boolean(), nullable=False),
    sa.Column('failed_logins', sa.Integer(), server_default='0', nullable=False),
    sa.Column('locked_until', compounding.extensions.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', compounding.extensions.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_login_at', compounding.extensions.UTCDateTime(timezone=True), nullable=True),
    sa.Column('password_changed_at', compounding.extensions.UTCDateTime(timezone=True), nullable=True),
    sa.CheckConstraint("role IN ('admin', 'pharmacist', 'technician', 'practitioner', 'auditor')", name=op.f('ck_users_role_known')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
    sa.UniqueConstraint('username', name=op.f('uq_users_username'))
    )
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_users_role'), ['role'], unique=False)

    op.create_table('api_tokens',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=80), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('prefix', sa.String(length=12), nullable=False),
    sa.Column('created_at', compounding.extensions.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_used_at', compounding.extensions.UTCDateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', compounding.extensions.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_api_tokens_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_tokens')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_api_tokens_token_hash'))
    )
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_tokens_user_id'), ['user_id'], unique=False)

    op.create_table('audit_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('occurred_at', compounding.extensions.UTCDateTime(timezone=True), nullable=False),
    sa.Column('actor_id', sa.Integer(), nullable=True),
    sa.Column('actor_name', sa.String(length=120), nullable=False),
    sa.Column('action', sa.String(length=60), nullable=False),
    sa.Column('entity_type', sa.String(length=40), nullable=False),
    sa.Column('entity_id', sa.Integer(), nullable=True),
    sa.Column('old_values', sa.JSON(), nullable=True),
    sa.Column('new_values', sa.JSON(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['actor_id'], ['users.id'], name=op.f('fk_audit_events_actor_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_events')),
    sa.UniqueConstraint('hash', name=op.f('uq_audit_events_hash'))
    )
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_events_action'), ['action'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_events_actor_id'), ['actor_id'], unique=False)
        batch_op.create_index('ix_audit_events_entity', ['entity_type', 'entity_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_events_occurred_at'), ['occurred_at'], unique=False)

    op.create_table('formulas',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=30), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=160), nullable=False),
    sa.Column('indication', sa.String(length=30), nullable=False),
    sa.Column('route', sa.String(length=20), nullable=False),
    sa.Column('dosage_form', sa.String(length=60), nullable=False),
    sa.Column('unit_label', sa.String(length=60), nullable=False),
    sa.Column('unit_volume_ml', sa.Numeric(precision=14, scale=3), nullable=False),
    sa.Column('instructions', sa.Text(), nullable=False),
    sa.Column('storage', sa.String(length=30), nullable=False),
    sa.Column('bud_category', sa.String(length=60), nullable=False),
    sa.Column('bud_hours', sa.Integer(), nullable=True),
    sa.Column('bud_reason', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('created_at', compounding.extensions.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=False),
    sa.Column('approved_at', compounding.extensions.UTCDateTime(timezone=True), nullable=True),
    sa.Column('approved_by_id', sa.Integer(), nullable=True),
    sa.Column('retired_at', compounding.extensions.UTCDateTime(timezone=True), nullable=True),
    sa.Column('previous_version_id', sa.Integer(), nullable=True),
    sa.CheckConstraint("indication IN ('fat_reduction', 'skin_rejuvenation', 'hair_loss', 'other')", name=op.f('ck_formulas_indication_known')),
    sa.CheckConstraint("route IN ('intradermal', 'subcutaneous')", name=op.f('ck_formulas_route_known')),
    sa.CheckConstraint("status IN ('draft', 'approved', 'retired')", name=op.f('ck_formulas_status_known')),
    sa.CheckConstraint('bud_hours IS NULL OR bud_hours > 0', name=op.f('ck_formulas_bud_hours_positive')),
    sa.CheckConstraint('unit_volume_ml > 0', name=op.f('ck_formulas_unit_volume_positive')),
    sa.ForeignKeyConstraint(['approved_by_id'], ['users.id'], name=op.f('fk_formulas_approved_by_id_users')),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_formulas_created_by_id_users')),
    sa.ForeignKeyConstraint(['previous_version_id'], ['formulas.id'], name=op.f('fk_formulas_previous_version_id_formulas')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_formulas')),
    sa.UniqueConstraint('code', 'version', name=op.f('uq_formulas_code_version'))
    )
    with op.batch_alter_table('formulas', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_formulas_code'), ['code'], unique=False)
        batch_op.create_index(batch_op.f('ix_formulas_status'), ['status'], unique=False)

    op.create_table('ingredient_gtins',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ingredient_id', sa.Integer(), nullable=False),
    sa.Column('gtin', sa.String(length=14), nullable=False),
    sa.ForeignKeyConstraint(['ingredient_id'], ['ingredients.id'], name=op.f('fk_ingredient_gtins_ingredient_id_ingredients')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ingredient_gtins')),
    sa.UniqueConstraint('gtin', name=op.f('uq_ingredient_gtins_gtin'))
    )
    with op.batch_alter_table('ingredient_gtins', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ingredient_gtins_ingredient_id'), ['ingredient_id'], unique=False)

    op.create_table('lots',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=12), nullable=False),
    sa.Column('ingredient_id', sa.Integer(), nullable=False),
    sa.Column('supplier', sa.String(length=120), nullable=False),
    sa.Column('supplier_lot_number', sa.String(length=60), nullable=False),
    sa.Column('gtin', sa.String(length=14), nullable=True),
    sa.Column('received_at', compounding.extensions.UTCDateTime(timezone=True), nullable=False),
    sa.Column('received_by_id', sa.Integer(), nullable=False),
    sa.Column('expires_on', sa.Date(), nullable=False),
    sa.Column('quantity_received', sa.Numeric(precision=14, scale=3), nullable=False),
    sa.Column('remaining', sa.Numeric(precision=14, scale=3), nullable=False),
    sa.Column('coa_reference', sa.String(length=120), nullable=False),
    sa.Column('location', sa.String(length=120), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('status_reason', sa.Text(), nullable=False),
    sa.Column('released_at', compounding.extensions.UTCDateTime(timezone=True), nullable=True),
    sa.Column('released_by_id', sa.Integer(), nullable=True),
    sa.CheckConstraint("status IN ('quarantine', 'released', 'rejected', 'recalled', 'depleted')", name=op.f('ck_lots_status_known')),
    sa.CheckConstraint('quantity_received > 0', name=op.f('ck_lots_quantity_received_positive')),
    sa.CheckConstraint('remaining >= 0', name=op.f('ck_lots_remaining_not_negative')),
    sa.ForeignKeyConstraint(['ingredient_id'], ['ingredients.id'], name=op.f('fk_lots_ingredient_id_ingredients')),
    sa.ForeignKeyConstraint(['received_by_id'], ['users.id'], name=op.f('fk_lots_received_by_id_users')),
    sa.ForeignKeyConstraint(['released_by_id'], ['users.id'], name=op.f('fk_lots_released_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_lots')),
    sa.UniqueConstraint('code', name=op.f('uq_lots_code')),
    sa.UniqueConstraint('ingredient_id', 'supplier', 'supplier_lot_number', name=op.f('uq_lots_ingredient_id_supplier_supplier_lot_number'))
    )
    with op.batch_alter_table('lots', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_lots_expires_on'), ['expires_on'], unique=False)
        batch_op.create_index(batch_op.f('ix_lots_gtin'), ['gtin'], unique=False)
        batch_op.create_index('ix_lots_ingredient_status_expiry', ['ingredient_id', 'status', 'expires_on'], unique=False)
        batch_op.create_index(batch_op.f('ix_lots_received_at'), ['received_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_lots_status'), ['status'], unique=False)

    op.create_table('signatures',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('signer_id', sa.Integer(), nullable=False),
    sa.Column('signer_name', sa.String(length=120), nullable=False),
    sa.Column('signed_at', compounding.extensions.UTCDateTime(timezone=True), nullable=False),
    sa.Column('meaning', sa.String(length=30), nullable=False),
    sa.Column('entity_type', sa.String(length=40), nullable=False),
    sa.Column('entity_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['signer_id'], ['users.id'], name=op.f('fk_signatures_signer_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_signatures'))
    )
    with op.batch_alter_table('signatures', schema=None) as batch_op:
        batch_op.create_index('ix_signatures_entity', ['entity_type', 'entity_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_signatures_signed_at'), ['signed_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_signatures_signer_id'), ['signer_id'], unique=False)

    op.create_table('treatment_sessions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('patient_id', sa.Integer(), nullable=False),
    sa.Column('practitioner_id', sa.Integer(), nullable=False),
    sa.Column('performed_at', compounding.extensions.UTCDateTime(timezone=True), nullable=False),
    sa.Column('indication', sa.String(length=160), nullable=False),
    sa.Column('notes', sa.Text(), nullable=False),
    sa.Column('recorded_at', compounding.extensions.UTCDateTime(timezone=True), nullable=False),
    sa.Column('voided_at', compounding.extensions.UTCDateTime(timezone=True), nullable=True),
    sa.Column('voided_by_id', sa.Integer(), nullable=True),
    sa.Column('void_reason', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_treatment_sessions_patient_id_patients')),
    sa.ForeignKeyConstraint(['practitioner_id'], ['users.id'], name=op.f('fk_treatment_sessions_practitioner_id_users')),
    sa.ForeignKeyConstraint(['voided_by_id'], ['users.id'], name=op.f('fk_treatment_sessions_voided_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_treatment_sessions'))
    )
    with op.batch_alter_table('treatment_sessions', schema=None) as batch_op:
        batch_op.create_index('ix_treatment_sessions_patient_performed', ['patient_id', 'performed_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_treatment_sessions_performed_at'), ['performed_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_treatment_sessions_practitioner_id'), ['practitioner_id'], unique=False)

    op.create_table('adverse_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('session_id', sa.Integer(), nullable=False),
    sa.Column('type', sa.String(length=30), nullable=False),
    sa.Column('severity', sa.String(length=10), nullable=False),
    sa.Column('onset_on', sa.Date(), nullable=True),
    sa.Column('outcome', sa.String(length=160), nullable=False),
    sa.Column('notes', sa.Text(), nullable=False),
    sa.Column('recorded_at', compounding.extensions.UTCDateTime(timezone=True), nullable=False),
    sa.Column('recorded_by_id', sa.Integer(), nullable=False),
    sa.CheckConstraint("severity IN ('mild', 'moderate', 'severe')", name=op.f('ck_adverse_events_severity_known')),
    sa.CheckConstraint("type IN ('redness', 'swelling', 'bruising', 'pain', 'nodule', 'infection', 'allergic_reaction', 'necrosis', 'other')", name=op.f('ck_adverse_events_type_known')),
    sa.ForeignKeyConstraint(['recorded_by_id'], ['users.id'], name=op.f('fk_adverse_events_recorded_by_id_users')),
    sa.ForeignKeyConstraint(['session_id'], ['treatment_sessions.id'], name=op.f('fk_adverse_events_session_id_treatment_sessions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_adverse_events'))
    )
    with op.batch_alter_table('adverse_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_adverse_events_recorded_at'), ['recorded_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_adverse_events_session_id'), ['session_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_adverse_events_type'), ['type'], unique=False)

    op.create_table('batches',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=16), nullable=False),
    sa.Column('formula_id', sa.Integer(), nullable=False),
    sa.Column('units', sa.Integer(), nullable=False),
    sa.Column('total_volume_ml', sa.Numeric(precision=14, scale=3), nullable=False),
    sa.Column('remaining_volume_ml', sa.Numeric(precision=14, scale=3), nullable=False),
    sa.Column('compounded_at', compounding.extensions.UTCDateTime(timezone=True), nullable=False),
    sa.Column('compounded_by_id', sa.Integer(), nullable=False),
    sa.Column('verified_at', compounding.extensions.UTCDateTime(timezone=True), nullable=True),
    sa.Column('verified_by_id', sa.Integer(), nullable=True),
    sa.Column('beyond_use_at', compounding.extensions.UTCDateTime(timezone=True), nullable=False),
    sa.Column('storage', sa.String(length=30), nullable=False),
    sa.Column('notes', sa.Text(), nullable=False),
    sa.Column('deviations', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('status_reason', sa.Text(), nullable=False),
    sa.Column('discard_reason', sa.String(length=30), nullable=True),
    sa.CheckConstraint("status IN ('prepared', 'released', 'rejected', 'recalled', 'discarded', 'depleted')", name=op.f('ck_batches_status_known')),
    sa.CheckConstraint('remaining_volume_ml <= total_volume_ml', name=op.f('ck_batches_remaining_within_total')),
    sa.CheckConstraint('remaining_volume_ml >= 0', name=op.f('ck_batches_remaining_not_negative')),
    sa.CheckConstraint('units > 0', name=op.f('ck_batches_units_positive')),
    sa.ForeignKeyConstraint(['compounded_by_id'], ['users.id'], name=op.f('fk_batches_compounded_by_id_users')),
    sa.ForeignKeyConstraint(['formula_id'], ['formulas.id'], name=op.f('fk_batches_formula_id_formulas')),
    sa.ForeignKeyConstraint(['verified_by_id'], ['users.id'], name=op.f('fk_batches_verified_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_batches')),
    sa.UniqueConstraint('code', name=op.f('uq_batches_code'))
    )
    with op.batch_alter_table('batches', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_batches_beyond_use_at'), ['beyond_use_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_batches_compounded_at'), ['compounded_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_batches_formula_id'), ['formula_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_batches_status'), ['status'], unique=False)
        batch_op.create_index('ix_batches_status_beyond_use', ['status', 'beyond_use_at'], unique=False)

    op.create_table('formula_components',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('formula_id', sa.Integer(), nullable=False),
    sa.Column('ingredient_id', sa.Integer(), nullable=False),
    sa.Column('quantity', sa.Numeric(precision=14, scale=3), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.CheckConstraint('quantity > 0', name=op.f('ck_formula_components_quantity_positive')),
    sa.ForeignKeyConstraint(['formula_id'], ['formulas.id'], name=op.f('fk_formula_components_formula_id_formulas')),
    sa.ForeignKeyConstraint(['ingredient_id'], ['ingredients.id'], name=op.f('fk_formula_components_ingredient_id_ingredients')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_formula_components')),
    sa.UniqueConstraint('formula_id', 'ingredient_id', name=op.f('uq_formula_components_formula_id_ingredient_id'))
    )
    with op.batch_alter_table('formula_components', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_formula_components_formula_id'), ['formula_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_formula_components_ingredient_id'), ['ingredient_id'], unique=False)

    op.create_table('batch_components',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('batch_id', sa.Integer(), nullable=False),
    sa.Column('lot_id', sa.Integer(), nullable=False),
    sa.Column('ingredient_id', sa.Integer(), nullable=False),
    sa.Column('theoretical_quantity', sa.Numeric(precision=14, scale=3), nullable=False),
    sa.Column('quantity', sa.Numeric(precision=14, scale=3), nullable=False),
    sa.Column('scanned', sa.Boolean(), nullable=False),
    sa.CheckConstraint('quantity > 0', name=op.f('ck_batch_components_quantity_positive')),
    sa.ForeignKeyConstraint(['batch_id'], ['batches.id'], name=op.f('fk_batch_components_batch_id_batches')),
    sa.ForeignKeyConstraint(['ingredient_id'], ['ingredients.id'], name=op.f('fk_batch_components_ingredient_id_ingredients')),
    sa.ForeignKeyConstraint(['lot_id'], ['lots.id'], name=op.f('fk_batch_components_lot_id_lots')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_batch_components'))
    )
    with op.batch_alter_table('batch_components', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_batch_components_batch_id'), ['batch_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_batch_components_lot_id'), ['lot_id'], unique=False)

    op.create_table('recalls',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('lot_id', sa.Integer(), nullable=True),
    sa.Column('batch_id', sa.Integer(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('opened_at', compounding.extensions.UTCDateTime(timezone=True), nullable=False),
    sa.Column('opened_by_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('closed_at', compounding.extensions.UTCDateTime(timezone=True), nullable=True),
    sa.Column('closed_by_id', sa.Integer(), nullable=True),
    sa.Column('outcome', sa.Text(), nullable=False),
    sa.CheckConstraint("status IN ('open', 'closed')", name=op.f('ck_recalls_status_known')),
    sa.CheckConstraint('(lot_id IS NULL) <> (batch_id IS NULL)', name=op.f('ck_recalls_exactly_one_target')),
    sa.ForeignKeyConstraint(['batch_id'], ['batches.id'], name=op.f('fk_recalls_batch_id_batches')),
    sa.ForeignKeyConstraint(['closed_by_id'], ['users.id'], name=op.f('fk_recalls_closed_by_id_users')),
    sa.ForeignKeyConstraint(['lot_id'], ['lots.id'], name=op.f('fk_recalls_lot_id_lots')),
    sa.ForeignKeyConstraint(['opened_by_id'], ['users.id'], name=op.f('fk_recalls_opened_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_recalls'))
    )
    with op.batch_alter_table('recalls', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_recalls_batch_id'), ['batch_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_recalls_lot_id'), ['lot_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_recalls_opened_at'), ['opened_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_recalls_status'), ['status'], unique=False)

    op.create_table('session_uses',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('session_id', sa.Integer(), nullable=False),
    sa.Column('batch_id', sa.Integer(), nullable=False),
    sa.Column('volume_ml', sa.Numeric(precision=14, scale=3), nullable=False),
    sa.Column('area', sa.String(length=120), nullable=False),
    sa.CheckConstraint('volume_ml > 0', name=op.f('ck_session_uses_volume_positive')),
    sa.ForeignKeyConstraint(['batch_id'], ['batches.id'], name=op.f('fk_session_uses_batch_id_batches')),
    sa.ForeignKeyConstraint(['session_id'], ['treatment_sessions.id'], name=op.f('fk_session_uses_session_id_treatment_sessions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_session_uses'))
    )
    with op.batch_alter_table('session_uses', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_session_uses_batch_id'), ['batch_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_session_uses_session_id'), ['session_id'], unique=False)

    op.create_table('stock_movements',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('lot_id', sa.Integer(), nullable=True),
    sa.Column('batch_id', sa.Integer(), nullable=True),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('quantity', sa.Numeric(precision=14, scale=3), nullable=False),
    sa.Column('balance_after', sa.Numeric(precision=14, scale=3), nullable=False),
    sa.Column('reason', sa.String(length=30), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('reference_type', sa.String(length=30), nullable=False),
    sa.Column('reference_id', sa.Integer(), nullable=True),
    sa.Column('actor_id', sa.Integer(), nullable=False),
    sa.Column('occurred_at', compounding.extensions.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("kind IN ('receive', 'consume', 'use', 'waste', 'adjust', 'return')", name=op.f('ck_stock_movements_kind_known')),
    sa.CheckConstraint('(lot_id IS NULL) <> (batch_id IS NULL)', name=op.f('ck_stock_movements_exactly_one_target')),
    sa.CheckConstraint('balance_after >= 0', name=op.f('ck_stock_movements_balance_not_negative')),
    sa.CheckConstraint('quantity <> 0', name=op.f('ck_stock_movements_quantity_not_zero')),
    sa.ForeignKeyConstraint(['actor_id'], ['users.id'], name=op.f('fk_stock_movements_actor_id_users')),
    sa.ForeignKeyConstraint(['batch_id'], ['batches.id'], name=op.f('fk_stock_movements_batch_id_batches')),
    sa.ForeignKeyConstraint(['lot_id'], ['lots.id'], name=op.f('fk_stock_movements_lot_id_lots')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stock_movements'))
    )
    with op.batch_alter_table('stock_movements', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_stock_movements_batch_id'), ['batch_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_stock_movements_lot_id'), ['lot_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_stock_movements_occurred_at'), ['occurred_at'], unique=False)

    op.create_table('recall_contacts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('recall_id', sa.Integer(), nullable=False),
    sa.Column('patient_id', sa.Integer(), nullable=False),
    sa.Column('contacted_at', compounding.extensions.UTCDateTime(timezone=True), nullable=False),
    sa.Column('contacted_by_id', sa.Integer(), nullable=False),
    sa.Column('method', sa.String(length=20), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.CheckConstraint("method IN ('phone', 'email', 'in_person', 'letter', 'other')", name=op.f('ck_recall_contacts_method_known')),
    sa.ForeignKeyConstraint(['contacted_by_id'], ['users.id'], name=op.f('fk_recall_contacts_contacted_by_id_users')),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_recall_contacts_patient_id_patients')),
    sa.ForeignKeyConstraint(['recall_id'], ['recalls.id'], name=op.f('fk_recall_contacts_recall_id_recalls')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_recall_contacts')),
    sa.UniqueConstraint('recall_id', 'patient_id', name=op.f('uq_recall_contacts_recall_id_patient_id'))
    )
    with op.batch_alter_table('recall_contacts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_recall_contacts_patient_id'), ['patient_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_recall_contacts_recall_id'), ['recall_id'], unique=False)


def downgrade():
    with op.batch_alter_table('recall_contacts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_recall_contacts_recall_id'))
        batch_op.drop_index(batch_op.f('ix_recall_contacts_patient_id'))

    op.drop_table('recall_contacts')
    with op.batch_alter_table('stock_movements', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_stock_movements_occurred_at'))
        batch_op.drop_index(batch_op.f('ix_stock_movements_lot_id'))
        batch_op.drop_index(batch_op.f('ix_stock_movements_batch_id'))

    op.drop_table('stock_movements')
    with op.batch_alter_table('session_uses', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_session_uses_session_id'))
        batch_op.drop_index(batch_op.f('ix_session_uses_batch_id'))

    op.drop_table('session_uses')
    with op.batch_alter_table('recalls', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_recalls_status'))
        batch_op.drop_index(batch_op.f('ix_recalls_opened_at'))
        batch_op.drop_index(batch_op.f('ix_recalls_lot_id'))
        batch_op.drop_index(batch_op.f('ix_recalls_batch_id'))

    op.drop_table('recalls')
    with op.batch_alter_table('batch_components', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_batch_components_lot_id'))
        batch_op.drop_index(batch_op.f('ix_batch_components_batch_id'))

    op.drop_table('batch_components')
    with op.batch_alter_table('formula_components', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_formula_components_ingredient_id'))
        batch_op.drop_index(batch_op.f('ix_formula_components_formula_id'))

    op.drop_table('formula_components')
    with op.batch_alter_table('batches', schema=None) as batch_op:
        batch_op.drop_index('ix_batches_status_beyond_use')
        batch_op.drop_index(batch_op.f('ix_batches_status'))
        batch_op.drop_index(batch_op.f('ix_batches_formula_id'))
        batch_op.drop_index(batch_op.f('ix_batches_compounded_at'))
        batch_op.drop_index(batch_op.f('ix_batches_beyond_use_at'))

    op.drop_table('batches')
    with op.batch_alter_table('adverse_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_adverse_events_type'))
        batch_op.drop_index(batch_op.f('ix_adverse_events_session_id'))
        batch_op.drop_index(batch_op.f('ix_adverse_events_recorded_at'))

    op.drop_table('adverse_events')
    with op.batch_alter_table('treatment_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_treatment_sessions_practitioner_id'))
        batch_op.drop_index(batch_op.f('ix_treatment_sessions_performed_at'))
        batch_op.drop_index('ix_treatment_sessions_patient_performed')

    op.drop_table('treatment_sessions')
    with op.batch_alter_table('signatures', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_signatures_signer_id'))
        batch_op.drop_index(batch_op.f('ix_signatures_signed_at'))
        batch_op.drop_index('ix_signatures_entity')

    op.drop_table('signatures')
    with op.batch_alter_table('lots', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_lots_status'))
        batch_op.drop_index(batch_op.f('ix_lots_received_at'))
        batch_op.drop_index('ix_lots_ingredient_status_expiry')
        batch_op.drop_index(batch_op.f('ix_lots_gtin'))
        batch_op.drop_index(batch_op.f('ix_lots_expires_on'))

    op.drop_table('lots')
    with op.batch_alter_table('ingredient_gtins', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ingredient_gtins_ingredient_id'))

    op.drop_table('ingredient_gtins')
    with op.batch_alter_table('formulas', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_formulas_status'))
        batch_op.drop_index(batch_op.f('ix_formulas_code'))

    op.drop_table('formulas')
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_events_occurred_at'))
        batch_op.drop_index('ix_audit_events_entity')
        batch_op.drop_index(batch_op.f('ix_audit_events_actor_id'))
        batch_op.drop_index(batch_op.f('ix_audit_events_action'))

    op.drop_table('audit_events')
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_tokens_user_id'))

    op.drop_table('api_tokens')
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_users_role'))

    op.drop_table('users')
    with op.batch_alter_table('patients', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_patients_name'))

    op.drop_table('patients')
    with op.batch_alter_table('ingredients', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ingredients_active'))

    op.drop_table('ingredients')
    op.drop_table('code_counters')
