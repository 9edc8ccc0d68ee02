"""Accounts: creating staff, signing in, passwords, API tokens."""

import hashlib
import secrets

import sqlalchemy as sa
from flask import current_app
from werkzeug.security import check_password_hash, generate_password_hash

from ..extensions import db
from ..models import ApiToken, User
from ..permissions import ROLES
from . import attempts, audit, passwords
from .clock import utcnow
from .errors import InvalidInput, InvalidState, NotFound
from .passwords import DEMO_PASSWORD

USER_FIELDS = ("username", "display_name", "role", "active", "must_change_password")


def _hash(password: str) -> str:
    return generate_password_hash(password, method=current_app.config["PASSWORD_HASH_METHOD"])


def check_password_rules(password: str, *, username: str = "", field: str = "password",
                         allow_demo_password: bool = False) -> None:
    """Length, then the common-password list and the strength estimator (services.passwords)."""
    minimum = current_app.config["PASSWORD_MIN_LENGTH"]
    if len(password) < minimum:
        raise InvalidInput(f"The password must have at least {minimum} characters.", field=field)
    if len(password) > 200:
        raise InvalidInput("The password must have at most 200 characters.", field=field)
    if allow_demo_password and password == DEMO_PASSWORD:
        return
    if username and username.lower() in password.lower():
        raise InvalidInput("The password must not contain the username.", field=field)
    problem = passwords.weakness(password, user_inputs=[username],
                                 min_score=current_app.config["PASSWORD_MIN_SCORE"])
    if problem:
        raise InvalidInput(problem, field=field)


def create_user(actor: User | None, *, username: str, display_name: str, role: str,
                password: str, must_change_password: bool = False,
                allow_demo_password: bool = False) -> User:
    """Create an account. The username is unique; the password obeys the rules.

    `allow_demo_password` is for `seed-demo` alone: no form, API or command passes it.
    """
    username = username.strip().lower()
    if role not in ROLES:
        raise InvalidInput(f"Unknown role {role!r}; choose one of {', '.join(ROLES)}.", field="role")
    if not username or len(username) > 64:
        raise InvalidInput("A username of 1 to 64 characters is required.", field="username")
    if db.session.scalar(sa.select(User.id).where(User.username == username)):
        raise InvalidState(f"The username {username!r} is taken.", field="username")
    check_password_rules(password, username=username, allow_demo_password=allow_demo_password)
    user = User(
        username=username,
        display_name=display_name.strip() or username,
        role=role,
        password_hash=_hash(password),
        must_change_password=must_change_password,
        password_changed_at=utcnow(),
    )
    db.session.add(user)
    db.session.flush()
    audit.record(actor, "user.created", "user", user.id, new=audit.snapshot(user, USER_FIELDS))
    db.session.commit()
    return user


SIGN_IN_REFUSED = "Unknown username or wrong password."


def authenticate(username: str, password: str, *, client_address: str | None = None) -> User:
    """Sign in. Wrong passwords count with wrong signatures (services.attempts).

    An unknown user, a wrong password and an account made to wait all get the same
    message and the same hashing work, so neither usernames nor pauses can be probed. The
    account's row is locked while its password is checked and its failure recorded, so
    simultaneous guesses are checked one at a time and every failure is counted.
    """
    user = db.session.scalar(sa.select(User).where(User.username == username.strip().lower())
                             .with_for_update(key_share=True))
    now = utcnow()
    refused = InvalidInput(SIGN_IN_REFUSED, field="password")
    if user is None or not user.active or attempts.blocked_until(user, now) is not None:
        check_password_hash(_dummy_hash(), password)
        db.session.rollback()
        raise refused
    if not check_password_hash(user.password_hash, password):
        attempts.record_failure(user, "login", client_address, now)
        db.session.commit()
        raise refused
    user.last_login_at = now
    audit.record(user, "user.signed_in", "user", user.id)
    db.session.commit()
    return user


_DUMMY_HASHES: dict[str, str] = {}


def _dummy_hash() -> str:
    """A hash made the configured way, so a refused name costs what a real check costs."""
    method = current_app.config["PASSWORD_HASH_METHOD"]
    if method not in _DUMMY_HASHES:
        _DUMMY_HASHES[method] = generate_password_hash(secrets.token_hex(16), method=method)
    return _DUMMY_HASHES[method]


def verify_password(user: User, password: str) -> bool:
    return bool(password) and check_password_hash(user.password_hash, password)


def change_password(user: User, *, current_password: str, new_password: str) -> None:
    """A user changes their own password; the current one must be given."""
    attempts.check_signing_password(
        user, current_password, doing="change their own password", subject={"entity_type": "user"},
        refused=InvalidInput("The current password is not correct.", field="current_password"))
    if current_password == new_password:
        raise InvalidInput("The new password must differ from the current one.",
                           field="new_password")
    check_password_rules(new_password, username=user.username, field="new_password")
    user.password_hash = _hash(new_password)
    user.must_change_password = False
    user.password_changed_at = utcnow()
    audit.record(user, "user.password_changed", "user", user.id)
    db.session.commit()


def set_temporary_password(actor: User, user: User, temporary_password: str) -> None:
    """An admin sets a temporary password; the user must replace it at next sign-in."""
    check_password_rules(temporary_password, username=user.username)
    user.password_hash = _hash(temporary_password)
    user.must_change_password = True
    user.password_changed_at = utcnow()
    audit.record(actor, "user.password_reset", "user", user.id,
                 new={"must_change_password": True})
    db.session.commit()


def set_active(actor: User, user: User, active: bool, reason: str = "") -> None:
    """Deactivate or reactivate an account (accounts are never deleted)."""
    if user.id == actor.id and not active:
        raise InvalidState("You cannot deactivate your own account.")
    if user.active == active:
        return
    old = {"active": user.active}
    user.active = active
    audit.record(actor, "user.activated" if active else "user.deactivated", "user", user.id,
                 old=old, new={"active": active}, reason=reason)
    db.session.commit()


def update_user(actor: User, user: User, *, display_name: str, role: str) -> None:
    if role not in ROLES:
        raise InvalidInput(f"Unknown role {role!r}.", field="role")
    if user.id == actor.id and role != user.role:
        raise InvalidState("You cannot change your own role.", field="role")
    old = audit.snapshot(user, ("display_name", "role"))
    user.display_name = display_name.strip() or user.username
    user.role = role
    new = audit.snapshot(user, ("display_name", "role"))
    if new != old:
        audit.record(actor, "user.updated", "user", user.id, old=old, new=new)
    db.session.commit()


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(actor: User | None, user: User, name: str = "") -> str:
    """Issue an API token for `user`; only its hash is kept, so it is shown once."""
    if not user.active:
        raise InvalidState("An inactive account cannot have API tokens.")
    token = "ct_" + secrets.token_urlsafe(32)
    row = ApiToken(user_id=user.id, name=name[:80], token_hash=hash_token(token), prefix=token[:10])
    db.session.add(row)
    db.session.flush()
    audit.record(actor, "token.created", "api_token", row.id,
                 new={"user": user.username, "prefix": row.prefix, "name": row.name})
    db.session.commit()
    return token


def user_for_token(token: str) -> User | None:
    row = db.session.scalar(sa.select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
    if row is None or row.revoked_at is not None or not row.user.active:
        return None
    return row.user


def get_user(user_id: int) -> User:
    user = db.session.get(User, user_id)
    if user is None:
        raise NotFound("No such user.")
    return user
