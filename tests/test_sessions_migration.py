"""The migration of revision c2b0e1a00001: existing API tokens expire 90 days after their creation."""

from datetime import UTC, datetime, timedelta

import flask_migrate
import sqlalchemy as sa
from testkit import app_on

from compounding.extensions import UTCDateTime, db, migrate
from compounding.models import ApiToken

BEFORE = "b1a0d5e70001"
CREATED = datetime(2026, 10, 1, 9, 30, tzinfo=UTC)


def test_existing_tokens_keep_their_name_and_expire_ninety_days_after_creation(empty_database_url):  # noqa: F811
    with app_on(empty_database_url):
        flask_migrate.upgrade(directory=migrate.directory, revision=BEFORE)
        users = sa.table("users", sa.column("id"), sa.column("username"), sa.column("display_name"),
                         sa.column("role"), sa.column("password_hash"), sa.column("active"),
                         sa.column("must_change_password"), sa.column("created_at", UTCDateTime()))
        tokens = sa.table("api_tokens", sa.column("user_id"), sa.column("name"), sa.column("token_hash"),
                          sa.column("prefix"), sa.column("created_at", UTCDateTime()))
        with db.engine.begin() as connection:
            connection.execute(sa.insert(users).values(
                id=1, username="tom", display_name="Tom", role="technician", password_hash="x", active=True,
                must_change_password=False, created_at=CREATED))
            connection.execute(sa.insert(tokens).values(
                user_id=1, name="scanner", token_hash="a" * 64, prefix="ct_abcdefg",
                created_at=CREATED))
        flask_migrate.upgrade(directory=migrate.directory)
        row = db.session.scalar(sa.select(ApiToken))
        assert (row.name, row.expires_at, row.revoked_at) == ("scanner", CREATED + timedelta(days=90), None)
