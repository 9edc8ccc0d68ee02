"""Traceability: a handful of set-based queries, never one per row (quality signals: services.signals).

Upstream: batch -> the lots it consumed. Downstream: lot -> batches -> vials -> sessions ->
patients. A use recorded before vials had codes names no vial: its session says "pooled, no vial".
A correction never shrinks a trace: a voided session stays in every
scope, flagged, with its patient and its adverse events; only the volume injected in all
leaves it out (a voided use was not injected, or moved to the corrected session).

A lot that fed a thousand batches reaches tens of thousands of sessions, so a trace reads its
totals, per site and for the chain, from the exposure counts (services/exposure.py) in one
statement, and one page of each list by keyset (`after`: the last row seen of each list), so a
deep page costs what the first costs; the workbook export asks for every row (`per_page=None`).
A lot's trace follows its child lots (made at a transfer's destination); every lot, batch and
vial says where it is now (services/trace_places.py). Patients are listed per site where their
sessions were performed, by site code: a recall works its contact list site by site.
"""

import base64
import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa

from ..extensions import db
from ..models import (
    Batch,
    BatchComponent,
    ExposureCount,
    Formula,
    Lot,
    Patient,
    SessionUse,
    Site,
    TreatmentSession,
    Vial,
)
from ..models.exposure import ALL_SITES, exposure_patients
from .errors import InvalidInput, NotFound
from .trace_places import descendants, lot_places, placed, vial_transit

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
    sites: list = field(default_factory=list)  # per site where sessions were performed: its exposure counts
    places: list = field(default_factory=list)  # a lot's trace: the lot and its child lots, where each is now
    patient_rows: int = 0  # rows of the patient list: a patient treated at two sites is listed under both
    after: dict | None = None  # where this page starts: the last row seen of each list (None: offset by page)
    next_after: dict | None = None  # where the next page starts (None: this is the last page)

    @property
    def pages(self) -> int:
        """Pages of the longest list (the lists are paged together)."""
        if self.per_page is None:
            return 1
        lengths = [self.counts.get(name, 0) for name in LISTS if name != "patients"] + [self.patient_rows]
        return max(1, math.ceil(max(lengths) / self.per_page))

    @property
    def complete(self) -> bool:
        """Whether this page holds every row of every list."""
        return self.page == 1 and self.pages == 1 and not self.after

    @property
    def next_cursor(self) -> str | None:
        return encode_cursor(self.next_after) if self.next_after else None


END = "end"  # a list already read to its last row


def encode_cursor(after: dict) -> str:
    """The keyset of the next page as one URL-safe token."""
    text = json.dumps({k: v if v == END else [x.isoformat() if isinstance(x, datetime) else x for x in v]
                       for k, v in after.items()}, default=str)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(token: str | None) -> dict | None:
    """A token made by `encode_cursor`; a malformed one is refused (422)."""
    if not token:
        return None
    try:
        after = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if not isinstance(after, dict) or set(after) - set(LISTS):
            raise ValueError(token)
        # Sessions and batches are ordered by a time first.
        return {k: v if v == END else ([datetime.fromisoformat(v[0]), *v[1:]] if k in ("sessions", "batches")
                                       else list(v)) for k, v in after.items()}
    except (ValueError, TypeError) as error:
        raise InvalidInput("This page link is not valid: start again from the first page.",
                           field="after") from error

    @property
    def complete(self) -> bool:
        """Whether this page holds every row of every list."""
        return self.page == 1 and self.pages == 1


def _batch_rows(batch_ids, lots=None):
    """Batches with their formula and place; `quantity_from_lot` is what the lot (`lots`: it and its child lots)
    gave each."""
    quantity = sa.select(sa.func.sum(BatchComponent.quantity)).where(BatchComponent.batch_id == Batch.id)
    if lots is not None:
        quantity = quantity.where(BatchComponent.lot_id.in_(sa.select(lots.c.id)))
    quantity = quantity.scalar_subquery()
    return placed(sa.select(
        Batch.id, Batch.code, Batch.status, Batch.compounded_at, Batch.beyond_use_at, Batch.total_volume_ml,
        Batch.remaining_volume_ml, Formula.code.label("formula_code"), Formula.version.label("formula_version"),
        Formula.name.label("formula_name"), quantity.label("quantity_from_lot"),
    ).join(Formula, Formula.id == Batch.formula_id).where(Batch.id.in_(batch_ids)), Batch).order_by(
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
    """One row per session, voided ones too (flagged): its patient and site, the volume of these batches,
    their codes, the vials used (`pooled`: uses that name none)."""
    return (
        sa.select(TreatmentSession.id, TreatmentSession.performed_at, TreatmentSession.patient_id,
                  Patient.chart_number, sa.func.sum(SessionUse.volume_ml).label("volume_ml"),
                  _codes(Batch.code).label("batch_codes"), TreatmentSession.voided_at, TreatmentSession.void_code,
                  _codes(Vial.code).label("vial_codes"), _pooled().label("pooled"),
                  Site.code.label("site_code"))
        .join(TreatmentSession, TreatmentSession.id == SessionUse.session_id)
        .join(Patient, Patient.id == TreatmentSession.patient_id)
        .join(Site, Site.id == TreatmentSession.site_id)
        .join(Batch, Batch.id == SessionUse.batch_id)
        .outerjoin(Vial, Vial.id == SessionUse.vial_id)
        .where(uses_clause)
        .group_by(TreatmentSession.id, TreatmentSession.performed_at, TreatmentSession.patient_id,
                  Patient.chart_number, TreatmentSession.voided_at, TreatmentSession.void_code, Site.code)
        .order_by(TreatmentSession.performed_at, TreatmentSession.id)
    )


def _patient_rows(uses_clause):
    """One row per patient and site reached: contact details, sessions there (voided ones too), volume received.

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
                  _codes(Vial.code).label("vial_codes"), _pooled().label("pooled"),
                  TreatmentSession.site_id, Site.code.label("site_code"), Site.name.label("site_name"))
        .join(TreatmentSession, TreatmentSession.patient_id == Patient.id)
        .join(Site, Site.id == TreatmentSession.site_id)
        .join(SessionUse, SessionUse.session_id == TreatmentSession.id)
        .outerjoin(Vial, Vial.id == SessionUse.vial_id)
        .where(uses_clause)
        .group_by(Patient.id, Patient.chart_number, Patient.name, Patient.phone, Patient.email,
                  TreatmentSession.site_id, Site.code, Site.name)
        .order_by(Site.code, Patient.chart_number, Patient.id)
    )


def _vial_rows(vials_clause):
    """One row per vial: its batch, status, place, volume left, first puncture, the sessions and patients."""
    return placed(
        sa.select(Vial.id, Vial.code, Vial.number, Vial.batch_id, Batch.code.label("batch_code"), Vial.status,
                  Vial.dose, Vial.volume_ml, Vial.remaining_ml, Vial.punctured_at, Vial.legacy,
                  sa.func.count(sa.distinct(SessionUse.session_id)).label("sessions"),
                  _codes(sa.cast(SessionUse.session_id, sa.String)).label("session_ids"),
                  _codes(Patient.chart_number).label("chart_numbers"), vial_transit().label("transit_code"))
        .join(Batch, Batch.id == Vial.batch_id)
        .outerjoin(SessionUse, SessionUse.vial_id == Vial.id)
        .outerjoin(TreatmentSession, TreatmentSession.id == SessionUse.session_id)
        .outerjoin(Patient, Patient.id == TreatmentSession.patient_id)
        .where(vials_clause), Vial, grouped=True
    ).group_by(Vial.id, Vial.code, Vial.number, Vial.batch_id, Batch.code, Vial.status, Vial.dose, Vial.volume_ml,
               Vial.remaining_ml, Vial.punctured_at, Vial.legacy, Vial.site_id, Vial.location_id
               ).order_by(Vial.batch_id, Vial.number)


def _totals(trace: Trace, kind: str, item_id: int, batch_ids) -> None:
    """The scope's totals, per site and for the chain, from the exposure counts: one statement.

    `batches` and `vials` count what was made (the lists' lengths); the rest is exposure.
    """
    made = sa.select(
        sa.select(sa.func.count(Batch.id)).where(Batch.id.in_(batch_ids)).scalar_subquery().label("batches"),
        sa.select(sa.func.count(Vial.id)).where(Vial.batch_id.in_(batch_ids)).scalar_subquery().label("vials"),
    ).subquery()
    kept = ExposureCount
    rows = db.session.execute(
        sa.select(made.c.batches.label("made_batches"), made.c.vials.label("made_vials"), kept.site_id,
                  Site.code.label("site_code"), Site.name.label("site_name"), kept.batches, kept.vials, kept.sessions,
                  kept.voided_sessions, kept.patients, kept.volume_ml)
        .select_from(made)
        .outerjoin(kept, sa.and_(kept.kind == kind, kept.item_id == item_id))
        .outerjoin(Site, Site.id == kept.site_id)
        .order_by(Site.code)).all()
    chain = next((row for row in rows if row.site_id == ALL_SITES), None)
    trace.counts = {**trace.counts, "batches": rows[0].made_batches, "vials": rows[0].made_vials,
                    "sessions": chain.sessions if chain else 0, "patients": chain.patients if chain else 0}
    trace.voided_sessions = chain.voided_sessions if chain else 0
    trace.total_volume_ml = Decimal(chain.volume_ml) if chain else Decimal("0")
    trace.sites = [row for row in rows if row.site_id not in (None, ALL_SITES)]
    trace.patient_rows = sum(row.patients for row in trace.sites)


def _every_row(trace: Trace, batch_ids, batch_rows) -> None:
    """Set every row of each list, read as iterated."""
    trace.batches = Rows(batch_rows)
    trace.sessions = Rows(_session_rows(SessionUse.batch_id.in_(batch_ids)))
    trace.patients = Rows(_patient_rows(SessionUse.batch_id.in_(batch_ids)))
    trace.vials = Rows(_vial_rows(Vial.batch_id.in_(batch_ids)))


def _slice(query, trace: Trace, name: str, key):
    """One page of a list: after the last row seen (keyset), or by page number when no cursor was given."""
    after = (trace.after or {}).get(name)
    if after == END:
        return None
    if after is not None:
        query = query.where(sa.tuple_(*key) > sa.tuple_(*(sa.literal(v, column.type)
                                                          for v, column in zip(after, key, strict=True))))
    elif trace.page > 1 and trace.after is None:
        query = query.offset((trace.page - 1) * trace.per_page)
    return query.order_by(None).order_by(*key).limit(trace.per_page)


def _one_page(trace: Trace, kind: str, item_id: int, batch_ids, member, batch_rows) -> None:
    """Set one page of each list, each found by its own keyset on an index, then only its rows aggregated."""
    used = sa.select(SessionUse.session_id).where(SessionUse.batch_id.in_(batch_ids))
    keys = {}
    page = _slice(sa.select(TreatmentSession.id, TreatmentSession.performed_at).where(TreatmentSession.id.in_(used)),
                  trace, "sessions", (TreatmentSession.performed_at, TreatmentSession.id))
    sessions = db.session.execute(page).all() if page is not None else []
    keys["sessions"] = [(row.performed_at, row.id) for row in sessions]
    # Patients per site, from the exposure memberships (a lot's include its child lots' batches).
    m = exposure_patients
    page = _slice(sa.select(m.c.patient_id, m.c.site_id, Site.code, Patient.chart_number)
                  .join(Patient, Patient.id == m.c.patient_id).join(Site, Site.id == m.c.site_id)
                  .where(m.c.kind == kind, m.c.item_id == item_id, m.c.site_id != ALL_SITES),
                  trace, "patients", (Site.code, Patient.chart_number, Patient.id))
    pairs = db.session.execute(page).all() if page is not None else []
    keys["patients"] = [(row.code, row.chart_number, row.patient_id) for row in pairs]
    page = _slice(batch_rows, trace, "batches", (Batch.compounded_at, Batch.id))
    trace.batches = db.session.execute(page).all() if page is not None else []
    keys["batches"] = [(row.compounded_at, row.id) for row in trace.batches]
    page = _slice(sa.select(Vial.id, Vial.batch_id, Vial.number).where(Vial.batch_id.in_(batch_ids)),
                  trace, "vials", (Vial.batch_id, Vial.number))
    vials = db.session.execute(page).all() if page is not None else []
    keys["vials"] = [(row.batch_id, row.number) for row in vials]
    # Driven from the page's ids; `member` keeps the planner from walking every use of the scope.
    session_ids = [row.id for row in sessions]
    trace.sessions = db.session.execute(_session_rows(sa.and_(
        SessionUse.session_id.in_(session_ids), member(SessionUse.batch_id)))).all() if session_ids else []
    wanted = {(row.patient_id, row.site_id) for row in pairs}
    trace.patients = [row for row in db.session.execute(_patient_rows(sa.and_(
        TreatmentSession.patient_id.in_({p for p, _ in wanted}), TreatmentSession.site_id.in_({s for _, s in wanted}),
        member(SessionUse.batch_id)))) if (row.id, row.site_id) in wanted] if wanted else []
    vial_ids = [row.id for row in vials]
    trace.vials = db.session.execute(_vial_rows(Vial.id.in_(vial_ids))).all() if vial_ids else []
    more = {name: rows[-1] if len(rows) == trace.per_page else END for name, rows in keys.items()}
    trace.next_after = more if any(v != END for v in more.values()) else None


def _downstream(trace: Trace, kind: str, item_id: int, batch_ids, member, lots=None) -> Trace:
    """Totals from the exposure counts, then one page of batches, vials, sessions and patients.

    `batch_ids` selects the traced batches; `member(column)` tests one batch id against them
    row by row. The cost of a page stays a few index walks over the scope, whatever its size.
    """
    _totals(trace, kind, item_id, batch_ids)
    batch_rows = _batch_rows(batch_ids, lots)
    if trace.per_page is None:
        _every_row(trace, batch_ids, batch_rows)
    else:
        _one_page(trace, kind, item_id, batch_ids, member, batch_rows)
    return trace


def lot_batch_ids(lot_id: int, lots=None):
    """A select of the batches made from the lot or from any lot made from it (a transfer's child lot)."""
    lots = descendants(lot_id) if lots is None else lots
    return sa.select(BatchComponent.batch_id).where(BatchComponent.lot_id.in_(sa.select(lots.c.id))).distinct()


def _lot_member(lot_id: int, lots=None):
    lots = descendants(lot_id) if lots is None else lots
    return lambda column: sa.exists().where(BatchComponent.lot_id.in_(sa.select(lots.c.id)),
                                            BatchComponent.batch_id == column)


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


def trace_lot(lot_id: int, page: int = 1, per_page: int | None = TRACE_PER_PAGE, after: dict | None = None) -> Trace:
    """Every batch that used the lot or its child lots, every session that used those batches, every patient."""
    lot = db.session.scalar(sa.select(Lot).where(Lot.id == lot_id).options(sa.orm.selectinload(Lot.ingredient)))
    if lot is None:
        raise NotFound("There is no such lot.")
    trace = Trace(lot=lot, page=page, per_page=per_page, after=after)
    trace.places = lot_places(lot_id)
    lots = descendants(lot_id)  # one recursive select, shared by every statement that names it
    return _downstream(trace, "lot", lot_id, lot_batch_ids(lot_id, lots), _lot_member(lot_id, lots), lots)


def trace_batch(batch_id: int, page: int = 1, per_page: int | None = TRACE_PER_PAGE,
                after: dict | None = None) -> Trace:
    """The lots a batch consumed upstream (with where they are now); its sessions and patients downstream."""
    batch = db.session.scalar(sa.select(Batch).where(Batch.id == batch_id)
                              .options(sa.orm.selectinload(Batch.formula)))
    if batch is None:
        raise NotFound("There is no such batch.")
    trace = Trace(batch=batch, page=page, per_page=per_page, after=after)
    # Names, codes and expiries from the copy on the batch record; the lot's status and place as they stand now.
    copy = BatchComponent
    trace.lots = db.session.execute(placed(
        sa.select(Lot.id, copy.lot_code.label("code"), Lot.status, Lot.supplier, copy.supplier_lot_number,
                  copy.lot_expires_on.label("expires_on"), copy.ingredient_name,
                  copy.ingredient_unit.label("unit"), sa.func.sum(copy.quantity).label("quantity"))
        .join(copy, copy.lot_id == Lot.id)
        .where(copy.batch_id == batch_id), Lot, grouped=True)
        .group_by(Lot.id, copy.lot_code, Lot.status, Lot.supplier, copy.supplier_lot_number, copy.lot_expires_on,
                  copy.ingredient_name, copy.ingredient_unit, Lot.site_id, Lot.location_id)
        .order_by(copy.ingredient_name, copy.lot_code)).all()
    trace.counts = {"lots": len(trace.lots)}
    trace.places = db.session.execute(placed(
        sa.select(Batch.id, Batch.code, Batch.status).where(Batch.id == batch_id), Batch)).all()
    return _downstream(trace, "batch", batch_id, [batch_id], _batch_member(batch_id))
