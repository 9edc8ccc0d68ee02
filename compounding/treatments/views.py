"""Patients, their treatment sessions (the batches injected), adverse events; the sessions list."""

from collections import defaultdict

import sqlalchemy as sa
from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy.orm import aliased
from wtforms.fields.choices import SelectChoice

from ..extensions import db
from ..forms import apply_domain_error, day_args, record_id, submit
from ..models import (
    AdverseEvent,
    Batch,
    BatchComponent,
    Formula,
    Ingredient,
    Lot,
    Patient,
    SessionUse,
    StockMovement,
    TreatmentSession,
    User,
)
from ..models.patient import fold
from ..pagination import paginate_rows
from ..permissions import PERMISSIONS
from ..privacy import may_identify, note_access
from ..security import requires
from ..services import treatments, voids
from ..services.clock import clinic_today, end_of_clinic_day, start_of_clinic_day, to_clinic, utcnow
from ..services.errors import DomainError
from .forms import USE_ROWS, AdverseEventForm, CorrectPatientForm, PatientForm, TreatmentForm, VoidForm

bp = Blueprint("treatments", __name__, url_prefix="/treatments")


# --- queries shared with the API ------------------------------------------------------------------


def _contains(text: str) -> str:
    """A LIKE pattern matching `text` anywhere, with the user's % and _ taken literally."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def patient_search(q: str | None) -> sa.ColumnElement[bool]:
    """Patients whose chart number or name contains `q`, ignoring case and accents; all when blank.

    "nunez" finds "Núñez" (rule 10.1.9): both sides are folded. A user who may not see names
    searches chart numbers only, so a name typed cannot tell them whose chart it is.
    """
    q = fold(q)[:60]
    if not q:
        return sa.true()
    pattern = _contains(q)
    by_chart = Patient.chart_key.like(pattern, escape="\\")
    return sa.or_(by_chart, Patient.name_key.like(pattern, escape="\\")) if may_identify() else by_chart


def treatment_filters(query, *, patient_id=None, practitioner_id=None, first_day=None, last_day=None):
    """Sessions of a patient, of a practitioner, performed within clinic days (the page and the API)."""
    if patient_id:
        query = query.where(TreatmentSession.patient_id == patient_id)
    if practitioner_id:
        query = query.where(TreatmentSession.practitioner_id == practitioner_id)
    if first_day:
        query = query.where(TreatmentSession.performed_at >= start_of_clinic_day(first_day))
    if last_day:
        query = query.where(TreatmentSession.performed_at < end_of_clinic_day(last_day))
    return query.order_by(TreatmentSession.performed_at.desc(), TreatmentSession.id.desc())


def uses_by_treatment(treatment_ids) -> dict[int, list]:
    """Each session's uses with batch and formula, in one statement: {session id: [row, ...]}.

    `treatment_ids` is a list of ids or a select of them.
    """
    rows = db.session.execute(
        sa.select(SessionUse, Batch.code.label("batch_code"), Batch.status.label("batch_status"),
                  Formula.code.label("formula_code"), Formula.version.label("formula_version"),
                  Formula.name.label("formula_name"))
        .join(Batch, Batch.id == SessionUse.batch_id).join(Formula, Formula.id == Batch.formula_id)
        .where(SessionUse.session_id.in_(treatment_ids)).order_by(SessionUse.id)).all()
    grouped = defaultdict(list)
    for row in rows:
        grouped[row.SessionUse.session_id].append(row)
    return grouped


def _practitioner_choices() -> list[SelectChoice]:
    """Active accounts whose role may record sessions."""
    people = db.session.execute(
        sa.select(User.id, User.display_name, User.role)
        .where(User.active.is_(True), User.role.in_(PERMISSIONS["treatments.write"]))
        .order_by(User.display_name)).all()
    return [SelectChoice(p.id, f"{p.display_name} ({p.role})") for p in people]


# --- patients -------------------------------------------------------------------------------------


@bp.route("/")
@requires("patients.read")
def index():
    return redirect(url_for("treatments.patient_list"))


@bp.route("/patients")
@requires("patients.read")
def patient_list():
    q = request.args.get("q", "").strip()[:60]
    done = (sa.select(TreatmentSession.patient_id, sa.func.count(TreatmentSession.id).label("treatment_count"),
                      sa.func.max(TreatmentSession.performed_at).label("last_performed_at"))
            .where(TreatmentSession.voided_at.is_(None)).group_by(TreatmentSession.patient_id).subquery())
    query = (sa.select(Patient, sa.func.coalesce(done.c.treatment_count, 0).label("treatment_count"),
                       done.c.last_performed_at)
             .outerjoin(done, done.c.patient_id == Patient.id)
             .where(patient_search(q)).order_by(Patient.chart_number))
    note_access("patient.list", target_type="patients")
    return render_template("treatments/patient_list.html", pagination=paginate_rows(query), q=q,
                           today_iso=clinic_today().isoformat())


def _render_patient_form(form, patient=None, existing=None):
    status = 422 if request.method == "POST" else 200
    return render_template("treatments/patient_form.html", form=form, patient=patient,
                           existing=existing or {}), status


@bp.route("/patients/new", methods=["GET", "POST"])
@requires("patients.write")
def patient_create():
    form = PatientForm()
    if request.method == "GET":
        # From a search that found nobody: the typed chart number is kept.
        form.chart_number.data = request.args.get("chart_number", "").strip()[:40]
    existing = {}
    if form.validate_on_submit():
        try:
            patient = treatments.create_patient(current_user, form.service_data(),
                                                confirm_duplicate=form.confirm_duplicate.data)
        except DomainError as exc:
            apply_domain_error(form, exc)
            existing = exc.details if isinstance(exc.details, dict) else {}
            if existing.get("existing_patient_id"):  # the page names and links the patient on file
                note_access("patient.match", patient_id=existing["existing_patient_id"])
        else:
            # Flashes travel in the session cookie (signed, readable): no chart number in them (DESIGN 10.11).
            flash("Patient registered.", "success")
            return redirect(url_for("treatments.patient_detail", patient_id=patient.id))
    return _render_patient_form(form, existing=existing)


@bp.route("/patients/<int:patient_id>/edit", methods=["GET", "POST"])
@requires("patients.write")
def patient_edit(patient_id: int):
    patient = db.get_or_404(Patient, patient_id)
    note_access("patient.edit", patient_id=patient.id)
    form = PatientForm(obj=patient)
    updated = submit(form, lambda: treatments.update_patient(current_user, patient.id, form.service_data()))
    if updated is not None:
        flash("Patient updated.", "success")
        return redirect(url_for("treatments.patient_detail", patient_id=patient.id))
    return _render_patient_form(form, patient=patient)


@bp.route("/patients/<int:patient_id>")
@requires("patients.read")
def patient_detail(patient_id: int):
    patient = db.get_or_404(Patient, patient_id)
    note_access("patient.view", patient_id=patient.id)
    voider = aliased(User)
    records = db.session.execute(
        sa.select(TreatmentSession, User.display_name.label("practitioner"), voider.display_name.label("voided_by"))
        .join(User, User.id == TreatmentSession.practitioner_id)
        .outerjoin(voider, voider.id == TreatmentSession.voided_by_id)
        .where(TreatmentSession.patient_id == patient.id)
        .order_by(TreatmentSession.performed_at.desc(), TreatmentSession.id.desc())).all()
    uses = uses_by_treatment(sa.select(TreatmentSession.id).where(TreatmentSession.patient_id == patient.id))
    events = db.session.execute(
        sa.select(AdverseEvent, TreatmentSession.performed_at)
        .join(TreatmentSession, TreatmentSession.id == AdverseEvent.session_id)
        .where(TreatmentSession.patient_id == patient.id)
        .order_by(AdverseEvent.recorded_at.desc(), AdverseEvent.id.desc())).all()
    events_by_treatment = defaultdict(list)
    for event, _ in events:
        events_by_treatment[event.session_id].append(event)

    # What reached the patient: batches from their non-voided uses, and those batches' lots.
    received = (sa.select(SessionUse.batch_id).join(TreatmentSession, TreatmentSession.id == SessionUse.session_id)
                .where(TreatmentSession.patient_id == patient.id, TreatmentSession.voided_at.is_(None)))
    received_batches = db.session.execute(
        sa.select(Batch.id, Batch.code, Batch.status, Batch.beyond_use_at, Formula.code.label("formula_code"),
                  Formula.version.label("formula_version"), Formula.name.label("formula_name"),
                  sa.func.sum(SessionUse.volume_ml).label("volume_ml"),
                  sa.func.max(TreatmentSession.performed_at).label("last_performed_at"))
        .join(SessionUse, SessionUse.batch_id == Batch.id)
        .join(TreatmentSession, TreatmentSession.id == SessionUse.session_id)
        .join(Formula, Formula.id == Batch.formula_id)
        .where(TreatmentSession.patient_id == patient.id, TreatmentSession.voided_at.is_(None))
        .group_by(Batch.id, Batch.code, Batch.status, Batch.beyond_use_at, Formula.code, Formula.version,
                  Formula.name)
        .order_by(Batch.code)).all()
    lot_rows = db.session.execute(
        sa.select(Lot.id, Lot.code, Lot.status, Lot.expires_on, Lot.supplier, Lot.supplier_lot_number,
                  Ingredient.name.label("ingredient_name"), Batch.code.label("batch_code"))
        .select_from(BatchComponent)
        .join(Lot, Lot.id == BatchComponent.lot_id)
        .join(Ingredient, Ingredient.id == Lot.ingredient_id)
        .join(Batch, Batch.id == BatchComponent.batch_id)
        .where(BatchComponent.batch_id.in_(received))
        .distinct().order_by(Ingredient.name, Lot.code, Batch.code)).all()
    received_lots: dict[int, dict] = {}
    for row in lot_rows:
        entry = received_lots.setdefault(row.id, {"lot": row, "batch_codes": []})
        entry["batch_codes"].append(row.batch_code)
    return render_template(
        "treatments/patient_detail.html", patient=patient, records=records, uses=uses, events=events,
        events_by_treatment=events_by_treatment, received_batches=received_batches,
        received_lots=list(received_lots.values()))


# --- treatment sessions ---------------------------------------------------------------------------


def _refused_rows(form, refusals: dict) -> dict[int, list[str]]:
    """Row index -> the reasons its batch was refused, matched as the service reads a code."""
    return {index: refusals[code] for index, row in enumerate(form.uses)
            if (code := (row.form.batch_code.data or "").strip().upper()) in refusals}


@bp.route("/patients/<int:patient_id>/sessions/new", methods=["GET", "POST"])
@requires("treatments.write")
def treatment_record(patient_id: int):
    patient = db.get_or_404(Patient, patient_id)
    note_access("session.form", patient_id=patient.id)
    form = TreatmentForm()
    form.practitioner_id.choices = _practitioner_choices()
    if request.method == "GET":
        form.practitioner_id.data = current_user.id
        form.offer_now()
        # Coming from the scan station with a vial already scanned.
        form.uses[0].form.batch_code.data = request.args.get("batch_code", "").strip()[:40]
    refusals: dict[str, list[str]] = {}
    refused_status = 422
    if form.validate_on_submit():
        form.compact_uses()
        try:
            record = treatments.record_session(
                current_user, patient_id=patient.id, uses=form.filled_uses(),
                performed_at=form.performed_at_utc(), indication=form.indication.data or "",
                notes=form.notes.data or "", practitioner=db.session.get(User, form.practitioner_id.data),
                password=form.password.data or None)
        except DomainError as exc:
            if isinstance(exc.details, dict) and exc.details.get("reasons"):
                refusals = exc.details["reasons"]
            else:
                apply_domain_error(form, exc)
            refused_status = exc.status_code if exc.status_code == 403 else 422
        else:
            codes = ", ".join(dict.fromkeys(row["batch_code"].upper() for row in form.filled_uses()))
            flash(f"Session recorded: {codes}.", "success")
            return redirect(url_for("treatments.treatment_detail", treatment_id=record.id))
    status = refused_status if request.method == "POST" else 200
    return render_template("treatments/record.html", form=form, patient=patient, refusals=refusals,
                           refused_rows=_refused_rows(form, refusals), use_rows=USE_ROWS,
                           backdate_hours=current_app.config.get("BACKDATE_HOURS", 72),
                           clinic_now=to_clinic(utcnow()).strftime("%Y-%m-%dT%H:%M:%S")), status


def _render_treatment(treatment_id: int, status: int = 200, **forms):
    voider = aliased(User)
    found = db.session.execute(
        sa.select(TreatmentSession, Patient, User.display_name.label("practitioner"),
                  voider.display_name.label("voided_by"))
        .join(Patient, Patient.id == TreatmentSession.patient_id)
        .join(User, User.id == TreatmentSession.practitioner_id)
        .outerjoin(voider, voider.id == TreatmentSession.voided_by_id)
        .where(TreatmentSession.id == treatment_id)).first()
    if found is None:
        abort(404)
    record = found.TreatmentSession
    note_access("session.view", patient_id=record.patient_id, target_type="treatment_session", target_id=record.id)
    recorder = aliased(User)
    events = db.session.execute(
        sa.select(AdverseEvent, recorder.display_name.label("recorded_by"))
        .join(recorder, recorder.id == AdverseEvent.recorded_by_id)
        .where(AdverseEvent.session_id == record.id)
        .order_by(AdverseEvent.recorded_at, AdverseEvent.id)).all()
    forms.setdefault("event_form", AdverseEventForm(prefix="event"))
    forms.setdefault("void_form", VoidForm(prefix="void"))
    forms.setdefault("correct_form", CorrectPatientForm(prefix="correct"))
    uses = uses_by_treatment([record.id])[record.id]
    # What the ledger says a void gave back: a use without a return kept its volume taken.
    returned = set(db.session.scalars(sa.select(StockMovement.reference_id).where(
        StockMovement.reference_type == "session_use", StockMovement.kind == "return",
        StockMovement.reference_id.in_([row.SessionUse.id for row in uses]))))
    corrected_by = db.session.scalar(sa.select(TreatmentSession.id).where(
        TreatmentSession.corrects_session_id == record.id))
    return render_template(
        "treatments/detail.html", record=record, patient=found.Patient, practitioner=found.practitioner,
        voided_by=found.voided_by, uses=uses, events=events, today=clinic_today(), returned=returned,
        corrected_by=corrected_by, signature_reasons=[] if record.voided_at else voids.signature_reasons(record.id),
        may_void=voids.may_void(current_user, record),
        **forms), status


@bp.route("/sessions/<int:treatment_id>")
@requires("patients.read")
def treatment_detail(treatment_id: int):
    return _render_treatment(treatment_id)


@bp.route("/sessions/<int:treatment_id>/void", methods=["POST"])
@requires("treatments.write")
def treatment_void(treatment_id: int):
    form = VoidForm(prefix="void")
    # A colleague's session offers no void form: refused outright (403), not shown again with errors.
    voids.ensure_may_void(current_user, treatment_id)
    record = submit(form, lambda: voids.void_session(current_user, treatment_id, reason_code=form.reason_code.data,
                                                     reason=form.reason.data, password=form.password.data or None))
    if record is not None:
        flash("Session voided: it stays in traces and recalls, flagged. Volume went back only to batches "
              "still released; see each batch below.", "warning")
        return redirect(url_for("treatments.treatment_detail", treatment_id=treatment_id))
    return _render_treatment(treatment_id, 422, void_form=form)


def _correct(form: CorrectPatientForm, treatment_id: int):
    # Folded as the chart key is (rule 10.1.9): " ch-2001 " is CH-2001.
    right = db.session.scalar(sa.select(Patient.id).where(Patient.chart_key == fold(form.chart_number.data)))
    if right is None:
        form.chart_number.errors = [*form.chart_number.errors, "No patient has this chart number."]
        return None
    return voids.correct_patient(current_user, treatment_id, patient_id=right, reason=form.reason.data,
                                 password=form.password.data)


@bp.route("/sessions/<int:treatment_id>/correct-patient", methods=["POST"])
@requires("treatments.write")
def treatment_correct(treatment_id: int):
    form = CorrectPatientForm(prefix="correct")
    corrected = submit(form, lambda: _correct(form, treatment_id))
    if corrected is not None:
        flash(f"Patient corrected, signed by {current_user.display_name}: this session replaces the one "
              "recorded on the wrong patient.", "success")
        return redirect(url_for("treatments.treatment_detail", treatment_id=corrected.id))
    return _render_treatment(treatment_id, 422, correct_form=form)


@bp.route("/sessions/<int:treatment_id>/adverse-events", methods=["POST"])
@requires("adverse_events.write")
def adverse_event_add(treatment_id: int):
    form = AdverseEventForm(prefix="event")
    event = submit(form, lambda: treatments.record_adverse_event(
        current_user, session_id=treatment_id, type=form.type.data, severity=form.severity.data,
        onset_on=form.onset_on.data, outcome=form.outcome.data or "", notes=form.notes.data or ""))
    if event is not None:
        flash(f"Adverse event recorded: {event.type.replace('_', ' ')} ({event.severity}).", "success")
        return redirect(url_for("treatments.treatment_detail", treatment_id=treatment_id))
    return _render_treatment(treatment_id, 422, event_form=form)


@bp.route("/sessions")
@requires("patients.read")
def treatment_list():
    days, errors = day_args(request.args, "from", "to")
    first_day, last_day = days["from"], days["to"]
    for name, message in errors.items():
        flash(f"{'From' if name == 'from' else 'To'}: {message}", "danger")
    practitioner_id = request.args.get("practitioner_id", type=record_id)
    event_count = (sa.select(sa.func.count(AdverseEvent.id)).where(AdverseEvent.session_id == TreatmentSession.id)
                   .correlate(TreatmentSession).scalar_subquery())
    volume = (sa.select(sa.func.sum(SessionUse.volume_ml)).where(SessionUse.session_id == TreatmentSession.id)
              .correlate(TreatmentSession).scalar_subquery())
    query = treatment_filters(
        sa.select(TreatmentSession, Patient.chart_number,
                  (Patient.name if may_identify() else sa.null()).label("patient_name"),
                  User.display_name.label("practitioner"), event_count.label("event_count"),
                  volume.label("volume_ml"))
        .join(Patient, Patient.id == TreatmentSession.patient_id)
        .join(User, User.id == TreatmentSession.practitioner_id),
        practitioner_id=practitioner_id, first_day=first_day, last_day=last_day)
    # The page is found on the sessions table alone (same filters, no joins): deep pages stay fast.
    keys = treatment_filters(sa.select(TreatmentSession.id), practitioner_id=practitioner_id, first_day=first_day,
                             last_day=last_day)
    pagination = paginate_rows(query, keys=keys)
    note_access("session.list", target_type="treatment_sessions")
    uses = uses_by_treatment([row.TreatmentSession.id for row in pagination.items])
    return render_template(
        "treatments/list.html", pagination=pagination, uses=uses, practitioners=_practitioner_choices(),
        first_day=first_day, last_day=last_day, practitioner_id=practitioner_id,
        today=clinic_today()), 422 if errors else 200
