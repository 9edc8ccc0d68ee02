"""Voiding a treatment session and correcting a wrongly named patient.

A correction never shrinks a trace: the voided session stays, flagged, with who, when, the
reason code and why, in every trace and recall, and its adverse events keep counting.
Volume goes back only to a multiple-dose vial still open, within its in-use deadline, of a
batch still released and in date; a void never un-punctures a vial, a single-dose vial
stays spent, and a use recorded before vials (pooled on the batch) returns nothing.
"""

import sqlalchemy as sa

from ..extensions import db
from ..limits import REASON_MAX
from ..models import (
    AdverseEvent,
    AuditEvent,
    Batch,
    BatchStatus,
    Recall,
    RecallStatus,
    SessionUse,
    TreatmentSession,
    User,
    Vial,
    VialStatus,
)
from ..models.treatment import PLAIN_VOID_CODES, VOID_CODES
from . import audit, exposure
from .access import ensure_can
from .bounds import checked_text
from .clock import utcnow
from .errors import InvalidInput, InvalidState, NotAllowed, NotFound
from .ledger import move_vial
from .recalls import add_outcome, join_recalls_opened_since, reaching
from .signatures import pharmacist_signs, sign
from .trace import patient_in_scope
from .transaction import transactional
from .treatments import get_patient

# The audit actions that enter a session: whoever wrote one answers for the entry.
RECORDING_ACTIONS = ("session.recorded", "session.patient_corrected")


def _reason(text: str, what: str) -> str:
    return checked_text(text, "reason", REASON_MAX, required=f"Say why {what}.")


def _locked_session(session_id: int) -> TreatmentSession:
    # Locked: two people voiding at once must not both give the volume back.
    session_row = db.session.scalar(
        sa.select(TreatmentSession).where(TreatmentSession.id == session_id)
        .with_for_update().execution_options(populate_existing=True))
    if session_row is None:
        raise NotFound("There is no such session.")
    if session_row.voided_at is not None:
        raise InvalidState("This session is already voided.")
    return session_row


def recorded_by(session_id: int) -> int | None:
    """Who entered the session: the actor of the audit row that recorded it (or moved it, corrected)."""
    return db.session.scalar(
        sa.select(AuditEvent.actor_id).where(AuditEvent.entity_type == "treatment_session",
                                             AuditEvent.entity_id == session_id,
                                             AuditEvent.action.in_(RECORDING_ACTIONS))
        .order_by(AuditEvent.id).limit(1))


def may_void(actor: User, session_row: TreatmentSession) -> bool:
    """A pharmacist voids any session; anyone else only one they performed or entered themselves.

    A pharmacist answers for corrections; a practitioner answers for
    their own work: the session names them, or they typed it in for a colleague.
    """
    if actor.role == "pharmacist":
        return True
    return actor.id == session_row.practitioner_id or actor.id == recorded_by(session_row.id)


def ensure_may_void(actor: User, session: TreatmentSession | int) -> None:
    """Refuse (403) a void of someone else's session; an unknown session is 404."""
    if isinstance(session, int):
        found = db.session.get(TreatmentSession, session)
        if found is None:
            raise NotFound("There is no such session.")
        session = found
    if not may_void(actor, session):
        raise NotAllowed("A practitioner voids only their own sessions (those they performed or recorded): "
                         "ask the practitioner who did, or a pharmacist.")


def recalls_reaching(session_id: int, *, open_only: bool = True) -> list[Recall]:
    """The recalls whose scope holds the session: of one of its batches, or of a lot in one of them (or a lot
    it descends from: a child lot's batches are in its parent's recall)."""
    batch_ids = sa.select(SessionUse.batch_id).where(SessionUse.session_id == session_id)
    query = sa.select(Recall).where(reaching(batch_ids))
    if open_only:
        query = query.where(Recall.status == RecallStatus.OPEN)
    return list(db.session.scalars(query.order_by(Recall.id)))


def signature_reasons(session_id: int) -> list[str]:
    """Why voiding this session needs a pharmacist's signature (empty: it does not)."""
    reasons = [f"it is in the scope of open recall {recall.id}" for recall in recalls_reaching(session_id)]
    if db.session.scalar(sa.select(sa.func.count(AdverseEvent.id)).where(AdverseEvent.session_id == session_id)):
        reasons.append("it carries an adverse event")
    return reasons


def _not_returned_because(batch: Batch, vial: Vial | None, now) -> str | None:
    """Why a voided use's volume stays taken (None: it goes back to its vial)."""
    if vial is None:
        return ("not returned: recorded before vials, its volume was drawn from the batch's pool, which "
                "now lives in its vials")
    if batch.status != BatchStatus.RELEASED or batch.is_expired(now):
        why = "expired" if batch.status == BatchStatus.RELEASED else batch.status
        return f"not returned: the batch is {why}"
    if vial.single_dose:
        return f"not returned: single-dose vial {vial.code} stays spent"
    if vial.status != VialStatus.OPEN:
        return f"not returned: vial {vial.code} is {vial.status}"
    if now >= vial.in_use_until(batch.beyond_use_at):
        return f"not returned: vial {vial.code} is past its in-use deadline"
    return None


def _mark_voided(actor: User, session_row: TreatmentSession, code: str, reason: str, *,
                 return_volume: bool) -> dict:
    """Flag the session voided; give volume back to the open multiple-dose vials. What went where, for the audit."""
    uses = db.session.scalars(sa.select(SessionUse).where(SessionUse.session_id == session_row.id)
                              .order_by(SessionUse.id)).all()
    # Batches, then vials, in id order: the order a session locks them in.
    batches = {b.id: b for b in db.session.scalars(
        sa.select(Batch).where(Batch.id.in_([u.batch_id for u in uses])).order_by(Batch.id)
        .with_for_update().execution_options(populate_existing=True))}
    vials = {v.id: v for v in db.session.scalars(
        sa.select(Vial).where(Vial.id.in_([u.vial_id for u in uses if u.vial_id])).order_by(Vial.id)
        .with_for_update().execution_options(populate_existing=True))}
    now = utcnow()
    returned, kept = [], []
    for use in uses:
        batch, vial = batches[use.batch_id], vials.get(use.vial_id)
        line = {"batch": batch.code, "vial": vial.code if vial else None, "volume_ml": use.volume_ml}
        why = "moved to the corrected session" if not return_volume else _not_returned_because(batch, vial, now)
        if why is None:
            # Never un-punctured: the vial stays open with its first puncture and deadline.
            move_vial(vial, batch, "return", use.volume_ml, actor, reference_type="session_use",
                      reference_id=use.id, note=f"session {session_row.id} voided")
            returned.append(line)
        else:
            kept.append({**line, "why": why})
    session_row.voided_at = now
    session_row.voided_by_id = actor.id
    session_row.void_code = code
    session_row.void_reason = reason
    exposure.count_void(session_row)
    return {"returned": returned, "not_returned": kept}


@transactional
def void_session(actor: User, session_id: int, *, reason_code: str, reason: str,
                 password: str | None = None) -> TreatmentSession:
    """Void a session recorded by mistake, with a reason code and a reason; the record stays, flagged.

    A practitioner voids only their own sessions, a pharmacist any (403 otherwise). A session
    in an open recall's scope, or one that carries an adverse event, is voided only with a
    pharmacist's signature (403 otherwise). Each use's volume goes back to its vial only
    while the vial is open (multiple-dose), within its in-use deadline, and its batch released and in date.
    """
    ensure_can(actor, "treatments.write", "void treatment sessions")
    if reason_code == "wrong_patient":
        raise InvalidInput("A session recorded on the wrong patient is not voided: use Correct the patient, "
                           "which moves it to the right one.", field="reason_code")
    if reason_code not in VOID_CODES:
        raise InvalidInput(f"Choose the reason code: {', '.join(PLAIN_VOID_CODES)}.", field="reason_code")
    reason = _reason(reason, "the session is voided")
    session_row = _locked_session(session_id)
    ensure_may_void(actor, session_row)
    needs = signature_reasons(session_row.id)
    if needs:
        pharmacist_signs(actor, password, "voided", "treatment_session", session_row.id,
                         doing=f"void this session: {' and '.join(needs)}; a pharmacist must sign")
    moved = _mark_voided(actor, session_row, reason_code, reason, return_volume=True)
    audit.record(actor, "session.voided", "treatment_session", session_row.id, old={"voided": False},
                 new={"voided": True, "void_code": reason_code, **moved,
                      "signed": bool(needs), "signature_needed_because": needs},
                 reason=f"{reason_code}: {reason}")
    return session_row


def _copy_session(session_row: TreatmentSession, patient_id: int) -> tuple[TreatmentSession, list[SessionUse]]:
    """The same uses for the right patient: same time, batches, vials, volumes and areas (no stock moves)."""
    new = TreatmentSession(
        patient_id=patient_id, practitioner_id=session_row.practitioner_id, performed_at=session_row.performed_at,
        indication=session_row.indication, notes=session_row.notes, recorded_at=utcnow(),
        corrects_session_id=session_row.id, site_id=session_row.site_id)
    db.session.add(new)
    db.session.flush()
    uses = [SessionUse(session_id=new.id, batch_id=use.batch_id, vial_id=use.vial_id, volume_ml=use.volume_ml,
                       area=use.area)
            for use in db.session.scalars(sa.select(SessionUse).where(SessionUse.session_id == session_row.id)
                                          .order_by(SessionUse.id))]
    db.session.add_all(uses)
    # The vials it opened served the right patient's session: a single-dose vial's one session is the new one.
    db.session.execute(sa.update(Vial).where(Vial.first_session_id == session_row.id)
                       .values(first_session_id=new.id).execution_options(synchronize_session="fetch"))
    db.session.flush()
    return new, uses


def _move_adverse_events(from_session_id: int, to_session_id: int) -> list[int]:
    """The events happened to the right patient: they follow the session, counted once in the signals."""
    events = list(db.session.scalars(sa.select(AdverseEvent.id).where(AdverseEvent.session_id == from_session_id)
                                     .order_by(AdverseEvent.id)))
    if events:
        db.session.execute(sa.update(AdverseEvent).where(AdverseEvent.id.in_(events)).values(session_id=to_session_id))
    return events


def _settle_recalls(actor: User, password: str | None, session_row: TreatmentSession, new: TreatmentSession,
                    uses: list[SessionUse], wrong, right) -> tuple[list[Recall], list[int]]:
    """The right patient joins the session's recalls; the wrong one is `not_exposed` where only it held them.

    Answers the recalls the wrong patient left and the ids of those that were closed before.
    """
    reaching = recalls_reaching(session_row.id, open_only=False)
    closed_before = [r.id for r in reaching if r.status != RecallStatus.OPEN]
    # The right patient joins every recall this session is in; a closed one reopens so they get an outcome.
    join_recalls_opened_since(actor, new, sorted({u.batch_id for u in uses}))
    recalls = [r for r in reaching
               if not patient_in_scope(wrong.id, lot_id=r.lot_id, batch_id=r.batch_id, standing_only=True)]
    for recall in recalls:
        sign(actor, password, "not exposed", "recall", recall.id)
        add_outcome(actor, recall, wrong, "not_exposed", None,
                    f"session {session_row.id} was recorded on the wrong patient; moved to {right.chart_number}")
    return recalls, closed_before


def _audit_correction(actor: User, session_row: TreatmentSession, new: TreatmentSession, uses: list[SessionUse],
                      wrong, right, events: list[int], recalls: list[Recall], closed_before: list[int],
                      reason: str) -> None:
    """The new session's row (what moved where), then the old session's void."""
    audit.record(actor, "session.patient_corrected", "treatment_session", new.id,
                 old={"session_id": session_row.id, "patient": wrong.chart_number},
                 new={"session_id": new.id, "patient": right.chart_number,
                      "uses": [{"batch_id": u.batch_id, "volume_ml": u.volume_ml, "area": u.area} for u in uses],
                      "adverse_events_moved": events,
                      "not_exposed_in_recalls": [r.id for r in recalls],
                      "recalls_reopened": closed_before},
                 reason=reason)
    audit.record(actor, "session.voided", "treatment_session", session_row.id, old={"voided": False},
                 new={"voided": True, "void_code": "wrong_patient", "corrected_by_session": new.id,
                      "volume": "stays taken: the uses moved to the corrected session"}, reason=reason)


@transactional
def correct_patient(actor: User, session_id: int, *, patient_id: int, reason: str,
                    password: str | None) -> TreatmentSession:
    """Move a session recorded on the wrong patient to the right one, in one transaction (a pharmacist signs).

    The session is voided `wrong_patient` and the same uses are recorded for the right
    patient, linked to it; the stock moved once, so nothing is taken again. In every recall
    whose scope held the wrongly named patient only through this session, that patient's
    outcome becomes `not_exposed`, signed. Answers the new session.
    """
    ensure_can(actor, "treatments.write", "correct treatment sessions")
    reason = _reason(reason, "the patient is corrected")
    session_row = _locked_session(session_id)
    right = get_patient(patient_id)
    wrong = get_patient(session_row.patient_id)
    if right.id == wrong.id:
        raise InvalidInput("The session is already on this patient: choose the right one.", field="patient_id")
    pharmacist_signs(actor, password, "patient corrected", "treatment_session", session_row.id,
                     doing="correct the patient of a session")
    _mark_voided(actor, session_row, "wrong_patient", reason, return_volume=False)
    new, uses = _copy_session(session_row, right.id)
    exposure.count_session(new)
    events = _move_adverse_events(session_row.id, new.id)
    recalls, closed_before = _settle_recalls(actor, password, session_row, new, uses, wrong, right)
    _audit_correction(actor, session_row, new, uses, wrong, right, events, recalls, closed_before, reason)
    return new
