"""Vial and lot labels: the data a label prints, and its barcode, with no web request involved.

A label is what the person holding the vial reads: every value on it comes from the batch
record as stored (the components as copied at compounding, the formula version it was made
from, the quantities actually consumed, the printed names on its signatures), never from
the current state of an ingredient or a formula.
"""

import re
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import joinedload, selectinload

from . import barcodes
from .extensions import db
from .models import Batch, BatchComponent, BatchStatus, Hold, Lot, LotStatus, Vial, VialStatus
from .queries.batches import in_use_period_words
from .services import bud
from .services.batches import is_batch_expired
from .services.clock import to_clinic
from .services.errors import InvalidState, NotFound
from .services.expiry import is_expired
from .services.holds import hold_texts
from .services.signatures import signatures_for

STATEMENT = "Compounded preparation"
NOT_VERIFIED = "NOT VERIFIED — do not use"
STORAGE_TEXT = {
    "room": "Store at 20–25 °C",
    "fridge": "Refrigerate 2–8 °C",
    "freezer": "Freeze −25 to −10 °C",
}
LIGHT_TEXT = "Protect from light"
# USP <797>: a single-dose container is discarded after its one use; a multiple-dose one says how long it
# may be used after it is first entered, and has room to write when that was.
DOSE_STATEMENTS = {"single": "Single-dose: discard unused portion",
                   "multiple": "Multiple-dose: use within {period} of first puncture"}
PUNCTURE_LINE = "First punctured ____-__-__ __:__"
# Status warnings printed across a label (an unverified batch says so in its "verified by" place).
BATCH_WARNINGS = {status: f"{status.upper().replace('_', ' ')} — do not use" for status in (
    BatchStatus.REJECTED, BatchStatus.RECALLED, BatchStatus.DISCARDED, BatchStatus.ON_HOLD,
    BatchStatus.AWAITING_TESTS)}
VIAL_WARNINGS = {status: f"{status.upper().replace('_', ' ')} — do not use" for status in (
    VialStatus.SPENT, VialStatus.SAMPLED, VialStatus.DISCARDED, VialStatus.RECALLED, VialStatus.IN_TRANSIT)}
LOT_WARNINGS = {status: f"{status.upper().replace('_', ' ')} — do not use" for status in (
    LotStatus.QUARANTINE, LotStatus.REJECTED, LotStatus.RECALLED, LotStatus.ON_HOLD)}
# 0.25 mm modules are 2 dots at 203 dpi; 5 mm bars leave room for the text on a 30 mm label.
BARCODE_OPTIONS = {"module_width": barcodes.MODULE_MM, "module_height": 5.0}
# A stock strength we can compute with: "50 mg/mL", "2 %" (w/v), or both as "2 % (20 mg/mL)".
_FIGURE = r"(\d+(?:\.\d+)?)\s*(?:(mg|g|mcg|µg|IU|units?)\s*/\s*ml|(%))"
_STRENGTH = re.compile(rf"^\s*{_FIGURE}\s*(?:\(\s*{_FIGURE}\s*\)\s*)?$", re.IGNORECASE)


@dataclass
class DrugLine:
    """One component (other than a pure vehicle) as it is in each unit of the preparation."""

    ingredient_id: int
    name: str
    strength: str
    kind: str
    quantity_per_unit: str
    unit: str
    unit_volume_ml: str  # the volume the concentration is worked out over
    concentration: str | None  # in the finished unit, when it follows from exact figures
    text: str


@dataclass
class BatchLabel:
    clinic_name: str
    statement: str
    batch_id: int
    batch_code: str
    status: str
    formula_code: str
    formula_name: str
    formula_version: int
    drugs: list[DrugLine]
    unit_label: str
    unit_volume_ml: str
    total_volume_text: str
    route: str
    route_text: str
    dosage_form: str
    storage: str
    storage_text: str
    protect_from_light: bool
    storage_lines: list[str]
    dose: str
    dose_statement: str
    compounded_at: datetime
    compounded_at_text: str
    made_at_text: str
    beyond_use_at: datetime
    beyond_use_text: str
    use_by_at: datetime
    use_by_text: str
    prepared_by: str
    verified_by: str | None
    verified_text: str
    verified: bool
    warnings: list[str] = field(default_factory=list)
    # The code printed and encoded: the vial's, or the batch's on a label of the whole batch.
    code: str = ""
    vial_code: str | None = None
    vial_number: int | None = None
    in_use_hours: int | None = None
    puncture_line: bool = False

    @property
    def actives(self) -> list[DrugLine]:
        """The first name of `drugs`, kept for readers of the label API."""
        return self.drugs


@dataclass
class LotLabel:
    clinic_name: str
    lot_id: int
    lot_code: str
    ingredient_name: str
    strength: str
    supplier: str
    supplier_lot_number: str
    expires_on: date
    status: str
    expired: bool
    warnings: list[str] = field(default_factory=list)

    @property
    def code(self) -> str:
        """The code printed and encoded."""
        return self.lot_code


def amount_text(value: Decimal) -> str:
    """A quantity without float noise or trailing zeros, to 3 decimals (12.500 -> 12.5)."""
    text = format(Decimal(value).quantize(Decimal("0.001")), "f").rstrip("0").rstrip(".")
    return text or "0"


def _three_figures(value: Decimal) -> str:
    """A derived concentration to 3 significant figures: 6.666… -> 6.67, 25 -> 25."""
    if value == 0:
        return "0"
    exponent = min(value.adjusted() - 2, 0)
    text = format(value.quantize(Decimal(10) ** exponent), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def final_concentration(strength: str, unit: str, quantity: Decimal, unit_volume_ml: Decimal) -> str | None:
    """The ingredient's concentration in the finished unit, or None when it cannot be known exactly.

    A solid (mg, g, IU) dissolved to the unit's volume gives amount / volume. A liquid stock
    (mL) gives its own strength × its volume / the unit's volume, but only when the strength
    text is a plain "<number> <unit>/mL" or "<number> %": anything else is not guessed.
    """
    if unit_volume_ml <= 0:
        return None
    if unit in ("mg", "g", "IU", "unit"):
        per = "units" if unit == "unit" else unit
        return f"{_three_figures(quantity / unit_volume_ml)} {per}/mL"
    figure = _stock_figure(strength)
    if unit != "mL" or figure is None:
        return None
    number, per = figure
    return f"{_three_figures(number * quantity / unit_volume_ml)} {per}"


def _stock_figure(strength: str) -> tuple[Decimal, str] | None:
    """(number, unit) of a stock strength, per mL when it is given so, else in % (w/v)."""
    match = _STRENGTH.match(strength or "")
    if not match:
        return None
    figures = [match.group(1, 2, 3), match.group(4, 5, 6)]
    per_ml = [(n, u) for n, u, _ in figures if n and u]
    if per_ml:
        number, unit = per_ml[0]
        return Decimal(number), {"iu": "IU", "unit": "units", "units": "units"}.get(unit.lower(), unit.lower()) + "/mL"
    return Decimal(figures[0][0]), "%"


@dataclass
class UnitContent:
    """One ingredient's share of a unit, summed over the lots it came from (read from the copies)."""

    first: BatchComponent
    per_unit: Decimal
    theoretical_per_unit: Decimal
    lots: list[BatchComponent]


def unit_contents(components: list[BatchComponent], units: int) -> list[UnitContent]:
    """Each ingredient of a batch once, in the order compounded, with its amount per unit."""
    contents: dict[int, UnitContent] = {}
    for component in components:
        content = contents.setdefault(component.ingredient_id,
                                      UnitContent(component, Decimal(0), Decimal(0), []))
        content.per_unit += Decimal(component.quantity) / units
        content.theoretical_per_unit += Decimal(component.theoretical_quantity) / units
        content.lots.append(component)
    return list(contents.values())


def mixed_volume(contents: list[UnitContent], unit_volume_ml: Decimal) -> Decimal:
    """The volume each unit's amounts are spread over.

    A balanced formula (its liquids add up to the unit volume) fills the unit: the unit volume.
    A formula recorded before formulas had to balance is divided by the liquid really mixed
    (4 mL + 4 mL in a "5 mL" vial is 8 mL of mixture), so no concentration is overstated.
    """
    planned = sum((c.theoretical_per_unit for c in contents if c.first.ingredient_unit == "mL"), Decimal(0))
    mixed = sum((c.per_unit for c in contents if c.first.ingredient_unit == "mL"), Decimal(0))
    if planned == unit_volume_ml or mixed <= 0:
        return unit_volume_ml
    return mixed


def drug_lines(contents: list[UnitContent], volume: Decimal) -> list[DrugLine]:
    """Every component other than a pure vehicle (water, sodium chloride), with its concentration."""
    lines = []
    for content in contents:
        copy = content.first
        if copy.ingredient_vehicle:
            continue
        concentration = final_concentration(copy.ingredient_strength, copy.ingredient_unit, content.per_unit, volume)
        amount = f"{amount_text(content.per_unit)} {copy.ingredient_unit} per {amount_text(volume)} mL"
        text = (f"{copy.ingredient_name} {concentration}" if concentration
                else f"{copy.ingredient_name} {copy.ingredient_strength}".strip() + f" — {amount}")
        lines.append(DrugLine(
            ingredient_id=copy.ingredient_id, name=copy.ingredient_name, strength=copy.ingredient_strength,
            kind=copy.ingredient_kind, quantity_per_unit=amount_text(content.per_unit), unit=copy.ingredient_unit,
            unit_volume_ml=amount_text(volume), concentration=concentration, text=text))
    return lines


def clinic_time(value: datetime) -> str:
    local = to_clinic(value)
    return f"{local:%Y-%m-%d %H:%M} {local.tzname()}"


def last_usable_minute(beyond_use_at: datetime) -> datetime:
    """The last whole minute before the (exclusive) beyond-use instant, in the clinic's zone."""
    return to_clinic(bud.last_usable_minute(beyond_use_at))


def storage_lines(storage: str, protect_from_light: bool) -> list[str]:
    """What the label says about keeping it: the temperature unless room, and light."""
    lines = [STORAGE_TEXT.get(storage, storage)] if storage != "room" else []
    return lines + ([LIGHT_TEXT] if protect_from_light else [])


def load_batch_record(batch_id: int) -> Batch:
    """The batch with what its label and record read; a held batch still has its record."""
    batch = db.session.scalar(
        sa.select(Batch).where(Batch.id == batch_id).options(
            selectinload(Batch.formula), selectinload(Batch.components),
            joinedload(Batch.compounded_by), joinedload(Batch.verified_by)))
    if batch is None:
        raise NotFound("There is no such batch.")
    return batch


def load_batch(batch_id: int) -> Batch:
    """The batch for a label: none is printed while it is held."""
    batch = load_batch_record(batch_id)
    refuse_if_held("batch", batch)
    return batch


def load_lot(lot_id: int) -> Lot:
    lot = db.session.scalar(sa.select(Lot).where(Lot.id == lot_id).options(joinedload(Lot.ingredient)))
    if lot is None:
        raise NotFound("There is no such lot.")
    refuse_if_held("lot", lot)
    return lot


def refuse_if_held(kind: str, item) -> None:
    """No label for held stock: a fresh label would make it look usable."""
    held = hold_texts(kind, item.id)
    if held or item.status in (LotStatus.ON_HOLD, BatchStatus.ON_HOLD):
        raise InvalidState(f"{item.code} is on hold ({'; '.join(held) or 'hold'}): no label is printed until a "
                           "pharmacist releases every hold.", details={"holds": held})


def verifier_name(batch: Batch) -> str | None:
    """The printed name on the verification signature (the account's name if none is found)."""
    if batch.verified_by_id is None:
        return None
    signed = [s for s in signatures_for("batch", batch.id) if s.meaning == "verified"]
    return signed[-1].signer_name if signed else batch.verified_by.display_name


def batch_label(batch: Batch, at: datetime | None = None) -> BatchLabel:
    """Everything a vial label prints for `batch` (load it with `load_batch`)."""
    formula = batch.formula  # an approved version is never edited: its name and volume stand
    contents = unit_contents(batch.components, batch.units)
    volume = formula.unit_volume_ml
    verifier = verifier_name(batch)
    warnings = [BATCH_WARNINGS[batch.status]] if batch.status in BATCH_WARNINGS else []
    if is_batch_expired(batch, at):
        warnings.append("EXPIRED — do not use")
    use_by = last_usable_minute(batch.beyond_use_at)
    return BatchLabel(
        clinic_name=current_app.config["CLINIC_NAME"], statement=STATEMENT,
        batch_id=batch.id, batch_code=batch.code, status=batch.status,
        formula_code=formula.code, formula_name=formula.name, formula_version=formula.version,
        drugs=drug_lines(contents, mixed_volume(contents, volume)), unit_label=formula.unit_label,
        unit_volume_ml=amount_text(volume), total_volume_text=f"{amount_text(volume)} mL",
        route=formula.route, route_text=f"{formula.route.replace('_', ' ').capitalize()} use",
        dosage_form=formula.dosage_form, storage=batch.storage,
        storage_text=STORAGE_TEXT.get(batch.storage, batch.storage.replace("_", " ")),
        protect_from_light=batch.protect_from_light,
        storage_lines=storage_lines(batch.storage, batch.protect_from_light),
        dose=formula.dose, dose_statement=dose_statement(formula.dose, formula.in_use_hours),
        in_use_hours=formula.in_use_hours if formula.dose == "multiple" else None,
        puncture_line=formula.dose == "multiple", code=batch.code,
        compounded_at=batch.compounded_at, compounded_at_text=clinic_time(batch.compounded_at),
        made_at_text=f"{to_clinic(batch.compounded_at):%Y-%m-%d %H:%M}",
        beyond_use_at=batch.beyond_use_at, beyond_use_text=clinic_time(batch.beyond_use_at),
        use_by_at=use_by, use_by_text=f"Use by {use_by:%Y-%m-%d %H:%M}",
        prepared_by=batch.compounded_by.display_name, verified_by=verifier,
        verified_text=verifier or NOT_VERIFIED, verified=verifier is not None, warnings=warnings,
    )


def dose_statement(dose: str, in_use_hours: int | None) -> str:
    """What the label says about the dose: discard after one use, or the in-use period (days when whole)."""
    if dose != "multiple":
        return DOSE_STATEMENTS["single"]
    return DOSE_STATEMENTS["multiple"].format(period=in_use_period_words(in_use_hours))


def vial_label(batch_label: BatchLabel, vial: Vial) -> BatchLabel:
    """The batch's label for one of its vials: its code, its dose as copied at compounding, its own warnings."""
    warnings = list(batch_label.warnings)
    warning = VIAL_WARNINGS.get(vial.status)
    if warning and warning not in warnings:
        warnings.insert(0, warning)
    multiple = vial.dose == "multiple"
    dates = {}
    if vial.use_by_at is not None and vial.use_by_at < batch_label.beyond_use_at:
        # Kept after a temperature excursion with an earlier use-by: the reprinted label carries it.
        use_by = last_usable_minute(vial.use_by_at)
        dates = dict(beyond_use_at=vial.use_by_at, beyond_use_text=clinic_time(vial.use_by_at), use_by_at=use_by,
                     use_by_text=f"Use by {use_by:%Y-%m-%d %H:%M}")
    return replace(batch_label, code=vial.code, vial_code=vial.code, vial_number=vial.number,
                   dose=vial.dose, dose_statement=dose_statement(vial.dose, vial.in_use_hours),
                   in_use_hours=vial.in_use_hours if multiple else None, puncture_line=multiple, warnings=warnings,
                   **dates)


def batch_vials(batch_id: int, vial_from: int | None = None, vial_to: int | None = None) -> list[Vial]:
    """A batch's vials by number, within the range when one is given (one statement)."""
    query = sa.select(Vial).where(Vial.batch_id == batch_id)
    if vial_from is not None:
        query = query.where(Vial.number >= vial_from)
    if vial_to is not None:
        query = query.where(Vial.number <= vial_to)
    return list(db.session.scalars(query.order_by(Vial.number)))


def vial_holds(vials: list[Vial]) -> dict[int, list[str]]:
    """The standing hold reasons of each held vial, by vial id, in one statement."""
    held: dict[int, list[str]] = {vial.id: [] for vial in vials if vial.status == VialStatus.ON_HOLD}
    ids = [vial.id for vial in vials]
    if ids:
        for hold in db.session.scalars(sa.select(Hold).where(
                Hold.entity_type == "vial", Hold.entity_id.in_(ids), Hold.released_at.is_(None)).order_by(Hold.id)):
            held.setdefault(hold.entity_id, []).append(hold.text)
    return held


def vial_labels(batch: Batch, *, vial_from: int | None = None, vial_to: int | None = None,
                at: datetime | None = None) -> list[BatchLabel]:
    """One label per vial in the range, held vials left out (load the batch with `load_batch`).

    A held vial gets no fresh label (it would look usable): asked for alone, the answer is a
    refusal naming its holds, as for a held batch.
    """
    vials = batch_vials(batch.id, vial_from, vial_to)
    held = vial_holds(vials)
    printable = [vial for vial in vials if vial.id not in held]
    if vials and not printable:
        texts = sorted({text for reasons in held.values() for text in reasons}) or ["hold"]
        raise InvalidState(f"{', '.join(v.code for v in vials)}: on hold ({'; '.join(texts)}): no label is printed "
                           "until a pharmacist releases every hold.", details={"holds": texts})
    whole = batch_label(batch, at)
    return [vial_label(whole, vial) for vial in printable]


def lot_label(lot: Lot, at: datetime | None = None) -> LotLabel:
    """Everything a container label prints for `lot` (load it with `load_lot`)."""
    expired = is_expired(lot.expires_on, at)
    warnings = [LOT_WARNINGS[lot.status]] if lot.status in LOT_WARNINGS else []
    if expired:
        warnings.append("EXPIRED — do not use")
    return LotLabel(
        clinic_name=current_app.config["CLINIC_NAME"], lot_id=lot.id, lot_code=lot.code,
        ingredient_name=lot.ingredient.name, strength=lot.ingredient.strength, supplier=lot.supplier,
        supplier_lot_number=lot.supplier_lot_number, expires_on=lot.expires_on, status=lot.status,
        expired=expired, warnings=warnings,
    )


def barcode_svg(code: str) -> str:
    """A standalone SVG document of one of our codes, as a label prints it."""
    return barcodes.code128_document(code, **BARCODE_OPTIONS)


def barcode_inline(code: str) -> str:
    """The same barcode as an <svg> element to embed in a label page."""
    return barcodes.code128_svg(code, attributes=f'class="label-barcode" role="img" aria-label="Barcode {code}"',
                                **BARCODE_OPTIONS)
