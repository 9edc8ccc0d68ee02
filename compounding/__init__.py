"""Mesotherapy compounding tracker: ingredient lots, batches, labels and patient traceability."""

from flask import Flask

from . import cli, config, errors, security, templating
from .extensions import csrf, db, login_manager, migrate


def create_app(test_config: dict | None = None) -> Flask:
    app = Flask(__name__, instance_relative_config=True,
                template_folder="../templates", static_folder="../static")
    app.config.from_mapping(config.DEFAULTS)
    app.config.from_mapping(test_config if test_config is not None else config.from_environment())
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = config.instance_secret_key(app.instance_path)

    db.init_app(app)
    migrate.init_app(app, db)
    login_manager.init_app(app)
    csrf.init_app(app)
    security.init_app(app)
    errors.init_app(app)
    templating.init_app(app)
    cli.init_app(app)
    register_blueprints(app)
    if app.config["AUTO_MIGRATE"]:
        cli.upgrade_schema(app)
    return app


def register_blueprints(app: Flask) -> None:
    from .admin.views import bp as admin_bp
    from .api import bp as api_bp
    from .auth.views import bp as auth_bp
    from .batches.views import bp as batches_bp
    from .formulas.views import bp as formulas_bp
    from .ingredients.views import bp as ingredients_bp
    from .lots.views import bp as lots_bp
    from .main.views import bp as main_bp
    from .printouts.views import bp as printouts_bp

    for blueprint in (main_bp, auth_bp, admin_bp, ingredients_bp, lots_bp, formulas_bp, batches_bp, printouts_bp,
                      api_bp):
        app.register_blueprint(blueprint)
