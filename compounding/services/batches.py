"""Compounding records: make a batch from an approved formula, verify, reject, discard.

Only released, unexpired, unrecalled lots with enough quantity go into a batch, FEFO by
default; the verifier is a different pharmacist who e-signs; a batch's expiry is its
beyond-use date and time, derived by one function.
"""

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from ..extensions import db
from ..limits import NOTE_MAX, NOTES_MAX, REASON_MAX
from ..models import Batch, BatchComponent, BatchStatus, Formula, Lot, LotStatus, Site, User
from . import audit
from .access import ensure_can
from .bench_scans import check_scans as check_scans  # re-exported: its callers read it here too
from .bench_scans import ensure_scanned
from .bounds import checked_text
from .bud import BUD_TABLE_VERSION, beyond_use_at, bud_duration
from .clock import clinic_today, utcnow
from .codes import next_batch_code
from .duties import ensure_second_person
from .equipment import checked_for_batch, faults_at, record_for_batch
from .errors import InsufficientStock, InvalidInput, InvalidState, NotFound
from .fefo import Candidate, allocate, fefo_order
from .formulas import ensure_balanced, evidence_refusals
from .history import (
    ensure_transition,
    explained_change,
    record_created,
    record_depletion,
    signed_into_use,
    standing_holds,
    status_at,
    transition,
)
from .ledger import move_batch, move_lot
from .preparation import (
    checked_preparation_start,
    component_record,
    ensure_immediate_use_limits,
    tests_outstanding,
    tests_owed,
)
from .qualifications import ensure_qualified, required, required_kinds, standings
from .signatures import sign
from .sites import ensure_item_at_site, place, resolve_location
from .transaction import transactional
from .vials import checked_discard, create_vials

MAX_UNITS = 10_000
BATCH_FIELDS = ("status", "remaining_volume_ml", "status_reason", "discard_reason")


@dataclass
class PlannedComponent:
    """One lot to consume for one formula component."""

    ingredient_id: int
    ingredient_name: str
    unit: str
    lot: Lot
    quantity: Decimal
    theoretical: Decimal
    scanned: bool = False


@dataclass
class CompoundingPlan:
    formula: Formula
    units: int
    components: list[PlannedComponent] = field(default_factory=list)
    deviations: list[str] = field(default_factory=list)


def get_batch(batch_id, *, for_update: bool = False) -> Batch:
    query = sa.select(Batch).where(Batch.id == batch_id).options(selectinload(Batch.formula))
    if for_update:
        query = query.with_for_update(of=Batch).execution_options(populate_existing=True)
    batch = db.session.scalar(query) if batch_id else None
    if batch is None:
        raise NotFound("There is no such batch.")
    return batch


# The rules live on the model (pure, testable without a database); these names are the services'.
is_batch_expired = Batch.is_expired
unusable_reasons = Batch.unusable_reasons


def reasons_at(batch: Batch, at: datetime, volume_ml: Decimal | None = None) -> list[str]:
    """`unusable_reasons` judged against the history: the status and the holds standing at `at`."""
    status = status_at("batch", batch.id, at, batch.status)
    holds = [h.text for h in standing_holds("batch", batch.id, at)]
    return batch.unusable_reasons(at, volume_ml, status=status, holds=holds)


def _eligible_lots(ingredient_ids, at: datetime, *, lock: bool, site_id: int | None) -> dict[int, list[Lot]]:
    """Released, unexpired lots with stock for these ingredients, by ingredient, at `site_id` (None: any site).

    A batch is made from what is on the shelves where it is compounded: a lot at another site
    must be transferred first. `lock`: row-locked in id order (no deadlocks), for a batch about
    to be written.
    """
    query = sa.select(Lot).where(Lot.ingredient_id.in_(ingredient_ids), Lot.status == LotStatus.RELEASED,
                                 Lot.remaining > 0)
    if site_id is not None:
        query = query.where(Lot.site_id == site_id)
    if lock:
        query = query.order_by(Lot.id).with_for_update().execution_options(populate_existing=True)
    by_ingredient: dict[int, list[Lot]] = defaultdict(list)
    for lot in db.session.scalars(query):
        if not lot.is_expired(at):
            by_ingredient[lot.ingredient_id].append(lot)
    return by_ingredient


def _picked(formula: Formula, allocations: list[dict] | None, eligible: dict[int, list[Lot]],
            at: datetime, site_id: int | None) -> dict[int, list[tuple[Lot, Decimal]]]:
    """The lots the user picked, by ingredient: each eligible, of the formula, with the quantity it has."""
    components = {c.ingredient_id: c for c in formula.components}
    picked: dict[int, list[tuple[Lot, Decimal]]] = defaultdict(list)
    for row in allocations or []:
        lot_id = row.get("lot_id")
        lot = next((lot for lots in eligible.values() for lot in lots if lot.id == lot_id), None)
        if lot is None:
            _refuse_ineligible(formula, lot_id, components, at, site_id)
        quantity = Decimal(str(row.get("quantity")))
        if quantity <= 0 or quantity.as_tuple().exponent < -3:
            raise InvalidInput("Allocated quantities are positive with at most 3 decimals.", field="allocations")
        if quantity > lot.remaining:
            raise InsufficientStock(
                f"{lot.code} has {lot.remaining.normalize():f} {components[lot.ingredient_id].ingredient.unit} "
                f"left; {quantity} was allocated.", field="allocations")
        picked[lot.ingredient_id].append((lot, quantity))
    return picked


def _refuse_ineligible(formula: Formula, lot_id, components: dict, at: datetime, site_id: int | None) -> None:
    other = db.session.get(Lot, lot_id) if isinstance(lot_id, int) else None
    if other is None:
        raise InvalidInput(f"There is no lot {lot_id}.", field="allocations")
    if other.ingredient_id not in components:
        raise InvalidInput(f"{other.code} is not an ingredient of {formula.label}.", field="allocations")
    if site_id is not None and other.site_id != site_id:
        there, here = (db.session.get(Site, i) for i in (other.site_id, site_id))
        raise InvalidState(
            f"{other.code} is at site {there.code}, not at {here.code} where this batch is compounded: "
            "transfer it first.", field="allocations", details={"lot": other.code, "site": there.code})
    raise InvalidState(
        f"{other.code} is not eligible: it must be released, unexpired, unrecalled and in stock "
        f"(it is {other.status}{', expired' if other.is_expired(at) else ''}).",
        field="allocations")


def plan_batch(formula: Formula, units: int, allocations: list[dict] | None = None,
               scanned_lot_ids=(), at: datetime | None = None, *, site_id: int | None) -> CompoundingPlan:
    """Choose the lots at `site_id` (where the batch is compounded): FEFO per ingredient unless the
    user picked lots for it.

    Picked lots must be eligible, at that site (409 naming where the lot is) and belong to one
    of the formula's ingredients. Raises InsufficientStock (naming ingredient and shortfall)
    when eligible stock at the site is not enough.
    """
    at = at or utcnow()
    plan = CompoundingPlan(formula, units)
    eligible = _eligible_lots([c.ingredient_id for c in formula.components], at, lock=True, site_id=site_id)
    picked = _picked(formula, allocations, eligible, at, site_id)
    scanned = set(scanned_lot_ids)
    for component in formula.components:
        ingredient = component.ingredient
        theoretical = component.quantity * units
        if picked.get(ingredient.id):
            chosen = picked[ingredient.id]
            actual = sum(q for _, q in chosen)
            if actual != theoretical:
                plan.deviations.append(
                    f"{ingredient.name}: {actual.normalize():f} {ingredient.unit} used instead of "
                    f"{theoretical.normalize():f} {ingredient.unit}")
        else:
            lots = eligible.get(ingredient.id, [])
            by_id = {lot.id: lot for lot in lots}
            chosen = [(by_id[a.lot_id], a.quantity) for a in allocate(
                [Candidate.of(lot) for lot in lots], theoretical, what=ingredient.name, unit=ingredient.unit)]
        for lot, quantity in chosen:
            plan.components.append(PlannedComponent(
                component.ingredient_id, ingredient.name, ingredient.unit, lot, quantity,
                theoretical, scanned=lot.id in scanned))
    return plan


@dataclass
class ProposedComponent:
    """What the compounding page shows for one formula component before saving."""

    ingredient: object
    theoretical: Decimal
    lots: list  # eligible lots, FEFO order
    proposed: dict[int, Decimal]  # lot id -> FEFO quantity
    shortfall: str = ""


def propose(formula: Formula, units: int, at: datetime | None = None, *,
            site_id: int | None = None) -> list[ProposedComponent]:
    """The FEFO proposal for every component from the lots at `site_id` (the bench's site; None: the
    lots of every site), read in one statement (no locks: nothing is saved)."""
    at = at or utcnow()
    by_ingredient = _eligible_lots([c.ingredient_id for c in formula.components], at, lock=False, site_id=site_id)
    result = []
    for component in formula.components:
        ingredient = component.ingredient
        eligible = fefo_order(by_ingredient[ingredient.id])
        theoretical = component.quantity * units
        proposed, shortfall = {}, ""
        try:
            candidates = [Candidate.of(lot) for lot in eligible]
            proposed = {a.lot_id: a.quantity for a in allocate(candidates, theoretical, what=ingredient.name,
                                                                  unit=ingredient.unit)}
        except InsufficientStock as exc:
            shortfall = exc.message
        result.append(ProposedComponent(ingredient, theoretical, eligible, proposed, shortfall))
    return result


def _formula_to_compound(formula_id) -> Formula:
    formula = db.session.scalar(sa.select(Formula).where(Formula.id == formula_id)) if formula_id else None
    if formula is None:
        raise InvalidInput("Choose a formula.", field="formula_id")
    ensure_transition(formula, "compound", field="formula_id")
    return formula


def _checked_units(units) -> int:
    try:
        units = int(units)
    except (TypeError, ValueError):
        raise InvalidInput("Units must be a whole number.", field="units") from None
    if not 1 <= units <= MAX_UNITS:
        raise InvalidInput(f"Units must be between 1 and {MAX_UNITS}.", field="units")
    return units


def _deviations(plan: CompoundingPlan, deviation_note: str) -> str:
    """The batch's deviation text; refused when quantities differ from the formula unexplained."""
    deviation_note = checked_text(deviation_note, "deviation_note", NOTE_MAX)
    if plan.deviations and not deviation_note:
        raise InvalidInput("Actual quantities differ from the formula: explain the deviation. "
                           + "; ".join(plan.deviations), field="deviation_note")
    return "\n".join([*plan.deviations, deviation_note]) if plan.deviations or deviation_note else ""


def _consume(actor: User, batch: Batch, plan: CompoundingPlan) -> list[BatchComponent]:
    """One component row (with its copy) and one `consume` ledger row per planned lot; a lot emptied is depleted."""
    ingredients = {c.ingredient_id: c.ingredient for c in plan.formula.components}
    rows = []
    for planned in plan.components:
        rows.append(component_record(batch, planned, ingredients[planned.ingredient_id]))
        db.session.add(rows[-1])
        move_lot(planned.lot, "consume", -planned.quantity, actor, reference_type="batch",
                 reference_id=batch.id, note=f"compounded into {batch.code}", occurred_at=batch.compounded_at)
        record_depletion(actor, planned.lot, f"consumed by {batch.code}", reference=f"batch {batch.id}",
                         at=batch.compounded_at)
    return rows


def _ensure_evidence_today(formula: Formula) -> None:
    """The category's assumptions still hold of the ingredients as they are now (one may have lost "sterile")."""
    reasons = evidence_refusals(formula)
    if reasons:
        raise InvalidState(f"{formula.label} cannot be compounded: " + "; ".join(reasons) + ".",
                           field="formula_id", details={"reasons": reasons})


def _kept_dark(formula: Formula) -> bool:
    """Protected from light when the formula says so or any of its ingredients needs it."""
    return formula.protect_from_light or any(c.ingredient.protect_from_light for c in formula.components)


@transactional
def compound_batch(actor: User, formula_id: int, units, *, allocations: list[dict] | None = None,
                   deviation_note: str = "", notes: str = "", scanned_lot_ids=(),
                   require_scan: bool = False, compounded_at: datetime | None = None,
                   preparation_started_at: datetime | None = None, location_id: int | None = None,
                   equipment_ids=None) -> Batch:
    """Make a batch: consume the lots (ledger rows), copy them onto the record, compute the BUD, `prepared`,
    and make its N sealed vials `<code>-NN`.

    The BUD clock starts when preparation started (default: now); immediate use is one unit
    from at most three sterile products.
    """
    ensure_can(actor, "batches.compound", "compound batches")
    store = resolve_location(actor, location_id, doing="compound batches")
    formula = _formula_to_compound(formula_id)
    units = _checked_units(units)
    notes = checked_text(notes, "notes", NOTES_MAX)
    compounded_at = compounded_at or utcnow()
    started_at = checked_preparation_start(preparation_started_at, compounded_at)
    ensure_qualified(actor, "compound", at=compounded_at, category=formula.bud_category)
    used = checked_for_batch(equipment_ids, store.site_id, compounded_at)
    ensure_balanced(formula)
    ensure_immediate_use_limits(formula, units)
    _ensure_evidence_today(formula)
    plan = plan_batch(formula, units, allocations, scanned_lot_ids, compounded_at, site_id=store.site_id)
    deviations = _deviations(plan, deviation_note)
    if require_scan:
        ensure_scanned(plan, allocations)
    total_volume = formula.unit_volume_ml * units
    bud = beyond_use_at(started_at, bud_duration(formula.bud_category, formula.storage, formula.bud_hours),
                        [c.lot.expires_on for c in plan.components])
    if bud <= compounded_at:
        raise InvalidState("The beyond-use time counted from the start of preparation has already passed: "
                           "this preparation cannot be recorded as usable.", field="preparation_started_at")
    batch = Batch(
        code=next_batch_code(compounded_at), formula_id=formula.id, units=units,
        total_volume_ml=total_volume, remaining_volume_ml=Decimal("0"), compounded_at=compounded_at,
        compounded_by_id=actor.id, beyond_use_at=bud, storage=formula.storage, notes=notes, deviations=deviations,
        status=BatchStatus.PREPARED, preparation_started_at=started_at, protect_from_light=_kept_dark(formula),
    )
    place(batch, store)
    db.session.add(batch)
    db.session.flush()
    record_created(batch, actor, at=compounded_at, reason="compounded")
    batch.required_tests = tests_owed(formula, _consume(actor, batch, plan))
    move_batch(batch, "receive", total_volume, actor, reference_type="batch", reference_id=batch.id,
               note=f"{units} × {formula.unit_volume_ml.normalize():f} mL compounded")
    vials = create_vials(actor, batch, formula, compounded_at)
    record_for_batch(batch, used)
    audit.record(actor, "batch.compounded", "batch", batch.id, new={
        "equipment": [{"code": e.code, "kind": e.kind, "due_on": e.due_on} for e in used],
        "code": batch.code, "formula": formula.label, "units": units, "total_volume_ml": total_volume,
        "preparation_started_at": started_at, "beyond_use_at": bud, "bud_table": BUD_TABLE_VERSION,
        "required_tests": batch.required_tests, "deviations": batch.deviations, "location": store.code,
        "vials": {"first": vials[0].code, "last": vials[-1].code, "dose": vials[0].dose,
                  "in_use_hours": vials[0].in_use_hours},
        "components": [{"lot": c.lot.code, "quantity": c.quantity, "scanned": c.scanned}
                       for c in plan.components]})
    return batch


def _judging(actor: User, batch_id: int, doing: str) -> Batch:
    """The batch locked for its verifier: who compounded it never judges it (403, never turned off)."""
    batch = get_batch(batch_id, for_update=True)
    ensure_item_at_site(actor, batch, f"{doing} batches")
    ensure_second_person(actor, batch.compounded_by_id,
                         f"The person who compounded a batch cannot {doing} it: a second pharmacist must.",
                         always=True)
    return batch


def _ensure_made_properly(batch: Batch, category: str | None) -> None:
    """Refuse (409) to release a batch whose compounder was not qualified, or whose equipment had failed its
    calibration, on the day it was made, as the records now tell (a fail recorded afterwards and dated back)."""
    problems = faults_at(batch)
    if required():
        compounder = db.session.get(User, batch.compounded_by_id)
        day = clinic_today(batch.compounded_at)
        lapsed = [s.text for s in standings(compounder.id, day=day, category=category, kinds=required_kinds())
                  if not s.usable]
        if lapsed:
            problems.insert(0, f"{compounder.display_name} was not qualified when {batch.code} was made: "
                               + "; ".join(lapsed))
    if problems:
        raise InvalidState("; ".join(problems) + ". Reject the batch, or void the record entered by mistake.")


@transactional
def verify_batch(actor: User, batch_id: int, password: str) -> Batch:
    """A pharmacist other than the compounder verifies with an e-signature: `released`.

    A batch whose BUD rests on tests goes `awaiting_tests` instead, unusable until each
    required result is recorded (services.batch_tests); one whose passes are all recorded
    already (sampled before verification) is released at once.
    """
    ensure_can(actor, "batches.verify", "verify batches")
    batch = _judging(actor, batch_id, "verify")
    ensure_transition(batch, "verify")
    if batch.is_expired():
        raise InvalidState(f"{batch.code} is past its beyond-use date and cannot be released.")
    category = db.session.scalar(sa.select(Formula.bud_category).where(Formula.id == batch.formula_id))
    ensure_qualified(actor, "verify", category=category)
    _ensure_made_properly(batch, category)
    sign(actor, password, "verified", "batch", batch.id)
    if tests_outstanding(batch):
        signed_into_use(actor, batch, "await_tests", "batch.awaiting_tests", BATCH_FIELDS, stamp="verified")
    else:
        signed_into_use(actor, batch, "verify", "batch.released", BATCH_FIELDS, stamp="verified")
    return batch


@transactional
def reject_batch(actor: User, batch_id: int, password: str, reason: str) -> Batch:
    """The verifier rejects a prepared batch; the lots it consumed stay consumed, its vials are discarded.

    As with verifying (a rule never turned off), who compounded the batch does not judge it: 403.
    """
    ensure_can(actor, "batches.verify", "reject batches")
    reason = checked_text(reason, "reason", REASON_MAX, required="Say why the batch is rejected.")
    batch = _judging(actor, batch_id, "reject")
    ensure_transition(batch, "reject")
    sign(actor, password, "rejected", "batch", batch.id)
    explained_change(actor, batch, "reject", "batch.rejected", BATCH_FIELDS, reason)
    return batch


@transactional
def discard_batch(actor: User, batch_id: int, reason: str, note: str = "") -> Batch:
    """Discard a batch with a coded reason: its vials are discarded, each one's remainder written off as waste."""
    ensure_can(actor, "batches.discard", "discard batches")
    note = checked_discard(reason, note)
    batch = get_batch(batch_id, for_update=True)
    ensure_item_at_site(actor, batch, "discard batches")
    ensure_transition(batch, "discard")
    why = f"{reason}: {note}" if note else reason
    with audit.change(actor, "batch.discarded", batch, BATCH_FIELDS, reason=why):
        batch.discard_reason = reason
        # Its vials are discarded with it, each one's remainder written off (history.change_status).
        transition(batch, "discard", actor, reason=why)
        if batch.remaining_volume_ml > 0:  # pooled volume no vial holds (never, while the books balance)
            move_batch(batch, "waste", -batch.remaining_volume_ml, actor, reason=reason, note=note,
                       reference_type="discard")
        batch.status_reason = note
    return batch
