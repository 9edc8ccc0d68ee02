"""The chain's sites for `seed-scale --sites N`: sites, their locations, their staff and memberships.

Site MAIN (the hub) is there already; S002, S003... are added, each named after a city and in its
zone, with a default location (a room) and a fridge (MAIN gets a fridge too). Every site has a
pharmacist and a practitioner (`scale.<code>.pharmacist`, `scale.<code>.practitioner`, members of
that site only); the chain pharmacists scale.pharmacist1 and scale.pharmacist2 see and act at every
site. Rows already there (an earlier seed) are reused, so seeding twice adds none of them again.
With one site only MAIN's fridge is added (for its readings; its stock stays where it was before sites).
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import sqlalchemy as sa

from ..limits import NAME_MAX
from ..models import Location, Site, User, UserSite
from ..models.patient import fold
from ..models.site import MAIN_SITE
from .rows import AuditLog
from .spec import SITE_CITIES
from .writer import Writer, reserve_ids

CHAIN_PHARMACISTS = ("scale.pharmacist1", "scale.pharmacist2")


@dataclass
class Chain:
    """Per site index (0 is MAIN): its id, default location, cold location, pharmacist and practitioner."""

    site_ids: list[int]
    default_location: list[int]
    fridge: list[int]  # the site's fridge (its default location when it has none)
    pharmacists: list[tuple | None]  # (id, display name); None with one site
    practitioners: list[tuple | None]

    @property
    def codes(self) -> list[str]:
        return [site_code(i) for i in range(len(self.site_ids))]


def site_code(index: int) -> str:
    return MAIN_SITE if index == 0 else f"S{index + 1:03d}"


def site_name(index: int) -> tuple[str, str]:
    """(name, time zone) of site `index` (>= 1): a city, numbered once the list comes round again."""
    city, zone = SITE_CITIES[(index - 1) % len(SITE_CITIES)]
    lap = (index - 1) // len(SITE_CITIES)
    return f"Clinic {city}" + (f" {lap + 1}" if lap else ""), zone


def ensure_chain(writer: Writer, sites: int, now: datetime, log: AuditLog) -> Chain:
    connection = writer.connection
    existing = dict(connection.execute(sa.select(Site.code, Site.id)).all())
    if MAIN_SITE not in existing:
        raise ValueError("Site MAIN is missing: run the migrations first.")
    seconds = int(now.timestamp())
    new_sites = [i for i in range(1, sites) if site_code(i) not in existing]
    if new_sites:
        first = reserve_ids(connection, {Site.__table__: len(new_sites)})["sites"]
        rows = []
        for offset, i in enumerate(new_sites):
            name, zone = site_name(i)
            rows.append({"id": first + offset, "code": site_code(i), "name": name, "timezone": zone,
                         "address": f"{name}, synthetic address", "active": True, "created_at": now})
            existing[site_code(i)] = first + offset
        writer.insert(Site.__table__, rows)
        log.add(seconds, None, "scale.sites_created", "scale", None,
                new={"sites": [site_code(i) for i in new_sites]})
    site_ids = [existing[site_code(i)] for i in range(sites)]
    defaults = dict(connection.execute(sa.select(Location.site_id, Location.id).where(Location.is_default)).all())
    fridges = dict(connection.execute(sa.select(Location.site_id, sa.func.min(Location.id))
                                      .where(Location.kind == "fridge").group_by(Location.site_id)).all())
    # Every site, MAIN too, gets a fridge: its logger's year of readings is part of the data set.
    codes = connection.scalars(sa.select(Location.code).where(Location.code.like("LOC%"))).all()
    number = max([int(c[3:]) for c in codes if c[3:].isdigit()] or [0])
    wanted = [(site_id, "default") for site_id in site_ids if site_id not in defaults]
    wanted += [(site_id, "fridge") for site_id in site_ids if site_id not in fridges]
    if wanted:
        first = reserve_ids(connection, {Location.__table__: len(wanted)})["locations"]
        rows = []
        for offset, (site_id, what) in enumerate(wanted):
            number += 1
            fridge = what == "fridge"
            rows.append({"id": first + offset, "site_id": site_id, "parent_id": None, "code": f"LOC{number:04d}",
                         "name": "Fridge" if fridge else "Store", "kind": "fridge" if fridge else "room",
                         "is_default": not fridge, "active": True,
                         "min_celsius": Decimal("2.0") if fridge else None,
                         "max_celsius": Decimal("8.0") if fridge else None,
                         "readings_per_day": 96 if fridge else 2,  # a logger: every 15 minutes
                         # In use for the year of readings the seed gives it.
                         "created_at": now - timedelta(days=366) if fridge else now})
            (fridges if fridge else defaults)[site_id] = first + offset
        writer.insert(Location.__table__, rows)
    pharmacists, practitioners = [None] * sites, [None] * sites
    if sites > 1:
        pharmacists, practitioners = _staff(writer, site_ids, now, log)
    return Chain(site_ids=site_ids, default_location=[defaults[s] for s in site_ids],
                 fridge=[fridges.get(s, defaults[s]) for s in site_ids],
                 pharmacists=pharmacists, practitioners=practitioners)


def _staff(writer: Writer, site_ids: list[int], now: datetime, log: AuditLog) -> tuple[list, list]:
    """A pharmacist and a practitioner per site, members of it; the chain pharmacists members of every site."""
    connection = writer.connection
    people = {row.username: row for row in connection.execute(
        sa.select(User.id, User.username, User.display_name, User.password_hash)
        .where(User.username.like("scale.%")))}
    password_hash = people[CHAIN_PHARMACISTS[0]].password_hash  # the same password as every scale account
    wanted = []
    for i in range(len(site_ids)):
        code = site_code(i)
        place = "Main" if i == 0 else site_name(i)[0].removeprefix("Clinic ")
        for role, title in (("pharmacist", "Pharmacist"), ("practitioner", "Dr")):
            username = f"scale.{code.lower()}.{role}"
            if username not in people:
                wanted.append((username, f"{title} {place} ({code})", role))
    if wanted:
        first = reserve_ids(connection, {User.__table__: len(wanted)})["users"]
        rows = []
        for offset, (username, name, role) in enumerate(wanted):
            rows.append({"id": first + offset, "username": username, "display_name": name,
                         "display_name_key": fold(name)[:NAME_MAX], "role": role, "password_hash": password_hash,
                         "active": True, "must_change_password": False, "created_at": now, "last_login_at": None,
                         "password_changed_at": now, "all_sites": False})
            people[username] = rows[-1]
        writer.insert(User.__table__, rows)
        log.add(int(now.timestamp()), None, "scale.users_created", "scale", None,
                new={"users": [u for u, _, _ in wanted]})

    def person(username):
        row = people[username]
        return (row["id"], row["display_name"]) if isinstance(row, dict) else (row.id, row.display_name)

    pharmacists = [person(f"scale.{site_code(i).lower()}.pharmacist") for i in range(len(site_ids))]
    practitioners = [person(f"scale.{site_code(i).lower()}.practitioner") for i in range(len(site_ids))]
    members = set(connection.execute(sa.select(UserSite.user_id, UserSite.site_id)).all())
    pairs = [(pharmacists[i][0], s) for i, s in enumerate(site_ids)]
    pairs += [(practitioners[i][0], s) for i, s in enumerate(site_ids)]
    chain = [person(u)[0] for u in CHAIN_PHARMACISTS]
    pairs += [(u, s) for u in chain for s in site_ids]
    rows = [{"user_id": u, "site_id": s, "created_at": now} for u, s in dict.fromkeys(pairs) if (u, s) not in members]
    writer.insert(UserSite.__table__, rows)
    # The chain pharmacists see every site, as a chain-wide account does.
    connection.execute(sa.update(User).where(User.id.in_(chain), User.all_sites.is_(False)).values(all_sites=True))
    return pharmacists, practitioners
