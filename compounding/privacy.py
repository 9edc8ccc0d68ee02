"""Need-to-know (DESIGN 10.1 rule 10): who may see who a patient is, and one access row a request.

A view that shows or exports patient data calls `note_access` once it has found its record;
after the response is made, the request writes one row to the patient access log. Rows are
logged per request, never per patient shown, so a list of a thousand patients costs one insert.
"""

from flask import Flask, g, request
from flask_login import current_user

from .services import access_log

IDENTIFY = "patients.identify"
# The JSON keys of a patient's identity, left null for a role without IDENTIFY.
IDENTITY_KEYS = ("name", "birth_date", "phone", "email")
# A page that shows data, including a form shown again with its errors, is logged; a refusal is not.
_NOT_SHOWN = {401, 403, 404}


def init_app(app: Flask) -> None:
    app.after_request(_write_access_row)


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


def _write_access_row(response):
    noted = g.pop("patient_access", None)
    if noted is None or response.status_code in _NOT_SHOWN or response.status_code >= 500:
        return response
    if current_user.is_authenticated:
        access_log.record(current_user, **noted, detail=request.full_path.rstrip("?"))
    return response
