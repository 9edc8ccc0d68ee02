"""Hold reasons on lots, batches and vials.

An item may carry several hold reasons at once (adverse event, temperature excursion,
quality signal); while any stands it is `on_hold`, usable nowhere. A pharmacist releases
one reason at a time, by signature, with a reason; when none is left the item returns to
the status it had before. A recalled or depleted item keeps its status: the hold is still
recorded, so that it shows and must be released like any other. A batch's holds reach its
vials, and a lot's its child lots (the same supplier lot at other sites), in
history.change_status; a vial or a child lot may also carry holds of its own (the vial used in a
session with a serious adverse event), and stays on hold while either stands.
"""

from datetime import datetime

import sqlalchemy as sa

from ..extensions import db
from ..limits import REASON_MAX
from ..models import (
    AdverseEvent,
    Batch,
    BatchStatus,
    Hold,
    Lot,
    LotStatus,
    Recall,
    RecallStatus,
    SessionUse,
    User,
    Vial,
)
from ..models.hold import HOLD_ENTITY_TYPES, HOLD_KIND_TEXT, HOLD_KINDS, HOLDABLE_STATUSES
from ..models.treatment import HOLDING_EVENT_TYPES
from . import audit, cold_chain, exposure
from .access import ensure_can
from .bounds import checked_text
from .clock import utcnow
from .errors import InvalidInput, InvalidState, NotAllowed, NotFound
from .history import (
    OWN_LOT_HOLDS,
    change_status,
    deplete_if_empty,
    entity_type,
    hold_child_lots,
    may,
    parent_holds_reach_children,
    release_child_lots,
    standing_holds,
    status_before_hold,
    transition,
)
from .signatures import pharmacist_signs
from .sites import ensure_item_at_site
from .transaction import transactional

MODELS = {"lot": Lot, "batch": Batch, "vial": Vial}


@transactional
def place_hold(actor: User | None, item, kind: str, detail: str, *, source_type: str = "",
               source_id: int | None = None, at: datetime | None = None, reach_child_lots: bool = True) -> Hold:
    """Add a hold reason to a lot, batch or vial (part of the caller's transaction when there is one).

    `reach_child_lots` False: a lot's hold stays on that lot (an excursion in one fridge says nothing of
    the same supplier lot kept at another site)."""
    at = at or utcnow()
    hold = Hold(entity_type=entity_type(item), entity_id=item.id, kind=kind, detail=detail or "",
                source_type=source_type, source_id=source_id, placed_at=at,
                placed_by_id=actor.id if actor else None)
    db.session.add(hold)
    db.session.flush()
    if may(item, "hold"):
        transition(item, "hold", actor, reason=hold.text, reference=f"hold {hold.id}", at=at,
                   reach_child_lots=reach_child_lots)
    elif reach_child_lots and isinstance(item, Lot) and item.status == LotStatus.ON_HOLD:
        # Already on hold for a reason that stayed on the lot (an excursion): this one reaches its children.
        hold_child_lots(item, actor, reason=hold.text, at=at)
    audit.record(actor, f"{hold.entity_type}.hold_placed", hold.entity_type, item.id,
                 new={"hold_id": hold.id, "kind": kind, "detail": hold.detail, "status": item.status,
                      "source": f"{source_type} {source_id}".strip() if source_type else ""})
    return hold


def event_holds_stock(event: AdverseEvent) -> bool:
    """A severe event, or one of the holding types at any severity."""
    return event.severity == "severe" or event.type in HOLDING_EVENT_TYPES


def hold_batches_for_event(actor: User, event: AdverseEvent) -> list[Hold]:
    """Hold every batch used in the event's session, and each vial used in it (in the caller's transaction).

    The batch's hold puts its other vials on hold; the vial used carries a hold of its own, so it
    stays held after its batch's hold is released until its own is released too.
    """
    if not event_holds_stock(event):
        return []
    used = sa.select(SessionUse).where(SessionUse.session_id == event.session_id).subquery()
    batches = db.session.scalars(
        sa.select(Batch).where(Batch.id.in_(sa.select(used.c.batch_id)))
        .order_by(Batch.id).with_for_update().execution_options(populate_existing=True)).all()
    vials = db.session.scalars(
        sa.select(Vial).where(Vial.id.in_(sa.select(used.c.vial_id).where(used.c.vial_id.is_not(None))))
        .order_by(Vial.id).with_for_update().execution_options(populate_existing=True)).all()
    detail = f"{event.severity} {event.type.replace('_', ' ')} after session {event.session_id}"
    return [place_hold(actor, item, "adverse_event", detail, source_type="adverse_event", source_id=event.id,
                       at=event.recorded_at) for item in (*batches, *vials)]


@transactional
def quality_signal_hold(actor: User, kind: str, item_id: int, detail: str) -> Hold:
    """The dashboard's one click on a flagged batch or lot: a `quality_signal` hold."""
    ensure_can(actor, "lots.release", "place holds")
    item = locked_item(kind, item_id)
    detail = checked_text(detail, "reason", REASON_MAX, required="Say why the item is held.")
    if any(h.kind == "quality_signal" for h in standing_holds(kind, item.id)):
        raise InvalidState(f"{item.code} already carries a quality-signal hold.")
    return place_hold(actor, item, "quality_signal", detail)


def locked_item(kind: str, item_id: int):
    if kind not in HOLD_ENTITY_TYPES:
        raise NotFound("There is no such item.")
    if kind == "vial" and item_id:
        # Its batch first: the lock order of a session's use (batches, then vials), so the two queue.
        db.session.execute(sa.select(Batch.id).where(Batch.id == sa.select(Vial.batch_id).where(
            Vial.id == item_id).scalar_subquery()).with_for_update())
    item = db.session.scalar(sa.select(MODELS[kind]).where(MODELS[kind].id == item_id).with_for_update()
                             .execution_options(populate_existing=True)) if item_id else None
    if item is None:
        raise NotFound(f"There is no such {kind}.")
    return item


def open_recall_of(kind: str, item_id: int) -> int | None:
    """An open recall of the item itself or, for a batch, of a lot it was made from (a vial: of its batch);
    a lot's parent lots count as the lot (a child lot made at a transfer's destination)."""
    if kind == "vial":
        kind, item_id = "batch", db.session.scalar(sa.select(Vial.batch_id).where(Vial.id == item_id))
    target = (Recall.lot_id.in_(exposure.lot_and_ancestors([item_id])) if kind == "lot"
              else sa.or_(Recall.batch_id == item_id, Recall.lot_id.in_(exposure.reaching_lots([item_id]))))
    return db.session.scalar(sa.select(Recall.id).where(target, Recall.status == RecallStatus.OPEN).limit(1))


@transactional
def release_hold(actor: User, kind: str, item_id: int, hold_kind: str, reason: str, password: str):
    """A pharmacist releases one hold reason (every standing hold of that kind) by signature.

    Refused while a recall of the item is open (409); for a vial, a recall of its batch or of a
    lot of its batch. When no reason is left, the item returns to the status it had before it
    went on hold (a vial: unless its batch is on hold). An excursion's hold released here records
    that excursion's decision `keep` for the item (cold_chain.record_release). Returns the item.
    """
    if actor is None or actor.role != "pharmacist":
        raise NotAllowed("Only a pharmacist's signature can release a hold.", field="password")
    if hold_kind not in HOLD_KINDS:
        raise InvalidInput(f"Choose the hold: {', '.join(HOLD_KINDS)}.", field="hold")
    reason = checked_text(reason, "reason", REASON_MAX, required="Say why the hold is released.")
    if hold_kind == "excursion":
        # The excursions first, then the item: the lock order of an excursion's decision.
        cold_chain.lock_excursions_holding(kind, item_id)
    item = locked_item(kind, item_id)
    ensure_item_at_site(actor, item, "release holds")
    standing = standing_holds(kind, item.id)
    releasing = [h for h in standing if h.kind == hold_kind]
    if not releasing:
        raise InvalidState(f"{item.code} carries no {HOLD_KIND_TEXT[hold_kind]} hold.", field="hold")
    recall_id = open_recall_of(kind, item.id)
    if recall_id:
        raise InvalidState(f"{item.code} is in open recall {recall_id}: its holds stay until the recall is closed.",
                           details={"recall_id": recall_id})
    pharmacist_signs(actor, password, "hold released", kind, item.id, "release a hold")
    if hold_kind == "excursion":
        # Released from the item's page, an excursion's hold is that excursion's decision `keep`.
        cold_chain.record_release(actor, [h.id for h in releasing], reason)
    return lift_holds(actor, kind, item, standing, releasing, reason)


def lift_holds(actor: User, kind: str, item, standing: list[Hold], releasing: list[Hold], reason: str,
               *, unhold: bool = True):
    """Release `releasing` (some of the item's `standing` holds), signed and checked by the caller.

    When none is left the item returns to the status it had before its hold (unless `unhold` is
    False: an item being written off keeps the status its write-off gives it). One audit row.
    """
    now = utcnow()
    for hold in releasing:
        hold.released_at, hold.released_by_id, hold.release_reason = now, actor.id, reason
    released = {h.id for h in releasing}
    left = [h for h in standing if h.id not in released]
    if (kind == "lot" and item.status == LotStatus.ON_HOLD and left
            and any(h.kind not in OWN_LOT_HOLDS for h in releasing)
            and all(h.kind in OWN_LOT_HOLDS for h in left)):
        # What reached its child lots is gone; what is left (an excursion) stays on this lot.
        release_child_lots(item, actor, reason=f"parent lot {item.code}: {reason}", at=now)
    if unhold and not left and may(item, "unhold") and not _held_from_above(kind, item):
        before = status_before_hold(kind, item.id) or HOLDABLE_STATUSES[kind][-1]
        if kind == "vial":  # a vial punctured while held is open, never sealed again
            before = item.returning_to(before)
        change_status(item, before, actor, reason=f"hold released: {reason}", at=now)
        # An item emptied while held (before held stock was depleted at zero) is not usable again.
        deplete_if_empty(item, actor, reason="nothing left when its hold was released", at=now)
    audit.record(actor, f"{kind}.hold_released", kind, item.id,
                 old={"holds": [h.text for h in standing]},
                 new={"released": sorted(released), "holds": [h.text for h in left], "status": item.status},
                 reason=reason)
    return item


def _held_from_above(kind: str, item) -> bool:
    """A vial whose batch is on hold, or a child lot whose parent lot is, stays on hold when its own last
    hold is released."""
    if kind == "vial":
        return db.session.scalar(sa.select(Batch.status).where(Batch.id == item.batch_id)) == BatchStatus.ON_HOLD
    return kind == "lot" and item.parent_lot_id is not None and db.session.scalar(
        sa.select(Lot.id).where(Lot.id == item.parent_lot_id, Lot.status == LotStatus.ON_HOLD,
                                parent_holds_reach_children(Lot.id))) is not None


def holds_of(kind: str, item_id: int) -> list[Hold]:
    """Every hold an item ever carried, standing ones first, newest first (for its page)."""
    return list(db.session.scalars(
        sa.select(Hold).where(Hold.entity_type == kind, Hold.entity_id == item_id)
        .order_by(Hold.released_at.is_not(None), Hold.placed_at.desc(), Hold.id.desc())))


def hold_texts(kind: str, item_id: int) -> list[str]:
    return [h.text for h in standing_holds(kind, item_id)]
