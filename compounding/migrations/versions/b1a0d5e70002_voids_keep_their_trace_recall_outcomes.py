"""Voids keep their trace (a reason code, a patient correction's link); recall outcomes per patient.

A voided session now has a reason code and stays in every trace and recall; a corrected
session points at the one it corrects. Recall contacts become a history of attempts per
patient, each with an outcome: the one-row-per-patient uniqueness goes, a method is only
needed for some outcomes, and every existing contact was a patient reached.

Revision ID: b1a0d5e70002
Revises: b1a0d5e70004
Create Date: 2026-12-06 20:00:00

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = 'b1a0d5e70002'
down_revision = 'b1a0d5e70004'
branch_labels = None
depends_on = None

VOID_CODES = "'entered_in_error', 'wrong_patient', 'not_administered', 'duplicate'"
OUTCOMES = "'reached', 'attempt_failed', 'unreachable', 'declined', 'not_exposed'"


def upgrade():
    with op.batch_alter_table('treatment_sessions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('void_code', sa.String(length=30), nullable=True))
        batch_op.add_column(sa.Column('corrects_session_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(op.f('fk_treatment_sessions_corrects_session_id_treatment_sessions'),
                                    'treatment_sessions', ['corrects_session_id'], ['id'])
        batch_op.create_index(op.f('ix_treatment_sessions_corrects_session_id'), ['corrects_session_id'],
                              unique=False)
        batch_op.create_check_constraint(op.f('ck_treatment_sessions_void_code_known'),
                                         f"void_code IN ({VOID_CODES})")
    # Sessions voided before codes existed keep a NULL code: nobody recorded which it was.

    with op.batch_alter_table('recall_contacts', schema=None) as batch_op:
        # Every contact recorded so far ticked a patient as reached.
        batch_op.add_column(sa.Column('outcome', sa.String(length=20), nullable=False, server_default='reached'))
        batch_op.alter_column('method', existing_type=sa.String(length=20), nullable=True)
        batch_op.drop_constraint('uq_recall_contacts_recall_id_patient_id', type_='unique')
        batch_op.create_check_constraint(op.f('ck_recall_contacts_outcome_known'), f"outcome IN ({OUTCOMES})")
        batch_op.create_index('ix_recall_contacts_recall_patient', ['recall_id', 'patient_id'], unique=False)
    op.execute("UPDATE recall_contacts SET outcome = 'reached'")
    with op.batch_alter_table('recall_contacts', schema=None) as batch_op:
        batch_op.alter_column('outcome', existing_type=sa.String(length=20), existing_nullable=False,
                              server_default=None)


def downgrade():
    # Back to one row per patient: only each patient's latest contact survives.
    op.execute("DELETE FROM recall_contacts WHERE id NOT IN "
               "(SELECT MAX(id) FROM recall_contacts GROUP BY recall_id, patient_id)")
    op.execute("UPDATE recall_contacts SET method = 'other' WHERE method IS NULL")
    with op.batch_alter_table('recall_contacts', schema=None) as batch_op:
        batch_op.drop_index('ix_recall_contacts_recall_patient')
        batch_op.drop_constraint(op.f('ck_recall_contacts_outcome_known'), type_='check')
        batch_op.create_unique_constraint('uq_recall_contacts_recall_id_patient_id', ['recall_id', 'patient_id'])
        batch_op.alter_column('method', existing_type=sa.String(length=20), nullable=False)
        batch_op.drop_column('outcome')

    with op.batch_alter_table('treatment_sessions', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_treatment_sessions_void_code_known'), type_='check')
        batch_op.drop_index(op.f('ix_treatment_sessions_corrects_session_id'))
        batch_op.drop_constraint(op.f('fk_treatment_sessions_corrects_session_id_treatment_sessions'),
                                 type_='foreignkey')
        batch_op.drop_column('corrects_session_id')
        batch_op.drop_column('void_code')
