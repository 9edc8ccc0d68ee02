"""Patients and treatment sessions: searches, the session list and its filters, a patient's and a session's page."""

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date

import sqlalchemy as sa
from sqlalchemy.orm import aliased, contains_eager

from ..extensions import db
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
    Vial,
)
from ..models.patient import fold
from ..permissions import PERMISSIONS
from ..privacy import may_identify
from ..services.clock import end_of_clinic_day, start_of_clinic_day
from .common import contains, day_args, record_id, search_arg
from .scope import SiteIds, at_sites

# --- patients ---------------------------------------------------------------------------------------


@dataclass
class PatientFilters:
    q: str = ""  # part of the chart number or, for who may see names, of the name
    errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_args(cls, args) -> "PatientFilters":
        errors: dict[str, str] = {}
        return cls(q=search_arg(args, errors), errors=errors)


def patient_search(q: str | None) -> sa.ColumnElement[bool]:
    """Patients whose chart number or name contains `q`, ignoring case and accents; all when blank.

    "nunez" finds "Núñez": both sides are folded. A user who may not see names searches chart
    numbers only, so a name typed cannot tell them whose chart it is.
    """
    q = fold(q)
    if not q:
        return sa.true()
    pattern = contains(q)
    by_chart = Patient.chart_key.like(pattern, escape="\\")
    return sa.or_(by_chart, Patient.name_key.like(pattern, escape="\\")) if may_identify() else by_chart


def patients_in_scope(q: str | None, site_ids: SiteIds) -> sa.ColumnElement[bool]:
    """The patients a list shows: every one for who sees every site; else those with a session (standing or
    voided) performed at the sites in scope, those not yet treated anywhere (registered, at no site yet: whoever
    registered them finds them to record the first session), and, chain-wide, the one whose chart number is `q`
    exactly (a patient treated at another site who walks in)."""
    if site_ids is None:
        return sa.true()
    treated_here = sa.exists().where(TreatmentSession.patient_id == Patient.id,
                                     at_sites(TreatmentSession.site_id, site_ids))
    untreated = ~sa.exists().where(TreatmentSession.patient_id == Patient.id)
    key = fold(q)
    return sa.or_(treated_here, untreated, *([Patient.chart_key == key] if key else []))


def patient_list_query(filters: PatientFilters, *, site_ids: SiteIds):
    """Patients by chart number, each with their standing sessions' count and the last one's time.

    The patients in scope (`patients_in_scope`); the sessions counted are those performed at the sites in scope.
    """
    done = (sa.select(TreatmentSession.patient_id, sa.func.count(TreatmentSession.id).label("treatment_count"),
                      sa.func.max(TreatmentSession.performed_at).label("last_performed_at"))
            .where(TreatmentSession.voided_at.is_(None), at_sites(TreatmentSession.site_id, site_ids))
            .group_by(TreatmentSession.patient_id).subquery())
    return (sa.select(Patient, sa.func.coalesce(done.c.treatment_count, 0).label("treatment_count"),
                      done.c.last_performed_at)
            .outerjoin(done, done.c.patient_id == Patient.id)
            .where(patient_search(filters.q), patients_in_scope(filters.q, site_ids)).order_by(Patient.chart_number))


def patient_by_chart(chart_number: str | None) -> int | None:
    """The id of the patient with this chart number, folded as the chart key is (" ch-2001 " is CH-2001)."""
    return db.session.scalar(sa.select(Patient.id).where(Patient.chart_key == fold(chart_number)))


@dataclass
class PatientRecord:
    """A patient's page: sessions, uses, adverse events, and what reached them."""

    records: list
    uses: dict
    events: list
    events_by_treatment: dict
    received_batches: list
    received_lots: list


def patient_record(patient_id: int, *, site_ids: SiteIds) -> PatientRecord:
    """A patient's sessions performed at the sites in `site_ids` (None: every site), with what they used and
    the events after them; the patient's record itself belongs to the chain."""
    here = at_sites(TreatmentSession.site_id, site_ids)
    voider = aliased(User)
    records = db.session.execute(
        sa.select(TreatmentSession, User.display_name.label("practitioner"), voider.display_name.label("voided_by"))
        .join(User, User.id == TreatmentSession.practitioner_id)
        .outerjoin(voider, voider.id == TreatmentSession.voided_by_id)
        .where(TreatmentSession.patient_id == patient_id, here)
        .order_by(TreatmentSession.performed_at.desc(), TreatmentSession.id.desc())).all()
    uses = uses_by_treatment(sa.select(TreatmentSession.id).where(TreatmentSession.patient_id == patient_id, here))
    events = db.session.execute(
        sa.select(AdverseEvent, TreatmentSession.performed_at)
        .join(TreatmentSession, TreatmentSession.id == AdverseEvent.session_id)
        .where(TreatmentSession.patient_id == patient_id, here)
        .order_by(AdverseEvent.recorded_at.desc(), AdverseEvent.id.desc())).all()
    events_by_treatment = defaultdict(list)
    for event, _ in events:
        events_by_treatment[event.session_id].append(event)
    return PatientRecord(records=records, uses=uses, events=events, events_by_treatment=events_by_treatment,
                         received_batches=_received_batches(patient_id, here),
                         received_lots=_received_lots(patient_id, here))


def _standing_uses(patient_id: int, here=None) -> tuple:
    return (TreatmentSession.patient_id == patient_id, TreatmentSession.voided_at.is_(None),
            sa.true() if here is None else here)


def _received_batches(patient_id: int, here=None) -> list:
    """The batches the patient's standing sessions used, with the volume received and the last time."""
    return db.session.execute(
        sa.select(Batch.id, Batch.code, Batch.status, Batch.beyond_use_at, Formula.code.label("formula_code"),
                  Formula.version.label("formula_version"), Formula.name.label("formula_name"),
                  sa.func.sum(SessionUse.volume_ml).label("volume_ml"),
                  sa.func.max(TreatmentSession.performed_at).label("last_performed_at"))
        .join(SessionUse, SessionUse.batch_id == Batch.id)
        .join(TreatmentSession, TreatmentSession.id == SessionUse.session_id)
        .join(Formula, Formula.id == Batch.formula_id)
        .where(*_standing_uses(patient_id, here))
        .group_by(Batch.id, Batch.code, Batch.status, Batch.beyond_use_at, Formula.code, Formula.version,
                  Formula.name)
        .order_by(Batch.code)).all()


def _received_lots(patient_id: int, here=None) -> list[dict]:
    """The lots of those batches: [{"lot": row, "batch_codes": [...]}, ...]."""
    received = (sa.select(SessionUse.batch_id).join(TreatmentSession, TreatmentSession.id == SessionUse.session_id)
                .where(*_standing_uses(patient_id, here)))
    rows = db.session.execute(
        sa.select(Lot.id, Lot.code, Lot.status, Lot.expires_on, Lot.supplier, Lot.supplier_lot_number,
                  Ingredient.name.label("ingredient_name"), Batch.code.label("batch_code"))
        .select_from(BatchComponent)
        .join(Lot, Lot.id == BatchComponent.lot_id)
        .join(Ingredient, Ingredient.id == Lot.ingredient_id)
        .join(Batch, Batch.id == BatchComponent.batch_id)
        .where(BatchComponent.batch_id.in_(received))
        .distinct().order_by(Ingredient.name, Lot.code, Batch.code)).all()
    lots: dict[int, dict] = {}
    for row in rows:
        lots.setdefault(row.id, {"lot": row, "batch_codes": []})["batch_codes"].append(row.batch_code)
    return list(lots.values())


# --- treatment sessions -----------------------------------------------------------------------------


@dataclass
class SessionFilters:
    """Sessions of a patient, of a practitioner, performed within clinic days."""

    patient_id: int | None = None
    practitioner_id: int | None = None
    first_day: date | None = None
    last_day: date | None = None
    errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_args(cls, args) -> "SessionFilters":
        """The session list's query string (`from`, `to`, `practitioner_id`); a malformed day is named in errors."""
        days, day_errors = day_args(args, "from", "to")
        errors = {name: f"{'From' if name == 'from' else 'To'}: {message}" for name, message in day_errors.items()}
        return cls(practitioner_id=args.get("practitioner_id", type=record_id), first_day=days["from"],
                   last_day=days["to"], errors=errors)


def session_filters(query, filters: SessionFilters, *, site_ids: SiteIds):
    """`query` (of sessions) under the filters, at the sites in scope, newest first."""
    return sessions_within(query, filters, site_ids=site_ids).order_by(TreatmentSession.performed_at.desc(),
                                                    TreatmentSession.id.desc())


def sessions_within(query, filters: SessionFilters, *, site_ids: SiteIds):
    """`query` (of sessions, or of rows joined to them) limited to the filters and to the sessions performed
    at the sites in scope, in its own order."""
    query = query.where(at_sites(TreatmentSession.site_id, site_ids))
    if filters.patient_id:
        query = query.where(TreatmentSession.patient_id == filters.patient_id)
    if filters.practitioner_id:
        query = query.where(TreatmentSession.practitioner_id == filters.practitioner_id)
    if filters.first_day:
        query = query.where(TreatmentSession.performed_at >= start_of_clinic_day(filters.first_day))
    if filters.last_day:
        query = query.where(TreatmentSession.performed_at < end_of_clinic_day(filters.last_day))
    return query


def session_list_rows(filters: SessionFilters, *, site_ids: SiteIds):
    """(rows, keys) of the session list page: each session with its patient, practitioner, events and volume.

    The keys find a page on the sessions table alone (same filters, no joins): deep pages stay fast.
    """
    event_count = (sa.select(sa.func.count(AdverseEvent.id)).where(AdverseEvent.session_id == TreatmentSession.id)
                   .correlate(TreatmentSession).scalar_subquery())
    volume = (sa.select(sa.func.sum(SessionUse.volume_ml)).where(SessionUse.session_id == TreatmentSession.id)
              .correlate(TreatmentSession).scalar_subquery())
    rows = session_filters(
        sa.select(TreatmentSession, Patient.chart_number,
                  (Patient.name if may_identify() else sa.null()).label("patient_name"),
                  User.display_name.label("practitioner"), event_count.label("event_count"),
                  volume.label("volume_ml"))
        .join(Patient, Patient.id == TreatmentSession.patient_id)
        .join(User, User.id == TreatmentSession.practitioner_id), filters, site_ids=site_ids)
    return rows, session_filters(sa.select(TreatmentSession.id), filters, site_ids=site_ids)


def uses_by_treatment(treatment_ids) -> dict[int, list]:
    """Each session's uses with batch, formula and vial, in one statement: {session id: [row, ...]}.

    `treatment_ids` is a list of ids or a select of them.
    """
    rows = db.session.execute(
        sa.select(SessionUse, Batch.code.label("batch_code"), Batch.status.label("batch_status"),
                  Formula.code.label("formula_code"), Formula.version.label("formula_version"),
                  Formula.name.label("formula_name"), Vial.code.label("vial_code"))
        .join(Batch, Batch.id == SessionUse.batch_id).join(Formula, Formula.id == Batch.formula_id)
        .outerjoin(Vial, Vial.id == SessionUse.vial_id)
        .where(SessionUse.session_id.in_(treatment_ids)).order_by(SessionUse.id)).all()
    grouped = defaultdict(list)
    for row in rows:
        grouped[row.SessionUse.session_id].append(row)
    return grouped


def practitioners() -> list:
    """Active accounts whose role may record sessions: (id, display_name, role)."""
    return db.session.execute(
        sa.select(User.id, User.display_name, User.role)
        .where(User.active.is_(True), User.role.in_(PERMISSIONS["treatments.write"]))
        .order_by(User.display_name)).all()


def session_practitioners() -> list:
    """(id, display_name) of every practitioner and pharmacist, active or not: who may have recorded a session."""
    return db.session.execute(
        sa.select(User.id, User.display_name).where(User.role.in_(("practitioner", "pharmacist")))
        .order_by(User.display_name)).all()


@dataclass
class SessionRecord:
    """A session's page: the session, its patient and people, uses, adverse events, corrections."""

    record: TreatmentSession
    patient: Patient
    practitioner: str
    voided_by: str | None
    uses: list
    events: list
    returned: set  # ids of the uses a void gave back to their batch
    corrected_by: int | None  # the session that replaced this one, recorded on the right patient


def session_record(treatment_id: int) -> SessionRecord | None:
    voider = aliased(User)
    found = db.session.execute(
        sa.select(TreatmentSession, Patient, User.display_name.label("practitioner"),
                  voider.display_name.label("voided_by"))
        .join(Patient, Patient.id == TreatmentSession.patient_id)
        .join(User, User.id == TreatmentSession.practitioner_id)
        .outerjoin(voider, voider.id == TreatmentSession.voided_by_id)
        .where(TreatmentSession.id == treatment_id)).first()
    if found is None:
        return None
    record = found.TreatmentSession
    recorder = aliased(User)
    events = db.session.execute(
        sa.select(AdverseEvent, recorder.display_name.label("recorded_by"))
        .join(recorder, recorder.id == AdverseEvent.recorded_by_id)
        .where(AdverseEvent.session_id == record.id)
        .order_by(AdverseEvent.recorded_at, AdverseEvent.id)).all()
    uses = uses_by_treatment([record.id])[record.id]
    # What the ledger says a void gave back: a use without a return kept its volume taken.
    returned = set(db.session.scalars(sa.select(StockMovement.reference_id).where(
        StockMovement.reference_type == "session_use", StockMovement.kind == "return",
        StockMovement.reference_id.in_([row.SessionUse.id for row in uses]))))
    corrected_by = db.session.scalar(sa.select(TreatmentSession.id).where(
        TreatmentSession.corrects_session_id == record.id))
    return SessionRecord(record=record, patient=found.Patient, practitioner=found.practitioner,
                         voided_by=found.voided_by, uses=uses, events=events, returned=returned,
                         corrected_by=corrected_by)


# --- adverse events -----------------------------------------------------------------------------------


@dataclass
class AdverseEventFilters:
    session_id: int | None = None
    patient_id: int | None = None
    type: str | None = None
    severity: str | None = None


def adverse_event_list_query(filters: AdverseEventFilters, *, site_ids: SiteIds):
    """Adverse events after sessions performed at the sites in scope, newest first, each with its session loaded
    (for the patient id)."""
    query = (sa.select(AdverseEvent).join(AdverseEvent.treatment_session)
             .where(at_sites(TreatmentSession.site_id, site_ids))
             .options(contains_eager(AdverseEvent.treatment_session)))
    for column, value in ((AdverseEvent.session_id, filters.session_id),
                          (TreatmentSession.patient_id, filters.patient_id),
                          (AdverseEvent.type, filters.type), (AdverseEvent.severity, filters.severity)):
        if value is not None:
            query = query.where(column == value)
    return query.order_by(AdverseEvent.recorded_at.desc(), AdverseEvent.id.desc())
