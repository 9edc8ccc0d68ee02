"""What a site's pages and answers read: its location tree, the stock counted per location, and what
one location holds."""

from dataclasses import dataclass

import sqlalchemy as sa

from ..extensions import db
from ..models import Batch, Formula, Ingredient, Location, Lot, Site, UserSite, Vial
from .sites import _VIALS_HELD, sees_all_sites

STOCK_KINDS = ("lots", "batches", "vials")


@dataclass
class Node:
    """One location of a site's tree, with how deep it sits (0: not inside another place)."""

    location: Location
    depth: int


def location_tree(site_id: int, *, active_only: bool = False) -> list[Node]:
    """A site's locations depth-first, each place followed by what it holds, by name at each level."""
    query = sa.select(Location).where(Location.site_id == site_id).order_by(Location.name, Location.id)
    if active_only:
        query = query.where(Location.active)
    return _tree(list(db.session.scalars(query)))


def _tree(rows: list[Location]) -> list[Node]:
    """One site's locations (by name) depth-first, each place followed by what it holds."""
    children: dict[int | None, list[Location]] = {}
    known = {row.id for row in rows}
    for row in rows:  # a place whose parent is left out (inactive) shows at the top
        children.setdefault(row.parent_id if row.parent_id in known else None, []).append(row)
    tree: list[Node] = []
    stack = [(row, 0) for row in reversed(children.get(None, []))]
    while stack:
        row, depth = stack.pop()
        tree.append(Node(row, depth))
        stack.extend((child, depth + 1) for child in reversed(children.get(row.id, [])))
    return tree


def stock_counts(site_id: int) -> dict[int, dict[str, int]]:
    """Per location of a site: lots, batches and vials with something left, in one grouped statement."""
    held = sa.union_all(
        sa.select(Lot.location_id.label("location_id"), sa.literal("lots").label("kind"))
        .where(Lot.site_id == site_id, Lot.remaining > 0),
        sa.select(Batch.location_id, sa.literal("batches"))
        .where(Batch.site_id == site_id, Batch.remaining_volume_ml > 0),
        sa.select(Vial.location_id, sa.literal("vials"))
        .where(Vial.site_id == site_id, Vial.remaining_ml > 0, Vial.status.in_(_VIALS_HELD)),
    ).subquery()
    counts: dict[int, dict[str, int]] = {}
    for location_id, kind, count in db.session.execute(
            sa.select(held.c.location_id, held.c.kind, sa.func.count()).group_by(held.c.location_id, held.c.kind)):
        counts.setdefault(location_id, dict.fromkeys(STOCK_KINDS, 0))[kind] = count
    return counts


def location_counts(site_ids=None) -> dict[int, int]:
    """How many locations each site has (every site, or those named)."""
    query = sa.select(Location.site_id, sa.func.count()).group_by(Location.site_id)
    if site_ids is not None:
        query = query.where(Location.site_id.in_(list(site_ids)))
    return dict(db.session.execute(query).all())


def sites_query(site_ids=None):
    """Sites by code, every one or those named (a viewer's scope)."""
    query = sa.select(Site).order_by(Site.code)
    return query.where(Site.id.in_(list(site_ids))) if site_ids is not None else query


def choosable_locations(site_ids) -> list[tuple[Site, list[Node]]]:
    """Active locations of active sites, grouped by site, for a "where does it go" select: one statement for
    the sites and one for all their locations, however many sites the viewer has."""
    query = sa.select(Site).where(Site.active).order_by(Site.code)
    if site_ids is not None:
        query = query.where(Site.id.in_(list(site_ids)))
    chosen = list(db.session.scalars(query))
    by_site: dict[int, list[Location]] = {site.id: [] for site in chosen}
    if by_site:
        for location in db.session.scalars(
                sa.select(Location).where(Location.active, Location.site_id.in_(list(by_site)))
                .order_by(Location.name, Location.id)):
            by_site[location.site_id].append(location)
    return [(site, _tree(by_site[site.id])) for site in chosen]


def contents_query(location_id: int, kind: str):
    """What a location holds with something left: its lots, batches or vials, newest first."""
    if kind == "lots":
        return (sa.select(Lot, Ingredient.name).join(Ingredient, Ingredient.id == Lot.ingredient_id)
                .where(Lot.location_id == location_id, Lot.remaining > 0).order_by(Lot.id.desc()))
    if kind == "batches":
        return (sa.select(Batch, Formula.name).join(Formula, Formula.id == Batch.formula_id)
                .where(Batch.location_id == location_id, Batch.remaining_volume_ml > 0).order_by(Batch.id.desc()))
    return (sa.select(Vial, Batch.code).join(Batch, Batch.id == Vial.batch_id)
            .where(Vial.location_id == location_id, Vial.remaining_ml > 0, Vial.status.in_(_VIALS_HELD))
            .order_by(Vial.id.desc()))


def places(location_ids) -> dict[int, dict]:
    """`{location_id: {"location": {id, code, name}, "site": {id, code}}}` for answers, in one statement."""
    ids = {i for i in location_ids if i is not None}
    if not ids:
        return {}
    rows = db.session.execute(sa.select(Location.id, Location.code, Location.name, Site.id, Site.code)
                              .join(Site, Site.id == Location.site_id).where(Location.id.in_(ids)))
    return {row[0]: {"location": {"id": row[0], "code": row[1], "name": row[2]},
                     "site": {"id": row[3], "code": row[4]}} for row in rows}


def switchable_sites(user) -> list[sa.Row]:
    """The active sites a viewer may look at, by code (id, code, name), in one statement."""
    query = sa.select(Site.id, Site.code, Site.name).where(Site.active).order_by(Site.code)
    if not sees_all_sites(user):
        query = query.join(UserSite, UserSite.site_id == Site.id).where(UserSite.user_id == user.id)
    return list(db.session.execute(query))
