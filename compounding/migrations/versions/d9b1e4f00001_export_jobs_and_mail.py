"""Work in the background and mail (DESIGN 10.7).

- `export_jobs`: a workbook asked for, its progress, and where the finished file is kept until
  it expires; at most one queued or running job per identical request (a partial unique index).
- `mail_messages`: each digest e-mail, kept before it is sent and retried until it goes.
- `users.email`: where a person's digest goes.
- The downgrade refuses once either table holds a row or a user has an address.

Revision ID: d9b1e4f00001
Revises: c8e0a2f00001
Create Date: 2026-12-07 22:58:32.472703

"""
from alembic import op
import sqlalchemy as sa

import compounding.extensions


# revision identifiers, used by Alembic.
revision = 'd9b1e4f00001'
down_revision = 'c8e0a2f00001'
branch_labels = None
depends_on = None


def _sqlite_foreign_keys(on: bool) -> None:
    """SQLite rebuilds `users` to drop a column, which its children's foreign keys would refuse. PRAGMA
    foreign_keys cannot change inside a transaction: it is switched between two."""
    if op.get_bind().dialect.name == 'sqlite':
        with op.get_context().autocommit_block():
            op.execute(f"PRAGMA foreign_keys = {'ON' if on else 'OFF'}")


def upgrade():
    op.create_table('export_jobs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('params', sa.Text(), nullable=False),
    sa.Column('request_key', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('requested_by_id', sa.Integer(), nullable=False),
    sa.Column('requested_at', compounding.extensions.UTCDateTime(timezone=True), nullable=False),
    sa.Column('enqueued_at', compounding.extensions.UTCDateTime(timezone=True), nullable=False),
    sa.Column('started_at', compounding.extensions.UTCDateTime(timezone=True), nullable=True),
    sa.Column('heartbeat_at', compounding.extensions.UTCDateTime(timezone=True), nullable=True),
    sa.Column('finished_at', compounding.extensions.UTCDateTime(timezone=True), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('rows_written', sa.Integer(), nullable=False),
    sa.Column('rows_expected', sa.Integer(), nullable=True),
    sa.Column('error', sa.Text(), nullable=False),
    sa.Column('filename', sa.String(length=255), nullable=False),
    sa.Column('store', sa.String(length=10), nullable=True),
    sa.Column('storage_key', sa.String(length=255), nullable=True),
    sa.Column('size', sa.Integer(), nullable=True),
    sa.Column('sha256', sa.String(length=64), nullable=True),
    sa.Column('expires_at', compounding.extensions.UTCDateTime(timezone=True), nullable=True),
    sa.Column('expired_at', compounding.extensions.UTCDateTime(timezone=True), nullable=True),
    sa.Column('file_deleted_at', compounding.extensions.UTCDateTime(timezone=True), nullable=True),
    sa.Column('identified', sa.Boolean(), nullable=False),
    sa.Column('site_ids', sa.Text(), nullable=True),
    sa.CheckConstraint("kind IN ('audit', 'trace', 'recall', 'lots', 'batches', 'sessions')", name=op.f('ck_export_jobs_kind_known')),
    sa.CheckConstraint("status IN ('queued', 'running', 'done', 'failed', 'expired')", name=op.f('ck_export_jobs_status_known')),
    sa.CheckConstraint('attempts >= 0', name=op.f('ck_export_jobs_attempts_not_negative')),
    sa.CheckConstraint('rows_written >= 0', name=op.f('ck_export_jobs_rows_written_not_negative')),
    sa.ForeignKeyConstraint(['requested_by_id'], ['users.id'], name=op.f('fk_export_jobs_requested_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_export_jobs'))
    )
    with op.batch_alter_table('export_jobs', schema=None) as batch_op:
        batch_op.create_index('ix_export_jobs_requester', ['requested_by_id', 'id'], unique=False)
        batch_op.create_index('ix_export_jobs_status', ['status', 'id'], unique=False)
        batch_op.create_index('ux_export_jobs_live_request', ['request_key'], unique=True, sqlite_where=sa.text("status IN ('queued', 'running')"), postgresql_where=sa.text("status IN ('queued', 'running')"))

    op.create_table('mail_messages',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.Column('digest_date', sa.Date(), nullable=False),
    sa.Column('recipient_id', sa.Integer(), nullable=False),
    sa.Column('to_address', sa.String(length=254), nullable=False),
    sa.Column('subject', sa.String(length=200), nullable=False),
    sa.Column('body_text', sa.Text(), nullable=False),
    sa.Column('body_html', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=False),
    sa.Column('last_attempt_at', compounding.extensions.UTCDateTime(timezone=True), nullable=True),
    sa.Column('next_attempt_at', compounding.extensions.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', compounding.extensions.UTCDateTime(timezone=True), nullable=False),
    sa.Column('sent_at', compounding.extensions.UTCDateTime(timezone=True), nullable=True),
    sa.CheckConstraint("kind IN ('digest')", name=op.f('ck_mail_messages_kind_known')),
    sa.CheckConstraint("status IN ('pending', 'sending', 'sent', 'failed', 'cancelled', 'superseded')",
                       name=op.f('ck_mail_messages_status_known')),
    sa.ForeignKeyConstraint(['recipient_id'], ['users.id'], name=op.f('fk_mail_messages_recipient_id_users')),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_mail_messages_site_id_sites')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_mail_messages')),
    sa.UniqueConstraint('kind', 'site_id', 'digest_date', 'recipient_id', name='uq_mail_messages_digest')
    )
    with op.batch_alter_table('mail_messages', schema=None) as batch_op:
        batch_op.create_index('ix_mail_messages_status', ['status', 'id'], unique=False)

    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('email', sa.String(length=254), nullable=True))



def downgrade():
    bind = op.get_bind()
    for table in ('export_jobs', 'mail_messages'):
        if bind.execute(sa.text(f'SELECT 1 FROM {table} LIMIT 1')).first():
            raise RuntimeError(f'{table} holds records: downgrading would lose them.')
    if bind.execute(sa.text('SELECT 1 FROM users WHERE email IS NOT NULL LIMIT 1')).first():
        raise RuntimeError("Users have e-mail addresses: downgrading would lose them.")
    _sqlite_foreign_keys(False)
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('email')
    _sqlite_foreign_keys(True)

    with op.batch_alter_table('mail_messages', schema=None) as batch_op:
        batch_op.drop_index('ix_mail_messages_status')

    op.drop_table('mail_messages')
    with op.batch_alter_table('export_jobs', schema=None) as batch_op:
        batch_op.drop_index('ux_export_jobs_live_request', sqlite_where=sa.text("status IN ('queued', 'running')"), postgresql_where=sa.text("status IN ('queued', 'running')"))
        batch_op.drop_index('ix_export_jobs_status')
        batch_op.drop_index('ix_export_jobs_requester')

    op.drop_table('export_jobs')
