"""`flask --app wsgi worker`: run the queue's jobs (both brokers), and `send-digests`."""

import click
from flask import current_app
from flask.cli import with_appcontext

from . import broker, consumer, queue_path


@click.command("worker")
@click.option("--workers", type=click.IntRange(1, 32), default=None,
              help="Jobs run at once (threads); default JOBS_WORKERS.")
@click.option("--no-scheduler", is_flag=True,
              help="Run queued jobs only: no scheduled ones (expiry, digests, retries) from this worker.")
@with_appcontext
def worker_command(workers, no_scheduler):
    """Run background jobs (exports, digests, mail) until stopped.

    Ctrl-C (SIGINT) lets running jobs finish first; SIGTERM stops at once, and an export it cut
    short is run again from the start by the next worker (after JOBS_STALE_SECONDS).
    """
    app = current_app._get_current_object()
    count = workers or int(app.config.get("JOBS_WORKERS") or 2)
    where = app.config["REDIS_URL"] if broker(app) == "redis" else queue_path(app)
    click.echo(f"Running background jobs: {count} at a time, queue {broker(app)} ({where})"
               f"{'' if not no_scheduler else ', no scheduled jobs'}.", err=True)
    consumer(app, workers=count, periodic=not no_scheduler).run()
