"""SQL for "at the sites in scope": the one place a read is limited to the viewer's sites.

`site_ids` is a collection of site ids, or None for every site (auditors, chain-wide accounts).
Pure expressions (no statement is run), shared by the read queries, the dashboard's figures,
the scan and the workbooks.
"""

from collections.abc import Collection

import sqlalchemy as sa

from ..models import Batch, Vial

SiteIds = Collection[int] | None


def at_sites(column, site_ids: SiteIds) -> sa.ColumnElement[bool]:
    """`column` (a site id) within the scope; one site is an equality, so (site_id, ...) indexes serve the order."""
    if site_ids is None:
        return sa.true()
    ids = sorted(site_ids)
    if not ids:  # an account that belongs to no site sees nothing
        return sa.false()
    return column == ids[0] if len(ids) == 1 else column.in_(ids)


def batch_at_sites(site_ids: SiteIds) -> sa.ColumnElement[bool]:
    """A batch is seen at its own site (where it was compounded or moved whole) and at every site holding
    one of its vials: a clinic that received vials from the hub sees the batch they came from.

    The vial side is an EXISTS on vials(site_id, batch_id) (index ix_vials_site_batch): no join, no duplicates.
    """
    if site_ids is None:
        return sa.true()
    held_there = sa.exists().where(Vial.batch_id == Batch.id, at_sites(Vial.site_id, site_ids))
    return sa.or_(at_sites(Batch.site_id, site_ids), held_there)
