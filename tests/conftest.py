"""Fixtures: an app on a real database (SQLite in memory, or TEST_DATABASE_URL), clients, users."""

import os
import re

import pytest
import sqlalchemy as sa

from compounding import create_app
from compounding.extensions import db
from compounding.services import users

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "sqlite://")
PASSWORD = "correct-horse-battery"
_schema_ready = False


def base_config(**overrides) -> dict:
    config = {
        "TESTING": True,
        "SECRET_KEY": "test-secret",
        "SQLALCHEMY_DATABASE_URI": TEST_DATABASE_URL,
        "WTF_CSRF_ENABLED": False,
        "AUTO_MIGRATE": False,
        "CLINIC_NAME": "Test Clinic",
        "CLINIC_TIMEZONE": "Europe/London",
        # Fast hashing: the suite creates many accounts; production keeps scrypt.
        "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1000",
        "SERVER_NAME": "localhost",
    }
    config.update(overrides)
    return config


def _reset_database(app) -> None:
    global _schema_ready
    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            db.create_all()
            return
        if not _schema_ready:
            db.drop_all()
            db.create_all()
            _schema_ready = True
            return
        tables = ", ".join(t.name for t in db.metadata.sorted_tables)
        with db.engine.begin() as connection:
            connection.execute(sa.text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture
def config_overrides() -> dict:
    return {}


@pytest.fixture
def app(config_overrides):
    app = create_app(base_config(**config_overrides))
    _reset_database(app)
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def make_user(app):
    counter = {"n": 0}

    def make(role: str = "pharmacist", **overrides):
        counter["n"] += 1
        username = overrides.pop("username", f"{role}{counter['n']}")
        return users.create_user(
            None,
            username=username,
            display_name=overrides.pop("display_name", f"{role.title()} {counter['n']}"),
            role=role,
            password=overrides.pop("password", PASSWORD),
            **overrides,
        )

    return make


def sign_in(client, user, password: str = PASSWORD):
    """Sign in through the real login form."""
    response = client.post("/login", data={"username": user.username, "password": password})
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    return response


@pytest.fixture
def as_role(client, make_user):
    """A client signed in with a fresh account of the given role."""

    def login(role: str):
        user = make_user(role)
        sign_in(client, user)
        return user

    return login


def csrf_token_from(html: str) -> str:
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html) or re.search(
        r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)
