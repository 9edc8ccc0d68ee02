"""Accounts: the list an administrator manages, and who may be picked in a filter."""

import sqlalchemy as sa

from ..extensions import db
from ..models import User


def user_list_query(role: str = ""):
    """Accounts, active ones first, by username; of one role when `role` is given."""
    query = sa.select(User).order_by(User.active.desc(), User.username)
    return query.where(User.role == role) if role else query


def account_names() -> list:
    """(id, display_name, role) of every account, by name."""
    return db.session.execute(sa.select(User.id, User.display_name, User.role).order_by(User.display_name)).all()
