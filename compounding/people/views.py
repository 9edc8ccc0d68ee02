"""Qualified people: the team's standings, a person's record history with the result and void forms, the
qualification kinds, and the team's workbook."""

from io import BytesIO

import sqlalchemy as sa
from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, send_file, url_for
from flask_login import current_user

from ..extensions import db
from ..forms import apply_domain_error, submit
from ..models import Qualification, QualificationKind, User
from ..pagination import paginate_entities, per_page_arg
from ..queries import people
from ..queries.documents import document_rows
from ..queries.scope import shown_sites, site_codes
from ..security import requires, signed_in
from ..services import qualifications
from ..services.clock import clinic_today
from ..services.errors import DomainError
from ..site_scope import current_scope
from ..workbooks.people import qualification_workbook
from ..workbooks.writer import XLSX_MIMETYPE
from .forms import KindEditForm, KindForm, QualificationForm, kind_choices, void_form

bp = Blueprint("people", __name__)

RECORDS_PER_PAGE = 20


@bp.route("/people")
@requires("qualifications.read")
def team():
    filters = people.TeamFilters.from_args(request.args)
    scope = current_scope()
    kinds = qualifications.active_kinds()
    page = people.team_page(filters, site_ids=scope, per_page=per_page_arg(), kinds=kinds)
    several = bool(shown_sites(scope))
    members = people.member_sites([row.user.id for row in page.rows]) if several else {}
    return render_template("people/team.html", page=page, filters=filters, kinds=kinds, members=members,
                           due_days=qualifications.DUE_SOON_DAYS)


# Exactly the permission of the page that offers it; the same filters, every page.
@bp.route("/people/qualifications.xlsx")
@requires("qualifications.read")
def team_xlsx():
    filters = people.TeamFilters.from_args(request.args)
    scope = current_scope()
    kinds, rows = people.team_standings(filters, site_ids=scope)
    records = people.team_records([row.user.id for row in rows], [kind.id for kind in kinds])
    out = BytesIO()  # a team is tens of people and their few records a year: built in memory
    qualification_workbook(out, kinds, rows, records, generated_by=f"{current_user.display_name} ({current_user.role})",
                           clinic_name=current_app.config["CLINIC_NAME"],
                           scope=", ".join(site_codes(scope).values()) if scope is not None else "every site")
    out.seek(0)
    response = send_file(out, mimetype=XLSX_MIMETYPE, as_attachment=True,
                         download_name=f"qualifications-{clinic_today().isoformat()}.xlsx")
    response.headers["Cache-Control"] = "private, no-store"
    return response


def _person(user_id: int) -> User:
    """The person whose page it is: one's own, or (qualifications.read) someone at one's sites; 404 otherwise."""
    person = db.get_or_404(User, user_id)
    if person.id != current_user.id:
        if not current_user.can("qualifications.read"):
            abort(403)
        if not people.may_see_person(current_user, person.id):
            abort(404)
    return person


def _record_form(kinds, form: QualificationForm | None = None) -> QualificationForm:
    form = form or QualificationForm(formdata=None)
    form.kind.choices = kind_choices(kinds)
    return form


def _render_person(person: User, status: int = 200, *, record_form=None, void_forms=None):
    kinds = qualifications.active_kinds()
    standings = qualifications.standings(person.id, kinds=kinds)
    history = people.person_records(person.id, RECORDS_PER_PAGE)
    void_forms = void_forms or {}
    forms = {row[0].id: void_forms.get(row[0].id) or void_form(row[0].id) for row in history.items
             if row[0].voided_at is None}
    return render_template(
        "people/person.html", person=person, standings=standings, history=history,
        record_form=_record_form(kinds, record_form), void_forms=forms,
        cfu_kinds=" ".join(kind.code for kind in kinds if kind.counts_cfu),
        # Nobody records or voids their own results (the service refuses): no forms on one's own page.
        may_record=current_user.can("qualifications.record") and person.active and person.id != current_user.id,
        may_void=current_user.can("qualifications.record") and person.id != current_user.id,
        record_documents=document_rows("qualification", [row[0].id for row in history.items]),
        sites=people.member_sites([person.id]).get(person.id, [])), status


@bp.route("/people/me")
@signed_in
def mine():
    """One's own page: the account menu's link, and the one a refusal at the bench shows."""
    return redirect(url_for("people.person", user_id=current_user.id))


@bp.route("/people/<int:user_id>")
@signed_in
def person(user_id: int):
    """Everyone may open their own page; others' pages need qualifications.read."""
    return _render_person(_person(user_id))


@bp.route("/people/<int:user_id>/qualifications", methods=["POST"])
@requires("qualifications.record")
def record(user_id: int):
    person = _person(user_id)
    form = _record_form(qualifications.active_kinds(), QualificationForm())
    saved = submit(form, lambda: qualifications.record_qualification(
        current_user, user_id=person.id, kind=form.kind.data, passed_on=form.passed_on.data, result=form.result.data,
        cfu=form.cfu.data, valid_until=form.valid_until.data, assessor=form.assessor.data or "",
        note=form.note.data or ""))
    if saved is None:
        return _render_person(person, 422, record_form=form)
    kind = db.session.get(QualificationKind, saved.kind_id)
    [standing] = qualifications.standings(person.id, kinds=[kind])
    flash(f"{kind.name}: {saved.result} on {saved.passed_on.isoformat()} recorded for {person.display_name}. "
          f"Now: {standing.text}.", "success" if standing.usable else "warning")
    since = getattr(saved, "batches_since", None)
    if since:
        flash(f"{person.display_name} compounded or verified {len(since)} batch(es) since "
              f"{saved.passed_on.isoformat()}: {', '.join(since[:20])}{' …' if len(since) > 20 else ''}. "
              "Those not yet verified cannot be; review those released.", "danger")
    return redirect(url_for("people.person", user_id=person.id))


@bp.route("/people/qualifications/<int:qualification_id>/void", methods=["POST"])
@requires("qualifications.record")
def void(qualification_id: int):
    record = db.get_or_404(Qualification, qualification_id)
    person = _person(record.user_id)
    form = void_form(record.id)
    saved = submit(form, lambda: qualifications.void_qualification(current_user, record.id, form.reason.data))
    if saved is None:
        if db.session.get(Qualification, record.id).voided_at is not None:
            for message in form.form_errors:  # a voided record shows no void form to hold the refusal
                flash(message, "danger")
        return _render_person(person, 422, void_forms={record.id: form})
    flash(f"The record of {saved.passed_on.isoformat()} is voided; it no longer counts.", "success")
    return redirect(url_for("people.person", user_id=person.id))


# --- kinds -----------------------------------------------------------------------------------------------

@bp.route("/people/kinds")
@requires("qualifications.kinds")
def kind_list():
    query = sa.select(QualificationKind).order_by(QualificationKind.active.desc(), QualificationKind.id)
    return render_template("people/kinds.html", pagination=paginate_entities(query, QualificationKind.id))


def _kind_values(form: KindForm, kind: QualificationKind | None = None) -> dict:
    values = {"name": form.name.data, "valid_months": form.valid_months.data,
              "category3_months": form.category3_months.data, "required": form.required.data}
    if kind is not None and kind.builtin:  # USP <797> fixes these: the form does not offer them
        values.update(initial_passes=kind.initial_passes, counts_cfu=kind.counts_cfu)
    else:
        values.update(initial_passes=form.initial_passes.data, counts_cfu=form.counts_cfu.data)
    return values


@bp.route("/people/kinds/new", methods=["GET", "POST"])
@requires("qualifications.kinds")
def kind_create():
    form = KindForm()
    if form.validate_on_submit():
        try:
            kind = qualifications.create_kind(current_user, code=form.code.data, **_kind_values(form))
        except DomainError as exc:
            apply_domain_error(form, exc)
        else:
            flash(f"Qualification kind {kind.name} added.", "success")
            return redirect(url_for("people.kind_list"))
    return render_template("people/kind_form.html", form=form, kind=None), 422 if form.errors else 200


@bp.route("/people/kinds/<int:kind_id>/edit", methods=["GET", "POST"])
@requires("qualifications.kinds")
def kind_edit(kind_id: int):
    kind = db.get_or_404(QualificationKind, kind_id)
    form = KindEditForm(obj=kind)
    if kind.builtin:
        del form.initial_passes, form.counts_cfu
    if form.validate_on_submit():
        try:
            qualifications.update_kind(current_user, kind.id, active=form.active.data, **_kind_values(form, kind))
        except DomainError as exc:
            apply_domain_error(form, exc)
        else:
            flash(f"Qualification kind {kind.name} saved.", "success")
            return redirect(url_for("people.kind_list"))
    return render_template("people/kind_form.html", form=form, kind=kind), 422 if form.errors else 200
