"""Sign in, sign out, change password."""

from urllib.parse import urlsplit

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_user, logout_user

from ..extensions import limiter
from ..forms import apply_domain_error
from ..security import public, signed_in
from ..services import users
from ..services.errors import DomainError
from .forms import ChangePasswordForm, LoginForm

bp = Blueprint("auth", __name__)


def _safe_next(target: str | None) -> str:
    # Only paths on this site: an open redirect would let a phishing link borrow our login.
    # Browsers read "/\\host" as "//host" and drop tabs and newlines, so those are refused too.
    if target and target.isprintable() and "\\" not in target:
        parts = urlsplit(target)
        if (not parts.scheme and not parts.netloc and target.startswith("/")
                and not target.startswith("//")):
            return target
    return url_for("main.dashboard")


def _refused(response) -> bool:
    return response.status_code != 302


@bp.route("/login", methods=["GET", "POST"])
@public
# Per client address, before any password is hashed: a flood is cut off cheaply, and the
# 429 says nothing about any username. Per account, services.attempts makes it wait.
@limiter.limit(lambda: current_app.config["LOGIN_RATE_LIMIT"], methods=["POST"],
               scope="login-posts", error_message="Too many sign-in attempts from your address; "
               "wait a minute and try again.")
@limiter.limit(lambda: current_app.config["LOGIN_FAILURE_RATE_LIMIT"], methods=["POST"],
               scope="login-refusals", deduct_when=_refused,
               error_message="Too many refused sign-ins from your address; wait a few minutes and try again.")
def login():
    if current_user.is_authenticated:
        return redirect(_safe_next(request.args.get("next")))
    form = LoginForm()
    if form.validate_on_submit():
        try:
            user = users.authenticate(form.username.data, form.password.data,
                                      client_address=request.remote_addr)
        except DomainError as exc:
            apply_domain_error(form, exc)
        else:
            login_user(user)
            if user.must_change_password:
                flash("Your password was set by an administrator: choose your own now.", "warning")
                return redirect(url_for("auth.change_password"))
            return redirect(_safe_next(request.args.get("next")))
    return render_template("auth/login.html", form=form), 422 if form.errors else 200


@bp.route("/logout", methods=["POST"])
@signed_in
def logout():
    logout_user()
    flash("You are signed out.", "info")
    return redirect(url_for("auth.login"))


@bp.route("/account/password", methods=["GET", "POST"])
@signed_in
def change_password():
    form = ChangePasswordForm()
    if form.validate_on_submit():
        try:
            users.change_password(current_user, current_password=form.current_password.data,
                                  new_password=form.new_password.data)
        except DomainError as exc:
            apply_domain_error(form, exc)
        else:
            flash("Your password is changed.", "success")
            return redirect(url_for("main.dashboard"))
    status = 422 if form.errors else 200
    return render_template("auth/change_password.html", form=form), status
