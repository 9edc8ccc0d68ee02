"""Vial and lot labels: the data a label prints, and its barcode, with no web request involved.

A label is what the person holding the vial reads: every value on it comes from the batch
record as stored (the formula version it was made from, the quantities actually consumed,
the printed names on its signatures), never from the current state of a formula.
"""

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import joinedload, selectinload

from . import barcodes
from .extensions import db
from .models import Batch, BatchStatus, Lot, LotStatus
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
    "protect_from_light": "Protect from light",
}
# Status warnings printed across a label (an unverified batch says so in its "verified by" place).
BATCH_WARNINGS = {status: f"{status.upper().replace('_', ' ')} — do not use" for status in (
    BatchStatus.REJECTED, BatchStatus.RECALLED, BatchStatus.DISCARDED, BatchStatus.ON_HOLD)}
LOT_WARNINGS = {status: f"{status.upper().replace('_', ' ')} — do not use" for status in (
    LotStatus.QUARANTINE, LotStatus.REJECTED, LotStatus.RECALLED, LotStatus.ON_HOLD)}
# Wide enough (~39 mm for a batch code) for a 203 dpi thermal printer; short enough for 50 mm.
BARCODE_OPTIONS = {"module_width": 0.3, "module_height": 5.5}
# A concentration printed as the ingredient's own strength, e.g. "50 mg/mL" or "2 %" (w/v).
_STRENGTH = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(mg|g|mcg|µg|IU|units?)\s*/\s*ml\s*$|^\s*(\d+(?:\.\d+)?)\s*(%)\s*$",
                       re.IGNORECASE)
_STYLE_FILL = re.compile(r'\sstyle="fill:\s*(black|white);?"')
_ELEMENT_ID = re.compile(r'\sid="[^"]*"')


@dataclass
class ActiveLine:
    """One active ingredient as it is in each unit of the preparation."""

    ingredient_id: int
    name: str
    strength: str
    quantity_per_unit: str
    unit: str
    unit_volume_ml: str
    concentration: str | None  # in the final preparation, when it follows from exact figures
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
    actives: list[ActiveLine]
    unit_label: str
    unit_volume_ml: str
    route: str
    dosage_form: str
    storage: str
    storage_text: str
    compounded_at: datetime
    compounded_at_text: str
    beyond_use_at: datetime
    beyond_use_text: str
    use_by_text: str
    prepared_by: str
    verified_by: str | None
    verified_text: str
    verified: bool
    warnings: list[str] = field(default_factory=list)


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


def _amount(value: Decimal) -> str:
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
    match = _STRENGTH.match(strength or "")
    if unit != "mL" or not match:
        return None
    if match.group(4):
        return f"{_three_figures(Decimal(match.group(3)) * quantity / unit_volume_ml)} %"
    per = {"iu": "IU", "unit": "units"}.get(match.group(2).lower(), match.group(2).lower())
    return f"{_three_figures(Decimal(match.group(1)) * quantity / unit_volume_ml)} {per}/mL"


def _clinic_time(value: datetime) -> str:
    local = to_clinic(value)
    return f"{local:%Y-%m-%d %H:%M} {local.tzname()}"


def load_batch(batch_id: int) -> Batch:
    batch = db.session.scalar(
        sa.select(Batch).where(Batch.id == batch_id).options(
            selectinload(Batch.formula), selectinload(Batch.components),
            joinedload(Batch.compounded_by), joinedload(Batch.verified_by)))
    if batch is None:
        raise NotFound("There is no such batch.")
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


def batch_label(batch: Batch, at: datetime | None = None) -> BatchLabel:
    """Everything a vial label prints for `batch` (load it with `load_batch`)."""
    formula = batch.formula
    # What is in the vial is what was consumed, which differs from the formula after a deviation.
    consumed: dict[int, Decimal] = {}
    for component in batch.components:
        consumed[component.ingredient_id] = consumed.get(component.ingredient_id, Decimal(0)) + component.quantity
    volume = formula.unit_volume_ml
    actives = []
    for component in formula.components:
        ingredient = component.ingredient
        if ingredient.kind != "active":
            continue
        per_unit = consumed.get(ingredient.id, component.quantity * batch.units) / batch.units
        head = f"{ingredient.name} {ingredient.strength}".strip()
        actives.append(ActiveLine(
            ingredient_id=ingredient.id, name=ingredient.name, strength=ingredient.strength,
            quantity_per_unit=_amount(per_unit), unit=ingredient.unit, unit_volume_ml=_amount(volume),
            concentration=final_concentration(ingredient.strength, ingredient.unit, per_unit, volume),
            text=f"{head} — {_amount(per_unit)} {ingredient.unit} per {_amount(volume)} mL",
        ))
    verifier = None
    if batch.verified_by_id is not None:
        signed = [s for s in signatures_for("batch", batch.id) if s.meaning == "verified"]
        verifier = signed[-1].signer_name if signed else batch.verified_by.display_name
    warnings = [BATCH_WARNINGS[batch.status]] if batch.status in BATCH_WARNINGS else []
    if is_batch_expired(batch, at):
        warnings.append("EXPIRED — do not use")
    use_by = _clinic_time(batch.beyond_use_at)
    return BatchLabel(
        clinic_name=current_app.config["CLINIC_NAME"], statement=STATEMENT,
        batch_id=batch.id, batch_code=batch.code, status=batch.status,
        formula_code=formula.code, formula_name=formula.name, formula_version=formula.version,
        actives=actives, unit_label=formula.unit_label, unit_volume_ml=_amount(volume),
        route=formula.route, dosage_form=formula.dosage_form,
        storage=batch.storage, storage_text=STORAGE_TEXT.get(batch.storage, batch.storage.replace("_", " ")),
        compounded_at=batch.compounded_at, compounded_at_text=_clinic_time(batch.compounded_at),
        beyond_use_at=batch.beyond_use_at, beyond_use_text=use_by, use_by_text=f"Use by {use_by}",
        prepared_by=batch.compounded_by.display_name, verified_by=verifier,
        verified_text=verifier or NOT_VERIFIED, verified=verifier is not None, warnings=warnings,
    )


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


def _without_inline_styles(svg: str) -> str:
    # The Content-Security-Policy forbids style attributes, inline SVG included: fills become
    # presentation attributes. Element ids go too, or several copies on a page would repeat them.
    return _ELEMENT_ID.sub("", _STYLE_FILL.sub(r' fill="\1"', svg))


def barcode_svg(code: str) -> str:
    """A standalone SVG document of one of our codes, as a label prints it."""
    return _without_inline_styles(barcodes.code128_svg(code, **BARCODE_OPTIONS))


def barcode_inline(code: str) -> str:
    """The same barcode as an <svg> element to embed in a label page."""
    svg = _without_inline_styles(barcodes.code128_inline(code, **BARCODE_OPTIONS))
    return svg.replace("<svg ", f'<svg class="label-barcode" role="img" aria-label="Barcode {code}" ', 1)
