"""The audit trail: a record's history, and the trail's list with its filters (page and API)."""

from dataclasses import dataclass
from datetime import date

import sqlalchemy as sa

from ..extensions import db
from ..models import AuditEvent, User
from ..services.bounds import read_day
from ..services.clock import end_of_clinic_day, start_of_clinic_day


def audit_history(entity_type: str, entity_id: int, limit: int = 100) -> list[AuditEvent]:
    """A record's audit rows, newest first."""
    return db.session.scalars(
        sa.select(AuditEvent).where(AuditEvent.entity_type == entity_type, AuditEvent.entity_id == entity_id)
        .order_by(AuditEvent.id.desc()).limit(limit)).all()


def recent_audit_events(limit: int) -> list[AuditEvent]:
    return db.session.scalars(sa.select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)).all()


@dataclass
class AuditFilters:
    """Each filter applies on its own; None is no filter."""

    entity_type: str | None = None
    entity_id: int | None = None
    action: str | None = None  # an action or its prefix, e.g. "user."
    user: str | None = None  # a username (the page only)
    start: date | None = None
    end: date | None = None

    @classmethod
    def from_form(cls, form) -> "AuditFilters":
        """The audit page's validated filter form: a field with an error is left out, and shows its error."""

        def text(name: str) -> str | None:
            field = getattr(form, name)
            return field.data.strip() if field.data and not field.errors else None

        days = {}
        for name in ("start", "end"):
            field = getattr(form, name)
            try:
                days[name] = read_day(field.data) if field.data else None
            except ValueError as exc:
                field.errors, days[name] = [str(exc)], None
        entity_id, user = text("entity_id"), text("user")
        return cls(entity_type=text("entity_type"), entity_id=int(entity_id) if entity_id else None,
                   action=text("action"), user=user.lower() if user is not None else None, **days)


def audit_list_query(filters: AuditFilters):
    """Audit events, newest first, under the filters (before privacy.audit_events_shown)."""
    query = sa.select(AuditEvent).order_by(AuditEvent.id.desc())
    if filters.entity_type is not None:
        query = query.where(AuditEvent.entity_type == filters.entity_type)
    if filters.entity_id is not None:
        query = query.where(AuditEvent.entity_id == filters.entity_id)
    if filters.action is not None:
        query = query.where(AuditEvent.action.startswith(filters.action, autoescape=True))
    if filters.user is not None:
        query = query.join(User, User.id == AuditEvent.actor_id).where(User.username == filters.user)
    if filters.start is not None:
        query = query.where(AuditEvent.occurred_at >= start_of_clinic_day(filters.start))
    if filters.end is not None:
        query = query.where(AuditEvent.occurred_at < end_of_clinic_day(filters.end))
    return query
