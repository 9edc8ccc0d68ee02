"""Traceability and quality signals: a handful of set-based queries, never one per row.

Upstream: batch -> the lots it consumed. Downstream: lot -> batches -> sessions -> patients.
Voided sessions are left out (their volume went back to the batch).
"""

from collections import defaultdict
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
    """Batches and lots whose adverse events call for quarantine or recall, worst first.

    Bounded by the adverse events, not by the uses (events are few, uses are millions): the
    events and the batches and lots they touch are read first, then sessions are counted only
    for the batches and lots that can be flagged (a severe event, or QUALITY_MIN_EVENTS
    events). Six statements whatever the size of the data.
    """
    events = db.session.execute(
        sa.select(SessionUse.batch_id, AdverseEvent.id, AdverseEvent.type, AdverseEvent.severity)
        .select_from(AdverseEvent)
        .join(TreatmentSession, TreatmentSession.id == AdverseEvent.session_id)
        .join(SessionUse, SessionUse.session_id == AdverseEvent.session_id)
        .where(TreatmentSession.voided_at.is_(None))).all()
    by_batch: dict[int, set[int]] = defaultdict(set)
    severe: set[int] = set()
    for batch_id, event_id, kind, severity in events:
        by_batch[batch_id].add(event_id)
        if kind in SEVERE_EVENT_TYPES or severity == "severe":
            severe.add(event_id)
    by_lot: dict[int, set[int]] = defaultdict(set)
    if by_batch:
        for batch_id, lot_id in db.session.execute(sa.select(BatchComponent.batch_id, BatchComponent.lot_id)
                                                   .where(BatchComponent.batch_id.in_(list(by_batch)))):
            by_lot[lot_id] |= by_batch[batch_id]
    minimum = current_app.config["QUALITY_MIN_EVENTS"]
    # Sessions voided are few: leaving them out by id spares a lookup of every use's session.
    live = SessionUse.session_id.not_in(sa.select(TreatmentSession.id).where(TreatmentSession.voided_at.is_not(None)))
    sessions = sa.func.count(sa.distinct(SessionUse.session_id))
    signals = []
    for kind, model, groups in (("batch", Batch, by_batch), ("lot", Lot, by_lot)):
        candidates = [key for key, ids in groups.items() if ids & severe or len(ids) >= minimum]
        if not candidates:
            continue
        if kind == "batch":
            counted = sa.select(SessionUse.batch_id, sessions).where(SessionUse.batch_id.in_(candidates), live)
        else:
            counted = (sa.select(BatchComponent.lot_id, sessions)
                       .join(SessionUse, SessionUse.batch_id == BatchComponent.batch_id)
                       .where(BatchComponent.lot_id.in_(candidates), live))
        counts = dict(db.session.execute(counted.group_by(counted.selected_columns[0])).all())
        figures = {key: (len(groups[key]), len(groups[key] & severe), counts.get(key, 0)) for key in candidates}
        flagged = [key for key, (n, n_severe, n_sessions) in figures.items() if _is_flagged(n, n_severe, n_sessions)]
        if flagged:
            signals += [Signal(kind, row.id, row.code, row.status, *figures[row.id]) for row in db.session.execute(
                sa.select(model.id, model.code, model.status).where(model.id.in_(flagged)))]
    signals.sort(key=lambda s: (-s.severe, -s.rate, s.code))
    return signals[:limit]


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
