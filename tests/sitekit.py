"""Helpers for tests of a clinic chain: a second site made directly, with its default location."""

from compounding.extensions import db
from compounding.models import Location, Site


def add_site(code: str) -> Site:
    """Site `code` with its default location `LOC-<code>` ("<Code> store"), committed."""
    site = Site(code=code, name=f"Clinic {code.title()}", timezone="Europe/Paris", address="")
    db.session.add(site)
    db.session.flush()
    db.session.add(Location(site_id=site.id, code=f"LOC-{code}", name=f"{code.title()} store", kind="room",
                            is_default=True))
    db.session.commit()
    return site
