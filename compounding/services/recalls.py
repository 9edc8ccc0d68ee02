"""Recalls of a lot or a batch: everything affected becomes unusable at once.

The scope (batches, sessions, patients) is computed from the links by services.trace,
never typed in; staff tick each patient as contacted until the recall can be closed.
"""

import sqlalchemy as sa

from ..extensions import db
from ..models import Batch, BatchComponent, Patient, Recall, RecallContact, TreatmentSession, User
from ..models.recall import CONTACT_METHODS
from . import audit
from .access import ensure_can
from .clock import utcnow
from .errors import InvalidInput, InvalidState, NotFound
from .history import change_status, record_created
from .inventory import get_lot
from .signatures import sign
from .trace import PER_PAGE, Trace, lot_batch_ids, patient_in_scope, trace_batch, trace_lot

RECALLABLE_BATCH_STATUSES = ("prepared", "released", "depleted", "on_hold")


def get_recall(recall_id) -> Recall:
    recall = db.session.get(Recall, recall_id) if recall_id else None
    if recall is None:
        raise NotFound("There is no such recall.")
    return recall


def recall_scope(recall: Recall, page: int = 1, per_page: int | None = PER_PAGE) -> Trace:
    """What the recall reached: counts over all of it, and one page of each list (`per_page=None`: all)."""
    if recall.lot_id:
        return trace_lot(recall.lot_id, page, per_page)
    return trace_batch(recall.batch_id, page, per_page)


def open_recall(actor: User, *, reason: str, password: str, lot_id: int | None = None,
                batch_id: int | None = None) -> Recall:
    """A pharmacist opens a recall (e-signature); the target and every batch it reached are recalled."""
    ensure_can(actor, "recalls.open", "open recalls")
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("Say why the recall is opened.", field="reason")
    if bool(lot_id) == bool(batch_id):
        raise InvalidInput("Recall either a lot or a batch.", field="lot_id")
    if lot_id:
        lot = get_lot(lot_id, for_update=True)
        open_already = db.session.scalar(sa.select(Recall.id).where(Recall.lot_id == lot.id, Recall.status == "open"))
        batch_ids = lot_batch_ids(lot.id)
        target = ("lot", lot.id, lot.code)
    else:
        batch = db.session.scalar(sa.select(Batch).where(Batch.id == batch_id).with_for_update()
                                  .execution_options(populate_existing=True))
        if batch is None:
            raise NotFound("There is no such batch.", field="batch_id")
        open_already = db.session.scalar(sa.select(Recall.id).where(Recall.batch_id == batch.id,
                                                                     Recall.status == "open"))
        batch_ids = [batch.id]
        target = ("batch", batch.id, batch.code)
    if open_already:
        raise InvalidState(f"{target[2]} already has an open recall.", details={"recall_id": open_already})
    recall = Recall(lot_id=lot_id or None, batch_id=batch_id or None, reason=reason[:5000], opened_at=utcnow(),
                    opened_by_id=actor.id, status="open")
    db.session.add(recall)
    db.session.flush()
    sign(actor, password, "recall opened", "recall", recall.id)
    record_created(recall, actor, at=recall.opened_at, reason=reason)
    if lot_id:
        old_status = lot.status
        change_status(lot, "recalled", actor, reason=reason, reference=f"recall {recall.id}", at=recall.opened_at)
        lot.status_reason = f"recall {recall.id}: {reason}"[:2000]
        audit.record(actor, "lot.recalled", "lot", lot.id, old={"status": old_status},
                     new={"status": "recalled", "recall_id": recall.id}, reason=reason)
    affected = db.session.scalars(
        sa.select(Batch).where(Batch.id.in_(batch_ids), Batch.status.in_(RECALLABLE_BATCH_STATUSES))
        .order_by(Batch.id).with_for_update().execution_options(populate_existing=True)).all()
    for batch in affected:
        audit.record(actor, "batch.recalled", "batch", batch.id, old={"status": batch.status},
                     new={"status": "recalled", "recall_id": recall.id}, reason=reason)
        change_status(batch, "recalled", actor, reason=reason, reference=f"recall {recall.id}", at=recall.opened_at)
        batch.status_reason = f"recall {recall.id}: {reason}"[:2000]
    audit.record(actor, "recall.opened", "recall", recall.id, new={
        "target": f"{target[0]} {target[2]}", "reason": reason,
        "batches_recalled": [b.code for b in affected]})
    db.session.commit()
    return recall


def join_recalls_opened_since(actor: User, session_row: TreatmentSession, batch_ids: list[int]) -> list[int]:
    """Rule 10.1.2: a session performed before a recall opened but entered after it.

    The scope is computed from the links, so the session is in it at once; this reopens
    each closed one (its patient must be contacted) and answers the recalls reached, whose
    pages flag the session "recorded after the recall opened". Joins the caller's transaction.
    """
    lot_ids = sa.select(BatchComponent.lot_id).where(BatchComponent.batch_id.in_(batch_ids))
    reached = db.session.scalars(
        sa.select(Recall).where(sa.or_(Recall.batch_id.in_(batch_ids), Recall.lot_id.in_(lot_ids)),
                                Recall.opened_at > session_row.performed_at)
        .order_by(Recall.id).with_for_update().execution_options(populate_existing=True)).all()
    for recall in reached:
        if recall.status != "closed":
            continue
        why = f"session {session_row.id}, performed before the recall opened, was recorded after it"
        old = {"status": recall.status, "closed_at": recall.closed_at, "closed_by_id": recall.closed_by_id}
        change_status(recall, "open", actor, reason=why, reference=f"session {session_row.id}")
        recall.closed_at = None
        recall.closed_by_id = None
        audit.record(actor, "recall.reopened", "recall", recall.id, old=old,
                     new={"status": "open", "session_id": session_row.id}, reason=why)
    return [recall.id for recall in reached]


def record_contact(actor: User, recall_id: int, patient_id: int, method: str, note: str = "") -> RecallContact:
    """Tick a patient in the recall's scope as contacted (who, when, how)."""
    ensure_can(actor, "recalls.contact", "record recall contacts")
    recall = get_recall(recall_id)
    if recall.status != "open":
        raise InvalidState("This recall is closed.")
    if method not in CONTACT_METHODS:
        raise InvalidInput(f"Choose how: {', '.join(CONTACT_METHODS)}.", field="method")
    if not patient_in_scope(patient_id, lot_id=recall.lot_id, batch_id=recall.batch_id):
        raise InvalidInput("This patient is not in the recall's scope.", field="patient_id")
    if db.session.scalar(sa.select(RecallContact.id).where(RecallContact.recall_id == recall.id,
                                                            RecallContact.patient_id == patient_id)):
        raise InvalidState("This patient is already ticked as contacted.", field="patient_id")
    contact = RecallContact(recall_id=recall.id, patient_id=patient_id, contacted_at=utcnow(),
                            contacted_by_id=actor.id, method=method, note=(note or "").strip()[:2000])
    db.session.add(contact)
    db.session.flush()
    chart = db.session.scalar(sa.select(Patient.chart_number).where(Patient.id == patient_id))
    audit.record(actor, "recall.contact", "recall", recall.id,
                 new={"patient": chart, "method": method, "note": contact.note})
    db.session.commit()
    return contact


def close_recall(actor: User, recall_id: int, outcome: str, password: str) -> Recall:
    """Close a recall with its outcome (e-signature). Recalled stock stays recalled."""
    ensure_can(actor, "recalls.open", "close recalls")
    outcome = (outcome or "").strip()
    if not outcome:
        raise InvalidInput("Record the outcome of the recall.", field="outcome")
    recall = get_recall(recall_id)
    if recall.status != "open":
        raise InvalidState("This recall is already closed.")
    sign(actor, password, "recall closed", "recall", recall.id)
    recall.status = "closed"
    recall.closed_at = utcnow()
    recall.closed_by_id = actor.id
    recall.outcome = outcome[:5000]
    audit.record(actor, "recall.closed", "recall", recall.id, old={"status": "open"},
                 new={"status": "closed", "outcome": recall.outcome})
    db.session.commit()
    return recall


def contact_progress(recall: Recall, scope: Trace) -> tuple[int, int]:
    contacted = db.session.scalar(sa.select(sa.func.count(RecallContact.id))
                                  .where(RecallContact.recall_id == recall.id))
    return contacted, scope.counts["patients"]
