"""Lots by (expires_on, id): the lot list's default order, read off the index alone.

A deep page of the lot list picks its ids on the index (an index-only scan on PostgreSQL)
instead of sorting every lot. It replaces the index on expires_on, its leading column.

Revision ID: 3c1e9a7d2b40
Revises: faa03a5f6059
Create Date: 2026-11-27 08:40:00

"""
from alembic import op

# revision identifiers, used by Alembic.
revision = '3c1e9a7d2b40'
down_revision = 'faa03a5f6059'
branch_labels = None
depends_on = None


def upgrade():
    op.create_index('ix_lots_expires_on_id', 'lots', ['expires_on', 'id'])
    op.drop_index('ix_lots_expires_on', table_name='lots')


def downgrade():
    op.create_index('ix_lots_expires_on', 'lots', ['expires_on'])
    op.drop_index('ix_lots_expires_on_id', table_name='lots')
