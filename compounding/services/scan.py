"""What a scanned code is, and whether it may be used, in the order codes are resolved.

Our batch code first, then a vial code (`<batch code>-NN`: the vial's own verdict on top of its
batch's; a malformed one is refused saying what is wrong), then our lot code, then a storage
location's code (`LOC0001`: what is stored there), then a piece of equipment's (`BAL-01`: usable at
the bench today, or why not), then a supplier's GS1 string (matched to a lot
by GTIN and lot number, or offered as a pre-filled receipt), else "unknown".

Sites: a lot, batch, vial or location outside the scanner's sites (`site_ids`) answers DO NOT USE
"at site X, not one of yours" and nothing more; a vial at another site than the one where the
scanner acts (`acting_site_id`) is named, and unusable here.
"""

import re
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import joinedload, selectinload

from ..extensions import db
from ..gs1 import GS1Data, GS1Error, looks_like_gs1, parse_gs1
from ..models import (
    Batch,
    Equipment,
    Formula,
    Hold,
    Ingredient,
    IngredientGtin,
    Location,
    Lot,
    LotStatus,
    Site,
    Vial,
)
from ..models.site import LOCATION_CODE_MAX
from . import codes
from .batches import unusable_reasons
from .clock import clinic_today, utcnow
from .codes import BATCH_CODE, LOT_CODE
from .equipment import unusable_reasons as equipment_reasons
from .errors import DomainError
from .expiry import is_expired
from .holds import hold_texts
from .site_filters import SiteIds, at_sites, batch_at_sites
from .vials import find_vial, looks_like_vial_code, parse_vial_code, vial_reasons

SHOWN_LENGTH = 200
# A storage location's code; the codes module names it once it has one.
LOCATION_CODE = getattr(codes, "LOCATION_CODE", re.compile(r"^LOC\d{4,}$"))
# A code typed for a location (COLD-1, BENCH-1): letters, digits and hyphens, starting with a letter. Never L or B
# then a digit (a lot, batch or vial code: `sites._checked_location_code` refuses those), so a vial or lot scan
# costs no location lookup.
GIVEN_LOCATION_CODE = re.compile(rf"^[A-Z][A-Z0-9-]{{1,{LOCATION_CODE_MAX - 1}}}$")
_LIKE_STOCK = re.compile(r"^[LB]\d")
# What a location counts as stored there: stock someone could still use or must still deal with.
STORED_LOT_STATUSES = (LotStatus.QUARANTINE, LotStatus.RELEASED, LotStatus.ON_HOLD)
STORED_VIAL_STATUSES = ("sealed", "open", "on_hold")


def not_yours(site_code: str) -> str:
    """The one thing a scan tells about stock at a site the scanner may not see: which site."""
    return f"at site {site_code}, not one of yours"


@dataclass
class ScanResult:
    kind: str  # "batch" | "vial" | "lot" | "location" | "equipment" | "gs1" | "unknown"
    raw: str
    usable: bool = False
    reasons: list[str] = field(default_factory=list)
    batch: Batch | None = None
    vial: Vial | None = None
    lot: Lot | None = None
    gs1: GS1Data | None = None
    ingredient: Ingredient | None = None  # for an unknown GS1 lot: who it would be received as
    error: str = ""
    site: str = ""  # the code of the site where the scanned item is
    hidden: bool = False  # at a site the scanner may not see: nothing but its site is told
    location: Location | None = None
    stored: dict[str, int] = field(default_factory=dict)  # a location's lots, batches and vials
    equipment: Equipment | None = None

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


def _hidden(kind: str, raw: str, site_code: str) -> ScanResult:
    return ScanResult(kind, raw, reasons=[not_yours(site_code)], site=site_code, hidden=True)


def resolve(raw: str, at: datetime | None = None, *, site_ids: SiteIds = None,
            acting_site_id: int | None = None) -> ScanResult:
    """Resolve a scan for someone who sees `site_ids` (None: every site) and acts at `acting_site_id`
    (None: anywhere). Never raises on junk: an unknown code is an answer too."""
    raw = raw or ""
    at = at or utcnow()
    code = raw.strip().upper()
    if BATCH_CODE.match(code):
        # One statement: the formula comes joined, with its site's code and whether it is in scope (its own
        # site or a vial there); its components and GTINs only if someone asks.
        row = db.session.execute(
            sa.select(Batch, Site.code, batch_at_sites(site_ids).label("seen")).join(Site, Site.id == Batch.site_id)
            .where(Batch.code == code).options(joinedload(Batch.formula).lazyload(Formula.components))).first()
        if row is not None:
            batch, site_code, seen = row
            if not seen:
                return _hidden("batch", raw, site_code)
            reasons = unusable_reasons(batch, at, holds=hold_texts("batch", batch.id))
            return ScanResult("batch", raw, not reasons, reasons, batch=batch, site=site_code)
    if LOCATION_CODE.match(code):
        return _resolve_location(raw, code, site_ids)
    if GIVEN_LOCATION_CODE.match(code) and not _LIKE_STOCK.match(code):
        # A location given its own code is looked up by that exact code before any guess at what the code means.
        found = _resolve_location(raw, code, site_ids)
        if found.kind == "location":
            return found
        # Then a piece of equipment (BAL-01): its codes never read as a lot, batch, vial or location's.
        found = _resolve_equipment(raw, code, at, site_ids, acting_site_id)
        if found is not None:
            return found
    if looks_like_vial_code(code):
        return _resolve_vial(raw, code, at, site_ids, acting_site_id)
    if LOT_CODE.match(code):
        row = db.session.execute(sa.select(Lot, Site.code).join(Site, Site.id == Lot.site_id).where(
            Lot.code == code).options(joinedload(Lot.ingredient).lazyload(Ingredient.gtins))).first()
        if row is not None:
            lot, site_code = row
            if not _sees(site_ids, lot.site_id):
                return _hidden("lot", raw, site_code)
            reasons = lot_reasons(lot, at, hold_texts("lot", lot.id))
            return ScanResult("lot", raw, not reasons, reasons, lot=lot, site=site_code)
    if looks_like_gs1(raw):
        try:
            data = parse_gs1(raw, current_app.config.get("GS1_SEPARATOR", ""))
        except GS1Error as exc:
            return ScanResult("unknown", raw, reasons=[str(exc)], error=str(exc))
        return _resolve_gs1(raw, data, at, site_ids)
    return ScanResult("unknown", raw, reasons=["unknown code"])


def _sees(site_ids: SiteIds, site_id: int) -> bool:
    return site_ids is None or site_id in site_ids


def _resolve_location(raw: str, code: str, site_ids: SiteIds) -> ScanResult:
    """A storage location: its site, name and kind, and how many lots, batches and vials are stored there.

    Two statements: the location with its site, then the three counts in one grouped query.
    """
    row = db.session.execute(sa.select(Location, Site.code).join(Site, Site.id == Location.site_id)
                             .where(Location.code == code)).first()
    if row is None:
        return ScanResult("unknown", raw, reasons=[f"there is no location {code}"])
    location, site_code = row
    if not _sees(site_ids, location.site_id):
        return _hidden("location", raw, site_code)
    counted = sa.union_all(
        sa.select(sa.literal("lots").label("what"), sa.func.count()).select_from(Lot).where(
            Lot.location_id == location.id, Lot.status.in_(STORED_LOT_STATUSES)),
        sa.select(sa.literal("batches"), sa.func.count()).select_from(Batch).where(
            Batch.location_id == location.id, Batch.remaining_volume_ml > 0),
        sa.select(sa.literal("vials"), sa.func.count()).select_from(Vial).where(
            Vial.location_id == location.id, Vial.status.in_(STORED_VIAL_STATUSES)))
    stored = {"lots": 0, "batches": 0, "vials": 0} | dict(db.session.execute(counted).all())
    reasons = [] if location.active else ["this location is no longer in use"]
    return ScanResult("location", raw, not reasons, reasons, site=site_code, location=location, stored=stored)


def _resolve_equipment(raw: str, code: str, at: datetime, site_ids: SiteIds = None,
                       acting_site_id: int | None = None) -> ScanResult | None:
    """A piece of equipment: usable at the bench today where the scanner acts (its own site when the scanner
    acts anywhere), or the reasons; None when no equipment has this code (one statement)."""
    row = db.session.execute(sa.select(Equipment, Site.code).join(Site, Site.id == Equipment.site_id)
                             .where(Equipment.code == code)).first()
    if row is None:
        return None
    item, site_code = row
    if not _sees(site_ids, item.site_id):
        return _hidden("equipment", raw, site_code)
    where = acting_site_id if acting_site_id is not None else item.site_id
    reasons = equipment_reasons(item, clinic_today(at), where)
    return ScanResult("equipment", raw, not reasons, reasons, site=site_code, equipment=item)


def _resolve_vial(raw: str, code: str, at: datetime, site_ids: SiteIds = None,
                  acting_site_id: int | None = None) -> ScanResult:
    """A vial: its batch's reasons now, then its own, then where it is; a code that is no vial of ours says why.

    Two statements, as for a batch: the vial with its batch, formula and site's code, then both their holds
    (one, for a vial at a site the scanner may not see).
    """
    try:
        batch_code, number = parse_vial_code(code, field="code")
    except DomainError as exc:
        return ScanResult("vial", raw, reasons=[str(exc)], error=str(exc))
    row = db.session.execute(
        sa.select(Vial, Batch, Site.code).join(Batch, Batch.id == Vial.batch_id).join(Site, Site.id == Vial.site_id)
        .where(Batch.code == batch_code, Vial.number == number)
        .options(joinedload(Batch.formula).lazyload(Formula.components))).first()
    if row is None:
        # A batch at a site the scanner may not see tells its site and nothing more (not how far its vials run).
        batch_row = db.session.execute(
            sa.select(Site.code, batch_at_sites(site_ids).label("seen")).join(Batch, Batch.site_id == Site.id)
            .where(Batch.code == batch_code)).first()
        if batch_row is not None and not batch_row.seen:
            return _hidden("vial", raw, batch_row.code)
        try:
            find_vial(code, field="code")  # says what is wrong: no such batch, or no such vial number
        except DomainError as exc:
            return ScanResult("vial", raw, reasons=[str(exc)], error=str(exc))
    vial, batch, site_code = row
    if not _sees(site_ids, vial.site_id):
        return _hidden("vial", raw, site_code)
    standing = db.session.scalars(sa.select(Hold).where(
        sa.or_(sa.and_(Hold.entity_type == "batch", Hold.entity_id == batch.id),
               sa.and_(Hold.entity_type == "vial", Hold.entity_id == vial.id)),
        Hold.released_at.is_(None)).order_by(Hold.id)).all()
    reasons = unusable_reasons(batch, at, holds=[h.text for h in standing if h.entity_type == "batch"])
    own = [h.text for h in standing if h.entity_type == "vial"]
    reasons += [r for r in vial_reasons(vial, batch, at, holds=own) if r not in reasons]
    if acting_site_id is not None and vial.site_id != acting_site_id:
        reasons.append(f"is at site {site_code}")
    return ScanResult("vial", raw, not reasons, reasons, batch=batch, vial=vial, site=site_code)


def in_use_until(vial: Vial, batch: Batch) -> datetime | None:
    """The deadline of a punctured multiple-dose vial (None for any other: its batch's BUD rules)."""
    if vial.dose == "multiple" and vial.punctured_at is not None:
        return vial.in_use_until(batch.beyond_use_at)
    return None


def _resolve_gs1(raw: str, data: GS1Data, at: datetime, site_ids: SiteIds = None) -> ScanResult:
    result = ScanResult("gs1", raw, gs1=data)
    if data.gtin:
        result.ingredient = db.session.scalar(
            sa.select(Ingredient).join(IngredientGtin).where(IngredientGtin.gtin == data.gtin.zfill(14)))
    if data.gtin and data.lot_number:
        query = sa.select(Lot).where(Lot.supplier_lot_number == data.lot_number).options(
            selectinload(Lot.ingredient))
        by_gtin = sa.or_(Lot.gtin == data.gtin.zfill(14),
                         Lot.ingredient_id == (result.ingredient.id if result.ingredient else -1))
        # A lot and the child lots a transfer made of it share the supplier's lot number: the scanner's first.
        mine = sa.case((at_sites(Lot.site_id, site_ids), 0), else_=1)
        result.lot = db.session.scalar(query.where(by_gtin).order_by(mine, Lot.id.desc()).limit(1))
    if result.lot is not None and not _sees(site_ids, result.lot.site_id):
        site_code = db.session.scalar(sa.select(Site.code).where(Site.id == result.lot.site_id))
        result.lot, result.hidden, result.site, result.reasons = None, True, site_code, [not_yours(site_code)]
        return result
    if result.lot is not None:
        # Found by GTIN and (10): its (17) must agree with the record too, else it is not this lot.
        mismatch = gs1_mismatches(data, result.lot, ("expiry_date",)) if data.expiry_date else []
        result.reasons = [f"barcode does not match the record: {m}" for m in mismatch] + lot_reasons(
            result.lot, at, hold_texts("lot", result.lot.id))
        result.usable = not result.reasons
    else:
        result.reasons = ["not received yet" if result.ingredient else "no ingredient has this GTIN"]
    return result
