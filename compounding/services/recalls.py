"""Recalls of a lot or a batch: everything affected becomes unusable at once.

The scope (batches, sessions, patients) is computed from the links by services.trace,
never typed in. A recall of a lot reaches its child lots (made at a transfer's destination: the
same supplier lot), their status and what was made from them; a child lot recalled on its own
leaves its parent alone. Staff record each attempt to reach a patient and its outcome; a recall
closes only when every patient in its scope has an outcome.
"""

import sqlalchemy as sa
from flask import current_app

from ..extensions import db
from ..limits import NOTE_MAX, NOTES_MAX
from ..models import (
    BATCH_TRANSITIONS,
    Batch,
    BatchComponent,
    Lot,
    Patient,
    Recall,
    RecallContact,
    RecallStatus,
    SessionUse,
    TreatmentSession,
    User,
)
from ..models.lot import LotStatus
from ..models.recall import CONTACT_METHODS, CONTACT_OUTCOMES, FINAL_OUTCOMES
from . import audit, exposure
from .access import ensure_can
from .bounds import checked_text
from .clock import utcnow
from .errors import InvalidInput, InvalidState, NotFound
from .history import ensure_transition, entity_type, may, record_created, transition
from .inventory import get_lot
from .lookup import fetch
from .signatures import pharmacist_signs, sign
from .trace import TRACE_PER_PAGE, Trace, lot_batch_ids, patient_in_scope, scope_patient_ids, trace_batch, trace_lot
from .transaction import transactional

# What the audit rows of a status change show.
STATUS = ("status",)
# The outcomes that say how the patient was (or was not) reached.
METHOD_REQUIRED = ("reached", "attempt_failed")
# The batch statuses a recall reaches (rejected and discarded ones never reached anyone).
RECALLABLE_BATCH_STATUSES = tuple(BATCH_TRANSITIONS["recall"].sources)


def get_recall(recall_id) -> Recall:
    return fetch(Recall, recall_id, NotFound("There is no such recall."))


def recall_scope(recall: Recall, page: int = 1, per_page: int | None = TRACE_PER_PAGE) -> Trace:
    """What the recall reached: counts over all of it, and one page of each list (`per_page=None`: all)."""
    if recall.lot_id:
        return trace_lot(recall.lot_id, page, per_page)
    return trace_batch(recall.batch_id, page, per_page)


@transactional
def open_recall(actor: User, *, reason: str, password: str, lot_id: int | None = None,
                batch_id: int | None = None) -> Recall:
    """A pharmacist opens a recall (e-signature); the target and every batch it reached are recalled."""
    ensure_can(actor, "recalls.open", "open recalls")
    reason = checked_text(reason, "reason", NOTES_MAX, required="Say why the recall is opened.")
    if bool(lot_id) == bool(batch_id):
        raise InvalidInput("Recall either a lot or a batch.", field="lot_id")
    children = []
    if lot_id:
        lot = get_lot(lot_id, for_update=True)
        open_already = db.session.scalar(sa.select(Recall.id).where(Recall.lot_id == lot.id,
                                                                     Recall.status == RecallStatus.OPEN))
        batch_ids = lot_batch_ids(lot.id)
        target = ("lot", lot.id, lot.code)
        children = _child_lots(lot.id)
    else:
        batch = db.session.scalar(sa.select(Batch).where(Batch.id == batch_id).with_for_update()
                                  .execution_options(populate_existing=True))
        if batch is None:
            raise NotFound("There is no such batch.", field="batch_id")
        open_already = db.session.scalar(sa.select(Recall.id).where(Recall.batch_id == batch.id,
                                                                     Recall.status == RecallStatus.OPEN))
        batch_ids = [batch.id]
        target = ("batch", batch.id, batch.code)
    if open_already:
        raise InvalidState(f"{target[2]} already has an open recall.", details={"recall_id": open_already})
    recall = Recall(lot_id=lot_id or None, batch_id=batch_id or None, reason=reason, opened_at=utcnow(),
                    opened_by_id=actor.id, status=RecallStatus.OPEN)
    db.session.add(recall)
    db.session.flush()
    sign(actor, password, "recall opened", "recall", recall.id)
    record_created(recall, actor, at=recall.opened_at, reason=reason)
    affected = db.session.scalars(
        sa.select(Batch).where(Batch.id.in_(batch_ids), Batch.status.in_(RECALLABLE_BATCH_STATUSES))
        .order_by(Batch.id).with_for_update().execution_options(populate_existing=True)).all()
    for item in ([lot] if lot_id else []) + children + affected:
        _recall_item(actor, item, recall, reason)
    audit.record(actor, "recall.opened", "recall", recall.id, new={
        "target": f"{target[0]} {target[2]}", "reason": reason,
        "batches_recalled": [b.code for b in affected], "child_lots_recalled": [c.code for c in children]})
    return recall


def _child_lots(lot_id: int) -> list[Lot]:
    """The lot's child lots and theirs, not yet recalled, locked in id order (a parent's id is below its child's)."""
    below = exposure.lots_below([lot_id], "recalled_lots")
    return list(db.session.scalars(
        sa.select(Lot).where(Lot.id.in_(sa.select(below.c.lot_id)), Lot.id != lot_id,
                             Lot.status != LotStatus.RECALLED)
        .order_by(Lot.id).with_for_update().execution_options(populate_existing=True)))


def reached_lots(recall_ids):
    """A recursive select of (recall_id, lot_id): each lot recall's lot and every lot made from it (child lots)."""
    down = (sa.select(Recall.id.label("recall_id"), Recall.lot_id.label("lot_id"))
            .where(Recall.id.in_(recall_ids), Recall.lot_id.is_not(None)).cte("reached_lots", recursive=True))
    child = sa.orm.aliased(Lot)
    return down.union_all(sa.select(down.c.recall_id, child.id).join(down, child.parent_lot_id == down.c.lot_id))


def reached_batches(recall_ids):
    """A subquery of (recall_id, batch_id): the batches each recall reached (its batch, or those made from its
    lot and the lot's child lots)."""
    lots = reached_lots(recall_ids)
    return sa.union(
        sa.select(Recall.id.label("recall_id"), Recall.batch_id.label("batch_id"))
        .where(Recall.id.in_(recall_ids), Recall.batch_id.is_not(None)),
        sa.select(lots.c.recall_id, BatchComponent.batch_id)
        .join(BatchComponent, BatchComponent.lot_id == lots.c.lot_id),
    ).subquery()


def reaching(batch_ids):
    """The condition on Recall of a recall whose scope holds these batches: of one of them, or of a lot they
    were made from or one it descends from."""
    return sa.or_(Recall.batch_id.in_(batch_ids), Recall.lot_id.in_(exposure.reaching_lots(batch_ids)))


def _recall_item(actor: User, item, recall: Recall, reason: str) -> None:
    """The recall's target or a batch it reached: `recalled`, saying by which recall and why."""
    kind = entity_type(item)
    with audit.change(actor, f"{kind}.recalled", item, STATUS, reason=reason) as change:
        transition(item, "recall", actor, reason=reason, reference=f"recall {recall.id}", at=recall.opened_at)
        item.status_reason = f"recall {recall.id}: {reason}"
        change.new["recall_id"] = recall.id


def join_recalls_opened_since(actor: User, session_row: TreatmentSession, batch_ids: list[int]) -> list[int]:
    """A session performed before a recall opened but entered after it.

    The scope is computed from the links, so the session is in it at once; this reopens
    each closed one (its patient must be contacted) and answers the recalls reached, whose
    pages flag the session "recorded after the recall opened". Joins the caller's transaction.
    """
    reached = db.session.scalars(
        sa.select(Recall).where(reaching(batch_ids), Recall.opened_at > session_row.performed_at)
        .order_by(Recall.id).with_for_update().execution_options(populate_existing=True)).all()
    for recall in reached:
        if not may(recall, "reopen"):
            continue
        why = f"session {session_row.id}, performed before the recall opened, was recorded after it"
        with audit.change(actor, "recall.reopened", recall, STATUS, reason=why,
                          old={"closed_at": recall.closed_at, "closed_by_id": recall.closed_by_id}) as change:
            transition(recall, "reopen", actor, reason=why, reference=f"session {session_row.id}")
            recall.closed_at = None
            recall.closed_by_id = None
            change.new["session_id"] = session_row.id
    return [recall.id for recall in reached]


def add_outcome(actor: User, recall: Recall, patient: Patient, outcome: str, method: str | None,
                note: str = "") -> RecallContact:
    """Write one contact row and its audit row, in the caller's transaction (its checks are the caller's)."""
    contact = RecallContact(recall_id=recall.id, patient_id=patient.id, contacted_at=utcnow(),
                            contacted_by_id=actor.id, outcome=outcome, method=method,
                            note=checked_text(note, "note", NOTE_MAX))
    db.session.add(contact)
    db.session.flush()
    audit.record(actor, "recall.contact", "recall", recall.id,
                 new={"patient": patient.chart_number, "outcome": outcome, "method": method, "note": contact.note})
    return contact


def failed_attempts(recall_id: int, patient_id: int) -> int:
    return db.session.scalar(sa.select(sa.func.count(RecallContact.id)).where(
        RecallContact.recall_id == recall_id, RecallContact.patient_id == patient_id,
        RecallContact.outcome == "attempt_failed"))


def _check_contact(outcome: str, method: str | None) -> None:
    if outcome not in CONTACT_OUTCOMES:
        raise InvalidInput(f"Choose the outcome: {', '.join(CONTACT_OUTCOMES)}.", field="outcome")
    if method is not None and method not in CONTACT_METHODS:
        raise InvalidInput(f"Choose how: {', '.join(CONTACT_METHODS)}.", field="method")
    if outcome in METHOD_REQUIRED and method is None:
        raise InvalidInput(f"Say how the patient was contacted ({outcome.replace('_', ' ')}).", field="method")


@transactional
def record_contact(actor: User, recall_id: int, patient_id: int, method: str | None = None, note: str = "", *,
                   outcome: str = "reached", password: str | None = None) -> RecallContact:
    """Record an attempt to reach a patient in the recall's scope and its outcome (who, when, how).

    `reached` and `attempt_failed` need the method. `unreachable` only after at least
    RECALL_MIN_ATTEMPTS failed attempts for that patient in that recall (409 before).
    `not_exposed` is a pharmacist's signature. The patient's latest outcome other than a
    failed attempt is their outcome.
    """
    ensure_can(actor, "recalls.contact", "record recall contacts")
    recall = get_recall(recall_id)
    method = method or None
    _check_contact(outcome, method)
    ensure_transition(recall, "contact")
    patient = db.session.get(Patient, patient_id) if patient_id else None
    if patient is None or not patient_in_scope(patient.id, lot_id=recall.lot_id, batch_id=recall.batch_id):
        raise InvalidInput("This patient is not in the recall's scope.", field="patient_id")
    if outcome == "unreachable":
        needed, failed = current_app.config["RECALL_MIN_ATTEMPTS"], failed_attempts(recall.id, patient.id)
        if failed < needed:
            raise InvalidState(f"A patient is unreachable only after {needed} failed attempts are recorded; "
                               f"{failed} so far.", field="outcome",
                               details={"outcome": ["Record the failed attempts first."], "failed_attempts": failed,
                                        "needed": needed})
    if outcome == "not_exposed" and patient_in_scope(patient.id, lot_id=recall.lot_id, batch_id=recall.batch_id,
                                                     standing_only=True):
        # Only a void or a patient correction takes a patient out of exposure.
        raise InvalidState("This patient received the recalled stock in a session that stands: record how they "
                           "were contacted, or void or correct that session first.", field="outcome",
                           details={"outcome": ["Not exposed only once no session of the patient stands."]})
    if outcome == "not_exposed":
        pharmacist_signs(actor, password, "not exposed", "recall", recall.id,
                         doing="record that a patient was not exposed")
    return add_outcome(actor, recall, patient, outcome, method, note)


def counted_outcomes(recall_ids, patient_ids=None):
    """A select of (recall_id, patient_id): each patient (of `patient_ids`, or all) whose outcome counts.

    The one rule every counter uses: a final outcome counts unless a session of the patient
    in the scope was recorded after the recall opened (a late entry or a correction) and
    after that outcome; then the patient has to be contacted again.
    """
    reached = reached_batches(recall_ids)
    later_session = (
        sa.select(TreatmentSession.id)
        .join(SessionUse, SessionUse.session_id == TreatmentSession.id)
        .join(reached, reached.c.batch_id == SessionUse.batch_id)
        .where(TreatmentSession.patient_id == RecallContact.patient_id,
               TreatmentSession.recorded_at > Recall.opened_at,
               TreatmentSession.recorded_at > RecallContact.contacted_at,
               reached.c.recall_id == Recall.id))
    query = (sa.select(RecallContact.recall_id, RecallContact.patient_id)
             .join(Recall, Recall.id == RecallContact.recall_id)
             .where(RecallContact.recall_id.in_(recall_ids), RecallContact.outcome.in_(FINAL_OUTCOMES),
                    ~later_session.exists())
             .distinct())
    return query if patient_ids is None else query.where(RecallContact.patient_id.in_(patient_ids))


def patients_without_outcome(recall: Recall) -> int:
    """Patients in the recall's scope (voided sessions too) with no outcome that counts yet."""
    with_outcome = counted_outcomes([recall.id]).subquery()
    scope = scope_patient_ids(lot_id=recall.lot_id, batch_id=recall.batch_id).subquery()
    return db.session.scalar(sa.select(sa.func.count()).select_from(scope)
                             .where(scope.c.patient_id.not_in(sa.select(with_outcome.c.patient_id))))


@transactional
def close_recall(actor: User, recall_id: int, outcome: str, password: str) -> Recall:
    """Close a recall with its outcome (e-signature) once every patient in scope has one. Stock stays recalled."""
    ensure_can(actor, "recalls.open", "close recalls")
    outcome = checked_text(outcome, "outcome", NOTES_MAX, required="Record the outcome of the recall.")
    # Locked: a late entry reopening or joining this recall waits, so the count below stays true.
    recall = db.session.scalar(sa.select(Recall).where(Recall.id == recall_id).with_for_update()
                               .execution_options(populate_existing=True)) if recall_id else None
    if recall is None:
        raise NotFound("There is no such recall.")
    ensure_transition(recall, "close")
    missing = patients_without_outcome(recall)
    if missing:
        raise InvalidState(f"{missing} patient{'s' if missing != 1 else ''} in the recall's scope "
                           f"{'have' if missing != 1 else 'has'} no outcome yet: record one for each before closing.",
                           details={"outcome": ["Every patient needs an outcome first."],
                                    "patients_without_outcome": missing})
    sign(actor, password, "recall closed", "recall", recall.id)
    with audit.change(actor, "recall.closed", recall, STATUS) as change:
        transition(recall, "close", actor, reason=outcome)
        recall.closed_at = utcnow()
        recall.closed_by_id = actor.id
        recall.outcome = outcome
        change.new["outcome"] = outcome
    return recall


def contact_progress(recall: Recall, scope: Trace) -> tuple[int, int]:
    """(patients with an outcome that counts, patients in scope)."""
    with_outcome = db.session.scalar(sa.select(sa.func.count()).select_from(counted_outcomes([recall.id]).subquery()))
    return with_outcome, scope.counts["patients"]
