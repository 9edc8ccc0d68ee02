"""Batches: the list and its filters (page, API, export), one batch's page and tests, its vials, the formulas to
compound."""

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from ..extensions import db
from ..limits import PER_PAGE_DEFAULT
from ..models import (
    Batch,
    BatchComponent,
    BatchStatus,
    BatchTest,
    Formula,
    FormulaStatus,
    Patient,
    SessionUse,
    Signature,
    StockMovement,
    TreatmentSession,
    User,
    Vial,
)
from ..models.batch import BATCH_STATUSES
from ..services.clock import end_of_clinic_day, start_of_clinic_day, utcnow
from ..services.history import history_of
from ..services.holds import holds_of
from .audit import audit_history
from .common import day_args, search_arg
from .scope import SiteIds, at_sites, batch_at_sites

DAY_FILTERS = {"compounded_from": "Compounded from", "compounded_to": "Compounded to"}
# The longest "beyond-use date within" window a list takes: ten years of hours.
MAX_BUD_WINDOW_HOURS = 24 * 3650
# Batches whose beyond-use date still matters: they may yet be injected.
IN_USE = (BatchStatus.PREPARED, BatchStatus.AWAITING_TESTS, BatchStatus.RELEASED)


def _hours(value) -> int | None:
    try:
        return max(0, min(int(value), MAX_BUD_WINDOW_HOURS)) if value not in (None, "") else None
    except ValueError:
        return None


@dataclass
class BatchFilters:
    formula: str = ""  # a formula code, any version
    status: str = ""
    bud_within_hours: int | None = None
    compounded_from: date | None = None
    compounded_to: date | None = None
    q: str = ""  # part of the batch code
    errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_args(cls, args) -> "BatchFilters":
        """The query string of the page, the API (checked by its schema first) and the export.

        An unknown status or a count that is not a number is no filter; a malformed day or a
        search too long is left out and named in `errors`.
        """
        days, day_errors = day_args(args, *DAY_FILTERS)
        errors = {name: f"{DAY_FILTERS[name]}: {message}" for name, message in day_errors.items()}
        return cls(
            formula=(args.get("formula") or "").strip().upper(),
            status=args.get("status") if args.get("status") in BATCH_STATUSES else "",
            bud_within_hours=_hours(args.get("bud_within_hours")),
            compounded_from=days["compounded_from"], compounded_to=days["compounded_to"],
            q=search_arg(args, errors), errors=errors,
        )


def batch_list_query(filters: BatchFilters, *, site_ids: SiteIds):
    """The batch list, newest first, with its formula and people in two more statements.

    Scoped as `scope.batch_at_sites` says: the batches at the sites in scope and those with a vial there.
    """
    query = sa.select(Batch).options(
        selectinload(Batch.formula), selectinload(Batch.compounded_by), selectinload(Batch.verified_by)
    ).where(batch_at_sites(site_ids))
    if filters.formula:
        # Joined only to filter: on deep pages a join for every skipped row would dominate.
        query = query.join(Batch.formula).where(Formula.code == filters.formula)
    if filters.status:
        query = query.where(Batch.status == filters.status)
    if filters.bud_within_hours is not None:
        now = utcnow()
        query = query.where(Batch.beyond_use_at > now, Batch.beyond_use_at <= now + timedelta(
            hours=filters.bud_within_hours), Batch.status.in_(IN_USE))
    if filters.compounded_from is not None:
        query = query.where(Batch.compounded_at >= start_of_clinic_day(filters.compounded_from))
    if filters.compounded_to is not None:
        query = query.where(Batch.compounded_at < end_of_clinic_day(filters.compounded_to))
    if filters.q:
        # Taken literally: a typed % or _ is a character to find, not a wildcard.
        query = query.where(Batch.code.icontains(filters.q, autoescape=True))
    return query.order_by(Batch.compounded_at.desc(), Batch.id.desc())


def formula_codes() -> list[str]:
    """Every formula code, for the list's filter."""
    return db.session.scalars(sa.select(Formula.code).distinct().order_by(Formula.code)).all()


def approved_formulas() -> list[Formula]:
    """The formula versions that may be compounded, by code."""
    return db.session.scalars(
        sa.select(Formula).where(Formula.status == FormulaStatus.APPROVED).order_by(Formula.code)).all()


@dataclass
class BatchRecord:
    """What a batch's page shows beside its forms."""

    batch: Batch
    components: list  # BatchComponent rows: the ingredient and lot as copied at compounding
    uses: list | None  # None: the reader may not see who received the batch
    history: list
    tests: list  # recorded_tests()


def batch_record(batch_id: int, *, with_uses: bool, site_ids: SiteIds = None) -> BatchRecord | None:
    """A batch with its formula and people, the lots it consumed, its sessions (`with_uses`: those performed at
    the sites in `site_ids`, None for every site) and audit rows."""
    batch = db.session.scalar(sa.select(Batch).where(Batch.id == batch_id).options(
        selectinload(Batch.formula), selectinload(Batch.compounded_by), selectinload(Batch.verified_by)))
    if batch is None:
        return None
    # The copy made at compounding, never the ingredient or lot as they are now.
    components = db.session.scalars(
        sa.select(BatchComponent).where(BatchComponent.batch_id == batch.id).order_by(BatchComponent.id)).all()
    uses = None
    if with_uses:
        uses = db.session.execute(
            sa.select(SessionUse, TreatmentSession.performed_at, TreatmentSession.voided_at, Patient.chart_number,
                      Patient.id.label("patient_id"), User.display_name)
            .join(TreatmentSession, TreatmentSession.id == SessionUse.session_id)
            .join(Patient, Patient.id == TreatmentSession.patient_id)
            .join(User, User.id == TreatmentSession.practitioner_id)
            .where(SessionUse.batch_id == batch.id, at_sites(TreatmentSession.site_id, site_ids))
            .order_by(TreatmentSession.performed_at.desc()).limit(500)).all()
    return BatchRecord(batch=batch, components=components, uses=uses, history=audit_history("batch", batch.id),
                       tests=recorded_tests(batch.id))


def recorded_tests(batch_id: int) -> list[dict]:
    """A batch's test results in the order recorded, each with who signed it and when."""
    rows = db.session.execute(
        sa.select(BatchTest, Signature.signer_name, Signature.signed_at)
        .outerjoin(Signature, sa.and_(Signature.entity_type == "batch_test", Signature.entity_id == BatchTest.id))
        .where(BatchTest.batch_id == batch_id).order_by(BatchTest.id)).all()
    return [{"id": test.id, "batch_id": test.batch_id, "kind": test.kind, "result": test.result,
             "method": test.method, "lab": test.lab, "sampled_on": test.sampled_on,
             "units_sampled": test.units_sampled, "note": test.note, "recorded_at": test.recorded_at,
             "recorded_by_id": test.recorded_by_id, "signed_by": signer or "", "signed_at": signed_at}
            for test, signer, signed_at in rows]


# A batch page lists its vials a page at a time: a batch of hundreds stays one screen and two statements.
VIALS_PER_PAGE = PER_PAGE_DEFAULT


def in_use_period_words(hours: int | None) -> str:
    """An in-use period as a person says it: "28 days", "1 day", or hours when not whole days ("36 hours")."""
    hours = hours or 0
    days, rest = divmod(hours, 24)
    if days and not rest:
        return f"{days} day{'' if days == 1 else 's'}"
    return f"{hours} hour{'' if hours == 1 else 's'}"


def in_use_deadline(vial: Vial, batch: Batch) -> datetime | None:
    """When a punctured multiple-dose vial stops being usable (never beyond its batch's BUD); else None."""
    if vial.dose != "multiple" or vial.punctured_at is None:
        return None
    return vial.in_use_until(batch.beyond_use_at)


def batch_vials(batch_id: int, page: int = 1, *, site_ids: SiteIds):
    """One page of a batch's vials at the sites in scope, by number (a count and the rows: two statements
    whatever the batch's size)."""
    query = sa.select(Vial).where(Vial.batch_id == batch_id, at_sites(Vial.site_id, site_ids)).order_by(Vial.number)
    return db.paginate(query, page=page, per_page=VIALS_PER_PAGE, error_out=False)


def all_batch_vials(batch_id: int, site_ids: SiteIds = None) -> list[Vial]:
    """Every vial of a batch by number, in one statement (the API answer, the accompanying record).

    Every site unless told: the batch's own record names each of its vials, wherever it is now.
    """
    return list(db.session.scalars(sa.select(Vial).where(Vial.batch_id == batch_id, at_sites(Vial.site_id, site_ids))
                                   .order_by(Vial.number)))


@dataclass
class VialRecord:
    """What a vial's page shows: the vial and its batch, its status history, uses, ledger rows and holds."""

    vial: Vial
    batch: Batch
    history: list
    uses: list | None  # None: the reader may not see who received the vial
    ledger: list
    holds: list


def find_batch_vial(batch_id: int, number: int) -> Vial | None:
    return db.session.scalar(sa.select(Vial).where(Vial.batch_id == batch_id, Vial.number == number))


def vial_record(vial: Vial, *, with_uses: bool, site_ids: SiteIds = None) -> VialRecord:
    """A vial with its batch (and formula), each status change, each use (`with_uses`: at the sites in `site_ids`),
    its ledger rows and holds."""
    batch = db.session.scalar(sa.select(Batch).where(Batch.id == vial.batch_id).options(selectinload(Batch.formula)))
    uses = None
    if with_uses:
        uses = db.session.execute(
            sa.select(SessionUse, TreatmentSession.performed_at, TreatmentSession.voided_at, Patient.chart_number,
                      User.display_name)
            .join(TreatmentSession, TreatmentSession.id == SessionUse.session_id)
            .join(Patient, Patient.id == TreatmentSession.patient_id)
            .join(User, User.id == TreatmentSession.practitioner_id)
            .where(SessionUse.vial_id == vial.id, at_sites(TreatmentSession.site_id, site_ids))
            .order_by(TreatmentSession.performed_at, SessionUse.id)).all()
    ledger = db.session.execute(
        sa.select(StockMovement, User.display_name).join(User, User.id == StockMovement.actor_id)
        .where(StockMovement.vial_id == vial.id).order_by(StockMovement.occurred_at, StockMovement.id)).all()
    return VialRecord(vial=vial, batch=batch, history=history_of("vial", vial.id), uses=uses, ledger=ledger,
                      holds=holds_of("vial", vial.id))
