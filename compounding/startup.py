"""What runs once when the service starts, and never in a web worker's boot.

A web worker (gunicorn, any WSGI server) builds the app without touching the database, so a
worker that restarts during an outage boots, answers 503, and serves again when the database
returns. The schema is upgraded by `flask --app wsgi db upgrade`, by gunicorn's master once
per start (gunicorn.conf.py), or, on the embedded default, by any `flask --app wsgi ...`
command (`run`, `seed-demo`): an unreachable database is logged there and the command goes on.
"""

import threading

import click
from flask import Flask
from flask.cli import FlaskGroup
from sqlalchemy.exc import OperationalError

from . import cli
from .services import duties

SKIPPED = ("Schema upgrade skipped: the database cannot be reached (%s). "
           "Run `flask --app wsgi db upgrade` once it is back.")


def command_line_name() -> str | None:
    """The `flask` command being run (`run`, `seed-demo`, `db`...), or None outside the Flask command line."""
    context = click.get_current_context(silent=True)
    if context is None or not isinstance(context.find_root().command, FlaskGroup):
        return None
    return context.info_name if context.parent is not None else "flask"


def serves_requests() -> bool:
    """Whether this process answers web requests (a WSGI server or `flask run`), not a one-off task."""
    return command_line_name() in (None, "run")


def init_app(app: Flask) -> None:
    command = command_line_name()
    if command is None:
        # A web worker: record the settings at its first request that reaches the database.
        if not app.testing:
            _before_every_other_hook(app, _settings_recorder(app))
        return
    if app.config["AUTO_MIGRATE"]:
        upgrade_schema_or_log(app)
    if not record_settings_or_log(app) and command == "run":
        _before_every_other_hook(app, _settings_recorder(app))


def _before_every_other_hook(app: Flask, hook) -> None:
    # It commits its own transaction, so it runs before any hook opens the request's one.
    app.before_request_funcs.setdefault(None, []).insert(0, hook)


def upgrade_schema_or_log(app: Flask, log=None) -> bool:
    """Upgrade the schema; when the database cannot be reached, log it (to `log`, else the app's) and go on."""
    try:
        cli.upgrade_schema(app)
    except OperationalError as exc:
        (log or app.logger).error(SKIPPED, _reason(exc))
        return False
    return True


def record_settings_or_log(app: Flask) -> bool:
    """Record a change of SECOND_PERSON_RULES (which second-person checks apply), or say why it waits."""
    try:
        duties.record_settings_on_start(app)
    except OperationalError as exc:
        app.logger.warning("Settings not recorded at start: the database cannot be reached (%s).", _reason(exc))
        return False
    return True


def _settings_recorder(app: Flask):
    pending = {"yes": True}
    lock = threading.Lock()

    def record_settings_once():
        if not pending["yes"]:
            return
        with lock:
            if pending["yes"] and duties.record_settings_now():
                pending["yes"] = False

    return record_settings_once


def _reason(exc: OperationalError) -> str:
    return str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)
