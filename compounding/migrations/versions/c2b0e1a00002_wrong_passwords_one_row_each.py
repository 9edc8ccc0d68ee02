"""Wrong passwords one row each, at sign-in and when signing.

Adds `auth_failures` (a row per wrong password of a known account: when, sign-in or
signature, from which address) and drops `users.failed_logins` and `users.locked_until`,
whose read-modify-write lost simultaneous failures. An account locked at the time of the
upgrade is unlocked; its next wrong passwords are counted afresh.

Revision ID: c2b0e1a00002
Revises: c2b0e1a00003
Create Date: 2026-12-06 23:00:00

"""
import sqlalchemy as sa
from alembic import op

import compounding.extensions

# revision identifiers, used by Alembic.
revision = 'c2b0e1a00002'
down_revision = 'c2b0e1a00003'
branch_labels = None
depends_on = None

UTC_DATETIME = compounding.extensions.UTCDateTime(timezone=True)


def _sqlite_foreign_keys(on: bool) -> None:
    """SQLite rebuilds `users` to drop a column, which its children's foreign keys would refuse.

    PRAGMA foreign_keys cannot change inside a transaction: it is switched between two.
    """
    if op.get_bind().dialect.name == 'sqlite':
        with op.get_context().autocommit_block():
            op.execute(f"PRAGMA foreign_keys = {'ON' if on else 'OFF'}")


def upgrade():
    op.create_table('auth_failures',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('occurred_at', UTC_DATETIME, nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('client_address', sa.String(length=64), nullable=True),
    sa.CheckConstraint("kind IN ('login', 'signature')", name=op.f('ck_auth_failures_kind_known')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_auth_failures_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_auth_failures'))
    )
    with op.batch_alter_table('auth_failures', schema=None) as batch_op:
        batch_op.create_index('ix_auth_failures_user_id_occurred_at', ['user_id', 'occurred_at'], unique=False)

    _sqlite_foreign_keys(False)
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('locked_until')
        batch_op.drop_column('failed_logins')
    _sqlite_foreign_keys(True)


def downgrade():
    _sqlite_foreign_keys(False)
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('failed_logins', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('locked_until', UTC_DATETIME, nullable=True))
    _sqlite_foreign_keys(True)

    with op.batch_alter_table('auth_failures', schema=None) as batch_op:
        batch_op.drop_index('ix_auth_failures_user_id_occurred_at')
    op.drop_table('auth_failures')
