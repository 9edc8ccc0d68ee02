"""Command-line tasks: schema upgrade, accounts, tokens, demo data, audit verification."""

import sys
from pathlib import Path

import click
import sqlalchemy as sa
from flask import Flask
from flask.cli import AppGroup

from .extensions import db, migrate
from .models import User
from .permissions import ROLES
from .services import audit, users
from .services.errors import DomainError

audit_cli = AppGroup("audit", help="Audit trail tools.")


def _schema_is_current() -> bool:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(migrate.get_config(migrate.directory))
    with db.engine.connect() as connection:
        current = set(MigrationContext.configure(connection).get_current_heads())
    return current == set(script.get_heads())


def upgrade_schema(app: Flask) -> None:
    """Create or upgrade the schema on start, so an empty folder just works."""
    from flask_migrate import upgrade

    with app.app_context():
        engine = db.engine
        if engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
            # Before the first connection: SQLite cannot create a file in a missing folder.
            Path(engine.url.database).parent.mkdir(parents=True, exist_ok=True)
        if _schema_is_current():
            return
        if engine.dialect.name == "postgresql":
            # Several workers starting at once: one migrates, the others wait and find it done.
            with engine.connect() as connection:
                connection.execute(sa.text("SELECT pg_advisory_lock(7150422000)"))
                try:
                    if not _schema_is_current():
                        upgrade(directory=migrate.directory)
                finally:
                    connection.execute(sa.text("SELECT pg_advisory_unlock(7150422000)"))
                    connection.commit()
        else:
            upgrade(directory=migrate.directory)


def _fail(message: str) -> None:
    click.secho(message, fg="red", err=True)
    sys.exit(1)


@click.command("create-user")
@click.argument("username")
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.option("--password", required=True, help="At least 10 characters, not a common one.")
@click.option("--name", "display_name", default="", help="Printed name used on signatures.")
def create_user_command(username, role, password, display_name):
    """Create a user account."""
    try:
        user = users.create_user(None, username=username, display_name=display_name or username,
                                 role=role, password=password)
    except DomainError as exc:
        db.session.rollback()
        _fail(exc.message)
    click.echo(f"Created {user.username} ({user.role}).")


@click.command("create-token")
@click.argument("username")
@click.option("--name", default="cli", help="What the token is for.")
def create_token_command(username, name):
    """Print a new API token for USERNAME (shown once; only its hash is stored)."""
    user = db.session.scalar(sa.select(User).where(User.username == username.lower()))
    if user is None:
        _fail(f"No user named {username!r}.")
    try:
        token = users.create_token(None, user, name)
    except DomainError as exc:
        db.session.rollback()
        _fail(exc.message)
    click.echo(token)


@audit_cli.command("verify")
def audit_verify_command():
    """Recompute the audit hash chain; exit 1 naming the first row that does not fit."""
    report = audit.verify_chain()
    if report.ok:
        click.echo(f"Audit trail intact: {report.checked} rows verified.")
        return
    _fail(f"Audit trail BROKEN at row {report.first_bad_id}: {report.problem} "
          f"({report.checked} rows before it verified).")


@click.command("seed-demo")
def seed_demo_command():
    """Load demo data (idempotent): one user per role, ingredients, lots, formulas, batches."""
    from .demo import seed_demo

    for line in seed_demo():
        click.echo(line)


@click.command("backup")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="The backup file to write.")
def backup_command(out):
    """Back up the SQLite database online (PostgreSQL: use pg_dump)."""
    from .backup import BackupError, backup_to

    try:
        size = backup_to(out)
    except BackupError as exc:
        _fail(str(exc))
    click.echo(f"Backup written to {out} ({size:,} bytes).")


@click.command("restore")
@click.option("--from", "source", required=True, type=click.Path(dir_okay=False), help="A file made by `backup`.")
@click.option("--yes", is_flag=True, help="Confirm: every table is replaced by the backup's content.")
def restore_command(source, yes):
    """Restore the SQLite database from a backup (stop the application first)."""
    from .backup import BackupError, restore_from

    if not yes:
        click.confirm("Every table, the audit trail included, is replaced by the backup. Continue?", abort=True)
    try:
        checked = restore_from(source)
    except BackupError as exc:
        _fail(str(exc))
    click.echo(f"Restored from {source}; audit trail intact ({checked} rows verified).")


def init_app(app: Flask) -> None:
    for command in (create_user_command, create_token_command, seed_demo_command, backup_command,
                    restore_command):
        app.cli.add_command(command)
    app.cli.add_command(audit_cli)
