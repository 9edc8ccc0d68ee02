"""Printed names are unique among active accounts: a signature names one person."""

import flask_migrate
import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from testkit import PASSWORD, app_on, audit_rows, count_rows, current_revision, fresh

from compounding.extensions import db, migrate
from compounding.models import AuditEvent, Signature, User
from compounding.services import batches, users
from compounding.services.errors import InvalidState


def _fresh(user_id: int) -> User:
    return fresh(User, user_id)


@pytest.mark.parametrize("clash", ["Dr Pia Grau", "dr pia grau", "  DR PIA GRAU ", "Dr  Pia  Gräu"])
def test_a_new_account_cannot_take_an_active_account_s_printed_name(make_user, admin, clash):
    make_user("pharmacist", username="pia", display_name="Dr Pia Grau")
    before = count_rows(User), count_rows(AuditEvent)
    with pytest.raises(InvalidState) as caught:
        users.create_user(admin, username="impostor", display_name=clash, role="pharmacist", password=PASSWORD)
    assert caught.value.status_code == 409 and caught.value.field == "display_name"
    assert "already used by the active account 'pia'" in caught.value.message
    db.session.rollback()
    assert (count_rows(User), count_rows(AuditEvent)) == before


def test_the_admin_page_refuses_the_clash_with_409_and_says_why(client, make_user, admin):
    make_user("pharmacist", username="pia", display_name="Dr Pia Grau")
    response = client.post("/admin/users/new", data={
        "username": "impostor", "display_name": "dr pia grau ", "role": "pharmacist",
        "temporary_password": "first-day-pass-9"})
    assert response.status_code == 409
    assert "already used by the active account" in response.get_data(as_text=True)
    assert db.session.scalar(sa.select(User.id).where(User.username == "impostor")) is None


def test_the_impostor_of_the_finding_cannot_sign_under_a_colleague_s_name(make_user, admin, make_batch):
    """An admin made a second "Dr Pia Grau", who then verified a batch under that name: refused at creation."""
    make_user("pharmacist", username="pia", display_name="Dr Pia Grau")
    with pytest.raises(InvalidState):
        users.create_user(admin, username="pia2", display_name="Dr Pia Grau", role="pharmacist", password=PASSWORD)
    db.session.rollback()
    batch = make_batch(release=False)
    other = make_user("pharmacist", display_name="Dr Pia Grau-Moll")
    batches.verify_batch(other, batch.id, PASSWORD)
    assert db.session.scalar(sa.select(Signature.signer_name).where(Signature.meaning == "verified")) == (
        "Dr Pia Grau-Moll")


def test_renaming_to_an_active_account_s_printed_name_is_refused_with_409(client, make_user, admin):
    make_user("pharmacist", display_name="Dr Pia Grau")
    tom = make_user("technician", display_name="Tom Baker")
    response = client.post(f"/admin/users/{tom.id}", data={"display_name": "DR PIA GRAU", "role": "technician"})
    assert response.status_code == 409
    assert "already used by the active account" in response.get_data(as_text=True)
    assert _fresh(tom.id).display_name == "Tom Baker"
    assert audit_rows("user.updated") == []


def test_an_account_keeps_its_own_name_when_renamed_in_another_case(make_user, admin):
    tom = make_user("technician", display_name="Tom Baker")
    users.update_user(admin, tom, display_name="TOM BAKER", role="technician")
    assert _fresh(tom.id).display_name == "TOM BAKER"


def test_a_deactivated_account_s_name_may_be_reused_and_blocks_its_reactivation(client, make_user, admin):
    old = make_user("pharmacist", username="pia.old", display_name="Dr Pia Grau")
    users.set_active(admin, old, False, "left")
    new = users.create_user(admin, username="pia.new", display_name="Dr Pia Grau", role="pharmacist",
                            password=PASSWORD)
    assert new.active
    with pytest.raises(InvalidState) as caught:
        users.set_active(admin, old, True, "back")
    assert "already used by the active account 'pia.new'" in caught.value.message
    db.session.rollback()
    response = client.post(f"/admin/users/{old.id}/active", data={"active": "1", "reason": "back"})
    assert response.status_code == 409
    assert "already used by the active account" in response.get_data(as_text=True)
    assert not _fresh(old.id).active
    assert audit_rows("user.activated") == []


def test_the_database_refuses_two_active_accounts_with_one_printed_name(make_user):
    make_user("pharmacist", display_name="Dr Pia Grau")
    db.session.add(User(username="raw", display_name=" dr pia  grau", role="pharmacist", password_hash="x"))
    with pytest.raises(IntegrityError):
        db.session.commit()
    db.session.rollback()
    db.session.add(User(username="raw", display_name="Dr Pia Grau", role="pharmacist", password_hash="x",
                        active=False))
    db.session.commit()  # an inactive account keeps its name: old signatures still read right


# --- the migration ---------------------------------------------------------------------------------------


# The revision the printed-name key migration (c2b0e1a00004) follows.
BEFORE_KEYS = "c2b0e1a00002"


def _accounts_before_the_key(rows) -> None:
    """A database at the revision before printed-name keys, holding these (username, name, active) accounts."""
    flask_migrate.upgrade(directory=migrate.directory, revision=BEFORE_KEYS)
    with db.engine.begin() as connection:
        for username, name, active in rows:
            connection.execute(sa.text(
                "INSERT INTO users (username, display_name, role, password_hash, active, must_change_password, "
                "created_at) VALUES (:u, :n, 'pharmacist', 'x', :a, false, CURRENT_TIMESTAMP)"),
                {"u": username, "n": name, "a": active})


def test_the_migration_lists_active_accounts_sharing_a_printed_name_and_stops(empty_database_url, capfd):  # noqa: F811
    with app_on(empty_database_url):
        _accounts_before_the_key([("pia", "Dr Pia Grau", True), ("pia2", " dr pia grau", True),
                                  ("pia.old", "Dr Pia Grau", False), ("tom", "Tom", True)])
        with pytest.raises(SystemExit):  # flask_migrate logs the error and exits
            flask_migrate.upgrade(directory=migrate.directory, revision="c2b0e1a00004")
        logged = capfd.readouterr().err
        assert "'Dr Pia Grau' (user pia, id 1), ' dr pia grau' (user pia2, id 2)" in logged
        assert "pia.old" not in logged and "'Tom'" not in logged
        assert current_revision() == BEFORE_KEYS
        with db.engine.connect() as connection:  # stopped before any change: fix the data and run it again
            assert "display_name_key" not in {c["name"] for c in sa.inspect(connection).get_columns("users")}


def test_the_migration_folds_existing_names_and_lets_an_inactive_account_keep_its_own(empty_database_url):  # noqa: F811
    with app_on(empty_database_url):
        _accounts_before_the_key([("pia", " Dr  Pia Gräu", True), ("pia.old", "Dr Pia Grau", False)])
        flask_migrate.upgrade(directory=migrate.directory, revision="c2b0e1a00004")
        with db.engine.connect() as connection:
            keys = connection.execute(sa.text("SELECT display_name_key FROM users ORDER BY id")).scalars().all()
    assert keys == ["dr pia grau", "dr pia grau"]


def test_a_printed_name_that_folds_longer_than_its_column_is_kept_not_a_500(make_user):
    # U+FDFA folds to eighteen letters: 20 of them make a key of 360 characters.
    user = make_user("pharmacist", display_name="\ufdfa" * 20)
    assert len(user.display_name_key) == 120
    with pytest.raises(InvalidState):
        make_user("pharmacist", display_name="\ufdfa" * 20)
