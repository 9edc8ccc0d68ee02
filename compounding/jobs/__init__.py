"""The task queue (DESIGN 10.7): Huey, with a persistent broker.

- With `REDIS_URL` set, the queue is in that Redis: app servers put jobs on it and
  `flask --app wsgi worker` (one or more, anywhere) runs them.
- Without it, the queue is a SQLite file (`instance/jobs.sqlite3`, or `JOBS_QUEUE_PATH`) that
  every process on the machine shares: `flask --app wsgi run` runs the jobs in threads of its
  own, so the README's first command still does everything, and under gunicorn
  `flask --app wsgi worker` runs them.

Huey carries only a job's id and the name of the work; the truth about a job is its row in the
database (compounding.models.job), so a job survives a worker that stops halfway (see
services.export_jobs.recover). Tasks are plain functions registered in `tasks.py` by name; each
runs in an application context of the app that built the queue.
"""

import functools
import logging
import os
import threading
from dataclasses import dataclass, field

import click
import redis
from flask import Flask, current_app
from huey import Huey, RedisHuey, SqliteHuey
from huey.consumer import Consumer

from ..extensions import db

log = logging.getLogger(__name__)
# Seconds to reach Redis and to wait for its answer: an unreachable or frozen broker fails a web
# request's enqueue (the job row waits for recover()), it does not hang it. More than the one second a
# worker's blocking read waits for a job.
REDIS_TIMEOUT_SECONDS = 5


class QueueUnavailable(RuntimeError):
    """The queue's broker did not take the job (Redis down, the queue file unwritable)."""


@dataclass
class Jobs:
    huey: Huey
    tasks: dict = field(default_factory=dict)
    consumer: Consumer | None = None


class InProcessConsumer(Consumer):
    """Huey's consumer inside another program (`flask run`): its threads, none of its signal handlers.

    The server keeps Ctrl-C and its own signals; the threads are daemons and stop with it.
    """

    def _set_signal_handlers(self):
        pass


def queue_path(app: Flask) -> str:
    return app.config.get("JOBS_QUEUE_PATH") or os.path.join(app.instance_path, "jobs.sqlite3")


def build_huey(app: Flask) -> Huey:
    # Results are never read (a job's outcome is its row), so Huey keeps none.
    if app.config.get("REDIS_URL"):
        # RedisStorage takes either a URL or a pool: the pool carries the timeouts.
        pool = redis.ConnectionPool.from_url(app.config["REDIS_URL"], socket_timeout=REDIS_TIMEOUT_SECONDS,
                                             socket_connect_timeout=REDIS_TIMEOUT_SECONDS)
        return RedisHuey("compounding", connection_pool=pool, results=False, utc=True)
    path = queue_path(app)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    return SqliteHuey("compounding", filename=path, results=False, utc=True)


def broker(app: Flask | None = None) -> str:
    app = app or current_app
    return "redis" if app.config.get("REDIS_URL") else "sqlite"


def jobs(app: Flask | None = None) -> Jobs:
    """The app's queue and its registered tasks, built at first use (a web worker's boot touches no broker)."""
    app = app or current_app._get_current_object()
    found = app.extensions.get("jobs")
    if found is None:
        from . import tasks

        found = Jobs(build_huey(app))
        tasks.register(app, found)
        # Each worker thread, as it starts, yields the CPU to the web requests of its machine.
        found.huey.on_startup(name="jobs.nice")(functools.partial(lower_priority, int(app.config["JOBS_NICE"])))
        app.extensions["jobs"] = found
    return found


def lower_priority(nice: int) -> None:
    """Raise the calling thread's niceness to `nice` (Linux keeps one per thread): a job that writes a year
    of rows then takes the CPU only when the web workers beside it leave it free."""
    if nice <= 0 or not hasattr(os, "setpriority"):
        return
    thread = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, thread, min(19, max(os.getpriority(os.PRIO_PROCESS, thread), nice)))
    except OSError as error:
        log.warning("The job worker's priority stays as it was: %s", error)


def enqueue(name: str, *args, app: Flask | None = None) -> None:
    """Put the task `name` on the queue; QueueUnavailable if the broker did not take it."""
    try:
        jobs(app).tasks[name](*args)
    except Exception as error:  # redis.ConnectionError, sqlite3.OperationalError...
        log.warning("The job queue did not take %s%r: %s", name, args, error)
        raise QueueUnavailable(f"The job queue could not be reached: {error}") from error


def run_in_app(app: Flask, fn):
    """A task body run in an application context of `app`, its database session removed after."""

    def run(*args):
        with app.app_context():
            try:
                return fn(*args)
            finally:
                db.session.remove()

    run.__name__ = fn.__name__
    run.__doc__ = fn.__doc__
    return run


def consumer(app: Flask, *, workers: int, periodic: bool = True, in_process: bool = False) -> Consumer:
    found = jobs(app)
    kind = InProcessConsumer if in_process else Consumer
    # Polls a SQLite queue every 0.1 s, backing off to 2 s when idle; Redis blocks on the list instead.
    found.consumer = kind(found.huey, workers=workers, periodic=periodic, worker_type="thread",
                          initial_delay=0.1, backoff=1.15, max_delay=2.0, check_worker_health=True)
    return found.consumer


def runs_in_process(app: Flask, command: str | None) -> bool:
    """Whether this process runs queued jobs itself: JOBS_IN_PROCESS, else `flask run` without Redis."""
    setting = app.config.get("JOBS_IN_PROCESS")
    if setting is not None:
        return bool(setting) and command == "run"
    return command == "run" and not app.config.get("REDIS_URL")


def start_in_process(app: Flask) -> Consumer:
    """Run the queue's jobs in daemon threads of this process (`flask run` on the embedded default)."""
    started = consumer(app, workers=max(1, int(app.config.get("JOBS_WORKERS") or 1)), in_process=True)
    started.start()
    log.info("Running background jobs in this process (%s queue).", broker(app))
    return started


def _reloads(app: Flask) -> bool:
    """Whether `flask run` restarts itself on code changes (`--reload`, or `--debug` without `--no-reload`)."""
    context = click.get_current_context(silent=True)
    reload = context.params.get("reload") if context is not None else None
    return app.debug if reload is None else bool(reload)


def init_app(app: Flask, command: str | None) -> None:
    # Under the reloader only the child serves; the watching parent (which loads the app too) runs no jobs.
    reloader_parent = command == "run" and _reloads(app) and os.environ.get("WERKZEUG_RUN_MAIN") != "true"
    if runs_in_process(app, command) and not app.testing and not reloader_parent:
        start_in_process(app)
