"""Command-line look at export jobs: the latest ones and how each stands."""

import click
import sqlalchemy as sa
from flask.cli import with_appcontext

from ..extensions import db
from ..models import ExportJob, User
from .downloads import progress_text


@click.command("jobs")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000), help="How many, newest first.")
@with_appcontext
def export_jobs_command(limit):
    """List the latest export jobs: who asked, what, and their status, progress or error."""
    rows = db.session.execute(sa.select(ExportJob, User.username).join(User, User.id == ExportJob.requested_by_id)
                              .order_by(ExportJob.id.desc()).limit(limit)).all()
    if not rows:
        click.echo("No export jobs.")
    for job, username in rows:
        if job.status in ("queued", "running"):
            state = progress_text(job)
        elif job.status == "done":
            state = f"{job.rows_written:,} rows, kept until {job.expires_at:%Y-%m-%d %H:%M} UTC"
        elif job.status == "failed":
            state = job.error
        else:
            state = f"deleted {job.expired_at:%Y-%m-%d %H:%M} UTC"
        click.echo(f"{job.id:>6}  {job.requested_at:%Y-%m-%d %H:%M}  {username:<16} {job.kind:<9} "
                   f"{job.status:<8} {job.filename}  {state}")
