"""Checkpoints of the audit trail kept outside the database, so truncation shows.

Each `audit verify`, audit workbook, backup and restore appends one JSON line (time, row
count, head row id and hash) to AUDIT_CHECKPOINT_FILE. Someone who can write the database
but not that file can no longer remove the newest rows unnoticed: `audit verify` finds
fewer rows than a checkpoint saw, or another hash at its head.
"""

import json
import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from flask import current_app

from ..extensions import db
from ..models import AuditEvent
from .clock import utcnow

KINDS = ("verify", "workbook", "backup", "restore")


class CheckpointFileError(ValueError):
    """The checkpoint file holds a line that is not a checkpoint."""


@dataclass(frozen=True)
class Checkpoint:
    at: datetime
    kind: str
    rows: int
    head_id: int | None
    head_hash: str | None
    note: str = ""

    @property
    def when(self) -> str:
        return self.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")

    @property
    def short_hash(self) -> str:
        return f"{(self.head_hash or '')[:12]}..."

    def matches(self, rows: int, head_id: int | None, head_hash: str | None) -> bool:
        return (self.rows, self.head_id, self.head_hash) == (rows, head_id, head_hash)


def checkpoint_path() -> Path:
    return Path(current_app.config["AUDIT_CHECKPOINT_FILE"])


def trail_head() -> tuple[int, int | None, str | None]:
    """The live trail's row count, newest row id and its hash."""
    rows, head_id = db.session.execute(sa.select(sa.func.count(AuditEvent.id), sa.func.max(AuditEvent.id))).one()
    head_hash = db.session.scalar(sa.select(AuditEvent.hash).where(AuditEvent.id == head_id)) if head_id else None
    return rows, head_id, head_hash


def append_checkpoint(kind: str, rows: int, head_id: int | None, head_hash: str | None, *,
                      note: str = "", path: Path | None = None) -> Checkpoint:
    """Append one line; several processes may append at once (one O_APPEND write each, never mixed)."""
    checkpoint = Checkpoint(utcnow(), kind, rows, head_id, head_hash, note)
    record = asdict(checkpoint) | {"at": checkpoint.at.astimezone(UTC).isoformat()}
    data = (json.dumps(record, sort_keys=True) + "\n").encode("utf-8")
    path = Path(path or checkpoint_path())
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        if os.write(fd, data) != len(data):
            raise OSError(f"could not append a whole checkpoint to {path}")
    finally:
        os.close(fd)
    return checkpoint


def write_checkpoint(kind: str, *, note: str = "") -> Checkpoint:
    """A checkpoint of the live trail as it is now."""
    return append_checkpoint(kind, *trail_head(), note=note)


def _parse(line: str) -> Checkpoint:
    record = json.loads(line)
    at = datetime.fromisoformat(record["at"])
    if at.tzinfo is None or record["kind"] not in KINDS:
        raise ValueError("not a checkpoint")
    rows, head_id, head_hash = record["rows"], record["head_id"], record["head_hash"]
    if not isinstance(rows, int) or rows < 0 or (head_id is None) != (head_hash is None) or (
            head_id is not None and not (isinstance(head_id, int) and isinstance(head_hash, str))):
        raise ValueError("not a checkpoint")
    return Checkpoint(at, record["kind"], rows, head_id, head_hash, str(record.get("note", "")))


def read_checkpoints(path: Path | None = None) -> list[Checkpoint]:
    """Every checkpoint in file order; none when the file does not exist yet."""
    path = Path(path or checkpoint_path())
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    checkpoints = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            checkpoints.append(_parse(line))
        except (ValueError, KeyError, TypeError):
            raise CheckpointFileError(f"line {number} of the checkpoint file {path} is not a checkpoint; "
                                      "it was damaged or edited") from None
    return checkpoints


def in_force(checkpoints: list[Checkpoint]) -> list[Checkpoint]:
    """The checkpoints the trail must still agree with.

    A restore rewinds the trail on purpose: the checkpoints before it that saw rows past
    the restored head describe a history the restore replaced (it says so in its own line).
    """
    kept: list[Checkpoint] = []
    for checkpoint in checkpoints:
        if checkpoint.kind == "restore":
            kept = [c for c in kept if c.head_id is None or (c.head_id <= (checkpoint.head_id or 0))]
        kept.append(checkpoint)
    return kept


class CheckpointWalk:
    """Compares checkpoints with the trail while services.audit.verify_chain walks it in id order."""

    def __init__(self, checkpoints, subject: str = "the database"):
        self.subject = subject
        self.pending = sorted((c for c in in_force(list(checkpoints)) if c.head_id is not None),
                              key=lambda c: (c.head_id, c.at))

    def before(self, row_id: int, rows_through: int, row_hash: str) -> str:
        """Problems with the checkpoints whose head is this row, or a row already passed."""
        while self.pending and self.pending[0].head_id <= row_id:
            checkpoint = self.pending.pop(0)
            if checkpoint.head_id < row_id:
                return (f"the checkpoint of {checkpoint.when} ended at row #{checkpoint.head_id:,} "
                        f"(hash {checkpoint.short_hash}), which is no longer in the trail: rows were removed")
            if checkpoint.head_hash != row_hash:
                return (f"its hash {row_hash[:12]}... is not the {checkpoint.short_hash} the checkpoint of "
                        f"{checkpoint.when} saw: rows up to #{row_id:,} were removed or rewritten")
            if checkpoint.rows != rows_through:
                return (f"the checkpoint of {checkpoint.when} saw {checkpoint.rows:,} rows up to it; "
                        f"{self.subject} has {rows_through:,}")
        return ""

    def after(self, rows: int, head_id: int | None) -> str:
        """At the end of the trail: a checkpoint that saw further names the rows now missing."""
        beyond = [c for c in self.pending if c.head_id > (head_id or 0)]
        if not beyond:
            return ""
        last = max(beyond, key=lambda c: (c.head_id, c.rows))
        return (f"the checkpoint of {last.when} saw {last.rows:,} rows up to #{last.head_id:,} "
                f"(hash {last.short_hash}); {self.subject} has {rows:,}: rows #{(head_id or 0) + 1:,} "
                f"to #{last.head_id:,} are missing")
