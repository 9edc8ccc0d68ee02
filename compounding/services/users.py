"""Accounts: creating staff, signing in with lockout, passwords, API tokens."""

import hashlib
import secrets
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app
from werkzeug.security import check_password_hash, generate_password_hash

from ..extensions import db
from ..models import ApiToken, User
from ..models.user import TOKEN_NAME_LENGTH
from ..permissions import ROLES
from . import audit, user_sessions
from .clock import utcnow
from .errors import AccountLocked, InvalidInput, InvalidState, NotFound

# The most common leaked passwords of 10+ characters; a short list keeps the obvious out.
COMMON_PASSWORDS = frozenset(
    {
        "1234567890", "12345678910", "0123456789", "1q2w3e4r5t", "qwertyuiop", "password12",
        "password123", "password1234", "iloveyou12", "abcdefghij", "1234567890a", "qwerty1234",
        "qwerty12345", "passw0rd123", "welcome123", "letmein123", "administrator", "changeme123",
        "pharmacist", "pharmacy123", "clinic1234", "aaaaaaaaaa", "1111111111", "0000000000",
        "password!", "p@ssw0rd123", "trustno1234", "sunshine123", "football123", "princess123",
    }
)

USER_FIELDS = ("username", "display_name", "role", "active", "must_change_password")


def _hash(password: str) -> str:
    return generate_password_hash(password, method=current_app.config["PASSWORD_HASH_METHOD"])


def check_password_rules(password: str, *, username: str = "", field: str = "password") -> None:
    minimum = current_app.config["PASSWORD_MIN_LENGTH"]
    if len(password) < minimum:
        raise InvalidInput(f"The password must have at least {minimum} characters.", field=field)
    if len(password) > 200:
        raise InvalidInput("The password must have at most 200 characters.", field=field)
    lowered = password.lower()
    if lowered in COMMON_PASSWORDS or len(set(lowered)) < 4:
        raise InvalidInput("This password is too common or too simple; choose another.", field=field)
    if username and username.lower() in lowered:
        raise InvalidInput("The password must not contain the username.", field=field)


def create_user(actor: User | None, *, username: str, display_name: str, role: str,
                password: str, must_change_password: bool = False) -> User:
    """Create an account. The username is unique; the password obeys the rules."""
    username = username.strip().lower()
    if role not in ROLES:
        raise InvalidInput(f"Unknown role {role!r}; choose one of {', '.join(ROLES)}.", field="role")
    if not username or len(username) > 64:
        raise InvalidInput("A username of 1 to 64 characters is required.", field="username")
    if db.session.scalar(sa.select(User.id).where(User.username == username)):
        raise InvalidState(f"The username {username!r} is taken.", field="username")
    check_password_rules(password, username=username)
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


def authenticate(username: str, password: str) -> User:
    """Sign in. After LOGIN_MAX_FAILURES wrong passwords the account locks for a while.

    Unknown user and wrong password get the same message, so usernames cannot be probed.
    The failure counter and the lock are committed even though sign-in is refused.
    """
    config = current_app.config
    now = utcnow()
    user = db.session.scalar(sa.select(User).where(User.username == username.strip().lower()))
    refused = InvalidInput("Unknown username or wrong password.", field="password")
    if user is None or not user.active:
        # Same work as a real check, so timing does not tell which usernames exist.
        check_password_hash(_DUMMY_HASH, password)
        raise refused
    if user.locked_until and user.locked_until > now:
        minutes = max(1, int((user.locked_until - now).total_seconds() // 60) + 1)
        raise AccountLocked(
            f"This account is locked after too many failed sign-ins; try again in {minutes} min.",
            field="username",
        )
    if not check_password_hash(user.password_hash, password):
        user.failed_logins += 1
        if user.failed_logins >= config["LOGIN_MAX_FAILURES"]:
            user.locked_until = now + timedelta(minutes=config["LOGIN_LOCKOUT_MINUTES"])
            user.failed_logins = 0
            audit.record(None, "user.locked", "user", user.id,
                         new={"locked_until": user.locked_until},
                         reason=f"{config['LOGIN_MAX_FAILURES']} failed sign-ins")
            db.session.commit()
            raise AccountLocked(
                "Too many failed sign-ins: this account is locked for "
                f"{config['LOGIN_LOCKOUT_MINUTES']} minutes.",
                field="username",
            )
        db.session.commit()
        raise refused
    user.failed_logins = 0
    user.locked_until = None
    user.last_login_at = now
    audit.record(user, "user.signed_in", "user", user.id)
    db.session.commit()
    return user


_DUMMY_HASH = generate_password_hash("not-a-real-password")


def verify_password(user: User, password: str) -> bool:
    return bool(password) and check_password_hash(user.password_hash, password)


def change_password(user: User, *, current_password: str, new_password: str) -> None:
    """A user changes their own password; the current one must be given."""
    if not verify_password(user, current_password):
        raise InvalidInput("The current password is not correct.", field="current_password")
    if current_password == new_password:
        raise InvalidInput("The new password must differ from the current one.",
                           field="new_password")
    check_password_rules(new_password, username=user.username, field="new_password")
    user.password_hash = _hash(new_password)
    user.must_change_password = False
    user.password_changed_at = utcnow()
    end_access(user, user, "password_changed")
    audit.record(user, "user.password_changed", "user", user.id)
    db.session.commit()


def set_temporary_password(actor: User, user: User, temporary_password: str) -> None:
    """An admin sets a temporary password; the user must replace it at next sign-in."""
    check_password_rules(temporary_password, username=user.username)
    user.password_hash = _hash(temporary_password)
    user.must_change_password = True
    user.failed_logins = 0
    user.locked_until = None
    user.password_changed_at = utcnow()
    end_access(actor, user, "password_reset")
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
    if not active:
        end_access(actor, user, "deactivated")
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


# A token's last_used_at is written at most this often, not on every call.
TOKEN_TOUCH_EVERY = timedelta(minutes=1)
MAX_TOKEN_DAYS = 3650


def create_token(actor: User | None, user: User, name: str, *, days: int | None = None) -> str:
    """Issue a named API token for `user`, answering for `days` (API_TOKEN_DAYS) unless revoked.

    Only its hash is kept, so it is shown once.
    """
    name = (name or "").strip()
    if not name:
        raise InvalidInput("Name the token after what uses it, e.g. \"scanner 1\".", field="name")
    if len(name) > TOKEN_NAME_LENGTH:
        raise InvalidInput(f"The name must have at most {TOKEN_NAME_LENGTH} characters.", field="name")
    days = current_app.config["API_TOKEN_DAYS"] if days is None else days
    if not 1 <= days <= MAX_TOKEN_DAYS:
        raise InvalidInput(f"A token lasts 1 to {MAX_TOKEN_DAYS} days.", field="days")
    if not user.active:
        raise InvalidState("An inactive account cannot have API tokens.")
    token = "ct_" + secrets.token_urlsafe(32)
    now = utcnow()
    row = ApiToken(user_id=user.id, name=name, token_hash=hash_token(token), prefix=token[:10],
                   created_at=now, expires_at=now + timedelta(days=days))
    db.session.add(row)
    db.session.flush()
    audit.record(actor, "token.created", "api_token", row.id,
                 new={"user": user.username, "prefix": row.prefix, "name": row.name,
                      "expires_at": row.expires_at})
    db.session.commit()
    return token


def token_for_secret(token: str, *, at: datetime | None = None) -> ApiToken | None:
    """The live token a bearer secret names; None when unknown, revoked, expired or its user inactive.

    last_used_at moves at most once a minute.
    """
    now = at or utcnow()
    row = db.session.scalar(sa.select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
    if row is None or row.status(now) != "live" or not row.user.active:
        return None
    if row.last_used_at is None or now - row.last_used_at >= TOKEN_TOUCH_EVERY:
        user_sessions.record_seen(row, "last_used_at", now)
    return row


def user_for_token(token: str) -> User | None:
    row = token_for_secret(token)
    return row.user if row is not None else None


def _live_tokens(user: User, at: datetime) -> list[ApiToken]:
    return list(db.session.scalars(
        sa.select(ApiToken).where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None),
                                  ApiToken.expires_at > at).order_by(ApiToken.id)))


def _revoke(actor: User | None, rows: list[ApiToken], reason: str, at: datetime) -> list[ApiToken]:
    """Revoke `rows`, one audit row each; part of the caller's transaction."""
    for row in rows:
        row.revoked_at = at
        row.revoked_by_id = actor.id if actor else None
        row.revoked_reason = reason
        audit.record(actor, "token.revoked", "api_token", row.id,
                     new={"user": row.user.username, "prefix": row.prefix, "name": row.name},
                     reason=reason)
    return rows


def user_tokens(user: User) -> list[ApiToken]:
    """Every token of `user`, newest first (revoked and expired ones too: the page shows why)."""
    return list(db.session.scalars(
        sa.select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.id.desc())))


def revoke_token(actor: User | None, token_id: int, *, owner: User) -> ApiToken:
    """Revoke one of `owner`'s live tokens. Another account's token is unknown here (404)."""
    row = db.session.get(ApiToken, token_id)
    if row is None or row.user_id != owner.id:
        raise NotFound("No such API token.")
    now = utcnow()
    status = row.status(now)
    if status != "live":
        raise InvalidState(f"The token {row.name or row.prefix} is already {status}.")
    _revoke(actor, [row], "revoked", now)
    db.session.commit()
    return row


def revoke_tokens(actor: User | None, user: User) -> list[ApiToken]:
    """Revoke every live token of `user` (the CLI, the API's `all`); each revocation audited."""
    rows = _revoke(actor, _live_tokens(user, utcnow()), "revoked", utcnow())
    db.session.commit()
    return rows


def end_access(actor: User | None, user: User, reason: str) -> None:
    """Password change or reset, deactivation: every session of `user` ends and every live token
    is revoked, so nothing opened before answers afterwards (and reactivation revives nothing).

    Part of the caller's transaction.
    """
    now = utcnow()
    ended = user_sessions.end_sessions(user, reason, at=now)
    if ended:
        audit.record(actor, "user.sessions_ended", "user", user.id, new={"sessions_ended": ended},
                     reason=reason)
    _revoke(actor, _live_tokens(user, now), reason, now)


def get_user(user_id: int) -> User:
    user = db.session.get(User, user_id)
    if user is None:
        raise NotFound("No such user.")
    return user
