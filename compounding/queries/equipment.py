"""Equipment: the site-scoped list and its filters (page, API, workbook), one piece's record, its calibrations,
the batches made with it, and what the bench offers.

Every read takes `site_ids` (the viewer's scope, None: every site). A state is judged on a clinic day
(`clinic_today()` unless told), as `services.equipment.unusable_reasons` judges it at the bench.
"""

from dataclasses import dataclass, field
from datetime import date, timedelta

import sqlalchemy as sa

from ..extensions import db
from ..models import Batch, BatchEquipment, Calibration, Equipment, Formula, Site, User
from ..models.equipment import EQUIPMENT_KINDS
from ..services.clock import clinic_today
from ..services.equipment import unusable_reasons
from .common import search_arg
from .scope import SiteIds, at_sites, batch_at_sites

# "Due soon": a calibration or certification due within this many days (the list's amber badge).
DUE_SOON_DAYS = 30
EQUIPMENT_STATES = {"usable": "Usable", "due_soon": f"Due within {DUE_SOON_DAYS} days", "overdue": "Overdue",
                    "out_of_service": "Out of service", "retired": "Retired"}
# A site's bench has a handful of pieces; the pick list stops here rather than grow without end.
BENCH_MAX = 200


def state_clause(state: str, day: date) -> sa.ColumnElement[bool]:
    """A state as SQL, judged on `day`: retired (inactive), out of service (a failed calibration), overdue
    (due before `day`), due soon (due from `day` to DUE_SOON_DAYS later), usable (neither of the first three)."""
    in_use = sa.and_(Equipment.active, sa.not_(Equipment.out_of_service))
    if state == "retired":
        return sa.not_(Equipment.active)
    if state == "out_of_service":
        return sa.and_(Equipment.active, Equipment.out_of_service)
    if state == "overdue":
        return sa.and_(in_use, Equipment.due_on < day)
    if state == "due_soon":
        return sa.and_(in_use, Equipment.due_on >= day, Equipment.due_on <= day + timedelta(days=DUE_SOON_DAYS))
    return sa.and_(in_use, Equipment.due_on >= day)


def state_of(item: Equipment, day: date) -> str:
    """The one state the list badges a piece with (a usable piece due soon shows "due_soon")."""
    if not item.active:
        return "retired"
    if item.out_of_service:
        return "out_of_service"
    if item.due_on < day:
        return "overdue"
    if item.due_on <= day + timedelta(days=DUE_SOON_DAYS):
        return "due_soon"
    return "usable"


@dataclass
class EquipmentFilters:
    kind: str = ""
    state: str = ""
    q: str = ""  # part of the code or name
    errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_args(cls, args) -> "EquipmentFilters":
        """An unknown kind or state is no filter; a search too long is left out and named in `errors`."""
        errors: dict[str, str] = {}
        kind, state = args.get("kind") or "", args.get("state") or ""
        return cls(kind=kind if kind in EQUIPMENT_KINDS else "", state=state if state in EQUIPMENT_STATES else "",
                   q=search_arg(args, errors), errors=errors)


def equipment_list_query(filters: EquipmentFilters, *, site_ids: SiteIds, day: date | None = None):
    """The equipment at the sites in scope, by site and code (one entity select: paginate it on Equipment.id)."""
    query = sa.select(Equipment).where(at_sites(Equipment.site_id, site_ids))
    if filters.kind:
        query = query.where(Equipment.kind == filters.kind)
    if filters.state:
        query = query.where(state_clause(filters.state, day or clinic_today()))
    if filters.q:
        query = query.where(sa.or_(Equipment.code.icontains(filters.q, autoescape=True),
                                   Equipment.name.icontains(filters.q, autoescape=True)))
    return query.order_by(Equipment.site_id, Equipment.code, Equipment.id)


@dataclass
class EquipmentRecord:
    item: Equipment
    site: Site
    created_by: str


def equipment_record(equipment_id: int, site_ids: SiteIds) -> EquipmentRecord | None:
    """The piece with its site and who registered it (one statement); None when it is not there or not at the
    sites in scope."""
    row = db.session.execute(
        sa.select(Equipment, Site, User.display_name).join(Site, Site.id == Equipment.site_id)
        .outerjoin(User, User.id == Equipment.created_by_id)
        .where(Equipment.id == equipment_id, at_sites(Equipment.site_id, site_ids))).first()
    return EquipmentRecord(row[0], row[1], row[2] or "the operator") if row is not None else None


def calibrations_query(equipment_id: int):
    """Its calibrations newest first, with who recorded each (rows: Calibration, display_name)."""
    return (sa.select(Calibration, User.display_name).outerjoin(User, User.id == Calibration.recorded_by_id)
            .where(Calibration.equipment_id == equipment_id)
            .order_by(Calibration.performed_on.desc(), Calibration.id.desc()))


def calibration_keys(equipment_id: int):
    return (sa.select(Calibration.id).where(Calibration.equipment_id == equipment_id)
            .order_by(Calibration.performed_on.desc(), Calibration.id.desc()))


def all_calibrations(equipment_id: int) -> list[Calibration]:
    """Every calibration of one piece, newest first (the API's answer: a piece has a few a year)."""
    return list(db.session.scalars(sa.select(Calibration).where(Calibration.equipment_id == equipment_id)
                                   .order_by(Calibration.performed_on.desc(), Calibration.id.desc())))


def batches_made_with(equipment_id: int, site_ids: SiteIds):
    """The batches made with a piece that the viewer may see, newest first (rows: Batch, the copy on its record,
    the formula's code and version), and the keys to page them on."""
    rows = (sa.select(Batch, BatchEquipment, Formula.code.label("formula_code"),
                      Formula.version.label("formula_version"))
            .join(BatchEquipment, BatchEquipment.batch_id == Batch.id).join(Formula, Formula.id == Batch.formula_id)
            .where(BatchEquipment.equipment_id == equipment_id, batch_at_sites(site_ids))
            .order_by(Batch.compounded_at.desc(), Batch.id.desc()))
    keys = (sa.select(Batch.id).join(BatchEquipment, BatchEquipment.batch_id == Batch.id)
            .where(BatchEquipment.equipment_id == equipment_id, batch_at_sites(site_ids))
            .order_by(Batch.compounded_at.desc(), Batch.id.desc()))
    return rows, keys


@dataclass
class BenchChoice:
    """A piece of a site's equipment as the bench offers it: usable today, or why not."""

    item: Equipment
    reasons: list[str]

    @property
    def usable(self) -> bool:
        return not self.reasons


def bench_equipment(site_id: int, day: date | None = None) -> list[BenchChoice]:
    """A site's active equipment by kind and code, each with why it may not be used today (one statement)."""
    day = day or clinic_today()
    kinds = sa.case({kind: order for order, kind in enumerate(EQUIPMENT_KINDS)}, value=Equipment.kind)
    items = db.session.scalars(sa.select(Equipment).where(Equipment.site_id == site_id, Equipment.active)
                               .order_by(kinds, Equipment.code).limit(BENCH_MAX))
    return [BenchChoice(item, unusable_reasons(item, day, site_id)) for item in items]


def equipment_of_batch(batch_id: int) -> list[BatchEquipment]:
    """What a batch was made with, as copied onto its record (one statement)."""
    return list(db.session.scalars(sa.select(BatchEquipment).where(BatchEquipment.batch_id == batch_id)
                                   .order_by(BatchEquipment.id)))
