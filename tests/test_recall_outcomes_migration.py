"""The migration of revision b1a0d5e70002: existing recall contacts become `reached`, and history is allowed."""

import flask_migrate
import sqlalchemy as sa
from testkit import app_on

from compounding.extensions import db, migrate

BEFORE = "3c1e9a7d2b40"
INSERT = ("INSERT INTO recall_contacts (recall_id, patient_id, contacted_at, contacted_by_id, method, note) "
          "VALUES (1, 1, CURRENT_TIMESTAMP, 1, 'phone', 'left a message')")
INSERT_FAILED = ("INSERT INTO recall_contacts (recall_id, patient_id, contacted_at, contacted_by_id, outcome, note) "
                 "VALUES (1, 1, CURRENT_TIMESTAMP, 1, 'attempt_failed', '')")


def _raw(*statements) -> list:
    """Run statements on a raw connection with foreign keys off: contacts alone, without the rows they name."""
    raw = db.engine.raw_connection()
    try:
        cursor = raw.cursor()
        if db.engine.dialect.name == "postgresql":
            cursor.execute("SET session_replication_role = replica")
        else:
            cursor.execute("PRAGMA foreign_keys = OFF")  # outside a transaction: the connection autocommits
        rows = []
        for statement in statements:
            cursor.execute(statement)
            rows = cursor.fetchall() if cursor.description else rows
        raw.commit()
        return [tuple(row) for row in rows]
    finally:
        raw.close()


def test_existing_contacts_become_reached_and_a_patient_may_then_have_several_rows(empty_database_url):  # noqa: F811
    with app_on(empty_database_url):
        flask_migrate.upgrade(directory=migrate.directory, revision=BEFORE)
        _raw(INSERT)
        flask_migrate.upgrade(directory=migrate.directory)
        assert _raw("SELECT outcome, method FROM recall_contacts") == [("reached", "phone")]
        assert _raw(INSERT_FAILED, "SELECT count(*) FROM recall_contacts") == [(2,)]
        with db.engine.connect() as connection:
            columns = {c["name"] for c in sa.inspect(connection).get_columns("treatment_sessions")}
        assert {"void_code", "corrects_session_id"} <= columns
