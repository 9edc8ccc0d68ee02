"""Backups: back up, change data, restore, and the data and the audit chain are as they were."""

import pytest
import sqlalchemy as sa
from testkit import bearer, sign_in

from compounding.extensions import db
from compounding.models import AuditEvent, Ingredient
from compounding.services import users


@pytest.fixture
def sqlite_only(app):
    if db.engine.dialect.name != "sqlite":
        pytest.skip("the backup command is for the embedded SQLite database; PostgreSQL uses pg_dump")


def _stamp_schema():
    # The suite builds its schema with create_all; a real database carries Alembic's version row.
    db.session.execute(sa.text("CREATE TABLE IF NOT EXISTS alembic_version (version_num VARCHAR(32) NOT NULL)"))
    db.session.commit()


def test_backup_then_restore_brings_back_the_data_and_the_audit_chain(sqlite_only, runner, make_ingredient,
                                                                      tmp_path):
    _stamp_schema()
    make_ingredient(name="Biotin")
    audit_rows = db.session.scalar(sa.select(sa.func.count(AuditEvent.id)))
    backup = tmp_path / "clinic.sqlite"
    result = runner.invoke(args=["backup", "--out", str(backup)])
    assert result.exit_code == 0, result.output
    assert backup.stat().st_size > 0

    make_ingredient(name="Minoxidil")
    db.session.execute(sa.update(Ingredient).where(Ingredient.name == "Biotin").values(strength="changed"))
    db.session.commit()

    result = runner.invoke(args=["restore", "--from", str(backup), "--yes"])
    assert result.exit_code == 0, result.output
    assert "audit trail intact" in result.output
    names = db.session.scalars(sa.select(Ingredient.name).order_by(Ingredient.name)).all()
    assert names == ["Biotin"]
    assert db.session.scalar(sa.select(Ingredient.strength)) == "10 mg/mL"
    # The backup's trail, then the restore's own row: access granted since the backup ended.
    assert db.session.scalar(sa.select(sa.func.count(AuditEvent.id))) == audit_rows + 1
    assert db.session.scalar(sa.select(AuditEvent.action).order_by(AuditEvent.id.desc()).limit(1)) == (
        "backup.restored_access_ended")
    assert runner.invoke(args=["audit", "verify"]).exit_code == 0


def test_a_backup_never_overwrites_an_existing_file(sqlite_only, runner, tmp_path):
    target = tmp_path / "exists.sqlite"
    target.write_text("keep me")
    result = runner.invoke(args=["backup", "--out", str(target)])
    assert result.exit_code == 1 and "exists already" in result.output
    assert target.read_text() == "keep me"


def test_restoring_a_file_that_is_not_a_backup_is_refused_and_changes_nothing(sqlite_only, runner,
                                                                             make_ingredient, tmp_path):
    make_ingredient(name="Biotin")
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database at all" * 100)
    result = runner.invoke(args=["restore", "--from", str(junk), "--yes"])
    assert result.exit_code == 1 and "not" in result.output
    assert db.session.scalar(sa.select(sa.func.count(Ingredient.id))) == 1


def test_on_postgresql_the_backup_command_points_to_pg_dump(app, runner, tmp_path):
    if db.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL only")
    result = runner.invoke(args=["backup", "--out", str(tmp_path / "x.sqlite")])
    assert result.exit_code == 1 and "pg_dump" in result.output


def test_a_restore_revives_no_token_revoked_and_no_session_ended_since_the_backup(sqlite_only, runner, client,
                                                                                make_user, tmp_path):
    _stamp_schema()
    user = make_user("pharmacist")
    token = users.create_token(None, user, "scanner")
    sign_in(client, user)
    backup = tmp_path / "clinic.sqlite"
    assert runner.invoke(args=["backup", "--out", str(backup)]).exit_code == 0
    users.revoke_tokens(None, user)  # revoked after the backup was taken...
    db.session.commit()

    result = runner.invoke(args=["restore", "--from", str(backup), "--yes"])

    assert result.exit_code == 0, result.output
    # ...and the backup's copy of it, live there, does not come back to life.
    assert client.get("/api/v1/lots", headers=bearer(token)).status_code == 401
    assert client.get("/").status_code == 302  # every browser signs in again
    assert runner.invoke(args=["audit", "verify"]).exit_code == 0
