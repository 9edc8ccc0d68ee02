"""Account administration: creating, editing, deactivating and reactivating users."""

import re

import pytest
import sqlalchemy as sa
from testkit import PASSWORD, audit_rows, count_rows, fresh, sign_in

from compounding.extensions import db
from compounding.models import AuditEvent, User


def _fresh(user_id: int) -> User:
    return fresh(User, user_id)


def _field_errors(page: str, field: str) -> list[str]:
    """The error messages shown under one field of a rendered form."""
    [block] = [b for b in page.split('<div class="mb-3') if f'id="{field}"' in b]
    assert re.search(rf'<(input|select)[^>]*class="[^"]*is-invalid[^"]*"[^>]*id="{field}"', block), block
    return re.findall(r'<div class="invalid-feedback">([^<]*)</div>', block)


def _new_user_form(**overrides) -> dict:
    data = {"username": "nina.costa", "display_name": "Dr Nina Costa", "role": "practitioner",
            "temporary_password": "first-day-pass-9"}
    data.update(overrides)
    return data


def test_an_admin_creates_a_user_who_must_change_the_temporary_password(client, admin):
    response = client.post("/admin/users/new", data=_new_user_form())
    created = db.session.scalar(sa.select(User).where(User.username == "nina.costa"))
    assert response.status_code == 302
    assert response.headers["Location"] == f"/admin/users/{created.id}"
    assert (created.display_name, created.role, created.active) == ("Dr Nina Costa", "practitioner", True)
    assert created.must_change_password
    [event] = audit_rows("user.created", "user", created.id)
    assert (event.actor_id, event.actor_name) == (admin.id, "Alex Admin")
    assert event.new_values["role"] == "practitioner"
    assert event.new_values["must_change_password"] is True
    assert "password_hash" not in event.new_values

    client.post("/logout")
    first = client.post("/login", data={"username": "nina.costa", "password": "first-day-pass-9"})
    assert first.headers["Location"] == "/account/password"


def test_a_duplicate_username_is_refused_with_a_message_on_the_field(client, admin, make_user):
    make_user("practitioner", username="nina.costa")
    before = count_rows(User), count_rows(AuditEvent)
    response = client.post("/admin/users/new", data=_new_user_form(username="Nina.Costa"))
    assert response.status_code == 422
    assert _field_errors(response.get_data(as_text=True), "username") == [
        "The username &#39;nina.costa&#39; is taken."]
    assert (count_rows(User), count_rows(AuditEvent)) == before


@pytest.mark.parametrize(("overrides", "field", "message"), [
    ({"temporary_password": "short"}, "temporary_password", "at least 10 characters"),
    ({"temporary_password": "nina.costa-2026"}, "temporary_password", "must not contain the username"),
    ({"username": "nina costa"}, "username", "Letters, digits, dot, dash and underscore only."),
    ({"username": "n" * 65}, "username", "Field cannot be longer than 64 characters."),
    ({"display_name": ""}, "display_name", "This field is required."),
    ({"role": "superuser"}, "role", "Not a valid choice."),
])
def test_a_new_user_that_breaks_a_rule_is_refused_on_its_field(client, admin, overrides, field, message):
    before = count_rows(User), count_rows(AuditEvent)
    response = client.post("/admin/users/new", data=_new_user_form(**overrides))
    assert response.status_code == 422
    errors = _field_errors(response.get_data(as_text=True), field)
    assert any(message in error for error in errors), errors
    assert (count_rows(User), count_rows(AuditEvent)) == before


def test_an_admin_edits_a_users_printed_name_and_role(client, admin, make_user):
    user = make_user("technician", display_name="Tom B")
    response = client.post(f"/admin/users/{user.id}",
                           data={"display_name": "Tom Baker", "role": "pharmacist"})
    assert response.status_code == 302
    edited = _fresh(user.id)
    assert (edited.display_name, edited.role) == ("Tom Baker", "pharmacist")
    [event] = audit_rows("user.updated", "user", user.id)
    assert event.actor_id == admin.id
    assert event.old_values == {"display_name": "Tom B", "role": "technician"}
    assert event.new_values == {"display_name": "Tom Baker", "role": "pharmacist"}


def test_an_admin_cannot_change_their_own_role(client, admin):
    response = client.post(f"/admin/users/{admin.id}", data={"display_name": "Alex", "role": "auditor"})
    assert response.status_code == 422
    assert "You cannot change your own role." in response.get_data(as_text=True)
    assert _fresh(admin.id).role == "admin"
    assert audit_rows("user.updated") == []


def test_an_admin_deactivates_a_user_with_a_reason_and_reactivates_them(app, client, admin, make_user):
    user = make_user("practitioner")
    their_browser = app.test_client()
    sign_in(their_browser, user)

    response = client.post(f"/admin/users/{user.id}/active",
                           data={"active": "0", "reason": "left the clinic"})
    assert response.status_code == 302
    assert not _fresh(user.id).active
    [event] = audit_rows("user.deactivated", "user", user.id)
    assert (event.actor_id, event.reason) == (admin.id, "left the clinic")
    assert (event.old_values, event.new_values) == ({"active": True}, {"active": False})
    assert "/login" in their_browser.get("/").headers["Location"]
    assert their_browser.post("/login", data={"username": user.username,
                                              "password": PASSWORD}).status_code == 422

    response = client.post(f"/admin/users/{user.id}/active", data={"active": "1", "reason": "returned"})
    assert response.status_code == 302
    assert _fresh(user.id).active
    [event] = audit_rows("user.activated", "user", user.id)
    assert (event.actor_id, event.reason) == (admin.id, "returned")
    assert sign_in(their_browser, user).headers["Location"] == "/"


def test_an_admin_cannot_deactivate_their_own_account(client, admin):
    response = client.post(f"/admin/users/{admin.id}/active", data={"active": "0", "reason": "oops"},
                           follow_redirects=True)
    assert response.status_code == 200
    assert "You cannot deactivate your own account." in response.get_data(as_text=True)
    assert _fresh(admin.id).active
    assert audit_rows("user.deactivated") == []


def test_the_user_list_shows_accounts_and_filters_by_role(client, admin, make_user):
    make_user("auditor", username="irene")
    make_user("technician", username="tom")
    page = client.get("/admin/users?role=auditor").get_data(as_text=True)
    assert ">irene</a>" in page
    assert ">tom</a>" not in page


@pytest.mark.parametrize("role", ["pharmacist", "technician", "practitioner", "auditor"])
def test_roles_other_than_admin_get_403_on_account_pages(client, make_user, role):
    target = make_user("technician", display_name="Target")
    sign_in(client, make_user(role))
    before = count_rows(User), count_rows(AuditEvent)
    requests = [
        ("GET", "/admin/users", None),
        ("GET", "/admin/users/new", None),
        ("POST", "/admin/users/new", _new_user_form()),
        ("GET", f"/admin/users/{target.id}", None),
        ("POST", f"/admin/users/{target.id}", {"display_name": "Hacked", "role": "admin"}),
        ("POST", f"/admin/users/{target.id}/password", {"temporary_password": "taken-over-123"}),
        ("POST", f"/admin/users/{target.id}/active", {"active": "0", "reason": "x"}),
    ]
    for method, url, data in requests:
        assert client.open(url, method=method, data=data).status_code == 403, (method, url)
    after = _fresh(target.id)
    assert (after.display_name, after.role, after.active, after.must_change_password) == (
        "Target", "technician", True, False)
    assert (count_rows(User), count_rows(AuditEvent)) == before


def test_a_deactivation_reason_longer_than_the_limit_is_refused_and_changes_nothing(make_user):
    from compounding.limits import REASON_MAX
    from compounding.services import users
    from compounding.services.errors import InvalidInput

    admin, technician = make_user("admin"), make_user("technician")
    before = count_rows(AuditEvent)
    with pytest.raises(InvalidInput) as refused:
        users.set_active(admin, technician, False, "x" * (REASON_MAX + 1))
    assert refused.value.field == "reason"
    assert fresh(User, technician.id).active is True
    assert count_rows(AuditEvent) == before
    users.set_active(admin, technician, False, "x" * REASON_MAX)
    assert fresh(User, technician.id).active is False


def test_an_admin_gives_a_user_an_e_mail_address_with_its_domain_in_lower_case(client, admin, make_user):
    user = make_user("pharmacist", display_name="Dr Mail")
    response = client.post(f"/admin/users/{user.id}", data={"display_name": "Dr Mail", "role": "pharmacist",
                                                            "email": " Paula.Reyes@Clinic.EXAMPLE "})
    assert response.status_code == 302
    assert _fresh(user.id).email == "Paula.Reyes@clinic.example"
    [event] = audit_rows("user.updated", "user", user.id)
    assert event.new_values["email"] == "Paula.Reyes@clinic.example"


@pytest.mark.parametrize("email", ["no-at-sign", "two@@clinic.example", "a b@clinic.example", "x@localhost",
                                   "x@" + "d" * 250 + ".example"])
def test_an_address_that_is_not_one_is_refused_and_nothing_changes(client, admin, make_user, email):
    user = make_user("pharmacist", display_name="Dr Mail", email="kept@clinic.example")
    response = client.post(f"/admin/users/{user.id}", data={"display_name": "Dr Mail", "role": "pharmacist",
                                                            "email": email})
    assert response.status_code == 422
    assert _fresh(user.id).email == "kept@clinic.example"


def test_a_new_account_gets_its_address_and_a_user_sets_their_own(app, client, admin, make_user):
    response = client.post("/admin/users/new", data={
        "username": "newpharm", "display_name": "New Pharm", "role": "pharmacist", "email": "new@clinic.example",
        "temporary_password": "a-long-temporary-passphrase-7"})
    assert response.status_code == 302
    created = db.session.scalar(sa.select(User).where(User.username == "newpharm"))
    assert created.email == "new@clinic.example"
    user = make_user("pharmacist")
    client = app.test_client()
    sign_in(client, user)
    assert client.post("/account/email", data={"email": "me@Home.Example"}).status_code == 302
    assert _fresh(user.id).email == "me@home.example"
    assert client.post("/account/email", data={"email": "not an address"}).status_code == 422
    assert client.post("/account/email", data={"email": ""}).status_code == 302
    assert _fresh(user.id).email is None
