"""What a transfer may carry: its lines read, their items locked and judged at the source site.

A line is a quantity of a lot, a batch (every vial of it kept at the source that can travel)
or one vial. An item is refused when it is not at the source site, held, recalled, in
quarantine or rejected, expired, finished or already travelling, or named twice; a lot's
quantity when it is more than the lot has left.
"""

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation

import sqlalchemy as sa

from ..extensions import db
from ..models import Batch, BatchStatus, Lot, LotStatus, Site, Vial, VialStatus
from .errors import InvalidInput, InvalidState
from .history import may
from .vials import parse_vial_code

# A delivery note of more lines than this is split in two.
LINES_MAX = 200
# A batch whose status is one of these sends nothing (a prepared or released batch travels).
BATCH_STAYS = {BatchStatus.ON_HOLD: "on hold", BatchStatus.RECALLED: "recalled", BatchStatus.REJECTED: "rejected",
               BatchStatus.DISCARDED: "discarded", BatchStatus.DEPLETED: "used up"}
LOT_STAYS = {LotStatus.ON_HOLD: "on hold", LotStatus.RECALLED: "recalled", LotStatus.QUARANTINE: "in quarantine",
             LotStatus.REJECTED: "rejected", LotStatus.DEPLETED: "used up"}
# The vials of a batch line: those that may be dispatched (not held, recalled, finished or travelling).
VIALS_THAT_TRAVEL = (VialStatus.SEALED, VialStatus.OPEN)


@dataclass
class Item:
    """One line to be: a lot and its quantity, or one vial with its batch."""

    kind: str
    quantity: Decimal
    lot: Lot | None = None
    vial: Vial | None = None
    batch: Batch | None = None

    @property
    def code(self) -> str:
        return self.lot.code if self.lot is not None else self.vial.code

    @property
    def key(self) -> tuple[str, int]:
        return (self.kind, self.lot.id if self.lot is not None else self.vial.id)


def _quantity(raw, index: int) -> Decimal:
    try:
        quantity = Decimal(str(raw))
    except (InvalidOperation, ValueError):
        quantity = None
    if quantity is None or not quantity.is_finite() or quantity <= 0 or quantity != round(quantity, 3) \
            or quantity >= Decimal("1e11"):
        raise InvalidInput(f"Line {index + 1}: the quantity is a positive number (at most 3 decimals).",
                           field="lines")
    return quantity


def read_lines(lines) -> list[dict]:
    """Each line as asked: exactly one of `lot_id` (with `quantity`), `batch_id` or `vial_code` (422)."""
    if not isinstance(lines, list) or not lines:
        raise InvalidInput("Add at least one lot, batch or vial to send.", field="lines")
    if len(lines) > LINES_MAX:
        raise InvalidInput(f"At most {LINES_MAX} lines in one transfer.", field="lines")
    asked = []
    for index, line in enumerate(lines):
        named = [key for key in ("lot_id", "batch_id", "vial_code") if isinstance(line, dict) and line.get(key)]
        if len(named) != 1:
            raise InvalidInput(f"Line {index + 1}: name one lot (with its quantity), one batch or one vial.",
                               field="lines")
        if named == ["vial_code"]:
            code = str(line["vial_code"]).strip().upper()
            try:
                key = parse_vial_code(code, field="lines")
            except InvalidInput as exc:
                raise InvalidInput(f"Line {index + 1}: {exc.message}", field="lines") from None
            asked.append({"vial_code": code, "vial_key": key})
        elif named == ["lot_id"]:
            asked.append({"lot_id": _record_id(line["lot_id"], index), "quantity": _quantity(line.get("quantity"),
                                                                                             index)})
        else:
            asked.append({"batch_id": _record_id(line["batch_id"], index)})
    return asked


def _record_id(raw, index: int) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or not 0 < raw < 2**31:
        raise InvalidInput(f"Line {index + 1}: give the record's id (a whole number).", field="lines")
    return raw


def lock_items(asked: list[dict]) -> list[Item]:
    """The lots, batches and vials the lines name, row-locked (lots, batches, vials, each in id order)."""
    lot_ids = {a["lot_id"] for a in asked if "lot_id" in a}
    batch_ids = {a["batch_id"] for a in asked if "batch_id" in a}
    codes = {a["vial_key"][0] for a in asked if "vial_key" in a}
    lots = lock(Lot, Lot.id.in_(lot_ids)) if lot_ids else {}
    batches = lock(Batch, sa.or_(Batch.id.in_(batch_ids), Batch.code.in_(codes))) if batch_ids or codes else {}
    by_code = {batch.code: batch for batch in batches.values()}
    named = [sa.and_(Vial.batch_id == by_code[a["vial_key"][0]].id, Vial.number == a["vial_key"][1])
             for a in asked if "vial_key" in a and a["vial_key"][0] in by_code]
    if batch_ids:
        named.append(Vial.batch_id.in_(batch_ids))
    vials = lock(Vial, sa.or_(*named)) if named else {}
    vial_by_key = {(v.batch_id, v.number): v for v in vials.values()}
    items = []
    for index, a in enumerate(asked):
        if "lot_id" in a:
            if a["lot_id"] not in lots:
                raise InvalidInput(f"Line {index + 1}: there is no lot {a['lot_id']}.", field="lines")
            items.append(Item("lot", a["quantity"], lot=lots[a["lot_id"]]))
        elif "vial_key" in a:
            batch = by_code.get(a["vial_key"][0])
            vial = vial_by_key.get((batch.id, a["vial_key"][1])) if batch is not None else None
            if vial is None:
                raise InvalidInput(f"Line {index + 1}: there is no vial {a['vial_code']}.", field="lines")
            items.append(Item("vial", Decimal(1), vial=vial, batch=batch))
        else:
            batch = batches.get(a["batch_id"])
            if batch is None:
                raise InvalidInput(f"Line {index + 1}: there is no batch {a['batch_id']}.", field="lines")
            items.extend(_batch_items(batch, vials.values(), index))
    return items


def _batch_items(batch: Batch, vials, index: int) -> list[Item]:
    """A batch line: one vial line per vial of it kept at the batch's site that can travel."""
    travelling = sorted((v for v in vials if v.batch_id == batch.id and v.status in VIALS_THAT_TRAVEL
                         and v.site_id == batch.site_id), key=lambda v: v.number)
    if not travelling and batch.status not in BATCH_STAYS:
        raise InvalidState(f"Line {index + 1}: batch {batch.code} has no vial here that can be sent "
                           "(sealed or open, not held).", field="lines")
    return [Item("vial", Decimal(1), vial=vial, batch=batch) for vial in travelling] or [
        Item("vial", Decimal(1), vial=None, batch=batch)]


def lock(model, condition) -> dict:
    """{id: row} of `model` matching `condition`, locked FOR UPDATE in id order, read afresh."""
    rows = db.session.scalars(sa.select(model).where(condition).order_by(model.id).with_for_update()
                              .execution_options(populate_existing=True))
    return {row.id: row for row in rows}


def refusals(items: list[Item], from_site_id: int, at: datetime) -> list[str]:
    """Every reason an item may not be sent from `from_site_id` now (empty: all may)."""
    codes = dict(db.session.execute(sa.select(Site.id, Site.code)).all())
    reasons, seen = [], set()
    for item in items:
        if item.kind == "vial" and item.vial is None:
            reasons.append(f"batch {item.batch.code} is {BATCH_STAYS[item.batch.status]}")
            continue
        if item.key in seen:
            reasons.append(f"{item.code} is named twice")
        seen.add(item.key)
        reasons += [f"{item.code} {why}" for why in _item_reasons(item, from_site_id, at, codes)]
    return list(dict.fromkeys(reasons))


def _item_reasons(item: Item, from_site_id: int, at: datetime, codes: dict) -> list[str]:
    thing = item.lot if item.kind == "lot" else item.vial
    reasons = []
    if thing.site_id != from_site_id:
        reasons.append(f"is at site {codes[thing.site_id]}, not at {codes[from_site_id]}")
    if item.kind == "lot":
        lot = item.lot
        if lot.status in LOT_STAYS:
            reasons.append(f"is {LOT_STAYS[lot.status]}")
        if lot.is_expired(at):
            reasons.append(f"expired on {lot.expires_on}")
        if item.quantity > lot.remaining:
            reasons.append(f"has {lot.remaining.normalize():f} left, {item.quantity.normalize():f} asked")
        return reasons
    batch, vial = item.batch, item.vial
    if batch.status in BATCH_STAYS:
        reasons.append(f"is of batch {batch.code}, which is {BATCH_STAYS[batch.status]}")
    if at >= batch.beyond_use_at:
        reasons.append(f"is past its beyond-use date ({batch.beyond_use_at:%Y-%m-%d %H:%M} UTC)")
    if not may(vial, "dispatch"):
        reasons.append(f"is {vial.status.replace('_', ' ')}")
    return reasons


def ensure_sendable(items: list[Item], from_site_id: int, at: datetime) -> None:
    """Refuse (409, every reason by line) when any item may not be sent."""
    reasons = refusals(items, from_site_id, at)
    if reasons:
        raise InvalidState("Cannot send: " + "; ".join(reasons) + ".", field="lines", details={"reasons": reasons})
