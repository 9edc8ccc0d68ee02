"""Trace search and pages, recalls (open, contact, close, printable report), one-click quarantine."""

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user

from ..forms import apply_domain_error, submit
from ..limits import PER_PAGE_DEFAULT
from ..models import RecallStatus
from ..pagination import page_arg, paginate_rows
from ..privacy import note_access
from ..queries import recalls as records
from ..queries.common import record_id
from ..security import requires
from ..services import holds, inventory, recalls, trace
from ..services.clock import utcnow
from ..services.errors import DomainError, NotFound
from ..services.signals import adverse_event_counts
from .forms import CloseRecallForm, ContactForm, OpenRecallForm, QuarantineForm

bp = Blueprint("recalls", __name__)


# --- trace -------------------------------------------------------------------------------------


@bp.route("/trace")
@requires("patients.read")
def trace_search():
    """One box for any code typed or scanned: a batch code or a lot code."""
    raw = request.args.get("code", "")
    code = records.normalise_code(raw)
    if not code:
        return render_template("recalls/trace.html", code="", scope=None)
    found = records.resolve_code(code)
    if found is None:
        return render_template("recalls/trace.html", code=raw.strip()[:80], scope=None, unknown=True), 404
    kind, target_id = found
    if kind == "batch":
        return redirect(url_for("recalls.trace_batch", batch_id=target_id))
    return redirect(url_for("recalls.trace_lot", lot_id=target_id))


def quarantine_reason(events: int, severe: int) -> str:
    if not events:
        return "put back into quarantine from its trace"
    return f"quality signal: {events} adverse event{'s' if events != 1 else ''}" + (
        f" ({severe} severe)" if severe else "")


def _render_trace(scope: trace.Trace, kind: str, target_id: int):
    note_access(f"trace.{kind}", target_type=kind, target_id=target_id)
    events, severe = adverse_event_counts(kind, [target_id]).get(target_id, (0, 0))
    return render_template(
        "recalls/trace.html", code=(scope.lot or scope.batch).code, scope=scope, kind=kind,
        counts=records.trace_counts(scope), target_events=(events, severe),
        batch_events=adverse_event_counts("batch", [row.id for row in scope.batches]),
        open_recall_id=records.open_recall_ids().get((kind, target_id)),
        quarantine_form=QuarantineForm(formdata=None, back="trace", reason=quarantine_reason(events, severe)))


def _after() -> dict | None:
    """The next page's keyset from the pager's link (a malformed one answers 422)."""
    return trace.decode_cursor(request.args.get("after", "")[:2000] or None)


@bp.route("/trace/lots/<int:lot_id>")
@requires("patients.read")
def trace_lot(lot_id: int):
    return _render_trace(trace.trace_lot(lot_id, page_arg(), after=_after()), "lot", lot_id)


@bp.route("/trace/batches/<int:batch_id>")
@requires("patients.read")
def trace_batch(batch_id: int):
    return _render_trace(trace.trace_batch(batch_id, page_arg(), after=_after()), "batch", batch_id)


# --- recalls -----------------------------------------------------------------------------------


@bp.route("/recalls/")
@requires("recalls.read")
def recall_list():
    filters = records.RecallFilters.from_args(request.args)
    pagination = paginate_rows(records.recall_list_query(filters), per_page=PER_PAGE_DEFAULT)
    progress = records.progress_for([row.Recall.id for row in pagination.items])
    items = [records.summary(row, progress) for row in pagination.items]
    return render_template("recalls/list.html", pagination=pagination, items=items, status=filters.status)


def _target_from_args():
    """The lot or batch a new recall is about (query arguments), with its computed scope."""
    lot_id = request.args.get("lot_id", type=record_id)
    batch_id = request.args.get("batch_id", type=record_id)
    if bool(lot_id) == bool(batch_id):
        return None, None
    if lot_id:
        return ("lot", lot_id), trace.trace_lot(lot_id)
    return ("batch", batch_id), trace.trace_batch(batch_id)


@bp.route("/recalls/new", methods=["GET", "POST"])
@requires("recalls.open")
def recall_open():
    target, scope = _target_from_args()
    if target is None:
        return render_template("recalls/open.html", form=None, target=None, scope=None), 200
    form = OpenRecallForm()
    if request.method == "GET" and request.args.get("reason"):
        form.reason.data = request.args["reason"][:500]
    kind, target_id = target
    code = (scope.lot or scope.batch).code
    recall = submit(form, lambda: recalls.open_recall(current_user, reason=form.reason.data,
                                                      password=form.password.data, **{f"{kind}_id": target_id}))
    if recall is not None:
        flash(f"Recall {recall.id} opened on {kind} {code}, signed by {current_user.display_name}: "
              f"{scope.counts['batches']} batches recalled.", "success")
        return redirect(url_for("recalls.recall_detail", recall_id=recall.id))
    status = 200
    if request.method == "POST":
        # A refusal rolled back and expired what was loaded: trace again for the page.
        status, (target, scope) = 422, _target_from_args()
    return render_template("recalls/open.html", form=form, target=target, scope=scope,
                           counts=records.trace_counts(scope),
                           open_recall_id=records.open_recall_ids().get(target)), status


def _render_detail(recall_id: int, status: int = 200, contact_forms: dict | None = None,
                   close_form: CloseRecallForm | None = None):
    record = records.recall_record(recall_id, page_arg())
    forms = {}
    if record.recall.status == RecallStatus.OPEN and current_user.can("recalls.contact"):
        forms = {p.id: ContactForm(formdata=None, prefix=f"contact-{p.id}") for p in record.scope.patients}
        forms.update(contact_forms or {})
    note_access("recall.view", target_type="recall", target_id=recall_id)
    return render_template("recalls/detail.html", record=record, recall=record.recall, scope=record.scope,
                           contact_forms=forms, close_form=close_form or CloseRecallForm(formdata=None),
                           counts=records.trace_counts(record.scope)), status


# A recall's page is its contact list: patient data, unlike the list of recalls.
@bp.route("/recalls/<int:recall_id>")
@requires("patients.read")
def recall_detail(recall_id: int):
    return _render_detail(recall_id)


@bp.route("/recalls/<int:recall_id>/contacts/<int:patient_id>", methods=["POST"])
@requires("recalls.contact")
def recall_contact(recall_id: int, patient_id: int):
    form = ContactForm(prefix=f"contact-{patient_id}")
    if form.validate_on_submit():
        try:
            contact = recalls.record_contact(current_user, recall_id, patient_id, form.method.data or None,
                                             form.note.data or "", outcome=form.outcome.data,
                                             password=form.password.data or None)
        except NotFound:
            raise  # the app's 404 page, with its message
        except DomainError as exc:
            apply_domain_error(form, exc)
            # Refusals about the row itself (closed recall, out of scope) may have no form left to show on.
            for message in form.form_errors:
                flash(message, "danger")
        else:
            how = f", {contact.method.replace('_', ' ')}" if contact.method else ""
            flash(f"Recorded for the patient: {contact.outcome.replace('_', ' ')}{how}.", "success")
            page = page_arg()
            return redirect(url_for("recalls.recall_detail", recall_id=recall_id, page=page if page > 1 else None,
                                    _anchor=f"patient-{patient_id}"))
    return _render_detail(recall_id, 422, contact_forms={patient_id: form})


@bp.route("/recalls/<int:recall_id>/close", methods=["POST"])
@requires("recalls.open")
def recall_close(recall_id: int):
    form = CloseRecallForm()
    # An unknown recall is refused by the service, then answered 404 by the page that re-renders.
    if submit(form, lambda: recalls.close_recall(current_user, recall_id, form.outcome.data,
                                                 form.password.data)) is not None:
        flash(f"Recall {recall_id} closed, signed by {current_user.display_name}.", "success")
        return redirect(url_for("recalls.recall_detail", recall_id=recall_id))
    return _render_detail(recall_id, 422, close_form=form)


@bp.route("/recalls/<int:recall_id>/report")
@requires("patients.read")
def recall_report(recall_id: int):
    record = records.recall_record(recall_id, per_page=None)  # a printed report holds everything
    note_access("recall.report", target_type="recall", target_id=recall_id)
    return render_template("recalls/report.html", record=record, recall=record.recall, scope=record.scope,
                           counts=records.trace_counts(record.scope), printed_at=utcnow())


# --- quality signals -------------------------------------------------------------------------


@bp.route("/quality-signals/lots/<int:lot_id>/quarantine", methods=["POST"])
@requires("lots.release")
def quarantine_lot(lot_id: int):
    """The dashboard's one click for a flagged lot: back into quarantine, out of compounding."""
    form = QuarantineForm()
    back = (url_for("recalls.trace_lot", lot_id=lot_id) if form.back.data == "trace"
            else url_for("main.dashboard"))
    if not form.validate_on_submit():
        flash(" ".join(e for errors in form.errors.values() for e in errors), "danger")
        return redirect(back)
    try:
        lot = inventory.quarantine_lot(current_user, lot_id, form.reason.data)
    except NotFound:
        raise  # the app's 404 page, with its message
    except DomainError as exc:
        flash(exc.message, "danger")
        return redirect(back)
    flash(f"{lot.code} is back in quarantine: it cannot go into a batch until a pharmacist releases it "
          "again (e-signature).", "warning")
    return redirect(back)



@bp.route("/quality-signals/<any(batch, lot):kind>/<int:item_id>/hold", methods=["POST"])
@requires("lots.release")
def hold_item(kind: str, item_id: int):
    """The dashboard's one click for a flagged batch or lot: a quality-signal hold, released by a pharmacist."""
    form = QuarantineForm()
    if not form.validate_on_submit():
        flash(" ".join(e for errors in form.errors.values() for e in errors), "danger")
        return redirect(url_for("main.dashboard"))
    try:
        hold = holds.quality_signal_hold(current_user, kind, item_id, form.reason.data)
    except NotFound:
        raise  # the app's 404 page, with its message
    except DomainError as exc:
        flash(exc.message, "danger")
        return redirect(url_for("main.dashboard"))
    flash(f"The {kind} is on hold (quality signal): usable nowhere until a pharmacist releases the hold "
          "(e-signature).", "warning")
    return redirect(url_for(f"{kind}es.batch_detail" if kind == "batch" else "lots.lot_detail",
                            **{f"{kind}_id": hold.entity_id}))
