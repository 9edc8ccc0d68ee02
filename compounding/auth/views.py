"""Sign in, sign out, change password; one's own account: sessions and API tokens."""

from urllib.parse import urlsplit

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, logout_user

from ..extensions import limiter
from ..forms import ConfirmForm, apply_domain_error
from ..pages import revoke_token
from ..security import (
    current_session_id,
    end_browser_session,
    open_sessions,
    public,
    signed_in,
    start_browser_session,
)
from ..services import user_sessions, users
from ..services.clock import utcnow
from ..services.errors import DomainError
from .forms import ChangePasswordForm, EmailForm, LoginForm, TokenCreateForm

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
            start_browser_session(user)
            if user.must_change_password:
                flash("Your password was set by an administrator: choose your own now.", "warning")
                return redirect(url_for("auth.change_password"))
            return redirect(_safe_next(request.args.get("next")))
    return render_template("auth/login.html", form=form), 422 if form.errors else 200


@bp.route("/logout", methods=["POST"])
@signed_in
def logout():
    end_browser_session()
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
            # Every session of the account ended with the change: this browser starts a fresh one.
            start_browser_session(current_user._get_current_object())
            flash("Your password is changed. Every other browser and every API token of yours is signed out.",
                  "success")
            return redirect(url_for("main.dashboard"))
    status = 422 if form.errors else 200
    return render_template("auth/change_password.html", form=form), status


def _account_page(token_form: TokenCreateForm | None = None, new_token: str | None = None, status: int = 200,
                  email_form: EmailForm | None = None):
    return render_template(
        "auth/account.html", user_sessions=open_sessions(current_user),
        email_form=email_form or EmailForm(formdata=None, data={"email": current_user.email or ""}),
        current_session=user_sessions.hash_session_id(current_session_id() or ""),
        tokens=users.user_tokens(current_user), token_form=token_form or TokenCreateForm(formdata=None),
        confirm_form=ConfirmForm(), new_token=new_token, now=utcnow(),
    ), status


@bp.route("/account")
@signed_in
def account():
    return _account_page()


@bp.route("/account/email", methods=["POST"])
@signed_in
def account_email():
    form = EmailForm()
    if form.validate_on_submit():
        try:
            users.set_own_email(current_user, form.email.data)
        except DomainError as exc:
            apply_domain_error(form, exc)
        else:
            flash("Your e-mail address is saved." if current_user.email else "Your e-mail address is removed.",
                  "success")
            return redirect(url_for("auth.account"))
    return _account_page(email_form=form, status=422)


@bp.route("/account/tokens", methods=["POST"])
@signed_in
def token_create():
    form = TokenCreateForm()
    if form.validate_on_submit():
        try:
            token = users.create_token(current_user, current_user, form.name.data, days=form.days.data)
        except DomainError as exc:
            apply_domain_error(form, exc)
        else:
            return _account_page(new_token=token)
    return _account_page(token_form=form, status=422)


@bp.route("/account/tokens/<int:token_id>/revoke", methods=["POST"])
@signed_in
def token_revoke(token_id: int):
    revoke_token(token_id, current_user,
                 lambda token: f"Token {token.name or token.prefix} revoked: it no longer opens the API.")
    return redirect(url_for("auth.account"))


@bp.route("/account/sign-out-everywhere", methods=["POST"])
@signed_in
def sign_out_everywhere():
    if not ConfirmForm().validate_on_submit():
        abort(400)
    ended = user_sessions.sign_out_everywhere(current_user, current_user)
    logout_user()
    flash(f"Signed out everywhere: {ended} session(s) ended, this one included.", "info")
    return redirect(url_for("auth.login"))
