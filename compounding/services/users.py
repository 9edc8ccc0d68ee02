"""Accounts: creating staff, signing in, passwords, API tokens."""

import hashlib
import re
import secrets
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app
from werkzeug.security import check_password_hash, generate_password_hash

from ..extensions import db
from ..limits import NAME_MAX, PASSWORD_MAX, REASON_MAX, USERNAME_MAX
from ..models import ApiToken, User
from ..models.patient import fold
from ..models.site import MAIN_SITE
from ..models.user import TOKEN_NAME_LENGTH
from ..permissions import PERMISSIONS, ROLES, role_can
from . import attempts, audit, passwords, user_sessions
from .bounds import checked_text
from .clock import utcnow
from .cold_chain import monitored_location
from .errors import InvalidInput, InvalidState, NotAllowed, NotFound, SignatureRejected
from .lookup import fetch
from .passwords import DEMO_PASSWORD
from .sites import join_sites, may_act_at, site_by_code
from .transaction import alone, transactional

USER_FIELDS = ("username", "display_name", "role", "active", "must_change_password", "email")
EMAIL_MAX = 254
# A sane address, not RFC 5322 in full: something@a.domain, no spaces, one @.
_EMAIL_UNSAFE = frozenset(',<>"();:[]\\')
_EMAIL = re.compile(r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$")


def checked_email(value: str | None, field: str = "email") -> str | None:
    """An e-mail address (its domain in lower case), or None for a blank: where the daily digest goes."""
    value = (value or "").strip()
    if not value:
        return None
    if len(value) > EMAIL_MAX:
        raise InvalidInput(f"An e-mail address has at most {EMAIL_MAX} characters.", field=field)
    if not _EMAIL.match(value):
        raise InvalidInput("Enter an e-mail address such as name@clinic.example.", field=field)
    local, domain = value.rsplit("@", 1)
    # What every mail server takes: the part before @ in plain ASCII without the characters that split or quote
    # an address; an accented domain is kept in its ASCII (IDNA) form.
    if not local.isascii() or any(char in local for char in _EMAIL_UNSAFE):
        raise InvalidInput("The part of an e-mail address before @ must be plain ASCII letters, digits or . _ - +, "
                           "without spaces, commas, quotes or < >.", field=field)
    try:
        domain = domain.lower().encode("idna").decode("ascii")
    except UnicodeError:
        raise InvalidInput("The part of this e-mail address after @ is not a domain name.", field=field) from None
    if len(local) + 1 + len(domain) > EMAIL_MAX:
        raise InvalidInput(f"An e-mail address has at most {EMAIL_MAX} characters.", field=field)
    return f"{local}@{domain}"


def _hash(password: str) -> str:
    return generate_password_hash(password, method=current_app.config["PASSWORD_HASH_METHOD"])


def check_password_rules(password: str, *, username: str = "", field: str = "password",
                         allow_demo_password: bool = False) -> None:
    """Length, then the common-password list and the strength estimator (services.passwords)."""
    minimum = current_app.config["PASSWORD_MIN_LENGTH"]
    if len(password) < minimum:
        raise InvalidInput(f"The password must have at least {minimum} characters.", field=field)
    if len(password) > PASSWORD_MAX:
        raise InvalidInput(f"The password must have at most {PASSWORD_MAX} characters.", field=field)
    if allow_demo_password and password == DEMO_PASSWORD:
        return
    if username and username.lower() in password.lower():
        raise InvalidInput("The password must not contain the username.", field=field)
    problem = passwords.weakness(password, user_inputs=[username],
                                 min_score=current_app.config["PASSWORD_MIN_SCORE"])
    if problem:
        raise InvalidInput(problem, field=field)


ADMIN = "admin"


def ensure_display_name_free(display_name: str, *, other_than: int | None = None) -> None:
    """Refuse (409) a printed name an active account already uses, ignoring case, spaces and accents.

    A signature shows the signer's printed name, so two active people never share one. The
    partial unique index on `display_name_key` holds the same rule in the database.
    """
    query = sa.select(User.username, User.display_name).where(User.active.is_(True),
                                                              User.display_name_key == fold(display_name)[:NAME_MAX])
    if other_than is not None:
        query = query.where(User.id != other_than)
    clash = db.session.execute(query.limit(1)).first()
    if clash is not None:
        raise InvalidState(f"The printed name {display_name!r} is already used by the active account "
                           f"{clash.username!r} ({clash.display_name}): signatures must tell people apart, so "
                           "add an initial, a middle name or a title.", field="display_name")


def _ensure_may_sign_for_admins(actor: User, actor_password: str | None, doing: str) -> None:
    """Before anything changes: only an active admin, giving their own password, makes or unmakes an admin."""
    if not actor.active or actor.role != ADMIN:
        raise NotAllowed(f"Only an administrator can {doing}.", field="password")
    if not actor_password:
        raise SignatureRejected(f"To {doing}, sign with your own password (e-signature). Nothing was changed.",
                                field="password")


def _sign_for_admins(actor: User, actor_password: str, meaning: str, user: User) -> None:
    """The admin's e-signature on the account; a refusal undoes the whole change (the boundary rolls back)."""
    # Imported here: signatures imports this module for verify_password.
    from .signatures import sign

    sign(actor, actor_password, meaning, "user", user.id)


@transactional
def create_user(actor: User | None, *, username: str, display_name: str, role: str,
                password: str, must_change_password: bool = False, actor_password: str | None = None,
                allow_demo_password: bool = False, site_codes=None, all_sites: bool = False,
                email: str | None = None) -> User:
    """Create an account. The username is unique, the printed name unused by any active account,
    and the password obeys the rules.

    Creating an admin is the acting admin's signed action: their own password,
    403 when missing or wrong. `actor` None is the operator at the server's command line
    (`flask create-user`, `seed-demo`): whoever can run it already holds the database and the
    secret key, so a password would guard nothing, and it is how the first admin comes to be.
    `allow_demo_password` is for `seed-demo` alone: no form, API or command passes it.
    The account belongs to the sites named by `site_codes` (default: MAIN); `all_sites` lets it see
    the whole chain. `email` (optional) is where the daily digest goes.
    """
    username = username.strip().lower()
    email = checked_email(email)
    if role not in ROLES:
        raise InvalidInput(f"Unknown role {role!r}; choose one of {', '.join(ROLES)}.", field="role")
    if not username or len(username) > USERNAME_MAX:
        raise InvalidInput(f"A username of 1 to {USERNAME_MAX} characters is required.", field="username")
    if db.session.scalar(sa.select(User.id).where(User.username == username)):
        raise InvalidState(f"The username {username!r} is taken.", field="username")
    display_name = display_name.strip() or username
    ensure_display_name_free(display_name)
    check_password_rules(password, username=username, allow_demo_password=allow_demo_password)
    signed = actor is not None and role == ADMIN
    if signed:
        _ensure_may_sign_for_admins(actor, actor_password, "create an administrator")
    user = User(
        username=username,
        display_name=display_name,
        role=role,
        password_hash=_hash(password),
        must_change_password=must_change_password,
        password_changed_at=utcnow(),
        all_sites=all_sites,
        email=email,
    )
    sites_joined = [site_by_code(code) for code in (site_codes or [MAIN_SITE])]
    db.session.add(user)
    db.session.flush()
    join_sites(user, [site.id for site in sites_joined])
    if signed:
        _sign_for_admins(actor, actor_password, "admin created", user)
    audit.created(actor, "user.created", user, USER_FIELDS, extra={"sites": [site.code for site in sites_joined],
                                                                    "all_sites": all_sites},
                  reason="" if actor is not None else "by the operator at the command line")
    return user


SIGN_IN_REFUSED = "Unknown username or wrong password."


def authenticate(username: str, password: str, *, client_address: str | None = None) -> User:
    """Sign in. Wrong passwords count with wrong signatures (services.attempts).

    An unknown user, a wrong password and an account made to wait all get the same
    message and the same hashing work, so neither usernames nor pauses can be probed. The
    account's row is locked while its password is checked and its failure recorded, so
    simultaneous guesses are checked one at a time and every failure is counted.
    """
    with alone():  # the failure row commits with the check, never as part of another change
        user = _check_sign_in(username, password, client_address)
    if user is None:
        raise InvalidInput(SIGN_IN_REFUSED, field="password")
    return user


def _check_sign_in(username: str, password: str, client_address: str | None) -> User | None:
    """The signed-in user, or None: then a wrong password's failure is committed with the refusal.

    Answering None rather than raising keeps the failure row, written under the account's
    row lock, in the commit that ends the check.
    """
    user = db.session.scalar(sa.select(User).where(User.username == username.strip().lower())
                             .with_for_update(key_share=True))
    now = utcnow()
    if user is None or not user.active or attempts.blocked_until(user, now) is not None:
        check_password_hash(_dummy_hash(), password)
        return None
    if not check_password_hash(user.password_hash, password):
        attempts.record_failure(user, "login", client_address, now)
        return None
    user.last_login_at = now
    audit.record(user, "user.signed_in", "user", user.id)
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


@transactional
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
    end_access(user, user, "password_changed")
    audit.record(user, "user.password_changed", "user", user.id)


@transactional
def set_temporary_password(actor: User, user: User, temporary_password: str) -> None:
    """An admin sets a temporary password; the user must replace it at next sign-in."""
    check_password_rules(temporary_password, username=user.username)
    user.password_hash = _hash(temporary_password)
    user.must_change_password = True
    user.password_changed_at = utcnow()
    end_access(actor, user, "password_reset")
    audit.record(actor, "user.password_reset", "user", user.id,
                 new={"must_change_password": True})


@transactional
def set_active(actor: User, user: User, active: bool, reason: str = "") -> None:
    """Deactivate or reactivate an account (accounts are never deleted)."""
    if user.id == actor.id and not active:
        raise InvalidState("You cannot deactivate your own account.")
    if user.active == active:
        return
    reason = checked_text(reason, "reason", REASON_MAX)
    if active:
        ensure_display_name_free(user.display_name, other_than=user.id)
    with audit.change(actor, "user.activated" if active else "user.deactivated", user, ("active",), reason=reason):
        user.active = active
        if not active:
            end_access(actor, user, "deactivated")


@transactional
def update_user(actor: User, user: User, *, display_name: str, role: str,
                actor_password: str | None = None, email: str | None = ...) -> None:
    """Rename an account, change its role or its e-mail address (left out: kept; blank: none).

    The printed name stays unique among active accounts (409). A change to or from the admin
    role is the acting admin's signed action: their own password, 403 when
    missing or wrong, so no admin quietly demotes another or makes a new one.
    """
    if role not in ROLES:
        raise InvalidInput(f"Unknown role {role!r}.", field="role")
    email = user.email if email is ... else checked_email(email)
    if user.id == actor.id and role != user.role:
        raise InvalidState("You cannot change your own role.", field="role")
    display_name = display_name.strip() or user.username
    if user.active:
        ensure_display_name_free(display_name, other_than=user.id)
    signed = role != user.role and ADMIN in (role, user.role)
    if signed:
        _ensure_may_sign_for_admins(actor, actor_password, "change an administrator's role" if user.role == ADMIN
                                    else "make someone an administrator")
        _sign_for_admins(actor, actor_password, "role changed", user)
    fields = ("display_name", "role") + (("email",) if email != user.email else ())
    with audit.change(actor, "user.updated", user, fields, only_if_changed=True):
        user.display_name = display_name
        user.role = role
        user.email = email


@transactional
def set_own_email(user: User, email: str | None) -> None:
    """A person's own address (blank: none), where their daily digest goes."""
    email = checked_email(email)
    with audit.change(user, "user.email_changed", user, ("email",), only_if_changed=True):
        user.email = email


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


# A token's last_used_at is written at most this often, not on every call.
TOKEN_TOUCH_EVERY = timedelta(minutes=1)
MAX_TOKEN_DAYS = 3650


@transactional
def create_token(actor: User | None, user: User, name: str, *, days: int | None = None,
                 scope: str | None = None, location_id: int | None = None) -> str:
    """Issue a named API token for `user`, answering for `days` (API_TOKEN_DAYS) unless revoked.

    A device's token (a fridge sensor) carries a `scope`, one permission of the user's role, and
    may be bound to one monitored location at a site of the user's: it then opens nothing else.
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
    location_code = _checked_token_scope(user, scope, location_id)
    token = "ct_" + secrets.token_urlsafe(32)
    now = utcnow()
    row = ApiToken(user_id=user.id, name=name, token_hash=hash_token(token), prefix=token[:10],
                   created_at=now, expires_at=now + timedelta(days=days), scope=scope, location_id=location_id)
    db.session.add(row)
    db.session.flush()
    audit.record(actor, "token.created", "api_token", row.id,
                 new={"user": user.username, "prefix": row.prefix, "name": row.name,
                      "expires_at": row.expires_at, "scope": scope, "location": location_code})
    return token


def _checked_token_scope(user: User, scope: str | None, location_id: int | None) -> str | None:
    """A token gives no more than its user has: a known permission of the user's role, and a location that is
    monitored (active, with a range) at one of the user's sites. Answers the location's code."""
    if scope is None:
        if location_id is not None:
            raise InvalidInput("A token bound to a location carries the one permission it opens.", field="scope")
        return None
    if scope not in PERMISSIONS:
        raise InvalidInput(f"{scope!r} is not a permission.", field="scope")
    if not role_can(user.role, scope):
        raise NotAllowed(f"{user.display_name}'s role ({user.role}) does not have {scope}: a token cannot open "
                         "more than its user may do.", field="scope")
    if location_id is None:
        return None
    location = monitored_location(location_id)
    if not may_act_at(user, location.site_id):
        raise NotAllowed(f"{user.display_name} does not belong to the site of {location.code}.", field="location_id")
    return location.code


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


@transactional
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
    return row


@transactional
def revoke_tokens(actor: User | None, user: User) -> list[ApiToken]:
    """Revoke every live token of `user` (the CLI, the API's `all`); each revocation audited."""
    rows = _revoke(actor, _live_tokens(user, utcnow()), "revoked", utcnow())
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


@transactional
def end_all_access_after_restore() -> tuple[int, int]:
    """After a restore: every session ends and every token is revoked, for every account.

    The backup's copies of sessions, tokens and passwords are as they were when it was taken:
    a token revoked since, or a session ended since, would otherwise answer again. Everyone
    signs in once more and asks for new tokens. Returns (sessions ended, tokens revoked).
    """
    now = utcnow()
    ended = revoked = 0
    for user in db.session.scalars(sa.select(User).order_by(User.id)):
        ended += user_sessions.end_sessions(user, "restored", at=now)
        revoked += len(_revoke(None, _live_tokens(user, now), "restored", now))
    audit.record(None, "backup.restored_access_ended", "user", None,
                 new={"sessions_ended": ended, "tokens_revoked": revoked},
                 reason="a restore brings back the backup's sessions and tokens")
    return ended, revoked


def get_user(user_id: int) -> User:
    return fetch(User, user_id, NotFound("No such user."))
