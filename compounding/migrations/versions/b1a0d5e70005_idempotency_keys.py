"""One-time submission keys: forms' hidden keys and the API's Idempotency-Key, per user, for 24 h.

Only a SHA-256 of each request is kept (bodies carry passwords), with the answer to replay.

Revision ID: b1a0d5e70005
Revises: b1a0d5e70002
Create Date: 2026-12-06 20:10:00

"""
import sqlalchemy as sa
from alembic import op

import compounding.extensions

# revision identifiers, used by Alembic.
revision = 'b1a0d5e70005'
down_revision = 'b1a0d5e70002'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'idempotency_keys',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('key', sa.String(length=100), nullable=False),
        sa.Column('request_hash', sa.String(length=64), nullable=False),
        sa.Column('state', sa.String(length=12), nullable=False),
        sa.Column('created_at', compounding.extensions.UTCDateTime(timezone=True), nullable=False),
        sa.Column('completed_at', compounding.extensions.UTCDateTime(timezone=True), nullable=True),
        sa.Column('response_status', sa.Integer(), nullable=True),
        sa.Column('response_type', sa.String(length=100), nullable=True),
        sa.Column('response_body', sa.Text(), nullable=True),
        sa.Column('response_location', sa.String(length=2000), nullable=True),
        sa.CheckConstraint("state IN ('in_flight', 'done')", name=op.f('ck_idempotency_keys_state_known')),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_idempotency_keys_user_id_users')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_idempotency_keys')),
        sa.UniqueConstraint('user_id', 'key', name='uq_idempotency_keys_user_id_key'),
    )
    with op.batch_alter_table('idempotency_keys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_idempotency_keys_created_at'), ['created_at'], unique=False)


def downgrade():
    with op.batch_alter_table('idempotency_keys', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_idempotency_keys_created_at'))
    op.drop_table('idempotency_keys')
