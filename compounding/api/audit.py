"""API: the audit trail, read-only, newest first."""

from flask import request
from flask_login import current_user
from marshmallow import EXCLUDE

from ..privacy import audit_events_shown, may_read_patients, note_access
from ..queries.audit import AuditFilters, audit_list_query
from ..services import sites
from .schemas.audit import AuditEventQuerySchema, AuditEventSchema
from .views import load, paginated, route


@route("/audit-events", permission="audit.read", summary="List audit events, newest first",
       response=AuditEventSchema, many=True, query=AuditEventQuerySchema, errors=(403, 422))
def audit_event_list():
    sites.ensure_whole_chain(current_user, "The audit trail")
    filters = AuditFilters(**load(AuditEventQuerySchema, request.args.to_dict(), unknown=EXCLUDE))
    query = audit_list_query(filters)
    if may_read_patients():  # patient rows carry snapshots of names, birth dates and contacts
        note_access("audit.view", target_type="audit")
    return paginated(audit_events_shown(query), AuditEventSchema)
