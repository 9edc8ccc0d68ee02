"""Backups of the embedded SQLite database with SQLite's online backup API.

PostgreSQL deployments use pg_dump / pg_restore (see the README): the server's own tools
are consistent under load and restore into a fresh database.
"""

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .extensions import db
from .services.audit import verify_chain


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
    """Copy the live database to `path` page by page (safe while the app is running)."""
    path = Path(path)
    if path.exists():
        raise BackupError(f"{path} exists already; choose a new file name.")
    path.parent.mkdir(parents=True, exist_ok=True)
    db.session.commit()  # no transaction of ours is left open while pages are copied
    target = sqlite3.connect(path)
    try:
        with _live_connection() as source:
            source.backup(target)
    finally:
        target.close()
    return path.stat().st_size


def restore_from(path: str | Path) -> int:
    """Replace the live database's content with a backup; refuse a file that is not one of ours.

    Stop the application first: a restore rewinds every table, audit trail included.
    Returns the number of audit rows verified in the restored database.
    """
    path = Path(path)
    if not path.is_file():
        raise BackupError(f"There is no backup file {path}.")
    try:
        backup = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        tables = {row[0] for row in backup.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{path} is not an SQLite backup: {exc}") from None
    if not {"audit_events", "lots", "batches", "alembic_version"} <= tables:
        backup.close()
        raise BackupError(f"{path} is not a backup of this application.")
    db.session.commit()
    try:
        with _live_connection() as live:
            backup.backup(live)
    finally:
        backup.close()
    db.session.expire_all()
    report = verify_chain()
    if not report.ok:
        raise BackupError(f"Restored, but the audit chain is broken at row {report.first_bad_id}: {report.problem}.")
    return report.checked
