"""Traceability and quality signals: a handful of set-based queries, never one per row.

Upstream: batch -> the lots it consumed. Downstream: lot -> batches -> sessions -> patients.
A correction never shrinks a trace: a voided session stays in every
scope, flagged, with its patient and its adverse events; only the volume injected in all
leaves it out (a voided use was not injected, or moved to the corrected session).

A lot that fed a thousand batches reaches tens of thousands of sessions, so a trace answers
its counts and totals over the whole scope and one page of each list; the workbook export
asks for every row (`per_page=None`).
"""

import math
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

# Rows of each list on one page of a trace or a recall's scope (a trace shows more than a list page).
TRACE_PER_PAGE = 100
# The most rows of each list one page of a trace may ask for (the API's per_page).
TRACE_PER_PAGE_MAX = 500
CHUNK = 2_000  # rows read at a time when every row is asked for


class Rows:
    """Every row of a query, read from the database a chunk at a time as it is iterated.

    What an export or a printed report walks through once: memory holds a chunk, not the
    tens of thousands of rows of a large scope. Each iteration runs the query afresh.
    """

    def __init__(self, query):
        self.query = query

    def __iter__(self):
        with db.session.execute(self.query.execution_options(yield_per=CHUNK)) as result:
            yield from result


@dataclass
class Trace:
    lot: Lot | None = None
    batch: Batch | None = None
    lots: list = field(default_factory=list)  # upstream rows, all of them (a batch has a few)
    # This page of each downstream list; with per_page=None, every row as Rows (iterate once, in order).
    batches: list | Rows = field(default_factory=list)
    sessions: list | Rows = field(default_factory=list)
    patients: list | Rows = field(default_factory=list)
    counts: dict = field(default_factory=dict)  # over the whole scope: batches, sessions, patients (lots)
    voided_sessions: int = 0  # of counts["sessions"], those voided (they stay in the scope, flagged)
    total_volume_ml: Decimal = Decimal("0")  # injected in all, over the whole scope
    page: int = 1
    per_page: int | None = TRACE_PER_PAGE  # None: every row on one page

    @property
    def pages(self) -> int:
        """Pages of the longest list (the lists are paged together)."""
        if self.per_page is None:
            return 1
        longest = max(self.counts.get(name, 0) for name in ("batches", "sessions", "patients"))
        return max(1, math.ceil(longest / self.per_page))

    @property
    def complete(self) -> bool:
        """Whether this page holds every row of every list."""
        return self.page == 1 and self.pages == 1


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
    ).join(Formula, Formula.id == Batch.formula_id).where(Batch.id.in_(batch_ids)).order_by(
        Batch.compounded_at, Batch.id)


def _session_rows(uses_clause):
    """One row per session, voided ones too (flagged): its patient, the volume of these batches, their codes."""
    if db.session.get_bind().dialect.name == "sqlite":
        codes = sa.func.group_concat(sa.distinct(Batch.code))
    else:
        codes = sa.func.string_agg(sa.distinct(Batch.code), sa.literal_column("', '"))
    return (
        sa.select(TreatmentSession.id, TreatmentSession.performed_at, TreatmentSession.patient_id,
                  Patient.chart_number, sa.func.sum(SessionUse.volume_ml).label("volume_ml"),
                  codes.label("batch_codes"), TreatmentSession.voided_at, TreatmentSession.void_code)
        .join(TreatmentSession, TreatmentSession.id == SessionUse.session_id)
        .join(Patient, Patient.id == TreatmentSession.patient_id)
        .join(Batch, Batch.id == SessionUse.batch_id)
        .where(uses_clause)
        .group_by(TreatmentSession.id, TreatmentSession.performed_at, TreatmentSession.patient_id,
                  Patient.chart_number, TreatmentSession.voided_at, TreatmentSession.void_code)
        .order_by(TreatmentSession.performed_at, TreatmentSession.id)
    )


def _patient_rows(uses_clause):
    """One row per patient reached: contact details, sessions (voided ones too), volume received.

    The volume counts the sessions that stand; `voided_sessions` says how many of the
    patient's sessions were voided (all of them: a patient named by mistake, still listed).
    """
    voided = TreatmentSession.voided_at.is_not(None)
    return (
        sa.select(Patient.id, Patient.chart_number, Patient.name, Patient.phone, Patient.email,
                  sa.func.count(sa.distinct(TreatmentSession.id)).label("sessions"),
                  sa.func.coalesce(sa.func.sum(sa.case((voided, 0), else_=SessionUse.volume_ml)), 0)
                  .label("volume_ml"),
                  sa.func.min(TreatmentSession.performed_at).label("first_at"),
                  sa.func.max(TreatmentSession.performed_at).label("last_at"),
                  sa.func.count(sa.distinct(sa.case((voided, TreatmentSession.id)))).label("voided_sessions"))
        .join(TreatmentSession, TreatmentSession.patient_id == Patient.id)
        .join(SessionUse, SessionUse.session_id == TreatmentSession.id)
        .where(uses_clause)
        .group_by(Patient.id, Patient.chart_number, Patient.name, Patient.phone, Patient.email)
        .order_by(Patient.chart_number, Patient.id)
    )


def _page_of_ids(query, page: int, per_page: int):
    """(ids on the page, rows in all) in one statement: the total rides along as a window count.

    A page past the end has no row to carry it, so only then is it counted apart.
    """
    rows = db.session.execute(query.add_columns(sa.func.count().over())
                              .limit(per_page).offset((page - 1) * per_page)).all()
    if rows:
        return [row[0] for row in rows], rows[0][1]
    return [], db.session.scalar(sa.select(sa.func.count()).select_from(query.order_by(None).subquery()))


def _scope_totals(trace: Trace, batch_ids, used) -> int:
    """Set the voided sessions and the volume injected; answer the batches: one statement.

    Voided sessions are few, so they are counted, and left out of the total volume, by id:
    the volume is read off the uses' index alone.
    """
    voided = sa.select(TreatmentSession.id).where(TreatmentSession.voided_at.is_not(None))
    batch_count = sa.select(sa.func.count(Batch.id)).where(Batch.id.in_(batch_ids)).scalar_subquery()
    volume = (sa.select(sa.func.coalesce(sa.func.sum(SessionUse.volume_ml), 0))
              .where(SessionUse.batch_id.in_(batch_ids), SessionUse.session_id.not_in(voided)).scalar_subquery())
    voided_count = (sa.select(sa.func.count(TreatmentSession.id))
                    .where(TreatmentSession.voided_at.is_not(None), TreatmentSession.id.in_(used)).scalar_subquery())
    batches, total_volume, trace.voided_sessions = db.session.execute(
        sa.select(batch_count, volume, voided_count)).one()
    trace.total_volume_ml = Decimal(total_volume)
    return batches


def _every_row(trace: Trace, batch_ids, standing, batch_rows) -> tuple[int, int]:
    """Set every row of each list, read as iterated; answer the sessions and patients in all."""
    sessions, patients = db.session.execute(sa.select(
        sa.func.count(), sa.func.count(sa.distinct(TreatmentSession.patient_id))).where(*standing)).one()
    trace.batches = Rows(batch_rows)
    trace.sessions = Rows(_session_rows(SessionUse.batch_id.in_(batch_ids)))
    trace.patients = Rows(_patient_rows(SessionUse.batch_id.in_(batch_ids)))
    return sessions, patients


def _one_page(trace: Trace, member, standing, batch_rows) -> tuple[int, int]:
    """Set one page of each list; answer the sessions and patients in all.

    Sessions and patients are paged by id first, each with its total counted in the same
    pass, and only the rows of the page are aggregated.
    """
    page, per_page = trace.page, trace.per_page
    session_ids, sessions = _page_of_ids(
        sa.select(TreatmentSession.id).where(*standing)
        .order_by(TreatmentSession.performed_at, TreatmentSession.id), page, per_page)
    patient_ids, patients = _page_of_ids(
        sa.select(Patient.id).where(Patient.id.in_(sa.select(TreatmentSession.patient_id).where(*standing)))
        .order_by(Patient.chart_number, Patient.id), page, per_page)
    trace.batches = db.session.execute(batch_rows.limit(per_page).offset((page - 1) * per_page)).all()
    # Driven from the page's ids; `member` keeps the planner from walking every use of the scope.
    trace.sessions = db.session.execute(_session_rows(sa.and_(
        SessionUse.session_id.in_(session_ids), member(SessionUse.batch_id)))).all() if session_ids else []
    trace.patients = db.session.execute(_patient_rows(sa.and_(
        TreatmentSession.patient_id.in_(patient_ids), member(SessionUse.batch_id)))).all() if patient_ids else []
    return sessions, patients


def _downstream(trace: Trace, batch_ids, member) -> Trace:
    """Counts and totals over the whole scope, then one page of batches, sessions and patients.

    `batch_ids` selects the traced batches; `member(column)` tests one batch id against them
    row by row. The cost of a page stays a few index walks over the scope, whatever its size.
    """
    used = sa.select(SessionUse.session_id).where(SessionUse.batch_id.in_(batch_ids))
    batches = _scope_totals(trace, batch_ids, used)
    # Every session that used these batches, voided or not: a correction never shrinks a trace.
    standing = (TreatmentSession.id.in_(used),)
    batch_rows = _batch_rows(batch_ids, trace.lot.id if trace.lot else None)
    if trace.per_page is None:
        sessions, patients = _every_row(trace, batch_ids, standing, batch_rows)
    else:
        sessions, patients = _one_page(trace, member, standing, batch_rows)
    trace.counts = {**trace.counts, "batches": batches, "sessions": sessions, "patients": patients}
    return trace


def lot_batch_ids(lot_id: int):
    return sa.select(BatchComponent.batch_id).where(BatchComponent.lot_id == lot_id).distinct()


def _lot_member(lot_id: int):
    return lambda column: sa.exists().where(BatchComponent.lot_id == lot_id, BatchComponent.batch_id == column)


def _batch_member(batch_id: int):
    return lambda column: column == batch_id


def patient_in_scope(patient_id: int, *, lot_id: int | None = None, batch_id: int | None = None,
                     standing_only: bool = False) -> bool:
    """Whether a session of the patient (voided ones too, unless `standing_only`) used the lot or the batch."""
    member = _lot_member(lot_id) if lot_id else _batch_member(batch_id)
    query = (sa.select(SessionUse.id).join(TreatmentSession, TreatmentSession.id == SessionUse.session_id)
             .where(TreatmentSession.patient_id == patient_id, member(SessionUse.batch_id)))
    if standing_only:
        query = query.where(TreatmentSession.voided_at.is_(None))
    return bool(db.session.scalar(sa.select(query.exists())))


def scope_patient_ids(*, lot_id: int | None = None, batch_id: int | None = None):
    """A select of the patients in the scope of a lot or a batch (voided sessions too)."""
    batch_ids = lot_batch_ids(lot_id) if lot_id else [batch_id]
    used = sa.select(SessionUse.session_id).where(SessionUse.batch_id.in_(batch_ids))
    return sa.select(TreatmentSession.patient_id).where(TreatmentSession.id.in_(used)).distinct()


def trace_lot(lot_id: int, page: int = 1, per_page: int | None = TRACE_PER_PAGE) -> Trace:
    """Every batch that used the lot, every session that used those batches, every patient."""
    lot = db.session.scalar(sa.select(Lot).where(Lot.id == lot_id).options(sa.orm.selectinload(Lot.ingredient)))
    if lot is None:
        raise NotFound("There is no such lot.")
    return _downstream(Trace(lot=lot, page=page, per_page=per_page), lot_batch_ids(lot_id), _lot_member(lot_id))


def trace_batch(batch_id: int, page: int = 1, per_page: int | None = TRACE_PER_PAGE) -> Trace:
    """The lots a batch consumed upstream; its sessions and patients downstream."""
    batch = db.session.scalar(sa.select(Batch).where(Batch.id == batch_id)
                              .options(sa.orm.selectinload(Batch.formula)))
    if batch is None:
        raise NotFound("There is no such batch.")
    trace = Trace(batch=batch, page=page, per_page=per_page)
    trace.lots = db.session.execute(
        sa.select(Lot.id, Lot.code, Lot.status, Lot.supplier, Lot.supplier_lot_number, Lot.expires_on,
                  Ingredient.name.label("ingredient_name"), Ingredient.unit,
                  sa.func.sum(BatchComponent.quantity).label("quantity"))
        .join(BatchComponent, BatchComponent.lot_id == Lot.id).join(Ingredient, Ingredient.id == Lot.ingredient_id)
        .where(BatchComponent.batch_id == batch_id)
        .group_by(Lot.id, Lot.code, Lot.status, Lot.supplier, Lot.supplier_lot_number, Lot.expires_on,
                  Ingredient.name, Ingredient.unit)
        .order_by(Ingredient.name, Lot.code)).all()
    trace.counts = {"lots": len(trace.lots)}
    return _downstream(trace, [batch_id], _batch_member(batch_id))


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


def _event_batches():
    """The batches used in a session that had an adverse event (a batch once per event)."""
    return (sa.select(SessionUse.batch_id)
            .select_from(AdverseEvent)
            .join(SessionUse, SessionUse.session_id == AdverseEvent.session_id))


def _events_touched():
    """Event ids by batch and by lot, each lot's batches among them, and the severe event ids: one statement."""
    touched = (_event_batches()
               .add_columns(BatchComponent.lot_id, AdverseEvent.id, AdverseEvent.type, AdverseEvent.severity)
               .outerjoin(BatchComponent, BatchComponent.batch_id == SessionUse.batch_id))
    by_batch: dict[int, set[int]] = defaultdict(set)
    by_lot: dict[int, set[int]] = defaultdict(set)
    lot_batches: dict[int, set[int]] = defaultdict(set)
    severe: set[int] = set()
    for batch_id, lot_id, event_id, kind, severity in db.session.execute(touched):
        by_batch[batch_id].add(event_id)
        if kind in SEVERE_EVENT_TYPES or severity == "severe":
            severe.add(event_id)
        if lot_id is not None:
            by_lot[lot_id].add(event_id)
            lot_batches[lot_id].add(batch_id)
    return by_batch, by_lot, lot_batches, severe


def _session_count():
    return sa.select(sa.func.count(sa.distinct(SessionUse.session_id))).select_from(SessionUse)


def _add_if_flagged(signals: list[Signal], kind: str, events: set[int], severe: set[int], row) -> None:
    figures = (len(events), len(events & severe), row.sessions)
    if _is_flagged(*figures):
        signals.append(Signal(kind, row.id, row.code, row.status, *figures))


def _rank(signal: Signal) -> tuple:
    return (-signal.severe, -signal.rate, signal.code)


def _add_batch_signals(signals: list[Signal], by_batch, severe: set[int]) -> dict[int, int]:
    """Add the flagged batches; answer the sessions of every batch the events touch, counted on the index."""
    batch_sessions = {}
    for row in db.session.execute(
            sa.select(Batch.id, Batch.code, Batch.status,
                      _session_count().where(SessionUse.batch_id == Batch.id).scalar_subquery().label("sessions"))
            .where(Batch.id.in_(_event_batches()))):
        batch_sessions[row.id] = row.sessions
        _add_if_flagged(signals, "batch", by_batch[row.id], severe, row)
    return batch_sessions


def _lot_contenders(by_lot, lot_batches, severe: set[int], batch_sessions: dict[int, int], bar) -> list[int]:
    """The lots that can be flagged and, at their best possible rate, could still rank above `bar`.

    A lot has at least as many sessions as its busiest batch, so its rate is at most its
    events over that batch's sessions: a lot that cannot pass the bar even at that rate is
    not counted. No bar (fewer flagged batches than the limit) lets every flaggable lot in.
    """
    minimum = current_app.config["QUALITY_MIN_EVENTS"]
    contenders = []
    for lot_id, events in by_lot.items():
        n_severe = len(events & severe)
        if not n_severe and len(events) < minimum:
            continue
        busiest = max(batch_sessions.get(batch_id, 0) for batch_id in lot_batches[lot_id])
        best_rate = len(events) / busiest if busiest else float("inf")
        if bar is None or (-n_severe, -best_rate) <= bar:
            contenders.append(lot_id)
    return contenders


def _add_lot_signals(signals: list[Signal], contenders: list[int], by_lot, severe: set[int]) -> None:
    """Count the sessions of the contending lots (every use of every batch made from them) and add the flagged."""
    lot_sessions = (_session_count().join(BatchComponent, BatchComponent.batch_id == SessionUse.batch_id)
                    .where(BatchComponent.lot_id == Lot.id).scalar_subquery().label("sessions"))
    for row in db.session.execute(sa.select(Lot.id, Lot.code, Lot.status, lot_sessions)
                                  .where(Lot.id.in_(contenders))):
        _add_if_flagged(signals, "lot", by_lot[row.id], severe, row)


def quality_signals(limit: int = 50) -> list[Signal]:
    """Batches and lots whose adverse events call for quarantine or recall, worst first.

    Bounded by the adverse events, not by the uses (events are few, uses are millions): the
    events are read with the batches and lots they touch, then the sessions of each of those
    batches are counted on the index. A lot's sessions cost far more (every use of every batch
    made from it), so they are counted only for the lots that can be flagged and could still
    rank among the first `limit`. Three statements whatever the size of the data.

    A voided session keeps counting, with its events: a void must not
    hide a reaction from the signals.
    """
    by_batch, by_lot, lot_batches, severe = _events_touched()
    if not by_batch:
        return []
    signals: list[Signal] = []
    batch_sessions = _add_batch_signals(signals, by_batch, severe)
    signals.sort(key=_rank)
    # The `limit`-th flagged batch sets the bar a lot must be able to reach.
    bar = _rank(signals[limit - 1])[:2] if 0 < limit <= len(signals) else None
    contenders = _lot_contenders(by_lot, lot_batches, severe, batch_sessions, bar)
    if contenders:
        _add_lot_signals(signals, contenders, by_lot, severe)
    signals.sort(key=_rank)
    return signals[:limit]


def adverse_event_counts(kind: str, ids) -> dict[int, tuple[int, int]]:
    """(events, severe) for a few batches or lots, for their pages: one statement (voided sessions count)."""
    if not ids:
        return {}
    severe = sa.func.count(sa.distinct(sa.case((_severe_clause(), AdverseEvent.id))))
    query = (sa.select(SessionUse.batch_id if kind == "batch" else BatchComponent.lot_id,
                       sa.func.count(sa.distinct(AdverseEvent.id)), severe)
             .select_from(SessionUse)
             .join(AdverseEvent, AdverseEvent.session_id == SessionUse.session_id))
    if kind == "batch":
        query = query.where(SessionUse.batch_id.in_(ids)).group_by(SessionUse.batch_id)
    else:
        query = (query.join(BatchComponent, BatchComponent.batch_id == SessionUse.batch_id)
                 .where(BatchComponent.lot_id.in_(ids)).group_by(BatchComponent.lot_id))
    return {row[0]: (row[1], row[2]) for row in db.session.execute(query)}
