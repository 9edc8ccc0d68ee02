"""Patients, their treatment sessions (the vials injected), adverse events; the sessions list."""

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from wtforms.fields.choices import SelectChoice

from ..extensions import db
from ..forms import apply_domain_error, submit
from ..models import Patient, User
from ..pages import RecordPage
from ..pagination import filter_status, paginate_rows
from ..privacy import note_access
from ..queries.scope import shown_sites
from ..queries.treatments import (
    PatientFilters,
    SessionFilters,
    patient_by_chart,
    patient_list_query,
    patient_record,
    practitioners,
    session_list_rows,
    session_record,
    uses_by_treatment,
)
from ..security import requires
from ..services import sites, treatments, voids
from ..services.clock import clinic_today, to_clinic, utcnow
from ..services.errors import DomainError, NotFound
from ..site_scope import acting_site_id, current_scope, ensure_visible
from .forms import USE_ROWS, AdverseEventForm, CorrectPatientForm, PatientForm, TreatmentForm, VoidForm

bp = Blueprint("treatments", __name__, url_prefix="/treatments")


def _practitioner_choices() -> list[SelectChoice]:
    """Active accounts whose role may record sessions."""
    return [SelectChoice(p.id, f"{p.display_name} ({p.role})") for p in practitioners()]


# --- patients -------------------------------------------------------------------------------------


@bp.route("/")
@requires("patients.read")
def index():
    return redirect(url_for("treatments.patient_list"))


@bp.route("/patients")
@requires("patients.read")
def patient_list():
    filters = PatientFilters.from_args(request.args)
    status = filter_status(filters.errors)
    note_access("patient.list", target_type="patients")
    pagination = paginate_rows(patient_list_query(filters, site_ids=current_scope()))
    return render_template("treatments/patient_list.html", pagination=pagination,
                           q=filters.q, today_iso=clinic_today().isoformat()), status


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
            # Flashes travel in the session cookie (signed, readable): no chart number in them.
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
    found = patient_record(patient.id, site_ids=sites.visible_site_ids(current_user))
    return render_template(
        "treatments/patient_detail.html", patient=patient, records=found.records, uses=found.uses,
        events=found.events, events_by_treatment=found.events_by_treatment, received_batches=found.received_batches,
        received_lots=found.received_lots)


# --- treatment sessions ---------------------------------------------------------------------------


def _refused_rows(form, refusals: dict) -> dict[int, list[str]]:
    """Row index -> the reasons its vial or batch was refused, matched as the service reads a code.

    A row holding a vial code also shows its batch's reasons; a row holding a batch code also shows
    those of the vial its use was given to (`<batch code>-NN`).
    """
    rows = {}
    for index, row in enumerate(form.uses):
        code = (row.form.batch_code.data or "").strip().upper()
        if not code:
            continue
        batch_code = code.partition("-")[0]
        reasons = [reason for key, found in refusals.items()
                   if key in (code, batch_code) or ("-" not in code and key.startswith(code + "-"))
                   for reason in found]
        if reasons:
            rows[index] = list(dict.fromkeys(reasons))
    return rows


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
        scanned = request.args.get("vial_code") or request.args.get("batch_code") or ""
        form.uses[0].form.batch_code.data = scanned.strip()[:40]
    refusals: dict[str, list[str]] = {}
    refused_status = 422
    if form.validate_on_submit():
        form.compact_uses()
        try:
            record = treatments.record_session(
                current_user, patient_id=patient.id, uses=form.filled_uses(),
                performed_at=form.performed_at_utc(), indication=form.indication.data or "",
                notes=form.notes.data or "", practitioner=db.session.get(User, form.practitioner_id.data),
                password=form.password.data or None, site_id=acting_site_id())
        except DomainError as exc:
            if isinstance(exc.details, dict) and exc.details.get("reasons"):
                refusals = exc.details["reasons"]
            else:
                apply_domain_error(form, exc)
            refused_status = exc.status_code if exc.status_code == 403 else 422
        else:
            codes = ", ".join(dict.fromkeys(record.vial_codes))
            flash(f"Session recorded: {codes}.", "success")
            return redirect(url_for("treatments.treatment_detail", treatment_id=record.id))
    status = refused_status if request.method == "POST" else 200
    return render_template("treatments/record.html", form=form, patient=patient, refusals=refusals,
                           refused_rows=_refused_rows(form, refusals), use_rows=USE_ROWS,
                           backdate_hours=current_app.config.get("BACKDATE_HOURS", 72),
                           clinic_now=to_clinic(utcnow()).strftime("%Y-%m-%dT%H:%M:%S")), status


def _render_treatment(treatment_id: int, status: int = 200, **forms):
    ensure_visible("session", treatment_id)
    found = session_record(treatment_id)
    if found is None:
        raise NotFound("There is no such treatment session.")
    record = found.record
    note_access("session.view", patient_id=record.patient_id, target_type="treatment_session", target_id=record.id)
    forms.setdefault("event_form", AdverseEventForm(prefix="event"))
    forms.setdefault("void_form", VoidForm(prefix="void"))
    forms.setdefault("correct_form", CorrectPatientForm(prefix="correct"))
    return render_template(
        "treatments/detail.html", record=record, patient=found.patient, practitioner=found.practitioner,
        voided_by=found.voided_by, uses=found.uses, events=found.events, today=clinic_today(),
        returned=found.returned, corrected_by=found.corrected_by,
        signature_reasons=[] if record.voided_at else voids.signature_reasons(record.id),
        may_void=voids.may_void(current_user, record),
        **forms), status


_PAGE = RecordPage("treatments.treatment_detail", "treatment_id", _render_treatment)


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
    return _PAGE.post(treatment_id, "void_form", form,
                      lambda: voids.void_session(current_user, treatment_id, reason_code=form.reason_code.data,
                                                 reason=form.reason.data, password=form.password.data or None),
                      lambda record: "Session voided: it stays in traces and recalls, flagged. Volume went back "
                                     "only to vials still open; see each vial below.", "warning")


def _correct(form: CorrectPatientForm, treatment_id: int):
    right = patient_by_chart(form.chart_number.data)
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
    return _PAGE.post(treatment_id, "event_form", form,
                      lambda: treatments.record_adverse_event(
                          current_user, session_id=treatment_id, type=form.type.data, severity=form.severity.data,
                          onset_on=form.onset_on.data, outcome=form.outcome.data or "", notes=form.notes.data or ""),
                      lambda event: f"Adverse event recorded: {event.type.replace('_', ' ')} ({event.severity}).")


@bp.route("/sessions")
@requires("patients.read")
def treatment_list():
    filters = SessionFilters.from_args(request.args)
    status = filter_status(filters.errors)
    scope = current_scope()
    rows, keys = session_list_rows(filters, site_ids=scope)
    pagination = paginate_rows(rows, keys=keys)
    note_access("session.list", target_type="treatment_sessions")
    uses = uses_by_treatment([row.TreatmentSession.id for row in pagination.items])
    return render_template(
        "treatments/list.html", pagination=pagination, uses=uses, practitioners=_practitioner_choices(),
        first_day=filters.first_day, last_day=filters.last_day, practitioner_id=filters.practitioner_id,
        today=clinic_today(), row_sites=shown_sites(scope)), status
