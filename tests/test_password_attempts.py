"""Wrong passwords count together, at sign-in and when signing, and pause the account."""

import re
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from testkit import PASSWORD, audit_rows, bearer, sign_in

from compounding.extensions import db
from compounding.models import AuthFailure, Batch, User
from compounding.services import attempts, batches, users
from compounding.services.clock import utcnow
from compounding.services.errors import InvalidInput, NotAllowed, SignatureRejected

REFUSED = users.SIGN_IN_REFUSED
WRONG = "wrong-password-9"


def _failures(user, kind: str | None = None) -> int:
    query = sa.select(sa.func.count()).select_from(AuthFailure).where(AuthFailure.user_id == user.id)
    if kind:
        query = query.where(AuthFailure.kind == kind)
    return db.session.scalar(query)


def _status(batch_id: int) -> str:
    db.session.expire_all()
    return db.session.get(Batch, batch_id).status


def _age_failures(user, delta: timedelta) -> None:
    """Move this account's failures and password `delta` into the past (instead of waiting)."""
    db.session.get(User, user.id).password_changed_at -= delta
    for failure in db.session.scalars(sa.select(AuthFailure).where(AuthFailure.user_id == user.id)):
        failure.occurred_at -= delta
    db.session.commit()


def _page(response, username: str) -> str:
    page = response.get_data(as_text=True).replace(username, "NAME")
    return re.sub(r'name="submission_key" value="[^"]+"', 'name="submission_key"', page)


def _verify(client, token, batch, password):
    return client.post(f"/api/v1/batches/{batch.id}/verify", headers=bearer(token), json={"password": password})


# --- signatures -----------------------------------------------------------------------------------


def test_a_wrong_signature_password_is_counted_and_audited_with_what_was_being_signed(
        client, make_user, make_batch):
    batch = make_batch(release=False)
    verifier = make_user("pharmacist")
    token = users.create_token(None, verifier, "test")

    response = _verify(client, token, batch, WRONG)

    assert response.status_code == 403
    assert "password is not correct" in response.json["error"]
    assert _status(batch.id) == "prepared"
    assert _failures(verifier, "signature") == 1
    [event] = audit_rows("signature.refused", "batch", batch.id)
    assert event.actor_id == verifier.id
    assert event.new_values == {"meaning": "verified"}
    assert event.reason == f"sign batch {batch.id} as verified"


def test_twenty_five_wrong_signature_passwords_leave_the_right_one_refused_for_a_while(
        client, make_user, make_batch):
    batch = make_batch(release=False)
    verifier = make_user("pharmacist")
    token = users.create_token(None, verifier, "test")

    answers = [_verify(client, token, batch, f"{WRONG}-{n}") for n in range(25)]
    right = _verify(client, token, batch, PASSWORD)

    assert {a.status_code for a in answers} == {403}
    assert "Signing is blocked for 1 min" in answers[5].json["error"]
    assert right.status_code == 403
    assert re.search(r"Signing is blocked for \d+ min", right.json["error"])
    assert _status(batch.id) == "prepared"
    # Only the first five passwords were checked; the others were refused unread, and all audited.
    assert _failures(verifier) == 5
    assert len(audit_rows("signature.refused", "batch", batch.id)) == 5
    assert len(audit_rows("signature.blocked", "batch", batch.id)) == 21
    assert len(audit_rows("user.password_attempts_paused", "user", verifier.id)) == 1


def test_once_the_pause_is_over_the_right_signature_releases_the_batch(client, make_user, make_batch):
    batch = make_batch(release=False)
    verifier = make_user("pharmacist")
    token = users.create_token(None, verifier, "test")
    for n in range(5):
        _verify(client, token, batch, f"{WRONG}-{n}")
    assert _verify(client, token, batch, PASSWORD).status_code == 403

    _age_failures(verifier, timedelta(seconds=61))

    assert _verify(client, token, batch, PASSWORD).status_code == 200
    assert _status(batch.id) == "released"


def test_wrong_signatures_stop_sign_in_with_the_answer_a_wrong_password_gets(client, make_user, make_batch):
    batch = make_batch(release=False)
    verifier = make_user("pharmacist")
    for _ in range(5):
        with pytest.raises(SignatureRejected):
            batches.verify_batch(verifier, batch.id, WRONG)

    paused = client.post("/login", data={"username": verifier.username, "password": PASSWORD})
    unknown = client.post("/login", data={"username": verifier.username + "x", "password": PASSWORD})

    assert paused.status_code == unknown.status_code == 422
    assert REFUSED in paused.get_data(as_text=True)
    assert _page(paused, verifier.username) == _page(unknown, verifier.username + "x")
    assert client.get("/").status_code == 302


def test_wrong_sign_ins_stop_signing_with_a_403_that_says_for_how_long(client, make_user, make_batch):
    batch = make_batch(release=False)
    verifier = make_user("pharmacist")
    for _ in range(5):
        client.post("/login", data={"username": verifier.username, "password": WRONG})
    assert _failures(verifier, "login") == 5

    with pytest.raises(NotAllowed, match=r"Signing is blocked for 1 min") as refused:
        batches.verify_batch(verifier, batch.id, PASSWORD)
    assert refused.value.status_code == 403
    assert _status(batch.id) == "prepared"
    [event] = audit_rows("signature.blocked", "batch", batch.id)
    assert event.actor_id == verifier.id


def test_a_wrong_current_password_on_the_password_change_counts_too(app, make_user):
    user = make_user("technician")
    for _ in range(5):
        with pytest.raises(InvalidInput, match="current password is not correct"):
            users.change_password(user, current_password=WRONG, new_password="lilac-river-stone-42")
    with pytest.raises(NotAllowed, match="blocked"):
        users.change_password(user, current_password=PASSWORD, new_password="lilac-river-stone-42")
    assert _failures(user, "signature") == 5
    assert len(audit_rows("signature.refused", "user", user.id)) == 5


def test_an_admin_reset_starts_the_count_afresh(client, make_user):
    admin = make_user("admin")
    user = make_user("technician")
    for _ in range(5):
        client.post("/login", data={"username": user.username, "password": WRONG})
    users.set_temporary_password(admin, user, "amber-canal-lantern-7")

    response = client.post("/login", data={"username": user.username, "password": "amber-canal-lantern-7"})
    assert response.status_code == 302


def test_the_pause_grows_with_each_further_failure_up_to_the_window():
    cap = timedelta(minutes=15)
    waits = [attempts.delay_after(n, max_failures=5, cap=cap) for n in range(4, 12)]
    assert waits == [timedelta(0)] + [timedelta(minutes=m) for m in (1, 2, 4, 8, 15, 15, 15)]


def test_a_sixth_failure_after_the_first_pause_makes_the_next_wait_two_minutes(client, make_user):
    user = make_user("technician")
    for _ in range(5):
        client.post("/login", data={"username": user.username, "password": WRONG})
    _age_failures(user, timedelta(seconds=61))
    client.post("/login", data={"username": user.username, "password": WRONG})
    assert _failures(user) == 6
    _age_failures(user, timedelta(seconds=61))

    assert client.post("/login", data={"username": user.username, "password": PASSWORD}).status_code == 422
    until = attempts.blocked_until(user)
    assert timedelta(seconds=50) < until - utcnow() <= timedelta(seconds=60)


def test_failures_older_than_the_window_no_longer_count(client, make_user):
    user = make_user("technician")
    for _ in range(5):
        client.post("/login", data={"username": user.username, "password": WRONG})
    _age_failures(user, timedelta(minutes=15, seconds=1))
    assert attempts.recent_failures(user, utcnow()) == []
    assert client.post("/login", data={"username": user.username, "password": PASSWORD}).status_code == 302


def test_no_service_checks_a_password_outside_the_one_gate():
    package = Path(attempts.__file__).parents[1]
    checkers = {path.relative_to(package).as_posix()
                for path in package.rglob("*.py")
                if re.search(r"\b(check_password_hash|verify_password)\(", path.read_text("utf-8"))}
    assert checkers == {"services/users.py", "services/attempts.py"}
    source = (package / "services/users.py").read_text("utf-8")
    callers = re.findall(r"\bverify_password\(", source)
    assert len(callers) == 1, "users.py defines verify_password; only services.attempts may call it"


def test_an_admin_sees_that_an_account_is_paused_and_until_when(client, make_user):
    admin = make_user("admin")
    user = make_user("technician")
    for _ in range(5):
        client.post("/login", data={"username": user.username, "password": WRONG})
    sign_in(client, admin)

    page = client.get(f"/admin/users/{user.id}").get_data(as_text=True)

    assert "too many wrong passwords: sign-in and signing paused until" in page
    assert "paused until" not in client.get(f"/admin/users/{admin.id}").get_data(as_text=True)
