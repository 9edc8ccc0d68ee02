"""API tokens expire, record their last use, and are revoked by hand, by the CLI, by the API
and by every password change or reset and deactivation."""

from datetime import timedelta

import pytest
import sqlalchemy as sa
from testkit import PASSWORD, audit_rows, bearer, sign_in

from compounding.extensions import db
from compounding.models import ApiToken
from compounding.services import users
from compounding.services.clock import utcnow
from compounding.services.errors import InvalidInput

NEW_PASSWORD = "lilac-river-stone-42"
LOTS = "/api/v1/lots"


def _row(token_id: int) -> ApiToken:
    db.session.expire_all()
    return db.session.get(ApiToken, token_id)


def _row_of(token: str) -> ApiToken:
    db.session.expire_all()
    return db.session.scalar(sa.select(ApiToken).where(ApiToken.token_hash == users.hash_token(token)))


def _revoke(client, token: str, body: dict):
    return client.post("/api/v1/tokens/revoke", json=body, headers=bearer(token))


# --- the findings ---------------------------------------------------------------------------


def test_a_token_stops_answering_after_an_admin_password_reset(client, make_user, make_token):
    admin, user = make_user("admin"), make_user("pharmacist")
    token = make_token(user)
    assert client.get(LOTS, headers=bearer(token)).status_code == 200
    users.set_temporary_password(admin, user, "temporary-pass-7")
    assert client.get(LOTS, headers=bearer(token)).status_code == 401
    row = _row_of(token)
    assert (row.revoked_by_id, row.revoked_reason) == (admin.id, "password_reset")


def test_a_token_stops_answering_after_the_user_s_own_password_change(client, make_user, make_token):
    user = make_user("pharmacist")
    token = make_token(user)
    users.change_password(user, current_password=PASSWORD, new_password=NEW_PASSWORD)
    assert client.get(LOTS, headers=bearer(token)).status_code == 401
    assert _row_of(token).revoked_reason == "password_changed"


def test_reactivating_a_user_does_not_revive_their_old_tokens(client, make_user, make_token):
    admin, user = make_user("admin"), make_user("pharmacist")
    token = make_token(user)
    users.set_active(admin, user, False, "left")
    users.set_active(admin, user, True, "back")
    assert client.get(LOTS, headers=bearer(token)).status_code == 401
    row = _row_of(token)
    assert (row.revoked_by_id, row.revoked_reason) == (admin.id, "deactivated")
    [event] = audit_rows("token.revoked", "api_token", row.id)
    assert (event.actor_id, event.reason) == (admin.id, "deactivated")


def test_using_a_token_records_its_last_use(client, make_user, make_token):
    token = make_token(make_user("technician"))
    assert _row_of(token).last_used_at is None
    assert client.get(LOTS, headers=bearer(token)).status_code == 200
    assert _row_of(token).last_used_at is not None


def test_last_use_is_written_at_most_once_a_minute(client, make_user, make_token):
    token = make_token(make_user("technician"))
    row = _row_of(token)
    seen = utcnow() - timedelta(seconds=30)
    row.last_used_at = seen
    db.session.commit()
    for _ in range(3):
        assert client.get(LOTS, headers=bearer(token)).status_code == 200
    assert _row_of(token).last_used_at == seen
    row = _row_of(token)
    row.last_used_at = seen - timedelta(minutes=2)
    db.session.commit()
    assert client.get(LOTS, headers=bearer(token)).status_code == 200
    assert _row_of(token).last_used_at > seen


def test_a_token_expires_after_ninety_days_by_default(client, make_user, make_token):
    token = make_token(make_user("technician"))
    row = _row_of(token)
    assert row.expires_at - row.created_at == timedelta(days=90)
    row.expires_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    response = client.get(LOTS, headers=bearer(token))
    assert response.status_code == 401
    assert "expired" in response.json["error"]


@pytest.mark.parametrize("config_overrides", [{"API_TOKEN_DAYS": 7}], indirect=True)
def test_the_default_lifetime_follows_the_setting_and_may_be_chosen_per_token(make_user):
    user = make_user("technician")
    default = _row_of(users.create_token(None, user, "scanner"))
    chosen = _row_of(users.create_token(None, user, "sync", days=30))
    assert default.expires_at - default.created_at == timedelta(days=7)
    assert chosen.expires_at - chosen.created_at == timedelta(days=30)


@pytest.mark.parametrize("name", ["", "   ", "x" * 81])
def test_a_token_needs_a_name_of_at_most_80_characters(make_user, name):
    with pytest.raises(InvalidInput) as refused:
        users.create_token(None, make_user("technician"), name)
    assert refused.value.field == "name"
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ApiToken)) == 0


# --- POST /api/v1/tokens/revoke --------------------------------------------------------------


def test_an_empty_body_revokes_the_token_used_for_the_call(client, make_user, make_token):
    user = make_user("practitioner")
    token, other = make_token(user, "phone"), make_token(user, "tablet")
    response = _revoke(client, token, {})
    assert response.status_code == 200
    [answer] = response.json["revoked"]
    assert (answer["name"], answer["prefix"]) == ("phone", token[:10])
    assert answer["revoked_at"] is not None and token not in response.get_data(as_text=True)
    assert client.get(LOTS, headers=bearer(token)).status_code == 401
    assert client.get(LOTS, headers=bearer(other)).status_code == 200
    row = _row_of(token)
    assert (row.revoked_by_id, row.revoked_reason) == (user.id, "revoked")
    [event] = audit_rows("token.revoked", "api_token", row.id)
    assert event.actor_id == user.id


def test_an_id_revokes_one_of_the_caller_s_own_tokens(client, make_user, make_token):
    user = make_user("practitioner")
    token, lost = make_token(user, "desk"), make_token(user, "lost scanner")
    lost_id = _row_of(lost).id
    response = _revoke(client, token, {"id": lost_id})
    assert response.status_code == 200
    assert [t["id"] for t in response.json["revoked"]] == [lost_id]
    assert client.get(LOTS, headers=bearer(lost)).status_code == 401
    assert client.get(LOTS, headers=bearer(token)).status_code == 200
    again = _revoke(client, token, {"id": lost_id})
    assert again.status_code == 409 and "already revoked" in again.json["error"]


def test_another_user_s_token_id_is_not_found_and_stays_live(client, make_user, make_token):
    token = make_token(make_user("practitioner"))
    theirs = make_token(make_user("pharmacist"))
    response = _revoke(client, token, {"id": _row_of(theirs).id})
    assert response.status_code == 404
    assert client.get(LOTS, headers=bearer(theirs)).status_code == 200


def test_all_revokes_every_live_token_of_the_caller_and_no_one_else_s(client, make_user, make_token):
    user = make_user("technician")
    tokens = [make_token(user, f"scanner {n}") for n in range(3)]
    theirs = make_token(make_user("technician"))
    response = _revoke(client, tokens[0], {"all": True})
    assert response.status_code == 200
    assert sorted(t["name"] for t in response.json["revoked"]) == ["scanner 0", "scanner 1", "scanner 2"]
    assert all(client.get(LOTS, headers=bearer(t)).status_code == 401 for t in tokens)
    assert client.get(LOTS, headers=bearer(theirs)).status_code == 200
    assert len(audit_rows("token.revoked")) == 3


@pytest.mark.parametrize("body", [{"id": 1, "all": True}, {"id": "one"}, {"id": 0}, {"all": "maybe"}, {"x": 1}])
def test_a_malformed_revocation_is_refused_with_422_and_revokes_nothing(client, make_user, make_token, body):
    token = make_token(make_user("technician"))
    assert _revoke(client, token, body).status_code == 422
    assert client.get(LOTS, headers=bearer(token)).status_code == 200


def test_a_browser_session_must_name_the_token_to_revoke(client, make_user, make_token):
    user = make_user("technician")
    token = make_token(user)
    sign_in(client, user)
    response = client.post("/api/v1/tokens/revoke", json={})
    assert response.status_code == 422
    response = client.post("/api/v1/tokens/revoke", json={"id": _row_of(token).id})
    assert response.status_code == 200
    assert client.get(LOTS, headers=bearer(token)).status_code == 401


def test_the_openapi_document_describes_token_revocation(client):
    operation = client.get("/api/v1/openapi.json").json["paths"]["/api/v1/tokens/revoke"]["post"]
    assert {"200", "401", "404", "409", "422"} <= set(operation["responses"])
    assert operation["security"] == [{"bearer": []}]


# --- the command line ------------------------------------------------------------------------


def test_the_cli_revokes_every_live_token_of_a_user_and_says_how_many(runner, client, make_user, make_token):
    user = make_user("technician", username="tom")
    tokens = [make_token(user, "a"), make_token(user, "b")]
    users.revoke_token(None, _row_of(tokens[1]).id, owner=user)
    kept = make_token(make_user("technician"))
    result = runner.invoke(args=["revoke-tokens", "Tom"])
    assert result.exit_code == 0, result.output
    assert "Revoked 1 API token(s) of tom." in result.output
    assert client.get(LOTS, headers=bearer(tokens[0])).status_code == 401
    assert client.get(LOTS, headers=bearer(kept)).status_code == 200
    [event] = audit_rows("token.revoked", "api_token", _row_of(tokens[0]).id)
    assert (event.actor_name, event.reason) == ("system", "revoked")


def test_the_cli_refuses_an_unknown_user(runner):
    result = runner.invoke(args=["revoke-tokens", "ghost"])
    assert result.exit_code != 0
    assert "No user named 'ghost'." in result.stderr


def test_the_cli_creates_a_token_with_a_chosen_lifetime(runner, make_user):
    make_user("technician", username="tom")
    result = runner.invoke(args=["create-token", "tom", "--name", "scanner 2", "--days", "10"])
    assert result.exit_code == 0, result.output
    row = _row_of(result.output.strip())
    assert (row.name, row.expires_at - row.created_at) == ("scanner 2", timedelta(days=10))


# --- the pages ------------------------------------------------------------------------------


def test_a_user_creates_a_token_on_their_account_page_and_sees_it_once(client, make_user):
    user = make_user("technician")
    sign_in(client, user)
    response = client.post("/account/tokens", data={"name": "bench scanner"})
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    row = db.session.scalar(sa.select(ApiToken).where(ApiToken.user_id == user.id))
    assert row.name == "bench scanner"
    token = page.split('id="new-token">')[1].split("<")[0]
    assert users.hash_token(token) == row.token_hash
    later = client.get("/account").get_data(as_text=True)
    assert token not in later and "bench scanner" in later and row.prefix in later
    assert client.get(LOTS, headers=bearer(token)).status_code == 200


def test_a_token_without_a_name_is_refused_on_the_page(client, make_user):
    sign_in(client, make_user("technician"))
    response = client.post("/account/tokens", data={"name": ""})
    assert response.status_code == 422
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ApiToken)) == 0


def test_the_account_page_lists_the_user_s_tokens_with_their_status(client, make_user, make_token):
    user = make_user("technician")
    live, revoked = make_token(user, "live one"), make_token(user, "gone one")
    users.revoke_token(user, _row_of(revoked).id, owner=user)
    make_token(make_user("technician"), "not mine")
    sign_in(client, user)
    page = client.get("/account").get_data(as_text=True)
    assert "live one" in page and "gone one" in page and "not mine" not in page
    assert ">active<" in page and ">revoked<" in page and live[:10] in page


def test_a_user_revokes_their_own_token_on_the_page_but_not_another_s(client, make_user, make_token):
    user = make_user("technician")
    token, theirs = make_token(user), make_token(make_user("technician"))
    sign_in(client, user)
    response = client.post(f"/account/tokens/{_row_of(token).id}/revoke")
    assert response.status_code == 302
    assert client.get(LOTS, headers=bearer(token)).status_code == 401
    assert client.post(f"/account/tokens/{_row_of(theirs).id}/revoke").status_code == 404
    assert client.get(LOTS, headers=bearer(theirs)).status_code == 200


def test_an_admin_sees_and_revokes_a_user_s_tokens_on_the_user_s_page(client, make_user, make_token):
    admin, user = make_user("admin"), make_user("technician")
    token = make_token(user, "pharmacy scanner")
    row_id = _row_of(token).id
    sign_in(client, admin)
    page = client.get(f"/admin/users/{user.id}").get_data(as_text=True)
    assert "pharmacy scanner" in page and token[:10] in page
    response = client.post(f"/admin/users/{user.id}/tokens/{row_id}/revoke")
    assert response.status_code == 302
    assert client.get(LOTS, headers=bearer(token)).status_code == 401
    row = _row(row_id)
    assert row.revoked_by_id == admin.id
    [event] = audit_rows("token.revoked", "api_token", row_id)
    assert event.actor_id == admin.id


def test_an_admin_revokes_only_through_the_token_s_own_user(client, make_user, make_token):
    admin, user, other = make_user("admin"), make_user("technician"), make_user("technician")
    token = make_token(other)
    sign_in(client, admin)
    assert client.post(f"/admin/users/{user.id}/tokens/{_row_of(token).id}/revoke").status_code == 404
    assert client.get(LOTS, headers=bearer(token)).status_code == 200


def test_a_token_opens_the_api_only_never_the_account_page_where_it_could_mint_another(client, make_user):
    user = make_user("pharmacist")
    leaked = {"Authorization": f"Bearer {users.create_token(None, user, 'leaked')}"}

    assert client.get("/account", headers=leaked).status_code == 302
    assert client.post("/account/tokens", headers=leaked, data={"name": "mine", "days": "3650"}).status_code == 302
    assert client.post("/account/sign-out-everywhere", headers=leaked).status_code == 302
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ApiToken)) == 1
    assert client.get("/api/v1/lots", headers=leaked).status_code == 200
