"""Printed names unique among active accounts.

`display_name_key` is the folded printed name (no surrounding or doubled spaces, case or
accents); a partial unique index keeps it unique among active accounts, so a signature's
name names one person. Existing active accounts whose names fold alike are listed and the
upgrade stops: which of two people should be renamed (or deactivated) is the clinic's
decision, not the migration's.

Revision ID: c2b0e1a00004
Revises: c2b0e1a00002
Create Date: 2026-12-06 23:20:00

"""
import unicodedata
from collections import defaultdict

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = 'c2b0e1a00004'
down_revision = 'c2b0e1a00002'
branch_labels = None
depends_on = None

_USERS = sa.table("users", sa.column("id", sa.Integer), sa.column("username", sa.String),
                  sa.column("display_name", sa.String), sa.column("active", sa.Boolean),
                  sa.column("display_name_key", sa.String))


def _fold(text):
    """A frozen copy of models.patient.fold: what the keys held when this migration ran."""
    decomposed = unicodedata.normalize("NFKD", text or "")
    bare = "".join(char for char in decomposed if not unicodedata.combining(char))
    return " ".join(bare.casefold().split())


def _stop_on_clashes(connection):
    """Raise, listing them, when active accounts' printed names fold alike; before any change of schema."""
    by_key = defaultdict(list)
    rows = connection.execute(sa.select(_USERS.c.id, _USERS.c.username, _USERS.c.display_name)
                              .where(_USERS.c.active.is_(True)).order_by(_USERS.c.id))
    for row in rows:
        by_key[_fold(row.display_name)].append(row)
    clashes = [found for found in by_key.values() if len(found) > 1]
    if clashes:
        listed = "; ".join(", ".join(f"{row.display_name!r} (user {row.username}, id {row.id})" for row in found)
                           for found in clashes)
        raise RuntimeError("Active accounts share a printed name (ignoring case, spaces and accents): rename or "
                           f"deactivate one of each before this upgrade: {listed}")


def _sqlite_foreign_keys(on: bool) -> None:
    """SQLite rebuilds `users` to make the column NOT NULL, which every table naming a user would refuse.

    PRAGMA foreign_keys cannot change inside a transaction: it is switched between two.
    """
    if op.get_bind().dialect.name == 'sqlite':
        with op.get_context().autocommit_block():
            op.execute(f"PRAGMA foreign_keys = {'ON' if on else 'OFF'}")


def upgrade():
    _stop_on_clashes(op.get_bind())
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('display_name_key', sa.String(length=120), nullable=True))
    connection = op.get_bind()
    for row in connection.execute(sa.select(_USERS.c.id, _USERS.c.display_name)).all():
        connection.execute(_USERS.update().where(_USERS.c.id == row.id)
                           .values(display_name_key=_fold(row.display_name)))
    _sqlite_foreign_keys(False)
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.alter_column('display_name_key', existing_type=sa.String(length=120), nullable=False)
        batch_op.create_index('uq_users_display_name_key_active', ['display_name_key'], unique=True,
                              sqlite_where=sa.text('active'), postgresql_where=sa.text('active'))
    _sqlite_foreign_keys(True)


def downgrade():
    _sqlite_foreign_keys(False)
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_index('uq_users_display_name_key_active')
        batch_op.drop_column('display_name_key')
    _sqlite_foreign_keys(True)
