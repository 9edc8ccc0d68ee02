"""Making an admin, or changing an admin's role, is the acting admin's signed action."""

import pytest
import sqlalchemy as sa
from testkit import PASSWORD, audit_rows, count_rows, fresh

from compounding.extensions import db
from compounding.models import AuditEvent, Signature, User
from compounding.services import users
from compounding.services.errors import SignatureRejected


def _fresh(user_id: int) -> User:
    return fresh(User, user_id)


def _signatures() -> list[tuple]:
    return [(s.signer_id, s.meaning, s.entity_type, s.entity_id)
            for s in db.session.scalars(sa.select(Signature).order_by(Signature.id))]


def _new_admin(**overrides) -> dict:
    data = {"username": "second.admin", "display_name": "Sam Second", "role": "admin",
            "temporary_password": "first-day-pass-9"}
    data.update(overrides)
    return data


NO_SIGNATURE = "To create an administrator, sign with your own password (e-signature). Nothing was changed."
WRONG_PASSWORD = "Signature refused: the password is not correct. Nothing was signed."


@pytest.mark.parametrize(("password", "message"), [
    (None, NO_SIGNATURE), ("", NO_SIGNATURE), ("not-my-password", WRONG_PASSWORD)])
def test_creating_an_admin_without_the_acting_admin_s_own_password_is_refused(admin, password, message):
    before = count_rows(User), count_rows(AuditEvent), count_rows(Signature)
    with pytest.raises(SignatureRejected) as caught:
        users.create_user(admin, username="second.admin", display_name="Sam", role="admin", password=PASSWORD,
                          actor_password=password)
    assert (caught.value.status_code, caught.value.field, caught.value.message) == (403, "password", message)
    db.session.rollback()
    # A wrong password is a failed signature: counted and audited, nothing else written.
    refused = 1 if password else 0
    assert (count_rows(User), count_rows(AuditEvent), count_rows(Signature)) == (
        before[0], before[1] + refused, before[2])
    assert len(audit_rows("signature.refused")) == refused


def test_an_admin_created_with_the_signature_carries_it(admin):
    created = users.create_user(admin, username="second.admin", display_name="Sam", role="admin",
                                password=PASSWORD, actor_password=PASSWORD)
    assert _signatures() == [(admin.id, "admin created", "user", created.id)]
    [event] = audit_rows("user.created", "user", created.id)
    assert event.actor_id == admin.id and event.new_values["role"] == "admin"


def test_other_roles_are_created_without_a_signature(admin):
    users.create_user(admin, username="tech", display_name="Tia Tech", role="technician", password=PASSWORD)
    assert _signatures() == []


@pytest.mark.parametrize(("extra", "status"), [({}, 403), ({"password": "not-my-password"}, 403),
                                                ({"password": PASSWORD}, 302)])
def test_the_admin_page_creates_an_admin_only_with_the_acting_admin_s_password(client, admin, extra, status):
    response = client.post("/admin/users/new", data={**_new_admin(), **extra})
    assert response.status_code == status
    created = db.session.scalar(sa.select(User).where(User.username == "second.admin"))
    if status == 403:
        assert created is None
        assert "password" in response.get_data(as_text=True)
        assert "not-my-password" not in response.get_data(as_text=True)  # never echoed back
    else:
        assert created.role == "admin"
        assert _signatures() == [(admin.id, "admin created", "user", created.id)]


@pytest.mark.parametrize(("before", "after"), [("admin", "auditor"), ("pharmacist", "admin")])
def test_changing_a_role_to_or_from_admin_needs_the_acting_admin_s_password(client, make_user, admin, before,
                                                                            after):
    other = make_user(before, display_name="Olga Other")
    for extra in ({}, {"password": "not-my-password"}):
        response = client.post(f"/admin/users/{other.id}", data={"display_name": "Olga Other", "role": after,
                                                                 **extra})
        assert response.status_code == 403
        assert _fresh(other.id).role == before
    assert audit_rows("user.updated") == [] and _signatures() == []
    response = client.post(f"/admin/users/{other.id}", data={"display_name": "Olga Other", "role": after,
                                                             "password": PASSWORD})
    assert response.status_code == 302
    assert _fresh(other.id).role == after
    assert _signatures() == [(admin.id, "role changed", "user", other.id)]
    [event] = audit_rows("user.updated", "user", other.id)
    assert (event.old_values["role"], event.new_values["role"]) == (before, after)


def test_an_admin_cannot_quietly_demote_another_admin_through_the_service(make_user, admin):
    other = make_user("admin", display_name="Olga Other")
    with pytest.raises(SignatureRejected):
        users.update_user(admin, other, display_name="Olga Other", role="technician")
    db.session.rollback()
    assert _fresh(other.id).role == "admin"


def test_renaming_another_admin_or_changing_other_roles_needs_no_signature(make_user, admin):
    other = make_user("admin", display_name="Olga Other")
    users.update_user(admin, other, display_name="Olga O. Other", role="admin")
    tech = make_user("technician")
    users.update_user(admin, tech, display_name="Tia Tech", role="pharmacist")
    assert _signatures() == []


def test_the_operator_s_command_line_creates_an_admin_without_a_signature(runner):
    result = runner.invoke(args=["create-user", "root.admin", "--role", "admin", "--password", PASSWORD,
                                 "--name", "Rita Root"])
    assert result.exit_code == 0, result.output
    created = db.session.scalar(sa.select(User).where(User.username == "root.admin"))
    assert created.role == "admin"
    [event] = audit_rows("user.created", "user", created.id)
    assert event.actor_id is None and "command line" in event.reason


def test_a_refused_admin_creation_is_audited_as_intended_never_against_the_id_the_next_account_gets(admin):
    with pytest.raises(SignatureRejected):
        users.create_user(admin, username="second.admin", display_name="Sam", role="admin", password=PASSWORD,
                          actor_password="not-my-password")
    db.session.rollback()
    nurse = users.create_user(admin, username="tia", display_name="Tia Tech", role="technician", password=PASSWORD)

    [refused] = audit_rows("signature.refused")
    assert refused.entity_type == "user" and refused.entity_id is None
    assert refused.new_values["not_created"].startswith("user ")
    assert [e.action for e in audit_rows(entity_type="user", entity_id=nurse.id)] == ["user.created"]
