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


def line_requests(scanned: list[tuple[str, str | None]]) -> list[dict]:
    """The service's lines for codes scanned on the page: a vial by its code, a batch or a lot by its id."""
    from ..services.codes import BATCH_CODE, LOT_CODE
    from ..services.errors import InvalidInput

    lot_codes = {code for code, _ in scanned if LOT_CODE.match(code)}
    batch_codes = {code for code, _ in scanned if BATCH_CODE.match(code)}
    lots = dict(db.session.execute(sa.select(Lot.code, Lot.id).where(Lot.code.in_(lot_codes))).all()) \
        if lot_codes else {}
    batches = dict(db.session.execute(sa.select(Batch.code, Batch.id).where(Batch.code.in_(batch_codes))).all()) \
        if batch_codes else {}
    lines = []
    for code, quantity in scanned:
        if code in lot_codes:
            if code not in lots:
                raise InvalidInput(f"{code}: there is no such lot.", field="codes")
            if quantity is None:
                raise InvalidInput(f"{code}: give the quantity to send after the lot code.", field="codes")
            lines.append({"lot_id": lots[code], "quantity": quantity})
        elif code in batch_codes:
            if code not in batches:
                raise InvalidInput(f"{code}: there is no such batch.", field="codes")
            lines.append({"batch_id": batches[code]})
        else:
            lines.append({"vial_code": code})
    return lines


def site_choices(site_ids) -> list[tuple[int, str]]:
    """(id, "CODE · name") of active sites, all or those in `site_ids`."""
    query = sa.select(Site.id, Site.code, Site.name).where(Site.active).order_by(Site.code)
    if site_ids is not None:
        query = query.where(Site.id.in_(site_ids))
    return [(row.id, f"{row.code} · {row.name}") for row in db.session.execute(query)]
