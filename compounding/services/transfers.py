"""Transfers between sites, and moves inside one: stock changes site only with a transfer.

`create_transfer` drafts what a site sends (lots by quantity, batches as their vials, vials);
`dispatch` scans it out (lots give their quantity to the transfer's ledger rows, vials go
`in_transit`: usable nowhere); `receive` scans it in at the destination (a child lot per lot
line, each vial back to its status at its new location; short and damaged quantities
recorded, damaged ones and lost vials written off); `cancel` drops a draft. Every step locks
the transfer row first, then lots, batches and vials in id order, and re-checks what it moves.
`move_within_site` puts an item at another location of its own site.
"""

from decimal import Decimal

import sqlalchemy as sa

from ..extensions import db
from ..limits import NOTE_MAX, REASON_MAX
from ..models import Batch, Location, Lot, LotStatus, StatusChange, Transfer, TransferLine, User, Vial, VialStatus
from ..models.transfer import TransferStatus
from . import audit, cold_chain, sites
from .access import ensure_can
from .bounds import checked_text
from .clock import utcnow
from .codes import LOT_CODE, next_lot_code, next_transfer_code
from .errors import InvalidInput, InvalidState, NotFound
from .history import (
    change_status,
    ensure_transition,
    parent_holds_reach_children,
    record_created,
    record_depletion,
    transition,
)
from .ledger import move_lot, move_vial
from .transaction import transactional
from .transfer_lines import Item, ensure_sendable, lock, lock_items, read_lines
from .vials import find_vial


def get_transfer(transfer_id, *, for_update: bool = False) -> Transfer:
    query = sa.select(Transfer).where(Transfer.id == transfer_id)
    if for_update:
        query = query.with_for_update().execution_options(populate_existing=True)
    transfer = db.session.scalar(query) if isinstance(transfer_id, int) else None
    if transfer is None:
        raise NotFound(f"There is no transfer {transfer_id}.")
    return transfer


def _lines(transfer: Transfer) -> list[TransferLine]:
    return list(db.session.scalars(sa.select(TransferLine).where(TransferLine.transfer_id == transfer.id)
                                   .order_by(TransferLine.id)))


def _destination(to_site_id: int, to_location_id: int | None) -> Location:
    if to_location_id is None:
        location = sites.default_location(to_site_id)
        sites.ensure_takes_stock(location)
        return location
    location = sites.get_location(to_location_id)
    if location.site_id != to_site_id:
        raise InvalidInput(f"{location.label} is not at the destination site.", field="to_location_id")
    if not location.active:
        raise InvalidInput(f"{location.label} ({location.name}) is no longer in use.", field="to_location_id")
    sites.ensure_takes_stock(location)
    return location


@transactional
def create_transfer(actor: User, from_site_id: int, to_site_id: int, lines: list[dict], note: str = "",
                    to_location_id: int | None = None) -> Transfer:
    """Draft a transfer from a site of the actor's to another site.

    Lines: `{lot_id, quantity}`, `{batch_id}` (one vial line per vial of it kept at the source that
    can travel) or `{vial_code}`. Refused: the same site (422), a source the actor does not belong
    to (403), an item not at the source, held, recalled, in quarantine or rejected, expired or
    finished, a quantity above what a lot has left, an item twice (409); no line (422).
    """
    ensure_can(actor, "transfers.write", "send stock to another site")
    source, destination = sites.get_site(from_site_id), sites.get_site(to_site_id)
    if source.id == destination.id:
        raise InvalidInput(f"A transfer goes to another site, not back to {source.code}.", field="to_site_id")
    if not destination.active:
        raise InvalidInput(f"Site {destination.code} is closed.", field="to_site_id")
    sites.ensure_at_site(actor, source.id, "send stock")
    note = checked_text(note, "note", NOTE_MAX)
    store = _destination(destination.id, to_location_id)
    items = lock_items(read_lines(lines))
    now = utcnow()
    ensure_sendable(items, source.id, now)
    transfer = Transfer(code=next_transfer_code(), from_site_id=source.id, to_site_id=destination.id,
                        to_location_id=store.id, status=TransferStatus.DRAFT, note=note, created_by_id=actor.id,
                        created_at=now)
    db.session.add(transfer)
    db.session.flush()
    db.session.add_all([TransferLine(transfer_id=transfer.id, kind=item.kind, quantity=item.quantity,
                                     lot_id=item.lot.id if item.lot else None,
                                     vial_id=item.vial.id if item.vial else None,
                                     batch_id=item.batch.id if item.batch else None) for item in items])
    db.session.flush()
    record_created(transfer, actor, at=now, reason=f"from {source.code} to {destination.code}")
    audit.record(actor, "transfer.created", "transfer", transfer.id, new={
        "code": transfer.code, "from": source.code, "to": destination.code, "to_location": store.code,
        "note": note, "lines": [{"code": item.code, "quantity": item.quantity} for item in items]})
    return transfer


def _line_items(lines: list[TransferLine]) -> list[Item]:
    """The lines' lots, batches and vials, row-locked in id order (lots, batches, vials)."""
    lots = lock(Lot, Lot.id.in_({ln.lot_id for ln in lines if ln.lot_id})) if any(ln.lot_id for ln in lines) else {}
    batch_ids = {ln.batch_id for ln in lines if ln.batch_id}
    batches = lock(Batch, Batch.id.in_(batch_ids)) if batch_ids else {}
    vial_ids = {ln.vial_id for ln in lines if ln.vial_id}
    vials = lock(Vial, Vial.id.in_(vial_ids)) if vial_ids else {}
    return [Item("lot", line.quantity, lot=lots[line.lot_id]) if line.kind == "lot"
            else Item("vial", Decimal(1), vial=vials[line.vial_id], batch=batches[line.batch_id]) for line in lines]


def _scanned(items: list[Item], scanned_codes) -> None:
    """Every line's item scanned out (its lot or vial code); a code of no line is refused too (422)."""
    scanned = {str(code).strip().upper() for code in scanned_codes if str(code).strip()}
    codes = {item.code for item in items}
    missing = [code for code in sorted(codes) if code not in scanned]
    unknown = sorted(scanned - codes)
    if unknown:
        raise InvalidInput(f"{', '.join(unknown)}: not on this transfer; take it out of the box.",
                           field="scanned_codes")
    if missing:
        raise InvalidInput(f"Scan every line before dispatch; not scanned: {', '.join(missing)}.",
                           field="scanned_codes", details={"missing": missing})


@transactional
def dispatch(actor: User, transfer_id: int, scanned_codes: list[str] | None = None) -> Transfer:
    """Scan a draft out at its source: every item re-checked now (a vial held since the draft is refused).

    Each lot line takes its quantity from the lot (`transfer` ledger row; the lot depleted when
    empty), each vial goes `in_transit` (usable nowhere) and stays at its location until received.
    `scanned_codes`, when given, must hold every line's code; none: the caller confirms them all.
    """
    ensure_can(actor, "transfers.write", "dispatch transfers")
    transfer = get_transfer(transfer_id, for_update=True)
    ensure_transition(transfer, "dispatch")
    sites.ensure_at_site(actor, transfer.from_site_id, "dispatch transfers")
    lines = _lines(transfer)
    items = _line_items(lines)
    now = utcnow()
    ensure_sendable(items, transfer.from_site_id, now)
    if scanned_codes is not None:
        _scanned(items, scanned_codes)
    reference = f"transfer {transfer.code}"
    for line, item in zip(lines, items, strict=True):
        line.scanned_out_at = now
        if item.kind == "lot":
            move_lot(item.lot, "transfer", -item.quantity, actor, reason="dispatched", note=reference,
                     reference_type="transfer", reference_id=transfer.id, occurred_at=now)
            record_depletion(actor, item.lot, f"all of it sent on {transfer.code}", reference=reference, at=now)
        else:
            transition(item.vial, "dispatch", actor, reason=f"sent on {transfer.code}", reference=reference, at=now)
    with audit.change(actor, "transfer.dispatched", transfer, ("status", "dispatched_at")):
        transfer.dispatched_at, transfer.dispatched_by_id = now, actor.id
        transition(transfer, "dispatch", actor, reason="scanned out", at=now)
    return transfer


def _counted(lines: list[TransferLine], counts) -> dict[int, tuple[Decimal, Decimal]]:
    """{line id: (received, damaged)}: as sent when no counts are given; each received <= sent and
    damaged <= received (422)."""
    if counts is None:
        return {line.id: (line.quantity, Decimal(0)) for line in lines}
    by_id = {line.id: line for line in lines}
    counted = {}
    for entry in counts:
        line = by_id.get(entry.get("line_id")) if isinstance(entry, dict) else None
        if line is None:
            raise InvalidInput(f"{entry!r} is not a line of this transfer.", field="lines")
        if line.id in counted:
            raise InvalidInput(f"Line {line.id} is counted twice.", field="lines")
        received = _count(entry.get("received"), line, "received")
        damaged = _count(entry.get("damaged", 0), line, "damaged")
        if received > line.quantity:
            raise InvalidInput(f"Line {line.id}: {received.normalize():f} received, but "
                               f"{line.quantity.normalize():f} was sent.", field="lines")
        if damaged > received:
            raise InvalidInput(f"Line {line.id}: {damaged.normalize():f} damaged, more than the "
                               f"{received.normalize():f} received.", field="lines")
        counted[line.id] = (received, damaged)
    missing = [line.id for line in lines if line.id not in counted]
    if missing:
        raise InvalidInput(f"Count every line; not counted: {', '.join(map(str, missing))}.", field="lines")
    return counted


def _count(raw, line: TransferLine, name: str) -> Decimal:
    try:
        value = Decimal(str(raw)) if raw is not None and not isinstance(raw, bool) else None
    except ArithmeticError:
        value = None
    if value is None or not value.is_finite() or value < 0 or value != round(value, 3) \
            or (line.kind == "vial" and value not in (0, 1)):
        whole = " (0 or 1 for a vial)" if line.kind == "vial" else ""
        raise InvalidInput(f"Line {line.id}: {name} is a number from 0{whole}.", field="lines")
    return value


@transactional
def receive(actor: User, transfer_id: int, lines: list[dict] | None = None, to_location_id: int | None = None
            ) -> Transfer:
    """Scan a dispatched transfer in at its destination (the actor belongs there); 409 when received twice.

    Per line, `received` (<= sent) and `damaged` (<= received); none given: all received as sent.
    A lot line makes a child lot at the destination location (the parent's supplier lot and expiry,
    released if the parent was) holding what arrived, the damaged part written off. A vial returns
    to its status before it left at the destination location, or is discarded when damaged; a vial
    that did not arrive is discarded as lost in transit. Short and damaged counts stay on the line.
    `to_location_id` puts it elsewhere at the destination than planned (a fridge out of range refuses it).
    """
    ensure_can(actor, "transfers.receive", "receive transfers")
    transfer = get_transfer(transfer_id, for_update=True)
    ensure_transition(transfer, "receive")
    sites.ensure_at_site(actor, transfer.to_site_id, "receive stock")
    rows = _lines(transfer)
    counted = _counted(rows, lines)
    items = _line_items(rows)
    store = _destination(transfer.to_site_id, to_location_id or transfer.to_location_id)
    now = utcnow()
    before = _status_before_dispatch([item.vial.id for item in items if item.vial is not None])
    report = []
    for line, item in zip(rows, items, strict=True):
        received, damaged = counted[line.id]
        line.received, line.damaged, line.scanned_in_at = received, damaged, now
        if item.kind == "lot":
            _receive_lot(actor, transfer, line, item.lot, store, received, damaged, now)
        else:
            _receive_vial(actor, transfer, item, store, received, damaged, before.get(item.vial.id), now)
        report.append({"code": item.code, "sent": line.quantity, "received": received, "damaged": damaged,
                       "short": line.quantity - received})
    for batch in sorted({i.batch.id: i.batch for i in items if i.batch is not None}.values(), key=lambda b: b.id):
        record_depletion(actor, batch, f"its last vials were written off on {transfer.code}",
                         reference=f"transfer {transfer.code}", at=now)
    with audit.change(actor, "transfer.received", transfer, ("status", "received_at")) as change:
        transfer.received_at, transfer.received_by_id = now, actor.id
        transition(transfer, "receive", actor, reason="scanned in", at=now)
        change.new["lines"] = report
        change.new["location"] = store.code
    return transfer


def _status_before_dispatch(vial_ids: list[int]) -> dict[int, str]:
    """{vial id: the status it had when it last went in transit} (one statement)."""
    if not vial_ids:
        return {}
    rows = db.session.execute(
        sa.select(StatusChange.entity_id, StatusChange.from_status)
        .where(StatusChange.entity_type == "vial", StatusChange.entity_id.in_(vial_ids),
               StatusChange.to_status == VialStatus.IN_TRANSIT)
        .order_by(StatusChange.changed_at, StatusChange.id)).all()
    return dict(rows)


def _receive_lot(actor: User, transfer: Transfer, line: TransferLine, parent: Lot, store: Location,
                 received: Decimal, damaged: Decimal, now) -> None:
    """The child lot holding what arrived (none when nothing did), its damaged part written off."""
    if received <= 0:
        return
    # A parent held or recalled since dispatch passes that on: the child is the same supplier lot.
    released = parent.released_at is not None and parent.status != LotStatus.REJECTED
    child = Lot(code=next_lot_code(), ingredient_id=parent.ingredient_id, supplier=parent.supplier,
                supplier_lot_number=parent.supplier_lot_number, gtin=parent.gtin, received_at=now,
                received_by_id=actor.id, expires_on=parent.expires_on, quantity_received=received,
                remaining=Decimal(0), coa_reference=parent.coa_reference,
                status=LotStatus.RELEASED if released else LotStatus.QUARANTINE,
                released_at=parent.released_at if released else None,
                released_by_id=parent.released_by_id if released else None, parent_lot_id=parent.id)
    sites.place(child, store)
    db.session.add(child)
    db.session.flush()
    line.child_lot_id = child.id
    record_created(child, actor, at=now, reason=f"received on {transfer.code} from {parent.code}")
    reaching = db.session.scalar(sa.select(parent_holds_reach_children(sa.literal(parent.id))))
    if parent.status == LotStatus.RECALLED or (parent.status == LotStatus.ON_HOLD and reaching):
        action = "hold" if parent.status == LotStatus.ON_HOLD else "recall"
        transition(child, action, actor, reason=f"parent lot {parent.code} is {parent.status.replace('_', ' ')}",
                   reference=f"lot {parent.id}", at=now)
    # In the fridge when an excursion there began, then on the road: it arrives held for that excursion.
    cold_chain.carry_to_child_lot(actor, parent, child, transfer.dispatched_at, now)
    reference = dict(reference_type="transfer", reference_id=transfer.id, occurred_at=now)
    move_lot(child, "transfer", received, actor, reason="received", note=f"transfer {transfer.code}", **reference)
    if damaged > 0:
        move_lot(child, "waste", -damaged, actor, reason="damaged", note=f"damaged in transit ({transfer.code})",
                 **reference)
        record_depletion(actor, child, f"arrived damaged on {transfer.code}", reference=f"transfer {transfer.code}",
                         at=now)
    audit.record(actor, "lot.received", "lot", child.id, new={
        "code": child.code, "parent": parent.code, "transfer": transfer.code, "supplier": child.supplier,
        "supplier_lot_number": child.supplier_lot_number, "expires_on": child.expires_on, "quantity": received,
        "damaged": damaged, "location_code": store.code, "status": child.status})


def _receive_vial(actor: User, transfer: Transfer, item: Item, store: Location, received: Decimal,
                  damaged: Decimal, before: str | None, now) -> None:
    """Back to its status before dispatch at `store`; discarded (its volume wasted) when damaged or lost."""
    vial, batch = item.vial, item.batch
    reference = f"transfer {transfer.code}"
    if received and not damaged:
        ensure_transition(vial, "arrive")
        change_status(vial, vial.returning_to(before or VialStatus.SEALED), actor,
                      reason=f"received on {transfer.code}", reference=reference, at=now)
        sites.place(vial, store)
        return
    why = "damaged in transit" if received else "lost in transit"
    if received:
        sites.place(vial, store)
    if vial.remaining_ml > 0:
        move_vial(vial, batch, "waste", -vial.remaining_ml, actor, reason="damaged" if received else "lost",
                  note=f"{why} ({transfer.code})", reference_type="transfer", reference_id=transfer.id,
                  occurred_at=now)
    transition(vial, "discard", actor, reason=f"{why} ({transfer.code})", reference=reference, at=now)
    vial.status_reason = f"{why} ({transfer.code})"
    audit.record(actor, "vial.discarded", "vial", vial.id, new={"status": vial.status, "transfer": transfer.code},
                 reason=why)


@transactional
def cancel(actor: User, transfer_id: int, reason: str) -> Transfer:
    """Drop a draft (nothing has moved); a dispatched transfer is received, never cancelled (409)."""
    ensure_can(actor, "transfers.write", "cancel transfers")
    reason = checked_text(reason, "reason", REASON_MAX, required="Say why the transfer is cancelled.")
    transfer = get_transfer(transfer_id, for_update=True)
    ensure_transition(transfer, "cancel")
    sites.ensure_at_site(actor, transfer.from_site_id, "cancel transfers")
    with audit.change(actor, "transfer.cancelled", transfer, ("status", "cancel_reason"), reason=reason):
        now = utcnow()
        transfer.cancelled_at, transfer.cancelled_by_id, transfer.cancel_reason = now, actor.id, reason
        transition(transfer, "cancel", actor, reason=reason, at=now)
    return transfer


MOVABLE = {"lot": Lot, "batch": Batch, "vial": Vial}


def _movable(kind: str, item) -> object:
    """The lot, batch or vial named by id or code, row-locked."""
    model = MOVABLE.get(kind)
    if model is None:
        raise InvalidInput("Move a lot, a batch or a vial.", field="kind")
    if kind == "vial" and isinstance(item, str):
        return find_vial(item, for_update=True, field="item")
    column = model.code if isinstance(item, str) else model.id
    value = item.strip().upper() if isinstance(item, str) else item
    if isinstance(item, str) and kind == "lot" and not LOT_CODE.match(value) and value.isdigit():
        column, value = model.id, int(value)
    found = lock(model, column == value)
    if not found:
        raise NotFound(f"There is no {kind} {item}.", field="item")
    return next(iter(found.values()))


@transactional
def move_within_site(actor: User, kind: str, item, to_location_id: int) -> object:
    """Put a lot, a batch (with its vials kept where it is) or a vial at another location of its site.

    A location at another site is refused (409: use a transfer), an inactive one (422), an item in
    transit (409). Quantities do not change: the item's location and an audit row.
    """
    ensure_can(actor, "stock.move", "move stock")
    thing = _movable(kind, item)
    target = sites.get_location(to_location_id, for_update=False)
    sites.ensure_at_site(actor, thing.site_id, "move stock")
    if target.site_id != thing.site_id:
        raise InvalidState(f"{target.label} is at another site: use a transfer to send stock there.",
                           field="to_location_id")
    if not target.active:
        raise InvalidInput(f"{target.label} ({target.name}) is no longer in use.", field="to_location_id")
    if getattr(thing, "status", None) == VialStatus.IN_TRANSIT:
        raise InvalidState(f"{thing.label} is in transit: it is placed when it is received.", field="item")
    sites.ensure_takes_stock(target)
    origin = thing.location_id
    with audit.change(actor, f"{kind}.moved", thing, ("location_id",), entity_type=kind) as change:
        sites.place(thing, target)
        if kind == "batch":
            vials = lock(Vial, sa.and_(Vial.batch_id == thing.id, Vial.location_id == origin,
                                       Vial.status != VialStatus.IN_TRANSIT))
            for vial in vials.values():
                sites.place(vial, target)
            change.new["vials"] = sorted(vial.code for vial in vials.values())
        change.new["location_code"] = target.code
    return thing
