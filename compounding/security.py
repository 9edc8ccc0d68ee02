"""Sign-in plumbing: loading the user, the permission decorator, forced password changes."""

from datetime import timedelta
from functools import wraps

from flask import Flask, abort, current_app, flash, g, redirect, request, session, url_for
from flask_login import current_user, login_user, logout_user

from .extensions import db, login_manager
from .models import ApiToken, Location, User
from .services import user_sessions
from .services.clock import utcnow
from .services.users import token_for_secret

# Flask-Login's keys in the session cookie. `_user_id` holds the random id of a server-side
# session (services.user_sessions), never the account's id: Flask-Login's "alternative token".
_LOGIN_KEYS = ("_user_id", "_fresh", "_id")

_ENDED_MESSAGES = {
    "idle": "You were signed out after a period of inactivity. Sign in to continue.",
    "password_changed": "Your password was changed, which signed out every browser. Sign in to continue.",
    "password_reset": "An administrator reset your password. Sign in with the temporary password.",
    None: "Your session has ended. Sign in to continue.",
}


def init_app(app: Flask) -> None:
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please sign in to open that page."
    login_manager.login_message_category = "info"
    login_manager.session_protection = "basic"
    app.before_request(_force_password_change)


@login_manager.user_loader
def _load_user(session_id: str) -> User | None:
    """The user of the live server-side session the cookie names, else nobody.

    Flask-Login calls this for the session cookie and for a remember-me cookie alike, and
    both must name a live session row: nothing outlives a sign-out, a password change or
    reset, a deactivation, or SESSION_IDLE_MINUTES without a request (judged on the server).
    """
    row = user_sessions.live_session(session_id, at=utcnow(), idle_limit=idle_limit())
    if row is None:
        g._session_ended = reason = user_sessions.ended_reason(session_id)
        if reason:
            # Said by whichever request finds the session over (a page, a script's call, an
            # image): the next page shown, the login page, carries the message.
            flash(_ENDED_MESSAGES.get(reason, _ENDED_MESSAGES[None]), "info")
        for key in _LOGIN_KEYS:
            session.pop(key, None)
        if current_app.config.get("REMEMBER_COOKIE_NAME", "remember_token") in request.cookies:
            session["_remember"] = "clear"
        return None
    return row.user


def idle_limit() -> timedelta:
    """How long a browser session may go without a request (SESSION_IDLE_MINUTES)."""
    return timedelta(minutes=int(current_app.config["SESSION_IDLE_MINUTES"]))


def open_sessions(user: User) -> list:
    """The user's sessions still open now, for their account page and the admin's user page."""
    return user_sessions.live_sessions(user, at=utcnow(), idle_limit=idle_limit())


def start_browser_session(user: User) -> None:
    """Sign `user` in on this browser: a new server-side session, whose random id alone goes in the cookie."""
    session_id = user_sessions.start_session(user, client_address=request.remote_addr,
                                        user_agent=request.user_agent.string)
    login_user(user)
    session["_user_id"] = session_id


def end_browser_session() -> None:
    """Sign out here: the server-side session ends, so a copy of the cookie opens nothing."""
    user_sessions.sign_out(session.get("_user_id"))
    logout_user()


def current_session_id() -> str | None:
    return session.get("_user_id") if current_user.is_authenticated else None


@login_manager.request_loader
def _load_user_from_token(req) -> User | None:
    # Tokens open the API only: a leaked token must not reach the account page, where it
    # could mint a longer-lived token or sign its owner out.
    if not req.path.startswith("/api/"):
        return None
    return user_for_bearer(req.headers.get("Authorization", ""))


def user_for_bearer(header: str) -> User | None:
    """The account an `Authorization: Bearer <token>` header names, looked up once per request."""
    token = token_for_bearer(header)
    return token.user if token is not None else None


def token_for_bearer(header: str) -> ApiToken | None:
    """The live API token an `Authorization: Bearer <token>` header names (cached for the request)."""
    if not header.startswith("Bearer "):
        return None
    cached = g.get("_bearer_token")
    if cached is None or cached[0] != header:
        cached = g._bearer_token = (header, token_for_secret(header.removeprefix("Bearer ").strip()))
    return cached[1]


def scope_refusal(token: ApiToken) -> str | None:
    """Why a device's token may not make this request (None: it may).

    A token with a `scope` (a fridge sensor's: `readings.record`) opens only the routes guarded by
    exactly that permission: no list, no record, not even the routes open to any signed-in
    account. Bound to a location as well, it opens them only for that location (the route's
    `location_id`). Judged here once for every API route, so a new route cannot forget it.
    """
    if token.scope is None:
        return None
    view = current_app.view_functions.get(request.endpoint or "")
    where = ""
    if token.location_id is not None:
        location = db.session.get(Location, token.location_id)
        where = f" at {location.code if location else token.location_id}"
    refusal = (f"The token {token.name or token.prefix} is a device's: it may only {token.scope}{where}, "
               "nothing else.")
    if getattr(view, "required_permission", None) != token.scope:
        return refusal
    if token.location_id is not None and (request.view_args or {}).get("location_id") != token.location_id:
        return refusal
    return None


def is_api_request() -> bool:
    return request.path.startswith("/api/")


@login_manager.unauthorized_handler
def _unauthorized():
    if is_api_request():
        abort(401)
    target = request.full_path.rstrip("?")
    if g.get("_session_ended"):
        referrer = request.referrer or ""
        if request.method != "GET" and referrer.startswith(request.host_url):
            # A form sent after the session ended: come back to the page it was on.
            target = "/" + referrer.removeprefix(request.host_url)
    return redirect(url_for("auth.login", next=target))




def requires(permission: str):
    """Refuse visitors (login / 401) and roles without `permission` (403) before the view runs."""

    def decorator(view):
        @wraps(view)
        def wrapped(*args, **kwargs):
            if not current_user.is_authenticated:
                return login_manager.unauthorized()
            if not current_user.can(permission):
                abort(403)
            return view(*args, **kwargs)

        wrapped.required_permission = permission
        return wrapped

    return decorator


def public(view):
    """Mark a view as open to visitors (login page, health check)."""
    view.required_permission = None
    return view


def signed_in(view):
    """Any signed-in account, whatever its role (own password, sign out)."""
    wrapped = requires("dashboard.view")(view)
    wrapped.required_permission = "signed_in"
    return wrapped


_ALWAYS_ALLOWED = {"auth.change_password", "auth.logout", "static", "main.healthz"}


def _force_password_change():
    if (
        current_user.is_authenticated
        and current_user.must_change_password
        and request.endpoint not in _ALWAYS_ALLOWED
    ):
        if is_api_request():
            abort(403, "The password must be changed in the browser before using the API.")
        return redirect(url_for("auth.change_password"))
    return None
