"""Where a traced lot, batch or vial is now: its site and location, or in transit on a dispatched transfer.

Read beside the trace's rows in the same statements (columns and outer joins), never one
query per row. A lot's own place comes with its child lots (made at a transfer's destination)
and the quantities of it on the road.
"""

import sqlalchemy as sa

from ..extensions import db
from ..models import Location, Lot, Site, Transfer, TransferLine, TransferStatus, Vial


def descendants(lot_id: int):
    """A recursive select of the lot's id and those of every lot made from it (children are few)."""
    down = sa.select(Lot.id.label("id")).where(Lot.id == lot_id).cte("descendants", recursive=True)
    child = sa.orm.aliased(Lot)
    return down.union_all(sa.select(child.id).join(down, child.parent_lot_id == down.c.id))


def placed(query, model, *, grouped: bool = False):
    """The query with the item's site code, location code and location name (outer joins; `grouped`: by them too)."""
    site, location = sa.orm.aliased(Site), sa.orm.aliased(Location)
    columns = (site.code.label("site_code"), location.code.label("location_code"), location.name.label("location_name"))
    query = (query.add_columns(*columns).outerjoin(site, site.id == model.site_id)
             .outerjoin(location, location.id == model.location_id))
    return query.group_by(site.code, location.code, location.name) if grouped else query


def vial_transit():
    """The code of the dispatched transfer carrying the vial (None when it is not on the road)."""
    return (sa.select(Transfer.code).join(TransferLine, TransferLine.transfer_id == Transfer.id)
            .where(TransferLine.vial_id == Vial.id, Transfer.status == TransferStatus.DISPATCHED)
            .order_by(Transfer.id.desc()).limit(1).scalar_subquery())


def place_text(row) -> str:
    """"in transit on T000123", or "MAIN · LOC0001 Main store"."""
    transit = getattr(row, "transit_code", None)
    if transit and getattr(row, "status", None) == "in_transit":
        return f"in transit on {transit}"
    if not getattr(row, "site_code", None):
        return ""
    return f"{row.site_code} · {row.location_code} {row.location_name}".strip()


def lot_places(lot_id: int) -> list:
    """The lot and its child lots, each with its place and what of it is on the road: one statement."""
    lots = descendants(lot_id)
    transit = (sa.select(Transfer.code, TransferLine.lot_id, TransferLine.quantity)
               .join(Transfer, Transfer.id == TransferLine.transfer_id)
               .where(Transfer.status == TransferStatus.DISPATCHED).subquery())
    query = (sa.select(Lot.id, Lot.code, Lot.status, Lot.remaining, Lot.parent_lot_id,
                       transit.c.code.label("transit_code"), transit.c.quantity.label("transit_quantity"))
             .outerjoin(transit, transit.c.lot_id == Lot.id)
             .where(Lot.id.in_(sa.select(lots.c.id))).order_by(Lot.id, transit.c.code))
    return db.session.execute(placed(query, Lot)).all()


def lot_place_lines(row) -> list[str]:
    """What a lot-place row says: where the lot is, and a quantity in transit when there is one."""
    lines = [place_text(row)]
    if row.transit_code:
        lines.append(f"{row.transit_quantity} in transit on {row.transit_code}")
    return lines
