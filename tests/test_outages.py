"""Outages: gunicorn starts and runs through a dead or hung database, and recovers.

A real gunicorn (2 workers) reaches PostgreSQL through a TCP proxy that the test cuts
(connections refused, open ones dropped), hangs (accepted, never answered) and restores.
"""

import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import flask_migrate
import pytest
import sqlalchemy as sa
from tcp_proxy import TCPProxy
from testkit import PASSWORD, TEST_DATABASE_URL, base_config, stop_process

from compounding import create_app
from compounding.extensions import db, migrate
from compounding.services import users

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    not TEST_DATABASE_URL.startswith("postgresql"),
    reason="an outage is driven through a TCP proxy in front of PostgreSQL (set TEST_DATABASE_URL)")


@pytest.fixture
def database_url():
    """A fresh, empty database on the test server, dropped afterwards."""
    server = sa.make_url(TEST_DATABASE_URL)
    name = f"outage_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    yield server.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


@pytest.fixture
def proxy():
    server = sa.make_url(TEST_DATABASE_URL)
    proxy = TCPProxy(server.host or "127.0.0.1", server.port or 5432)
    yield proxy
    proxy.close()


@pytest.fixture
def proxied_url(database_url, proxy):
    url = sa.make_url(database_url).set(host="127.0.0.1", port=proxy.port)
    return url.render_as_string(hide_password=False)


@contextmanager
def _in_process(url: str, *, upgrade: bool = False):
    app = create_app(base_config(SQLALCHEMY_DATABASE_URI=url, SERVER_NAME=None))
    with app.app_context():
        if upgrade:
            flask_migrate.upgrade(directory=migrate.directory)
        try:
            yield app
        finally:
            db.session.remove()
            db.engine.dispose()


def _token_for_a_pharmacist(url: str) -> str:
    with _in_process(url):
        user = users.create_user(None, username="pharm", display_name="Pharm", role="pharmacist",
                                 password=PASSWORD)
        return users.create_token(None, user, "test")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(port: int, path: str, headers: dict | None = None, timeout: float = 30):
    """(status, headers, body) of one GET, or None when nothing answered at all."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read().decode(errors="replace")
    except OSError:
        return None
    finally:
        connection.close()


def _wait_for(predicate, seconds: float, message: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.3)
    pytest.fail(message)


@contextmanager
def _gunicorn(database_url: str, *, auto_migrate: bool):
    """gunicorn as deployed (its config file in the working directory), 2 workers, short timeout."""
    port = _free_port()
    env = {**os.environ, "DATABASE_URL": database_url, "SECRET_KEY": "outage-test",
           "AUTO_MIGRATE": "1" if auto_migrate else "0",
           # Shorter than the defaults, so the hung case is quick to watch.
           "DB_CONNECT_TIMEOUT": "2", "DB_STATEMENT_TIMEOUT_MS": "2000"}
    log = tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed when the server stops)
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--workers", "2", "--timeout", "10", "--graceful-timeout", "2",
         "--bind", f"127.0.0.1:{port}", "wsgi:app"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)

    def output() -> str:
        log.flush()
        log.seek(0)
        return log.read()[-3000:]

    try:
        deadline = time.monotonic() + 40
        while _get(port, "/healthz", timeout=15) is None:
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"gunicorn did not start (exit {server.poll()}):\n{output()}")
            time.sleep(0.3)
        yield server, port, output
    finally:
        stop_process(server)
        log.close()


def _workers(master: subprocess.Popen) -> set[int]:
    children = Path(f"/proc/{master.pid}/task/{master.pid}/children")
    return {int(pid) for pid in children.read_text().split()} if children.exists() else set()


def _status(port: int, path: str = "/healthz", headers: dict | None = None) -> int | None:
    answer = _get(port, path, headers)
    return answer[0] if answer else None


def test_gunicorn_answers_503_through_an_outage_and_worker_restarts_then_recovers_by_itself(
        database_url, proxied_url, proxy):
    with _gunicorn(proxied_url, auto_migrate=True) as (server, port, output):
        _wait_for(lambda: _status(port) == 200, 30, "no 200 from /healthz with the database up")
        token = _token_for_a_pharmacist(database_url)  # the schema was created once, at start
        api = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        assert _status(port, "/api/v1/lots", api) == 200

        proxy.cut()
        status, headers, body = _get(port, "/api/v1/lots", api)
        assert status == 503 and json.loads(body)["error"].startswith("The database cannot be reached")
        assert int(headers["Retry-After"]) > 0
        status, headers, body = _get(port, "/healthz", {"Accept": "text/html"})
        assert status == 503 and "Service unavailable" in body and "Traceback" not in body

        # Workers die and are replaced while the database is down: a crash, then a restart.
        old = _workers(server)
        assert len(old) == 2, output()
        first, second = sorted(old)
        os.kill(first, signal.SIGKILL)
        os.kill(second, signal.SIGTERM)
        _wait_for(lambda: len(_workers(server) - old) == 2, 30,
                  "gunicorn did not boot two new workers during the outage")
        for _ in range(4):
            assert _status(port, "/api/v1/lots", api) == 503, output()
        assert server.poll() is None, output()

        proxy.restore()
        _wait_for(lambda: _status(port, "/api/v1/lots", api) == 200, 30,
                  "the service did not recover by itself once the database returned")
        for _ in range(4):
            assert _status(port, "/api/v1/lots", api) == 200
        assert server.poll() is None


def test_a_hung_database_answers_503_within_seconds_and_the_service_recovers(database_url, proxied_url,
                                                                            proxy):
    with _in_process(database_url, upgrade=True):
        pass
    token = _token_for_a_pharmacist(database_url)
    api = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    with _gunicorn(proxied_url, auto_migrate=False) as (server, port, output):
        for _ in range(4):  # both workers hold a pooled connection through the proxy
            assert _status(port, "/api/v1/lots", api) == 200

        proxy.hang()
        for _ in range(3):
            started = time.monotonic()
            status = _status(port, "/api/v1/lots", api)
            elapsed = time.monotonic() - started
            assert status == 503, output()
            assert elapsed < 15, f"a hung database took {elapsed:.1f} s to answer"

        proxy.restore()
        _wait_for(lambda: _status(port, "/api/v1/lots", api) == 200, 30,
                  "the service did not recover by itself once the database answered again")
        assert server.poll() is None


def test_with_auto_migrate_gunicorn_starts_while_the_database_is_down_and_serves_once_it_returns(
        database_url, proxied_url, proxy):
    with _in_process(database_url, upgrade=True):
        pass
    token = _token_for_a_pharmacist(database_url)
    api = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    proxy.cut()
    with _gunicorn(proxied_url, auto_migrate=True) as (server, port, output):
        assert _status(port) == 503
        assert _status(port, "/api/v1/lots", api) == 503
        assert "Schema upgrade skipped: the database cannot be reached" in output()  # logged, not silent

        proxy.restore()
        _wait_for(lambda: _status(port, "/api/v1/lots", api) == 200, 30,
                  "the service did not serve once the database returned")
        assert server.poll() is None
