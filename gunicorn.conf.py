"""gunicorn's settings, read from the working directory (`gunicorn wsgi:app`, or `-c gunicorn.conf.py`).

The schema is upgraded here, once, in the master before any worker starts (when AUTO_MIGRATE
is on), never in a worker's boot: a worker restarting during a database outage must boot and
answer 503 (DESIGN 10.11). If the database cannot be reached the master logs it and starts
anyway; run `flask --app wsgi db upgrade` once it is back.
"""

wsgi_app = "wsgi:app"


def on_starting(server):
    from compounding import config, create_app, startup

    settings = config.from_environment()
    if not settings["AUTO_MIGRATE"]:
        return
    app = create_app(settings)
    if startup.upgrade_schema_or_log(app, log=server.log):
        server.log.info("Schema is current.")
    # Workers are forked from this process: they must not inherit its database connections.
    from compounding.extensions import db

    with app.app_context():
        db.engine.dispose()
