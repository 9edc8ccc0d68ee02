"""Cold chain pages: excursions (routes on views.bp): the list, one excursion, the pharmacist's decision."""

from datetime import datetime
from zoneinfo import ZoneInfo

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user

from ..forms import apply_domain_error
from ..pagination import per_page_arg
from ..privacy import may_identify, may_read_patients, note_access
from ..queries import excursions as reads
from ..security import requires
from ..services import cold_chain, sites
from ..services.clock import utcnow
from ..services.errors import DomainError, NotFound
from ..services.transaction import transaction
from ..site_scope import current_scope
from .forms import DecideForm
from .views import bp

DECISION_TEXT = {"keep": "kept", "keep_shortened": "kept with a shorter use-by", "discard": "discarded"}


def at_site(value: datetime | None, zone_name: str, with_zone: bool = True) -> str:
    """A moment as the site's clock showed it (the excursion happened there, whoever reads it)."""
    if value is None:
        return ""
    local = value.astimezone(ZoneInfo(zone_name))
    return f"{local:%Y-%m-%d %H:%M} {local.tzname()}" if with_zone else f"{local:%Y-%m-%d %H:%M}"


@bp.route("/excursions")
@requires("coldchain.read")
def excursions():
    scope = current_scope()
    filters = reads.ExcursionFilters.from_args(request.args)
    page = reads.excursion_list(filters, site_ids=scope, per_page=per_page_arg())
    return render_template("cold_chain/excursions.html", pagination=page, rows=page.items, filters=filters,
                           states=reads.EXCURSION_STATES, site_options=reads.site_choices(scope), at_site=at_site,
                           range_text=cold_chain.range_text)


def _record(excursion_id: int) -> reads.ExcursionRecord:
    """The excursion, if it is at a site the viewer may see (whatever the switcher shows now); else 404."""
    record = reads.excursion_record(excursion_id, sites.visible_site_ids(current_user))
    if record is None:
        raise NotFound("There is no such excursion.")
    return record


def _render(excursion_id: int, status: int = 200, form: DecideForm | None = None):
    record = _record(excursion_id)
    excursion = record.excursion
    form = form or DecideForm(formdata=None)
    form.items.choices = record.undecided_codes
    read_patients = may_read_patients()
    uses = reads.uses_to_review(excursion, read_patients=read_patients, identify=may_identify())
    if read_patients and any(u.use.kind == "session" for u in uses):
        note_access("excursion.uses", target_type="excursion", target_id=excursion.id)
    zone = record.site.timezone
    return render_template(
        "cold_chain/excursion.html", record=record, excursion=excursion, location=record.location,
        site=record.site, items=reads.held_items(excursion.id), uses=uses, uses_capped=len(uses) >= reads.USES_SHOWN,
        read_patients=read_patients, identify=may_identify(), form=form,
        may_decide=current_user.can("excursions.decide") and sites.may_act_at(current_user, excursion.site_id),
        duration=reads.duration_text(excursion.started_at, excursion.ended_at, utcnow()),
        range_text=cold_chain.range_text(excursion.range_min, excursion.range_max),
        low_out=not cold_chain.within((excursion.range_min, excursion.range_max), excursion.low_celsius),
        high_out=not cold_chain.within((excursion.range_min, excursion.range_max), excursion.high_celsius),
        local=lambda value, with_zone=True: at_site(value, zone, with_zone)), status


@bp.route("/excursions/<int:excursion_id>")
@requires("coldchain.read")
def excursion(excursion_id: int):
    return _render(excursion_id)


@bp.route("/excursions/<int:excursion_id>/decide", methods=["POST"])
@requires("excursions.decide")
def excursion_decide(excursion_id: int):
    """The pharmacist's signed decision; a refusal is shown on the page with its own status, nothing changed."""
    record = _record(excursion_id)
    form = DecideForm()
    form.items.choices = record.undecided_codes
    if not form.validate_on_submit():
        return _render(excursion_id, 422, form)
    try:
        with transaction():
            cold_chain.decide(current_user, excursion_id, form.decision.data, form.reason.data, form.password.data,
                              items=form.items.data or None, use_by=form.use_by_iso(record.site.timezone))
    except DomainError as exc:
        apply_domain_error(form, exc)
        return _render(excursion_id, exc.status_code, form)
    count = len(form.items.data or record.undecided_codes)
    relabel = (" Print new labels: the ones on the stock show the old, later use-by."
               if form.decision.data == "keep_shortened" else "")
    flash(f"{record.code}: {count} item{'s' if count != 1 else ''} {DECISION_TEXT[form.decision.data]}, "
          f"signed by {current_user.display_name}.{relabel}", "success")
    return redirect(url_for("cold_chain.excursion", excursion_id=excursion_id))
