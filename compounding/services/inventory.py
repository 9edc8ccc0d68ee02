"""Raw materials: receiving lots, quarantine and release, adjustments (ingredients: services.ingredients)."""

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from ..extensions import db
from ..limits import LABEL_MAX, NAME_MAX, NOTE_MAX, REASON_MAX
from ..models import Ingredient, Lot, LotStatus, User
from ..models.ledger import ADJUST_REASONS
from . import audit
from .access import ensure_can
from .bounds import checked_text, day_in_range
from .clock import utcnow
from .documents import has_certificate
from .duties import ensure_second_person
from .errors import InsufficientStock, InvalidInput, InvalidState, NotAllowed, NotFound
from .expiry import EXPIRY_RANGE_MESSAGE, expired_clause, is_expired
from .fefo import Candidate
from .history import deplete_if_empty, ensure_transition, explained_change, record_created, signed_into_use
from .ingredients import get_ingredient, gtin_is_valid, normalise_gtin
from .ledger import move_lot
from .signatures import pharmacist_signs, sign
from .sites import acting_site_id, ensure_item_at_site, place, resolve_location
from .transaction import transactional

LOT_FIELDS = ("status", "remaining", "status_reason")

# Which ledger kind each adjustment reason writes, and which way it may go.
REASON_KIND = {
    "expired": "waste",
    "damaged": "waste",
    "contaminated": "waste",
    "count_correction": "adjust",
    "returned_to_supplier": "return",
    "returned_to_stock": "return",
}
# The reasons that may add stock (each needs a pharmacist's signature).
RAISING_REASONS = ("count_correction", "returned_to_stock")


def check_quantity(value, field: str = "quantity") -> Decimal:
    """A positive decimal with at most 3 decimals (the precision the database keeps)."""
    try:
        quantity = Decimal(str(value).strip())
    except ArithmeticError:
        raise InvalidInput("Enter a number such as 12.5.", field=field) from None
    if not quantity.is_finite():
        raise InvalidInput("Enter a number such as 12.5.", field=field)
    if quantity <= 0:
        raise InvalidInput("The quantity must be greater than zero.", field=field)
    if quantity.as_tuple().exponent < -3:
        raise InvalidInput("Use at most 3 decimals.", field=field)
    if quantity >= Decimal("100000000000"):
        raise InvalidInput("This quantity is too large.", field=field)
    return quantity


# --- ingredients -------------------------------------------------------------------------


# --- lots ----------------------------------------------------------------------------------


def get_lot(lot_id: int, *, for_update: bool = False) -> Lot:
    query = sa.select(Lot).where(Lot.id == lot_id).options(selectinload(Lot.ingredient))
    if for_update:
        query = query.with_for_update(of=Lot)
    lot = db.session.scalar(query)
    if lot is None:
        raise NotFound(f"There is no lot {lot_id}.")
    return lot


@dataclass(frozen=True)
class Receipt:
    """A lot delivery that passed every receiving rule, ready to be written."""

    ingredient: Ingredient
    supplier: str
    supplier_lot_number: str
    expires_on: date
    quantity: Decimal
    gtin: str
    coa_reference: str
    location: str
    received_at: datetime

    def arguments(self) -> dict:
        """The receipt as receive_lot's keyword arguments (it checks them again as it writes)."""
        return {"ingredient_id": self.ingredient.id, "supplier": self.supplier,
                "supplier_lot_number": self.supplier_lot_number, "expires_on": self.expires_on,
                "quantity": self.quantity, "gtin": self.gtin, "coa_reference": self.coa_reference,
                "location": self.location, "received_at": self.received_at}


def _receivable_ingredient(ingredient_id: int) -> Ingredient:
    ingredient = get_ingredient(ingredient_id)
    if not ingredient.active:
        raise InvalidInput(f"{ingredient.name} is inactive and cannot be received.", field="ingredient_id")
    return ingredient


def _checked_supplier_lot(supplier: str, supplier_lot_number: str) -> tuple[str, str]:
    """The supplier and their lot number, stripped; both are required."""
    supplier = (supplier or "").strip()
    supplier_lot_number = (supplier_lot_number or "").strip()
    if not supplier or len(supplier) > NAME_MAX:
        raise InvalidInput(f"The supplier (1 to {NAME_MAX} characters) is required.", field="supplier")
    if not supplier_lot_number or len(supplier_lot_number) > LABEL_MAX:
        raise InvalidInput(f"The supplier's lot number (1 to {LABEL_MAX} characters) is required.",
                           field="lot_number")
    return supplier, supplier_lot_number


def _check_receivable_expiry(expires_on, received_at: datetime) -> None:
    # A far-off expiry (9999-12-31) would be picked last by FEFO and then overflow the BUD's day sums.
    if not isinstance(expires_on, date) or not day_in_range(expires_on):
        raise InvalidInput(EXPIRY_RANGE_MESSAGE, field="expiry_date")
    if is_expired(expires_on, received_at):
        raise InvalidInput(f"This lot expired on {expires_on.isoformat()}: it cannot be received.",
                           field="expiry_date")


def _checked_gtin(gtin: str) -> str:
    """The GTIN normalised, or "" when none is given."""
    gtin = (gtin or "").strip()
    if gtin:
        if not gtin_is_valid(gtin):
            raise InvalidInput(f"{gtin} is not a valid GTIN (check digit or length).", field="gtin")
        gtin = normalise_gtin(gtin)
    return gtin


def _refuse_received_twice(ingredient: Ingredient, supplier: str, supplier_lot_number: str, site_id: int) -> None:
    """A supplier lot is received once per site (each clinic of a chain may buy from the same supplier lot)."""
    duplicate = db.session.scalar(sa.select(Lot).where(
        Lot.site_id == site_id, Lot.ingredient_id == ingredient.id, Lot.supplier == supplier,
        Lot.supplier_lot_number == supplier_lot_number, Lot.parent_lot_id.is_(None)))
    if duplicate is not None:
        raise InvalidState(
            f"Lot {supplier_lot_number} of {ingredient.name} from {supplier} was already received "
            f"as {duplicate.code}.",
            field="lot_number",
            details={"lot_number": [f"Already received as {duplicate.code}."],
                     "existing_lot_id": duplicate.id, "existing_lot_code": duplicate.code},
        )


def validate_receipt(actor: User, *, ingredient_id: int, supplier: str, supplier_lot_number: str,
                     expires_on, quantity, gtin: str = "", coa_reference: str = "",
                     location: str = "", received_at: datetime | None = None,
                     site_id: int | None = None) -> Receipt:
    """Check a delivery against the receiving rules without changing anything.

    Refused: unknown or inactive ingredient, a lot already expired at receipt, the same
    supplier lot for the same ingredient and supplier twice, an invalid GTIN. Used by
    receive_lot and by the delivery-sheet import, so both apply the same rules.
    """
    ensure_can(actor, "lots.receive", "receive lots")
    ingredient = _receivable_ingredient(ingredient_id)
    supplier, supplier_lot_number = _checked_supplier_lot(supplier, supplier_lot_number)
    quantity = check_quantity(quantity)
    received_at = received_at or utcnow()
    _check_receivable_expiry(expires_on, received_at)
    gtin = _checked_gtin(gtin)
    _refuse_received_twice(ingredient, supplier, supplier_lot_number,
                           site_id if site_id is not None else acting_site_id(actor))
    return Receipt(ingredient=ingredient, supplier=supplier, supplier_lot_number=supplier_lot_number,
                   expires_on=expires_on, quantity=quantity, gtin=gtin,
                   coa_reference=checked_text(coa_reference, "coa_reference", NAME_MAX),
                   location=checked_text(location, "location", NAME_MAX), received_at=received_at)


@transactional
def receive_lot(actor: User, *, ingredient_id: int, supplier: str, supplier_lot_number: str,
                expires_on, quantity, gtin: str = "", coa_reference: str = "",
                location: str = "", received_at: datetime | None = None, location_id: int | None = None,
                site_id: int | None = None) -> Lot:
    """Receive a lot into quarantine with its internal code and a `receive` ledger row.

    Refused on any of validate_receipt's rules, before anything is written. An import of
    many lots calls it inside its own transaction: all the lots go in, or none. The lot is
    put at `location_id`, else the default location of the acting site (`site_id`, else the
    receiver's first site).
    """
    from .codes import next_lot_code

    store = resolve_location(actor, location_id, site_id, "receive lots")
    receipt = validate_receipt(
        actor, ingredient_id=ingredient_id, supplier=supplier, supplier_lot_number=supplier_lot_number,
        expires_on=expires_on, quantity=quantity, gtin=gtin, coa_reference=coa_reference, location=location,
        received_at=received_at, site_id=store.site_id)
    lot = Lot(
        code=next_lot_code(), ingredient_id=receipt.ingredient.id, supplier=receipt.supplier,
        supplier_lot_number=receipt.supplier_lot_number, gtin=receipt.gtin or None,
        received_at=receipt.received_at, received_by_id=actor.id, expires_on=receipt.expires_on,
        quantity_received=receipt.quantity, remaining=Decimal("0"), coa_reference=receipt.coa_reference,
        location=receipt.location, status=LotStatus.QUARANTINE,
    )
    place(lot, store)
    db.session.add(lot)
    db.session.flush()
    record_created(lot, actor, at=receipt.received_at, reason="received")
    move_lot(lot, "receive", receipt.quantity, actor, reference_type="lot", reference_id=lot.id,
             note=f"received from {receipt.supplier}", occurred_at=receipt.received_at)
    audit.record(actor, "lot.received", "lot", lot.id, new={
        "code": lot.code, "ingredient": receipt.ingredient.name, "supplier": receipt.supplier,
        "supplier_lot_number": receipt.supplier_lot_number, "gtin": lot.gtin, "expires_on": receipt.expires_on,
        "quantity": receipt.quantity, "coa_reference": lot.coa_reference, "location": lot.location,
        "location_code": store.code, "status": lot.status})
    return lot


@transactional
def release_lot(actor: User, lot_id: int, password: str, reason: str = "") -> Lot:
    """A pharmacist releases a quarantined, unexpired lot with an e-signature.

    Not the person who received it, unless SECOND_PERSON_RULES=verify-only. Without a
    certificate of analysis attached (to the lot or the lot it was split from), only with
    `reason`, kept on the lot and in the audit row.
    """
    ensure_can(actor, "lots.release", "release lots")
    reason = checked_text(reason, "reason", REASON_MAX)
    lot = get_lot(lot_id, for_update=True)
    ensure_item_at_site(actor, lot, "release lots")
    ensure_transition(lot, "release")
    if lot.is_expired():
        raise InvalidState(f"{lot.code} expired on {lot.expires_on}; an expired lot cannot be released.")
    ensure_second_person(actor, lot.received_by_id, f"You received {lot.code}: a second person must release it.")
    certified = has_certificate(lot)
    if not certified and not reason:
        raise InvalidInput(f"{lot.code} has no certificate of analysis attached: attach it, or give the reason "
                           "it is released without one.", field="reason")
    sign(actor, password, "released", "lot", lot.id)
    signed_into_use(actor, lot, "release", "lot.released", LOT_FIELDS + ("released_without_coa_reason",),
                    stamp="released", values={"released_without_coa_reason": "" if certified else reason})
    return lot


@transactional
def reject_lot(actor: User, lot_id: int, password: str, reason: str) -> Lot:
    """A pharmacist rejects a quarantined lot with an e-signature and a reason."""
    ensure_can(actor, "lots.release", "reject lots")
    reason = checked_text(reason, "reason", REASON_MAX, required="Say why the lot is rejected.")
    lot = get_lot(lot_id, for_update=True)
    ensure_item_at_site(actor, lot, "reject lots")
    ensure_transition(lot, "reject")
    sign(actor, password, "rejected", "lot", lot.id)
    explained_change(actor, lot, "reject", "lot.rejected", LOT_FIELDS, reason)
    return lot


@transactional
def quarantine_lot(actor: User, lot_id: int, reason: str) -> Lot:
    """A pharmacist puts a released lot back into quarantine (a quality signal, a supplier alert).

    No signature is needed to stop using a lot; it can be released again only with the
    usual e-signature. A quarantined lot is not eligible for compounding.
    """
    ensure_can(actor, "lots.release", "quarantine lots")
    reason = checked_text(reason, "reason", REASON_MAX, required="Say why the lot is quarantined.")
    lot = get_lot(lot_id, for_update=True)
    ensure_item_at_site(actor, lot, "quarantine lots")
    ensure_transition(lot, "quarantine")
    explained_change(actor, lot, "quarantine", "lot.quarantined", LOT_FIELDS, reason,
                     old={"released_at": lot.released_at, "released_by_id": lot.released_by_id})
    # The release no longer holds: a new release needs a new signature (the old one stays on record).
    lot.released_at = None
    lot.released_by_id = None
    return lot


@transactional
def adjust_lot(actor: User, lot_id: int, *, reason: str, quantity, direction: str = "out",
               note: str = "", password: str | None = None) -> Lot:
    """Waste, return or correct a lot's count with a coded reason.

    Stock only goes up with a signature: a count correction upwards or
    a return to stock is a pharmacist's signed action ("stock raised"), never above the
    quantity received, and never brings back a depleted, rejected, recalled or expired lot.
    Nothing may take a lot below zero; a lot at zero is `depleted` (held or not).
    """
    ensure_can(actor, "lots.adjust", "adjust lots")
    quantity, note = _check_adjustment(reason, quantity, direction, note)
    if direction == "in" and (actor is None or actor.role != "pharmacist"):
        raise NotAllowed("Only a pharmacist's signature can raise a lot's stock.", field="password")
    lot = get_lot(lot_id, for_update=True)
    ensure_item_at_site(actor, lot, "adjust stock")
    if direction == "in":
        _check_rise(lot, quantity)
    signed = quantity if direction == "in" else -quantity
    if lot.remaining + signed < 0:
        raise InsufficientStock(
            f"{lot.code} has {lot.remaining} {lot.ingredient.unit} left; {quantity} cannot be taken.",
            field="quantity")
    if direction == "in":
        pharmacist_signs(actor, password, "stock raised", "lot", lot.id, "raise a lot's stock")
    with audit.change(actor, f"lot.{REASON_KIND[reason]}", lot, LOT_FIELDS,
                      reason=f"{reason}: {note}" if note else reason) as change:
        movement = move_lot(lot, REASON_KIND[reason], signed, actor, reason=reason, note=note,
                            reference_type="adjustment")
        # A lot at zero is depleted, held or not; nothing brings a depleted lot back.
        deplete_if_empty(lot, actor, reason="adjusted to zero")
        db.session.flush()
        change.new.update(movement_id=movement.id, quantity=signed)
    return lot


def _check_adjustment(reason: str, quantity, direction: str, note: str) -> tuple[Decimal, str]:
    """The shape of an adjustment (422): a known reason going its way, a quantity, a note where needed."""
    if reason not in ADJUST_REASONS:
        raise InvalidInput(f"Choose a reason: {', '.join(ADJUST_REASONS)}.", field="reason")
    if direction not in ("in", "out"):
        raise InvalidInput("The direction is 'in' or 'out'.", field="direction")
    quantity = check_quantity(quantity)
    note = checked_text(note, "note", NOTE_MAX)
    if direction == "in" and reason not in RAISING_REASONS:
        raise InvalidInput("Only a count correction or a return to stock can add stock.", field="direction")
    if direction == "out" and reason == "returned_to_stock":
        raise InvalidInput("A return to stock adds stock: choose the direction 'in'.", field="direction")
    if reason in RAISING_REASONS and not note:
        raise InvalidInput("Explain the count correction or the return in the note.", field="note")
    return quantity, note


def _check_rise(lot: Lot, quantity: Decimal) -> None:
    """A rise (409 otherwise): a lot still in use, and never above what was received."""
    if lot.is_expired():
        raise InvalidState(f"{lot.code} is expired: its stock can only leave, never grow.", field="direction")
    ensure_transition(lot, "raise_stock", field="direction")
    if lot.remaining + quantity > lot.quantity_received:
        unit = lot.ingredient.unit
        raise InvalidState(
            f"{lot.code} would hold {(lot.remaining + quantity).normalize():f} {unit}, more than the "
            f"{lot.quantity_received.normalize():f} {unit} received: nothing raises a lot above its receipt.",
            field="quantity",
            details={"quantity": ["Above the quantity received."],
                     "quantity_received": format(lot.quantity_received.normalize(), "f"),
                     "remaining_after": format((lot.remaining + quantity).normalize(), "f")})


def eligible_lot_query(ingredient_id: int, at: datetime | None = None):
    """Lots that may go into a batch: released, unexpired at `at`, with stock left."""
    return sa.select(Lot).where(
        Lot.ingredient_id == ingredient_id,
        Lot.status == LotStatus.RELEASED,
        Lot.remaining > 0,
        sa.not_(expired_clause(Lot.expires_on, at)),
    )


def eligible_candidates(ingredient_id: int, at: datetime | None = None) -> list[Candidate]:
    return [
        Candidate.of(lot) for lot in db.session.scalars(eligible_lot_query(ingredient_id, at))
    ]
