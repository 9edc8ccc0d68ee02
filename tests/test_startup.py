"""Starting the service: a web worker boots without the database; limits on connections."""

import socket
import threading

import pytest
import sqlalchemy as sa
from testkit import base_config, start_on_the_command_line

from compounding import config, create_app, database
from compounding.extensions import db
from compounding.models import AuditEvent
from compounding.services import duties


def _refused_url() -> str:
    """A PostgreSQL URL on a loopback port where nothing listens: every connection is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"postgresql+psycopg://clinic@127.0.0.1:{port}/clinic"


def test_a_web_worker_boots_without_touching_the_database(tmp_path):
    database_file = tmp_path / "clinic.db"
    create_app(base_config(SQLALCHEMY_DATABASE_URI=f"sqlite:///{database_file}", AUTO_MIGRATE=True,
                           TESTING=False))
    assert not database_file.exists()
    # A worker restarting while the database refuses connections still boots (it answers 503).
    worker = create_app(base_config(SQLALCHEMY_DATABASE_URI=_refused_url(), AUTO_MIGRATE=True, TESTING=False))
    answer = worker.test_client().get("/healthz", headers={"Accept": "application/json"})
    assert answer.status_code == 503 and int(answer.headers["Retry-After"]) > 0


def test_a_command_line_start_logs_an_unreachable_database_and_goes_on(monkeypatch, caplog):
    started = start_on_the_command_line(monkeypatch, SQLALCHEMY_DATABASE_URI=_refused_url(), AUTO_MIGRATE=True)
    assert started.exit_code == 0, started.output
    assert "/healthz" in started.output  # the command ran
    assert "Schema upgrade skipped: the database cannot be reached" in caplog.text


def test_a_web_worker_records_the_settings_at_its_first_request_not_at_boot(tmp_path):
    url = f"sqlite:///{tmp_path / 'clinic.db'}"
    setup = create_app(base_config(SQLALCHEMY_DATABASE_URI=url))
    with setup.app_context():
        db.create_all()
    worker = create_app(base_config(SQLALCHEMY_DATABASE_URI=url, TESTING=False, SECOND_PERSON_RULES="verify-only"))

    def recorded() -> list:
        with setup.app_context():
            try:
                return db.session.scalars(sa.select(AuditEvent.new_values)
                                          .where(AuditEvent.action == duties.SETTING_ACTION)).all()
            finally:
                db.session.remove()

    assert recorded() == []
    client = worker.test_client()
    assert client.get("/healthz").status_code == 200
    assert client.get("/healthz").status_code == 200
    assert recorded() == [{"SECOND_PERSON_RULES": "verify-only"}]
    with setup.app_context():
        db.engine.dispose()
    with worker.app_context():
        db.engine.dispose()


def test_every_pooled_connection_busy_answers_503_with_retry_after(tmp_path):
    app = create_app(base_config(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'busy.db'}",
                                 SQLALCHEMY_ENGINE_OPTIONS={"pool_size": 1, "max_overflow": 0,
                                                            "pool_timeout": 0.1}))
    with app.app_context():
        held = db.engine.connect()
        held.exec_driver_sql("SELECT 1")
    try:
        answer = app.test_client().get("/healthz", headers={"Accept": "application/json"})
        assert answer.status_code == 503 and int(answer.headers["Retry-After"]) > 0
        page = app.test_client().get("/healthz", headers={"Accept": "text/html"})
        assert page.status_code == 503 and "Service unavailable" in page.get_data(as_text=True)
    finally:
        held.close()
    assert app.test_client().get("/healthz").status_code == 200
    with app.app_context():
        db.engine.dispose()


def test_postgresql_limits_come_from_the_environment_and_bind_web_requests_only(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://clinic@db.internal/clinic")
    monkeypatch.setenv("DB_CONNECT_TIMEOUT", "4")
    monkeypatch.setenv("DB_STATEMENT_TIMEOUT_MS", "1500")
    settings = {**config.DEFAULTS, **config.from_environment()}
    served = database.engine_options(settings, serving=True)
    assert served["connect_args"]["connect_timeout"] == 4
    assert served["connect_args"]["options"] == "-c statement_timeout=1500"
    assert served["pool_pre_ping"] is True and served["pool_timeout"] <= 5
    assert database.answer_timeout(settings, serving=True) == 1.5 + 4
    # A one-off task (a migration, a backup) keeps the connect timeout but no statement limit.
    task = database.engine_options(settings, serving=False)
    assert task["connect_args"]["connect_timeout"] == 4 and "options" not in task["connect_args"]
    assert database.answer_timeout(settings, serving=False) is None
    sqlite = database.engine_options({**settings, "SQLALCHEMY_DATABASE_URI": "sqlite://"}, serving=True)
    assert "connect_args" not in sqlite


def test_a_web_requests_postgresql_connection_carries_its_limits(app):
    if db.engine.dialect.name != "postgresql":
        pytest.skip("statement_timeout and the answer limit are PostgreSQL settings")
    with db.engine.connect() as connection:
        assert connection.exec_driver_sql("SHOW statement_timeout").scalar() == "5s"
        raw = connection.connection.dbapi_connection
        assert isinstance(raw, database.LimitedConnection) and raw.answer_timeout == 5 + 3


def test_a_database_that_accepts_connections_and_never_answers_gives_503(tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # the kernel completes each handshake; nothing ever answers
    closed = threading.Timer(60, listener.close)  # never a hung test, whatever happens
    closed.start()
    try:
        url = f"postgresql+psycopg://clinic@127.0.0.1:{listener.getsockname()[1]}/clinic"
        app = create_app(base_config(SQLALCHEMY_DATABASE_URI=url, DB_CONNECT_TIMEOUT=2))
        answer = app.test_client().get("/healthz", headers={"Accept": "application/json"})
        assert answer.status_code == 503 and answer.json["error"].startswith("The database cannot be reached")
    finally:
        closed.cancel()
        listener.close()

