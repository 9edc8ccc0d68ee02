"""What a scanned code is, and whether it may be used, in the order codes are resolved.

Our batch code first, then a vial code (`<batch code>-NN`: the vial's own verdict on top of its
batch's; a malformed one is refused saying what is wrong), then our lot code, then a supplier's
GS1 string (matched to a lot by GTIN and lot number, or offered as a pre-filled receipt), else
"unknown".
"""

from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import joinedload, selectinload

from ..extensions import db
from ..gs1 import GS1Data, GS1Error, looks_like_gs1, parse_gs1
from ..models import Batch, Formula, Hold, Ingredient, IngredientGtin, Lot, LotStatus, Vial
from .batches import unusable_reasons
from .clock import utcnow
from .codes import BATCH_CODE, LOT_CODE
from .errors import DomainError
from .expiry import is_expired
from .holds import hold_texts
from .vials import find_vial, looks_like_vial_code, parse_vial_code, vial_reasons

SHOWN_LENGTH = 200


@dataclass
class ScanResult:
    kind: str  # "batch" | "vial" | "lot" | "gs1" | "unknown"
    raw: str
    usable: bool = False
    reasons: list[str] = field(default_factory=list)
    batch: Batch | None = None
    vial: Vial | None = None
    lot: Lot | None = None
    gs1: GS1Data | None = None
    ingredient: Ingredient | None = None  # for an unknown GS1 lot: who it would be received as
    error: str = ""

    @property
    def shown(self) -> str:
        """What was received, control characters made visible, cut to a sensible length."""
        return visible(self.raw)[:SHOWN_LENGTH]


def visible(raw: str) -> str:
    names = {"\x1d": "<GS>", "\r": "<CR>", "\n": "<LF>", "\t": "<TAB>", "\x1e": "<RS>", "\x04": "<EOT>"}
    return "".join(names.get(ch, f"<0x{ord(ch):02X}>" if ord(ch) < 32 or ord(ch) == 127 else ch) for ch in raw)


def lot_reasons(lot: Lot, at: datetime | None = None, holds: list[str] | None = None) -> list[str]:
    """Every reason a lot may not go into a batch now (`holds`: the hold reasons standing): the one lot verdict.

    Used for our lot code and for a supplier's GS1 code alike, so both answer the same
    DO NOT USE with the same reasons.
    """
    reasons = []
    if holds:
        reasons.append("on hold: " + "; ".join(holds))
    elif lot.status == LotStatus.ON_HOLD:
        reasons.append("on hold")
    if lot.status not in (LotStatus.RELEASED, LotStatus.ON_HOLD):
        reasons.append({LotStatus.QUARANTINE: "in quarantine: not released yet"}.get(lot.status, lot.status))
    if is_expired(lot.expires_on, at):
        reasons.append(f"expired on {lot.expires_on.isoformat()}")
    if lot.remaining <= 0 and lot.status != LotStatus.DEPLETED:
        reasons.append("empty")
    return reasons


GS1_PARTS = ("gtin", "lot_number", "expiry_date")


def gs1_mismatches(data: GS1Data, lot: Lot, parts=GS1_PARTS) -> list[str]:
    """Which parts of a supplier barcode disagree with a lot's record, each said with both values.

    GTIN: the lot's own GTIN, or (a lot received without one) one of its ingredient's.
    (17) day 00 is already read as the month's last day (gs1.parse_gs1). A part the barcode
    lacks is a mismatch too: it cannot be checked.
    """
    problems = []
    if "gtin" in parts:
        gtin = (data.gtin or "").zfill(14) if data.gtin else None
        known = [lot.gtin] if lot.gtin else lot.ingredient.gtin_list
        if gtin is None:
            problems.append("the barcode has no GTIN (01)")
        elif gtin not in known:
            problems.append(f"GTIN (01) {gtin} is not the lot's ({', '.join(known) or 'none recorded'})")
    if "lot_number" in parts:
        if not data.lot_number:
            problems.append("the barcode has no lot number (10)")
        elif data.lot_number != lot.supplier_lot_number:
            problems.append(f"lot (10) {data.lot_number} is not the lot's {lot.supplier_lot_number}")
    if "expiry_date" in parts:
        if data.expiry_date is None:
            problems.append("the barcode has no expiry (17)")
        elif data.expiry_date != lot.expires_on:
            problems.append(f"expiry (17) {data.expiry_date.isoformat()} on the barcode, "
                            f"{lot.expires_on.isoformat()} on the lot's record")
    return problems


def resolve(raw: str, at: datetime | None = None) -> ScanResult:
    """Resolve a scan. Never raises on junk: an unknown code is an answer too."""
    raw = raw or ""
    at = at or utcnow()
    code = raw.strip().upper()
    if BATCH_CODE.match(code):
        # One statement: the formula comes joined; its components and GTINs only if someone asks.
        batch = db.session.scalar(sa.select(Batch).where(Batch.code == code).options(
            joinedload(Batch.formula).lazyload(Formula.components)))
        if batch is not None:
            reasons = unusable_reasons(batch, at, holds=hold_texts("batch", batch.id))
            return ScanResult("batch", raw, not reasons, reasons, batch=batch)
    if looks_like_vial_code(code):
        return _resolve_vial(raw, code, at)
    if LOT_CODE.match(code):
        lot = db.session.scalar(sa.select(Lot).where(Lot.code == code).options(
            joinedload(Lot.ingredient).lazyload(Ingredient.gtins)))
        if lot is not None:
            reasons = lot_reasons(lot, at, hold_texts("lot", lot.id))
            return ScanResult("lot", raw, not reasons, reasons, lot=lot)
    if looks_like_gs1(raw):
        try:
            data = parse_gs1(raw, current_app.config.get("GS1_SEPARATOR", ""))
        except GS1Error as exc:
            return ScanResult("unknown", raw, reasons=[str(exc)], error=str(exc))
        return _resolve_gs1(raw, data, at)
    return ScanResult("unknown", raw, reasons=["unknown code"])


def _resolve_vial(raw: str, code: str, at: datetime) -> ScanResult:
    """A vial: its batch's reasons now, then its own; a code that is no vial of ours says why.

    Two statements, as for a batch: the vial with its batch and formula, then both their holds.
    """
    try:
        batch_code, number = parse_vial_code(code, field="code")
    except DomainError as exc:
        return ScanResult("vial", raw, reasons=[str(exc)], error=str(exc))
    row = db.session.execute(
        sa.select(Vial, Batch).join(Batch, Batch.id == Vial.batch_id)
        .where(Batch.code == batch_code, Vial.number == number)
        .options(joinedload(Batch.formula).lazyload(Formula.components))).first()
    if row is None:
        try:
            find_vial(code, field="code")  # says what is wrong: no such batch, or no such vial number
        except DomainError as exc:
            return ScanResult("vial", raw, reasons=[str(exc)], error=str(exc))
    vial, batch = row
    standing = db.session.scalars(sa.select(Hold).where(
        sa.or_(sa.and_(Hold.entity_type == "batch", Hold.entity_id == batch.id),
               sa.and_(Hold.entity_type == "vial", Hold.entity_id == vial.id)),
        Hold.released_at.is_(None)).order_by(Hold.id)).all()
    reasons = unusable_reasons(batch, at, holds=[h.text for h in standing if h.entity_type == "batch"])
    own = [h.text for h in standing if h.entity_type == "vial"]
    reasons += [r for r in vial_reasons(vial, batch, at, holds=own) if r not in reasons]
    return ScanResult("vial", raw, not reasons, reasons, batch=batch, vial=vial)


def in_use_until(vial: Vial, batch: Batch) -> datetime | None:
    """The deadline of a punctured multiple-dose vial (None for any other: its batch's BUD rules)."""
    if vial.dose == "multiple" and vial.punctured_at is not None:
        return vial.in_use_until(batch.beyond_use_at)
    return None


def _resolve_gs1(raw: str, data: GS1Data, at: datetime) -> ScanResult:
    result = ScanResult("gs1", raw, gs1=data)
    if data.gtin:
        result.ingredient = db.session.scalar(
            sa.select(Ingredient).join(IngredientGtin).where(IngredientGtin.gtin == data.gtin.zfill(14)))
    if data.gtin and data.lot_number:
        query = sa.select(Lot).where(Lot.supplier_lot_number == data.lot_number).options(
            selectinload(Lot.ingredient))
        by_gtin = sa.or_(Lot.gtin == data.gtin.zfill(14),
                         Lot.ingredient_id == (result.ingredient.id if result.ingredient else -1))
        result.lot = db.session.scalar(query.where(by_gtin).order_by(Lot.id.desc()).limit(1))
    if result.lot is not None:
        # Found by GTIN and (10): its (17) must agree with the record too, else it is not this lot.
        mismatch = gs1_mismatches(data, result.lot, ("expiry_date",)) if data.expiry_date else []
        result.reasons = [f"barcode does not match the record: {m}" for m in mismatch] + lot_reasons(
            result.lot, at, hold_texts("lot", result.lot.id))
        result.usable = not result.reasons
    else:
        result.reasons = ["not received yet" if result.ingredient else "no ingredient has this GTIN"]
    return result
