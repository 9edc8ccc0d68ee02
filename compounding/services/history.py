"""Status history: every status change goes through `change_status`, checked against the
transition tables beside the statuses (models.STATUS_TRANSITIONS) by `ensure_transition`.

The rows let a rule ask what an item's status was at the moment it judges (`status_at`),
so a session entered late is judged at the time it was performed, not at the time typed.
"""

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ..extensions import db
from ..models import (
    STATUS_TRANSITIONS,
    Batch,
    BatchStatus,
    Formula,
    Hold,
    Lot,
    Recall,
    StatusChange,
    Transfer,
    User,
    Vial,
)
from ..models._common import Transition
from ..models.batch import BATCH_HOLDABLE
from ..models.lot import LOT_HOLDABLE, LotStatus
from ..models.vial import VIAL_TRANSITIONS, VialStatus
from . import audit, exposure
from .clock import utcnow
from .errors import InvalidState
from .ledger import move_vial

ENTITY_TYPES = {Lot: "lot", Batch: "batch", Recall: "recall", Vial: "vial", Transfer: "transfer"}
# Formulas change status too, but keep no history rows (their versions are their history).
_TRANSITION_KINDS = {**ENTITY_TYPES, Formula: "formula"}
# The column's width; references are made here ("recall 12", "session 40"), never typed.
REFERENCE_MAX = 120
# Set on an item by change_status: the status its history row was written for.
_RECORDED = "_status_change_recorded"


def entity_type(item) -> str:
    return ENTITY_TYPES[type(item)]


def _row(item, from_status: str | None, to_status: str, actor: User | None, reason: str, reference: str,
         at: datetime | None) -> StatusChange:
    row = StatusChange(entity_type=entity_type(item), entity_id=item.id, from_status=from_status,
                       to_status=to_status, changed_at=at or utcnow(), actor_id=actor.id if actor else None,
                       actor_name=actor.display_name if actor else "", reason=reason or "",
                       reference=(reference or "")[:REFERENCE_MAX])
    db.session.add(row)
    return row


def transition_of(item, action: str) -> Transition:
    """The table's row for doing `action` to this kind of item."""
    return STATUS_TRANSITIONS[_TRANSITION_KINDS[type(item)]][action]


def may(item, action: str) -> bool:
    """Whether the item's current status allows `action` (the same table `ensure_transition` reads)."""
    return transition_of(item, action).allows(item.status)


def ensure_transition(item, action: str, *, field: str | None = None) -> Transition:
    """Refuse (409, with the table's message) an action the item's status does not allow."""
    rule = transition_of(item, action)
    if not rule.allows(item.status):
        label = getattr(item, "label", None) or getattr(item, "code", "")
        raise InvalidState(rule.refusal_for(label, item.status), field=field)
    return rule


def transition(item, action: str, actor: User | None, *, reason: str = "", reference: str = "",
               at: datetime | None = None, reach_child_lots: bool = True) -> None:
    """Check `action` against the table, then change the status it leads to (with its history row)."""
    rule = ensure_transition(item, action)
    change_status(item, rule.to, actor, reason=reason, reference=reference, at=at, reach_child_lots=reach_child_lots)


def signed_into_use(actor: User, item, action: str, audit_action: str, fields, *, stamp: str,
                    values: dict | None = None) -> None:
    """The signed step that makes an item usable: who and when (`<stamp>_at`, `<stamp>_by_id`), its new
    status, `values` set on it, one audit row of `fields` before and after. The caller has checked and signed."""
    with audit.change(actor, audit_action, item, fields):
        for name, value in (values or {}).items():
            setattr(item, name, value)
        at = utcnow()
        setattr(item, f"{stamp}_at", at)
        setattr(item, f"{stamp}_by_id", actor.id)
        transition(item, action, actor, reason=stamp, at=at)


def explained_change(actor: User, item, action: str, audit_action: str, fields, reason: str, *,
                     old: dict | None = None) -> None:
    """A status change a person explains: the new status, `status_reason`, one audit row with the reason."""
    with audit.change(actor, audit_action, item, fields, reason=reason, old=old):
        transition(item, action, actor, reason=reason)
        item.status_reason = reason


def record_created(item, actor: User | None, *, at: datetime | None = None, reason: str = "") -> None:
    """The first row of an item's history: it came into being with its current status."""
    _row(item, None, item.status, actor, reason, "", at)


def record_depletion(actor: User | None, item, reason: str, *, reference: str = "",
                     at: datetime | None = None) -> None:
    """Deplete an emptied lot, batch or vial (deplete_if_empty) and audit it with the status it left."""
    before = deplete_if_empty(item, actor, reason=reason, reference=reference, at=at)
    if before:
        kind = entity_type(item)
        audit.record(actor, f"{kind}.depleted", kind, item.id, old={"status": before},
                     new={"status": item.status}, reason=reason)


def standing_holds(kind: str, item_id: int, at: datetime | None = None) -> list[Hold]:
    """The hold reasons standing on an item at `at` (now when None), oldest first."""
    query = sa.select(Hold).where(Hold.entity_type == kind, Hold.entity_id == item_id).order_by(Hold.id)
    if at is None:
        query = query.where(Hold.released_at.is_(None))
    else:
        query = query.where(Hold.placed_at <= at, sa.or_(Hold.released_at.is_(None), Hold.released_at > at))
    return list(db.session.scalars(query))


# Hold reasons that stay on their own lot: a temperature excursion concerns the fridge the lot was in,
# not the same supplier lot kept at another site.
OWN_LOT_HOLDS = ("excursion",)


def parent_holds_reach_children(lot_id_column):
    """SQL: the lot carries a standing hold that reaches its child lots (any but an excursion's)."""
    return sa.select(Hold.id).where(Hold.entity_type == "lot", Hold.entity_id == lot_id_column,
                                    Hold.released_at.is_(None), Hold.kind.not_in(OWN_LOT_HOLDS)).exists()


def hold_child_lots(lot: Lot, actor: User | None, *, reason: str, at: datetime | None) -> None:
    """Put a lot's child lots on hold with it: for a hold that reaches them placed on a lot already on hold
    (for a reason that did not reach them)."""
    _reach_child_lots(lot, LotStatus.RELEASED, actor, reason=reason, at=at, action="hold")


def release_child_lots(lot: Lot, actor: User | None, *, reason: str, at: datetime | None) -> None:
    """Its child lots held with it go back to their own status: the lot's last hold that reached them was
    released while it stays on hold for reasons of its own (an excursion)."""
    _reach_child_lots(lot, LotStatus.ON_HOLD, actor, reason=reason, at=at, action="unhold")


def change_status(item, to_status: str, actor: User | None, *, reason: str = "", reference: str = "",
                  at: datetime | None = None, reach_child_lots: bool = True) -> None:
    """Set a lot's, batch's or recall's status and keep the change with its time.

    A lot or batch going back to a usable status while hold reasons stand goes on to
    `on_hold` at once (two rows: the history says what happened, then why it is held).
    A batch's new status reaches its vials in the same transaction (`_reach_vials`); a lot's hold
    and its release reach its child lots (`_reach_child_lots`), and a child lot going back to a
    usable status while its parent is on hold goes on hold with it.
    """
    from_status = item.status
    if from_status == to_status:
        return
    _change_status(item, to_status, actor, reason=reason, reference=reference, at=at)
    if type(item) is Batch:
        _reach_vials(item, from_status, actor, reason=reason, reference=reference, at=at)
    elif type(item) is Lot and reach_child_lots:
        _reach_child_lots(item, from_status, actor, reason=reason, at=at)


def _change_status(item, to_status: str, actor: User | None, *, reason: str, reference: str,
                   at: datetime | None) -> None:
    from_status = item.status
    item.status = to_status
    item.__dict__[_RECORDED] = to_status
    _row(item, from_status, to_status, actor, reason, reference, at)
    kind = entity_type(item)
    hold = STATUS_TRANSITIONS.get(kind, {}).get("hold")
    if hold is not None and hold.allows(to_status):
        why = [h.text for h in standing_holds(kind, item.id)]
        if not why and kind == "lot" and item.parent_lot_id is not None:
            why = [f"parent lot {code} is on hold" for code in db.session.scalars(
                sa.select(Lot.code).where(Lot.id == item.parent_lot_id, Lot.status == LotStatus.ON_HOLD,
                                          parent_holds_reach_children(Lot.id)))]
        if why:
            held = hold.to
            item.status = held
            item.__dict__[_RECORDED] = held
            _row(item, to_status, held, actor, "; ".join(why), "", at)


def _reach_child_lots(lot: Lot, before: str, actor: User | None, *, reason: str, at: datetime | None,
                      action: str | None = None) -> None:
    """A lot's hold, or its last hold released, carried to its child lots (the same supplier lot at other sites).

    Held -> its quarantined and released child lots (and theirs) `on_hold`; released -> each
    child lot back to its status before the hold, unless it carries holds of its own or its own
    parent is still held. One audit row and one status-history row per child lot (they are few);
    the lineage, the holds and the statuses before are read in three statements.
    """
    held = LotStatus.ON_HOLD
    if action is not None:
        pass
    elif lot.status == held and before != held:
        action = "hold"
    elif before == held and lot.status in LOT_HOLDABLE:
        action = "unhold"
    else:
        return
    below = exposure.lots_below([lot.id], "held_lots")
    children = db.session.scalars(
        sa.select(Lot).where(Lot.id.in_(sa.select(below.c.lot_id)), Lot.id != lot.id)
        .order_by(Lot.id).with_for_update().execution_options(populate_existing=True)).all()
    if not children:
        return
    ids = [child.id for child in children]
    own = set(db.session.scalars(sa.select(Hold.entity_id).where(
        Hold.entity_type == "lot", Hold.entity_id.in_(ids), Hold.released_at.is_(None))))
    returns_to = dict(db.session.execute(
        sa.select(StatusChange.entity_id, StatusChange.from_status)
        .where(StatusChange.entity_type == "lot", StatusChange.entity_id.in_(ids), StatusChange.to_status == held)
        .order_by(StatusChange.changed_at, StatusChange.id)).all()) if action == "unhold" else {}
    why = f"parent lot {lot.code} {'on hold' if action == 'hold' else 'released from hold'}" + (
        f": {reason}" if reason else "")
    # A parent still on hold only for reasons of its own (an excursion) holds no child lot.
    statuses = {lot.id: lot.status if action == "hold" else None}
    for child in children:  # in id order: a lot's parent comes before it
        was = child.status
        if action == "hold" and was in LOT_HOLDABLE:
            _change_status(child, held, actor, reason=why, reference=f"lot {lot.id}", at=at)
        elif (action == "unhold" and was == held and child.id not in own
              and statuses.get(child.parent_lot_id) != held):
            _change_status(child, returns_to.get(child.id) or LotStatus.RELEASED, actor, reason=why,
                           reference=f"lot {lot.id}", at=at)
        if child.status != was:
            audit.record(actor, f"lot.{'held' if action == 'hold' else 'hold_lifted'}_with_parent", "lot", child.id,
                         old={"status": was}, new={"status": child.status, "parent": lot.code}, reason=why)
            if action == "unhold":
                deplete_if_empty(child, actor, reason="nothing left when its parent's hold was released", at=at)
        statuses[child.id] = child.status


# What a batch's new status does to its vials (DESIGN 10.3): the vial action, by the batch's status after.
_VIAL_ACTION = {BatchStatus.ON_HOLD: "hold", BatchStatus.RECALLED: "recall", BatchStatus.DISCARDED: "discard",
                BatchStatus.REJECTED: "discard"}


def _reach_vials(batch: Batch, before: str, actor: User | None, *, reason: str, reference: str,
                 at: datetime | None) -> None:
    """The batch's status change, carried to each vial it concerns, with a history row per vial.

    Held -> its sealed and open vials `on_hold`; its last hold released -> those vials back to
    their status before the hold, unless they carry holds of their own; recalled -> `recalled`;
    discarded or rejected -> `discarded`, each vial's remainder written off as waste. A fixed
    handful of statements whatever the number of vials (the write-off: one ledger row per vial).
    """
    action = _VIAL_ACTION.get(batch.status)
    if action is None and before == BatchStatus.ON_HOLD and batch.status in BATCH_HOLDABLE:
        action = "unhold"
    if action is None:
        return
    vials = db.session.scalars(
        sa.select(Vial).where(Vial.batch_id == batch.id,
                              Vial.status.in_(sorted(VIAL_TRANSITIONS[action].sources)))
        .order_by(Vial.number).with_for_update().execution_options(populate_existing=True)).all()
    if not vials:
        return
    why = f"batch {batch.code} {batch.status.replace('_', ' ')}" + (f": {reason}" if reason else "")
    reference = reference or f"batch {batch.id}"
    targets = (_vials_released(vials) if action == "unhold"
               else {vial.id: VIAL_TRANSITIONS[action].to for vial in vials})
    rows = []
    for vial in vials:
        target = targets.get(vial.id)
        if target is None or target == vial.status:
            continue
        if action == "discard":
            vial.status_reason = why
            if vial.remaining_ml > 0:
                move_vial(vial, batch, "waste", -vial.remaining_ml, actor, reason=batch.discard_reason or batch.status,
                          note=why, reference_type="discard" if batch.status == BatchStatus.DISCARDED else "reject",
                          reference_id=batch.id, occurred_at=at)
        rows.append(_history_values(vial, target, actor, why, reference, at))
        vial.status = target
        vial.__dict__[_RECORDED] = target
    if rows:  # one statement for every vial's history row
        db.session.execute(sa.insert(StatusChange), rows)


def _vials_released(vials: list[Vial]) -> dict[int, str]:
    """{vial id: status to return to} for held vials that carry no hold of their own: two statements.

    A vial returns to its status before the hold (its history), `open` if punctured meanwhile (a late
    entry), or `spent` when nothing is left.
    """
    ids = [vial.id for vial in vials]
    own = set(db.session.scalars(sa.select(Hold.entity_id).where(
        Hold.entity_type == "vial", Hold.entity_id.in_(ids), Hold.released_at.is_(None))))
    before = dict(db.session.execute(
        sa.select(StatusChange.entity_id, StatusChange.from_status)
        .where(StatusChange.entity_type == "vial", StatusChange.entity_id.in_(ids),
               StatusChange.to_status == VialStatus.ON_HOLD)
        .order_by(StatusChange.changed_at, StatusChange.id)).all())
    return {vial.id: vial.returning_to(before.get(vial.id) or VialStatus.SEALED)
            for vial in vials if vial.id not in own}


def _history_values(item, to_status: str, actor: User | None, reason: str, reference: str,
                    at: datetime | None) -> dict:
    """The columns of one `status_changes` row, for a statement that writes many."""
    return {"entity_type": entity_type(item), "entity_id": item.id, "from_status": item.status,
            "to_status": to_status, "changed_at": at or utcnow(), "actor_id": actor.id if actor else None,
            "actor_name": actor.display_name if actor else "", "reason": reason or "",
            "reference": (reference or "")[:REFERENCE_MAX]}


def deplete_if_empty(item, actor: User | None, *, reason: str, reference: str = "",
                     at: datetime | None = None) -> str | None:
    """A lot or batch with nothing left is `depleted`, held or not.

    Returns the status it left (for the caller's audit row), None when nothing changed.
    A held item stays depleted when its holds are released: nothing brings it back.
    """
    remaining = {Lot: "remaining", Batch: "remaining_volume_ml", Vial: "remaining_ml"}[type(item)]
    remaining = getattr(item, remaining)
    before = item.status
    if remaining != 0 or not may(item, "deplete"):
        return None
    change_status(item, transition_of(item, "deplete").to, actor, reason=reason, reference=reference, at=at)
    return before


@sa.event.listens_for(Session, "before_flush")
def _keep_every_status_change(session, flush_context, instances) -> None:
    """The net under change_status: a status set any other way still gets its history row."""
    for item in list(session.dirty):
        if type(item) not in ENTITY_TYPES:
            continue
        recorded = item.__dict__.pop(_RECORDED, None)
        changes = sa.inspect(item).attrs.status.history
        if not changes.has_changes() or recorded == item.status:
            continue
        before = changes.deleted[0] if changes.deleted else None
        session.add(StatusChange(entity_type=entity_type(item), entity_id=item.id, from_status=before,
                                 to_status=item.status, changed_at=utcnow(), actor_name="",
                                 reason="status set without going through the status history", reference=""))


def status_at(kind: str, item_id: int, at: datetime, current: str) -> str | None:
    """The item's status at `at` per its history.

    An item with no history (made before history was kept and not backfilled) answers its
    current status; one whose history starts after `at` did not exist yet (None).
    """
    last = db.session.scalar(
        sa.select(StatusChange.to_status).where(StatusChange.entity_type == kind, StatusChange.entity_id == item_id,
                                                StatusChange.changed_at <= at)
        .order_by(StatusChange.changed_at.desc(), StatusChange.id.desc()).limit(1))
    if last is not None:
        return last
    first = db.session.scalar(
        sa.select(StatusChange.id).where(StatusChange.entity_type == kind, StatusChange.entity_id == item_id)
        .limit(1))
    return None if first is not None else current


def status_before_hold(kind: str, item_id: int) -> str | None:
    """The status an item had when it last went on hold (what it returns to)."""
    return db.session.scalar(
        sa.select(StatusChange.from_status).where(StatusChange.entity_type == kind,
                                                  StatusChange.entity_id == item_id,
                                                  StatusChange.to_status == STATUS_TRANSITIONS[kind]["hold"].to)
        .order_by(StatusChange.changed_at.desc(), StatusChange.id.desc()).limit(1))


def history_of(kind: str, item_id: int) -> list[StatusChange]:
    return list(db.session.scalars(
        sa.select(StatusChange).where(StatusChange.entity_type == kind, StatusChange.entity_id == item_id)
        .order_by(StatusChange.changed_at, StatusChange.id)))
