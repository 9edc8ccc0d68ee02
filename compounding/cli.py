"""Command-line tasks: schema upgrade, accounts, tokens, demo data, audit verification."""

import fcntl
import sys
from contextlib import contextmanager
from pathlib import Path

import click
import sqlalchemy as sa
from flask import Flask
from flask.cli import AppGroup

from .database import without_limits
from .extensions import db, migrate
from .models import Location, User
from .models.site import LOCATION_KINDS, MAIN_SITE
from .permissions import ROLES
from .services import audit, sites, users
from .services.errors import DomainError

audit_cli = AppGroup("audit", help="Audit trail tools.")
export_cli = AppGroup("export", help="Excel exports.")
exposure_cli = AppGroup("exposure", help="Exposure counts per lot, batch and site.")


def _schema_is_current() -> bool:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(migrate.get_config(migrate.directory))
    with db.engine.connect() as connection:
        current = set(MigrationContext.configure(connection).get_current_heads())
    return current == set(script.get_heads())


def upgrade_schema(app: Flask) -> None:
    """Create or upgrade the schema once per start of the service, so an empty folder just works.

    Run by the Flask command line (compounding.startup) and gunicorn's master (gunicorn.conf.py),
    never by a web worker. Several servers may start at once: one migrates while the others
    wait for it and then find the schema current (an advisory lock on PostgreSQL, a lock file
    beside SQLite).
    """
    from flask_migrate import upgrade

    with app.app_context():
        engine = db.engine
        if engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
            # Before the first connection: SQLite cannot create a file in a missing folder.
            Path(engine.url.database).parent.mkdir(parents=True, exist_ok=True)
        try:
            if _schema_is_current():
                return
            if engine.dialect.name == "postgresql":
                # Another server may be migrating: wait for it as long as it takes.
                with engine.connect() as connection, without_limits(connection):
                    connection.execute(sa.text("SELECT pg_advisory_lock(7150422000)"))
                    try:
                        if not _schema_is_current():
                            upgrade(directory=migrate.directory)
                    finally:
                        connection.execute(sa.text("SELECT pg_advisory_unlock(7150422000)"))
                        connection.commit()
            else:
                with _sqlite_migration_lock(engine.url.database):
                    if not _schema_is_current():
                        upgrade(directory=migrate.directory)
        finally:
            # Forked workers (gunicorn --preload) must not share the connections used here.
            engine.dispose()


@contextmanager
def _sqlite_migration_lock(database: str | None):
    if not database or database == ":memory:":
        yield
        return
    path = Path(database)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".migrate-lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _fail(message: str) -> None:
    click.secho(message, fg="red", err=True)
    sys.exit(1)


@click.command("create-user")
@click.argument("username")
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.option("--password", required=True, help="At least 10 characters, not a common one.")
@click.option("--name", "display_name", default="", help="Printed name used on signatures.")
@click.option("--site", "site_codes", multiple=True, metavar="CODE",
              help="A site the user belongs to (repeatable; default MAIN).")
@click.option("--email", default="", help="Where the daily digest goes (pharmacists).")
def create_user_command(username, role, password, display_name, site_codes, email):
    """Create a user account."""
    codes = [code.strip().upper() for code in site_codes] or [MAIN_SITE]
    try:
        user = users.create_user(None, username=username, display_name=display_name or username,
                                 role=role, password=password, site_codes=codes, email=email or None)
    except DomainError as exc:
        _fail(exc.message)
    click.echo(f"Created {user.username} ({user.role}). Sites: {', '.join(dict.fromkeys(codes))}.")


@click.command("create-site")
@click.argument("code")
@click.argument("name")
@click.option("--timezone", default="", help="IANA zone, e.g. Europe/Paris (default CLINIC_TIMEZONE).")
@click.option("--address", default="")
def create_site_command(code, name, timezone, address):
    """Create a site of the chain, with its default location (Main store)."""
    try:
        site = sites.create_site(None, code, name, timezone, address)
    except DomainError as exc:
        _fail(exc.message)
    store = sites.default_location(site.id)
    click.echo(f"Created site {site.code} ({site.name}, {site.timezone}) with default location {store.code}.")


@click.command("create-location")
@click.argument("site_code")
@click.argument("name")
@click.option("--kind", type=click.Choice(LOCATION_KINDS), default="room", show_default=True)
@click.option("--parent", "parent_code", default="", metavar="CODE", help="The location it sits in.")
@click.option("--code", default="", help="Its own code (default: the next LOC number).")
@click.option("--min-celsius", default=None)
@click.option("--max-celsius", default=None)
@click.option("--readings-per-day", type=int, default=None,
              help="Temperature readings expected a day where a range is set (default 2).")
def create_location_command(site_code, name, kind, parent_code, code, min_celsius, max_celsius, readings_per_day):
    """Create a storage location at a site (a room, cabinet, fridge or freezer)."""
    try:
        site = sites.site_by_code(site_code)
        parent_id = None
        if parent_code:
            parent_id = db.session.scalar(sa.select(Location.id).where(Location.code == parent_code.strip().upper()))
            if parent_id is None:
                _fail(f"There is no location {parent_code!r}.")
        location = sites.create_location(None, site.id, name, kind, parent_id=parent_id, code=code or None,
                                         min_celsius=min_celsius, max_celsius=max_celsius,
                                         readings_per_day=readings_per_day)
    except DomainError as exc:
        _fail(exc.message)
    click.echo(f"Created location {location.code} ({location.name}, {location.kind}) at site {site.code}.")


@click.command("create-token")
@click.argument("username")
@click.option("--name", default="cli", show_default=True, help="What the token is for.")
@click.option("--days", type=click.IntRange(1, users.MAX_TOKEN_DAYS),
              help="Days until it expires (default API_TOKEN_DAYS, 90).")
def create_token_command(username, name, days):
    """Print a new API token for USERNAME (shown once; only its hash is stored)."""
    user = _user_named(username)
    try:
        token = users.create_token(None, user, name, days=days)
    except DomainError as exc:
        _fail(exc.message)
    click.echo(token)


@click.command("sensor-token")
@click.option("--location", "location_code", required=True, help="The monitored location's code, e.g. FRIDGE1.")
@click.option("--user", "username", required=True, help="Whose token it is (a member of the location's site).")
@click.option("--name", required=True, help="The sensor, e.g. \"fridge 1 probe\".")
@click.option("--days", type=click.IntRange(1, users.MAX_TOKEN_DAYS),
              help="Days until it expires (default API_TOKEN_DAYS, 90).")
def sensor_token_command(location_code, username, name, days):
    """Print a new token for a sensor: it records readings of that one location and opens nothing else."""
    user = _user_named(username)
    location_id = db.session.scalar(sa.select(Location.id).where(Location.code == location_code.strip().upper()))
    if location_id is None:
        _fail(f"There is no location {location_code!r}.")
    try:
        token = users.create_token(None, user, name, days=days, scope="readings.record", location_id=location_id)
    except DomainError as exc:
        _fail(exc.message)
    click.echo(token)


@click.command("revoke-tokens")
@click.argument("username")
def revoke_tokens_command(username):
    """Revoke every live API token of USERNAME (e.g. a lost scanner or a leaked token)."""
    user = _user_named(username)
    revoked = users.revoke_tokens(None, user)
    click.echo(f"Revoked {len(revoked)} API token(s) of {user.username}.")


def _user_named(username: str) -> User:
    user = db.session.scalar(sa.select(User).where(User.username == username.strip().lower()))
    if user is None:
        _fail(f"No user named {username!r}.")
    return user


@audit_cli.command("verify")
@click.option("--accept-rewind", is_flag=True,
              help="After restoring a PostgreSQL dump: accept that the newest rows the checkpoints saw are gone "
                   "(recorded in the checkpoint file). Never accepts a changed row.")
def audit_verify_command(accept_rewind):
    """Check the audit chain with the key, and against every checkpoint; exit 1 naming what is wrong.

    A trail that passes gets a new checkpoint (time, rows, head id and hash) in
    AUDIT_CHECKPOINT_FILE, outside the database.
    """
    from .services.audit_checkpoints import append_checkpoint

    report = audit.verify_trail()
    if accept_rewind and report.truncated:
        append_checkpoint("restore", report.checked, report.head_id, report.head_hash,
                          note=f"rewind accepted: {report.problem}")
        click.echo(f"Rewind accepted and recorded in the checkpoint file: {report.problem}.")
        report = audit.verify_trail()
    if not report.ok:
        _fail(report.message)
    click.echo(report.message)
    checkpoint = append_checkpoint("verify", report.checked, report.head_id, report.head_hash)
    if checkpoint.head_id is not None:
        click.echo(f"Checkpoint written: {checkpoint.rows:,} rows up to #{checkpoint.head_id:,} "
                   f"(hash {checkpoint.head_hash}).")


@exposure_cli.command("check")
def exposure_check_command():
    """Recount every lot's and batch's exposure from the links; exit 1 naming each item and field that drifted."""
    from .services import exposure

    drifts, rows = exposure.check_all()
    for drift in drifts:
        click.echo(str(drift))
    if drifts:
        _fail(f"{len(drifts)} drifted field{'s' if len(drifts) != 1 else ''} in {rows:,} rows: "
              "run `flask --app wsgi exposure rebuild`.")
    click.echo(f"Exposure counts: {rows:,} rows checked, no drift.")


@exposure_cli.command("rebuild")
def exposure_rebuild_command():
    """Recount every lot's and batch's exposure from the links, set-based, in one transaction."""
    from .services import exposure

    exposure.rebuild_all()
    # A bulk recount of derived rows, outside the services' boundary (no actor, nothing audited).
    db.session.commit()
    rows = db.session.scalar(sa.select(sa.func.count()).select_from(exposure.ExposureCount))
    click.echo(f"Exposure counts rebuilt: {rows:,} rows.")


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


@click.command("seed-scale")
@click.option("--lots", type=click.IntRange(1), help="Ingredient lots (default 20,000 x scale).")
@click.option("--batches", type=click.IntRange(1), help="Batches (default 100,000 x scale).")
@click.option("--sessions", type=click.IntRange(1), help="Treatment sessions, ~2 uses each (default 500,000 x scale).")
@click.option("--patients", type=click.IntRange(1), help="Patients (default 100,000 x scale).")
@click.option("--scale", type=click.FloatRange(0, min_open=True), default=1.0, show_default=True,
              help="Multiply the defaults of the sizes not given, e.g. 0.01.")
@click.option("--seed", type=int, default=1, show_default=True, help="Random seed (same seed, same data).")
@click.option("--sites", type=click.IntRange(1, 999), default=1, show_default=True,
              help="Spread the data over MAIN (the hub) and S002... (each with its staff and locations).")
@click.option("--force", is_flag=True, help="Add to a database that holds records not made by the seed commands.")
def seed_scale_command(lots, batches, sessions, patients, scale, seed, sites, force):
    """Add a large, consistent synthetic data set for benchmarks (appends; never changes existing rows)."""
    import time

    from .scale import SCALE_PASSWORD, ForeignData, Size, seed_scale

    size = Size.from_options(scale, seed, sites, lots=lots, batches=batches, sessions=sessions, patients=patients)
    click.echo(f"Seeding {size.lots:,} lots, {size.batches:,} batches, {size.sessions:,} sessions, "
               f"{size.patients:,} patients over {size.sites:,} site{'s' if size.sites > 1 else ''} "
               f"(seed {size.seed}):")
    started = time.perf_counter()
    try:
        summary = seed_scale(size, force=force, report=click.echo)
    except (ForeignData, ValueError) as exc:
        # The bulk loader commits in chunks of its own, outside the services' boundary: drop its unfinished one.
        db.session.rollback()
        _fail(str(exc))
    if summary.trace_lot:
        lot_id, code, batch_count, use_count = summary.trace_lot
        click.echo(f"Trace lot {code} (id {lot_id}) feeds {batch_count:,} batches and {use_count:,} session uses.")
    click.echo(f"Done in {time.perf_counter() - started:.1f} s. Accounts scale.pharmacist1, scale.pharmacist2, "
               f"scale.technician, scale.practitioner1-3 have the password {SCALE_PASSWORD}.")


@export_cli.command("audit")
@click.option("--start", required=True, type=click.DateTime(formats=["%Y-%m-%d"]),
              help="First clinic day, YYYY-MM-DD.")
@click.option("--end", required=True, type=click.DateTime(formats=["%Y-%m-%d"]),
              help="Last clinic day (inclusive), YYYY-MM-DD.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The .xlsx to write.")
def export_audit_command(start, end, out):
    """Write the audit workbook for clinic days START to END to OUT, with a summary of rows per sheet."""
    import getpass
    import os
    import tempfile

    from flask import current_app

    from . import workbooks

    start, end = start.date(), end.date()
    if end < start:
        _fail(f"The end date {end.isoformat()} is before the start date {start.isoformat()}.")
    if not out.parent.is_dir():
        _fail(f"The folder {out.parent} does not exist.")
    try:
        operator = getpass.getuser()
    except (KeyError, OSError):
        operator = "unknown"
    expected = workbooks.audit_row_counts(start, end)
    # Written beside OUT and renamed at the end: a failed export leaves no half-written file.
    handle, partial = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent)
    os.close(handle)
    try:
        with click.progressbar(length=max(sum(expected.values()), 1), label="Writing the audit workbook",
                               file=sys.stderr) as bar:
            summary = workbooks.audit_workbook(
                partial, start, end, generated_by=f"command line ({operator})",
                clinic_name=current_app.config["CLINIC_NAME"], progress=bar.update)
        os.replace(partial, out)
    finally:
        Path(partial).unlink(missing_ok=True)
    for title, rows in summary.parts:
        click.echo(f"  {title:<22} {rows:>10,}")
    click.echo(f"Wrote {out} ({summary.total:,} rows, clinic days {start.isoformat()} to {end.isoformat()}).")


@click.command("send-digests")
@click.option("--site", "site_code", default=None, metavar="CODE", help="Only this site (default: every due site).")
@click.option("--date", "day", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="The digest of this day (default: each site's today).")
@click.option("--now", "ignore_hour", is_flag=True, help="Do not wait for DIGEST_HOUR of the site's day.")
def send_digests_command(site_code, day, ignore_hour):
    """Prepare today's digests (of the sites whose DIGEST_HOUR has come) and send the mail that waits."""
    from .services import digests, mail

    if not digests.mail_configured():
        _fail("No mail server is set (MAIL_SERVER): digests are read on their page (/digest) only.")
    if site_code:
        try:
            sites.site_by_code(site_code.strip().upper())
        except DomainError as exc:
            _fail(exc.message)
    if digests.base_url_left_default():
        click.echo(f"Warning: {digests.BASE_URL_WARNING}", err=True)
    try:
        prepared = digests.prepare_due(site_code=site_code, day=day.date() if day else None,
                                       ignore_hour=ignore_hour)
    except DomainError as exc:
        _fail(exc.message)
    for item in prepared:
        click.echo(f"Prepared the digest of {item.site_code} for {item.day}: {', '.join(item.recipients)}.")
    if not prepared:
        click.echo("No digest to prepare (each due site's pharmacists with an address have theirs).")
    report = mail.send_due()
    click.echo(f"Sent {len(report.sent)} message(s).")
    for message_id, why in report.cancelled:
        click.echo(f"Message {message_id} cancelled. {why}")
    for message_id, error in report.failed:
        click.echo(f"Message {message_id} not sent: {error}", err=True)
    if report.error:
        click.echo(f"The run stopped, nothing lost (the messages wait): {report.error}", err=True)
    if not report.ok:
        sys.exit(1)


def init_app(app: Flask) -> None:
    from .equipment.commands import create_equipment_command, record_calibration_command
    from .exports.commands import export_jobs_command
    from .jobs.commands import worker_command
    from .people.commands import qualifications_command, record_qualification_command

    for command in (create_user_command, create_site_command, create_location_command, create_token_command,
                    sensor_token_command, revoke_tokens_command, record_qualification_command, qualifications_command,
                    seed_demo_command, backup_command, restore_command, seed_scale_command, create_equipment_command,
                    record_calibration_command, worker_command, send_digests_command):
        app.cli.add_command(command)
    app.cli.add_command(audit_cli)
    export_cli.add_command(export_jobs_command)
    app.cli.add_command(export_cli)
    app.cli.add_command(exposure_cli)
