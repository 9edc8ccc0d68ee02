"""Signing in, lockout, redirects after sign-in, passwords, forced changes and the cookie."""

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa
from testkit import PASSWORD, audit_rows, bearer, csrf_token_from, sign_in

from compounding.extensions import db
from compounding.models import AuthFailure, User
from compounding.services import users

REFUSED = "Unknown username or wrong password."
NEW_PASSWORD = "lilac-river-stone-42"


def _post_login(client, username, password, next_url=None):
    url = "/login" if next_url is None else f"/login?next={next_url}"
    return client.post(url, data={"username": username, "password": password})


def _fresh(user: User) -> User:
    db.session.expire_all()
    return db.session.get(User, user.id)


def _failures(user: User) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(AuthFailure)
                             .where(AuthFailure.user_id == user.id))


def _path(response) -> str:
    return urlsplit(response.headers["Location"]).path


# --- signing in ---------------------------------------------------------------------------


def test_a_user_signs_in_through_the_form_and_reaches_the_dashboard(client, make_user):
    user = make_user("pharmacist")
    response = _post_login(client, user.username, PASSWORD)
    assert response.status_code == 302
    assert _path(response) == "/"
    page = client.get("/")
    assert page.status_code == 200
    assert user.display_name in page.get_data(as_text=True)
    assert [e.actor_id for e in audit_rows("user.signed_in")] == [user.id]


def test_the_username_is_not_case_sensitive(client, make_user):
    make_user("technician", username="tom.baker")
    assert _post_login(client, "Tom.Baker", PASSWORD).status_code == 302


@pytest.mark.parametrize("who", ["wrong password", "unknown user"])
def test_wrong_password_and_unknown_user_get_the_same_message(client, make_user, who):
    user = make_user("pharmacist")
    username = user.username if who == "wrong password" else "nobody-here"
    response = _post_login(client, username, "not-the-password-1")
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert REFUSED in page
    assert 'name="username"' in page and 'name="password"' in page
    assert client.get("/").status_code == 302


def test_five_failed_sign_ins_pause_the_account_with_the_usual_answer(client, make_user):
    user = make_user("pharmacist")
    for _ in range(4):
        assert REFUSED in _post_login(client, user.username, "wrong-password-9").get_data(as_text=True)
    assert audit_rows("user.password_attempts_paused") == []

    fifth = _post_login(client, user.username, "wrong-password-9")
    assert fifth.status_code == 422
    assert REFUSED in fifth.get_data(as_text=True)
    [event] = audit_rows("user.password_attempts_paused", "user", user.id)
    assert event.reason == "5 wrong passwords within 15 minutes"


def test_a_paused_account_refuses_even_the_right_password_until_the_pause_ends(client, make_user):
    user = make_user("pharmacist")
    for _ in range(5):
        _post_login(client, user.username, "wrong-password-9")

    refused = _post_login(client, user.username, PASSWORD)
    assert refused.status_code == 422
    assert REFUSED in refused.get_data(as_text=True)
    assert client.get("/").status_code == 302

    _fresh(user).password_changed_at -= timedelta(minutes=2)
    for failure in db.session.scalars(sa.select(AuthFailure).where(AuthFailure.user_id == user.id)):
        failure.occurred_at -= timedelta(minutes=2)
    db.session.commit()
    assert _post_login(client, user.username, PASSWORD).status_code == 302
    assert client.get("/").status_code == 200


def test_an_inactive_account_cannot_sign_in(client, make_user):
    admin = make_user("admin")
    user = make_user("practitioner")
    users.set_active(admin, user, False, "left the clinic")
    response = _post_login(client, user.username, PASSWORD)
    assert response.status_code == 422
    assert REFUSED in response.get_data(as_text=True)
    assert client.get("/").status_code == 302


def test_a_deactivated_account_loses_its_open_browser_session(client, make_user):
    admin = make_user("admin")
    user = make_user("practitioner")
    sign_in(client, user)
    assert client.get("/").status_code == 200
    users.set_active(admin, user, False, "left the clinic")
    assert "/login" in client.get("/").headers["Location"]


# --- where sign-in leads ------------------------------------------------------------------


def test_a_visitor_opening_the_dashboard_is_sent_to_login_with_next(client):
    response = client.get("/")
    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    assert location.path == "/login"
    assert parse_qs(location.query)["next"] == ["/"]


def test_after_sign_in_a_local_next_path_is_honoured(client, make_user):
    user = make_user("admin")
    response = _post_login(client, user.username, PASSWORD, next_url="/admin/users%3Frole%3Dadmin")
    assert response.headers["Location"] == "/admin/users?role=admin"


@pytest.mark.parametrize("next_url", [
    "http://evil.example/login",
    "https://evil.example",
    "//evil.example",
    "/\\evil.example",
    "%2F%5Cevil.example",
    "/%09/evil.example",
    "https:evil.example",
    "javascript:alert(1)",
    "evil.example",
])
def test_after_sign_in_a_foreign_next_is_ignored(client, make_user, next_url):
    user = make_user("pharmacist")
    response = _post_login(client, user.username, PASSWORD, next_url=next_url)
    assert response.status_code == 302
    assert response.headers["Location"] == "/"  # the dashboard, on this site, whatever `next` said


def test_a_signed_in_user_opening_login_with_a_foreign_next_stays_here(client, make_user):
    sign_in(client, make_user("pharmacist"))
    response = client.get("/login?next=//evil.example")
    assert response.status_code == 302
    assert response.headers["Location"] == "/"


# --- changing one's password --------------------------------------------------------------


def _change(client, current, new, confirm=None):
    return client.post("/account/password", data={
        "current_password": current, "new_password": new,
        "confirm": new if confirm is None else confirm})


@pytest.mark.parametrize(("current", "new", "confirm", "message"), [
    ("not-my-password", NEW_PASSWORD, None, "The current password is not correct."),
    (PASSWORD, "short-1", None, "at least 10 characters"),
    (PASSWORD, "password123", None, "too common"),
    (PASSWORD, "aaaaaaaaaaaa", None, "too easy to guess"),
    (PASSWORD, "my-{username}-2026", None, "must not contain the username"),
    (PASSWORD, NEW_PASSWORD, "lilac-river-stone-43", "The two passwords differ."),
    (PASSWORD, PASSWORD, None, "must differ from the current one"),
])
def test_a_password_change_that_breaks_a_rule_is_refused_and_changes_nothing(
        client, make_user, current, new, confirm, message):
    user = make_user("technician", username="tbaker")
    sign_in(client, user)
    hash_before = user.password_hash
    response = _change(client, current, new.format(username="TBaker"), confirm)
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert _fresh(user).password_hash == hash_before
    assert audit_rows("user.password_changed") == []


def test_a_changed_password_replaces_the_old_one_at_the_next_sign_in(client, make_user):
    user = make_user("pharmacist")
    sign_in(client, user)
    response = _change(client, PASSWORD, NEW_PASSWORD)
    assert response.status_code == 302
    assert [e.actor_id for e in audit_rows("user.password_changed")] == [user.id]

    client.post("/logout")
    assert _post_login(client, user.username, PASSWORD).status_code == 422
    assert _post_login(client, user.username, NEW_PASSWORD).status_code == 302


# --- temporary passwords set by an admin --------------------------------------------------


def test_a_temporary_password_forces_a_change_before_anything_else(app, make_user, make_token):
    admin = make_user("admin")
    user = make_user("pharmacist")
    token = make_token(user)
    admin_client, user_client = app.test_client(), app.test_client()
    sign_in(admin_client, admin)
    response = admin_client.post(f"/admin/users/{user.id}/password",
                                 data={"temporary_password": "temporary-pass-7"})
    assert response.status_code == 302
    assert _fresh(user).must_change_password
    assert [e.actor_id for e in audit_rows("user.password_reset", "user", user.id)] == [admin.id]

    first = _post_login(user_client, user.username, "temporary-pass-7")
    assert _path(first) == "/account/password"
    for url in ("/", "/audit", "/admin/users", "/no-such-page"):
        assert _path(user_client.get(url)) == "/account/password", url
    assert user_client.get("/account/password").status_code == 200
    # The reset revoked the token made before it; one made since waits for the change.
    device = app.test_client()  # a token client: no browser cookie
    assert device.get("/api/v1/ingredients", headers=bearer(token)).status_code == 401
    since_reset = make_token(user)
    api = device.get("/api/v1/ingredients", headers=bearer(since_reset))
    assert api.status_code == 403
    assert "changed" in api.json["error"]

    assert _change(user_client, "temporary-pass-7", NEW_PASSWORD).status_code == 302
    assert not _fresh(user).must_change_password
    assert user_client.get("/").status_code == 200
    # The user's own new password revokes every token issued before it; a new one works.
    assert device.get("/api/v1/ingredients", headers=bearer(since_reset)).status_code == 401
    assert device.get("/api/v1/ingredients", headers=bearer(make_token(user))).status_code == 200


# --- over-long input ----------------------------------------------------------------------


@pytest.mark.parametrize(("field", "length", "message"), [
    ("username", 65, "Field cannot be longer than 64 characters."),
    ("password", 201, "Field cannot be longer than 200 characters."),
    ("password", 100_000, "Field cannot be longer than 200 characters."),
])
def test_over_long_sign_in_input_gets_a_clear_message_and_counts_nothing(
        client, make_user, field, length, message):
    user = make_user("pharmacist")
    data = {"username": user.username, "password": PASSWORD, field: "x" * length}
    response = client.post("/login", data=data)
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert _failures(user) == 0
    assert audit_rows("user.signed_in") == []


@pytest.mark.parametrize(("field", "message", "not_shown"), [
    ("current_password", "Field cannot be longer than 200 characters.", "The two passwords differ."),
    ("new_password", "Field cannot be longer than 200 characters.", "The two passwords differ."),
    # The confirmation is only compared with the new password, which it no longer matches.
    ("confirm", "The two passwords differ.", "Field cannot be longer than 200 characters."),
])
def test_an_over_long_password_change_gets_a_clear_message_and_changes_nothing(client, make_user, field, message,
                                                                                not_shown):
    user = make_user("pharmacist")
    sign_in(client, user)
    data = {"current_password": PASSWORD, "new_password": NEW_PASSWORD, "confirm": NEW_PASSWORD}
    data[field] = "y" * 201
    if field == "new_password":
        data["confirm"] = data["new_password"]
    response = client.post("/account/password", data=data)
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert message in page and not_shown not in page
    assert _fresh(user).password_hash == user.password_hash
    assert audit_rows("user.password_changed") == []


# --- the cookie and CSRF ------------------------------------------------------------------


def test_the_session_cookie_is_http_only_and_same_site_lax(client, make_user):
    response = sign_in(client, make_user("pharmacist"))
    cookies = [c for c in response.headers.getlist("Set-Cookie") if c.startswith("session=")]
    assert cookies, response.headers
    attributes = {part.strip().lower() for part in cookies[0].split(";")}
    assert "httponly" in attributes
    assert "samesite=lax" in attributes


@pytest.mark.parametrize("config_overrides", [{"WTF_CSRF_ENABLED": True}], indirect=True)
def test_with_csrf_on_a_login_post_without_a_token_is_refused_and_changes_nothing(client, make_user):
    user = make_user("pharmacist")
    response = _post_login(client, user.username, "wrong-password-9")
    assert response.status_code == 400
    assert _failures(user) == 0
    response = _post_login(client, user.username, PASSWORD)
    assert response.status_code == 400
    assert client.get("/").status_code == 302
    assert audit_rows("user.signed_in") == []

    token = csrf_token_from(client.get("/login").get_data(as_text=True))
    response = client.post("/login", data={"username": user.username, "password": PASSWORD,
                                           "csrf_token": token})
    assert response.status_code == 302
    assert client.get("/").status_code == 200
