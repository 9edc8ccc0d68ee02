"""Test helpers shared by the test modules: settings, sign-in, query counting, audit look-ups,
and the browser journeys' sign-in and screenshots.

Imported as `testkit` (pytest puts tests/ on the path), never as `tests.testkit`: a
site-packages `tests` package would shadow `tests.` imports. Fixtures live in conftest.py and
are asked for by name; no module imports a conftest.
"""

import itertools
import os
import re
import socket
import subprocess
import tempfile
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

from compounding.extensions import db
from compounding.models.audit import POSTGRESQL_GUARDS
from compounding.models.people import insert_builtin_kinds
from compounding.models.site import insert_main_site
from compounding.services.passwords import DEMO_PASSWORD

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "sqlite://")


PASSWORD = "correct-horse-battery"
# The reason a test lot is released with no certificate of analysis attached.
NO_COA = "Certificate requested from the supplier"
AUDIT_KEY = "test-audit-key"
# Each app gets its own checkpoint file: a checkpoint of one test's trail must not judge the next.
_CHECKPOINTS = tempfile.TemporaryDirectory(prefix="audit-checkpoints-")
_checkpoint_files = itertools.count(1)
# Documents an app stores go to a folder of its own, never to the checkout's instance/.
_DOCUMENTS = tempfile.TemporaryDirectory(prefix="documents-")


def base_config(**overrides) -> dict:
    config = {
        "TESTING": True,
        "SECRET_KEY": "test-secret",
        "AUDIT_KEY": AUDIT_KEY,
        "AUDIT_CHECKPOINT_FILE": os.path.join(_CHECKPOINTS.name, f"checkpoints-{next(_checkpoint_files)}.jsonl"),
        "FILE_STORE_PATH": tempfile.mkdtemp(dir=_DOCUMENTS.name),
        "JOBS_QUEUE_PATH": os.path.join(tempfile.mkdtemp(dir=_DOCUMENTS.name), "jobs.sqlite3"),
        "SQLALCHEMY_DATABASE_URI": TEST_DATABASE_URL,
        "WTF_CSRF_ENABLED": False,
        "AUTO_MIGRATE": False,
        "CLINIC_NAME": "Test Clinic",
        "CLINIC_TIMEZONE": "Europe/London",
        # Fast hashing: the suite creates many accounts; production keeps scrypt.
        "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1000",
        "SERVER_NAME": "localhost",
        # The suite signs in hundreds of times from one address; tests of the limits turn them on.
        "RATELIMIT_ENABLED": False,
    }
    config.update(overrides)
    return config


def start_on_the_command_line(monkeypatch, command: str = "routes", **overrides):
    """Build the app as `flask --app wsgi COMMAND` does (inside the Flask command line), run COMMAND."""
    from click.testing import CliRunner
    from flask.cli import FlaskGroup

    from compounding import create_app

    monkeypatch.setenv("FLASK_RUN_FROM_CLI", "")  # the command line sets it; restored afterwards
    group = FlaskGroup(create_app=lambda: create_app(base_config(**overrides)), load_dotenv=False)
    return CliRunner().invoke(group, [command])


def sign_in(client, user, password: str = PASSWORD):
    """Sign in through the real login form."""
    response = client.post("/login", data={"username": user.username, "password": password})
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    return response


def csrf_token_from(html: str) -> str:
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html) or re.search(
        r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def submission_key_from(html: str) -> str:
    """The one-time key of the page's last POST form (compounding.idempotency)."""
    keys = re.findall(r'name="submission_key" value="([^"]+)"', html)
    assert keys, "no submission key in the page"
    return keys[-1]


_NOT_COUNTED = ("BEGIN", "UPDATE user_sessions SET last_seen_at", "UPDATE api_tokens SET last_used_at")


class QueryCounter:
    """Counts SQL statements sent to the database while active."""

    def __init__(self, engine):
        self.engine = engine
        self.statements: list[str] = []

    def _count(self, conn, cursor, statement, parameters, context, executemany):
        # Transaction control is not a query, and a session's or token's last-seen time is written
        # at most once a minute whatever the page: neither belongs in a page's query budget.
        if statement.startswith(_NOT_COUNTED):
            return
        self.statements.append(statement)

    def __enter__(self):
        sa.event.listen(self.engine, "before_cursor_execute", self._count)
        return self

    def __exit__(self, *exc):
        sa.event.remove(self.engine, "before_cursor_execute", self._count)

    @property
    def count(self) -> int:
        return len(self.statements)


def sign_in_session(client, user) -> None:
    """Sign in (or out, with None) without the form: a real server-side session, its id in the cookie."""
    from compounding.services import user_sessions

    session_id = None if user is None else user_sessions.start_session(user, client_address="127.0.0.1",
                                                                   user_agent="test client")
    with client.session_transaction() as flask_session:
        flask_session.clear()
        if session_id is not None:
            flask_session["_user_id"] = session_id
            flask_session["_fresh"] = True


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def audit_rows(action: str | None = None, entity_type: str | None = None,
               entity_id: int | None = None) -> list:
    """The audit events matching the given filters, oldest first."""
    from compounding.models import AuditEvent

    query = sa.select(AuditEvent).order_by(AuditEvent.id)
    if action is not None:
        query = query.where(AuditEvent.action == action)
    if entity_type is not None:
        query = query.where(AuditEvent.entity_type == entity_type)
    if entity_id is not None:
        query = query.where(AuditEvent.entity_id == entity_id)
    return list(db.session.scalars(query))


def count_rows(model) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(model))


_schema_ready = False


def reset_database(app) -> None:
    """An empty schema: created on SQLite in memory, truncated on PostgreSQL after the first test."""
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
            # The audit table refuses TRUNCATE; a test database starts empty anyway.
            connection.execute(sa.text("SET LOCAL session_replication_role = replica"))
            connection.execute(sa.text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
            # A test may have dropped the audit guards to play an insider: put them back.
            for name in ("audit_events_append_only", "audit_events_no_truncate"):
                connection.execute(sa.text(f"DROP TRIGGER IF EXISTS {name} ON audit_events"))
            for statement in POSTGRESQL_GUARDS:
                connection.exec_driver_sql(statement)
            # A new database starts with site MAIN (models/site.py); TRUNCATE took it away.
            insert_main_site(connection, app.config["CLINIC_TIMEZONE"])
            insert_builtin_kinds(connection)


def drop_audit_guards() -> None:
    """Remove the triggers that refuse UPDATE and DELETE on audit rows, as an insider with DDL rights could."""
    names = {"postgresql": ("audit_events_append_only", "audit_events_no_truncate"),
             "sqlite": ("audit_events_no_update", "audit_events_no_delete")}[db.engine.dialect.name]
    on_table = " ON audit_events" if db.engine.dialect.name == "postgresql" else ""
    for name in names:
        db.session.execute(sa.text(f"DROP TRIGGER IF EXISTS {name}{on_table}"))
    db.session.commit()


def age_batch(batch, delta) -> None:
    """Move a batch's making, verification and status history `delta` into the past (its BUD stays).

    For sessions dated back: a batch made by the fixtures is compounded and verified now.
    """
    from compounding.models import StatusChange

    batch.compounded_at -= delta
    if batch.verified_at is not None:
        batch.verified_at -= delta
    for row in db.session.scalars(sa.select(StatusChange).where(StatusChange.entity_type == "batch",
                                                                StatusChange.entity_id == batch.id)):
        row.changed_at -= delta
    db.session.commit()


def spoil_batch(state: str, batch, practitioner, make_patient) -> None:
    """Make a released batch unusable: "recalled", "expired" or "empty" (all 20 mL used); "prepared" stays."""
    from datetime import timedelta

    from compounding.services import treatments
    from compounding.services.clock import utcnow

    if state == "recalled":
        batch.status, batch.status_reason = "recalled", "supplier alert"
    elif state == "expired":
        age_batch(batch, timedelta(hours=3))
        batch.beyond_use_at = utcnow() - timedelta(hours=1)
    elif state == "empty":
        treatments.record_session(practitioner, patient_id=make_patient().id,
                                  uses=[{"batch_code": batch.code, "volume_ml": "10", "area": "abdomen"}] * 2)
    db.session.commit()


def lot_used_by_sessions(make_batch, make_patient, practitioner, count: int) -> int:
    """The id of a lot whose one batch (of at least 20 single-dose vials) was used by `count` sessions, 1 mL each."""
    from compounding.models import BatchComponent
    from compounding.services import treatments

    batch = make_batch(units=max(20, count))
    for _ in range(count):
        treatments.record_session(practitioner, patient_id=make_patient().id,
                                  uses=[{"batch_code": batch.code, "volume_ml": "1"}])
    return db.session.scalar(sa.select(BatchComponent.lot_id).where(BatchComponent.batch_id == batch.id).limit(1))


def fresh(model, record_id: int):
    """The record as the database holds it now, not as this session last saw it."""
    db.session.expire_all()
    return db.session.get(model, record_id)


@contextmanager
def app_on(url: str, **overrides):
    """An app of its own on the database at `url`, inside its app context; its connections closed after."""
    from compounding import create_app

    app = create_app(base_config(SQLALCHEMY_DATABASE_URI=url, **overrides))
    try:
        with app.app_context():
            yield app
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


@contextmanager
def empty_postgresql_database():
    """A throwaway database on the TEST_DATABASE_URL server, dropped afterwards."""
    server = sa.make_url(TEST_DATABASE_URL)
    name = f"migrations_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        try:
            yield server.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as connection:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


def current_revision() -> str | None:
    """The migration revision the current app's database is at (None before the first)."""
    from alembic.runtime.migration import MigrationContext

    with db.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


# An id no record has: route sweeps fill every integer part of a URL with it.
MISSING_ID = 999999


def routes(app):
    """(rule, view function) of every route but the static files."""
    for rule in app.url_map.iter_rules():
        if rule.endpoint != "static":
            yield rule, app.view_functions[rule.endpoint]


def placeholder_url(rule) -> str:
    """A URL of the rule with a value of the right type in each part: a missing id, a nil UUID, ..."""
    from werkzeug.routing import AnyConverter, IntegerConverter, UUIDConverter

    values = {}
    for name, converter in rule._converters.items():
        if isinstance(converter, IntegerConverter):
            values[name] = MISSING_ID
        elif isinstance(converter, UUIDConverter):
            values[name] = "00000000-0000-0000-0000-000000000000"
        elif isinstance(converter, AnyConverter):
            values[name] = sorted(converter.items)[0]
        else:
            values[name] = "x"
    return rule.build(values, append_unknown=False)[1]


def first_role_allowed(permission) -> str | None:
    """The first role (in ROLES order) that holds the permission; None for an open route."""
    from compounding.permissions import ROLES, role_can

    if permission is None:
        return None
    return next(role for role in ROLES if permission == "signed_in" or role_can(role, permission))


def stop_process(process, timeout: float = 15) -> None:
    """Ask a server process to stop; kill it if it will not."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def redis_answers() -> bool:
    """Whether a Redis answers PING on 127.0.0.1:6379 (the one the Redis-backed tests use)."""
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1) as connection:
            connection.sendall(b"PING\r\n")
            return connection.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def tool_missing(reason: str) -> None:
    """Skip a test whose outside tool (a browser, LibreOffice, Redis) is missing; on CI, fail it."""
    if os.environ.get("CI"):
        pytest.fail(f"CI must have every tool the suite uses, but {reason}", pytrace=False)
    pytest.skip(reason)


# --- browser journeys (tests/e2e) ---------------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
SCREENSHOTS = ROOT / "docs" / "screenshots"
VIEWPORT = {"width": 1280, "height": 800}


def fill_login(page, username: str, password: str = DEMO_PASSWORD) -> None:
    """Sign in on the login page the browser is showing; waits until it has left it."""
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/login" not in url)


_signed_in: dict[tuple[str, str], list[dict]] = {}


def login(page, username: str, password: str = DEMO_PASSWORD) -> None:
    """Be `username` in this page's browser context (any earlier user is signed out).

    The first time, through the login form (which then shows the dashboard); after that the
    session cookie it earned is reused, which saves a form and a dashboard per switch of user.
    """
    context = page.context
    context.clear_cookies()
    key = (username, password)
    if key in _signed_in:
        context.add_cookies(_signed_in[key])
        return
    page.goto("/login")
    fill_login(page, username, password)
    _signed_in[key] = context.cookies()


def forget_sign_in(username: str, password: str = DEMO_PASSWORD) -> None:
    """Drop a cached cookie whose server-side session has ended: the next login() uses the form."""
    _signed_in.pop((username, password), None)


def save_screenshot(page, name: str) -> Path:
    """A README screenshot: written into docs/screenshots when missing or when UPDATE_SCREENSHOTS=1.

    Otherwise it goes to test-artifacts/ (gitignored), so an ordinary test run leaves the
    committed images alone.
    """
    target = SCREENSHOTS / f"{name}.png"
    if target.exists() and not os.environ.get("UPDATE_SCREENSHOTS"):
        target = ARTIFACTS / "screenshots" / f"{name}.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=target)
    return target


def run_at_once(target, arguments, timeout: float = 60) -> None:
    """Run `target(*args)` for each args tuple in its own thread, all started before any is awaited.

    Fails the test if a thread is still running after `timeout` seconds (a lock never released).
    """
    threads = [threading.Thread(target=target, args=tuple(args)) for args in arguments]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(thread.is_alive() for thread in threads), "a concurrent request did not finish"


def qualify(user, *, passed_days_ago: int = 80, kinds=None) -> None:
    """Give `user` a valid pass of every required qualification kind, written directly (test set-up, no audit).

    Passed `passed_days_ago` days ago, valid for the kind's interval from then (gloved fingertip:
    its initial series of three passes at zero CFU, a day apart).
    """
    from datetime import date, timedelta

    from compounding.models import Qualification, QualificationKind
    from compounding.services.qualifications import add_months

    day = date.today() - timedelta(days=passed_days_ago)
    query = sa.select(QualificationKind).where(QualificationKind.active, QualificationKind.required)
    if kinds is not None:
        query = query.where(QualificationKind.code.in_(kinds))
    for kind in db.session.scalars(query):
        for step in range(kind.initial_passes, 0, -1):
            passed = day - timedelta(days=step - 1)
            db.session.add(Qualification(user_id=user.id, kind_id=kind.id, passed_on=passed, result="pass",
                                         cfu=0 if kind.counts_cfu else None,
                                         valid_until=add_months(passed, kind.valid_months)))
    db.session.commit()
