"""Sign-in sessions live on the server: logout, password changes, deactivation and idleness end them."""

import hashlib
from datetime import timedelta

import pytest
import sqlalchemy as sa
from flask_login.utils import encode_cookie
from testkit import PASSWORD, QueryCounter, audit_rows, sign_in

from compounding.extensions import db
from compounding.models import User, UserSession
from compounding.services import users
from compounding.services.clock import utcnow

NEW_PASSWORD = "lilac-river-stone-42"


def _session_cookie(client) -> str:
    return client.get_cookie("session").value


def _with_cookie(app, value: str, name: str = "session"):
    """Another browser holding a copy of a cookie."""
    other = app.test_client()
    other.set_cookie(name, value, domain="localhost")
    return other


def _cookie_content(app, value: str) -> dict:
    return app.session_interface.get_signing_serializer(app).loads(value)


def _is_signed_out(client) -> bool:
    response = client.get("/lots/")
    return response.status_code == 302 and response.headers["Location"].startswith("/login")


def _sessions_of(user) -> list[UserSession]:
    db.session.expire_all()
    return list(db.session.scalars(sa.select(UserSession).where(UserSession.user_id == user.id)
                                   .order_by(UserSession.id)))


def _age(user, minutes: float) -> None:
    """Move every session of `user` back as if nothing had been heard from it for `minutes`."""
    db.session.execute(sa.update(UserSession).where(UserSession.user_id == user.id)
                       .values(last_seen_at=utcnow() - timedelta(minutes=minutes)))
    db.session.commit()


# --- the findings ---------------------------------------------------------------------------


def test_a_session_cookie_copied_before_logout_is_refused_afterwards(app, client, make_user):
    sign_in(client, make_user("pharmacist"))
    copied = _session_cookie(client)
    assert client.post("/logout").status_code == 302
    thief = _with_cookie(app, copied)
    assert _is_signed_out(thief)
    assert thief.get("/api/v1/lots").status_code == 401


def test_logout_ends_the_session_row_and_is_audited(client, make_user):
    user = make_user("pharmacist")
    sign_in(client, user)
    client.post("/logout")
    [row] = _sessions_of(user)
    assert row.ended_at is not None and row.ended_reason == "logout"
    assert [e.actor_id for e in audit_rows("user.signed_out", "user", user.id)] == [user.id]


def test_the_login_response_starts_a_session_with_a_last_seen_time_on_the_server(client, make_user):
    user = make_user("pharmacist")
    sign_in(client, user)
    [row] = _sessions_of(user)
    assert row.last_seen_at is not None and row.ended_at is None
    assert row.user_agent and row.client_address


def test_the_cookie_carries_only_a_random_id_whose_hash_is_stored(app, client, make_user):
    user = make_user("pharmacist")
    sign_in(client, user)
    content = _cookie_content(app, _session_cookie(client))
    session_id = content["_user_id"]
    assert session_id != str(user.id) and len(session_id) >= 40
    [row] = _sessions_of(user)
    assert row.token_hash == hashlib.sha256(session_id.encode()).hexdigest()
    stored = db.session.execute(sa.select(*UserSession.__table__.c)).one()
    assert not any(session_id in str(value) for value in stored)


def test_a_session_idle_for_thirty_days_is_signed_out(client, make_user):
    user = make_user("pharmacist")
    sign_in(client, user)
    _age(user, 30 * 24 * 60)
    assert _is_signed_out(client)
    [row] = _sessions_of(user)
    assert row.ended_reason == "idle"


def test_an_idle_session_is_signed_out_and_sent_back_after_login(client, make_user):
    user = make_user("pharmacist")
    sign_in(client, user)
    assert client.get("/lots/?status=released").status_code == 200
    _age(user, 31)
    response = client.get("/lots/?status=released")
    assert response.status_code == 302
    assert "/login?next=/lots/?status%3Dreleased" in response.headers["Location"]
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "period of inactivity" in page
    again = client.post(response.headers["Location"], data={"username": user.username, "password": PASSWORD})
    assert again.headers["Location"].endswith("/lots/?status=released")


def test_an_idle_api_call_with_the_session_cookie_gets_401(client, make_user):
    user = make_user("pharmacist")
    sign_in(client, user)
    _age(user, 31)
    assert client.get("/api/v1/lots").status_code == 401


def test_a_session_active_within_the_idle_limit_stays_signed_in_and_is_seen_again(client, make_user):
    user = make_user("pharmacist")
    sign_in(client, user)
    _age(user, 29)
    before = _sessions_of(user)[0].last_seen_at
    assert client.get("/").status_code == 200
    assert _sessions_of(user)[0].last_seen_at > before


@pytest.mark.parametrize("config_overrides", [{"SESSION_IDLE_MINUTES": 5}], indirect=True)
def test_the_idle_limit_follows_the_setting(client, make_user):
    user = make_user("pharmacist")
    sign_in(client, user)
    _age(user, 6)
    assert _is_signed_out(client)


def test_last_seen_is_written_at_most_once_a_minute(client, make_user):
    user = make_user("pharmacist")
    sign_in(client, user)
    _age(user, 0.5)
    before = _sessions_of(user)[0].last_seen_at
    for _ in range(3):
        assert client.get("/").status_code == 200
    assert _sessions_of(user)[0].last_seen_at == before


def test_recording_the_last_seen_time_costs_a_page_no_extra_query(client, make_user):
    user = make_user("pharmacist")
    sign_in(client, user)
    _age(user, 2)
    before = _sessions_of(user)[0].last_seen_at
    with QueryCounter(db.engine) as seen:
        assert client.get("/lots/").status_code == 200
    assert _sessions_of(user)[0].last_seen_at > before
    with QueryCounter(db.engine) as quiet:
        assert client.get("/lots/").status_code == 200
    assert seen.count == quiet.count, (seen.statements, quiet.statements)


def test_a_remember_me_cookie_opens_nothing_without_a_live_session(app, client, make_user):
    user = make_user("pharmacist")
    sign_in(client, user)
    session_id = _cookie_content(app, _session_cookie(client))["_user_id"]
    client.post("/logout")
    for value in (str(user.id), session_id):
        browser = _with_cookie(app, encode_cookie(value), name="remember_token")
        assert _is_signed_out(browser), value


def test_a_live_session_of_an_inactive_account_opens_nothing(client, make_user):
    user = make_user("pharmacist")
    sign_in(client, user)
    # An account switched off outside the services (say, by hand in the database) is still refused.
    db.session.execute(sa.update(User).where(User.id == user.id).values(active=False))
    db.session.commit()
    assert _is_signed_out(client)
    assert client.get("/api/v1/lots").status_code == 401


# --- password changes, resets, deactivation --------------------------------------------------


def _change_password(client):
    return client.post("/account/password", data={
        "current_password": PASSWORD, "new_password": NEW_PASSWORD, "confirm": NEW_PASSWORD})


def test_a_password_change_signs_out_every_other_browser_and_keeps_this_one(app, make_user):
    user = make_user("pharmacist")
    here, elsewhere = app.test_client(), app.test_client()
    sign_in(here, user)
    sign_in(elsewhere, user)
    copied = _session_cookie(here)
    assert _change_password(here).status_code == 302
    assert here.get("/lots/").status_code == 200
    assert _is_signed_out(elsewhere)
    # This browser continues in a fresh session: the cookie from before the change opens nothing.
    assert _is_signed_out(_with_cookie(app, copied))
    ended = [row.ended_reason for row in _sessions_of(user)]
    assert ended == ["password_changed", "password_changed", None]


def test_an_admin_password_reset_ends_every_session_of_the_user(app, make_user):
    admin, user = make_user("admin"), make_user("pharmacist")
    user_client = app.test_client()
    sign_in(user_client, user)
    users.set_temporary_password(admin, user, "temporary-pass-7")
    assert _is_signed_out(user_client)
    assert [row.ended_reason for row in _sessions_of(user)] == ["password_reset"]


def test_deactivation_ends_every_session_and_reactivation_revives_none(app, make_user):
    admin, user = make_user("admin"), make_user("pharmacist")
    user_client = app.test_client()
    sign_in(user_client, user)
    copied = _session_cookie(user_client)
    users.set_active(admin, user, False, "left")
    users.set_active(admin, user, True, "back")
    assert _is_signed_out(_with_cookie(app, copied))
    assert [row.ended_reason for row in _sessions_of(user)] == ["deactivated"]
    [event] = audit_rows("user.sessions_ended", "user", user.id)
    assert (event.actor_id, event.reason, event.new_values) == (admin.id, "deactivated", {"sessions_ended": 1})


# --- sign out everywhere -------------------------------------------------------------------


def test_a_user_signs_out_everywhere_from_their_account_page(app, make_user):
    user = make_user("technician")
    here, elsewhere = app.test_client(), app.test_client()
    sign_in(here, user)
    sign_in(elsewhere, user)
    page = here.get("/account")
    assert page.status_code == 200 and "Sign out everywhere" in page.get_data(as_text=True)
    response = here.post("/account/sign-out-everywhere")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    assert _is_signed_out(here) and _is_signed_out(elsewhere)
    assert {row.ended_reason for row in _sessions_of(user)} == {"signed_out_everywhere"}
    [event] = audit_rows("user.signed_out_everywhere", "user", user.id)
    assert (event.actor_id, event.new_values) == (user.id, {"sessions_ended": 2})


def test_an_admin_signs_a_user_out_everywhere_from_the_user_s_page(app, make_user):
    admin, user = make_user("admin"), make_user("practitioner")
    admin_client, user_client = app.test_client(), app.test_client()
    sign_in(admin_client, admin)
    sign_in(user_client, user)
    page = admin_client.get(f"/admin/users/{user.id}").get_data(as_text=True)
    assert "Open sessions" in page and "Sign out everywhere" in page
    response = admin_client.post(f"/admin/users/{user.id}/sign-out-everywhere")
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/admin/users/{user.id}")
    assert _is_signed_out(user_client)
    assert admin_client.get("/admin/users").status_code == 200
    [event] = audit_rows("user.signed_out_everywhere", "user", user.id)
    assert (event.actor_id, event.new_values) == (admin.id, {"sessions_ended": 1})


def test_only_an_admin_signs_another_user_out_everywhere(app, make_user):
    pharmacist, user = make_user("pharmacist"), make_user("technician")
    pharmacist_client, user_client = app.test_client(), app.test_client()
    sign_in(pharmacist_client, pharmacist)
    sign_in(user_client, user)
    assert pharmacist_client.post(f"/admin/users/{user.id}/sign-out-everywhere").status_code == 403
    assert user_client.get("/lots/").status_code == 200


def test_the_account_page_lists_where_the_user_is_signed_in(client, make_user):
    user = make_user("auditor")
    sign_in(client, user)
    page = client.get("/account").get_data(as_text=True)
    assert "this browser" in page


def test_the_open_sessions_listed_leave_out_ended_and_idle_ones(app, make_user):
    admin, user = make_user("admin"), make_user("practitioner")
    browsers = [app.test_client() for _ in range(3)]
    for browser in browsers:
        sign_in(browser, user)
    browsers[1].post("/logout")
    idle = _sessions_of(user)[2]
    idle.last_seen_at = utcnow() - timedelta(minutes=31)
    db.session.commit()
    admin_client = app.test_client()
    sign_in(admin_client, admin)
    page = admin_client.get(f"/admin/users/{user.id}").get_data(as_text=True)
    assert page.count("title=\"Werkzeug/") == 1  # one row, its browser named in full on hover


def test_the_idle_notice_survives_a_stylesheet_fetched_first(client, make_user):
    user = make_user("pharmacist")
    sign_in(client, user)
    _age(user, 31)
    stylesheet = client.get("/static/css/app.css")  # the request that finds the session idle
    stylesheet.close()
    assert stylesheet.status_code == 200
    response = client.get("/lots/")
    assert response.status_code == 302 and "next=" in response.headers["Location"]
    assert "period of inactivity" in client.get(response.headers["Location"]).get_data(as_text=True)
