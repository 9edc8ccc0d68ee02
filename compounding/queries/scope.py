"""Which sites a read takes in: the `site_ids` every list query is given, as SQL.

`site_ids` is the viewer's scope (`site_scope.current_scope()` on a page or API call): a
frozenset of site ids, or None for every site (auditors, chain-wide accounts). Queries take it
as a required keyword, so a read that forgot its scope fails loudly instead of showing the chain.
"""

import sqlalchemy as sa

from ..extensions import db
from ..models import Batch, Lot, Site, TreatmentSession, Vial
from ..services.site_filters import SiteIds, at_sites, batch_at_sites

__all__ = ["SiteIds", "at_sites", "batch_at_sites", "in_scope", "items_at_sites", "shown_sites", "site_codes"]


def site_codes(site_ids: SiteIds) -> dict[int, str]:
    """{site id: code} of the sites in scope, in one statement (a chain has tens of sites, not thousands)."""
    return dict(db.session.execute(
        sa.select(Site.id, Site.code).where(at_sites(Site.id, site_ids)).order_by(Site.id)).all())


def shown_sites(site_ids: SiteIds) -> dict[int, str]:
    """{site id: code} for a list's site badges, in one statement whatever the page's length; empty (no
    badge) when the viewer sees one site only, as in a one-site clinic.

    Every site's code: a batch seen through its vials may stand at a site outside the scope.
    """
    if site_ids is not None and len(site_ids) <= 1:
        return {}
    codes = site_codes(None)
    return codes if len(codes) > 1 else {}


def items_at_sites(items, site_ids: SiteIds) -> set[tuple[str, int]]:
    """Of (kind, id) pairs ("lot" or "batch"), those in scope: one statement (none for every site)."""
    items = list(items)
    if site_ids is None:
        return set(items)
    lots = [item_id for kind, item_id in items if kind == "lot"]
    batches = [item_id for kind, item_id in items if kind == "batch"]
    if not lots and not batches:
        return set()
    found = sa.union_all(
        sa.select(sa.literal("lot").label("kind"), Lot.id).where(Lot.id.in_(lots), at_sites(Lot.site_id, site_ids)),
        sa.select(sa.literal("batch").label("kind"), Batch.id).where(Batch.id.in_(batches), batch_at_sites(site_ids)))
    return {(kind, item_id) for kind, item_id in db.session.execute(found)}


# What ties a record to a site, as the lists read it: a batch its own site or one of its vials' (`batch_at_sites`).
_RECORD_SITE = {
    "lot": (Lot, lambda site_ids: at_sites(Lot.site_id, site_ids)),
    "batch": (Batch, batch_at_sites),
    "vial": (Vial, lambda site_ids: at_sites(Vial.site_id, site_ids)),
    "session": (TreatmentSession, lambda site_ids: at_sites(TreatmentSession.site_id, site_ids)),
}


def in_scope(kind: str, item_id: int, site_ids: SiteIds) -> bool:
    """Whether a lot, batch, vial or treatment session is at the sites in scope (one statement; none for every
    site). A record that does not exist is not in scope either: its page answers 404 as for another site's."""
    if site_ids is None:
        return True
    model, where = _RECORD_SITE[kind]
    return db.session.scalar(sa.select(model.id).where(model.id == item_id, where(site_ids))) is not None
