"""Helpers for tests of a clinic chain: a second site made directly, with its default location; a fridge."""

from decimal import Decimal

import sqlalchemy as sa

from compounding.extensions import db
from compounding.models import Batch, Location, Lot, Site, StockMove, Transfer, Vial
from compounding.services import sites


def add_site(code: str) -> Site:
    """Site `code` with its default location `LOC-<code>` ("<Code> store"), committed."""
    site = Site(code=code, name=f"Clinic {code.title()}", timezone="Europe/Paris", address="")
    db.session.add(site)
    db.session.flush()
    db.session.add(Location(site_id=site.id, code=f"LOC-{code}", name=f"{code.title()} store", kind="room",
                            is_default=True))
    db.session.commit()
    return site


def add_fridge(site_id: int, code: str = "FRIDGE1") -> Location:
    """A fridge kept at 2-8 °C inside the site's default location, committed."""
    store = sites.default_location(site_id)
    name = "Fridge 1" if code == "FRIDGE1" else f"Fridge {code}"
    location = Location(site_id=site_id, parent_id=store.id, code=code, name=name, kind="fridge",
                        min_celsius=Decimal("2"), max_celsius=Decimal("8"))
    db.session.add(location)
    db.session.commit()
    return location


def stored_since(delta) -> None:
    """Every lot, batch and vial made, and every move between locations, `delta` earlier: stock a test put
    in a fridge has been there long enough for an excursion read from an old logger file to find it."""
    for model, column in ((StockMove, "moved_at"), (Lot, "received_at"), (Batch, "compounded_at"),
                          (Vial, "created_at"), (Transfer, "dispatched_at"), (Transfer, "received_at")):
        for row in db.session.scalars(sa.select(model)):
            if getattr(row, column) is not None:
                setattr(row, column, getattr(row, column) - delta)
    db.session.commit()
