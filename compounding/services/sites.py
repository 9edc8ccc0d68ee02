"""Sites and storage locations: who belongs where, where stock is put, what a user may see.

Every lot, batch and vial is at one location (so at one site). Receiving and compounding put
stock at the location asked for, else the acting site's default location. A user acts at the
sites they belong to; auditors and chain-wide accounts (`all_sites`) see every site.
"""

from collections.abc import Iterable

import sqlalchemy as sa

from ..extensions import db
from ..models import Location, Site, User, UserSite
from ..models.site import MAIN_SITE
from .errors import InvalidInput, NotAllowed, NotFound

# Roles that read the whole chain whatever their memberships.
CHAIN_WIDE_ROLES = frozenset({"auditor"})


def main_site() -> Site:
    site = db.session.scalar(sa.select(Site).where(Site.code == MAIN_SITE))
    if site is None:
        raise NotFound("Site MAIN is missing: the database was not set up by this application.")
    return site


def get_site(site_id: int) -> Site:
    site = db.session.get(Site, site_id) if isinstance(site_id, int) else None
    if site is None:
        raise NotFound(f"There is no site {site_id}.")
    return site


def site_by_code(code: str) -> Site:
    site = db.session.scalar(sa.select(Site).where(Site.code == (code or "").strip().upper()))
    if site is None:
        raise InvalidInput(f"There is no site {code!r}.", field="site")
    return site


def get_location(location_id: int, *, for_update: bool = False) -> Location:
    query = sa.select(Location).where(Location.id == location_id)
    if for_update:
        query = query.with_for_update()
    location = db.session.scalar(query) if isinstance(location_id, int) else None
    if location is None:
        raise NotFound(f"There is no location {location_id}.")
    return location


def sees_all_sites(user: User | None) -> bool:
    return user is not None and (user.all_sites or user.role in CHAIN_WIDE_ROLES)


def member_site_ids(user: User) -> list[int]:
    """The sites a user belongs to, in site order (MAIN, the first made, first)."""
    return list(db.session.scalars(sa.select(UserSite.site_id).where(UserSite.user_id == user.id)
                                   .order_by(UserSite.site_id)))


def visible_site_ids(user: User | None) -> frozenset[int] | None:
    """The sites whose stock a user sees: None for every site (auditors, chain-wide accounts)."""
    if user is None or sees_all_sites(user):
        return None
    return frozenset(member_site_ids(user))


def may_act_at(user: User, site_id: int) -> bool:
    return user.all_sites or site_id in member_site_ids(user)


def ensure_at_site(user: User, site_id: int, doing: str) -> None:
    """Refuse (403) an action at a site the user does not belong to."""
    if not may_act_at(user, site_id):
        site = get_site(site_id)
        raise NotAllowed(f"You do not belong to site {site.code}: you cannot {doing} there.")


def default_location(site_id: int) -> Location:
    location = db.session.scalar(sa.select(Location).where(Location.site_id == site_id, Location.is_default))
    if location is None:
        raise InvalidInput(f"Site {get_site(site_id).code} has no default location: choose one.", field="location_id")
    return location


def acting_site_id(user: User, site_id: int | None = None) -> int:
    """The site a user acts at: the one asked for (theirs), else their first site, else MAIN."""
    if site_id is not None:
        ensure_at_site(user, site_id, "work")
        return site_id
    mine = member_site_ids(user)
    return mine[0] if mine else main_site().id


def resolve_location(user: User, location_id: int | None = None, site_id: int | None = None,
                     doing: str = "put stock") -> Location:
    """Where stock goes: the location asked for (active, at a site of the user's), else the acting
    site's default location."""
    if location_id is None:
        return default_location(acting_site_id(user, site_id))
    location = get_location(location_id)
    if not location.active:
        raise InvalidInput(f"{location.label} ({location.name}) is no longer in use.", field="location_id")
    if site_id is not None and location.site_id != site_id:
        raise InvalidInput(f"{location.label} is not at the site asked for.", field="location_id")
    ensure_at_site(user, location.site_id, doing)
    return location


def place(item, location: Location) -> None:
    """Put a lot, batch or vial at a location (and so at its site)."""
    item.location_id = location.id
    item.site_id = location.site_id


def join_sites(user: User, site_ids: Iterable[int]) -> None:
    """Memberships for a user (part of the caller's transaction); ones they have already are kept."""
    have = set(member_site_ids(user)) if user.id is not None else set()
    for site_id in dict.fromkeys(site_ids):
        if site_id not in have:
            db.session.add(UserSite(user_id=user.id, site_id=site_id))
    db.session.flush()
