"""API: patients, treatment sessions (vials injected, refused with reasons when unusable), adverse events."""

import sqlalchemy as sa
from flask import request
from flask_login import current_user
from sqlalchemy.orm import joinedload, selectinload

from ..extensions import db
from ..models import AdverseEvent, Batch, Patient, SessionUse, TreatmentSession, User
from ..privacy import note_access
from ..queries.treatments import (
    AdverseEventFilters,
    PatientFilters,
    SessionFilters,
    adverse_event_list_query,
    patient_search,
    patients_in_scope,
    session_filters,
)
from ..services import treatments, voids
from ..services.errors import InvalidInput
from ..site_scope import acting_site_id, ensure_visible
from .schemas.treatments import (
    AdverseEventQuerySchema,
    AdverseEventSchema,
    PatientQuerySchema,
    PatientSchema,
    PatientUpdateSchema,
    TreatmentSessionCorrectSchema,
    TreatmentSessionCreateSchema,
    TreatmentSessionQuerySchema,
    TreatmentSessionSchema,
    TreatmentSessionVoidSchema,
)
from .scope import list_scope
from .views import answer, answer_one, json_body, load, paginated, route

# Everything TreatmentSessionSchema reads (the relationships are lazy="raise"): patient and
# practitioner in the session's own statement, the uses with batch and formula in one more,
# so a page of sessions costs the same number of statements whatever its length.
_SESSION_LOADED = (
    joinedload(TreatmentSession.patient),
    joinedload(TreatmentSession.practitioner),
    selectinload(TreatmentSession.uses).joinedload(SessionUse.batch).joinedload(Batch.formula),
    selectinload(TreatmentSession.uses).joinedload(SessionUse.vial),
)


# --- patients -------------------------------------------------------------------------------------


@route("/patients", permission="patients.read", summary="List patients, searched by chart number or name",
       response=PatientSchema, many=True, query=PatientQuerySchema, errors=(422,))
def patient_list():
    filters = PatientFilters(**load(PatientQuerySchema, request.args.to_dict()))
    query = (sa.select(Patient).where(patient_search(filters.q), patients_in_scope(filters.q, list_scope()))
             .order_by(Patient.chart_number))
    note_access("patient.list", target_type="patients")
    return paginated(query, PatientSchema)


@route("/patients", "POST", permission="patients.write", summary="Register a patient by chart number",
       body=PatientSchema, response=PatientSchema, status=201, errors=(409,))
def patient_create():
    data = load(PatientSchema, json_body())
    confirm_duplicate = data.pop("confirm_duplicate")
    patient = treatments.create_patient(current_user, data, confirm_duplicate=confirm_duplicate)
    note_access("patient.create", patient_id=patient.id)
    return answer(PatientSchema().dump(patient), 201)


@route("/patients/<int:patient_id>", permission="patients.read", summary="One patient", response=PatientSchema)
def patient_detail(patient_id: int):
    patient = db.get_or_404(Patient, patient_id)
    note_access("patient.view", patient_id=patient.id)
    return answer(PatientSchema().dump(patient), 200)


@route("/patients/<int:patient_id>", "PATCH", permission="patients.write",
       summary="Change a patient's details (fields left out keep their values)",
       body=PatientUpdateSchema, response=PatientSchema, errors=(409,))
def patient_update(patient_id: int):
    data = load(PatientUpdateSchema, json_body())
    patient = treatments.update_patient(current_user, patient_id, data)
    note_access("patient.edit", patient_id=patient.id)
    return answer(PatientSchema().dump(patient), 200)


# --- treatment sessions ---------------------------------------------------------------------------


def _dump_session(row) -> dict:
    found = row.TreatmentSession
    note_access("session.view", patient_id=found.patient_id, target_type="treatment_session", target_id=found.id)
    return TreatmentSessionSchema().dump(found)


def _session_answer(session_id: int, status: int = 200):
    return answer_one(sa.select(TreatmentSession).where(TreatmentSession.id == session_id).options(*_SESSION_LOADED)
                      .execution_options(populate_existing=True), _dump_session, status)


@route("/treatment-sessions", permission="patients.read",
       summary="List treatment sessions, newest first, by patient, practitioner and clinic days",
       response=TreatmentSessionSchema, many=True, query=TreatmentSessionQuerySchema, errors=(422,))
def treatment_session_list():
    filters = SessionFilters(**load(TreatmentSessionQuerySchema, request.args.to_dict()))
    query = session_filters(sa.select(TreatmentSession), filters, site_ids=list_scope()).options(*_SESSION_LOADED)
    note_access("session.list", target_type="treatment_sessions")  # filters, with any patient, in the detail
    return paginated(query, TreatmentSessionSchema)


@route("/treatment-sessions", "POST", permission="treatments.write",
       summary="Record a treatment session, each use from a vial (vial_code, or batch_code: the answer names the "
               "vial); 409 with details.reasons by code when a batch or vial may not be injected",
       body=TreatmentSessionCreateSchema, response=TreatmentSessionSchema, status=201, errors=(404, 409))
def treatment_session_create():
    data = load(TreatmentSessionCreateSchema, json_body())
    practitioner = None
    if data["practitioner_id"] is not None:
        practitioner = db.session.get(User, data["practitioner_id"])
        if practitioner is None:
            raise InvalidInput("There is no such account.", field="practitioner_id")
    record = treatments.record_session(
        current_user, patient_id=data["patient_id"], uses=data["uses"], performed_at=data["performed_at"],
        indication=data["indication"], notes=data["notes"], practitioner=practitioner, password=data["password"],
        site_id=data["site_id"] if data["site_id"] is not None else acting_site_id())
    return _session_answer(record.id, 201)


@route("/treatment-sessions/<int:session_id>", permission="patients.read", summary="One treatment session",
       response=TreatmentSessionSchema)
def treatment_session_detail(session_id: int):
    ensure_visible("session", session_id)
    return _session_answer(session_id)


@route("/treatment-sessions/<int:session_id>/void", "POST", permission="treatments.write",
       summary="Void a session recorded by mistake, with a reason code: it stays in traces and recalls, flagged; "
               "volume goes back only to an open multiple-dose vial of a batch still released; a pharmacist "
               "signs in an open recall's scope or after an adverse event",
       body=TreatmentSessionVoidSchema, response=TreatmentSessionSchema, errors=(403, 404, 409))
def treatment_session_void(session_id: int):
    data = load(TreatmentSessionVoidSchema, json_body())
    voids.void_session(current_user, session_id, **data)
    return _session_answer(session_id)


@route("/treatment-sessions/<int:session_id>/correct-patient", "POST", permission="treatments.write",
       summary="Move a session recorded on the wrong patient to the right one (a pharmacist signs): the old one "
               "is voided wrong_patient, the new one answered",
       body=TreatmentSessionCorrectSchema, response=TreatmentSessionSchema, status=201, errors=(403, 404, 409))
def treatment_session_correct(session_id: int):
    data = load(TreatmentSessionCorrectSchema, json_body())
    corrected = voids.correct_patient(current_user, session_id, **data)
    return _session_answer(corrected.id, 201)


# --- adverse events -------------------------------------------------------------------------------


def _dump_event(row) -> dict:
    event = row.AdverseEvent
    note_access("adverse_event.view", patient_id=event.treatment_session.patient_id, target_type="adverse_event",
                target_id=event.id)
    return AdverseEventSchema().dump(event)


def _event_answer(event_id: int, status: int = 200):
    return answer_one(sa.select(AdverseEvent).where(AdverseEvent.id == event_id)
                      .options(joinedload(AdverseEvent.treatment_session)), _dump_event, status)


@route("/adverse-events", permission="patients.read", summary="List adverse events, newest first",
       response=AdverseEventSchema, many=True, query=AdverseEventQuerySchema, errors=(422,))
def adverse_event_list():
    filters = AdverseEventFilters(**load(AdverseEventQuerySchema, request.args.to_dict()))
    note_access("adverse_event.list", target_type="adverse_events")
    return paginated(adverse_event_list_query(filters, site_ids=list_scope()), AdverseEventSchema)


@route("/adverse-events", "POST", permission="adverse_events.write",
       summary="Record an adverse event after a session (it feeds the quality signals)",
       body=AdverseEventSchema, response=AdverseEventSchema, status=201, errors=(409,))
def adverse_event_create():
    data = load(AdverseEventSchema, json_body())
    event = treatments.record_adverse_event(current_user, **data)
    return _event_answer(event.id, 201)


@route("/adverse-events/<int:event_id>", permission="patients.read", summary="One adverse event",
       response=AdverseEventSchema)
def adverse_event_detail(event_id: int):
    ensure_visible("session", db.session.scalar(sa.select(AdverseEvent.session_id).where(AdverseEvent.id == event_id)))
    return _event_answer(event_id)
