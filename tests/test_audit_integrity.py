"""An audit chain an insider cannot quietly shorten or rewrite.

Keyed hashes, a database that refuses UPDATE and DELETE of audit rows, and checkpoints
outside the database that `audit verify` and `restore` check.
"""

import hashlib
import json
import multiprocessing
import os
import sqlite3
import stat

import pytest
import sqlalchemy as sa
from openpyxl import load_workbook
from testkit import AUDIT_KEY, count_rows, drop_audit_guards

from compounding import config, workbooks
from compounding.extensions import db
from compounding.models import AuditEvent, Ingredient
from compounding.models.audit import KEYED_SCHEME, LEGACY_SCHEME
from compounding.services import audit
from compounding.services.audit_checkpoints import append_checkpoint, checkpoint_path, read_checkpoints
from compounding.services.clock import clinic_today


@pytest.fixture
def trail(make_user):
    """Sixty honest audit rows after an account's own; returns the ids in order."""
    actor = make_user("pharmacist")
    for n in range(60):
        audit.record(actor, "test.event", "lot", n, new={"n": n})
    db.session.commit()
    return list(db.session.scalars(sa.select(AuditEvent.id).order_by(AuditEvent.id)))


def _verify(runner):
    result = runner.invoke(args=["audit", "verify"])
    return result.exit_code, result.output + (result.stderr or "")


def _delete_newest(count: int) -> None:
    drop_audit_guards()
    newest = sa.select(AuditEvent.id).order_by(AuditEvent.id.desc()).limit(count).scalar_subquery()
    db.session.execute(sa.delete(AuditEvent).where(AuditEvent.id.in_(newest)))
    db.session.commit()


# --- truncation is caught by the checkpoints outside the database --------------------------


def test_audit_verify_writes_a_checkpoint_of_the_trail_it_verified(runner, trail):
    exit_code, output = _verify(runner)
    assert exit_code == 0, output
    [checkpoint] = read_checkpoints()
    head = db.session.get(AuditEvent, trail[-1])
    assert (checkpoint.kind, checkpoint.rows, checkpoint.head_id, checkpoint.head_hash) == (
        "verify", len(trail), head.id, head.hash)
    assert f"Checkpoint written: {len(trail)} rows up to #{head.id} (hash {head.hash})." in output


@pytest.mark.parametrize("deleted", [1, 50, "all"])
def test_deleting_the_newest_rows_after_a_checkpoint_fails_verify_naming_the_missing_rows(runner, trail, deleted):
    assert _verify(runner)[0] == 0
    head_id, head_hash = db.session.execute(sa.select(AuditEvent.id, AuditEvent.hash).where(
        AuditEvent.id == trail[-1])).one()
    deleted = len(trail) if deleted == "all" else deleted
    _delete_newest(deleted)

    exit_code, output = _verify(runner)
    assert exit_code == 1, output
    assert "0 rows verified" not in output
    first_missing = trail[-deleted]
    assert (f"saw {len(trail)} rows up to #{head_id} (hash {head_hash[:12]}...); the database has "
            f"{len(trail) - deleted}: rows #{first_missing} to #{head_id} are missing") in output, output


def test_rows_removed_and_replaced_by_new_honest_ones_still_fail_verify(runner, trail, make_user):
    assert _verify(runner)[0] == 0
    _delete_newest(5)
    actor = make_user("technician")  # five new rows (one for the account) fill the gap
    for n in range(4):
        audit.record(actor, "test.event", "lot", n)
    db.session.commit()
    assert audit.verify_chain().ok  # the chain alone cannot see it

    exit_code, output = _verify(runner)
    assert exit_code == 1
    assert "checkpoint of" in output and f"#{trail[-1]}" in output and "removed" in output, output


def test_the_checkpoint_message_reads_like_the_design_example(app):
    append_checkpoint("verify", 1234, 1234, "abc123" + "0" * 58)
    report = audit.verify_trail()
    assert not report.ok
    assert report.message.endswith("saw 1,234 rows up to #1,234 (hash abc123000000...); the database has 0: "
                                   "rows #1 to #1,234 are missing.")
    assert " UTC saw 1,234 rows" in report.message


def test_a_damaged_checkpoint_file_fails_verify_naming_the_line(runner, trail):
    assert _verify(runner)[0] == 0
    with open(checkpoint_path(), "a") as handle:
        handle.write("{not json\n")
    exit_code, output = _verify(runner)
    assert exit_code == 1
    assert "line 2 of the checkpoint file" in output


def test_the_checkpoint_file_is_private_to_the_service_account(runner, trail):
    assert _verify(runner)[0] == 0
    assert stat.S_IMODE(os.stat(checkpoint_path()).st_mode) == 0o600


def _append_many(path: str, worker: int, count: int) -> None:
    for n in range(count):
        append_checkpoint("verify", n, n + 1, f"{worker:02d}" * 32, note="x" * 200, path=path)


def test_several_processes_appending_checkpoints_at_once_leave_every_line_whole(tmp_path):
    path = str(tmp_path / "checkpoints.jsonl")
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_append_many, args=(path, worker, 300)) for worker in range(4)]
    for process in workers:
        process.start()
    for process in workers:
        process.join()
        assert process.exitcode == 0
    checkpoints = read_checkpoints(path)
    assert len(checkpoints) == 4 * 300
    for worker in range(4):
        assert sorted(c.rows for c in checkpoints if c.head_hash == f"{worker:02d}" * 32) == list(range(300))


# --- a rewrite needs the key -----------------------------------------------------------------


def _rewrite_from(row_id: int, hasher, scheme: str) -> None:
    """Edit one row's reason and recompute its hash and every later one with `hasher`."""
    drop_audit_guards()
    rows = db.session.scalars(sa.select(AuditEvent).order_by(AuditEvent.id)).all()
    prev = None
    for row in rows:
        if row.id == row_id:
            row.reason = "rewritten later"
        if row.id >= row_id:
            row.prev_hash = prev.hash if prev else audit.GENESIS_HASH
            row.hash_scheme = scheme
            row.hash = hasher(row.prev_hash, row)
        prev = row
    db.session.commit()


def _unkeyed(prev_hash, row):  # the application's own function before the key
    return hashlib.sha256((prev_hash + audit.canonical_content(row)).encode("utf-8")).hexdigest()


def _other_key(prev_hash, row):
    return audit.chain_hash(prev_hash, row, key=b"a key guessed by the insider")


@pytest.mark.parametrize(("hasher", "scheme", "message"), [
    (_unkeyed, KEYED_SCHEME, "AUDIT_KEY is not the key"),
    (_other_key, KEYED_SCHEME, "AUDIT_KEY is not the key"),
    (_unkeyed, LEGACY_SCHEME, "hashed without the audit key after keyed rows"),
], ids=["unkeyed", "another key", "marked as written before the key"])
def test_a_row_edited_and_rehashed_without_the_key_fails_verify_at_that_row(runner, trail, hasher, scheme,
                                                                           message):
    target = trail[30]
    _rewrite_from(target, hasher, scheme)
    exit_code, output = _verify(runner)
    assert exit_code == 1
    assert f"BROKEN at row {target}:" in output and message in output, output


def test_the_whole_trail_rehashed_as_if_written_before_the_key_fails_verify(runner, trail):
    _rewrite_from(trail[0], _unkeyed, LEGACY_SCHEME)
    exit_code, output = _verify(runner)
    assert exit_code == 1
    assert "every row is hashed without the audit key" in output


def test_with_the_key_the_same_rewrite_passes_the_chain_so_the_key_is_what_protects_it(trail):
    _rewrite_from(trail[30], lambda prev, row: audit.chain_hash(prev, row), KEYED_SCHEME)
    assert audit.verify_chain().ok


def test_verify_with_a_wrong_key_fails_clearly_at_the_first_keyed_row(runner, app, trail, monkeypatch):
    monkeypatch.setitem(app.config, "AUDIT_KEY", "not-the-key")
    exit_code, output = _verify(runner)
    assert exit_code == 1
    assert f"BROKEN at row {trail[0]}:" in output
    assert "AUDIT_KEY is not the key the trail was written with" in output


def test_new_rows_are_keyed_hmacs_and_the_key_is_not_in_the_database(trail):
    row = db.session.get(AuditEvent, trail[-1])
    assert row.hash_scheme == KEYED_SCHEME
    assert row.hash != _unkeyed(row.prev_hash, row)
    import hmac
    message = (row.prev_hash + audit.canonical_content(row)).encode()
    assert row.hash == hmac.new(AUDIT_KEY.encode(), message, hashlib.sha256).hexdigest()


def test_the_audit_key_file_is_made_once_private_and_apart_from_the_secret_key(tmp_path):
    key = config.instance_audit_key(str(tmp_path))
    path = tmp_path / "audit_key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(key) == 64 and config.instance_audit_key(str(tmp_path)) == key
    assert config.instance_secret_key(str(tmp_path)) != key
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit_key", "secret_key"]


# --- the database refuses to change or remove audit rows -----------------------------------


def _orm_update(row_id):
    db.session.get(AuditEvent, row_id).reason = "edited"
    db.session.flush()


def _orm_delete(row_id):
    db.session.delete(db.session.get(AuditEvent, row_id))
    db.session.flush()


@pytest.mark.parametrize("change", [
    lambda i: db.session.execute(sa.text("UPDATE audit_events SET reason = 'x' WHERE id = :id"), {"id": i}),
    lambda i: db.session.execute(sa.text("DELETE FROM audit_events WHERE id = :id"), {"id": i}),
    lambda i: db.session.execute(sa.text("DELETE FROM audit_events")),
    _orm_update,
    _orm_delete,
], ids=["sql update", "sql delete", "delete everything", "orm update", "orm delete"])
def test_the_database_refuses_to_update_or_delete_an_audit_row(trail, change):
    before = count_rows(AuditEvent)
    with pytest.raises(sa.exc.IntegrityError, match="audit rows are append-only"):
        change(trail[10])
    db.session.rollback()
    assert count_rows(AuditEvent) == before
    assert db.session.get(AuditEvent, trail[10]).reason == ""


def test_postgresql_also_refuses_to_truncate_the_audit_table(trail):
    if db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no TRUNCATE; its DELETE is refused row by row")
    with pytest.raises(sa.exc.IntegrityError, match="audit rows are append-only: TRUNCATE"):
        db.session.execute(sa.text("TRUNCATE audit_events CASCADE"))
    db.session.rollback()
    assert count_rows(AuditEvent) == len(trail)


# --- the audit workbook carries the checkpoint ---------------------------------------------


def test_the_audit_workbook_cover_shows_the_trail_count_and_head_hash_and_writes_a_checkpoint(runner, trail,
                                                                                            tmp_path):
    out = tmp_path / "audit.xlsx"
    today = clinic_today()
    workbooks.audit_workbook(out, today, today, generated_by="Test", clinic_name="Test Clinic")
    head_id, head_hash = db.session.execute(sa.select(AuditEvent.id, AuditEvent.hash).where(
        AuditEvent.id == trail[-1])).one()
    cover = {row[0].value: row[1].value for row in load_workbook(out)["Cover"].iter_rows() if row[0].value}
    assert cover["Audit trail rows (whole trail)"] == len(trail)
    assert cover["Audit trail newest row"] == head_id
    assert cover["Audit trail newest row's hash"] == head_hash
    [checkpoint] = read_checkpoints()
    assert (checkpoint.kind, checkpoint.rows, checkpoint.head_hash) == ("workbook", len(trail), head_hash)

    _delete_newest(3)
    exit_code, output = _verify(runner)
    assert exit_code == 1 and f"rows #{trail[-3]} to #{head_id} are missing" in output


# --- restore verifies the backup before it replaces anything -------------------------------


@pytest.fixture
def backed_up(app, runner, make_ingredient, tmp_path):
    """A live SQLite database with a backup of it; returns the backup's path."""
    if db.engine.dialect.name != "sqlite":
        pytest.skip("backup and restore are for the embedded SQLite database; PostgreSQL uses pg_dump")
    db.session.execute(sa.text("CREATE TABLE IF NOT EXISTS alembic_version (version_num VARCHAR(32) NOT NULL)"))
    db.session.commit()
    make_ingredient(name="Biotin")
    path = tmp_path / "clinic.sqlite"
    result = runner.invoke(args=["backup", "--out", str(path)])
    assert result.exit_code == 0, result.output
    return path


def _in_backup(path, *statements):
    connection = sqlite3.connect(path)
    try:
        connection.execute("DROP TRIGGER IF EXISTS audit_events_no_update")
        connection.execute("DROP TRIGGER IF EXISTS audit_events_no_delete")
        for statement in statements:
            connection.execute(statement)
        connection.commit()
    finally:
        connection.close()


def _live_state():
    return (sorted(db.session.scalars(sa.select(Ingredient.name))), count_rows(AuditEvent))


@pytest.mark.parametrize("tampering", [
    ["UPDATE audit_events SET reason = 'forged' WHERE id = (SELECT max(id) - 1 FROM audit_events)"],
    ["DELETE FROM audit_events WHERE id = (SELECT max(id) FROM audit_events)"],
    ["DELETE FROM audit_events"],
], ids=["edited row", "newest row cut", "every row cut"])
def test_restoring_a_tampered_backup_is_refused_and_the_live_database_is_untouched(
        backed_up, runner, make_ingredient, tampering):
    make_ingredient(name="Minoxidil")
    before = _live_state()
    _in_backup(backed_up, *tampering)

    result = runner.invoke(args=["restore", "--from", str(backed_up), "--yes"])
    assert result.exit_code == 1, result.output
    assert "nothing was restored" in result.output
    db.session.expire_all()
    assert _live_state() == before
    assert [c.kind for c in read_checkpoints()] == ["backup"]


def test_restoring_an_honest_backup_after_later_checkpoints_rewinds_and_verify_still_passes(
        backed_up, runner, make_ingredient):
    make_ingredient(name="Minoxidil")
    assert _verify(runner)[0] == 0  # this checkpoint saw rows the backup does not hold

    result = runner.invoke(args=["restore", "--from", str(backed_up), "--yes"])
    assert result.exit_code == 0, result.output
    db.session.expire_all()
    assert _live_state()[0] == ["Biotin"]
    assert [c.kind for c in read_checkpoints()] == ["backup", "verify", "restore"]
    exit_code, output = _verify(runner)
    assert exit_code == 0, output


def test_a_backup_cut_to_where_no_backup_was_taken_is_refused_naming_the_missing_rows(backed_up, runner):
    rows = count_rows(AuditEvent)
    _in_backup(backed_up, "DELETE FROM audit_events WHERE id > (SELECT max(id) - 2 FROM audit_events)")
    result = runner.invoke(args=["restore", "--from", str(backed_up), "--yes"])
    assert result.exit_code == 1
    assert f"the backup has {rows - 2}: rows #{rows - 1} to #{rows} are missing" in result.output


def test_a_backup_written_with_another_key_is_refused(backed_up, runner, app, monkeypatch):
    monkeypatch.setitem(app.config, "AUDIT_KEY", "another-clinic's-key")
    result = runner.invoke(args=["restore", "--from", str(backed_up), "--yes"])
    assert result.exit_code == 1
    assert "AUDIT_KEY is not the key" in result.output


def test_checkpoint_lines_are_plain_json_an_inspector_can_read(runner, trail):
    assert _verify(runner)[0] == 0
    record = json.loads(checkpoint_path().read_text().splitlines()[0])
    assert set(record) == {"at", "kind", "rows", "head_id", "head_hash", "note"}


# --- PostgreSQL restores with pg_restore: an operator accepts the rewind explicitly ---------


def test_accept_rewind_records_a_restore_so_verify_passes_again(runner, trail):
    assert _verify(runner)[0] == 0
    _delete_newest(3)  # what a dump taken three rows ago brings back
    assert _verify(runner)[0] == 1

    result = runner.invoke(args=["audit", "verify", "--accept-rewind"])
    assert result.exit_code == 0, result.output
    assert "Rewind accepted and recorded in the checkpoint file: the checkpoint of" in result.output
    assert f"rows #{trail[-3]} to #{trail[-1]} are missing" in result.output
    assert [c.kind for c in read_checkpoints()] == ["verify", "restore", "verify"]
    assert _verify(runner)[0] == 0


def test_accept_rewind_never_accepts_a_changed_row(runner, trail):
    assert _verify(runner)[0] == 0
    _rewrite_from(trail[30], _other_key, KEYED_SCHEME)
    result = runner.invoke(args=["audit", "verify", "--accept-rewind"])
    assert result.exit_code == 1
    assert [c.kind for c in read_checkpoints()] == ["verify"]
