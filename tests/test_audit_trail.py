"""The audit trail: written by every service in its own transaction, hash-chained, searchable."""

import re
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from testkit import PASSWORD, audit_rows, count_rows, drop_audit_guards, sign_in_session

from compounding.extensions import UTCDateTime, db
from compounding.models import AuditEvent, Signature, User
from compounding.services import audit, signatures, users
from compounding.services.errors import DomainError, InvalidInput


class CommitCounter:
    """Counts the commits of the current database session while in a `with` block."""

    def __enter__(self):
        self.commits = 0
        self._session = db.session()
        sa.event.listen(self._session, "after_commit", self._count)
        return self

    def _count(self, session):
        self.commits += 1

    def __exit__(self, *exc):
        sa.event.remove(self._session, "after_commit", self._count)


def _new_actions(before_id: int) -> list[str]:
    return list(db.session.scalars(
        sa.select(AuditEvent.action).where(AuditEvent.id > before_id).order_by(AuditEvent.id)))


def _last_id() -> int:
    return db.session.scalar(sa.select(sa.func.coalesce(sa.func.max(AuditEvent.id), 0)))


# --- every service writes its audit rows, with its change, in one commit -------------------


def _service_calls(admin: User, other: User):
    return [
        ("create_user", ["user.created"], lambda: users.create_user(
            admin, username="new.one", display_name="New One", role="auditor", password=PASSWORD)),
        ("authenticate", ["user.signed_in"], lambda: users.authenticate(other.username, PASSWORD)),
        ("change_password", ["user.password_changed"], lambda: users.change_password(
            other, current_password=PASSWORD, new_password="fresh-meadow-88")),
        ("set_temporary_password", ["user.password_reset"], lambda: users.set_temporary_password(
            admin, other, "temporary-pass-7")),
        ("update_user", ["user.updated"], lambda: users.update_user(
            admin, other, display_name="Renamed", role="technician")),
        ("set_active off", ["user.deactivated"], lambda: users.set_active(admin, other, False, "leave")),
        ("set_active on", ["user.activated"], lambda: users.set_active(admin, other, True, "back")),
        ("create_token", ["token.created"], lambda: users.create_token(admin, other, "scanner")),
    ]


def test_every_account_service_writes_its_audit_row_and_commits_once(make_user):
    admin = make_user("admin")
    other = make_user("pharmacist")
    for name, expected, call in _service_calls(admin, other):
        before = _last_id()
        with CommitCounter() as counter:
            call()
        assert _new_actions(before) == expected, name
        assert counter.commits == 1, name
    assert audit.verify_chain().ok


def test_failed_sign_ins_and_the_pause_are_recorded_in_the_same_commit(make_user):
    user = make_user("pharmacist")
    before = _last_id()
    for _ in range(5):
        with CommitCounter() as counter, pytest.raises(DomainError):
            users.authenticate(user.username, "wrong-password-9")
        assert counter.commits == 1
    assert _new_actions(before) == ["user.password_attempts_paused"]
    [event] = audit_rows("user.password_attempts_paused", "user", user.id)
    assert event.actor_name == "system"


def test_a_refused_service_call_writes_no_audit_row(make_user):
    admin = make_user("admin")
    before = _last_id(), count_rows(User)
    with pytest.raises(InvalidInput):
        users.create_user(admin, username="weak", display_name="Weak", role="auditor", password="short")
    db.session.rollback()
    assert (_last_id(), count_rows(User)) == before


def test_a_signature_audits_inside_the_callers_transaction(make_user):
    pharmacist = make_user("pharmacist")
    before = _last_id()
    signatures.sign(pharmacist, PASSWORD, "approved", "formula", 7)
    db.session.rollback()
    assert _new_actions(before) == []
    assert count_rows(Signature) == 0

    signatures.sign(pharmacist, PASSWORD, "approved", "formula", 7)
    db.session.commit()
    assert _new_actions(before) == ["signature.approved"]


# --- audit verify -------------------------------------------------------------------------


@pytest.fixture
def history(make_user):
    """A dozen honest audit rows from real services; returns the id of a middle row."""
    admin = make_user("admin", display_name="Alex Admin")
    user = make_user("technician", display_name="Tom B")
    users.update_user(admin, user, display_name="Tom Baker", role="pharmacist")
    target = _last_id()
    users.set_active(admin, user, False, "on leave")
    users.set_active(admin, user, True, "back")
    users.create_token(admin, user, "scanner")
    signatures.sign(user, PASSWORD, "released", "lot", 1)
    db.session.commit()
    users.authenticate(user.username, PASSWORD)
    assert 1 < target < _last_id()
    return target


def _verify(runner):
    result = runner.invoke(args=["audit", "verify"])
    return result.exit_code, result.output + (result.stderr or "")


def test_audit_verify_passes_on_an_honest_database_and_reports_the_count(runner, history):
    exit_code, output = _verify(runner)
    assert exit_code == 0, output
    assert f"{count_rows(AuditEvent)} rows verified" in output


def test_audit_verify_passes_on_an_empty_trail(runner):
    exit_code, output = _verify(runner)
    assert exit_code == 0
    assert "0 rows verified" in output


def _tamper(event_id: int, column: str, value, type_=None) -> None:
    drop_audit_guards()  # the database refuses the change; an insider with DDL rights drops the guard first
    statement = sa.text(f"UPDATE audit_events SET {column} = :value WHERE id = :id")
    if type_ is not None:
        statement = statement.bindparams(sa.bindparam("value", type_=type_))
    db.session.execute(statement, {"value": value, "id": event_id})
    db.session.commit()


def _forgeries(event: AuditEvent, other_user_id: int):
    return {
        "new_values": ({"display_name": "Tom Baker", "role": "admin"}, sa.JSON()),
        "old_values": ({"display_name": "Tom B", "role": "admin"}, sa.JSON()),
        "actor_name": ("Someone Else", None),
        "actor_id": (other_user_id, None),
        "occurred_at": (event.occurred_at + timedelta(microseconds=1), UTCDateTime()),
        "reason": ("edited later", None),
        "action": ("user.viewed", None),
        "entity_type": ("lot", None),
        "entity_id": (event.entity_id + 1, None),
        "prev_hash": ("0" * 64, None),
        "hash": ("f" * 64, None),
    }


@pytest.mark.parametrize("column", ["new_values", "old_values", "actor_name", "actor_id", "occurred_at",
                                    "reason", "action", "entity_type", "entity_id", "prev_hash", "hash"])
def test_audit_verify_names_the_row_whose_column_was_altered(runner, history, column):
    event = db.session.get(AuditEvent, history)
    other_user_id = db.session.scalar(sa.select(User.id).where(User.id != event.actor_id).limit(1))
    value, type_ = _forgeries(event, other_user_id)[column]
    _tamper(history, column, value, type_)

    exit_code, output = _verify(runner)
    assert exit_code != 0
    assert f"row {history}:" in output, output
    assert audit.verify_chain().first_bad_id == history


def test_audit_verify_detects_a_deleted_middle_row_at_the_next_row(runner, history):
    next_id = db.session.scalar(sa.select(sa.func.min(AuditEvent.id)).where(AuditEvent.id > history))
    drop_audit_guards()
    db.session.execute(sa.text("DELETE FROM audit_events WHERE id = :id"), {"id": history})
    db.session.commit()
    exit_code, output = _verify(runner)
    assert exit_code != 0
    assert f"row {next_id}:" in output, output


# --- the audit trail page -----------------------------------------------------------------


def _at(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture
def dated_trail(make_user, monkeypatch):
    """Audit rows at known times, by two users, about users and lots."""
    alice = make_user("pharmacist", username="alice")
    bob = make_user("technician", username="bob")
    rows = [
        (_at(2026, 3, 1, 9), alice, "lot.received", "lot", 1),
        (_at(2026, 3, 1, 10), bob, "lot.received", "lot", 2),
        (_at(2026, 3, 5, 9), alice, "lot.released", "lot", 1),
        (_at(2026, 3, 5, 11), bob, "lot.adjusted", "lot", 2),
        (_at(2026, 3, 10, 9), alice, "user.updated", "user", bob.id),
        # 23:30 UTC on 30 June is 00:30 on 1 July in London (summer time).
        (_at(2026, 6, 30, 23, 30), bob, "lot.depleted", "lot", 2),
    ]
    ids = {}
    for when, actor, action, entity_type, entity_id in rows:
        monkeypatch.setattr(audit, "utcnow", lambda when=when: when)
        ids[(when, action)] = audit.record(actor, action, entity_type, entity_id).id
    db.session.commit()
    monkeypatch.undo()
    return ids


def _listed_ids(response) -> list[int]:
    assert response.status_code == 200
    return [int(i) for i in re.findall(r'<tr>\s*<td class="code">(\d+)</td>',
                                       response.get_data(as_text=True))]


def _ids_where(*conditions) -> list[int]:
    return list(db.session.scalars(sa.select(AuditEvent.id).where(*conditions)
                                   .order_by(AuditEvent.id.desc())))


@pytest.mark.parametrize(("query", "condition"), [
    ("entity_type=lot", lambda: AuditEvent.entity_type == "lot"),
    ("entity_type=lot&entity_id=2", lambda: sa.and_(AuditEvent.entity_type == "lot",
                                                    AuditEvent.entity_id == 2)),
    ("user=ALICE", lambda: AuditEvent.actor_id == sa.select(User.id).where(User.username == "alice")
     .scalar_subquery()),
    ("action=lot.re", lambda: AuditEvent.action.in_(["lot.received", "lot.released"])),
    ("action=lot.", lambda: AuditEvent.action.startswith("lot.")),
    ("action=lot_", lambda: sa.false()),
    ("start=2026-03-04&end=2026-03-05", lambda: AuditEvent.action.in_(["lot.released", "lot.adjusted"])),
    ("start=2026-03-02", lambda: AuditEvent.occurred_at >= _at(2026, 3, 2)),
    ("end=2026-03-01", lambda: AuditEvent.occurred_at < _at(2026, 3, 2)),
    ("start=2026-07-01&end=2026-07-01", lambda: AuditEvent.action == "lot.depleted"),
    ("start=2026-06-30&end=2026-06-30", lambda: sa.false()),
    ("user=bob&action=lot.&start=2026-03-02&end=2026-03-31", lambda: AuditEvent.action == "lot.adjusted"),
])
def test_the_audit_page_filters_by_entity_record_user_action_and_clinic_dates(
        client, make_user, dated_trail, query, condition):
    sign_in_session(client, make_user("auditor"))
    expected = _ids_where(condition())
    assert _listed_ids(client.get(f"/audit?{query}")) == expected


def test_the_audit_page_lists_newest_first_and_paginates(client, make_user):
    actor = make_user("pharmacist")
    for n in range(55):
        audit.record(actor, "test.event", "lot", n)
    db.session.commit()
    sign_in_session(client, make_user("auditor"))
    total = count_rows(AuditEvent)
    first = _listed_ids(client.get("/audit"))
    second = _listed_ids(client.get("/audit?page=2"))
    assert len(first) == 50
    assert first == sorted(first, reverse=True)
    assert len(second) == total - 50
    assert max(second) < min(first)
    assert f"{total} in all." in client.get("/audit").get_data(as_text=True)


def test_a_bad_date_filter_shows_a_message_instead_of_failing(client, make_user, dated_trail):
    sign_in_session(client, make_user("auditor"))
    response = client.get("/audit?start=2026-13-45")
    assert response.status_code == 200
    assert "Use a date such as" in response.get_data(as_text=True)


@pytest.mark.parametrize(("role", "status"), [
    ("admin", 200), ("pharmacist", 200), ("auditor", 200), ("technician", 403), ("practitioner", 403)])
def test_the_audit_page_is_for_admin_pharmacist_and_auditor_only(client, make_user, role, status):
    sign_in_session(client, make_user(role))
    assert client.get("/audit").status_code == status
