"""Sign-in plumbing: loading the user, the permission decorator, forced password changes."""

from functools import wraps

from flask import Flask, abort, g, redirect, request, url_for
from flask_login import current_user

from .extensions import db, login_manager
from .models import User
from .services.users import user_for_token


def init_app(app: Flask) -> None:
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please sign in to open that page."
    login_manager.login_message_category = "info"
    login_manager.session_protection = "basic"
    app.before_request(_force_password_change)


@login_manager.user_loader
def _load_user(user_id: str) -> User | None:
    user = db.session.get(User, int(user_id))
    return user if user is not None and user.active else None


@login_manager.request_loader
def _load_user_from_token(req) -> User | None:
    return user_for_bearer(req.headers.get("Authorization", ""))


def user_for_bearer(header: str) -> User | None:
    """The account an `Authorization: Bearer <token>` header names, looked up once per request."""
    if not header.startswith("Bearer "):
        return None
    cached = g.get("_bearer_user")
    if cached is None or cached[0] != header:
        cached = g._bearer_user = (header, user_for_token(header.removeprefix("Bearer ").strip()))
    return cached[1]


def is_api_request() -> bool:
    return request.path.startswith("/api/")


@login_manager.unauthorized_handler
def _unauthorized():
    if is_api_request():
        abort(401)
    return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))


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
