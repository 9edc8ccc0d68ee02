"""Need-to-know: who may see patients, one access row a request, no copies kept.

A view that shows or exports patient data calls `note_access` once it has found its record;
after the response is made, the request writes one row to the patient access log. Rows are
logged per request, never per patient shown, so a list of a thousand patients costs one insert.
The same mark, and any route guarded by a patient permission, makes the answer `no-store`:
no shared cache, proxy or browser history keeps a copy.
"""

from flask import Flask, current_app, g, request
from flask_login import current_user

from .models import AuditEvent
from .services import access_log

READ = "patients.read"
IDENTIFY = "patients.identify"
# Routes guarded by these touch patient data, whatever they answer (a refusal included).
PATIENT_PERMISSIONS = frozenset({READ, IDENTIFY, "patients.write", "patients.access_log", "treatments.write",
                                 "adverse_events.write", "recalls.contact", "audit.read", "exports.audit"})
# Audit rows whose values name a patient (chart, name, birth date, contacts): hidden from a role
# without READ, such as an admin reading the history of accounts.
PATIENT_AUDIT_ENTITIES = ("patient", "treatment_session", "adverse_event")
PATIENT_AUDIT_ACTIONS = ("recall.contact",)
# The JSON keys of a patient's identity, left null for a role without IDENTIFY.
IDENTITY_KEYS = ("name", "birth_date", "phone", "email")
# A page that shows data, including a form shown again with its errors, is logged; a refusal is not.
_NOT_SHOWN = {401, 403, 404}


def init_app(app: Flask) -> None:
    app.after_request(_after_patient_data)


def may_read_patients() -> bool:
    """Whether the signed-in user may see patient data at all (an admin may not)."""
    return bool(current_user and current_user.is_authenticated and current_user.can(READ))


def audit_events_shown(query):
    """An audit-event query without the rows about patients, for a user who may not read them."""
    if may_read_patients():
        return query
    return query.where(AuditEvent.entity_type.not_in(PATIENT_AUDIT_ENTITIES),
                       AuditEvent.action.not_in(PATIENT_AUDIT_ACTIONS))


def may_identify() -> bool:
    """Whether the signed-in user may see patients' names, birth dates and contacts."""
    return bool(current_user and current_user.is_authenticated and current_user.can(IDENTIFY))


def withhold_identity(data: dict) -> dict:
    """A dumped patient row with its identity nulled for a user who may not see it."""
    if not may_identify():
        for key in IDENTITY_KEYS:
            if key in data:
                data[key] = None
    return data


def note_access(action: str, *, patient_id: int | None = None, target_type: str = "",
                target_id: int | None = None) -> None:
    """Mark this request as showing patient data: `action` on a patient or a target (lot, recall...)."""
    g.patient_access = {"action": action, "patient_id": patient_id, "target_type": target_type,
                        "target_id": target_id}


def _guarded_by_a_patient_permission() -> bool:
    view = current_app.view_functions.get(request.endpoint or "")
    return getattr(view, "required_permission", None) in PATIENT_PERMISSIONS


def _after_patient_data(response):
    noted = g.pop("patient_access", None)
    if (noted is not None or _guarded_by_a_patient_permission()) and "no-store" not in response.headers.get(
            "Cache-Control", ""):
        response.headers["Cache-Control"] = "no-store"
    if noted is None or response.status_code in _NOT_SHOWN or response.status_code >= 500:
        return response
    if current_user.is_authenticated:
        access_log.record(current_user, **noted, detail=request.full_path.rstrip("?"))
    return response
