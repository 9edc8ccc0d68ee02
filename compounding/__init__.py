"""Mesotherapy compounding tracker: ingredient lots, batches, labels and patient traceability."""

from importlib import import_module
from pathlib import Path

from flask import Flask
from werkzeug.exceptions import NotFound
from werkzeug.routing import IntegerConverter

from . import cli, config, database, errors, headers, idempotency, jobs, privacy, security, startup, templating
from .extensions import csrf, db, limiter, login_manager, migrate
from .models._common import MAX_RECORD_ID


def create_app(test_config: dict | None = None) -> Flask:
    app = Flask(__name__, instance_relative_config=True,
                template_folder="../templates", static_folder="../static")
    app.config.from_mapping(config.DEFAULTS)
    app.config.from_mapping(test_config if test_config is not None else config.from_environment())
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = config.instance_secret_key(app.instance_path)
    if not app.config.get("AUDIT_KEY"):
        app.config["AUDIT_KEY"] = config.instance_audit_key(app.instance_path)
    if not app.config.get("AUDIT_CHECKPOINT_FILE"):
        app.config["AUDIT_CHECKPOINT_FILE"] = str(Path(app.instance_path) / "audit_checkpoints.jsonl")

    serving = startup.serves_requests()
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = database.engine_options(app.config, serving=serving)
    db.init_app(app)
    database.init_app(app, serving=serving)
    migrate.init_app(app, db)
    login_manager.init_app(app)
    csrf.init_app(app)
    limiter.init_app(app)
    security.init_app(app)
    privacy.init_app(app)
    headers.init_app(app)
    errors.init_app(app)
    idempotency.init_app(app)
    templating.init_app(app)
    cli.init_app(app)
    register_blueprints(app)
    # A web worker's boot never touches the database; the command line may upgrade the
    # schema and records a change of the second-person rules.
    startup.init_app(app)
    # `flask run` on the embedded default runs the job queue in threads of its own.
    jobs.init_app(app, startup.command_line_name())
    return app


# One blueprint per area, each in compounding/<area>/views.py; the JSON API comes last.
BLUEPRINTS = ("main", "auth", "admin", "ingredients", "lots", "formulas", "batches", "printouts", "scan",
              "exports", "recalls", "treatments", "sites", "transfers", "cold_chain", "equipment", "people",
              "documents", "api")


class RecordId(IntegerConverter):
    """`<int:...>` ids: one larger than a database integer (2**31 - 1 on PostgreSQL) names no record.

    It answers 404 for every method, instead of overflowing the database driver (a 500).
    """

    def to_python(self, value: str) -> int:
        number = super().to_python(value)
        if number > MAX_RECORD_ID:
            raise NotFound()
        return number


def register_blueprints(app: Flask) -> None:
    app.url_map.converters["int"] = RecordId
    for area in BLUEPRINTS:
        app.register_blueprint(import_module(f".{area}.views", __name__).bp)
