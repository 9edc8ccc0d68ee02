"""Equipment (DESIGN 10.6): balances, pipettes, hoods, thermometers and data loggers, their calibrations,
and the check the bench makes before a batch is recorded as made with them.

A piece of equipment is usable on a day while its calibration or certification is not overdue
(`due_on` is that day or later), it is not out of service (a failed calibration) and it is
active. A batch at a site with active equipment registered names what it was made with
(`equipment_ids`); each is checked here and copied onto the batch record (`batch_equipment`).
"""

import re
from collections.abc import Iterable
from datetime import date, datetime, timedelta

import sqlalchemy as sa

from ..extensions import db
from ..limits import NAME_MAX, NOTE_MAX
from ..models import Batch, BatchEquipment, Calibration, Equipment, Location, User
from ..models.equipment import CALIBRATION_RESULTS, EQUIPMENT_KINDS
from ..models.site import LOCATION_CODE_MAX
from . import audit, codes
from .access import ensure_can
from .bounds import checked_text
from .clock import clinic_today, start_of_clinic_day, utcnow
from .errors import InvalidInput, InvalidState, NotFound
from .sites import acting_site_id, ensure_at_site, get_site, main_site
from .transaction import transactional

EQUIPMENT_FIELDS = ("name", "serial_number", "due_on", "out_of_service", "active")
# As long as a location's code at most: the scan station reads both kinds of label alike.
EQUIPMENT_CODE_MAX = LOCATION_CODE_MAX
EQUIPMENT_CODE = re.compile(rf"^[A-Z][A-Z0-9-]{{1,{EQUIPMENT_CODE_MAX - 1}}}$")
_LIKE_STOCK = re.compile(r"^[LB]\d")
# The numbered location codes (LOC0001...) a scan reads as a location, whether or not it exists yet.
_LIKE_LOCATION = re.compile(r"^LOC\d")


def normalised_code(code: str | None) -> str:
    return (code or "").strip().upper()


def get_equipment(equipment_id: int, *, for_update: bool = False) -> Equipment:
    query = sa.select(Equipment).where(Equipment.id == equipment_id)
    item = db.session.scalar(query.with_for_update() if for_update else query)
    if item is None:
        raise NotFound(f"No equipment {equipment_id}.")
    return item


def find_by_code(code: str) -> Equipment | None:
    return db.session.scalar(sa.select(Equipment).where(Equipment.code == normalised_code(code)))


def _checked_code(code: str | None) -> str:
    """Typed by hand and printed on a label: upper case, unique, and never read as another record's code."""
    code = normalised_code(code)
    if not code:
        raise InvalidInput("Give the equipment a code, as on its label (BAL-01).", field="code")
    if _LIKE_STOCK.match(code) or any(pattern.match(code) for pattern in (
            codes.LOT_CODE, codes.BATCH_CODE, codes.VIAL_CODE, codes.LOOKS_LIKE_VIAL)):
        raise InvalidInput(f"{code} looks like a lot, batch or vial code: a scan would be misread.", field="code")
    if _LIKE_LOCATION.match(code):
        raise InvalidInput(f"{code} looks like a storage location's code: a scan would be misread.", field="code")
    if not EQUIPMENT_CODE.match(code):
        raise InvalidInput(f"An equipment code has 2 to {EQUIPMENT_CODE_MAX} upper-case letters, digits or "
                           "hyphens, starting with a letter (BAL-01).", field="code")
    taken = db.session.scalar(sa.select(Equipment).where(Equipment.code == code))
    if taken is not None:
        raise InvalidState(f"Equipment code {code} is taken by {taken.name}.", field="code")
    if db.session.scalar(sa.select(Location.id).where(Location.code == code)) is not None:
        raise InvalidState(f"{code} is a storage location's code: a scan would be misread.", field="code")
    return code


def _checked_day(value, field: str, what: str) -> date:
    if not isinstance(value, date) or isinstance(value, datetime):
        raise InvalidInput(f"{what}, e.g. 2027-06-30.", field=field)
    return value


def _manages(actor: User | None, site_id: int, doing: str) -> None:
    """`actor` None is the operator at the server's command line (as for `create-location`)."""
    if actor is not None:
        ensure_at_site(actor, site_id, doing)


@transactional
def create_equipment(actor: User | None, *, code: str, kind: str, name: str = "", due_on: date,
                     site_id: int | None = None, serial_number: str = "") -> Equipment:
    """Register a piece of equipment at a site of the actor's (default: their acting site; the command
    line's operator, `actor` None: the site named, else MAIN)."""
    if actor is not None:
        ensure_can(actor, "equipment.manage", "register equipment")
    if kind not in EQUIPMENT_KINDS:
        raise InvalidInput(f"The kind is one of {', '.join(EQUIPMENT_KINDS)}.", field="kind")
    if actor is not None:
        site_id = acting_site_id(actor, site_id)
    elif site_id is None:
        site_id = main_site().id
    _manages(actor, site_id, "register equipment")
    if not get_site(site_id).active:
        raise InvalidState("This site is closed.", field="site_id")
    code = _checked_code(code)
    name = checked_text(name, "name", NAME_MAX) or code
    serial_number = checked_text(serial_number, "serial_number", NAME_MAX)
    due_on = _checked_day(due_on, "due_on", "The day its next calibration or certification is due")
    item = Equipment(code=code, kind=kind, name=name, serial_number=serial_number, site_id=site_id,
                     due_on=due_on, created_by_id=actor.id if actor is not None else None, created_at=utcnow())
    db.session.add(item)
    db.session.flush()
    audit.created(actor, "equipment.created", item, ("code", "kind", "site_id") + EQUIPMENT_FIELDS)
    return item


@transactional
def update_equipment(actor: User, equipment_id: int, *, name: str, serial_number: str = "",
                     active: bool = True) -> Equipment:
    """Rename or retire a piece of equipment (its due date moves only with a calibration)."""
    ensure_can(actor, "equipment.manage", "change equipment")
    item = get_equipment(equipment_id, for_update=True)
    ensure_at_site(actor, item.site_id, "change equipment")
    name = checked_text(name, "name", NAME_MAX, required="Name the equipment.")
    serial_number = checked_text(serial_number, "serial_number", NAME_MAX)
    with audit.change(actor, "equipment.updated", item, EQUIPMENT_FIELDS, only_if_changed=True):
        item.name, item.serial_number, item.active = name, serial_number, bool(active)
    return item


@transactional
def record_calibration(actor: User | None, equipment_id: int, *, performed_on: date, result: str,
                       next_due_on: date | None = None, performed_by: str = "", certificate_number: str = "",
                       note: str = "") -> Calibration:
    """A calibration or certification: a pass sets the next due date; a fail takes the equipment out of service.
    (`actor` None: the operator at the server's command line.)"""
    if actor is not None:
        ensure_can(actor, "equipment.manage", "record calibrations")
    item = get_equipment(equipment_id, for_update=True)
    _manages(actor, item.site_id, "record calibrations")
    if result not in CALIBRATION_RESULTS:
        raise InvalidInput("The result is pass or fail.", field="result")
    performed_on = _checked_day(performed_on, "performed_on", "The day it was calibrated or certified")
    if performed_on > clinic_today():
        raise InvalidInput(f"{performed_on.isoformat()} is in the future: record a calibration once it is done.",
                           field="performed_on")
    latest = db.session.scalar(sa.select(sa.func.max(Calibration.performed_on))
                               .where(Calibration.equipment_id == item.id))
    # A certificate that arrives after a later one is kept in the history; only the latest sets the state.
    current = latest is None or performed_on >= latest
    if result == "pass":
        if next_due_on is None:
            raise InvalidInput("A passed calibration says when the next one is due.", field="next_due_on")
        next_due_on = _checked_day(next_due_on, "next_due_on", "The day the next calibration is due")
        if next_due_on <= performed_on:
            raise InvalidInput("The next calibration is due after this one.", field="next_due_on")
    else:
        # A fail leaves the due date as it was (the column keeps it after the day performed).
        next_due_on = max(item.due_on, performed_on + timedelta(days=1))
    calibration = Calibration(
        equipment_id=item.id, performed_on=performed_on, result=result, next_due_on=next_due_on,
        performed_by=checked_text(performed_by, "performed_by", NAME_MAX),
        certificate_number=checked_text(certificate_number, "certificate_number", NAME_MAX),
        note=checked_text(note, "note", NOTE_MAX), recorded_by_id=actor.id if actor is not None else None,
        recorded_at=utcnow())
    db.session.add(calibration)
    # A fail reaches the batches made with the piece since: named here, refused at their verification.
    since = batches_made_with(item.id, performed_on) if result == "fail" else []
    with audit.change(actor, "equipment.calibrated", item, EQUIPMENT_FIELDS) as noted:
        if current and result == "pass":
            item.due_on, item.out_of_service = next_due_on, False
        elif current:
            item.out_of_service = True
        db.session.flush()
        noted.new.update({"calibration_id": calibration.id, "result": result, "performed_on": performed_on,
                          "performed_by": calibration.performed_by,
                          "certificate_number": calibration.certificate_number, "latest": current,
                          **({"batches_since": since} if since else {})})
    calibration.batches_since = since
    return calibration


def batches_made_with(equipment_id: int, day: date) -> list[str]:
    """Codes of the batches made with a piece from the start of `day` (the clinic's), oldest first."""
    start = start_of_clinic_day(day)
    return list(db.session.scalars(
        sa.select(Batch.code).join(BatchEquipment, BatchEquipment.batch_id == Batch.id)
        .where(BatchEquipment.equipment_id == equipment_id, Batch.compounded_at >= start)
        .order_by(Batch.compounded_at, Batch.id)))


def faults_at(batch: Batch) -> list[str]:
    """Why the equipment a batch was made with was not fit on the day it was made, as its calibration history
    now tells (a failed calibration recorded afterwards, dated on or before that day, with no pass between)."""
    day = clinic_today(batch.compounded_at)
    rows = db.session.execute(
        sa.select(BatchEquipment.code, Calibration.performed_on, Calibration.result, Calibration.id)
        .join(Calibration, Calibration.equipment_id == BatchEquipment.equipment_id)
        .where(BatchEquipment.batch_id == batch.id, Calibration.performed_on <= day)
        .order_by(BatchEquipment.code, Calibration.performed_on, Calibration.id)).all()
    last: dict[str, tuple] = {}
    for row in rows:
        last[row.code] = (row.result, row.performed_on)
    return [f"{code} had failed its calibration when {batch.code} was made (calibration of {on.isoformat()})"
            for code, (result, on) in last.items() if result == "fail"]


def unusable_reasons(item: Equipment, day: date, site_id: int) -> list[str]:
    """Why `item` may not be used at `site_id` on `day` (pure)."""
    reasons = []
    if not item.active:
        reasons.append(f"{item.code} is retired")
    if item.site_id != site_id:
        reasons.append(f"{item.code} is registered at another site")
    if item.out_of_service:
        reasons.append(f"{item.code} failed its last calibration and is out of service")
    if item.overdue_on(day):
        reasons.append(f"{item.code} ({item.name}) was due for calibration on {item.due_on.isoformat()}")
    return reasons


def site_has_equipment(site_id: int) -> bool:
    return db.session.scalar(sa.select(sa.exists().where(Equipment.site_id == site_id, Equipment.active))) is True


def checked_for_batch(equipment_ids: Iterable[int] | None, site_id: int, at: datetime) -> list[Equipment]:
    """The equipment a batch at `site_id` is made with, each usable on the day of `at` (409 naming each one that
    is not). Required (at least one) where the site has active equipment registered; optional elsewhere."""
    ids = []
    for value in equipment_ids or ():
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidInput("equipment_ids are equipment ids (whole numbers).", field="equipment_ids")
        if value not in ids:
            ids.append(value)
    if not ids:
        if site_has_equipment(site_id):
            raise InvalidInput("Scan or choose the equipment used (balance, hood...): this site's equipment is "
                               "registered.", field="equipment_ids")
        return []
    # Shared locks: a failed calibration recorded meanwhile waits for this batch (or this batch for it).
    found = {e.id: e for e in db.session.scalars(sa.select(Equipment).where(Equipment.id.in_(ids))
                                                 .with_for_update(read=True))}
    missing = [i for i in ids if i not in found]
    if missing:
        raise InvalidInput(f"No equipment {', '.join(map(str, missing))}.", field="equipment_ids")
    day = clinic_today(at)
    reasons = [r for i in ids for r in unusable_reasons(found[i], day, site_id)]
    if reasons:
        raise InvalidState("; ".join(reasons) + ".", field="equipment_ids")
    return [found[i] for i in ids]


def record_for_batch(batch: Batch, equipment: Iterable[Equipment]) -> list[BatchEquipment]:
    """Copy what a batch was made with onto its record (in the caller's transaction)."""
    rows = [BatchEquipment(batch_id=batch.id, equipment_id=e.id, code=e.code, kind=e.kind, name=e.name,
                           due_on=e.due_on) for e in equipment]
    db.session.add_all(rows)
    return rows
