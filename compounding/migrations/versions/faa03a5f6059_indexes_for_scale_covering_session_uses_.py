"""Indexes for scale: uses by batch, sessions by time, batches by status and time, voided sessions.

Trace, recall and the quality signals read a batch's sessions and volumes from the new index
alone; it replaces the index on batch_id, its leading column. The session list's pages are
found on (performed_at, id), which replaces the index on performed_at. Voided sessions are
found through a partial index holding only them. Batches by (status, compounded_at) answer
"awaiting verification, oldest first" without reading every batch; the index on status alone
goes (both composite indexes lead with it).

Revision ID: faa03a5f6059
Revises: db7b8b261455
Create Date: 2026-11-27 04:58:52.946905

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = 'faa03a5f6059'
down_revision = 'db7b8b261455'
branch_labels = None
depends_on = None

VOIDED = sa.text('voided_at IS NOT NULL')


def upgrade():
    op.create_index('ix_session_uses_batch_session', 'session_uses', ['batch_id', 'session_id', 'volume_ml'])
    op.drop_index('ix_session_uses_batch_id', table_name='session_uses')
    op.create_index('ix_treatment_sessions_performed_id', 'treatment_sessions', ['performed_at', 'id'])
    op.drop_index('ix_treatment_sessions_performed_at', table_name='treatment_sessions')
    op.create_index('ix_treatment_sessions_voided', 'treatment_sessions', ['voided_at'],
                    sqlite_where=VOIDED, postgresql_where=VOIDED)
    op.create_index('ix_batches_status_compounded', 'batches', ['status', 'compounded_at'])
    op.drop_index('ix_batches_status', table_name='batches')


def downgrade():
    op.create_index('ix_batches_status', 'batches', ['status'])
    op.drop_index('ix_batches_status_compounded', table_name='batches')
    op.drop_index('ix_treatment_sessions_voided', table_name='treatment_sessions')
    op.create_index('ix_treatment_sessions_performed_at', 'treatment_sessions', ['performed_at'])
    op.drop_index('ix_treatment_sessions_performed_id', table_name='treatment_sessions')
    op.create_index('ix_session_uses_batch_id', 'session_uses', ['batch_id'])
    op.drop_index('ix_session_uses_batch_session', table_name='session_uses')
