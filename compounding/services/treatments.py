"""Patients, treatment sessions (the vials injected) and adverse events.

A vial is used only if its batch was released, verified, not recalled, not held and not
expired at the time of the session (per its status history), the vial itself was usable
then (services.vial_uses) and it holds the volume now; the volume drops in the same
transaction, with a ledger row per use naming batch and vial. Adverse events that call for it hold the batches used.
"""

import re
from datetime import date, datetime, timedelta
from decimal import Decimal

import sqlalchemy as sa
from flask import current_app

from ..extensions import db
from ..limits import CODE_MAX, NAME_MAX, NOTES_MAX, SHORT_TEXT_MAX
from ..models import AdverseEvent, Patient, SessionUse, TreatmentSession, User
from ..models.patient import fold
from ..models.treatment import ADVERSE_EVENT_TYPES, SEVERITIES
from . import audit, exposure, sites
from .access import ensure_can
from .batches import reasons_at
from .bounds import check_day, checked_text
from .clock import clinic_today, to_clinic, utcnow
from .errors import InvalidInput, InvalidState, NotFound, SignatureRejected
from .history import record_depletion
from .holds import hold_batches_for_event
from .ledger import move_vial
from .lookup import fetch
from .recalls import join_recalls_opened_since
from .signatures import pharmacist_signs
from .transaction import transactional
from .vial_uses import Draw, after_use, judge, lock_batches, lock_vials, read_draw

PATIENT_FIELDS = ("chart_number", "name", "birth_on", "phone", "email")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MAX_USE_ML = Decimal("1000")


def _patient_fields(data: dict) -> dict:
    chart = (data.get("chart_number") or "").strip()
    if not chart or len(chart) > CODE_MAX:
        raise InvalidInput(f"The chart number (1 to {CODE_MAX} characters) is required.", field="chart_number")
    clean = {"chart_number": chart}
    for key, maximum in (("name", SHORT_TEXT_MAX), ("phone", CODE_MAX), ("email", SHORT_TEXT_MAX)):
        clean[key] = checked_text(data.get(key), key, maximum)
    if clean["email"] and not _EMAIL.match(clean["email"]):
        raise InvalidInput("This is not an e-mail address.", field="email")
    birth = data.get("birth_on")
    if birth and not isinstance(birth, date):
        try:
            birth = date.fromisoformat(str(birth))
        except ValueError:
            raise InvalidInput("Use a date such as 1985-04-23.", field="birth_on") from None
    if birth and (birth > clinic_today() or birth.year < 1900):
        raise InvalidInput("The birth date must be in the past.", field="birth_on")
    clean["birth_on"] = birth or None
    return clean


def _same_chart_number(chart_number: str, other_than: int | None = None) -> Patient | None:
    """The patient whose chart number folds like `chart_number` ("ch-2001 " is "CH-2001")."""
    query = sa.select(Patient).where(Patient.chart_key == fold(chart_number))
    if other_than is not None:
        query = query.where(Patient.id != other_than)
    return db.session.scalar(query)


def _chart_number_taken(existing: Patient) -> InvalidState:
    return InvalidState(f"Chart number {existing.chart_number} is already registered.", field="chart_number",
                        details={"chart_number": ["Already registered."], "existing_patient_id": existing.id})


def same_person(name: str, birth_on: date | None) -> Patient | None:
    """A patient with this name (any case, accents, spacing) and birth date, if any."""
    if not fold(name) or birth_on is None:
        return None
    return db.session.scalar(sa.select(Patient).where(Patient.name_key == fold(name), Patient.birth_on == birth_on)
                             .order_by(Patient.id).limit(1))


@transactional
def create_patient(actor: User, data: dict, *, confirm_duplicate: bool = False) -> Patient:
    """Register a patient by chart number, unique ignoring case and surrounding spaces.

    Someone with the same name and birth date as a registered patient is refused (409, with
    `existing_patient_id`) until the caller confirms it is another person.
    """
    ensure_can(actor, "patients.write", "register patients")
    clean = _patient_fields(data)
    existing = _same_chart_number(clean["chart_number"])
    if existing is not None:
        raise _chart_number_taken(existing)
    twin = same_person(clean["name"], clean["birth_on"])
    if twin is not None and not confirm_duplicate:
        raise InvalidState(
            f"{twin.chart_number} has the same name and date of birth: open that record, or confirm this is "
            "another person.", field="confirm_duplicate",
            details={"confirm_duplicate": ["Same name and date of birth as a registered patient."],
                     "existing_patient_id": twin.id, "existing_chart_number": twin.chart_number})
    patient = Patient(**clean, created_at=utcnow())
    patient.set_keys()
    db.session.add(patient)
    db.session.flush()
    audit.created(actor, "patient.created", patient, PATIENT_FIELDS,
                  reason=f"Another person than {twin.chart_number} (same name and date of birth), as confirmed."
                  if twin is not None else "")
    return patient


@transactional
def update_patient(actor: User, patient_id: int, data: dict) -> Patient:
    """Change a patient's details; fields left out of `data` keep their current values."""
    ensure_can(actor, "patients.write", "edit patients")
    patient = get_patient(patient_id)
    current = {key: getattr(patient, key) for key in PATIENT_FIELDS}
    clean = _patient_fields({**current, **data, "chart_number": data.get("chart_number") or patient.chart_number})
    existing = _same_chart_number(clean["chart_number"], other_than=patient.id)
    if existing is not None:
        raise _chart_number_taken(existing)
    with audit.change(actor, "patient.updated", patient, PATIENT_FIELDS, only_if_changed=True):
        for key, value in clean.items():
            setattr(patient, key, value)
        patient.set_keys()
    return patient


def get_patient(patient_id) -> Patient:
    return fetch(Patient, patient_id, NotFound("There is no such patient.", field="patient_id"))


def _volume(value, index: int) -> Decimal:
    try:
        volume = Decimal(str(value).strip())
    except ArithmeticError:
        raise InvalidInput(f"Use {index + 1}: enter a volume such as 2.5.", field="uses") from None
    if not volume.is_finite() or volume <= 0 or volume > MAX_USE_ML or volume.as_tuple().exponent < -3:
        raise InvalidInput(f"Use {index + 1}: the volume must be above 0 and at most {MAX_USE_ML} mL, "
                           "with at most 3 decimals.", field="uses")
    return volume


def _backdate_limit() -> timedelta:
    return timedelta(hours=current_app.config.get("BACKDATE_HOURS", 72))


def _sign_backdating(actor: User, password: str | None, session_id: int) -> None:
    """A session dated further back than BACKDATE_HOURS is a pharmacist's signed entry."""
    hours = current_app.config.get("BACKDATE_HOURS", 72)
    if actor.role == "pharmacist" and not password:
        raise SignatureRejected(f"This session is more than {hours} hours back: a pharmacist's signature is "
                                "needed (enter your password).", field="password")
    pharmacist_signs(actor, password, "back-dated", "treatment_session", session_id,
                     f"record a session more than {hours} hours back")


def _parse_uses(uses: list[dict]) -> list[Draw]:
    if not uses:
        raise InvalidInput("Add at least one vial used in the session.", field="uses")
    if len(uses) > 50:
        raise InvalidInput("At most 50 uses in one session.", field="uses")
    draws = []
    for index, use in enumerate(uses):
        volume = _volume(use.get("volume_ml"), index)
        area = (use.get("area") or "").strip()
        if len(area) > NAME_MAX:
            raise InvalidInput(f"Use {index + 1}: the area has at most {NAME_MAX} characters.", field="uses")
        draws.append(read_draw(index, use, volume, area))
    return draws


def _refuse_unusable(draws: list[Draw], performed_at: datetime, site_id: int) -> None:
    """Each batch judged as it was at `performed_at` (its history), then each vial, with the volume they have now
    and where it is (at the session's site, not travelling)."""
    problems = judge(draws, performed_at, reasons_at, site_id)
    if problems:
        summary = "; ".join(f"{code}: {', '.join(reasons)}" for code, reasons in problems.items())
        raise InvalidState(f"Do not use — {summary}.", field="uses",
                           details={"reasons": problems, "uses": [summary]})


def _practitioner(actor: User, practitioner: User | None) -> User:
    practitioner = practitioner or actor
    if not practitioner.can("treatments.write"):
        raise InvalidInput(f"{practitioner.display_name} is not an active practitioner or pharmacist.",
                           field="practitioner_id")
    return practitioner


def _performed_at(performed_at: datetime | None, now: datetime) -> datetime:
    """When the session took place: now when not given, never in the future, with its time zone."""
    performed_at = performed_at or now
    if performed_at.tzinfo is None:
        raise InvalidInput("The session time needs its time zone.", field="performed_at")
    check_day(performed_at, field="performed_at")
    if performed_at > now:
        raise InvalidInput("A session cannot be recorded in the future.", field="performed_at")
    return performed_at


def _take_volumes(actor: User, session_row: TreatmentSession, patient: Patient, draws: list[Draw]) -> list[dict]:
    """One use row and one `use` ledger row (batch and vial) per use; then the vials and batches it emptied.

    Answers the single-dose remainders written off, for the audit row.
    """
    for draw in draws:
        use = SessionUse(session_id=session_row.id, batch=draw.batch, vial=draw.vial, volume_ml=draw.volume,
                         area=draw.area)
        db.session.add(use)
        db.session.flush()
        move_vial(draw.vial, draw.batch, "use", -draw.volume, actor, reference_type="session_use",
                  reference_id=use.id, note=f"patient {patient.chart_number}", occurred_at=session_row.performed_at)
    wasted = after_use(actor, session_row, draws)
    for batch in sorted({d.batch.id: d.batch for d in draws}.values(), key=lambda b: b.id):
        # A batch held since the session it empties (entered late) is depleted all the same.
        record_depletion(actor, batch, f"used up in session {session_row.id}", reference=f"session {session_row.id}")
    return wasted


@transactional
def record_session(actor: User, *, patient_id: int, uses: list[dict], performed_at: datetime | None = None,
                   indication: str = "", notes: str = "", practitioner: User | None = None,
                   password: str | None = None, site_id: int | None = None) -> TreatmentSession:
    """Record a treatment session and take each use's volume from its vial (and so its batch).

    Every use names a vial (`vial_code`), or only its batch (`batch_code` or `batch_id`: the
    open vial that can take it, else the lowest-numbered sealed one that holds it), a volume
    in mL and optionally an area. Refused, with every reason by code, when a batch or a vial
    was not usable at `performed_at` (judged against its status history). A single-dose vial
    is spent when the session is saved, its remainder written off; a multiple-dose vial records
    its first puncture. A session dated more than BACKDATE_HOURS ago
    needs a pharmacist's signature ("back-dated"). One performed before a recall opened
    joins its scope; a closed recall it reaches is reopened.

    The session is performed at `site_id` (one of the actor's sites; their first when None): a vial
    kept at another site, or in transit, is refused (409), and a use by batch takes a vial kept there.
    """
    ensure_can(actor, "treatments.write", "record treatment sessions")
    site_id = sites.acting_site_id(actor, site_id)
    patient = get_patient(patient_id)
    practitioner = _practitioner(actor, practitioner)
    now = utcnow()
    performed_at = _performed_at(performed_at, now)
    indication = checked_text(indication, "indication", SHORT_TEXT_MAX)
    notes = checked_text(notes, "notes", NOTES_MAX)
    draws = _parse_uses(uses)
    lock_batches(draws)
    lock_vials(draws, site_id)
    _refuse_unusable(draws, performed_at, site_id)
    session_row = TreatmentSession(patient_id=patient.id, practitioner_id=practitioner.id, performed_at=performed_at,
                                   indication=indication, notes=notes, recorded_at=now, site_id=site_id)
    db.session.add(session_row)
    db.session.flush()
    if now - performed_at > _backdate_limit():
        _sign_backdating(actor, password, session_row.id)
    wasted = _take_volumes(actor, session_row, patient, draws)
    exposure.count_session(session_row)
    late = join_recalls_opened_since(actor, session_row, sorted({d.batch.id for d in draws}))
    # The answer names the vial each use drew from, in the order given (kept past the commit).
    session_row.vial_codes = [d.vial.code for d in draws]
    audit.record(actor, "session.recorded", "treatment_session", session_row.id, new={
        "patient": patient.chart_number, "practitioner": practitioner.display_name, "performed_at": performed_at,
        "site_id": site_id,
        "indication": session_row.indication,
        "uses": [{"batch": d.batch.code, "vial": d.vial.code, "volume_ml": d.volume, "area": d.area} for d in draws],
        **({"single_dose_remainders_wasted": wasted} if wasted else {}),
        **({"recorded_after_recalls": late} if late else {})})
    return session_row


@transactional
def record_adverse_event(actor: User, *, session_id: int, type: str, severity: str, onset_on=None,
                         outcome: str = "", notes: str = "") -> AdverseEvent:
    """Record an adverse event after a session (it feeds the quality signals).

    A severe event, or one of the holding types, holds every batch used in the session.
    """
    ensure_can(actor, "adverse_events.write", "record adverse events")
    # Locked as a void locks it: a void deciding whether a pharmacist must sign (an adverse
    # event) either sees this event or is seen by it, never neither.
    session_row = db.session.scalar(
        sa.select(TreatmentSession).where(TreatmentSession.id == session_id)
        .with_for_update().execution_options(populate_existing=True)) if session_id else None
    if session_row is None:
        raise InvalidInput("There is no such session.", field="session_id")
    if session_row.voided_at is not None:
        raise InvalidState("This session was voided: record the event on the right session.", field="session_id")
    if type not in ADVERSE_EVENT_TYPES:
        raise InvalidInput(f"Choose a type: {', '.join(ADVERSE_EVENT_TYPES)}.", field="type")
    if severity not in SEVERITIES:
        raise InvalidInput(f"Choose a severity: {', '.join(SEVERITIES)}.", field="severity")
    if onset_on and not isinstance(onset_on, date):
        try:
            onset_on = date.fromisoformat(str(onset_on))
        except ValueError:
            raise InvalidInput("Use a date such as 2026-11-27.", field="onset_on") from None
    # Both sides in clinic days: a late-evening session is already "tomorrow" in UTC west of Greenwich.
    if onset_on and (onset_on > clinic_today() or onset_on < to_clinic(session_row.performed_at).date()):
        raise InvalidInput("The onset is between the session and today.", field="onset_on")
    event = AdverseEvent(session_id=session_row.id, type=type, severity=severity, onset_on=onset_on or None,
                         outcome=checked_text(outcome, "outcome", SHORT_TEXT_MAX),
                         notes=checked_text(notes, "notes", NOTES_MAX),
                         recorded_at=utcnow(), recorded_by_id=actor.id)
    db.session.add(event)
    db.session.flush()
    audit.record(actor, "adverse_event.recorded", "adverse_event", event.id, new={
        "session_id": session_row.id, "type": type, "severity": severity, "onset_on": onset_on,
        "outcome": event.outcome})
    # In the same transaction, so no one can use the batch between the two.
    hold_batches_for_event(actor, event)
    return event
