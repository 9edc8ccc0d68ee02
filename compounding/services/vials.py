"""Vials: made with their batch, found by their code, judged at the time of use.

A vial's own verdict (spent, sampled, discarded, its own holds, its in-use deadline, the
single-dose rule, its volume) comes on top of its batch's (`batches.reasons_at`), never
instead of it: scanning a vial of a recalled batch says what scanning the batch says, and more.
"""

from datetime import datetime, timedelta
from decimal import Decimal

import sqlalchemy as sa

from ..extensions import db
from ..limits import NOTE_MAX
from ..models import (
    Batch,
    Formula,
    SessionUse,
    Site,
    Transfer,
    TransferLine,
    TransferStatus,
    TreatmentSession,
    User,
    Vial,
    VialStatus,
)
from ..models.batch import DISCARD_REASONS
from ..models.vial import VIAL_FINISHED
from . import audit
from .access import ensure_can
from .bounds import checked_text
from .clock import to_clinic
from .codes import BATCH_CODE, LOOKS_LIKE_VIAL, VIAL_CODE, vial_code
from .errors import InvalidInput, NotFound
from .history import ensure_transition, record_created, record_depletion, standing_holds, status_at, transition
from .ledger import move_vial
from .sites import ensure_item_at_site
from .transaction import transactional

# A vial's own reason while it travels (place_reasons names the transfer).
IN_TRANSIT = "in transit between sites"


def create_vials(actor: User, batch: Batch, formula: Formula, at: datetime) -> list[Vial]:
    """The batch's N vials, sealed, each with its first status-history row (part of compounding)."""
    multiple = formula.dose == "multiple"
    vials = [Vial(batch_id=batch.id, number=number, code=vial_code(batch.code, number, batch.units),
                  dose="multiple" if multiple else "single", in_use_hours=formula.in_use_hours if multiple else None,
                  volume_ml=formula.unit_volume_ml, remaining_ml=formula.unit_volume_ml,
                  status=VialStatus.SEALED, created_at=at, location_id=batch.location_id, site_id=batch.site_id)
             for number in range(1, batch.units + 1)]
    db.session.add_all(vials)
    db.session.flush()
    for vial in vials:
        record_created(vial, actor, at=at, reason="compounded")
    return vials


def looks_like_vial_code(raw: str) -> bool:
    """Whether a typed or scanned code is meant as a vial code (well formed or not): it has a hyphen
    after a batch-like start, or is only a hyphen and digits (`-00`, `-999`)."""
    text = (raw or "").strip().upper()
    return bool(VIAL_CODE.match(text) or LOOKS_LIKE_VIAL.match(text)
                or ("-" in text and text.startswith("B")))


def parse_vial_code(raw: str, *, field: str = "vial_code") -> tuple[str, int]:
    """(batch code, vial number) from `B2612060001-02`; a clear refusal (422) for anything else."""
    text = (raw or "").strip().upper()
    found = VIAL_CODE.match(text)
    if found is None:
        head, _, tail = text.partition("-")
        if not head:
            why = "it has no batch code before the hyphen"
        elif not BATCH_CODE.match(head):
            why = f"{head} is not a batch code (B, then the date and a sequence number)"
        elif not tail:
            why = "the vial number after the hyphen is missing"
        else:
            why = "the vial number after the hyphen is two or more digits"
        raise InvalidInput(f"{text or 'An empty code'} is not a vial code (such as B2612060001-02): {why}.",
                           field=field)
    number = int(found.group(2))
    if number == 0:
        raise InvalidInput(f"{text}: vial numbers start at 01.", field=field)
    return found.group(1), number


def find_vial(raw: str, *, for_update: bool = False, field: str = "vial_code") -> Vial:
    """The vial a code names, or a refusal that says what is wrong with the code (422/404)."""
    batch_code, number = parse_vial_code(raw, field=field)
    query = sa.select(Vial).join(Batch, Batch.id == Vial.batch_id).where(Batch.code == batch_code,
                                                                          Vial.number == number)
    if for_update:
        query = query.with_for_update(of=Vial).execution_options(populate_existing=True)
    vial = db.session.scalar(query)
    if vial is not None:
        return vial
    batch = db.session.scalar(sa.select(Batch).where(Batch.code == batch_code))
    if batch is None:
        raise NotFound(f"{raw.strip().upper()}: there is no batch {batch_code}.", field=field)
    count = db.session.scalar(sa.select(sa.func.count(Vial.id)).where(Vial.batch_id == batch.id))
    if not count:
        raise NotFound(f"{raw.strip().upper()}: batch {batch_code} has no vials left (it was used up before "
                       "vials had codes): use the batch code.", field=field)
    last = db.session.scalar(sa.select(sa.func.max(Vial.code)).where(Vial.batch_id == batch.id))
    raise NotFound(f"{raw.strip().upper()}: batch {batch_code} has no vial {number} (its vials run to {last}).",
                   field=field)


def vial_reasons(vial: Vial, batch: Batch, at: datetime | None, volume_ml: Decimal | None = None, *,
                 status: str | None = None, holds: list[str] | None = None,
                 session_id: int | None = None) -> list[str]:
    """Every reason this vial (apart from its batch) may not be used at `at`; empty: usable.

    Pure: `status` is the vial's status at `at` (its current one when None), `holds` its own
    hold reasons standing then; `session_id` the session the use belongs to (a single-dose
    vial serves that one only). What is finished now (spent, sampled, discarded) stays
    finished for a late entry too: the contents are gone.
    """
    reasons = []
    current = vial.status
    if current == VialStatus.SPENT:
        if vial.single_dose and vial.first_session_id and vial.first_session_id != session_id:
            reasons.append(f"spent: single-dose vial already used in session {vial.first_session_id}")
        else:
            reasons.append("spent: nothing left to use")
    elif current == VialStatus.SAMPLED:
        reasons.append("taken as a test sample")
    elif current == VialStatus.DISCARDED:
        reasons.append("discarded" + (f": {vial.status_reason}" if vial.status_reason else ""))
    elif vial.single_dose and vial.first_session_id and vial.first_session_id != session_id:
        reasons.append(f"single-dose vial already used in session {vial.first_session_id}")
    elif vial.single_dose and (vial.punctured_at is not None or vial.remaining_ml < vial.volume_ml):
        # Part used with no session of its own: a pooled batch's vial from before vials had codes.
        reasons.append("part-used single-dose vial, opened before vials had codes: it serves no other "
                       "patient; discard it")
    status = status or current
    if holds:
        reasons.append("vial on hold: " + "; ".join(holds))
    if status == VialStatus.IN_TRANSIT:
        reasons.append(IN_TRANSIT)
    if at is not None and vial.use_by_at is not None and at >= vial.use_by_at:
        reasons.append(f"past its use-by ({_shown(vial.use_by_at)}), shortened after a temperature excursion")
    if at is not None and vial.dose == "multiple" and vial.punctured_at is not None and at >= vial.punctured_at:
        deadline = min(vial.punctured_at + timedelta(hours=vial.in_use_hours or 0), batch.beyond_use_at)
        if vial.in_use_hours and at >= deadline and deadline < batch.beyond_use_at:
            reasons.append(f"past its in-use deadline ({_shown(deadline)}; first punctured "
                           f"{_shown(vial.punctured_at)})")
    if current not in VIAL_FINISHED:
        if vial.remaining_ml <= 0:
            reasons.append("empty: no volume left")
        elif volume_ml is not None and volume_ml > vial.remaining_ml:
            reasons.append(f"the vial holds only {vial.remaining_ml.normalize():f} mL, {volume_ml} mL asked")
    return reasons


def vial_reasons_at(vial: Vial, batch: Batch, at: datetime, volume_ml: Decimal | None = None, *,
                    session_id: int | None = None) -> list[str]:
    """The vial's own reasons judged against its history at `at` (its holds and status then).

    A late entry dated before a multiple-dose vial's first puncture would become the first
    puncture: refused when the in-use period counted from it ends before a use already recorded.
    """
    holds = [hold.text for hold in standing_holds("vial", vial.id, at)]
    status = status_at("vial", vial.id, at, vial.status) or vial.status
    reasons = vial_reasons(vial, batch, at, volume_ml, status=status, holds=holds, session_id=session_id)
    if vial.dose == "multiple" and vial.in_use_hours and vial.punctured_at is not None and at < vial.punctured_at:
        deadline = min(at + timedelta(hours=vial.in_use_hours), batch.beyond_use_at)
        latest = db.session.scalar(
            sa.select(sa.func.max(TreatmentSession.performed_at))
            .join(SessionUse, SessionUse.session_id == TreatmentSession.id)
            .where(SessionUse.vial_id == vial.id, TreatmentSession.voided_at.is_(None)))
        if latest is not None and latest >= deadline:
            reasons.append(f"a first puncture at {_shown(at)} would end its in-use period at {_shown(deadline)}, "
                           f"before its use at {_shown(latest)}: check the session's time")
    return reasons


def place_reasons(vials: list[Vial], site_id: int) -> dict[int, list[str]]:
    """{vial id: why it cannot be used at site `site_id`}: in transit (naming its transfer), or kept
    at another site. Two statements whatever the number of vials; a vial used only where it is."""
    travelling = [v.id for v in vials if v.status == VialStatus.IN_TRANSIT]
    elsewhere = {v.site_id for v in vials if v.site_id != site_id and v.status != VialStatus.IN_TRANSIT}
    transfers = dict(db.session.execute(
        sa.select(TransferLine.vial_id, Transfer.code).join(Transfer, Transfer.id == TransferLine.transfer_id)
        .where(TransferLine.vial_id.in_(travelling), Transfer.status == TransferStatus.DISPATCHED)).all()) \
        if travelling else {}
    codes = dict(db.session.execute(sa.select(Site.id, Site.code).where(Site.id.in_(elsewhere | {site_id}))).all())
    reasons: dict[int, list[str]] = {}
    for vial in vials:
        if vial.status == VialStatus.IN_TRANSIT:
            on = f" on {transfers[vial.id]}" if vial.id in transfers else ""
            reasons[vial.id] = [f"in transit{on}: usable nowhere until it is received"]
        elif vial.site_id != site_id:
            reasons[vial.id] = [f"is at site {codes[vial.site_id]}, not at {codes[site_id]}: "
                                "a vial is used only where it is (send it with a transfer)"]
    return reasons


def checked_discard(reason: str, note: str) -> str:
    """A discard's coded reason and note, checked (a batch's or a vial's): answers the clean note."""
    if reason not in DISCARD_REASONS:
        raise InvalidInput(f"Choose a reason: {', '.join(DISCARD_REASONS)}.", field="reason")
    note = checked_text(note, "note", NOTE_MAX)
    if reason == "other" and not note:
        raise InvalidInput("Describe the reason.", field="note")
    return note


@transactional
def discard_vial(actor: User, vial_id: int, reason: str, note: str = "") -> Vial:
    """Throw one vial away with a coded reason: `discarded`, its remainder written off as waste.

    For the vial a refusal says to discard (past its in-use period, a part-used single-dose
    vial), and for one dropped or contaminated. A spent, sampled or discarded vial is refused (409).
    """
    ensure_can(actor, "vials.discard", "discard vials")
    note = checked_discard(reason, note)
    head = db.session.get(Vial, vial_id) if vial_id else None
    if head is None:
        raise NotFound("There is no such vial.")
    ensure_item_at_site(actor, head, "discard vials")
    # Batch, then vial: the lock order of a session's use, so the two queue instead of deadlocking.
    batch = db.session.scalar(sa.select(Batch).where(Batch.id == head.batch_id).with_for_update()
                              .execution_options(populate_existing=True))
    vial = db.session.scalar(sa.select(Vial).where(Vial.id == vial_id).with_for_update()
                             .execution_options(populate_existing=True))
    ensure_transition(vial, "discard")
    why = f"{reason}: {note}" if note else reason
    with audit.change(actor, "vial.discarded", vial, ("status", "remaining_ml", "status_reason"), reason=why):
        if vial.remaining_ml > 0:
            move_vial(vial, batch, "waste", -vial.remaining_ml, actor, reason=reason, note=note,
                      reference_type="vial", reference_id=vial.id)
        transition(vial, "discard", actor, reason=why)
        vial.status_reason = why
    record_depletion(actor, batch, f"its last vial was discarded ({vial.code})", reference=f"vial {vial.id}")
    return vial


def _shown(moment: datetime) -> str:
    local = to_clinic(moment)
    return f"{local:%Y-%m-%d %H:%M} {local.tzname()}"
