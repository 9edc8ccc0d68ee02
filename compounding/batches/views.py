"""Batch list, the compounding page, the batch record, verification, rejection, discard."""

from datetime import timedelta
from decimal import Decimal, InvalidOperation

import sqlalchemy as sa
from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy.orm import selectinload
from wtforms.fields.choices import SelectChoice

from ..extensions import db
from ..forms import ReleaseHoldForm, apply_domain_error, day_args, hold_form_for, submit
from ..models import (
    AuditEvent,
    Batch,
    BatchComponent,
    Formula,
    Ingredient,
    Lot,
    Patient,
    SessionUse,
    TreatmentSession,
    User,
)
from ..models._common import MAX_RECORD_ID
from ..models.batch import BATCH_STATUSES
from ..pagination import page_arg
from ..privacy import may_read_patients, note_access
from ..security import requires
from ..services import batches, holds
from ..services.bounds import read_day
from ..services.clock import end_of_clinic_day, start_of_clinic_day, utcnow
from ..services.errors import DomainError
from ..services.signatures import signatures_for
from ..services.trace import adverse_event_counts
from .forms import CompoundForm, DiscardForm, RejectBatchForm, VerifyForm

bp = Blueprint("batches", __name__, url_prefix="/batches")


def batch_list_query(args):
    """The batch list with its filters (also used by the API and exports)."""
    query = sa.select(Batch).options(
        selectinload(Batch.formula), selectinload(Batch.compounded_by), selectinload(Batch.verified_by))
    if args.get("formula"):
        # Joined only to filter: on deep pages a join for every skipped row would dominate.
        query = query.join(Batch.formula).where(Formula.code == args["formula"].strip().upper())
    if args.get("status") in BATCH_STATUSES:
        query = query.where(Batch.status == args["status"])
    hours = _int(args.get("bud_within_hours"))
    if hours is not None:
        now = utcnow()
        query = query.where(Batch.beyond_use_at > now, Batch.beyond_use_at <= now + timedelta(hours=hours),
                            Batch.status.in_(("prepared", "released")))
    for name, column_filter in (("compounded_from", lambda d: Batch.compounded_at >= start_of_clinic_day(d)),
                                ("compounded_to", lambda d: Batch.compounded_at < end_of_clinic_day(d))):
        day = _date(args.get(name))
        if day is not None:
            query = query.where(column_filter(day))
    if args.get("q"):
        # Taken literally: a typed % or _ is a character to find, not a wildcard.
        query = query.where(Batch.code.icontains(args["q"].strip()[:20], autoescape=True))
    return query.order_by(Batch.compounded_at.desc(), Batch.id.desc())


def _int(value):
    try:
        return max(0, min(int(value), 24 * 3650)) if value not in (None, "") else None
    except ValueError:
        return None


def _date(value):
    try:
        return read_day(value)
    except ValueError:
        return None


DAY_FILTERS = {"compounded_from": "Compounded from", "compounded_to": "Compounded to"}


def day_filter_errors(args) -> list[str]:
    """What is wrong with the list's day filters (the page, the export): each one left out is named."""
    _, errors = day_args(args, *DAY_FILTERS)
    return [f"{DAY_FILTERS[name]}: {message}" for name, message in errors.items()]


@bp.route("/")
@requires("batches.read")
def batch_list():
    errors = day_filter_errors(request.args)
    for message in errors:
        flash(message, "danger")
    pagination = db.paginate(batch_list_query(request.args), page=page_arg(),
                             per_page=50, error_out=False)
    formula_codes = db.session.scalars(sa.select(Formula.code).distinct().order_by(Formula.code)).all()
    return render_template("batches/list.html", pagination=pagination, formula_codes=formula_codes,
                           statuses=BATCH_STATUSES, now=utcnow()), 422 if errors else 200


def _formula_choices():
    formulas = db.session.scalars(
        sa.select(Formula).where(Formula.status == "approved").order_by(Formula.code)).all()
    return [SelectChoice(0, "Choose…"), *[SelectChoice(f.id, f"{f.code} v{f.version} — {f.name}") for f in formulas]]


def _rows_from_request(proposal) -> tuple[list[dict], dict[int, str], dict[int, str]]:
    """Allocations and scans typed on the page: fields lot-<id>-quantity and lot-<id>-scan."""
    allocations, scans, errors = [], {}, {}
    for component in proposal:
        for lot in component.lots:
            raw = request.form.get(f"lot-{lot.id}-quantity", "").strip()
            scans[lot.id] = request.form.get(f"lot-{lot.id}-scan", "")
            if not raw:
                continue
            try:
                quantity = Decimal(raw)
            except InvalidOperation:
                errors[lot.id] = "Enter a number."
                continue
            if not quantity.is_finite() or quantity < 0 or quantity.as_tuple().exponent < -3:
                errors[lot.id] = "A quantity of zero or more, at most 3 decimals."
            elif quantity > 0:
                allocations.append({"lot_id": lot.id, "quantity": quantity})
    return allocations, scans, errors


@bp.route("/new", methods=["GET", "POST"])
@requires("batches.compound")
def batch_compound():
    form = CompoundForm(formdata=request.form if request.method == "POST" else request.args)
    form.formula_id.choices = _formula_choices()
    proposal, formula, values, scans, row_errors = None, None, {}, {}, {}
    require_scan = current_app.config.get("REQUIRE_SCAN_CONFIRMATION", True)
    # Read before validation (the page proposes lots as soon as a formula is chosen): an id beyond
    # the database's integer would overflow the driver, and names no formula anyway.
    if form.formula_id.data and form.units.data and not form.formula_id.errors \
            and 0 < form.formula_id.data <= MAX_RECORD_ID:
        formula = db.session.get(Formula, form.formula_id.data)
        if formula is not None and formula.status == "approved" and 1 <= form.units.data <= batches.MAX_UNITS:
            proposal = batches.propose(formula, form.units.data)
            values = {lot_id: q for c in proposal for lot_id, q in c.proposed.items()}
    if request.method == "POST" and proposal is not None and form.validate():
        allocations, scans, row_errors = _rows_from_request(proposal)
        values = {a["lot_id"]: a["quantity"] for a in allocations}
        if not row_errors:
            try:
                expected = {lot.id: lot.code for c in proposal for lot in c.lots if lot.id in values}
                confirmed = batches.check_scans(expected, {k: v for k, v in scans.items() if k in expected})
                batch = batches.compound_batch(
                    current_user, formula.id, form.units.data, allocations=allocations,
                    deviation_note=form.deviation_note.data or "", notes=form.notes.data or "",
                    scanned_lot_ids=confirmed, require_scan=require_scan)
            except DomainError as exc:
                apply_domain_error(form, exc)
            else:
                flash(f"Batch {batch.code} compounded and awaiting verification by a second pharmacist.", "success")
                return redirect(url_for("batches.batch_detail", batch_id=batch.id))
        else:
            form.form_errors.append("Some quantities are not valid: see the highlighted rows.")
    elif request.method == "POST":
        form.validate()
        if proposal is None and not form.errors:
            form.form_errors.append("This formula cannot be compounded: it is not an approved version.")
    status = 422 if request.method == "POST" else 200
    return render_template("batches/compound.html", form=form, formula=formula, proposal=proposal,
                           values=values, scans=scans, row_errors=row_errors, require_scan=require_scan), status


def _render_detail(batch_id: int, status: int = 200, **forms):
    batch = db.session.scalar(sa.select(Batch).where(Batch.id == batch_id).options(
        selectinload(Batch.formula), selectinload(Batch.compounded_by), selectinload(Batch.verified_by)))
    if batch is None:
        abort(404)
    components = db.session.execute(
        sa.select(BatchComponent, Lot.code, Lot.expires_on, Ingredient.name, Ingredient.unit)
        .join(Lot, Lot.id == BatchComponent.lot_id).join(Ingredient, Ingredient.id == BatchComponent.ingredient_id)
        .where(BatchComponent.batch_id == batch.id).order_by(BatchComponent.id)).all()
    uses = None  # an admin sees the batch, not who received it (DESIGN 10.11)
    if may_read_patients():
        uses = db.session.execute(
            sa.select(SessionUse, TreatmentSession.performed_at, TreatmentSession.voided_at, Patient.chart_number,
                      Patient.id.label("patient_id"), User.display_name)
            .join(TreatmentSession, TreatmentSession.id == SessionUse.session_id)
            .join(Patient, Patient.id == TreatmentSession.patient_id)
            .join(User, User.id == TreatmentSession.practitioner_id)
            .where(SessionUse.batch_id == batch.id).order_by(TreatmentSession.performed_at.desc()).limit(500)).all()
    if uses:  # the sessions name their patients' charts
        note_access("batch.sessions", target_type="batch", target_id=batch.id)
    history = db.session.scalars(
        sa.select(AuditEvent).where(AuditEvent.entity_type == "batch", AuditEvent.entity_id == batch.id)
        .order_by(AuditEvent.id.desc()).limit(100)).all()
    forms.setdefault("verify_form", VerifyForm(prefix="verify"))
    forms.setdefault("reject_form", RejectBatchForm(prefix="reject"))
    forms.setdefault("discard_form", DiscardForm(prefix="discard"))
    item_holds = holds.holds_of("batch", batch.id)
    forms.setdefault("hold_form", hold_form_for(item_holds))
    standing = [h.text for h in item_holds if h.released_at is None]
    return render_template(
        "batches/detail.html", batch=batch, components=components, uses=uses, history=history,
        signatures=signatures_for("batch", batch.id), reasons=batches.unusable_reasons(batch, holds=standing),
        holds=item_holds,
        events=adverse_event_counts("batch", [batch.id]).get(batch.id, (0, 0)),
        expired=batches.is_batch_expired(batch), now=utcnow(),
        **forms), status


@bp.route("/<int:batch_id>")
@requires("batches.read")
def batch_detail(batch_id: int):
    return _render_detail(batch_id)


@bp.route("/<int:batch_id>/verify", methods=["POST"])
@requires("batches.verify")
def batch_verify(batch_id: int):
    form = VerifyForm(prefix="verify")
    batch = submit(form, lambda: batches.verify_batch(current_user, batch_id, form.password.data))
    if batch is not None:
        flash(f"{batch.code} verified and released, signed by {current_user.display_name}.", "success")
        return redirect(url_for("batches.batch_detail", batch_id=batch_id))
    return _render_detail(batch_id, 422, verify_form=form)


@bp.route("/<int:batch_id>/reject", methods=["POST"])
@requires("batches.verify")
def batch_reject(batch_id: int):
    form = RejectBatchForm(prefix="reject")
    batch = submit(form, lambda: batches.reject_batch(current_user, batch_id, form.password.data, form.reason.data))
    if batch is not None:
        flash(f"{batch.code} rejected.", "warning")
        return redirect(url_for("batches.batch_detail", batch_id=batch_id))
    return _render_detail(batch_id, 422, reject_form=form)


@bp.route("/<int:batch_id>/discard", methods=["POST"])
@requires("batches.discard")
def batch_discard(batch_id: int):
    form = DiscardForm(prefix="discard")
    batch = submit(form, lambda: batches.discard_batch(current_user, batch_id, form.reason.data, form.note.data or ""))
    if batch is not None:
        flash(f"{batch.code} discarded.", "warning")
        return redirect(url_for("batches.batch_detail", batch_id=batch_id))
    return _render_detail(batch_id, 422, discard_form=form)


@bp.route("/<int:batch_id>/release-hold", methods=["POST"])
@requires("batches.verify")
def batch_release_hold(batch_id: int):
    form = ReleaseHoldForm()
    batch = submit(form, lambda: holds.release_hold(current_user, "batch", batch_id, form.hold.data,
                                                     form.reason.data, form.password.data))
    if batch is not None:
        flash(f"{form.hold.data.replace('_', ' ').capitalize()} hold on {batch.code} released, signed by "
              f"{current_user.display_name}; it is now {batch.status.replace('_', ' ')}.", "success")
        return redirect(url_for("batches.batch_detail", batch_id=batch_id))
    return _render_detail(batch_id, 422, hold_form=hold_form_for(holds.holds_of("batch", batch_id), form))
