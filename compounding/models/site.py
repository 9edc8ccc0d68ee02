"""Sites of a clinic chain, their storage locations, and who works where.

A fresh install has one site `MAIN` with one default location; every lot, batch and vial
is at one location (so at one site). Locations form a tree inside a site (a room holds
cabinets and fridges). A user belongs to one or more sites; auditors, and users marked
`all_sites` (a chain pharmacist), see every site.
"""

from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from ..limits import NAME_MAX
from ._common import one_of, utcnow

MAIN_SITE = "MAIN"
MAIN_LOCATION = "LOC0001"
LOCATION_KINDS = ("room", "cabinet", "fridge", "freezer")
# Sites: upper-case letters, digits and hyphens, 2 to 12 (MAIN, LYON, MAD-01).
SITE_CODE_MAX = 12
LOCATION_CODE_MAX = 16
TIMEZONE_MAX = 64


class Site(db.Model):
    __tablename__ = "sites"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(SITE_CODE_MAX), unique=True)
    name: Mapped[str] = mapped_column(sa.String(NAME_MAX))
    # An IANA zone (Europe/Paris): the site's days for expiry and reading schedules.
    timezone: Mapped[str] = mapped_column(sa.String(TIMEZONE_MAX))
    address: Mapped[str] = mapped_column(sa.Text, default="")
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    @property
    def label(self) -> str:
        return f"Site {self.code}"

    def __repr__(self) -> str:
        return f"<Site {self.code}>"


class Location(db.Model):
    """A place where stock is kept: a room, a cabinet, a fridge or a freezer, inside a site."""

    __tablename__ = "locations"
    __table_args__ = (
        one_of("kind", LOCATION_KINDS, "kind_known"),
        # The pair a lot, batch or vial names: its location and, through it, its site.
        sa.UniqueConstraint("id", "site_id", name="uq_locations_id_site_id"),
        sa.UniqueConstraint("site_id", "name"),
        # One default location per site: where receiving and compounding put stock unless told.
        sa.Index("uq_locations_default_per_site", "site_id", unique=True,
                 sqlite_where=sa.text("is_default"), postgresql_where=sa.text("is_default")),
        sa.CheckConstraint("min_celsius IS NULL OR max_celsius IS NULL OR min_celsius < max_celsius",
                           name="range_ordered"),
        sa.CheckConstraint("readings_per_day >= 1 AND readings_per_day <= 96", name="readings_per_day_range"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("sites.id"), index=True)
    parent_id: Mapped[int | None] = mapped_column(sa.ForeignKey("locations.id"), index=True)
    # Scannable: LOC + digits unless a code is given.
    code: Mapped[str] = mapped_column(sa.String(LOCATION_CODE_MAX), unique=True)
    name: Mapped[str] = mapped_column(sa.String(NAME_MAX))
    kind: Mapped[str] = mapped_column(sa.String(10), default="room")
    is_default: Mapped[bool] = mapped_column(default=False)
    active: Mapped[bool] = mapped_column(default=True)
    # The allowed storage range (cold chain); none for a room kept at ambient without a range.
    min_celsius: Mapped[Decimal | None]
    max_celsius: Mapped[Decimal | None]
    # The reading schedule of a location with a range: readings expected per day (a missed one shows red).
    readings_per_day: Mapped[int] = mapped_column(default=2, server_default="2")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    site: Mapped[Site] = relationship(lazy="raise")

    @property
    def label(self) -> str:
        return f"Location {self.code}"

    def __repr__(self) -> str:
        return f"<Location {self.code} at site {self.site_id}>"


class UserSite(db.Model):
    """A user's membership of a site."""

    __tablename__ = "user_sites"

    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), primary_key=True)
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("sites.id"), primary_key=True, index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


def main_site_id():
    """SQL for the id of site MAIN: the default of every site column, so a one-site clinic names none."""
    return sa.select(Site.id).where(Site.code == MAIN_SITE).scalar_subquery()


def main_location_id():
    """SQL for the id of MAIN's default location."""
    return (sa.select(Location.id).join(Site, Site.id == Location.site_id)
            .where(Site.code == MAIN_SITE, Location.is_default).scalar_subquery())


def insert_main_site(connection: sa.Connection, timezone: str = "Europe/London") -> None:
    """Site MAIN with its default location, unless it is there: every new database starts with it."""
    if connection.execute(sa.select(Site.id).where(Site.code == MAIN_SITE)).first():
        return
    now = utcnow()
    site_id = connection.execute(sa.insert(Site).values(
        code=MAIN_SITE, name="Main site", timezone=timezone, address="", active=True, created_at=now)
        .returning(Site.id)).scalar_one()
    connection.execute(sa.insert(Location).values(
        site_id=site_id, parent_id=None, code=MAIN_LOCATION, name="Main store", kind="room", is_default=True,
        active=True, created_at=now))


@sa.event.listens_for(Location.__table__, "after_create")
def _main_site_in_every_new_schema(target, connection, **kw) -> None:
    from flask import current_app, has_app_context
    zone = current_app.config.get("CLINIC_TIMEZONE", "Europe/London") if has_app_context() else "Europe/London"
    insert_main_site(connection, zone)
