"""Dashboard figures: each a single aggregate statement with a bounded number of rows (a team's qualifications:
three, whatever its size).

Each takes `site_ids`, the viewer's scope (None: every site): stock, batches and sessions are
counted where they are (`site_filters`), so a clinic's dashboard shows the clinic.
"""

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from itertools import pairwise

import sqlalchemy as sa

from ..charts import Series
from ..extensions import db
from ..models import (
    AdverseEvent,
    Batch,
    BatchStatus,
    Equipment,
    Excursion,
    ExcursionItem,
    Formula,
    Location,
    Lot,
    LotStatus,
    Patient,
    SessionUse,
    Site,
    TreatmentSession,
    User,
    UserSite,
)
from ..models.treatment import ADVERSE_EVENT_TYPES, SEVERITIES
from ..permissions import ROLES, role_can
from .clock import clinic_today, start_of_clinic_day, utcnow
from .qualifications import Standing, judge, records_of, required_kinds
from .site_filters import SiteIds, at_sites, batch_at_sites

WEEKS = 13


def _week_labels(first_day: date, weeks: int = WEEKS) -> list[str]:
    return [(first_day + timedelta(weeks=i)).strftime("%d %b") for i in range(weeks)]


def expiry_by_week(today: date | None = None, *, site_ids: SiteIds):
    """Lots in stock expiring in each of the next 13 weeks, released vs in quarantine."""
    today = today or clinic_today()
    end = today + timedelta(weeks=WEEKS)
    rows = db.session.execute(
        sa.select(Lot.expires_on, Lot.status, sa.func.count(Lot.id))
        .where(at_sites(Lot.site_id, site_ids), Lot.expires_on >= today, Lot.expires_on < end, Lot.remaining > 0,
               Lot.status.in_((LotStatus.RELEASED, LotStatus.QUARANTINE)))
        .group_by(Lot.expires_on, Lot.status)).all()
    counts = {status: [0] * WEEKS for status in (LotStatus.RELEASED, LotStatus.QUARANTINE)}
    for expires_on, status, count in rows:
        counts[status][(expires_on - today).days // 7] += count
    return _week_labels(today), [Series("released", counts[LotStatus.RELEASED], "#0f766e"),
                                 Series("in quarantine", counts[LotStatus.QUARANTINE], "#b45309")]


def activity_by_week(today: date | None = None, *, site_ids: SiteIds):
    """Batches compounded and treatment sessions per week over the last 13 weeks.

    Each week is a count over a time range of an index (26 counts in one statement), rather
    than a pass that groups a quarter's sessions by day. Sessions are found on
    (performed_at, id) alone: the few voided ones are left out by id.
    """
    today = today or clinic_today()
    first = today - timedelta(weeks=WEEKS - 1, days=today.weekday())
    # Weeks of the clinic's days: a session at 00:30 on a Monday in the clinic's zone is that week's.
    bounds = [start_of_clinic_day(first + timedelta(weeks=i)) for i in range(WEEKS + 1)]
    voided = sa.select(TreatmentSession.id).where(TreatmentSession.voided_at.is_not(None)).correlate(None)

    def weekly(column, *where):
        return [sa.select(sa.func.count()).where(column >= start, column < end, *where).scalar_subquery()
                for start, end in pairwise(bounds)]

    counts = db.session.execute(sa.select(
        *weekly(Batch.compounded_at, at_sites(Batch.site_id, site_ids)),
        *weekly(TreatmentSession.performed_at, at_sites(TreatmentSession.site_id, site_ids),
                TreatmentSession.id.not_in(voided)))).one()
    return _week_labels(first), [Series("batches compounded", list(counts[:WEEKS]), "#1d4ed8"),
                                 Series("treatment sessions", list(counts[WEEKS:]), "#0f766e")]


def adverse_events_by_type(days: int = 91, *, site_ids: SiteIds):
    """Adverse events recorded in the last `days` days (after sessions at the sites in scope) by type,
    stacked by severity."""
    since = utcnow() - timedelta(days=days)
    query = (sa.select(AdverseEvent.type, AdverseEvent.severity, sa.func.count(AdverseEvent.id))
             .where(AdverseEvent.recorded_at >= since).group_by(AdverseEvent.type, AdverseEvent.severity))
    if site_ids is not None:
        query = query.join(TreatmentSession, TreatmentSession.id == AdverseEvent.session_id).where(
            at_sites(TreatmentSession.site_id, site_ids))
    rows = db.session.execute(query).all()
    table: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for kind, severity, count in rows:
        table[kind][severity] += count
    kinds = [k for k in ADVERSE_EVENT_TYPES if k in table]
    colours = {"mild": "#0f766e", "moderate": "#b45309", "severe": "#b91c1c"}
    return [k.replace("_", " ") for k in kinds], [
        Series(severity, [table[k][severity] for k in kinds], colours[severity]) for severity in SEVERITIES]


def released_batches_by_bud(now: datetime | None = None, limit: int = 12, *, site_ids: SiteIds):
    """Remaining volume of the released batches that expire first (labels: code and hours left)."""
    now = now or utcnow()
    rows = db.session.execute(
        sa.select(Batch.code, Batch.remaining_volume_ml, Batch.beyond_use_at)
        .where(Batch.status == BatchStatus.RELEASED, Batch.beyond_use_at > now, Batch.remaining_volume_ml > 0,
               batch_at_sites(site_ids))
        .order_by(Batch.beyond_use_at).limit(limit)).all()
    # The day's sequence number after "B" and the six digits of the date (four digits, or more).
    labels = [f"{code[7:]} · {max(0, int((bud - now).total_seconds() // 3600))} h" for code, _, bud in rows]
    return labels, [Series("remaining mL", [float(volume) for _, volume, _ in rows], "#6d28d9")], rows


def batches_awaiting_verification(limit: int = 10, *, site_ids: SiteIds):
    """Prepared batches, oldest first, at the sites in scope (a batch is verified where it was made)."""
    return db.session.execute(
        sa.select(Batch.id, Batch.code, Batch.compounded_at, Batch.beyond_use_at, Formula.code.label("formula"))
        .join(Formula, Formula.id == Batch.formula_id)
        .where(Batch.status == BatchStatus.PREPARED, at_sites(Batch.site_id, site_ids))
        .order_by(Batch.compounded_at).limit(limit)).all()


def batches_usable_now(now: datetime | None = None, limit: int = 12, *, site_ids: SiteIds):
    """Released batches with volume left, soonest BUD first, at the sites in scope or with a vial there."""
    now = now or utcnow()
    return db.session.execute(
        sa.select(Batch.id, Batch.code, Batch.remaining_volume_ml, Batch.beyond_use_at, Formula.name.label("formula"))
        .join(Formula, Formula.id == Batch.formula_id)
        .where(Batch.status == BatchStatus.RELEASED, Batch.beyond_use_at > now, Batch.remaining_volume_ml > 0,
               batch_at_sites(site_ids))
        .order_by(Batch.beyond_use_at).limit(limit)).all()


def sessions_today(practitioner_id: int | None = None, limit: int = 20, *, site_ids: SiteIds):
    today = clinic_today()
    query = (sa.select(TreatmentSession.id, TreatmentSession.performed_at, TreatmentSession.patient_id,
                       Patient.chart_number, Patient.name, sa.func.count(SessionUse.id).label("uses"))
             .join(Patient, Patient.id == TreatmentSession.patient_id)
             .outerjoin(SessionUse, SessionUse.session_id == TreatmentSession.id)
             .where(TreatmentSession.performed_at >= start_of_clinic_day(today),
                    TreatmentSession.voided_at.is_(None), at_sites(TreatmentSession.site_id, site_ids))
             .group_by(TreatmentSession.id, TreatmentSession.performed_at, TreatmentSession.patient_id,
                       Patient.chart_number, Patient.name)
             .order_by(TreatmentSession.performed_at.desc()).limit(limit))
    if practitioner_id is not None:
        query = query.where(TreatmentSession.practitioner_id == practitioner_id)
    return db.session.execute(query).all()


def batch_counts(now: datetime | None = None, *, site_ids: SiteIds) -> dict:
    """Batches awaiting verification or test results (at their site), and released batches reaching their BUD
    within 24 h (at the sites in scope or with a vial there).

    Counts that each stay on an index (status, and status + beyond-use time), rather
    than one pass over every batch ever made.
    """
    now = now or utcnow()
    here = at_sites(Batch.site_id, site_ids)
    awaiting = sa.select(sa.func.count(Batch.id)).where(Batch.status == BatchStatus.PREPARED, here).scalar_subquery()
    testing = sa.select(sa.func.count(Batch.id)).where(Batch.status == BatchStatus.AWAITING_TESTS,
                                                       here).scalar_subquery()
    expiring = sa.select(sa.func.count(Batch.id)).where(
        batch_at_sites(site_ids), Batch.status == BatchStatus.RELEASED, Batch.beyond_use_at > now,
        Batch.beyond_use_at <= now + timedelta(hours=24), Batch.remaining_volume_ml > 0).scalar_subquery()
    row = db.session.execute(sa.select(awaiting.label("awaiting_verification"), testing.label("awaiting_tests"),
                                       expiring.label("expiring_24h"))).one()
    return row._asdict()


def open_excursions(limit: int = 10, *, site_ids: SiteIds):
    """Excursions not yet decided at the sites in scope, oldest first, with their place, held items and how many
    there are in all (`total`, counted over every row, not only those returned): one statement."""
    held = (sa.select(sa.func.count(ExcursionItem.id)).where(ExcursionItem.excursion_id == Excursion.id)
            .correlate(Excursion).scalar_subquery())
    return db.session.execute(
        sa.select(Excursion.id, Excursion.started_at, Excursion.ended_at, Excursion.high_celsius,
                  Excursion.low_celsius, Location.id.label("location_id"), Location.code.label("location_code"),
                  Location.name.label("location_name"), held.label("held"),
                  sa.func.count().over().label("total"))
        .join(Location, Location.id == Excursion.location_id)
        .where(Excursion.decided_at.is_(None), at_sites(Excursion.site_id, site_ids))
        .order_by(Excursion.started_at).limit(limit)).all()


# --- people and equipment: what stops the bench soon --------------------------------------------------------

# Whose qualifications the bench needs (compound_batch and verify_batch ask for them).
QUALIFIED_ROLES = tuple(role for role in ROLES
                        if role_can(role, "batches.compound") or role_can(role, "batches.verify"))
EQUIPMENT_DUE_DAYS = 30
STATE_LABELS = {"due_soon": "due soon", "lapsed": "lapsed", "failed": "failed", "initial": "incomplete",
                "missing": "never recorded", "valid": "valid"}


@dataclass(frozen=True)
class QualificationDue:
    """One person's required qualification that is not valid for the next DUE_SOON_DAYS."""

    user_id: int
    name: str
    standing: Standing

    @property
    def tone(self) -> str:
        """Red for what already stops the bench (lapsed, failed, incomplete, never recorded), amber for due soon."""
        return "warning" if self.standing.state == "due_soon" else "danger"

    @property
    def label(self) -> str:
        return STATE_LABELS[self.standing.state]

    @property
    def state_text(self) -> str:
        """What the standing says, without the kind's name ("due, valid until 2027-01-31")."""
        return self.standing.text.removeprefix(f"{self.standing.kind_name}: ")

    @property
    def day(self) -> date | None:
        return self.standing.valid_until or self.standing.failed_on


def _sorted_due(due: list[QualificationDue]) -> list[QualificationDue]:
    # What stops the bench first, then the soonest date.
    return sorted(due, key=lambda d: (d.tone != "danger", d.day or date.min, d.name, d.standing.kind_name))


def qualifications_due(today: date | None = None, limit: int = 20, *, site_ids: SiteIds,
                       members_only: bool = False) -> tuple[list[QualificationDue], int]:
    """Who compounds or verifies at the sites in scope (members, and chain-wide accounts unless `members_only`)
    and holds a required qualification lapsed, failed, incomplete or never recorded, or due within
    DUE_SOON_DAYS; the first `limit` and how many there are. Three statements whatever the size of the team."""
    today = today or clinic_today()
    kinds = required_kinds()
    members = sa.exists().where(UserSite.user_id == User.id, at_sites(UserSite.site_id, site_ids))
    people = db.session.execute(
        sa.select(User.id, User.display_name)
        .where(User.active, User.role.in_(QUALIFIED_ROLES),
               sa.true() if site_ids is None else members if members_only else sa.or_(User.all_sites, members))
        .order_by(User.display_name)).all() if kinds else []
    if not people:
        return [], 0
    records = records_of([person.id for person in people], [kind.id for kind in kinds])
    due = [QualificationDue(person.id, person.display_name, standing) for person in people for kind in kinds
           if (standing := judge(kind, records.get((person.id, kind.id), []), today)).state != "valid"]
    return _sorted_due(due)[:limit], len(due)


def own_qualifications_due(user: User, today: date | None = None) -> list[QualificationDue]:
    """The viewer's own required qualifications that are not valid for the next DUE_SOON_DAYS (two statements)."""
    today = today or clinic_today()
    kinds = required_kinds()
    records = records_of([user.id], [kind.id for kind in kinds]) if kinds else {}
    due = [QualificationDue(user.id, user.display_name, standing) for kind in kinds
           if (standing := judge(kind, records.get((user.id, kind.id), []), today)).state != "valid"]
    return _sorted_due(due)


def equipment_due(today: date | None = None, limit: int = 20, *, site_ids: SiteIds,
                  days: int = EQUIPMENT_DUE_DAYS):
    """Active equipment at the sites in scope that is out of service, overdue or due within `days`, the most
    urgent first, each row with `total` (how many there are): one statement."""
    today = today or clinic_today()
    overdue = sa.or_(Equipment.out_of_service, Equipment.due_on < today)
    return db.session.execute(
        sa.select(Equipment.id, Equipment.code, Equipment.name, Equipment.due_on, Equipment.out_of_service,
                  overdue.label("stops"), Site.code.label("site_code"), sa.func.count().over().label("total"))
        .join(Site, Site.id == Equipment.site_id)
        .where(Equipment.active, at_sites(Equipment.site_id, site_ids),
               sa.or_(Equipment.out_of_service, Equipment.due_on <= today + timedelta(days=days)))
        .order_by(sa.case((overdue, 0), else_=1), Equipment.due_on, Equipment.code).limit(limit)).all()
