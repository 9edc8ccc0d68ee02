"""What the transfer pages, the API and the delivery note read: a site-scoped list and one transfer.

A transfer is seen by whoever sees its source or its destination (`site_ids`, None: every site).
"""

from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.orm import aliased

from ..extensions import db
from ..models import Batch, Location, Lot, Site, Transfer, TransferLine, User, Vial
from ..models.transfer import TRANSFER_STATUSES
from ..pagination import paginate_rows

FROM, TO = aliased(Site), aliased(Site)
CHILD = aliased(Lot)


def _in_scope(query, site_ids):
    if site_ids is None:
        return query
    return query.where(sa.or_(Transfer.from_site_id.in_(site_ids), Transfer.to_site_id.in_(site_ids)))


def transfer_list(site_ids, status: str | None = None, per_page: int = 50):
    """A page of rows (Transfer, from code, to code, line count), newest first; ids picked on their own."""
    keys = _in_scope(sa.select(Transfer.id), site_ids)
    if status in TRANSFER_STATUSES:
        keys = keys.where(Transfer.status == status)
    keys = keys.order_by(Transfer.id.desc())
    lines = (sa.select(sa.func.count(TransferLine.id)).where(TransferLine.transfer_id == Transfer.id)
             .correlate(Transfer).scalar_subquery())
    rows = (sa.select(Transfer, FROM.code.label("from_code"), TO.code.label("to_code"), lines.label("lines"))
            .join(FROM, FROM.id == Transfer.from_site_id).join(TO, TO.id == Transfer.to_site_id)
            .order_by(Transfer.id.desc()))
    return paginate_rows(rows, per_page, keys=keys)


@dataclass
class LineView:
    """One line as shown: the item's code, its batch, what was counted, and where the item is now."""

    line: TransferLine
    code: str
    batch_code: str | None
    child_code: str | None
    item_status: str
    location_code: str

    @property
    def short(self):
        return None if self.line.received is None else self.line.quantity - self.line.received


@dataclass
class TransferView:
    transfer: Transfer
    from_site: Site
    to_site: Site
    to_location: Location | None
    created_by: str
    lines: list[LineView] = field(default_factory=list)

    @property
    def codes(self) -> list[str]:
        return [line.code for line in self.lines]


def transfer_record(transfer_id: int, site_ids) -> TransferView | None:
    """One transfer with its lines (two statements); None when it is not there or not in scope."""
    row = db.session.execute(_in_scope(
        sa.select(Transfer, FROM, TO, Location, User.display_name)
        .join(FROM, FROM.id == Transfer.from_site_id).join(TO, TO.id == Transfer.to_site_id)
        .outerjoin(Location, Location.id == Transfer.to_location_id)
        .join(User, User.id == Transfer.created_by_id)
        .where(Transfer.id == transfer_id), site_ids)).first()
    if row is None:
        return None
    view = TransferView(row[0], row[1], row[2], row[3], row[4])
    here = aliased(Location)
    lines = db.session.execute(
        sa.select(TransferLine, Lot.code, Lot.status, Vial.code, Vial.status, Batch.code, CHILD.code, here.code)
        .outerjoin(Lot, Lot.id == TransferLine.lot_id).outerjoin(Vial, Vial.id == TransferLine.vial_id)
        .outerjoin(Batch, Batch.id == TransferLine.batch_id).outerjoin(CHILD, CHILD.id == TransferLine.child_lot_id)
        .outerjoin(here, here.id == sa.func.coalesce(Vial.location_id, Lot.location_id))
        .where(TransferLine.transfer_id == transfer_id).order_by(TransferLine.id)).all()
    view.lines = [LineView(line, lot_code or vial_code, batch_code, child_code, vial_status or lot_status,
                           location_code or "")
                  for line, lot_code, lot_status, vial_code, vial_status, batch_code, child_code, location_code
                  in lines]
    return view
