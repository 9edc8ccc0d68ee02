"""Patients: chart numbers unique ignoring case and spaces, accent-free search, access log.

`chart_key` and `name_key` are the folded chart number and name (no surrounding spaces,
case or accents). Existing chart numbers that fold alike are listed and the upgrade stops:
which of two records is the real patient is a clinic's decision, not the migration's.
`patient_access_log` records who saw or exported patient data.

Revision ID: b1a0d5e70004
Revises: 3c1e9a7d2b40
Create Date: 2026-12-06 20:10:00

"""
import unicodedata
from collections import defaultdict

import sqlalchemy as sa
from alembic import op

import compounding.extensions

# revision identifiers, used by Alembic.
revision = 'b1a0d5e70004'
down_revision = '3c1e9a7d2b40'
branch_labels = None
depends_on = None


def _fold(text):
    """A frozen copy of models.patient.fold: what the keys held when this migration ran."""
    decomposed = unicodedata.normalize("NFKD", text or "")
    bare = "".join(char for char in decomposed if not unicodedata.combining(char))
    return " ".join(bare.casefold().split())


_PATIENTS = sa.table("patients", sa.column("id", sa.Integer), sa.column("chart_number", sa.String),
                     sa.column("name", sa.String), sa.column("chart_key", sa.String),
                     sa.column("name_key", sa.String))


def _stop_on_collisions(connection):
    """Raise, listing them, when existing chart numbers fold alike; before any change of schema."""
    by_key = defaultdict(list)
    for row in connection.execute(sa.select(_PATIENTS.c.id, _PATIENTS.c.chart_number).order_by(_PATIENTS.c.id)):
        by_key[_fold(row.chart_number)].append(row)
    collisions = [found for found in by_key.values() if len(found) > 1]
    if collisions:
        listed = "; ".join(", ".join(f"{row.chart_number!r} (patient {row.id})" for row in found)
                           for found in collisions)
        raise RuntimeError("Chart numbers that differ only by case or surrounding spaces must be merged or "
                           f"renumbered before this upgrade: {listed}")


def _backfill_keys(connection):
    for row in connection.execute(sa.select(_PATIENTS.c.id, _PATIENTS.c.chart_number, _PATIENTS.c.name)).all():
        connection.execute(_PATIENTS.update().where(_PATIENTS.c.id == row.id)
                           .values(chart_key=_fold(row.chart_number), name_key=_fold(row.name)))


def upgrade():
    _stop_on_collisions(op.get_bind())
    with op.batch_alter_table('patients', schema=None) as batch_op:
        batch_op.add_column(sa.Column('chart_key', sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column('name_key', sa.String(length=160), nullable=True))
    _backfill_keys(op.get_bind())
    with op.batch_alter_table('patients', schema=None) as batch_op:
        batch_op.alter_column('chart_key', existing_type=sa.String(length=40), nullable=False)
        batch_op.alter_column('name_key', existing_type=sa.String(length=160), nullable=False)
        batch_op.create_index(batch_op.f('ix_patients_chart_key'), ['chart_key'], unique=True)
        batch_op.create_index('ix_patients_name_key_birth_on', ['name_key', 'birth_on'], unique=False)

    op.create_table('patient_access_log',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('occurred_at', compounding.extensions.UTCDateTime(timezone=True), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('user_name', sa.String(length=120), nullable=False),
    sa.Column('role', sa.String(length=20), nullable=False),
    sa.Column('action', sa.String(length=40), nullable=False),
    sa.Column('patient_id', sa.Integer(), nullable=True),
    sa.Column('target_type', sa.String(length=40), nullable=False),
    sa.Column('target_id', sa.Integer(), nullable=True),
    sa.Column('detail', sa.String(length=500), nullable=False),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_patient_access_log_patient_id_patients')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_patient_access_log_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_patient_access_log'))
    )
    with op.batch_alter_table('patient_access_log', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_patient_access_log_occurred_at'), ['occurred_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_patient_access_log_patient_id'), ['patient_id'], unique=False)
        batch_op.create_index('ix_patient_access_log_target', ['target_type', 'target_id'], unique=False)
        batch_op.create_index('ix_patient_access_log_user_id_occurred_at', ['user_id', 'occurred_at'],
                              unique=False)


def downgrade():
    op.drop_table('patient_access_log')
    with op.batch_alter_table('patients', schema=None) as batch_op:
        batch_op.drop_index('ix_patients_name_key_birth_on')
        batch_op.drop_index(batch_op.f('ix_patients_chart_key'))
        batch_op.drop_column('name_key')
        batch_op.drop_column('chart_key')
