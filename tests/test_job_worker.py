"""Background jobs run by real processes: `flask --app wsgi worker` and `flask --app wsgi run`.

The test process asks for an export job as a page would (compounding.exports.jobs.request),
on a database and a queue it shares with a server or worker started as a subprocess
(a SQLite queue file in the test's folder, or Redis database 7), and waits for the row to say
`done`; the workbook is then read back from the file store.
"""

import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path

import openpyxl
import pytest
import sqlalchemy as sa
from testkit import AUDIT_KEY, PASSWORD, TEST_DATABASE_URL, audit_rows, base_config, redis_answers, tool_missing

from compounding import cli, create_app, jobs, storage
from compounding.exports import jobs as export_requests
from compounding.extensions import db
from compounding.models import ExportJob
from compounding.services import export_jobs, users
from compounding.services.clock import utcnow

ROOT = Path(__file__).resolve().parent.parent
REDIS_DB = 7
REDIS_URL = f"redis://127.0.0.1:6379/{REDIS_DB}"
# Settings of the environment that would change what a child process does; each test names its own.
INHERITED_OUT = ("DATABASE_URL", "REDIS_URL", "JOBS_QUEUE_PATH", "JOBS_IN_PROCESS", "JOBS_WORKERS",
                 "JOBS_STALE_SECONDS", "FILE_STORE_PATH", "FILE_STORE_BUCKET", "FLASK_APP", "FLASK_DEBUG",
                 "FLASK_RUN_PORT", "WERKZEUG_RUN_MAIN", "WERKZEUG_SERVER_FD")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def database_url():
    """A database of this module's own, migrated as in production: a SQLite file, or a new PostgreSQL database."""
    folder = tempfile.TemporaryDirectory(prefix="job-worker-")
    admin = name = None
    if TEST_DATABASE_URL.startswith("postgresql"):
        server = sa.make_url(TEST_DATABASE_URL)
        name = f"jobs_{os.getpid()}_{int(time.time() * 1000) % 100000}"
        admin = sa.create_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        url = server.set(database=name).render_as_string(hide_password=False)
    else:
        url = f"sqlite:///{Path(folder.name) / 'jobs.db'}"
    app = create_app(base_config(SQLALCHEMY_DATABASE_URI=url, AUTO_MIGRATE=True))
    cli.upgrade_schema(app)
    with app.app_context():
        db.engine.dispose()
    try:
        yield url
    finally:
        if admin is not None:
            with admin.connect() as connection:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.dispose()
        folder.cleanup()


@pytest.fixture
def redis_queue():
    """Redis database 7, empty before and after (a queue of this module's own)."""
    if not redis_answers():
        tool_missing("Redis is not answering on 127.0.0.1:6379 (.ci/run starts it)")
    import redis

    connection = redis.Redis.from_url(REDIS_URL)
    connection.flushdb()
    yield REDIS_URL
    connection.flushdb()
    connection.close()


class Setup:
    """The settings a test process and its child share: database, queue, file store, keys."""

    def __init__(self, database_url: str, folder: Path, redis_url: str | None = None, **extra):
        self.database_url, self.folder, self.redis_url = database_url, folder, redis_url
        self.config = base_config(SQLALCHEMY_DATABASE_URI=database_url, FILE_STORE_PATH=str(folder / "store"),
                                  JOBS_QUEUE_PATH=str(folder / "queue.sqlite3"), REDIS_URL=redis_url,
                                  SERVER_NAME=None, **extra)

    def env(self, **extra) -> dict:
        env = {key: value for key, value in os.environ.items() if key not in INHERITED_OUT}
        env.update({"DATABASE_URL": self.database_url, "SECRET_KEY": self.config["SECRET_KEY"],
                    "AUDIT_KEY": AUDIT_KEY, "AUDIT_CHECKPOINT_FILE": self.config["AUDIT_CHECKPOINT_FILE"],
                    "FILE_STORE_PATH": self.config["FILE_STORE_PATH"],
                    "JOBS_QUEUE_PATH": self.config["JOBS_QUEUE_PATH"], "RATELIMIT_ENABLED": "0",
                    "AUTO_MIGRATE": "1", "PYTHONUNBUFFERED": "1", "CLINIC_NAME": self.config["CLINIC_NAME"]})
        if self.redis_url:
            env["REDIS_URL"] = self.redis_url
        env.update({key: str(value) for key, value in extra.items()})
        return env


@contextmanager
def app_of(setup: Setup):
    app = create_app(setup.config)
    with app.app_context():
        try:
            yield app
        finally:
            db.session.remove()
            db.engine.dispose()


@contextmanager
def child(args: list[str], env: dict, folder: Path, name: str):
    """A `flask --app wsgi ...` process in its own process group, killed with its group afterwards."""
    log_path = folder / f"{name}.log"
    with open(log_path, "w+") as log:
        process = subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", *args], cwd=ROOT, env=env,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            yield process, lambda: log_path.read_text(errors="replace")[-3000:]
        finally:
            for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
                if process.poll() is not None:
                    break
                try:
                    os.killpg(process.pid, sig)
                    process.wait(timeout=wait)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    continue


def wait_for(predicate, seconds: float, message):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.2)
    pytest.fail(message() if callable(message) else message)


def job_row(job_id: int) -> ExportJob:
    db.session.remove()  # a fresh look at what the other process wrote
    return db.session.get(ExportJob, job_id)


def wait_done(job_id: int, output, seconds: float = 25) -> ExportJob:
    def finished():
        job = job_row(job_id)
        return job if job.status in ("done", "failed") else None

    job = wait_for(finished, seconds, lambda: f"export {job_id} is still {job_row(job_id).status}:\n{output()}")
    assert job.status == "done", f"{job.error}\n{output()}"
    return job


def auditor(name: str):
    return users.create_user(None, username=name, display_name=name.title(), role="auditor", password=PASSWORD)


def ask_for_audit_workbook(user, days_back: int = 0) -> int:
    """The audit workbook up to today (each test its own period, so no identical job is still live)."""
    today = date.today()  # noqa: DTZ011
    asked = export_requests.request(user, "audit", {"start": (today - timedelta(days=30 + days_back)).isoformat(),
                                                    "end": (today + timedelta(days=1)).isoformat()})
    assert asked.created
    return asked.job.id


def assert_readable_workbook(job: ExportJob) -> None:
    assert job.rows_written > 0 and job.size > 0 and job.attempts == 1
    with storage.store(job.store).open(job.storage_key) as stream:
        workbook = openpyxl.load_workbook(stream, read_only=True)
        assert workbook.sheetnames  # a real .xlsx, its sheets written
        workbook.close()


def start_worker(setup: Setup, name: str = "worker", **extra):
    return child(["worker", "--workers", "2"], setup.env(**extra), setup.folder, name)


def wait_healthy(port: int, process, output) -> None:
    def answers():
        if process.poll() is not None:
            pytest.fail(f"flask run stopped (exit {process.returncode}):\n{output()}")
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            connection.request("GET", "/healthz")
            return connection.getresponse().status == 200
        except OSError:
            return False
        finally:
            connection.close()

    wait_for(answers, 30, lambda: f"flask run did not answer /healthz:\n{output()}")


@contextmanager
def flask_run(setup: Setup, name: str, **extra):
    port = _free_port()
    with child(["run", "--port", str(port), "--no-reload"], setup.env(**extra), setup.folder, name) as (
            process, output):
        wait_healthy(port, process, output)
        yield process, output


# --- flask worker ---------------------------------------------------------------------------------


def test_a_worker_on_the_sqlite_queue_writes_the_job_the_app_asked_for(database_url, tmp_path):
    setup = Setup(database_url, tmp_path)
    with app_of(setup) as app:
        assert jobs.broker(app) == "sqlite"
        job_id = ask_for_audit_workbook(auditor("sqlite-auditor"), days_back=1)
        assert job_row(job_id).status == "queued"
        with start_worker(setup) as (_process, output):
            job = wait_done(job_id, output)
        assert_readable_workbook(job)
        assert [row.entity_id for row in audit_rows("export.done")] == [job_id]


def test_a_worker_on_redis_writes_the_job_the_app_asked_for(database_url, tmp_path, redis_queue):
    setup = Setup(database_url, tmp_path, redis_queue)
    with app_of(setup) as app:
        assert jobs.broker(app) == "redis"
        job_id = ask_for_audit_workbook(auditor("redis-auditor"), days_back=2)
        assert not Path(setup.config["JOBS_QUEUE_PATH"]).exists()  # the job went to Redis, not to a file
        with start_worker(setup) as (_process, output):
            job = wait_done(job_id, output)
            assert "queue redis" in output()
        assert_readable_workbook(job)


def test_a_job_survives_a_worker_that_stopped_halfway(database_url, tmp_path):
    setup = Setup(database_url, tmp_path)
    with app_of(setup):
        job_id = ask_for_audit_workbook(auditor("restart-auditor"), days_back=3)
        # A worker took it off the queue, started writing, and died: its message is gone, the row says running.
        first_start = export_jobs.claim(job_id).started_at
        jobs.jobs().huey.flush()
        with db.engine.begin() as connection:
            connection.execute(sa.update(ExportJob).where(ExportJob.id == job_id)
                               .values(heartbeat_at=utcnow() - timedelta(seconds=30), rows_written=7))
        # Quiet for 30 s: stale for a worker that waits 5 s (not for the default 120 s).
        with start_worker(setup, JOBS_STALE_SECONDS=5) as (_process, output):
            job = wait_done(job_id, output)
        assert job.attempts == 2
        assert job.started_at > first_start  # run again from the start
        requeued = audit_rows("export.requeued", "export_job", job_id)
        assert len(requeued) == 1 and "attempt 1" in requeued[0].reason
        with storage.store(job.store).open(job.storage_key) as stream:
            assert openpyxl.load_workbook(stream, read_only=True).sheetnames


# --- flask run ---------------------------------------------------------------------------------------


def test_flask_run_on_the_embedded_default_runs_jobs_itself(tmp_path):
    # The embedded default: a SQLite file, no Redis, nothing but `flask run`.
    setup = Setup(f"sqlite:///{tmp_path / 'clinic.db'}", tmp_path)
    with flask_run(setup, "run-sqlite") as (_process, output), app_of(setup) as app:
        assert jobs.broker(app) == "sqlite"
        job_id = ask_for_audit_workbook(auditor("run-auditor"))
        job = wait_done(job_id, output)
        assert_readable_workbook(job)


def test_flask_run_with_redis_leaves_jobs_to_the_worker_unless_told(database_url, tmp_path, redis_queue):
    setup = Setup(database_url, tmp_path, redis_queue)
    with app_of(setup):
        with flask_run(setup, "run-redis") as (_process, output):
            job_id = ask_for_audit_workbook(auditor("redis-run-auditor"), days_back=4)
            time.sleep(2)  # a consumer in the server would have taken it within 0.1 s
            assert job_row(job_id).status == "queued", output()
        with flask_run(setup, "run-redis-in-process", JOBS_IN_PROCESS=1) as (_process, output):
            job = wait_done(job_id, output)
        assert_readable_workbook(job)


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="counts threads in /proc")
def test_under_the_reloader_only_the_serving_process_runs_jobs(tmp_path):
    # `--reload` without `--debug`: the app is not in debug mode, yet the parent only watches files.
    setup = Setup(f"sqlite:///{tmp_path / 'clinic.db'}", tmp_path)
    port = _free_port()
    args = ["run", "--port", str(port), "--reload"]
    # Six workers and a scheduler: a consumer adds seven threads to the process that runs it.
    with child(args, setup.env(JOBS_WORKERS=6), tmp_path, "run-reload") as (watcher, output):
        wait_healthy(port, watcher, output)
        server = int(Path(f"/proc/{watcher.pid}/task/{watcher.pid}/children").read_text().split()[0])
        # The watching parent only restarts the server: no consumer of its own.
        assert len(list(Path(f"/proc/{watcher.pid}/task").iterdir())) < 7, output()
        with app_of(setup):
            job = wait_done(ask_for_audit_workbook(auditor("reload-auditor")), output)
            assert_readable_workbook(job)
        assert len(list(Path(f"/proc/{server}/task").iterdir())) > 7  # the server's consumer


def test_a_redis_that_accepts_and_never_answers_fails_an_enqueue_within_seconds(monkeypatch):
    """A web request that asks for an export must not hang on the queue: the row waits for recover()."""
    import threading

    monkeypatch.setattr(jobs, "REDIS_TIMEOUT_SECONDS", 0.5)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # connections are accepted by the kernel; nothing ever answers
        app = create_app(base_config(REDIS_URL=f"redis://127.0.0.1:{silent.getsockname()[1]}/0"))
        outcome = []

        def enqueue():
            try:
                jobs.enqueue("mail.send", app=app)
                outcome.append("taken")
            except jobs.QueueUnavailable:
                outcome.append("refused")

        started = time.monotonic()
        asker = threading.Thread(target=enqueue, daemon=True)
        asker.start()
        asker.join(timeout=10)
        assert outcome == ["refused"] and 0.4 < time.monotonic() - started < 5  # it waited, then gave up
