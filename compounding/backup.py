"""Backups of the embedded SQLite database with SQLite's online backup API.

PostgreSQL deployments use pg_dump / pg_restore (see the README): the server's own tools
are consistent under load and restore into a fresh database.
"""

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

from .extensions import db
from .services import users
from .services.audit import ChainReport, trail_rows, verify_chain
from .services.audit_checkpoints import CheckpointFileError, append_checkpoint, read_checkpoints


class BackupError(RuntimeError):
    pass


@contextmanager
def _live_connection() -> Iterator[sqlite3.Connection]:
    """The application's own SQLite connection, checked out of the pool and given back."""
    if db.engine.dialect.name != "sqlite":
        raise BackupError("This database is PostgreSQL: back it up with pg_dump (see the README).")
    pooled = db.engine.raw_connection()
    try:
        yield pooled.driver_connection
    finally:
        pooled.close()


def backup_to(path: str | Path) -> int:
    """Copy the live database to `path` page by page (safe while the app is running).

    The backup's trail (rows, head id and hash) is written as a checkpoint: a later restore
    of this file may rewind the trail to exactly that point, and to no point in between.
    """
    path = Path(path)
    if path.exists():
        raise BackupError(f"{path} exists already; choose a new file name.")
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not a use case: the command ends the session's transaction so none of ours is open while pages are copied.
    db.session.commit()
    target = sqlite3.connect(path)
    try:
        with _live_connection() as source:
            source.backup(target)
    finally:
        target.close()
    with _backup_engine(path) as connection:
        rows, head_id = connection.execute(sa.text("SELECT count(*), max(id) FROM audit_events")).one()
        head_hash = connection.scalar(sa.text("SELECT hash FROM audit_events WHERE id = :id"), {"id": head_id})
    append_checkpoint("backup", rows, head_id, head_hash, note=path.name)
    return path.stat().st_size


class _ReadOnly(sqlite3.Connection):
    """A backup opened read-only; being no plain sqlite3 connection, it skips the live database's
    PRAGMAs (journal_mode=WAL would have to write)."""


@contextmanager
def _backup_engine(path: Path) -> Iterator[sa.Connection]:
    """A read-only SQLAlchemy connection to a backup file (nothing in it can change)."""
    engine = sa.create_engine("sqlite://", creator=lambda: sqlite3.connect(
        f"file:{path}?mode=ro", uri=True, factory=_ReadOnly))
    try:
        with engine.connect() as connection:
            yield connection
    finally:
        engine.dispose()


def verify_backup(path: Path) -> ChainReport:
    """The backup's audit chain, checked with the key and against the checkpoints, before any change.

    The backup may end before the newest checkpoints (that is what a restore rewinds) only
    where a `backup` checkpoint saw exactly its trail: a trail cut anywhere else is refused.
    """
    try:
        checkpoints = read_checkpoints()
    except CheckpointFileError as exc:
        return ChainReport(0, None, str(exc))
    with _backup_engine(path) as connection:
        columns = {column["name"] for column in sa.inspect(connection).get_columns("audit_events")}
        # A backup from before the key has no hash_scheme: every row is unkeyed, as written then.
        legacy = "hash_scheme" not in columns
        report = verify_chain(trail_rows(connection, legacy_only=legacy), checkpoints, require_keyed=not legacy,
                              subject="the backup")
    if report.truncated and any(c.kind == "backup" and c.matches(report.checked, report.head_id, report.head_hash)
                                for c in checkpoints):
        return ChainReport(report.checked, None, "", report.head_id, report.head_hash)
    return report


def restore_from(path: str | Path) -> int:
    """Replace the live database's content with a backup; refuse a file that is not one of ours.

    Stop the application first: a restore rewinds every table, audit trail included. The
    backup is verified first (chain and checkpoints); a tampered or cut one is refused and
    the live database is not touched. Returns the number of audit rows verified.
    """
    path = Path(path)
    if not path.is_file():
        raise BackupError(f"There is no backup file {path}.")
    try:
        backup = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        tables = {row[0] for row in backup.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{path} is not an SQLite backup: {exc}") from None
    try:
        if not {"audit_events", "lots", "batches", "alembic_version"} <= tables:
            raise BackupError(f"{path} is not a backup of this application.")
        report = verify_backup(path)
        if not report.ok:
            raise BackupError(f"Refused: the audit trail in {path} does not verify, so nothing was restored. "
                              f"{report.message}")
        # As for a backup: no transaction of ours may be open while the live database's pages are replaced.
        db.session.commit()
        with _live_connection() as live:
            backup.backup(live)
    finally:
        backup.close()
    db.session.expire_all()
    append_checkpoint("restore", report.checked, report.head_id, report.head_hash, note=path.name)
    # Access granted since the backup was taken must not come back with it.
    users.end_all_access_after_restore()
    return report.checked
