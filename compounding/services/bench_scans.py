"""Bench scans: each container scanned at compounding must be the lot allocated on its row."""

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from ..extensions import db
from ..models import Lot
from .errors import InvalidInput, InvalidState


def check_scans(expected: dict[int, str], scans: dict[int, str]) -> set[int]:
    """Match each scanned container against the lot allocated on its row.

    `expected` maps lot id -> lot code, `scans` lot id -> what the scanner sent: our lot
    code or the supplier's GS1 barcode, which must match the allocated lot's GTIN, (10)
    and (17). Returns the confirmed lot ids; anything else is refused
    with the reason (and, for another eligible lot of the same ingredient, the offer to use
    it instead).
    """
    confirmed = set()
    for lot_id, raw in scans.items():
        if not (raw or "").strip():
            continue
        if lot_id not in expected:
            raise InvalidInput("A scan was entered for a lot that is not allocated.", field="scanned")
        why = _scan_refusal(lot_id, raw)
        if why is None:
            confirmed.add(lot_id)
            continue
        raise InvalidInput(f"Scan refused: {why}. The container on this row must be {expected[lot_id]}.",
                           field="scanned", details={"scanned": [why], "lot_id": lot_id})
    return confirmed


def _scan_refusal(lot_id: int, raw: str) -> str | None:
    """Why the container scanned as `raw` is not the allocated lot `lot_id` (None: it is)."""
    from .scan import gs1_mismatches, resolve  # scan builds on services.batches, which imports this module

    result = resolve(raw)
    allocated = db.session.scalar(sa.select(Lot).where(Lot.id == lot_id).options(selectinload(Lot.ingredient)))
    if result.kind == "gs1":
        mismatches = gs1_mismatches(result.gs1, allocated)
        if not mismatches:
            return None
        other = f" (it is {result.lot.code})" if result.lot is not None and result.lot.id != lot_id else ""
        return f"the supplier barcode does not match {allocated.code}{other}: " + "; ".join(mismatches)
    scanned = result.lot if result.kind == "lot" else None
    if scanned is not None and scanned.id == lot_id:
        return None
    if scanned is None:
        return f"{result.shown!r} is not one of our lot codes" + (f" ({result.error})" if result.error else "")
    if scanned.ingredient_id != allocated.ingredient_id:
        return f"{scanned.code} is {scanned.ingredient.name}, the wrong ingredient"
    if result.usable:
        return (f"{scanned.code} is another eligible lot of {allocated.ingredient.name}; to use it instead, "
                f"move the quantity from {allocated.code} to its row")
    return f"{scanned.code} is a different lot of {allocated.ingredient.name} and not eligible: " + "; ".join(
        result.reasons)


def ensure_scanned(plan, allocations: list[dict] | None) -> None:
    """Every container scanned, else 409 naming the lots.

    Where some lots were left to FEFO, the answer proposes every lot of the plan
    (`details.proposed_lots`): the client scans them and sends them back as `allocations`
    with `scanned_lot_ids`.
    """
    unscanned = [c for c in plan.components if not c.scanned]
    if not unscanned:
        return
    codes = ", ".join(sorted({c.lot.code for c in unscanned}))
    picked = {row.get("lot_id") for row in allocations or []}
    details = {"scanned": [f"Not scanned: {codes}."],
               "unscanned_lots": [{"lot_id": c.lot.id, "lot_code": c.lot.code} for c in unscanned]}
    if any(c.lot.id not in picked for c in plan.components):
        details["proposed_lots"] = [
            {"lot_id": c.lot.id, "lot_code": c.lot.code, "ingredient_id": c.ingredient_id,
             "ingredient_name": c.ingredient_name, "quantity": format(c.quantity.normalize(), "f"),
             "unit": c.unit} for c in plan.components]
    raise InvalidState(f"Scan every container before saving: {codes} not scanned.", field="scanned",
                       details=details)
