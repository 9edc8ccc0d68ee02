"""The command line: accounts, tokens, demo data and the audit check."""

import pytest
import sqlalchemy as sa
from testkit import PASSWORD, audit_rows, count_rows, drop_audit_guards

from compounding.extensions import db
from compounding.models import ApiToken, AuditEvent, Ingredient, User
from compounding.services import users

MESOTHERAPY_INGREDIENTS = ("phosphatidylcholine", "sodium deoxycholate", "ascorbic acid", "hyaluronic acid",
                      "minoxidil", "biotin", "lidocaine", "sodium chloride 0.9")


def _run(runner, *args):
    result = runner.invoke(args=list(args))
    return result.exit_code, result.output + (result.stderr or "")


def _counts():
    return count_rows(User), count_rows(AuditEvent)


def test_create_user_makes_an_account_that_can_sign_in(runner):
    exit_code, output = _run(runner, "create-user", "Paula", "--role", "pharmacist",
                             "--password", PASSWORD, "--name", "Dr Paula Reyes")
    assert exit_code == 0, output
    assert "Created paula (pharmacist)." in output
    user = db.session.scalar(sa.select(User).where(User.username == "paula"))
    assert (user.display_name, user.role, user.active) == ("Dr Paula Reyes", "pharmacist", True)
    assert users.authenticate("paula", PASSWORD).id == user.id
    [event] = audit_rows("user.created", "user", user.id)
    assert event.actor_name == "system"


@pytest.mark.parametrize(("args", "message"), [
    (["--role", "wizard", "--password", PASSWORD], "Invalid value for '--role'"),
    (["--role", "auditor", "--password", "short"], "at least 10 characters"),
    (["--role", "auditor", "--password", "password123"], "too common"),
    (["--role", "auditor", "--password", "irene-2026-pass"], "must not contain the username"),
    (["--role", "auditor"], "Missing option '--password'"),
])
def test_create_user_refuses_bad_input_with_a_clear_message_and_saves_nothing(runner, args, message):
    before = _counts()
    exit_code, output = _run(runner, "create-user", "irene", *args)
    assert exit_code != 0
    assert message in output
    assert _counts() == before


def test_create_user_refuses_a_taken_username(runner, make_user):
    make_user("auditor", username="irene")
    before = _counts()
    exit_code, output = _run(runner, "create-user", "IRENE", "--role", "admin", "--password", PASSWORD)
    assert exit_code == 1
    assert "The username 'irene' is taken." in output
    assert _counts() == before
    assert db.session.scalar(sa.select(User.role).where(User.username == "irene")) == "auditor"


def test_create_token_prints_a_token_once(runner, make_user):
    make_user("technician", username="tom")
    exit_code, output = _run(runner, "create-token", "Tom", "--name", "scanner 1")
    assert exit_code == 0
    token = output.strip()
    assert users.user_for_token(token).username == "tom"
    assert db.session.scalar(sa.select(ApiToken.name)) == "scanner 1"


def test_create_token_for_an_unknown_user_fails_and_saves_nothing(runner):
    exit_code, output = _run(runner, "create-token", "ghost")
    assert exit_code == 1
    assert "No user named 'ghost'." in output
    assert (count_rows(ApiToken), count_rows(AuditEvent)) == (0, 0)


def test_create_token_for_an_inactive_user_fails(runner, make_user):
    admin, user = make_user("admin"), make_user("technician", username="tom")
    users.set_active(admin, user, False, "left")
    exit_code, output = _run(runner, "create-token", "tom")
    assert exit_code == 1
    assert "inactive" in output
    assert count_rows(ApiToken) == 0


def test_seed_demo_is_idempotent_and_has_the_eight_ingredients_of_the_design(runner):
    first_code, first_output = _run(runner, "seed-demo")
    assert first_code == 0, first_output
    first = count_rows(User), count_rows(Ingredient)
    second_code, second_output = _run(runner, "seed-demo")
    assert second_code == 0, second_output
    assert (count_rows(User), count_rows(Ingredient)) == first
    assert first[0] >= 5 and first[1] >= 8

    roles = set(db.session.scalars(sa.select(User.role)))
    assert roles == {"admin", "pharmacist", "technician", "practitioner", "auditor"}
    names = [name.lower() for name in db.session.scalars(sa.select(Ingredient.name))]
    for wanted in MESOTHERAPY_INGREDIENTS:
        assert any(name.startswith(wanted) for name in names), wanted
    assert _run(runner, "audit", "verify")[0] == 0


def test_audit_verify_reports_the_rows_it_checked(runner, make_user):
    make_user("admin")
    make_user("pharmacist")
    exit_code, output = _run(runner, "audit", "verify")
    assert exit_code == 0
    assert "Audit trail intact: 2 rows verified." in output

    drop_audit_guards()  # as an insider with DDL rights would: the database refuses the change
    db.session.execute(sa.text("UPDATE audit_events SET reason = 'forged' WHERE id = "
                               "(SELECT MIN(id) FROM audit_events)"))
    db.session.commit()
    exit_code, output = _run(runner, "audit", "verify")
    assert exit_code == 1
    assert "BROKEN at row" in output
