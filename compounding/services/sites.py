"""Sites and storage locations: who belongs where, where stock is put, what a user may see.

Every lot, batch and vial is at one location (so at one site). Receiving and compounding put
stock at the location asked for, else the acting site's default location. A user acts at the
sites they belong to; auditors and chain-wide accounts (`all_sites`) see every site.
"""

import re
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from functools import cache
from zoneinfo import available_timezones

import sqlalchemy as sa
from flask import current_app

from ..extensions import db
from ..limits import NAME_MAX, NOTE_MAX, REASON_MAX
from ..models import Batch, Equipment, Excursion, Location, Lot, Site, StockMove, User, UserSite, Vial
from ..models.cold_chain import DEFAULT_READINGS_PER_DAY
from ..models.site import LOCATION_CODE_MAX, LOCATION_KINDS, MAIN_SITE, TIMEZONE_MAX
from ..models.vial import VialStatus
from . import audit, codes
from .access import ensure_can
from .bounds import checked_text
from .clock import to_clinic, utcnow
from .errors import InvalidInput, InvalidState, NotAllowed, NotFound
from .transaction import transactional

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


def get_location(location_id: int, *, for_update: bool = False, for_share: bool = False) -> Location:
    """A location; `for_share` keeps it from being deactivated until the caller's transaction ends."""
    query = sa.select(Location).where(Location.id == location_id)
    if for_update or for_share:
        query = query.with_for_update(read=not for_update)
    location = db.session.scalar(query) if isinstance(location_id, int) else None
    if location is None:
        raise NotFound(f"There is no location {location_id}.")
    return location


def sees_all_sites(user: User | None) -> bool:
    return user is not None and (user.all_sites or user.role in CHAIN_WIDE_ROLES)


def sees_whole_chain(user: User | None) -> bool:
    """Whether a user sees every site: an auditor, a chain-wide account, or a member of each site there is (in a
    one-site clinic, everyone)."""
    if user is None or sees_all_sites(user):
        return user is not None
    outside = sa.select(Site.id).where(~Site.id.in_(sa.select(UserSite.site_id).where(UserSite.user_id == user.id)))
    return db.session.scalar(outside.limit(1)) is None


def ensure_whole_chain(user: User | None, what: str) -> None:
    """Refuse (403) the chain-wide records (the audit trail, the patient access log) to a user of some sites only.

    Their rows cannot all be tied to a site; admins, who manage every site's accounts, read them too.
    """
    if user is not None and user.role == "admin":
        return
    if not sees_whole_chain(user):
        raise NotAllowed(f"{what} holds the whole chain's records: it is for auditors and chain-wide accounts "
                         "(or members of every site). Ask an auditor, or read your sites' own pages.")


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


def ensure_item_at_site(actor: User | None, item, doing: str) -> None:
    """Refuse (403) an action on a lot, batch or vial kept at a site the actor does not belong to (`actor` None:
    the operator at the server's command line). Called by every write service on one item, after it is read."""
    if actor is not None:
        ensure_at_site(actor, item.site_id, doing)


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
        location_id = default_location(acting_site_id(user, site_id)).id
    # Shared lock: a deactivation (which locks the row and counts its stock) waits for this receipt.
    location = get_location(location_id, for_share=True)
    if not location.active:
        raise InvalidState(f"{location.label} ({location.name}) is no longer in use.", field="location_id")
    if site_id is not None and location.site_id != site_id:
        raise InvalidInput(f"{location.label} is not at the site asked for.", field="location_id")
    ensure_at_site(user, location.site_id, doing)
    ensure_takes_stock(location)
    return location


def open_excursion_at(location_id: int) -> Excursion | None:
    return db.session.scalar(sa.select(Excursion).where(Excursion.location_id == location_id,
                                                        Excursion.ended_at.is_(None))
                             .order_by(Excursion.started_at).limit(1))


def ensure_takes_stock(location: Location) -> None:
    """Refuse (409) to put stock into a location with an open excursion (or inside one that has).

    The places are share-locked until the caller's transaction ends: a reading that opens an
    excursion there (which locks its location's row) waits for this stock, and then holds it.
    """
    places = _enclosing(location)
    db.session.execute(sa.select(Location.id).where(Location.id.in_(places)).with_for_update(read=True))
    for place_id in places:
        excursion = open_excursion_at(place_id)
        if excursion is not None:
            where = db.session.get(Location, place_id)
            raise InvalidState(
                f"{where.label} ({where.name}) has an open temperature excursion ({excursion.code}, since "
                f"{shown_moment(excursion.started_at)}): no stock goes in until it is back in range.",
                field="location_id", details={"excursion_id": excursion.id})


def _enclosing(location: Location) -> list[int]:
    """The location and, up its tree, the places whose range it keeps (those without a range of their own)."""
    ids, current = [location.id], location
    while not (current.min_celsius is not None or current.max_celsius is not None) and current.parent_id is not None:
        current = db.session.get(Location, current.parent_id)
        ids.append(current.id)
    return ids


_KIND = {Lot: "lot", Batch: "batch", Vial: "vial"}


def _inside(location: Location) -> list[int]:
    """The places inside a location, at any depth."""
    rows = db.session.execute(sa.select(Location.id, Location.parent_id).where(
        Location.site_id == location.site_id)).all()
    children: dict[int | None, list[int]] = {}
    for row in rows:
        children.setdefault(row.parent_id, []).append(row.id)
    found, todo = [], [location.id]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def shown_moment(moment) -> str:
    local = to_clinic(moment)
    return f"{local:%Y-%m-%d %H:%M} {local.tzname()}"


def place(item, location: Location) -> None:
    """Put a lot, batch or vial at a location (and so at its site); a move of an item already somewhere
    is kept (`stock_moves`) for the cold chain's question "what was stored there then?"."""
    if item.id is not None and item.location_id is not None and item.location_id != location.id:
        db.session.add(StockMove(entity_type=_KIND[type(item)], entity_id=item.id,
                                 from_location_id=item.location_id, to_location_id=location.id, moved_at=utcnow()))
    item.location_id = location.id
    item.site_id = location.site_id


def join_sites(user: User, site_ids: Iterable[int]) -> None:
    """Memberships for a user (part of the caller's transaction); ones they have already are kept."""
    have = set(member_site_ids(user)) if user.id is not None else set()
    for site_id in dict.fromkeys(site_ids):
        if site_id not in have:
            db.session.add(UserSite(user_id=user.id, site_id=site_id))
    db.session.flush()


# --- Managing sites and locations (sites.manage) and memberships (users.manage) -------------------

SITE_CODE = re.compile(r"^[A-Z0-9-]{2,12}$")
# A code typed for a location: upper-case letters, digits and hyphens, starting with a letter.
GIVEN_LOCATION_CODE = re.compile(rf"^[A-Z][A-Z0-9-]{{1,{LOCATION_CODE_MAX - 1}}}$")
# L or B then a digit: what a scanner takes for a lot, a batch or a vial, however long.
_LIKE_STOCK = re.compile(r"^[LB]\d")
DEFAULT_LOCATION_NAME = "Main store"
SITE_FIELDS = ("code", "name", "timezone", "address", "active")
LOCATION_FIELDS = ("code", "name", "kind", "parent_id", "min_celsius", "max_celsius", "readings_per_day", "active",
                   "is_default")
# A location's reading schedule: from once a day to every quarter of an hour.
READINGS_PER_DAY_MIN, READINGS_PER_DAY_MAX = 1, 96
# A thermometer's plausible span (the reading rule of section 10.5 uses the same bounds).
CELSIUS_MIN, CELSIUS_MAX = Decimal("-90"), Decimal("60")
# A vial still holding something to use, wherever its status stands.
_VIALS_HELD = (VialStatus.SEALED, VialStatus.OPEN, VialStatus.ON_HOLD, VialStatus.RECALLED, VialStatus.IN_TRANSIT)


def _manages(actor: User | None, site_id: int | None = None) -> None:
    """`actor` None is the operator at the server's command line (as for `create-user`). A site's locations
    and settings are managed by its own members; admins and chain-wide accounts manage every site."""
    if actor is None:
        return
    ensure_can(actor, "sites.manage", "manage sites and storage locations")
    if site_id is not None and actor.role != "admin":
        ensure_at_site(actor, site_id, "manage its locations")


# Names the time zone database ships that are no place: the host's own setting, the POSIX rule file, the
# build placeholder, and the copies under right/ and posix/ (leap seconds, or not).
_NOT_PLACES = frozenset({"localtime", "posixrules", "Factory"})


@cache
def _time_zones() -> frozenset[str]:
    return frozenset(zone for zone in available_timezones()
                     if zone not in _NOT_PLACES and not zone.startswith(("right/", "posix/")))


def _checked_zone(timezone: str | None) -> str:
    zone = (timezone or "").strip() or current_app.config["CLINIC_TIMEZONE"]
    if len(zone) > TIMEZONE_MAX or zone not in _time_zones():
        raise InvalidInput(f"{zone!r} is not a time zone: give an IANA name such as Europe/Paris.",
                           field="timezone")
    return zone


def _checked_name(name: str, field: str = "name") -> str:
    return checked_text(name, field, NAME_MAX, required="A name is required.")


@transactional
def create_site(actor: User | None, code: str, name: str, timezone: str | None = None, address: str = "") -> Site:
    """A new site (code 2-12 upper-case letters, digits or hyphens, unique; a real IANA time zone) with
    its default location, a room called "Main store", where its receiving and compounding put stock."""
    _manages(actor)
    code = (code or "").strip().upper()  # as the form and the command line read it
    if not SITE_CODE.match(code):
        raise InvalidInput("A site code has 2 to 12 upper-case letters, digits or hyphens (LYON, MAD-01).",
                           field="code")
    name, zone = _checked_name(name), _checked_zone(timezone)
    address = checked_text((address or "").strip(), "address", NOTE_MAX)
    if db.session.scalar(sa.select(Site.id).where(Site.code == code)) is not None:
        raise InvalidState(f"Site {code} exists already.", field="code")
    site = Site(code=code, name=name, timezone=zone, address=address, active=True)
    db.session.add(site)
    db.session.flush()
    audit.created(actor, "site.created", site, SITE_FIELDS)
    store = Location(site_id=site.id, code=_new_location_code(), name=DEFAULT_LOCATION_NAME, kind="room",
                     is_default=True, active=True)
    db.session.add(store)
    db.session.flush()
    audit.created(actor, "location.created", store, LOCATION_FIELDS, extra={"site": site.code})
    return site


@transactional
def update_site(actor: User | None, site_id: int, *, name: str, timezone: str, address: str = "") -> Site:
    """Rename a site, change its time zone or address; its code, printed on labels and notes, stays."""
    _manages(actor, site_id)
    site = get_site(site_id)
    name, zone = _checked_name(name), _checked_zone(timezone)
    address = checked_text((address or "").strip(), "address", NOTE_MAX)
    with audit.change(actor, "site.updated", site, SITE_FIELDS, only_if_changed=True):
        site.name, site.timezone, site.address = name, zone, address
    return site


def _new_location_code() -> str:
    return codes.next_location_code(
        lambda code: db.session.scalar(sa.select(Location.id).where(Location.code == code)) is not None)


def _checked_location_code(code: str | None) -> str:
    """A code typed by hand: upper-case, unique, and never one a scanner would read as a lot, batch or vial."""
    code = (code or "").strip().upper()
    if not code:
        return _new_location_code()
    if _LIKE_STOCK.match(code) or any(pattern.match(code) for pattern in (
            codes.LOT_CODE, codes.BATCH_CODE, codes.VIAL_CODE, codes.LOOKS_LIKE_VIAL)):
        raise InvalidInput(f"{code} looks like a lot, batch or vial code: a scan would be misread.", field="code")
    if not GIVEN_LOCATION_CODE.match(code):
        raise InvalidInput(f"A location code has 2 to {LOCATION_CODE_MAX} upper-case letters, digits or hyphens, "
                           "starting with a letter (COLD-1), or is left blank for the next LOC number.",
                           field="code")
    if db.session.scalar(sa.select(Location.id).where(Location.code == code)) is not None:
        raise InvalidState(f"Location code {code} is taken.", field="code")
    if db.session.scalar(sa.select(Equipment.id).where(Equipment.code == code)) is not None:
        raise InvalidState(f"{code} is a piece of equipment's code: a scan would be misread.", field="code")
    return code


def _celsius(value, field: str) -> Decimal | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        degrees = Decimal(str(value).strip())
    except InvalidOperation:
        raise InvalidInput("A temperature in degrees Celsius, e.g. 2 or 7.5.", field=field) from None
    if not degrees.is_finite() or not CELSIUS_MIN <= degrees <= CELSIUS_MAX or degrees != round(degrees, 1):
        raise InvalidInput(f"Between {CELSIUS_MIN} and {CELSIUS_MAX} °C, at most one decimal.", field=field)
    return degrees


def _readings_per_day(value, default: int) -> int:
    if value is None or value == "":
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not (
            READINGS_PER_DAY_MIN <= value <= READINGS_PER_DAY_MAX):
        raise InvalidInput(f"Readings per day: a whole number from {READINGS_PER_DAY_MIN} to "
                           f"{READINGS_PER_DAY_MAX}.", field="readings_per_day")
    return value


def _checked_place(site_id: int, location_id: int | None, name: str, kind: str, parent_id, low, high,
                   current_parent: int | None = None):
    """Name, kind, parent and range of a location as given; the parent at the same site, never inside it."""
    name = _checked_name(name)
    if kind not in LOCATION_KINDS:
        raise InvalidInput(f"A location is a {', '.join(LOCATION_KINDS)}.", field="kind")
    low, high = _celsius(low, "min_celsius"), _celsius(high, "max_celsius")
    if low is not None and high is not None and low >= high:
        raise InvalidInput("The lowest allowed temperature must be below the highest.", field="max_celsius")
    if parent_id is not None:
        parent = get_location(parent_id) if isinstance(parent_id, int) else None
        if parent is None:
            raise InvalidInput(f"There is no location {parent_id}.", field="parent_id")
        if parent.site_id != site_id:
            raise InvalidInput(f"{parent.label} is at another site: a location sits inside its own site.",
                               field="parent_id")
        if not parent.active and parent_id != current_parent:
            raise InvalidState(f"{parent.label} ({parent.name}) is no longer in use: nothing goes inside it.",
                               field="parent_id")
        if location_id is not None and location_id in _ancestors(parent):
            raise InvalidInput("A location cannot sit inside itself or one of the places it holds.",
                               field="parent_id")
    clash = sa.select(Location.id).where(Location.site_id == site_id, Location.name == name)
    if location_id is not None:
        clash = clash.where(Location.id != location_id)
    if db.session.scalar(clash) is not None:
        raise InvalidState(f"The site already has a location called {name!r}.", field="name")
    return name, low, high


def _ancestors(location: Location) -> list[int]:
    """The location and every place above it (a tree is shallow: a room, a cabinet, a fridge)."""
    chain, seen = [], set()
    node = location
    while node is not None and node.id not in seen:
        seen.add(node.id)
        chain.append(node.id)
        node = db.session.get(Location, node.parent_id) if node.parent_id is not None else None
    return chain


@transactional
def create_location(actor: User | None, site_id: int, name: str, kind: str, parent_id: int | None = None,
                    code: str | None = None, min_celsius=None, max_celsius=None,
                    readings_per_day: int | None = None) -> Location:
    """A storage location at a site: a room, cabinet, fridge or freezer, perhaps inside another one of the
    same site; a scannable code (the next `LOC` number unless one is given), an allowed range and its
    reading schedule (twice a day unless told)."""
    _manages(actor, site_id)
    site = get_site(site_id)
    if not site.active:
        raise InvalidState(f"{site.label} is closed.")
    name, low, high = _checked_place(site.id, None, name, kind, parent_id, min_celsius, max_celsius)
    per_day = _readings_per_day(readings_per_day, DEFAULT_READINGS_PER_DAY)
    location = Location(site_id=site.id, parent_id=parent_id, code=_checked_location_code(code), name=name,
                        kind=kind, min_celsius=low, max_celsius=high, readings_per_day=per_day, is_default=False,
                        active=True)
    db.session.add(location)
    db.session.flush()
    audit.created(actor, "location.created", location, LOCATION_FIELDS, extra={"site": site.code})
    return location


@transactional
def update_location(actor: User | None, location_id: int, *, name: str, kind: str, parent_id: int | None = None,
                    min_celsius=None, max_celsius=None, readings_per_day: int | None = None) -> Location:
    """Rename, re-kind, move inside another place of the same site, or change the range or the reading
    schedule (None keeps it); the code stays (it is printed on the location's label)."""
    location = get_location(location_id, for_update=True)
    _manages(actor, location.site_id)
    name, low, high = _checked_place(location.site_id, location.id, name, kind, parent_id, min_celsius, max_celsius,
                                     current_parent=location.parent_id)
    per_day = _readings_per_day(readings_per_day, location.readings_per_day)
    if (low, high) != (location.min_celsius, location.max_celsius) or parent_id != location.parent_id:
        # Its range, or the place it keeps the range of, decides what an open excursion holds and refuses.
        nearby = {*_enclosing(location), *_inside(location)}
        if parent_id is not None:
            nearby |= set(_enclosing(get_location(parent_id)))
        excursion = db.session.scalar(sa.select(Excursion).where(
            Excursion.location_id.in_(nearby), Excursion.ended_at.is_(None)).order_by(Excursion.id).limit(1))
        if excursion is not None:
            raise InvalidState(f"{location.label} is in or around a place with an open temperature excursion "
                               f"({excursion.code}): its range and its place stay as they are until a reading is "
                               "back in range.", field="min_celsius", details={"excursion_id": excursion.id})
    with audit.change(actor, "location.updated", location, LOCATION_FIELDS, only_if_changed=True):
        location.name, location.kind, location.parent_id = name, kind, parent_id
        location.min_celsius, location.max_celsius = low, high
        location.readings_per_day = per_day
    return location


def stock_at(location_id: int) -> int:
    """How many lots, batches and vials with something left are at a location."""
    held = sa.union_all(
        sa.select(Lot.id).where(Lot.location_id == location_id, Lot.remaining > 0),
        sa.select(Batch.id).where(Batch.location_id == location_id, Batch.remaining_volume_ml > 0),
        sa.select(Vial.id).where(Vial.location_id == location_id, Vial.remaining_ml > 0,
                                 Vial.status.in_(_VIALS_HELD))).subquery()
    return db.session.scalar(sa.select(sa.func.count()).select_from(held))


@transactional
def deactivate_location(actor: User | None, location_id: int, reason: str = "") -> Location:
    """Take a location out of use: refused while it holds stock, holds active places, or is its site's default."""
    location = get_location(location_id, for_update=True)
    _manages(actor, location.site_id)
    reason = checked_text(reason or "", "reason", REASON_MAX)
    if not location.active:
        raise InvalidState(f"{location.label} is already out of use.")
    if location.is_default:
        raise InvalidState(f"{location.label} is its site's default location: make another one the default first.")
    held = stock_at(location.id)
    if held:
        raise InvalidState(f"{location.label} still holds {held} lot(s), batch(es) or vial(s): move them first.")
    if db.session.scalar(sa.select(Location.id).where(Location.parent_id == location.id, Location.active)):
        raise InvalidState(f"{location.label} still holds places in use: take them out of use or move them first.")
    with audit.change(actor, "location.deactivated", location, ("active",), reason=reason):
        location.active = False
    return location


@transactional
def set_default_location(actor: User | None, location_id: int) -> Location:
    """Where the site's receiving and compounding put stock unless told: one active location per site."""
    _manages(actor)
    site_id = db.session.scalar(sa.select(Location.site_id).where(Location.id == location_id)) \
        if isinstance(location_id, int) else None
    if site_id is None:
        raise NotFound(f"There is no location {location_id}.")
    _manages(actor, site_id)
    # The site's row first: two changes of one site's default queue here, so the second sees the first's
    # default and the one-default index is never broken (a 500) by both clearing the same old row.
    db.session.execute(sa.select(Site.id).where(Site.id == site_id).with_for_update())
    location = db.session.scalar(sa.select(Location).where(Location.id == location_id).with_for_update()
                                 .execution_options(populate_existing=True))
    if not location.active:
        raise InvalidState(f"{location.label} is out of use.")
    old = db.session.scalar(sa.select(Location).where(Location.site_id == location.site_id, Location.is_default)
                            .with_for_update().execution_options(populate_existing=True))
    if old is not None and old.id == location.id:
        return location
    if old is not None:
        old.is_default = False
        db.session.flush()  # one default per site: the unique index sees the old one go first
    location.is_default = True
    db.session.flush()
    audit.record(actor, "site.default_location_set", "site", location.site_id,
                 old={"location": old.code if old else None}, new={"location": location.code})
    return location


def _site_codes(site_ids: Iterable[int]) -> list[str]:
    ids = list(site_ids)
    return list(db.session.scalars(sa.select(Site.code).where(Site.id.in_(ids)).order_by(Site.code))) if ids else []


@transactional
def set_user_sites(actor: User | None, user_id: int, site_ids: Iterable[int], all_sites: bool) -> User:
    """The sites a user belongs to (at least one: where they act) and whether they see the whole chain."""
    if actor is not None:
        ensure_can(actor, "users.manage", "change who works at which site")
    user = db.session.get(User, user_id) if isinstance(user_id, int) else None
    if user is None:
        raise NotFound("No such user.")
    wanted = list(dict.fromkeys(site_ids))
    if not wanted:
        raise InvalidInput("A user belongs to at least one site: where they receive, compound and treat.",
                           field="site_ids")
    for site_id in wanted:
        if not get_site(site_id).active:
            raise InvalidInput(f"Site {get_site(site_id).code} is closed.", field="site_ids")
    had = member_site_ids(user)
    before = {"sites": _site_codes(had), "all_sites": user.all_sites}
    gone = [site_id for site_id in had if site_id not in wanted]
    if gone:  # a membership is a link, not a record: the audit row keeps what it was
        db.session.execute(sa.delete(UserSite).where(UserSite.user_id == user.id, UserSite.site_id.in_(gone)))
    join_sites(user, wanted)
    user.all_sites = bool(all_sites)
    after = {"sites": _site_codes(wanted), "all_sites": user.all_sites}
    if after != before:
        audit.record(actor, "user.sites_changed", "user", user.id, old=before, new=after)
    return user
