"""Sites and their storage locations: lists, the location tree with stock counts, forms, what a location
holds, its label; and the site switcher in the header."""

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user
from markupsafe import Markup

from .. import labels
from ..extensions import db
from ..forms import ConfirmForm, apply_domain_error
from ..models import Location, Site
from ..pagination import paginate_entities, paginate_rows
from ..printouts.forms import PrintOptionsForm
from ..security import requires, signed_in
from ..services import site_reads, sites
from ..services.errors import DomainError
from ..site_scope import SITE_KEY
from .forms import DeactivateForm, LocationEditForm, LocationForm, SiteEditForm, SiteForm, parent_choices

bp = Blueprint("sites", __name__)

CONTENT_KINDS = {"lots": "Lots", "batches": "Batches", "vials": "Vials"}


def _visible(site_id: int) -> Site:
    """A site the viewer may look at (any, for those who manage sites); 404 for another."""
    site = db.get_or_404(Site, site_id)
    seen = sites.visible_site_ids(current_user)
    if seen is not None and site.id not in seen and not current_user.can("sites.manage"):
        abort(404)
    return site


def _location(location_id: int) -> Location:
    location = db.get_or_404(Location, location_id)
    _visible(location.site_id)
    return location


@bp.route("/sites")
@requires("sites.read")
def site_list():
    scope = None if current_user.can("sites.manage") else sites.visible_site_ids(current_user)
    pagination = paginate_entities(site_reads.sites_query(scope), Site.id)
    counts = site_reads.location_counts([site.id for site in pagination.items])
    return render_template("sites/list.html", pagination=pagination, counts=counts)


@bp.route("/sites/new", methods=["GET", "POST"])
@requires("sites.manage")
def site_create():
    form = SiteForm()
    if request.method == "GET":
        form.timezone.data = form.timezone.data or _clinic_zone()
    if form.validate_on_submit():
        try:
            site = sites.create_site(current_user, form.code.data, form.name.data, form.timezone.data,
                                     form.address.data or "")
        except DomainError as exc:
            apply_domain_error(form, exc)
        else:
            flash(f"Site {site.code} created with its default location, Main store.", "success")
            return redirect(url_for("sites.site_detail", site_id=site.id))
    return render_template("sites/site_form.html", form=form, site=None), 422 if form.errors else 200


def _clinic_zone() -> str:
    return current_app.config["CLINIC_TIMEZONE"]


@bp.route("/sites/<int:site_id>")
@requires("sites.read")
def site_detail(site_id: int):
    site = _visible(site_id)
    return render_template("sites/detail.html", site=site, tree=site_reads.location_tree(site.id),
                           counts=site_reads.stock_counts(site.id), confirm_form=ConfirmForm())


@bp.route("/sites/<int:site_id>/edit", methods=["GET", "POST"])
@requires("sites.manage")
def site_edit(site_id: int):
    site = db.get_or_404(Site, site_id)
    form = SiteEditForm(obj=site)
    if form.validate_on_submit():
        try:
            sites.update_site(current_user, site.id, name=form.name.data, timezone=form.timezone.data,
                              address=form.address.data or "")
        except DomainError as exc:
            apply_domain_error(form, exc)
        else:
            flash(f"Site {site.code} saved.", "success")
            return redirect(url_for("sites.site_detail", site_id=site.id))
    return render_template("sites/site_form.html", form=form, site=site), 422 if form.errors else 200


def _location_form(form: LocationForm, site: Site, location: Location | None = None):
    """Create or edit a location; a redirect when saved, else the form again (422 when refused)."""
    form.parent_id.choices = parent_choices(site_reads.location_tree(site.id), location.id if location else None)
    if form.validate_on_submit():
        values = {"name": form.name.data, "kind": form.kind.data, "parent_id": form.parent_id.data or None,
                  "min_celsius": form.min_celsius.data, "max_celsius": form.max_celsius.data,
                  "readings_per_day": form.readings_per_day.data}
        try:
            if location is None:
                location = sites.create_location(current_user, site.id, code=form.code.data or None, **values)
            else:
                sites.update_location(current_user, location.id, **values)
        except DomainError as exc:
            apply_domain_error(form, exc)
        else:
            flash(f"{location.label} ({location.name}) saved.", "success")
            return redirect(url_for("sites.location_detail", location_id=location.id))
    return render_template("sites/location_form.html", form=form, site=site, location=location), \
        422 if form.errors else 200


@bp.route("/sites/<int:site_id>/locations/new", methods=["GET", "POST"])
@requires("sites.manage")
def location_create(site_id: int):
    site = db.get_or_404(Site, site_id)
    form = LocationForm()
    if request.method == "GET" and request.args.get("parent_id", type=int):
        form.parent_id.data = request.args.get("parent_id", type=int)
    return _location_form(form, site)


@bp.route("/locations/<int:location_id>/edit", methods=["GET", "POST"])
@requires("sites.manage")
def location_edit(location_id: int):
    location = db.get_or_404(Location, location_id)
    form = LocationEditForm(obj=location)
    if request.method == "GET":
        form.parent_id.data = location.parent_id or 0
        for name in ("min_celsius", "max_celsius"):
            value = getattr(location, name)
            getattr(form, name).data = format(value.normalize(), "f") if value is not None else ""
    return _location_form(form, db.session.get(Site, location.site_id), location)


@bp.route("/locations/<int:location_id>")
@requires("sites.read")
def location_detail(location_id: int):
    location = _location(location_id)
    show = request.args.get("show") if request.args.get("show") in CONTENT_KINDS else "lots"
    pagination = paginate_rows(site_reads.contents_query(location.id, show))
    return render_template("sites/location.html", location=location, site=db.session.get(Site, location.site_id),
                           parent=db.session.get(Location, location.parent_id) if location.parent_id else None,
                           show=show, kinds=CONTENT_KINDS, pagination=pagination,
                           held=sites.stock_at(location.id), deactivate_form=DeactivateForm(),
                           confirm_form=ConfirmForm())


@bp.route("/locations/<int:location_id>/deactivate", methods=["POST"])
@requires("sites.manage")
def location_deactivate(location_id: int):
    location = db.get_or_404(Location, location_id)
    form = DeactivateForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        sites.deactivate_location(current_user, location.id, form.reason.data or "")
    except DomainError as exc:
        flash(exc.message, "danger")
    else:
        flash(f"{location.label} ({location.name}) is out of use.", "success")
    return redirect(url_for("sites.location_detail", location_id=location.id))


@bp.route("/locations/<int:location_id>/default", methods=["POST"])
@requires("sites.manage")
def location_make_default(location_id: int):
    location = db.get_or_404(Location, location_id)
    if not ConfirmForm().validate_on_submit():
        abort(400)
    try:
        sites.set_default_location(current_user, location.id)
    except DomainError as exc:
        flash(exc.message, "danger")
    else:
        flash(f"{location.label} ({location.name}) is now where its site puts new stock.", "success")
    return redirect(url_for("sites.site_detail", site_id=location.site_id))


@bp.route("/locations/<int:location_id>/label")
@requires("sites.read")
def location_label(location_id: int):
    location = _location(location_id)
    form = PrintOptionsForm(request.args)
    form.validate()
    valid = not form.errors
    barcode = Markup(labels.barcode_inline(location.code))
    return render_template(
        "sites/location_label.html", form=form, location=location, site=db.session.get(Site, location.site_id),
        sheet=form.sheet.data if valid else "label", size=form.size.data if valid else "50x30",
        pages=[[barcode] * form.copies.data] if valid else [], count=form.copies.data if valid else 0,
        back_url=url_for("sites.location_detail", location_id=location.id)), 200 if valid else 400


@bp.route("/site-scope", methods=["POST"])
@signed_in
def choose_site():
    """The header's switcher: look at one of one's sites, or at all of them (an empty choice)."""
    if not ConfirmForm().validate_on_submit():
        abort(400)
    chosen = request.form.get("site_id", type=int)
    if chosen is None:
        session.pop(SITE_KEY, None)
        flash("Showing all your sites.", "info")
    else:
        visible = sites.visible_site_ids(current_user)
        site = db.session.get(Site, chosen)
        if site is None or (visible is not None and chosen not in visible):
            abort(403, "You do not belong to that site.")
        session[SITE_KEY] = site.id
        flash(f"Showing site {site.code} ({site.name}).", "info")
    return redirect(_same_site_path(request.form.get("next") or "") or url_for("main.dashboard"))


def _same_site_path(back: str) -> str | None:
    """`next` when it is a path of this site: one leading "/", no backslash (browsers read `/\\x` as `//x`)
    and no control character; else None."""
    if (not back.startswith("/") or back.startswith("//") or "\\" in back
            or any(ord(ch) < 32 or ord(ch) == 127 for ch in back)):
        return None
    return back
