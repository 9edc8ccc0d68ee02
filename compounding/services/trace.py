"""Traceability and quality signals: a handful of set-based queries, never one per row.

Upstream: batch -> the lots it consumed. Downstream: lot -> batches -> sessions -> patients.
Voided sessions are left out (their volume went back to the batch).
"""

from dataclasses import dataclass, field
from decimal import Decimal

import sqlalchemy as sa
from flask import current_app

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
    TreatmentSession,
)
from ..models.treatment import SEVERE_EVENT_TYPES
from .errors import NotFound


@dataclass
class Trace:
    lot: Lot | None = None
    batch: Batch | None = None
    lots: list = field(default_factory=list)  # upstream rows
    batches: list = field(default_factory=list)
    sessions: list = field(default_factory=list)
    patients: list = field(default_factory=list)

    @property
    def total_volume_ml(self) -> Decimal:
        return sum((p.volume_ml for p in self.patients), Decimal("0"))


def _batch_rows(batch_ids, lot_id: int | None = None):
    """Batches with their formula; `quantity_from_lot` is what `lot_id` gave each (or all lots)."""
    quantity = sa.select(sa.func.sum(BatchComponent.quantity)).where(BatchComponent.batch_id == Batch.id)
    if lot_id is not None:
        quantity = quantity.where(BatchComponent.lot_id == lot_id)
    quantity = quantity.scalar_subquery()
    return sa.select(
        Batch.id, Batch.code, Batch.status, Batch.compounded_at, Batch.beyond_use_at, Batch.total_volume_ml,
        Batch.remaining_volume_ml, Formula.code.label("formula_code"), Formula.version.label("formula_version"),
        Formula.name.label("formula_name"), quantity.label("quantity_from_lot"),
    ).join(Formula, Formula.id == Batch.formula_id).where(Batch.id.in_(batch_ids)).order_by(Batch.compounded_at)


def _session_rows(batch_ids):
    """One row per session: its patient, the volume of these batches it received, their codes."""
    if db.session.get_bind().dialect.name == "sqlite":
        codes = sa.func.group_concat(sa.distinct(Batch.code))
    else:
        codes = sa.func.string_agg(sa.distinct(Batch.code), sa.literal_column("', '"))
    return (
        sa.select(TreatmentSession.id, TreatmentSession.performed_at, TreatmentSession.patient_id,
                  Patient.chart_number, sa.func.sum(SessionUse.volume_ml).label("volume_ml"),
                  codes.label("batch_codes"))
        .join(TreatmentSession, TreatmentSession.id == SessionUse.session_id)
        .join(Patient, Patient.id == TreatmentSession.patient_id)
        .join(Batch, Batch.id == SessionUse.batch_id)
        .where(SessionUse.batch_id.in_(batch_ids), TreatmentSession.voided_at.is_(None))
        .group_by(TreatmentSession.id, TreatmentSession.performed_at, TreatmentSession.patient_id,
                  Patient.chart_number)
        .order_by(TreatmentSession.performed_at)
    )


def _patient_rows(batch_ids):
    """One row per patient reached: contact details, sessions, total volume received."""
    return (
        sa.select(Patient.id, Patient.chart_number, Patient.name, Patient.phone, Patient.email,
                  sa.func.count(sa.distinct(TreatmentSession.id)).label("sessions"),
                  sa.func.sum(SessionUse.volume_ml).label("volume_ml"),
                  sa.func.min(TreatmentSession.performed_at).label("first_at"),
                  sa.func.max(TreatmentSession.performed_at).label("last_at"))
        .join(TreatmentSession, TreatmentSession.patient_id == Patient.id)
        .join(SessionUse, SessionUse.session_id == TreatmentSession.id)
        .where(SessionUse.batch_id.in_(batch_ids), TreatmentSession.voided_at.is_(None))
        .group_by(Patient.id, Patient.chart_number, Patient.name, Patient.phone, Patient.email)
        .order_by(Patient.chart_number)
    )


def _downstream(trace: Trace, batch_ids, lot_id: int | None = None) -> Trace:
    trace.batches = db.session.execute(_batch_rows(batch_ids, lot_id)).all()
    trace.sessions = db.session.execute(_session_rows(batch_ids)).all()
    trace.patients = db.session.execute(_patient_rows(batch_ids)).all()
    return trace


def lot_batch_ids(lot_id: int):
    return sa.select(BatchComponent.batch_id).where(BatchComponent.lot_id == lot_id).distinct()


def trace_lot(lot_id: int) -> Trace:
    """Every batch that used the lot, every session that used those batches, every patient."""
    lot = db.session.scalar(sa.select(Lot).where(Lot.id == lot_id).options(sa.orm.selectinload(Lot.ingredient)))
    if lot is None:
        raise NotFound("There is no such lot.")
    return _downstream(Trace(lot=lot), lot_batch_ids(lot_id), lot_id)


def trace_batch(batch_id: int) -> Trace:
    """The lots a batch consumed upstream; its sessions and patients downstream."""
    batch = db.session.scalar(sa.select(Batch).where(Batch.id == batch_id)
                              .options(sa.orm.selectinload(Batch.formula)))
    if batch is None:
        raise NotFound("There is no such batch.")
    trace = Trace(batch=batch)
    trace.lots = db.session.execute(
        sa.select(Lot.id, Lot.code, Lot.status, Lot.supplier, Lot.supplier_lot_number, Lot.expires_on,
                  Ingredient.name.label("ingredient_name"), Ingredient.unit,
                  sa.func.sum(BatchComponent.quantity).label("quantity"))
        .join(BatchComponent, BatchComponent.lot_id == Lot.id).join(Ingredient, Ingredient.id == Lot.ingredient_id)
        .where(BatchComponent.batch_id == batch_id)
        .group_by(Lot.id, Lot.code, Lot.status, Lot.supplier, Lot.supplier_lot_number, Lot.expires_on,
                  Ingredient.name, Ingredient.unit)
        .order_by(Ingredient.name, Lot.code)).all()
    return _downstream(trace, [batch_id])


# --- quality signals --------------------------------------------------------------------


@dataclass
class Signal:
    kind: str  # "batch" or "lot"
    id: int
    code: str
    status: str
    events: int
    severe: int
    sessions: int

    @property
    def rate(self) -> float:
        return self.events / self.sessions if self.sessions else 0.0


def _is_flagged(events: int, severe: int, sessions: int) -> bool:
    config = current_app.config
    if severe:
        return True
    return events >= config["QUALITY_MIN_EVENTS"] and sessions > 0 and (
        events / sessions > config["QUALITY_EVENT_RATE_THRESHOLD"])


def _severe_clause():
    # A serious reaction type, or any event graded severe, flags at once.
    return sa.or_(AdverseEvent.type.in_(SEVERE_EVENT_TYPES), AdverseEvent.severity == "severe")


def quality_signals(limit: int = 50) -> list[Signal]:
    """Batches and lots whose adverse events call for quarantine or recall, worst first."""
    live_uses = (sa.select(SessionUse.batch_id, SessionUse.session_id)
                 .join(TreatmentSession, TreatmentSession.id == SessionUse.session_id)
                 .where(TreatmentSession.voided_at.is_(None)).subquery())
    event_rows = (sa.select(live_uses.c.batch_id, AdverseEvent.id.label("event_id"),
                            sa.case((_severe_clause(), 1), else_=0).label("severe"))
                  .join(AdverseEvent, AdverseEvent.session_id == live_uses.c.session_id).subquery())
    sessions_per_batch = (sa.select(live_uses.c.batch_id, sa.func.count(sa.distinct(live_uses.c.session_id))
                                    .label("sessions")).group_by(live_uses.c.batch_id).subquery())
    events_per_batch = (sa.select(event_rows.c.batch_id, sa.func.count(sa.distinct(event_rows.c.event_id))
                                  .label("events"), sa.func.sum(event_rows.c.severe).label("severe"))
                        .group_by(event_rows.c.batch_id).subquery())
    signals = [
        Signal("batch", row.id, row.code, row.status, row.events, int(row.severe or 0), row.sessions or 0)
        for row in db.session.execute(
            sa.select(Batch.id, Batch.code, Batch.status, events_per_batch.c.events, events_per_batch.c.severe,
                      sessions_per_batch.c.sessions)
            .join(events_per_batch, events_per_batch.c.batch_id == Batch.id)
            .outerjoin(sessions_per_batch, sessions_per_batch.c.batch_id == Batch.id))
    ]
    lot_events = (sa.select(BatchComponent.lot_id, sa.func.count(sa.distinct(event_rows.c.event_id)).label("events"),
                            sa.func.count(sa.distinct(sa.case((event_rows.c.severe == 1, event_rows.c.event_id))))
                            .label("severe"))
                  .join(event_rows, event_rows.c.batch_id == BatchComponent.batch_id)
                  .group_by(BatchComponent.lot_id).subquery())
    lot_sessions = (sa.select(BatchComponent.lot_id, sa.func.count(sa.distinct(live_uses.c.session_id))
                              .label("sessions"))
                    .join(live_uses, live_uses.c.batch_id == BatchComponent.batch_id)
                    .group_by(BatchComponent.lot_id).subquery())
    signals += [
        Signal("lot", row.id, row.code, row.status, row.events, row.severe or 0, row.sessions or 0)
        for row in db.session.execute(
            sa.select(Lot.id, Lot.code, Lot.status, lot_events.c.events, lot_events.c.severe, lot_sessions.c.sessions)
            .join(lot_events, lot_events.c.lot_id == Lot.id)
            .outerjoin(lot_sessions, lot_sessions.c.lot_id == Lot.id))
    ]
    flagged = [s for s in signals if _is_flagged(s.events, s.severe, s.sessions)]
    flagged.sort(key=lambda s: (-s.severe, -s.rate, s.code))
    return flagged[:limit]


def adverse_event_counts(kind: str, ids) -> dict[int, tuple[int, int]]:
    """(events, severe) for a few batches or lots, for their pages: one statement."""
    if not ids:
        return {}
    severe = sa.func.count(sa.distinct(sa.case((_severe_clause(), AdverseEvent.id))))
    query = (sa.select(SessionUse.batch_id if kind == "batch" else BatchComponent.lot_id,
                       sa.func.count(sa.distinct(AdverseEvent.id)), severe)
             .select_from(SessionUse)
             .join(TreatmentSession, TreatmentSession.id == SessionUse.session_id)
             .join(AdverseEvent, AdverseEvent.session_id == TreatmentSession.id)
             .where(TreatmentSession.voided_at.is_(None)))
    if kind == "batch":
        query = query.where(SessionUse.batch_id.in_(ids)).group_by(SessionUse.batch_id)
    else:
        query = (query.join(BatchComponent, BatchComponent.batch_id == SessionUse.batch_id)
                 .where(BatchComponent.lot_id.in_(ids)).group_by(BatchComponent.lot_id))
    return {row[0]: (row[1], row[2]) for row in db.session.execute(query)}
