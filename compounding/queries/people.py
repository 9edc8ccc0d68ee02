"""What the people pages, the qualifications API and workbook read: who works at the sites in scope, their
standings per kind (judged in Python from one statement of records), and their records.

A person is at a site by membership (`user_sites`); a chain-wide account (`all_sites`) may act at every
site, so it is at each. The team is everyone active who compounds or verifies there.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date

import sqlalchemy as sa
from sqlalchemy.orm import aliased

from ..extensions import db
from ..models import Qualification, QualificationKind, Site, User, UserSite
from ..pagination import EntityPagination, paginate_entities, paginate_rows
from ..permissions import ROLES, role_can
from ..services import sites
from ..services.clock import clinic_today
from ..services.qualifications import DUE_SOON_DAYS, Standing, active_kinds, judge
from .scope import SiteIds, at_sites

# Whoever compounds or verifies must be qualified; they are the team.
TEAM_ROLES = tuple(role for role in ROLES if role_can(role, "batches.compound") or role_can(role, "batches.verify"))
# A standing in these states needs attention ("due within" the horizon, given to judge).
DUE_STATES = ("due_soon", "lapsed", "failed", "initial")
DUE_WITHIN_MAX = 3660


def people_at_sites(site_ids: SiteIds) -> sa.ColumnElement[bool]:
    """A user at the sites in scope: a member of one, or a chain-wide account."""
    if site_ids is None:
        return sa.true()
    member = sa.exists().where(UserSite.user_id == User.id, at_sites(UserSite.site_id, site_ids))
    return sa.or_(User.all_sites, member)


def may_see_person(viewer: User, person_id: int) -> bool:
    """Whether `viewer` sees this person's qualifications: their own, or (with qualifications.read) a person at
    one of the viewer's sites; admins, who manage every account, see everyone."""
    if viewer.id == person_id:
        return True
    if not viewer.can("qualifications.read"):
        return False
    scope = None if viewer.can("users.manage") else sites.visible_site_ids(viewer)
    found = sa.select(User.id).where(User.id == person_id, people_at_sites(scope))
    return db.session.scalar(found) is not None


def is_due(kind: QualificationKind, standing: Standing) -> bool:
    """Needs attention: due soon, lapsed, failed, an initial series not finished, or a required kind never
    recorded (an optional kind never taken is no gap)."""
    return standing.state in DUE_STATES or (standing.state == "missing" and kind.required)


@dataclass
class TeamFilters:
    kind: str = ""  # a kind's code: its column only
    due: bool = False  # only people with a standing due within DUE_SOON_DAYS

    @classmethod
    def from_args(cls, args) -> "TeamFilters":
        """An unknown kind is no filter (the page lists the kinds there are)."""
        return cls(kind=(args.get("kind") or "").strip(), due=args.get("due") in ("1", "on", "yes", "true"))

    def shown(self, kinds: Sequence[QualificationKind]) -> list[QualificationKind]:
        """The kinds whose columns show: the one chosen, else every one given (the active kinds)."""
        chosen = [k for k in kinds if k.code == self.kind]
        return chosen or list(kinds)


def team_query(site_ids: SiteIds):
    """Active accounts that compound or verify at the sites in scope, by name."""
    return (sa.select(User).where(User.active, User.role.in_(TEAM_ROLES), people_at_sites(site_ids))
            .order_by(User.display_name_key, User.id))


def records_by_person(user_ids: Iterable[int] | sa.Select, kind_ids: Sequence[int]) -> dict[tuple[int, int], list]:
    """Every record of these people (ids, or a select of ids) in these kinds, by (user, kind), in one statement."""
    ids = user_ids if isinstance(user_ids, sa.Select) else list(user_ids)
    query = sa.select(Qualification).where(Qualification.user_id.in_(ids), Qualification.kind_id.in_(kind_ids))
    grouped: dict[tuple[int, int], list] = {}
    for record in db.session.scalars(query.order_by(Qualification.passed_on, Qualification.id)):
        grouped.setdefault((record.user_id, record.kind_id), []).append(record)
    return grouped


def judged(user_id: int, kinds: Sequence[QualificationKind], grouped: dict, day: date,
           due_days: int = DUE_SOON_DAYS) -> list[Standing]:
    return [judge(kind, grouped.get((user_id, kind.id), []), day, due_days=due_days) for kind in kinds]


@dataclass
class TeamRow:
    user: User
    standings: list[Standing] = field(default_factory=list)


@dataclass
class TeamPage:
    pagination: EntityPagination
    kinds: list[QualificationKind]
    rows: list[TeamRow]


def team_page(filters: TeamFilters, *, site_ids: SiteIds, per_page: int,
              kinds: Sequence[QualificationKind] | None = None) -> TeamPage:
    """A page of the team with each one's standing per kind, in a fixed number of statements.

    Without the due filter the page's people are picked in SQL and their records read in one
    statement. With it, everyone in scope is judged (one statement of ids, one of records: a
    team is tens of people) and the page is picked among those due.
    """
    kinds = filters.shown(active_kinds() if kinds is None else kinds)
    kind_ids = [k.id for k in kinds]
    day = clinic_today()
    query = team_query(site_ids)
    if filters.due:
        people = list(db.session.scalars(query.with_only_columns(User.id)))
        grouped = records_by_person(people, kind_ids)
        due = [pid for pid in people if any(is_due(k, s) for k, s in zip(kinds, judged(pid, kinds, grouped, day),
                                                                       strict=True))]
        query = query.where(User.id.in_(due))
        pagination = paginate_entities(query, User.id, per_page=per_page)
    else:
        pagination = paginate_entities(query, User.id, per_page=per_page)
        grouped = records_by_person([u.id for u in pagination.items], kind_ids) if pagination.items else {}
    rows = [TeamRow(user, judged(user.id, kinds, grouped, day)) for user in pagination.items]
    return TeamPage(pagination, kinds, rows)


def team_standings(filters: TeamFilters, *, site_ids: SiteIds,
                   due_days: int = DUE_SOON_DAYS) -> tuple[list[QualificationKind], list[TeamRow]]:
    """Every person of the team (the due filter applied, "due soon" within `due_days`) with their standings:
    the workbook's first sheet, and the command line's list of who is due."""
    kinds = filters.shown(active_kinds())
    people = list(db.session.scalars(team_query(site_ids)))
    grouped = records_by_person([p.id for p in people], [k.id for k in kinds]) if people else {}
    day = clinic_today()
    rows = [TeamRow(person, judged(person.id, kinds, grouped, day, due_days)) for person in people]
    if filters.due:
        rows = [row for row in rows if any(is_due(k, s) for k, s in zip(kinds, row.standings, strict=True))]
    return kinds, rows


# --- records ---------------------------------------------------------------------------------------------

Recorder = aliased(User, name="recorder")
Voider = aliased(User, name="voider")


def record_rows():
    """Records with their person, kind and who recorded and voided them: one row each."""
    return (sa.select(Qualification, User.username, User.display_name, QualificationKind.code.label("kind_code"),
                      QualificationKind.name.label("kind_name"), Recorder.display_name.label("recorded_by"),
                      Voider.display_name.label("voided_by"))
            .join(User, User.id == Qualification.user_id)
            .join(QualificationKind, QualificationKind.id == Qualification.kind_id)
            .outerjoin(Recorder, Recorder.id == Qualification.recorded_by_id)
            .outerjoin(Voider, Voider.id == Qualification.voided_by_id))


def person_records(user_id: int, per_page: int):
    """A person's whole history, newest first: voided records stay, struck through."""
    order = (Qualification.passed_on.desc(), Qualification.id.desc())
    keys = sa.select(Qualification.id).where(Qualification.user_id == user_id).order_by(*order)
    return paginate_rows(record_rows().order_by(*order), per_page, keys=keys)


@dataclass
class RecordFilters:
    user_id: int | None = None
    kind: str = ""
    due_within: int | None = None  # days: only each person's current record of a kind due within them


def current_due_record_ids(filters: RecordFilters, site_ids: SiteIds, kinds: Sequence[QualificationKind]) -> list[int]:
    """The record that decides each (active person, kind) standing due within `filters.due_within` days.

    A standing read from no record (never recorded) has none to list; the person's standings say so.
    """
    people = sa.select(User.id).where(User.active, people_at_sites(site_ids))
    if filters.user_id is not None:
        people = people.where(User.id == filters.user_id)
    judged_kinds = {k.id: k for k in kinds if k.active}
    grouped = records_by_person(people, list(judged_kinds))
    day = clinic_today()
    ids = []
    for (_, kind_id), records in grouped.items():
        standing = judge(judged_kinds[kind_id], records, day, due_days=filters.due_within)
        counted = [r for r in records if r.voided_at is None and r.passed_on <= day]
        if standing.state in DUE_STATES and counted:
            ids.append(max(counted, key=lambda r: (r.passed_on, r.id)).id)
    return ids


def record_list(filters: RecordFilters, *, site_ids: SiteIds, kinds: Sequence[QualificationKind], per_page: int):
    """Records of people at the sites in scope, newest first; `kinds` are those the filter names (all of them,
    voided kinds' too, when none is named)."""
    order = (Qualification.passed_on.desc(), Qualification.id.desc())
    keys = (sa.select(Qualification.id).join(User, User.id == Qualification.user_id)
            .where(people_at_sites(site_ids), Qualification.kind_id.in_([k.id for k in kinds])))
    if filters.user_id is not None:
        keys = keys.where(Qualification.user_id == filters.user_id)
    if filters.due_within is not None:
        keys = keys.where(Qualification.id.in_(current_due_record_ids(filters, site_ids, kinds)))
    return paginate_rows(record_rows().order_by(*order), per_page, keys=keys.order_by(*order))


def team_records(user_ids: Sequence[int], kind_ids: Sequence[int]):
    """The records of these people and kinds with names, by person, kind and day: the workbook's rows."""
    return (record_rows().where(Qualification.user_id.in_(user_ids), Qualification.kind_id.in_(kind_ids))
            .order_by(User.display_name_key, User.id, QualificationKind.id, Qualification.passed_on, Qualification.id))


def member_sites(user_ids: Sequence[int]) -> dict[int, list[str]]:
    """{user id: codes of the sites they belong to} for a page of people, in one statement."""
    found: dict[int, list[str]] = {}
    if user_ids:
        rows = db.session.execute(sa.select(UserSite.user_id, Site.code).join(Site, Site.id == UserSite.site_id)
                                  .where(UserSite.user_id.in_(list(user_ids))).order_by(Site.id))
        for user_id, code in rows:
            found.setdefault(user_id, []).append(code)
    return found
