"""Traceability: a handful of set-based queries, never one per row (quality signals: services.signals).

Upstream: batch -> the lots it consumed. Downstream: lot -> batches -> vials -> sessions ->
patients. A use recorded before vials had codes names no vial: its session says "pooled, no vial".
A correction never shrinks a trace: a voided session stays in every
scope, flagged, with its patient and its adverse events; only the volume injected in all
leaves it out (a voided use was not injected, or moved to the corrected session).

A lot that fed a thousand batches reaches tens of thousands of sessions, so a trace answers
its counts and totals over the whole scope and one page of each list; the workbook export
asks for every row (`per_page=None`).
"""

import math
from dataclasses import dataclass, field
from decimal import Decimal

import sqlalchemy as sa

from ..extensions import db
from ..models import (
    Batch,
    BatchComponent,
    Formula,
    Lot,
    Patient,
    SessionUse,
    TreatmentSession,
    Vial,
)
from .errors import NotFound

# Rows of each list on one page of a trace or a recall's scope (a trace shows more than a list page).
TRACE_PER_PAGE = 100
# The most rows of each list one page of a trace may ask for (the API's per_page).
TRACE_PER_PAGE_MAX = 500
CHUNK = 2_000  # rows read at a time when every row is asked for
LISTS = ("batches", "vials", "sessions", "patients")  # the lists of a trace, paged together


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
    vials: list | Rows = field(default_factory=list)  # each vial of the batches: where it went
    counts: dict = field(default_factory=dict)  # over the whole scope: batches, vials, sessions, patients (lots)
    voided_sessions: int = 0  # of counts["sessions"], those voided (they stay in the scope, flagged)
    total_volume_ml: Decimal = Decimal("0")  # injected in all, over the whole scope
    page: int = 1
    per_page: int | None = TRACE_PER_PAGE  # None: every row on one page

    @property
    def pages(self) -> int:
        """Pages of the longest list (the lists are paged together)."""
        if self.per_page is None:
            return 1
        longest = max(self.counts.get(name, 0) for name in LISTS)
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


def _codes(column):
    """The distinct values of a column, joined by the database as one text (split_codes reads it back)."""
    if db.session.get_bind().dialect.name == "sqlite":
        return sa.func.group_concat(sa.distinct(column))
    return sa.func.string_agg(sa.distinct(column), sa.literal_column("', '"))


def _pooled():
    """How many of the rows' uses name no vial (recorded before vials had codes)."""
    return sa.func.coalesce(sa.func.sum(sa.case((SessionUse.vial_id.is_(None), 1), else_=0)), 0)


def _session_rows(uses_clause):
    """One row per session, voided ones too (flagged): its patient, the volume of these batches, their codes,
    the vials used (`pooled`: uses that name none)."""
    return (
        sa.select(TreatmentSession.id, TreatmentSession.performed_at, TreatmentSession.patient_id,
                  Patient.chart_number, sa.func.sum(SessionUse.volume_ml).label("volume_ml"),
                  _codes(Batch.code).label("batch_codes"), TreatmentSession.voided_at, TreatmentSession.void_code,
                  _codes(Vial.code).label("vial_codes"), _pooled().label("pooled"))
        .join(TreatmentSession, TreatmentSession.id == SessionUse.session_id)
        .join(Patient, Patient.id == TreatmentSession.patient_id)
        .join(Batch, Batch.id == SessionUse.batch_id)
        .outerjoin(Vial, Vial.id == SessionUse.vial_id)
        .where(uses_clause)
        .group_by(TreatmentSession.id, TreatmentSession.performed_at, TreatmentSession.patient_id,
                  Patient.chart_number, TreatmentSession.voided_at, TreatmentSession.void_code)
        .order_by(TreatmentSession.performed_at, TreatmentSession.id)
    )


def _patient_rows(uses_clause):
    """One row per patient reached: contact details, sessions (voided ones too), volume received.

    The volume counts the sessions that stand; `voided_sessions` says how many of the
    patient's sessions were voided (all of them: a patient named by mistake, still listed);
    `vial_codes` the vials they received from (`pooled`: uses that name none).
    """
    voided = TreatmentSession.voided_at.is_not(None)
    return (
        sa.select(Patient.id, Patient.chart_number, Patient.name, Patient.phone, Patient.email,
                  sa.func.count(sa.distinct(TreatmentSession.id)).label("sessions"),
                  sa.func.coalesce(sa.func.sum(sa.case((voided, 0), else_=SessionUse.volume_ml)), 0)
                  .label("volume_ml"),
                  sa.func.min(TreatmentSession.performed_at).label("first_at"),
                  sa.func.max(TreatmentSession.performed_at).label("last_at"),
                  sa.func.count(sa.distinct(sa.case((voided, TreatmentSession.id)))).label("voided_sessions"),
                  _codes(Vial.code).label("vial_codes"), _pooled().label("pooled"))
        .join(TreatmentSession, TreatmentSession.patient_id == Patient.id)
        .join(SessionUse, SessionUse.session_id == TreatmentSession.id)
        .outerjoin(Vial, Vial.id == SessionUse.vial_id)
        .where(uses_clause)
        .group_by(Patient.id, Patient.chart_number, Patient.name, Patient.phone, Patient.email)
        .order_by(Patient.chart_number, Patient.id)
    )


def _vial_rows(vials_clause):
    """One row per vial: its batch, status, volume left, first puncture, the sessions and patients it went to."""
    return (
        sa.select(Vial.id, Vial.code, Vial.number, Vial.batch_id, Batch.code.label("batch_code"), Vial.status,
                  Vial.dose, Vial.volume_ml, Vial.remaining_ml, Vial.punctured_at, Vial.legacy,
                  sa.func.count(sa.distinct(SessionUse.session_id)).label("sessions"),
                  _codes(sa.cast(SessionUse.session_id, sa.String)).label("session_ids"),
                  _codes(Patient.chart_number).label("chart_numbers"))
        .join(Batch, Batch.id == Vial.batch_id)
        .outerjoin(SessionUse, SessionUse.vial_id == Vial.id)
        .outerjoin(TreatmentSession, TreatmentSession.id == SessionUse.session_id)
        .outerjoin(Patient, Patient.id == TreatmentSession.patient_id)
        .where(vials_clause)
        .group_by(Vial.id, Vial.code, Vial.number, Vial.batch_id, Batch.code, Vial.status, Vial.dose, Vial.volume_ml,
                  Vial.remaining_ml, Vial.punctured_at, Vial.legacy)
        .order_by(Vial.batch_id, Vial.number)
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
    """Set the voided sessions, the volume injected and the vials; answer the batches: one statement.

    Voided sessions are few, so they are counted, and left out of the total volume, by id:
    the volume is read off the uses' index alone.
    """
    voided = sa.select(TreatmentSession.id).where(TreatmentSession.voided_at.is_not(None))
    batch_count = sa.select(sa.func.count(Batch.id)).where(Batch.id.in_(batch_ids)).scalar_subquery()
    volume = (sa.select(sa.func.coalesce(sa.func.sum(SessionUse.volume_ml), 0))
              .where(SessionUse.batch_id.in_(batch_ids), SessionUse.session_id.not_in(voided)).scalar_subquery())
    voided_count = (sa.select(sa.func.count(TreatmentSession.id))
                    .where(TreatmentSession.voided_at.is_not(None), TreatmentSession.id.in_(used)).scalar_subquery())
    vials = sa.select(sa.func.count(Vial.id)).where(Vial.batch_id.in_(batch_ids)).scalar_subquery()
    batches, total_volume, trace.voided_sessions, trace.counts["vials"] = db.session.execute(
        sa.select(batch_count, volume, voided_count, vials)).one()
    trace.total_volume_ml = Decimal(total_volume)
    return batches


def _every_row(trace: Trace, batch_ids, standing, batch_rows) -> tuple[int, int]:
    """Set every row of each list, read as iterated; answer the sessions and patients in all."""
    sessions, patients = db.session.execute(sa.select(
        sa.func.count(), sa.func.count(sa.distinct(TreatmentSession.patient_id))).where(*standing)).one()
    trace.batches = Rows(batch_rows)
    trace.sessions = Rows(_session_rows(SessionUse.batch_id.in_(batch_ids)))
    trace.patients = Rows(_patient_rows(SessionUse.batch_id.in_(batch_ids)))
    trace.vials = Rows(_vial_rows(Vial.batch_id.in_(batch_ids)))
    return sessions, patients


def _one_page(trace: Trace, batch_ids, member, standing, batch_rows) -> tuple[int, int]:
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
    # Their count is in the scope's totals; the page is read off the vials' (batch, number) index,
    # batch by batch, never by testing every vial of the clinic against the scope.
    vial_ids = db.session.scalars(
        sa.select(Vial.id).where(Vial.batch_id.in_(batch_ids)).order_by(Vial.batch_id, Vial.number)
        .limit(per_page).offset((page - 1) * per_page)).all()
    trace.vials = db.session.execute(_vial_rows(Vial.id.in_(vial_ids))).all() if vial_ids else []
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
        sessions, patients = _one_page(trace, batch_ids, member, standing, batch_rows)
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
    # Names, codes and expiries from the copy on the batch record; the lot's status as it stands now.
    copy = BatchComponent
    trace.lots = db.session.execute(
        sa.select(Lot.id, copy.lot_code.label("code"), Lot.status, Lot.supplier, copy.supplier_lot_number,
                  copy.lot_expires_on.label("expires_on"), copy.ingredient_name,
                  copy.ingredient_unit.label("unit"), sa.func.sum(copy.quantity).label("quantity"))
        .join(copy, copy.lot_id == Lot.id)
        .where(copy.batch_id == batch_id)
        .group_by(Lot.id, copy.lot_code, Lot.status, Lot.supplier, copy.supplier_lot_number, copy.lot_expires_on,
                  copy.ingredient_name, copy.ingredient_unit)
        .order_by(copy.ingredient_name, copy.lot_code)).all()
    trace.counts = {"lots": len(trace.lots)}
    return _downstream(trace, [batch_id], _batch_member(batch_id))
