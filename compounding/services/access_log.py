"""The patient access log: who saw or exported patient data, and what."""

import sqlalchemy as sa

from ..extensions import db
from ..models import PatientAccess, User
from .clock import utcnow
from .transaction import transactional

DETAIL_LIMIT = 500


@transactional
def record(actor: User, action: str, *, patient_id: int | None = None, target_type: str = "",
           target_id: int | None = None, detail: str = "") -> PatientAccess:
    """One row for one request that showed or exported patient data (its own transaction).

    Written after the page or workbook is made, whatever it showed: the log answers "who
    looked", so it is never skipped for an empty list.
    """
    row = PatientAccess(occurred_at=utcnow(), user_id=actor.id, user_name=actor.display_name, role=actor.role,
                        action=action, patient_id=patient_id, target_type=target_type, target_id=target_id,
                        detail=detail[:DETAIL_LIMIT])
    db.session.add(row)
    return row


def access_query(*, user_id: int | None = None, start=None, end=None):
    """Access rows newest first, by user and within [start, end) (UTC datetimes); for page and workbook."""
    query = sa.select(PatientAccess)
    if user_id:
        query = query.where(PatientAccess.user_id == user_id)
    if start is not None:
        query = query.where(PatientAccess.occurred_at >= start)
    if end is not None:
        query = query.where(PatientAccess.occurred_at < end)
    return query.order_by(PatientAccess.occurred_at.desc(), PatientAccess.id.desc())
