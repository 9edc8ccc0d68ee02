"""API: equipment at the bench (balances, pipettes, hoods, thermometers, data loggers) and their calibrations."""

from flask import request
from flask_login import current_user

from ..models import Equipment
from ..pagination import paginate_entities, per_page_arg
from ..queries import equipment as reads
from ..queries.scope import site_codes
from ..services import equipment, sites
from ..services.clock import clinic_today
from ..services.errors import NotFound
from .schemas.equipment import (
    CalibrationCreateSchema,
    CalibrationRecordedSchema,
    CalibrationSchema,
    EquipmentCreateSchema,
    EquipmentQuerySchema,
    EquipmentSchema,
    EquipmentUpdateSchema,
)
from .scope import list_scope
from .views import answer, json_body, load, page_answer, route, shared


def _dump(item: Equipment, codes: dict[int, str], *, calibrations: bool = False) -> dict:
    today = clinic_today()
    reasons = equipment.unusable_reasons(item, today, item.site_id)
    data = shared(EquipmentSchema).dump(item)
    data.update(site=codes.get(item.site_id), state=reads.state_of(item, today), usable=not reasons,
                reasons=reasons)
    if calibrations:
        data["calibrations"] = shared(CalibrationSchema).dump(reads.all_calibrations(item.id), many=True)
    return data


def _visible(equipment_id: int) -> Equipment:
    """The piece, if it is at a site the caller may see; else 404 as for one that does not exist."""
    record = reads.equipment_record(equipment_id, sites.visible_site_ids(current_user))
    if record is None:
        raise NotFound("There is no such equipment.")
    return record.item


def _answer(equipment_id: int, status: int = 200):
    item = equipment.get_equipment(equipment_id)
    return answer(_dump(item, {item.site_id: sites.get_site(item.site_id).code}, calibrations=True), status)


@route("/equipment", permission="equipment.read",
       summary="List equipment at your sites (by site and code), filtered as on the equipment page",
       response=EquipmentSchema, many=True, query=EquipmentQuerySchema, errors=(404, 422))
def equipment_list():
    load(EquipmentQuerySchema, request.args.to_dict())
    query = reads.equipment_list_query(reads.EquipmentFilters.from_args(request.args), site_ids=list_scope())
    pagination = paginate_entities(query, Equipment.id, per_page=per_page_arg())
    codes = site_codes(None)
    return answer(page_answer([_dump(item, codes) for item in pagination.items], pagination))


@route("/equipment", "POST", permission="equipment.manage",
       summary="Register a piece of equipment at one of your sites (default: yours); 409 for a code taken by "
               "other equipment or a storage location; 403 at a site you do not belong to",
       body=EquipmentCreateSchema, response=EquipmentSchema, status=201, errors=(404, 409))
def equipment_create():
    data = load(EquipmentCreateSchema, json_body())
    item = equipment.create_equipment(current_user, **data)
    return _answer(item.id, 201)


@route("/equipment/<int:equipment_id>", permission="equipment.read",
       summary="One piece of equipment with its calibrations, newest first", response=EquipmentSchema)
def equipment_detail(equipment_id: int):
    return _answer(_visible(equipment_id).id)


@route("/equipment/<int:equipment_id>", "PATCH", permission="equipment.manage",
       summary="Rename, change the serial number, retire (active false) or bring back a piece of equipment",
       body=EquipmentUpdateSchema, response=EquipmentSchema, errors=(403,))
def equipment_update(equipment_id: int):
    item = _visible(equipment_id)
    changes = load(EquipmentUpdateSchema, json_body())
    values = {"name": item.name, "serial_number": item.serial_number, "active": item.active, **changes}
    equipment.update_equipment(current_user, item.id, **values)
    return _answer(item.id)


@route("/equipment/<int:equipment_id>/calibrations", "POST", permission="equipment.manage",
       summary="Record a calibration or certification: a pass sets the next due date, a fail takes the "
               "equipment out of service; 409 when a later one is already recorded",
       body=CalibrationCreateSchema, response=CalibrationRecordedSchema, status=201, errors=(409,))
def equipment_calibrate(equipment_id: int):
    item = _visible(equipment_id)
    data = load(CalibrationCreateSchema, json_body())
    calibration = equipment.record_calibration(current_user, item.id, **data)
    body = shared(CalibrationSchema).dump(calibration)
    body["equipment"] = _dump(equipment.get_equipment(item.id), {item.site_id: sites.get_site(item.site_id).code},
                              calibrations=True)
    return answer(body, 201)
