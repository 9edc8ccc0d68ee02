"""Sign-in throttled by client address and by account, with one answer for every refusal."""

import re
import threading
import uuid

import pytest
import sqlalchemy as sa
from testkit import (
    PASSWORD,
    TEST_DATABASE_URL,
    audit_rows,
    base_config,
    redis_answers,
    reset_database,
    run_at_once,
    tool_missing,
)

from compounding import config, create_app
from compounding.extensions import db
from compounding.models import AuthFailure, User
from compounding.services import signatures, users
from compounding.services.errors import DomainError

REFUSED = users.SIGN_IN_REFUSED
WRONG = "wrong-password-9"
LIMITS_ON = {"RATELIMIT_ENABLED": True}


def _login(client, username, password):
    return client.post("/login", data={"username": username, "password": password})


def _failures(user_id: int) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(AuthFailure)
                             .where(AuthFailure.user_id == user_id))


def _page(response, username: str) -> str:
    """The page as a visitor sees it, less the name they typed and the form's one-time key."""
    page = response.get_data(as_text=True).replace(username, "NAME")
    return re.sub(r'name="submission_key" value="[^"]+"', 'name="submission_key"', page)


# --- one answer ---------------------------------------------------------------------------


def test_a_wrong_password_an_unknown_user_and_a_paused_account_get_the_same_answer(client, make_user):
    user = make_user("pharmacist")
    wrong = _login(client, user.username, WRONG)
    unknown = _login(client, "nobody-here", WRONG)
    for _ in range(4):
        _login(client, user.username, WRONG)
    paused = _login(client, user.username, PASSWORD)

    assert wrong.status_code == unknown.status_code == paused.status_code == 422
    assert REFUSED in paused.get_data(as_text=True)
    assert "lock" not in paused.get_data(as_text=True).split("<form")[1].lower()
    assert _page(wrong, user.username) == _page(unknown, "nobody-here") == _page(paused, user.username)
    assert client.get("/").status_code == 302


def test_no_wrong_password_is_counted_for_an_unknown_username(client):
    _login(client, "nobody-here", WRONG)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(AuthFailure)) == 0


# --- simultaneous guesses -------------------------------------------------------------------------


@pytest.fixture
def threaded_app(tmp_path):
    """An app whose database several threads can reach at once (SQLite in memory has one connection)."""
    url = TEST_DATABASE_URL if not TEST_DATABASE_URL.startswith("sqlite") else f"sqlite:///{tmp_path / 'db.sqlite'}"
    app = create_app(base_config(SQLALCHEMY_DATABASE_URI=url))
    reset_database(app)
    yield app
    with app.app_context():
        db.engine.dispose()


def test_simultaneous_wrong_passwords_are_each_counted_and_pause_the_account(threaded_app):
    with threaded_app.app_context():
        user_id = users.create_user(None, username="target", display_name="Target", role="pharmacist",
                                    password=PASSWORD).id
    attempts_at_once = 10
    start = threading.Barrier(attempts_at_once)
    statuses = []

    def guess(n):
        client = threaded_app.test_client()
        start.wait()
        statuses.append(_login(client, "target", f"{WRONG}-{n}").status_code)

    run_at_once(guess, [(n,) for n in range(attempts_at_once)])

    with threaded_app.app_context():
        assert statuses == [422] * attempts_at_once
        # Checked one at a time: the first five were counted, then the account waited.
        assert _failures(user_id) == 5
        assert len(audit_rows("user.password_attempts_paused", "user", user_id)) == 1
        assert _login(threaded_app.test_client(), "target", PASSWORD).status_code == 422


# --- per client address -----------------------------------------------------------------------


@pytest.mark.parametrize("config_overrides", [{**LIMITS_ON, "LOGIN_RATE_LIMIT": "3 per minute"}], indirect=True)
def test_a_flood_from_one_address_gets_429_before_any_password_is_checked(client, make_user):
    user = make_user("pharmacist")
    for _ in range(3):
        assert _login(client, user.username, WRONG).status_code == 422

    known = _login(client, user.username, PASSWORD)
    unknown = _login(client, "nobody-here", PASSWORD)

    assert known.status_code == unknown.status_code == 429
    assert _page(known, user.username) == _page(unknown, "nobody-here")
    assert "Too many sign-in attempts from your address" in known.get_data(as_text=True)
    assert _failures(user.id) == 3
    assert client.get("/").status_code == 302
    other_address = _login_from(client, "10.0.0.8", user.username, PASSWORD)
    assert other_address.status_code == 302


def _login_from(client, address, username, password):
    return client.post("/login", data={"username": username, "password": password},
                       environ_base={"REMOTE_ADDR": address})


@pytest.mark.parametrize("config_overrides", [{**LIMITS_ON, "LOGIN_FAILURE_RATE_LIMIT": "2 per 15 minutes"}],
                         indirect=True)
def test_refused_sign_ins_from_one_address_are_limited_and_good_ones_are_not(client, make_user):
    user = make_user("pharmacist")
    for _ in range(4):
        assert _login(client, user.username, PASSWORD).status_code == 302
        client.post("/logout")
    assert _login(client, "nobody-1", WRONG).status_code == 422
    assert _login(client, "nobody-2", WRONG).status_code == 422

    assert _login(client, user.username, PASSWORD).status_code == 429


@pytest.mark.parametrize("config_overrides", [LIMITS_ON], indirect=True)
def test_one_client_cannot_pause_every_account(client, make_user):
    staff = [make_user(role) for role in ("admin", "pharmacist", "pharmacist", "technician", "practitioner",
                                          "practitioner")]
    for user in staff:
        for _ in range(5):
            _login(client, user.username, WRONG)

    paused = [user for user in staff if _failures(user.id) >= 5]
    assert len(paused) <= 2
    assert staff[-1] not in paused
    assert _login_from(client, "10.0.0.9", staff[-1].username, PASSWORD).status_code == 302


# --- storage ------------------------------------------------------------------------------------


def test_the_limit_store_is_memory_unless_redis_is_named():
    assert config.rate_limit_storage({}) == "memory://"
    assert config.rate_limit_storage({"REDIS_URL": "redis://cache:6379/2"}) == "redis://cache:6379/2"
    assert config.rate_limit_storage({"REDIS_URL": "redis://a", "RATELIMIT_STORAGE_URI": "redis://b"}) == "redis://b"


@pytest.fixture
def redis_address():
    """A client address of this test's own, so its counts in the shared Redis are its own."""
    if not redis_answers():
        tool_missing("Redis is not answering on 127.0.0.1:6379 (.ci/run starts it)")
    import redis

    address = f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"
    yield address
    connection = redis.Redis(host="127.0.0.1", port=6379)
    for key in connection.scan_iter(f"*/{address}/*"):
        connection.delete(key)


def test_with_redis_the_count_per_address_is_shared_by_every_worker(redis_address):
    settings = {**LIMITS_ON, "LOGIN_RATE_LIMIT": "2 per minute", "RATELIMIT_STORAGE_URI": "redis://127.0.0.1:6379/0"}
    first_worker = create_app(base_config(**settings))
    reset_database(first_worker)
    for _ in range(2):
        assert _login_from(first_worker.test_client(), redis_address, "nobody-here", WRONG).status_code == 422

    second_worker = create_app(base_config(**settings))
    reset_database(second_worker)

    with second_worker.app_context():
        assert _login_from(second_worker.test_client(), redis_address, "nobody-here", WRONG).status_code == 429
        db.engine.dispose()
    with first_worker.app_context():
        db.engine.dispose()


def test_in_memory_a_new_worker_starts_counting_afresh():
    """The contrast that makes the Redis test meaningful: memory is per process."""
    settings = {**LIMITS_ON, "LOGIN_RATE_LIMIT": "2 per minute"}
    first_worker = create_app(base_config(**settings))
    reset_database(first_worker)
    address = f"10.{uuid.uuid4().int % 250}.0.1"
    for _ in range(2):
        assert _login_from(first_worker.test_client(), address, "nobody-here", WRONG).status_code == 422
    second_worker = create_app(base_config(**settings))
    reset_database(second_worker)
    with second_worker.app_context():
        assert _login_from(second_worker.test_client(), address, "nobody-here", WRONG).status_code == 422
        db.engine.dispose()
    with first_worker.app_context():
        db.engine.dispose()


def test_users_table_keeps_no_counter_to_lose_updates_on():
    assert "failed_logins" not in User.__table__.c


def test_simultaneous_wrong_signatures_are_checked_one_at_a_time_and_pause_the_account(threaded_app):
    with threaded_app.app_context():
        user_id = users.create_user(None, username="signer", display_name="Signer", role="pharmacist",
                                    password=PASSWORD).id
    attempts_at_once = 10
    start = threading.Barrier(attempts_at_once)
    statuses = []

    def sign_wrong(n):
        # A POST's context, as the API gives it: on SQLite its transaction takes the write lock.
        with threaded_app.test_request_context("/api/v1/batches/1/verify", method="POST"):
            start.wait()
            try:
                signatures.sign(db.session.get(User, user_id), f"{WRONG}-{n}", "verified", "batch", 1)
            except DomainError as exc:
                statuses.append(exc.status_code)
            finally:
                db.session.remove()

    run_at_once(sign_wrong, [(n,) for n in range(attempts_at_once)])

    with threaded_app.app_context():
        assert statuses == [403] * attempts_at_once
        # Each check saw the ones before it: five passwords checked, five refused unread.
        assert _failures(user_id) == 5
        assert len(audit_rows("signature.refused")) == 5
        assert len(audit_rows("signature.blocked")) == 5
        assert len(audit_rows("user.password_attempts_paused", "user", user_id)) == 1
