"""Accounts (admin), the audit trail (pharmacist, auditor, admin) and the patient access log (pharmacist, auditor)."""

from datetime import date

import sqlalchemy as sa
from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from wtforms.fields.choices import SelectChoice

from ..extensions import db
from ..forms import ConfirmForm, apply_domain_error
from ..limits import PER_PAGE_DEFAULT
from ..models import MailMessage, Patient, PatientAccess, Site, User
from ..models.job import MAIL_STATUSES
from ..models.site import MAIN_SITE
from ..pages import revoke_token
from ..pagination import page_arg, paginate_rows
from ..privacy import audit_events_shown, may_read_patients, note_access
from ..queries.audit import AuditFilters, audit_list_query
from ..queries.common import record_id
from ..queries.users import account_names, user_list_query
from ..security import open_sessions, requires
from ..services import access_log, digests, mail, site_reads, sites, user_sessions, users
from ..services.bounds import read_day
from ..services.clock import end_of_clinic_day, start_of_clinic_day, utcnow
from ..services.errors import DomainError
from .forms import ActiveForm, AuditFilterForm, TemporaryPasswordForm, UserCreateForm, UserEditForm, UserSitesForm

bp = Blueprint("admin", __name__)


def _page() -> int:
    return page_arg()


@bp.route("/admin/users")
@requires("users.manage")
def user_list():
    role = request.args.get("role", "")
    pagination = db.paginate(user_list_query(role), page=_page(), per_page=PER_PAGE_DEFAULT, error_out=False)
    return render_template("admin/users.html", pagination=pagination, role=role)


@bp.route("/admin/users/new", methods=["GET", "POST"])
@requires("users.manage")
def user_create():
    form = UserCreateForm()
    codes = _offer_sites(form)
    if request.method == "GET":
        form.site_ids.data = [site_id for site_id, code in codes.items() if code == MAIN_SITE]
    refused = None
    if form.validate_on_submit():
        try:
            user = users.create_user(
                current_user, username=form.username.data, display_name=form.display_name.data,
                role=form.role.data, password=form.temporary_password.data,
                must_change_password=True, actor_password=form.password.data,
                site_codes=[codes[site_id] for site_id in form.site_ids.data or []] or None,
                all_sites=form.all_sites.data, email=form.email.data)
        except DomainError as exc:
            if exc.field == "password" and exc.status_code == 422:  # the new user's password broke a rule
                exc.field = "temporary_password"
            apply_domain_error(form, exc)
            refused = _refusal_status(exc)
        else:
            flash(f"Account {user.username} created. Give them the temporary password; "
                  "they must change it at first sign-in.", "success")
            return redirect(url_for("admin.user_detail", user_id=user.id))
    form.password.data = ""
    return render_template("admin/user_form.html", form=form), refused or (422 if form.errors else 200)


def _offer_sites(form) -> dict[int, str]:
    """Put the active sites on a memberships form; answers {id: code}."""
    rows = db.session.execute(site_reads.sites_query().where(Site.active).with_only_columns(
        Site.id, Site.code, Site.name)).all()
    form.site_ids.choices = [SelectChoice(row.id, f"{row.code} — {row.name}") for row in rows]
    return {row.id: row.code for row in rows}


def _sites_form(user: User, form: UserSitesForm | None = None) -> UserSitesForm:
    if form is None:
        form = UserSitesForm(prefix="sites", data={"site_ids": sites.member_site_ids(user),
                                                   "all_sites": user.all_sites})
    _offer_sites(form)
    return form


@bp.route("/admin/users/<int:user_id>/sites", methods=["POST"])
@requires("users.manage")
def user_sites(user_id: int):
    user = db.get_or_404(User, user_id)
    form = _sites_form(user, UserSitesForm(prefix="sites"))
    if form.validate_on_submit():
        try:
            sites.set_user_sites(current_user, user.id, form.site_ids.data, form.all_sites.data)
        except DomainError as exc:
            apply_domain_error(form, exc)
        else:
            flash(f"Sites of {user.username} saved.", "success")
            return redirect(url_for("admin.user_detail", user_id=user.id))
    return render_template("admin/user_detail.html", user=user, form=UserEditForm(obj=user),
                           password_form=TemporaryPasswordForm(), active_form=ActiveForm(),
                           **{**_access(user), "sites_form": form}), 422


def _refusal_status(exc: DomainError) -> int:
    """The page's status after a refusal: a signature refused keeps its 403 and a printed name in use its
    409; other refusals are shown on the form (422)."""
    if exc.status_code == 403 or (exc.status_code == 409 and exc.field == "display_name"):
        return exc.status_code
    return 422


@bp.route("/admin/users/<int:user_id>", methods=["GET", "POST"])
@requires("users.manage")
def user_detail(user_id: int):
    user = db.get_or_404(User, user_id)
    form = UserEditForm(obj=user)
    refused = None
    if form.validate_on_submit():
        try:
            users.update_user(current_user, user, display_name=form.display_name.data,
                              role=form.role.data, actor_password=form.password.data, email=form.email.data)
        except DomainError as exc:
            apply_domain_error(form, exc)
            refused = _refusal_status(exc)
        else:
            flash("Account updated.", "success")
            return redirect(url_for("admin.user_detail", user_id=user.id))
    form.password.data = ""
    return render_template(
        "admin/user_detail.html", user=db.get_or_404(User, user_id), form=form,
        password_form=TemporaryPasswordForm(), active_form=ActiveForm(), **_access(user),
    ), refused or (422 if form.errors else 200)


@bp.route("/admin/users/<int:user_id>/password", methods=["POST"])
@requires("users.manage")
def user_temporary_password(user_id: int):
    user = db.get_or_404(User, user_id)
    form = TemporaryPasswordForm()
    if form.validate_on_submit():
        try:
            users.set_temporary_password(current_user, user, form.temporary_password.data)
        except DomainError as exc:
            exc.field = "temporary_password"
            apply_domain_error(form, exc)
        else:
            flash(f"Temporary password set; {user.username} must change it at next sign-in.",
                  "success")
            return redirect(url_for("admin.user_detail", user_id=user.id))
    return render_template("admin/user_detail.html", user=user, form=UserEditForm(obj=user),
                           password_form=form, active_form=ActiveForm(), **_access(user)), 422


@bp.route("/admin/users/<int:user_id>/active", methods=["POST"])
@requires("users.manage")
def user_set_active(user_id: int):
    user = db.get_or_404(User, user_id)
    form = ActiveForm()
    active = request.form.get("active") == "1"
    if not form.validate_on_submit():
        abort(400)
    try:
        users.set_active(current_user, user, active, form.reason.data or "")
    except DomainError as exc:
        if exc.field == "display_name":  # reactivating would give two active people one printed name
            flash(exc.message, "danger")
            return render_template("admin/user_detail.html", user=user, form=UserEditForm(obj=user),
                                   password_form=TemporaryPasswordForm(), active_form=ActiveForm(),
                                   **_access(user)), 409
        flash(exc.message, "danger")
    else:
        flash(f"{user.username} is now {'active' if active else 'deactivated'}.", "success")
    return redirect(url_for("admin.user_detail", user_id=user.id))


def _access(user: User) -> dict:
    """The account's open sessions and API tokens, for its page."""
    return {"user_sessions": open_sessions(user), "tokens": users.user_tokens(user),
            "confirm_form": ConfirmForm(), "now": utcnow(), "sites_form": _sites_form(user)}


@bp.route("/admin/users/<int:user_id>/sign-out-everywhere", methods=["POST"])
@requires("users.manage")
def user_sign_out_everywhere(user_id: int):
    user = db.get_or_404(User, user_id)
    if not ConfirmForm().validate_on_submit():
        abort(400)
    ended = user_sessions.sign_out_everywhere(current_user, user)
    flash(f"{user.username} is signed out everywhere: {ended} session(s) ended.", "success")
    if user.id == current_user.id:
        return redirect(url_for("auth.login"))
    return redirect(url_for("admin.user_detail", user_id=user.id))


@bp.route("/admin/users/<int:user_id>/tokens/<int:token_id>/revoke", methods=["POST"])
@requires("users.manage")
def user_token_revoke(user_id: int, token_id: int):
    user = db.get_or_404(User, user_id)
    revoke_token(token_id, user, lambda token: f"Token {token.name or token.prefix} of {user.username} revoked.")
    return redirect(url_for("admin.user_detail", user_id=user.id))


@bp.route("/audit")
@requires("audit.read")
def audit_trail():
    sites.ensure_whole_chain(current_user, "The audit trail")
    form = AuditFilterForm(request.args)
    form.validate()
    # Each filter applies on its own: one bad field shows its error without dropping the others.
    query = audit_list_query(AuditFilters.from_form(form))
    pagination = db.paginate(audit_events_shown(query), page=_page(), per_page=PER_PAGE_DEFAULT, error_out=False)
    if may_read_patients():  # patient rows carry snapshots of names, birth dates and contacts
        note_access("audit.view", target_type="audit")
    return render_template("admin/audit.html", pagination=pagination, form=form)


def _day_arg(name: str, errors: dict) -> date | None:
    try:
        return read_day(request.args.get(name))
    except ValueError as exc:
        errors[name] = str(exc)
        return None


@bp.route("/audit/patient-access")
@requires("patients.access_log")
def patient_access():
    """Who saw or exported patient data, newest first, by user and clinic days."""
    sites.ensure_whole_chain(current_user, "The patient access log")
    errors: dict[str, str] = {}
    user_id = request.args.get("user_id", type=record_id)
    start, end = _day_arg("start", errors), _day_arg("end", errors)
    keys = access_log.access_query(user_id=user_id, start=start_of_clinic_day(start) if start else None,
                                   end=end_of_clinic_day(end) if end else None).with_only_columns(PatientAccess.id)
    rows = (sa.select(PatientAccess, Patient.chart_number).outerjoin(Patient, Patient.id == PatientAccess.patient_id)
            .order_by(PatientAccess.occurred_at.desc(), PatientAccess.id.desc()))
    pagination = paginate_rows(rows, keys=keys)
    if any(access.patient_id or "?" in access.detail for access, _ in pagination.items):
        # A chart number, or a search typed (perhaps a name), is patient data in its own right.
        note_access("access_log.view", target_type="patient_access")
    accounts = account_names()
    return render_template("admin/patient_access.html", pagination=pagination, accounts=accounts, user_id=user_id,
                           start=start, end=end, errors=errors, raw=request.args)


# --- the mail outbox --------------------------------------------------------------------------------------

MAIL_FILTERS = MAIL_STATUSES


@bp.route("/admin/mail")
@requires("mail.manage")
def mail_list():
    """Every e-mail the application wrote, newest first: what was sent, what waits, what the server refused."""
    status = request.args.get("status", "")
    status = status if status in MAIL_FILTERS else ""
    keys = sa.select(MailMessage.id).order_by(MailMessage.id.desc())
    if status:
        keys = keys.where(MailMessage.status == status)
    rows = (sa.select(MailMessage, Site.code.label("site_code"), User.username.label("username"))
            .join(Site, Site.id == MailMessage.site_id).join(User, User.id == MailMessage.recipient_id)
            .order_by(MailMessage.id.desc()))
    pagination = paginate_rows(rows, keys=keys)
    return render_template("admin/mail.html", pagination=pagination, status=status, statuses=MAIL_FILTERS,
                           confirm_form=ConfirmForm(), configured=digests.mail_configured(),
                           server=current_app.config.get("MAIL_SERVER"), state=mail.sender_state(),
                           base_url_default=digests.base_url_left_default())


@bp.route("/admin/mail/<int:message_id>/send-again", methods=["POST"])
@requires("mail.manage")
def mail_send_again(message_id: int):
    if not ConfirmForm().validate_on_submit():
        abort(400)
    try:
        message = mail.send_again(current_user, message_id)
    except DomainError as exc:
        flash(exc.message, "danger")
        return redirect(url_for("admin.mail_list"))
    # The scheduled send (every 5 minutes, `mail.retry`) or `flask send-digests` takes it.
    flash(f"The message to {message.to_address} is back in the outbox: it is sent within minutes.", "success")
    return redirect(url_for("admin.mail_list", status="failed"))
