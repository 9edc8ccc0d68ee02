"""Server-side sign-in sessions; API tokens that expire and can be revoked.

Adds `user_sessions` (one row per sign-in; the cookie carries a random id whose SHA-256 is
stored). API tokens gain `expires_at` (existing tokens: created_at + 90 days), who revoked
them and why. Cookies issued before this migration name no session row, so everyone signs
in again once.

Revision ID: c2b0e1a00001
Revises: c2b0e1a00004
Create Date: 2026-12-06 23:00:00

"""
from datetime import timedelta

import sqlalchemy as sa
from alembic import op

import compounding.extensions

# revision identifiers, used by Alembic.
revision = 'c2b0e1a00001'
down_revision = 'c2b0e1a00004'
branch_labels = None
depends_on = None

UTC_DATETIME = compounding.extensions.UTCDateTime(timezone=True)
EXISTING_TOKEN_DAYS = 90


def upgrade():
    op.create_table(
        'user_sessions',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('created_at', UTC_DATETIME, nullable=False),
        sa.Column('last_seen_at', UTC_DATETIME, nullable=False),
        sa.Column('ended_at', UTC_DATETIME, nullable=True),
        sa.Column('ended_reason', sa.String(length=30), nullable=True),
        sa.Column('client_address', sa.String(length=64), nullable=True),
        sa.Column('user_agent', sa.String(length=200), nullable=True),
        sa.CheckConstraint(
            "ended_reason IN ('logout', 'password_changed', 'password_reset', 'deactivated', "
            "'signed_out_everywhere', 'idle', 'restored')",
            name=op.f('ck_user_sessions_ended_reason_known')),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_user_sessions_user_id_users')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_user_sessions')),
        sa.UniqueConstraint('token_hash', name=op.f('uq_user_sessions_token_hash')),
    )
    with op.batch_alter_table('user_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_user_sessions_user_id'), ['user_id'], unique=False)

    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('expires_at', UTC_DATETIME, nullable=True))
        batch_op.add_column(sa.Column('revoked_by_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('revoked_reason', sa.String(length=30), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_api_tokens_revoked_by_id_users'), 'users',
                                    ['revoked_by_id'], ['id'])
    tokens = sa.table('api_tokens', sa.column('id', sa.Integer()), sa.column('created_at', UTC_DATETIME),
                      sa.column('expires_at', UTC_DATETIME))
    bind = op.get_bind()
    for token_id, created_at in bind.execute(sa.select(tokens.c.id, tokens.c.created_at)).all():
        bind.execute(sa.update(tokens).where(tokens.c.id == token_id)
                     .values(expires_at=created_at + timedelta(days=EXISTING_TOKEN_DAYS)))
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.alter_column('expires_at', existing_type=UTC_DATETIME, nullable=False)


def downgrade():
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_api_tokens_revoked_by_id_users'), type_='foreignkey')
        batch_op.drop_column('revoked_reason')
        batch_op.drop_column('revoked_by_id')
        batch_op.drop_column('expires_at')
    with op.batch_alter_table('user_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_user_sessions_user_id'))
    op.drop_table('user_sessions')
