"""API: the audit trail, read-only, newest first."""

import sqlalchemy as sa
from flask import request
from marshmallow import EXCLUDE

from ..models import AuditEvent
from ..privacy import audit_events_shown, may_read_patients, note_access
from .schemas import AuditEventQuerySchema, AuditEventSchema
from .views import load, paginated, route


@route("/audit-events", permission="audit.read", summary="List audit events, newest first",
       response=AuditEventSchema, many=True, query=AuditEventQuerySchema, errors=(422,))
def audit_event_list():
    filters = load(AuditEventQuerySchema, request.args.to_dict(), unknown=EXCLUDE)
    query = sa.select(AuditEvent).order_by(AuditEvent.id.desc())
    if "entity_type" in filters:
        query = query.where(AuditEvent.entity_type == filters["entity_type"])
    if "entity_id" in filters:
        query = query.where(AuditEvent.entity_id == filters["entity_id"])
    if "action" in filters:
        query = query.where(AuditEvent.action.startswith(filters["action"], autoescape=True))
    if may_read_patients():  # patient rows carry snapshots of names, birth dates and contacts (rule 10.1.10)
        note_access("audit.view", target_type="audit")
    return paginated(audit_events_shown(query), AuditEventSchema)
