"""What the excursion pages read: a site-scoped list, and one excursion with its readings and held items.

Every read takes `site_ids` (the viewer's scope, None: every site). The list reads its counts in
the same statement as its rows; the record reads a fixed number of statements whatever the number
of readings and held items.
"""

from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa

from ..extensions import db
from ..models import Batch, Excursion, ExcursionItem, Location, Lot, Patient, Site, TemperatureReading, User, Vial
from ..pagination import paginate_rows
from ..services.cold_chain import UseForReview, uses_for_review
from .scope import SiteIds, at_sites

EXCURSION_STATES = ("out_of_range", "awaiting_decision", "decided")
# A long excursion read by a logger every few minutes: the page shows its first readings and says how many.
READINGS_SHOWN = 100
USES_SHOWN = 200
ITEMS_PER_PAGE = 100
KIND_ORDER = {"lot": 0, "batch": 1, "vial": 2}


def state_clause(state: str) -> sa.ColumnElement[bool]:
    """Excursion.state as SQL: out of range while it lasts, then awaiting a decision, then decided."""
    if state == "out_of_range":
        return Excursion.ended_at.is_(None)
    if state == "awaiting_decision":
        return sa.and_(Excursion.ended_at.is_not(None), Excursion.decided_at.is_(None))
    return sa.and_(Excursion.ended_at.is_not(None), Excursion.decided_at.is_not(None))


@dataclass
class ExcursionFilters:
    state: str = ""
    site_id: int | None = None

    @classmethod
    def from_args(cls, args) -> "ExcursionFilters":
        """An unknown state or a site that is not a number is no filter."""
        state = args.get("state", "")
        try:
            site_id = int(args.get("site") or 0) or None
        except (TypeError, ValueError):
            site_id = None
        return cls(state=state if state in EXCURSION_STATES else "", site_id=site_id)


def _counted(undecided: bool = False):
    query = sa.select(sa.func.count(ExcursionItem.id)).where(ExcursionItem.excursion_id == Excursion.id)
    if undecided:
        query = query.where(ExcursionItem.decision.is_(None))
    return query.correlate(Excursion).scalar_subquery()


def excursion_list(filters: ExcursionFilters, *, site_ids: SiteIds, per_page: int):
    """A page of rows (Excursion, location code and name, site code and zone, held, undecided), newest first."""
    keys = sa.select(Excursion.id).where(at_sites(Excursion.site_id, site_ids))
    if filters.state:
        keys = keys.where(state_clause(filters.state))
    if filters.site_id is not None:
        keys = keys.where(Excursion.site_id == filters.site_id)
    order = (Excursion.started_at.desc(), Excursion.id.desc())
    rows = (sa.select(Excursion, Location.code.label("location_code"), Location.name.label("location_name"),
                      Site.code.label("site_code"), Site.timezone, _counted().label("held"),
                      _counted(undecided=True).label("undecided"))
            .join(Location, Location.id == Excursion.location_id).join(Site, Site.id == Excursion.site_id)
            .order_by(*order))
    return paginate_rows(rows, per_page, keys=keys.order_by(*order))


@dataclass
class HeldItem:
    """A held lot, batch or vial as the page shows it: its status now, who decided, where its page is."""

    row: ExcursionItem
    status: str
    decided_by: str
    batch_id: int | None = None  # a vial's batch, for its page
    number: int | None = None  # a vial's number in its batch


@dataclass
class ExcursionRecord:
    excursion: Excursion
    location: Location
    site: Site
    opened_by: str
    readings: list[TemperatureReading] = field(default_factory=list)
    reading_count: int = 0
    undecided_codes: list[str] = field(default_factory=list)

    @property
    def code(self) -> str:
        return self.excursion.code


def excursion_record(excursion_id: int, site_ids: SiteIds) -> ExcursionRecord | None:
    """The excursion with its place and who recorded it, its first readings, the codes still undecided
    (four statements); None when it is not there or not at the sites in scope."""
    row = db.session.execute(
        sa.select(Excursion, Location, Site, User.display_name)
        .join(Location, Location.id == Excursion.location_id).join(Site, Site.id == Excursion.site_id)
        .outerjoin(User, User.id == Excursion.opened_by_id)
        .where(Excursion.id == excursion_id, at_sites(Excursion.site_id, site_ids))).first()
    if row is None:
        return None
    record = ExcursionRecord(row[0], row[1], row[2], row[3] or "")
    of_this = TemperatureReading.excursion_id == excursion_id
    record.reading_count = db.session.scalar(sa.select(sa.func.count(TemperatureReading.id)).where(of_this))
    record.readings = list(db.session.scalars(
        sa.select(TemperatureReading).where(of_this)
        .order_by(TemperatureReading.measured_at, TemperatureReading.id).limit(READINGS_SHOWN)))
    record.undecided_codes = list(db.session.scalars(
        sa.select(ExcursionItem.code).where(ExcursionItem.excursion_id == excursion_id,
                                            ExcursionItem.decision.is_(None))
        .order_by(sa.case(KIND_ORDER, value=ExcursionItem.entity_type), ExcursionItem.code)))
    return record


def held_items(excursion_id: int, per_page: int = ITEMS_PER_PAGE):
    """A page of the excursion's held items, lots then batches then vials, each with its status now and its
    decider's name: the page's rows and count, then one statement per kind on the page (five at most)."""
    order = (sa.case(KIND_ORDER, value=ExcursionItem.entity_type), ExcursionItem.code)
    keys = sa.select(ExcursionItem.id).where(ExcursionItem.excursion_id == excursion_id).order_by(*order)
    rows = (sa.select(ExcursionItem, User.display_name).outerjoin(User, User.id == ExcursionItem.decided_by_id)
            .order_by(*order))
    page = paginate_rows(rows, per_page, keys=keys)
    ids = {kind: [r[0].entity_id for r in page.items if r[0].entity_type == kind] for kind in ("lot", "batch", "vial")}
    lots = dict(db.session.execute(sa.select(Lot.id, Lot.status).where(Lot.id.in_(ids["lot"]))).all()) \
        if ids["lot"] else {}
    batches = dict(db.session.execute(sa.select(Batch.id, Batch.status).where(Batch.id.in_(ids["batch"]))).all()) \
        if ids["batch"] else {}
    vials = {r.id: r for r in db.session.execute(
        sa.select(Vial.id, Vial.status, Vial.batch_id, Vial.number).where(Vial.id.in_(ids["vial"])))} \
        if ids["vial"] else {}
    shown = []
    for item, decided_by in page.items:
        if item.entity_type == "vial":
            vial = vials.get(item.entity_id)
            shown.append(HeldItem(item, vial.status if vial else "", decided_by or "",
                                  vial.batch_id if vial else None, vial.number if vial else None))
        else:
            statuses = lots if item.entity_type == "lot" else batches
            shown.append(HeldItem(item, statuses.get(item.entity_id, ""), decided_by or ""))
    page.items = shown
    return page


@dataclass(frozen=True)
class UseShown:
    """A use to review, with the patient's chart number and name only as far as the viewer may see them."""

    use: UseForReview
    chart_number: str = ""
    patient_name: str = ""


def uses_to_review(excursion: Excursion, *, read_patients: bool, identify: bool) -> list[UseShown]:
    """The uses made from the held items between the start and the hold (services.cold_chain), with the
    patients' charts (and names, for a role that may identify them) in one more statement."""
    uses = uses_for_review(excursion, limit=USES_SHOWN)
    patient_ids = {u.patient_id for u in uses if u.patient_id is not None}
    patients = {}
    if read_patients and patient_ids:
        patients = {r.id: r for r in db.session.execute(
            sa.select(Patient.id, Patient.chart_number, Patient.name).where(Patient.id.in_(patient_ids)))}
    shown = []
    for use in uses:
        patient = patients.get(use.patient_id)
        shown.append(UseShown(use, patient.chart_number if patient else "",
                              patient.name if patient and identify else ""))
    return shown


def site_choices(site_ids: SiteIds) -> list[tuple[int, str]]:
    """(id, code) of the sites a viewer may filter the list by."""
    return [(r.id, r.code) for r in db.session.execute(
        sa.select(Site.id, Site.code).where(at_sites(Site.id, site_ids)).order_by(Site.code))]


def duration_text(started_at: datetime, ended_at: datetime | None, now: datetime) -> str:
    """"2 h 15 min", "3 d 4 h": how long it lasted, or has lasted so far."""
    minutes = max(int(((ended_at or now) - started_at).total_seconds() // 60), 0)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"
