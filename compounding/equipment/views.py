"""Equipment at the bench (DESIGN 10.6): the list at the viewer's sites, registering a piece, its page with its
calibrations and the batches made with it, its label, and the list as a workbook."""

from io import BytesIO

from flask import Blueprint, abort, flash, redirect, render_template, request, send_file, url_for
from flask_login import current_user
from markupsafe import Markup

from .. import labels
from ..extensions import db
from ..forms import apply_domain_error
from ..limits import PER_PAGE_DEFAULT, PER_PAGE_MAX
from ..models import Equipment
from ..models.equipment import EQUIPMENT_KIND_TEXT
from ..pages import RecordPage
from ..pagination import MAX_PAGE, RowPagination, filter_status, paginate_entities, per_page_arg
from ..printouts.forms import PrintOptionsForm
from ..queries import equipment as reads
from ..queries.scope import shown_sites
from ..security import requires
from ..services import equipment, site_reads, sites
from ..services.clock import clinic_today
from ..services.errors import DomainError, NotFound
from ..site_scope import acting_site_id, current_scope
from ..workbooks import XLSX_MIMETYPE
from ..workbooks.equipment import equipment_list_workbook
from .forms import CalibrationForm, EquipmentEditForm, EquipmentForm

bp = Blueprint("equipment", __name__)

STATE_BADGES = {"usable": "success", "due_soon": "warning", "overdue": "danger", "out_of_service": "danger",
                "retired": "secondary"}


@bp.route("/equipment")
@requires("equipment.read")
def equipment_list():
    filters = reads.EquipmentFilters.from_args(request.args)
    status = filter_status(filters.errors)
    scope = current_scope()
    pagination = paginate_entities(reads.equipment_list_query(filters, site_ids=scope), Equipment.id,
                                   per_page=per_page_arg())
    return render_template("equipment/list.html", pagination=pagination, filters=filters, today=clinic_today(),
                           kinds=EQUIPMENT_KIND_TEXT, states=reads.EQUIPMENT_STATES, state_of=reads.state_of,
                           badges=STATE_BADGES, row_sites=shown_sites(scope)), status


@bp.route("/equipment.xlsx")
@requires("equipment.read")
def equipment_xlsx():
    filters = reads.EquipmentFilters.from_args(request.args)
    if filters.errors:  # what the list page would flag
        abort(422, " ".join(filters.errors.values()))
    query = reads.equipment_list_query(filters, site_ids=current_scope())  # as the list page shows
    # A chain's equipment is hundreds of rows at most: built in memory, streamed by the write-only sheet.
    out = BytesIO()
    equipment_list_workbook(out, query)
    out.seek(0)
    response = send_file(out, mimetype=XLSX_MIMETYPE, as_attachment=True,
                         download_name=f"equipment-{clinic_today().isoformat()}.xlsx")
    response.headers["Cache-Control"] = "private, no-store"
    return response


def _site_choices() -> list[tuple[int, str]]:
    """The sites where the user may register equipment (theirs; every site for chain-wide accounts)."""
    return [(row.id, f"{row.code} — {row.name}") for row in site_reads.switchable_sites(current_user)
            if sites.may_act_at(current_user, row.id)]


@bp.route("/equipment/new", methods=["GET", "POST"])
@requires("equipment.manage")
def equipment_create():
    form = EquipmentForm()
    form.site_id.choices = _site_choices()
    if request.method == "GET":
        form.site_id.data = acting_site_id()
    if form.validate_on_submit():
        try:
            item = equipment.create_equipment(
                current_user, code=form.code.data, kind=form.kind.data, name=form.name.data or "",
                due_on=form.due_on.data, site_id=form.site_id.data, serial_number=form.serial_number.data or "")
        except DomainError as exc:
            apply_domain_error(form, exc)
        else:
            flash(f"{item.code} ({item.name}) registered; due {item.due_on.isoformat()}.", "success")
            return redirect(url_for("equipment.equipment_detail", equipment_id=item.id))
    return render_template("equipment/new.html", form=form), 422 if form.errors else 200


def _record(equipment_id: int) -> reads.EquipmentRecord:
    """The piece, if it is at a site the viewer may see (whatever the switcher shows now); else 404."""
    record = reads.equipment_record(equipment_id, sites.visible_site_ids(current_user))
    if record is None:
        raise NotFound("There is no such equipment.")
    return record


def _page_arg(name: str) -> int:
    return min(max(request.args.get(name, 1, type=int) or 1, 1), MAX_PAGE)


def _rows(select, keys, page_name: str) -> RowPagination:
    return RowPagination(select=select, keys=keys, session=db.session(), page=_page_arg(page_name),
                         per_page=PER_PAGE_DEFAULT, max_per_page=PER_PAGE_MAX, error_out=False, count=True)


def _render_detail(equipment_id: int, status: int = 200, **forms):
    record = _record(equipment_id)
    item = record.item
    forms.setdefault("calibration_form", CalibrationForm(prefix="calibration", formdata=None))
    forms.setdefault("edit_form", EquipmentEditForm(prefix="edit", formdata=None, obj=item))
    calibrations = _rows(reads.calibrations_query(item.id), reads.calibration_keys(item.id), "calibration_page")
    made, keys = reads.batches_made_with(item.id, sites.visible_site_ids(current_user))
    today = clinic_today()
    return render_template(
        "equipment/detail.html", record=record, item=item, site=record.site, calibrations=calibrations,
        batches=_rows(made, keys, "batch_page"), today=today, state=reads.state_of(item, today), badges=STATE_BADGES,
        states=reads.EQUIPMENT_STATES, reasons=equipment.unusable_reasons(item, today, item.site_id),
        may_manage=current_user.can("equipment.manage") and sites.may_act_at(current_user, item.site_id),
        **forms), status


_PAGE = RecordPage("equipment.equipment_detail", "equipment_id", _render_detail)


@bp.route("/equipment/<int:equipment_id>")
@requires("equipment.read")
def equipment_detail(equipment_id: int):
    return _render_detail(equipment_id)


@bp.route("/equipment/<int:equipment_id>/calibrations", methods=["POST"])
@requires("equipment.manage")
def equipment_calibrate(equipment_id: int):
    _record(equipment_id)
    form = CalibrationForm(prefix="calibration")
    return _PAGE.post(equipment_id, "calibration_form", form, lambda: equipment.record_calibration(
        current_user, equipment_id, performed_on=form.performed_on.data, result=form.result.data,
        next_due_on=form.next_due_on.data, performed_by=form.performed_by.data or "",
        certificate_number=form.certificate_number.data or "", note=form.note.data or ""), _calibrated_message)


def _calibrated_message(calibration) -> str:
    item = equipment.get_equipment(calibration.equipment_id)
    if calibration.result == "pass":
        return f"Calibration of {item.code} recorded (pass): next due {item.due_on.isoformat()}."
    message = f"Calibration of {item.code} recorded (fail): it is out of service until a passing calibration."
    since = getattr(calibration, "batches_since", None)
    if since:
        message += (f" {len(since)} batch(es) were made with it since {calibration.performed_on.isoformat()}: "
                    f"{', '.join(since[:20])}{' …' if len(since) > 20 else ''}; those not yet verified cannot be, "
                    "review those released.")
    return message


@bp.route("/equipment/<int:equipment_id>/edit", methods=["POST"])
@requires("equipment.manage")
def equipment_edit(equipment_id: int):
    _record(equipment_id)
    form = EquipmentEditForm(prefix="edit")
    return _PAGE.post(equipment_id, "edit_form", form, lambda: equipment.update_equipment(
        current_user, equipment_id, name=form.name.data, serial_number=form.serial_number.data or "",
        active=form.active.data), lambda item: f"{item.code} saved" + ("." if item.active else ": retired."))


@bp.route("/equipment/<int:equipment_id>/label")
@requires("equipment.read")
def equipment_label(equipment_id: int):
    record = _record(equipment_id)
    form = PrintOptionsForm(request.args)
    form.validate()
    valid = not form.errors
    barcode = Markup(labels.barcode_inline(record.item.code))
    return render_template(
        "equipment/label.html", form=form, piece=record.item, site=record.site,
        sheet=form.sheet.data if valid else "label", size=form.size.data if valid else "50x30",
        pages=[[barcode] * form.copies.data] if valid else [], count=form.copies.data if valid else 0,
        back_url=url_for("equipment.equipment_detail", equipment_id=record.item.id)), 200 if valid else 400
