"""New passwords pass a strength estimator and a shipped common-password list; the demo one only in seed-demo."""

import pytest
import sqlalchemy as sa
from testkit import PASSWORD, sign_in

from compounding.demo import seed_demo
from compounding.extensions import db
from compounding.models import User
from compounding.services import passwords, users
from compounding.services.errors import InvalidInput

WEAK = ["1234512345", "qwertyuiop1", "Summer2026!", "Password2026!", "aaaaaaaaaaaa", "iloveyou12345"]


@pytest.mark.parametrize("password", WEAK)
def test_a_weak_password_is_refused_with_a_clear_message(app, password):
    with pytest.raises(InvalidInput) as refused:
        users.create_user(None, username="newcomer", display_name="New", role="technician", password=password)
    assert refused.value.field == "password"
    assert "choose" in refused.value.message
    assert db.session.scalar(sa.select(User).where(User.username == "newcomer")) is None


def test_the_published_demo_password_is_refused_outside_seed_demo(app, make_user):
    with pytest.raises(InvalidInput, match="published demo password"):
        users.create_user(None, username="newcomer", display_name="New", role="technician",
                          password=passwords.DEMO_PASSWORD)
    user = make_user("technician")
    with pytest.raises(InvalidInput, match="published demo password"):
        users.change_password(user, current_password=PASSWORD, new_password=passwords.DEMO_PASSWORD)
    admin = make_user("admin")
    with pytest.raises(InvalidInput, match="published demo password"):
        users.set_temporary_password(admin, user, passwords.DEMO_PASSWORD.upper())


def test_seed_demo_alone_creates_accounts_with_the_demo_password(app, client):
    for _ in seed_demo():
        pass
    pharmacist = db.session.scalar(sa.select(User).where(User.username == "pharmacist"))
    sign_in(client, pharmacist, passwords.DEMO_PASSWORD)


def test_the_command_line_refuses_the_demo_password(runner):
    result = runner.invoke(args=["create-user", "newcomer", "--role", "technician",
                                 "--password", passwords.DEMO_PASSWORD])
    assert result.exit_code != 0
    assert "published demo password" in result.output
    assert db.session.scalar(sa.select(User).where(User.username == "newcomer")) is None


def test_the_password_change_page_shows_why_a_password_is_too_weak(client, make_user):
    user = make_user("technician")
    sign_in(client, user)
    response = client.post("/account/password", data={
        "current_password": PASSWORD, "new_password": "Summer2026!", "confirm": "Summer2026!"})
    assert response.status_code == 422
    assert "list of common passwords" in response.get_data(as_text=True)


@pytest.mark.parametrize("password", [PASSWORD, "lilac-river-stone-42", "tin quarry ninety orbit"])
def test_a_long_unusual_passphrase_is_accepted(app, password):
    user = users.create_user(None, username="newcomer", display_name="New", role="technician", password=password)
    assert users.verify_password(user, password)


def test_the_shipped_list_is_large_and_holds_the_usual_suspects():
    listed = passwords.common_passwords()
    assert len(listed) >= 10_000
    assert {"123456", "password", "qwertyuiop", "iloveyou"} <= listed
    assert not any(entry.startswith("#") for entry in listed)


def test_a_guessable_password_not_on_the_list_is_refused_by_the_estimator(app):
    assert not passwords.is_common("1234512345")
    assert "too easy to guess" in passwords.weakness("1234512345", user_inputs=[], min_score=3)


def test_a_password_built_on_the_username_or_display_inputs_is_refused(app):
    with pytest.raises(InvalidInput, match="username"):
        users.create_user(None, username="kestrel", display_name="K", role="technician",
                          password="kestrel-kestrel-2031")
