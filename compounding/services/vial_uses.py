"""The vials a session draws from: which one each use takes, whether it may, what using it does.

A use names its vial (`vial_code`) or only its batch (`batch_code`, `batch_id`): then it is
attributed to the open vial that can take it, else to the lowest-numbered sealed one that
holds the volume. A use never takes more than one vial holds. A single-dose vial serves one
session (several uses in it), then is spent with its remainder written off as waste; a
multiple-dose vial records its first puncture and is spent when empty.
"""

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa

from ..extensions import db
from ..models import Batch, TreatmentSession, User, Vial, VialStatus
from .clock import utcnow
from .errors import InvalidInput, InvalidState
from .history import record_depletion, transition
from .ledger import move_vial
from .vials import IN_TRANSIT, find_vial, looks_like_vial_code, parse_vial_code, place_reasons, vial_reasons_at

# The vials a use given by batch may be attributed to (finished or travelling ones never).
CANDIDATE_STATUSES = (VialStatus.OPEN, VialStatus.SEALED, VialStatus.ON_HOLD, VialStatus.RECALLED)


@dataclass
class Draw:
    """One use of a session: what was asked, then the batch and vial it draws from."""

    index: int
    volume: Decimal
    area: str
    vial_code: str = ""
    batch_code: str = ""
    batch_id: int | None = None
    vial_key: tuple[str, int] | None = None
    batch: Batch | None = None
    vial: Vial | None = None
    extra: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"Use {self.index + 1}"


def read_draw(index: int, use: dict, volume: Decimal, area: str) -> Draw:
    """A use as asked: a vial code is checked for its shape at once (422 saying what is wrong)."""
    vial_code = str(use.get("vial_code") or "").strip().upper()
    batch_code = str(use.get("batch_code") or "").strip().upper()
    batch_id = use.get("batch_id")
    if not vial_code and batch_code and looks_like_vial_code(batch_code):
        # A vial scanned into the batch code field: it is the vial used.
        vial_code, batch_code = batch_code, ""
    if not (vial_code or batch_code or batch_id):
        raise InvalidInput(f"Use {index + 1}: scan or type the vial code.", field="uses")
    draw = Draw(index, volume, area, vial_code=vial_code, batch_code=batch_code,
                batch_id=int(batch_id) if batch_id not in (None, "") else None)
    if vial_code:
        try:
            draw.vial_key = parse_vial_code(vial_code, field="uses")
        except InvalidInput as exc:
            raise InvalidInput(f"Use {index + 1}: {exc.message}", field="uses") from None
    return draw


def lock_batches(draws: list[Draw]) -> None:
    """Each use's batch, row-locked in id order so concurrent sessions queue instead of deadlocking."""
    codes = {d.vial_key[0] for d in draws if d.vial_key} | {d.batch_code for d in draws if d.batch_code}
    ids = {d.batch_id for d in draws if d.batch_id is not None}
    found = db.session.scalars(
        sa.select(Batch).where(sa.or_(Batch.code.in_(codes), Batch.id.in_(ids)))
        .order_by(Batch.id).with_for_update().execution_options(populate_existing=True)).all()
    by_code, by_id = {b.code: b for b in found}, {b.id: b for b in found}
    for draw in draws:
        if draw.vial_key:
            draw.batch = by_code.get(draw.vial_key[0])
            if draw.batch is None:
                find_vial(draw.vial_code, field="uses")  # says there is no such batch (404)
            _same_batch(draw, by_code, by_id)
        else:
            draw.batch = by_code.get(draw.batch_code) if draw.batch_code else by_id.get(draw.batch_id)
            if draw.batch is None:
                raise InvalidInput(f"{draw.label}: {draw.batch_code or draw.batch_id} is not one of our batch codes.",
                                   field="uses")


def _same_batch(draw: Draw, by_code: dict, by_id: dict) -> None:
    """A vial code sent with a batch code or id of another batch: refused, naming both (409)."""
    stated = None
    if draw.batch_code and draw.batch_code != draw.batch.code:
        stated = by_code.get(draw.batch_code)
        stated = stated.code if stated else draw.batch_code
    elif draw.batch_id is not None and draw.batch_id != draw.batch.id:
        stated = by_id[draw.batch_id].code if draw.batch_id in by_id else f"batch id {draw.batch_id}"
    if stated is not None:
        raise InvalidState(f"{draw.label}: {draw.vial_code} is a vial of batch {draw.batch.code}, not of {stated}: "
                           "scan the vial used and check the batch code.", field="uses",
                           details={"reasons": {draw.vial_code: [f"a vial of batch {draw.batch.code}, not of "
                                                                 f"{stated}"]}})


def lock_vials(draws: list[Draw], site_id: int | None = None) -> None:
    """The named vials and the candidates of the uses given by batch, row-locked in id order (after the batches).

    A use by batch takes only a vial kept at the session's site (`site_id`).
    """
    named = [d for d in draws if d.vial_key]
    by_batch = {d.batch.id for d in draws if not d.vial_key}
    conditions = [sa.and_(Vial.batch_id == d.batch.id, Vial.number == d.vial_key[1]) for d in named]
    if by_batch:
        here = [Vial.site_id == site_id] if site_id is not None else []
        conditions.append(sa.and_(Vial.batch_id.in_(by_batch), Vial.status.in_(CANDIDATE_STATUSES), *here))
    found = db.session.scalars(sa.select(Vial).where(sa.or_(*conditions)).order_by(Vial.id)
                               .with_for_update().execution_options(populate_existing=True)).all()
    keyed = {(v.batch_id, v.number): v for v in found}
    for draw in named:
        draw.vial = keyed.get((draw.batch.id, draw.vial_key[1]))
        if draw.vial is None:
            find_vial(draw.vial_code, field="uses")  # says which numbers the batch has (404)
    for draw in draws:
        if not draw.vial_key:
            draw.extra["site_scoped"] = site_id is not None
            draw.extra["candidates"] = sorted((v for v in found if v.batch_id == draw.batch.id
                                               and v.status in CANDIDATE_STATUSES), key=lambda v: v.number)


def _attribute(draw: Draw, planned: dict[int, Decimal], at: datetime) -> str | None:
    """Give a use by batch code its vial: the first that may take it at `at`; a reason when none may."""
    candidates = draw.extra["candidates"]
    # This session's own vials first (a single-dose vial serves all of one session's uses), then the
    # punctured ones, then the sealed ones. Punctured, not status: a vial held or recalled since a late
    # entry's time was open or sealed then. A vial that may not take the use then (held on its own,
    # past its in-use period, a part-used single-dose vial, too little left) is passed over.
    ordered = ([v for v in candidates if planned[v.id]]
               + [v for v in candidates if not planned[v.id] and v.punctured_at is not None]
               + [v for v in candidates if not planned[v.id] and v.punctured_at is None])
    passed_over = []
    for vial in ordered:
        reasons = vial_reasons_at(vial, draw.batch, at, planned[vial.id] + draw.volume)
        if not reasons:
            draw.vial = vial
            return None
        passed_over.append(f"{vial.code}: {reasons[0]}")
    if not candidates:
        return "no vial of it is left to use" + (" at this site" if draw.extra.get("site_scoped") else "")
    largest = max((v.remaining_ml - planned[v.id] for v in candidates), default=Decimal(0))
    if largest < draw.volume:
        return (f"no vial of it holds {draw.volume} mL (the fullest has {largest.normalize():f} mL): a use cannot "
                "take more than one vial holds; enter one use per vial")
    return "no vial of it may be used: " + "; ".join(passed_over[:3]) + ("; …" if len(passed_over) > 3 else "")


def judge(draws: list[Draw], at: datetime, batch_reasons, site_id: int | None = None) -> dict[str, list[str]]:
    """Every reason, by code, that a use may not be made: its batch's, then its vial's (at `at`), and,
    given the session's site, a named vial kept elsewhere or in transit."""
    problems: dict[str, list[str]] = defaultdict(list)
    wanted: dict[int, Decimal] = defaultdict(Decimal)
    for draw in draws:
        wanted[draw.batch.id] += draw.volume
    refused_batches = set()
    for batch in {d.batch.id: d.batch for d in draws}.values():
        reasons = batch_reasons(batch, at, wanted[batch.id])
        if reasons:
            problems[batch.code] += reasons
            refused_batches.add(batch.id)
    planned: dict[int, Decimal] = defaultdict(Decimal)
    # The vials named first, so a use by batch code listed before one never takes the vial it names.
    for draw in draws:
        if draw.vial is not None:
            planned[draw.vial.id] += draw.volume
    for draw in draws:
        if draw.vial is None and draw.batch.id not in refused_batches:
            reason = _attribute(draw, planned, at)
            if reason and reason not in problems[draw.batch.code]:
                problems[draw.batch.code].append(reason)
            if draw.vial is not None:
                planned[draw.vial.id] += draw.volume
    vials = {d.vial.id: d for d in draws if d.vial is not None}
    where = place_reasons([d.vial for d in vials.values()], site_id) if site_id is not None else {}
    for vial_id, draw in sorted(vials.items()):
        reasons = where.get(vial_id, []) + vial_reasons_at(draw.vial, draw.batch, at, planned[vial_id])
        if where.get(vial_id):
            # The place names the transfer; the status's own "in transit" would say it twice.
            reasons = [r for r in reasons if r != IN_TRANSIT]
        if reasons:
            problems[draw.vial.code] += reasons
    return {code: reasons for code, reasons in problems.items() if reasons}


def after_use(actor: User, session_row: TreatmentSession, draws: list[Draw]) -> list[dict]:
    """What the session did to each vial: opened (first puncture), single-dose spent with its rest wasted,
    multiple-dose spent when empty. Answers the single-dose remainders written off (for the audit)."""
    now, at = utcnow(), session_row.performed_at
    reference = f"session {session_row.id}"
    wasted = []
    for vial, batch in sorted({d.vial.id: (d.vial, d.batch) for d in draws}.values(), key=lambda p: p[0].id):
        if vial.status == VialStatus.SEALED:
            transition(vial, "open", actor, reason=f"first used in {reference}", reference=reference, at=at)
        if vial.punctured_at is None or at < vial.punctured_at:
            # A late entry dated earlier is the first puncture: the in-use period counts from it.
            vial.punctured_at = at
            vial.first_session_id = session_row.id
        if vial.single_dose:
            if vial.remaining_ml > 0:
                wasted.append({"vial": vial.code, "volume_ml": vial.remaining_ml})
                move_vial(vial, batch, "waste", -vial.remaining_ml, actor, reason="single_dose_remainder",
                          note=f"single-dose vial: what {reference} left", reference_type="treatment_session",
                          reference_id=session_row.id, occurred_at=now)
            if vial.status != VialStatus.SPENT:
                transition(vial, "spend", actor, reason=f"single-dose: its session was saved ({reference})",
                           reference=reference, at=now)
                vial.spent_at = now
        elif vial.remaining_ml == 0 and vial.status != VialStatus.SPENT:
            record_depletion(actor, vial, f"used up in {reference}", reference=reference, at=now)
            vial.spent_at = now
    return wasted
