"""Workbook downloads (built in a temporary file, then streamed) and the delivery-sheet import.

A download that would write more than EXPORT_SYNC_MAX_ROWS rows is not built inside the request:
its GET answers a page offering to prepare it in the background, and a POST to the same address
asks for it as an export job (exports.jobs; its page is exports.job_pages).
"""

import base64
import binascii
import re
import tempfile
from datetime import timedelta

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, send_file, url_for
from flask_login import current_user

from .. import site_scope, workbooks
from ..extensions import csrf
from ..forms import apply_domain_error
from ..models import LotStatus
from ..models.job import EXPORT_KIND_TEXT
from ..privacy import may_identify, note_access
from ..queries.batches import BatchFilters, batch_list_query
from ..queries.ingredients import all_ingredients
from ..queries.lots import LotFilters, lot_list_query
from ..queries.recalls import recall_record
from ..queries.treatments import SessionFilters, session_practitioners
from ..security import requires
from ..services import imports, sites, trace
from ..services.clock import clinic_today
from ..services.errors import NotAllowed
from ..site_scope import current_scope
from . import jobs as export_runner
from .forms import AuditExportForm, ImportConfirmForm, ImportUploadForm, SessionExportForm

bp = Blueprint("exports", __name__, url_prefix="/exports")

_DOWNLOAD_TOKEN = re.compile(r"^[A-Za-z0-9]{1,40}$")
# The confirm step carries the previewed file back in URL-safe base64 (4/3 of its size, not
# percent-encoded again by the browser), with room to spare.
CONFIRM_FORM_LIMIT = imports.MAX_IMPORT_BYTES * 3 // 2 + 64 * 1024


def send_workbook(build, filename: str):
    """Build a workbook into a temporary file and stream it; the file is deleted once sent.

    Nothing stays on the server (several app servers can share the load), and memory holds
    one chunk of rows, not the workbook.
    """
    handle = tempfile.NamedTemporaryFile(prefix="export-", suffix=".xlsx")  # noqa: SIM115 (closed on send)
    try:
        build(handle)
        handle.flush()
        handle.seek(0)
    except BaseException:
        handle.close()
        raise
    response = send_file(handle, mimetype=workbooks.XLSX_MIMETYPE, as_attachment=True, download_name=filename)
    response.call_on_close(handle.close)
    # Patient data: never kept by a shared cache or the browser's.
    response.headers["Cache-Control"] = "private, no-store"
    token = request.args.get("download_token", "")
    if _DOWNLOAD_TOKEN.match(token):
        # The export page's script watches for this cookie to end its "Preparing the workbook…" state.
        response.set_cookie("download_token", token, max_age=300, samesite="Lax", secure=request.is_secure)
    return response


def now_or_in_background(kind: str, raw: dict, send):
    """`send()` the workbook now when it is small; else offer (GET) or ask for (POST) an export job.

    Its size is counted first (exports.jobs.prepare, a count per sheet). A GET never makes a job:
    the page it answers has a button that POSTs the same address.
    """
    if request.method == "POST":
        requested = export_runner.request(current_user, kind, raw)
        if requested.created:
            flash("The workbook is being prepared: this page shows how far it is.", "success")
        else:
            flash("The same workbook was already being prepared: here it is.", "info")
        return redirect(url_for("exports.job_detail", job_id=requested.job.id))
    prepared = export_runner.prepare(current_user, kind, raw)
    if prepared.rows_expected <= current_app.config["EXPORT_SYNC_MAX_ROWS"]:
        return send()
    return render_template("exports/offer_job.html", prepared=prepared, what=EXPORT_KIND_TEXT[kind],
                           action=request.full_path)


@bp.app_template_global()
def export_url(endpoint: str) -> str:
    """The download of a list with the list's current filters (every page, so no `page`).

    Arguments starting with "_" are url_for's own (_external, _scheme): never taken from a query.
    """
    args = {key: value for key, value in request.args.items() if not key.startswith("_") and key != "page"}
    return url_for(endpoint, **args)


def _clinic_name() -> str:
    return current_app.config["CLINIC_NAME"]


def _render_index(form: AuditExportForm, status: int = 200):
    session_form = SessionExportForm(formdata=None)
    return render_template("exports/index.html", form=form, session_form=session_form,
                           practitioners=session_practitioners(),
                           audit_allowed=sites.sees_whole_chain(current_user)), status


@bp.route("/")
@requires("exports.audit")
def index():
    today = clinic_today()
    return _render_index(AuditExportForm(formdata=None, start=today - timedelta(days=29), end=today))


@bp.route("/audit.xlsx", methods=["GET", "POST"])
@requires("exports.audit")
def audit():
    form = AuditExportForm(request.args)
    if not form.validate():
        return _render_index(form, 422)
    # Its audit-trail and patient-access sheets are the chain's: for those who see every site only.
    if not sites.sees_whole_chain(current_user):
        raise NotAllowed("The audit workbook holds the whole chain's audit trail and patient access: it is for "
                         "auditors and chain-wide accounts (or members of every site). Ask an auditor, or export "
                         "your sites' sessions.")
    start, end = form.start.data, form.end.data

    def send():
        generated_by = f"{current_user.display_name} ({current_user.role})"
        note_access("export.audit", target_type="audit")
        site_ids = sites.visible_site_ids(current_user)  # None: the whole chain
        return send_workbook(
            lambda out: workbooks.audit_workbook(out, start, end, generated_by=generated_by,
                                                 clinic_name=_clinic_name(), site_ids=site_ids),
            f"audit-{start.isoformat()}_{end.isoformat()}.xlsx")

    return now_or_in_background("audit", {"start": start, "end": end}, send)


def _list_filters(filters_class):
    """A list's filters from the query string: the download refuses (422) what its page would flag."""
    filters = filters_class.from_args(request.args)
    if filters.errors:
        abort(422, " ".join(filters.errors.values()))
    return filters


def _list_request() -> dict:
    """A list export's job request: the list's filters and the sites the list shows now."""
    scope = current_scope()
    return {"filters": request.args.to_dict(), "site_ids": None if scope is None else sorted(scope)}


@bp.route("/lots.xlsx", methods=["GET", "POST"])
@requires("lots.read")
def lots():
    query = lot_list_query(_list_filters(LotFilters), site_ids=current_scope())  # as the list page shows
    return now_or_in_background("lots", _list_request(), lambda: send_workbook(
        lambda out: workbooks.lot_list_workbook(out, query), f"lots-{clinic_today().isoformat()}.xlsx"))


@bp.route("/batches.xlsx", methods=["GET", "POST"])
@requires("batches.read")
def batches():
    query = batch_list_query(_list_filters(BatchFilters), site_ids=current_scope())
    return now_or_in_background("batches", _list_request(), lambda: send_workbook(
        lambda out: workbooks.batch_list_workbook(out, query), f"batches-{clinic_today().isoformat()}.xlsx"))


# Exactly the permission of the page that offers it: the sessions form is on /exports/.
@bp.route("/sessions.xlsx", methods=["GET", "POST"])
@requires("exports.audit")
def sessions():
    form = SessionExportForm(request.args)
    if not form.validate():
        abort(422, " ".join(error for errors in form.errors.values() for error in errors))
    query = workbooks.session_list_query(SessionFilters(
        patient_id=form.patient_id.data, practitioner_id=form.practitioner_id.data,
        first_day=form.start.data, last_day=form.end.data), site_ids=current_scope())
    days = "_".join(day.isoformat() for day in (form.start.data, form.end.data) if day) or clinic_today().isoformat()

    def send():
        note_access("export.sessions", target_type="treatment_sessions")
        return send_workbook(lambda out: workbooks.session_list_workbook(out, query), f"sessions-{days}.xlsx")

    scope = current_scope()
    return now_or_in_background("sessions", {
        "start": form.start.data, "end": form.end.data, "site_ids": None if scope is None else sorted(scope),
        "filters": {"patient_id": form.patient_id.data, "practitioner_id": form.practitioner_id.data}}, send)


def _trace_download(scope: trace.Trace):
    target = scope.lot or scope.batch
    note_access("export.trace", target_type="lot" if scope.lot else "batch", target_id=target.id)
    return send_workbook(lambda out: workbooks.trace_workbook(scope, out, clinic_name=_clinic_name(),
                                                              identify=may_identify()),
                         f"trace-{target.code}.xlsx")


@bp.route("/trace/lots/<int:lot_id>.xlsx", methods=["GET", "POST"])
@requires("patients.read")
def trace_lot(lot_id: int):
    return now_or_in_background("trace", {"target_kind": "lot", "target_id": lot_id},
                                lambda: _trace_download(trace.trace_lot(lot_id, per_page=None)))


@bp.route("/trace/batches/<int:batch_id>.xlsx", methods=["GET", "POST"])
@requires("patients.read")
def trace_batch(batch_id: int):
    return now_or_in_background("trace", {"target_kind": "batch", "target_id": batch_id},
                                lambda: _trace_download(trace.trace_batch(batch_id, per_page=None)))


@bp.route("/recalls/<int:recall_id>.xlsx", methods=["GET", "POST"])
@requires("patients.read")
def recall(recall_id: int):
    def send():
        record = recall_record(recall_id, per_page=None)  # every patient, each with its outcome and attempts
        note_access("export.recall", target_type="recall", target_id=recall_id)
        return send_workbook(
            lambda out: workbooks.recall_workbook(record.recall, record.scope, record.contacts, out,
                                                  clinic_name=_clinic_name(), opened_by=record.opened_by,
                                                  attempts=record.attempts, identify=may_identify(),
                                                  late_sessions=record.late_sessions),
            f"recall-{recall_id}.xlsx")

    return now_or_in_background("recall", {"target_id": recall_id}, send)


# --- the delivery-sheet import --------------------------------------------------------------


def _render_upload(form: ImportUploadForm, status: int = 200):
    return render_template("exports/import.html", form=form, columns=imports.COLUMNS,
                           max_rows=imports.MAX_IMPORT_ROWS, empty_run=imports.MAX_EMPTY_RUN), status


def _render_preview(sheet: imports.DeliverySheet, data: bytes):
    confirm = ImportConfirmForm(formdata=None, content=base64.urlsafe_b64encode(data).decode("ascii"),
                                filename=sheet.filename)
    return render_template("exports/import_preview.html", sheet=sheet, confirm_form=confirm,
                           columns=imports.COLUMNS), 200 if sheet.ok else 422


@bp.route("/import", methods=["GET", "POST"])
@requires("imports.lots")
def lot_import():
    form = ImportUploadForm()
    if form.validate_on_submit():
        upload = form.file.data
        data = upload.read(imports.MAX_IMPORT_BYTES + 1)
        try:
            sheet = imports.check_delivery(current_user, data, (upload.filename or "upload.xlsx")[:255])
        except imports.SheetRefused as exc:
            apply_domain_error(form, exc)
            return _render_upload(form, 422)
        return _render_preview(sheet, data)
    return _render_upload(form, 422 if form.errors else 200)


@bp.route("/import/confirm", methods=["POST"])
@requires("imports.lots")
def lot_import_confirm():
    # The previewed file is larger than Flask's default limit for one form field: raise it for
    # this request only (before the form is parsed), then check CSRF as the app-wide hook does.
    request.max_form_memory_size = CONFIRM_FORM_LIMIT
    if current_app.config.get("WTF_CSRF_ENABLED", True):
        csrf.protect()
    form = ImportConfirmForm()
    upload_form = ImportUploadForm(formdata=None)
    if not form.validate():
        upload_form.form_errors.append("The previewed file did not come back: upload it again.")
        return _render_upload(upload_form, 422)
    try:
        data = base64.b64decode(form.content.data, altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        upload_form.form_errors.append("The previewed file did not come back intact: upload it again.")
        return _render_upload(upload_form, 422)
    filename = form.filename.data or "upload.xlsx"
    try:
        lots = imports.import_delivery(current_user, data, filename, site_scope.acting_site_id(current_user))
    except imports.SheetRefused as exc:
        apply_domain_error(upload_form, exc)
        return _render_upload(upload_form, 422)
    except imports.RowsRefused as exc:
        return _render_preview(exc.sheet, data)
    flash(f"{len(lots)} lots imported from {filename} into quarantine ({lots[0].code} to {lots[-1].code}). "
          "A pharmacist must release each one before use.", "success")
    return redirect(url_for("lots.lot_list", status=LotStatus.QUARANTINE, sort="-received"))


# The global CSRF hook would parse the form before the limit above is raised; the view checks it.
csrf.exempt(lot_import_confirm)
lot_import_confirm.max_form_memory_size = CONFIRM_FORM_LIMIT


@bp.route("/import/template.xlsx")
@requires("imports.lots")
def lot_import_template():
    ingredients = all_ingredients()
    return send_workbook(lambda out: workbooks.delivery_template(out, imports.COLUMNS, ingredients),
                         "delivery-sheet-template.xlsx")


from . import job_pages  # noqa: E402, F401  (registers the export jobs' pages on this blueprint)
