"""Equipment at the bench: answers, registration, calibrations, changes, the list's filters."""

from marshmallow import EXCLUDE, Schema, fields, validate

from ...limits import CODE_MAX, NAME_MAX, NOTE_MAX
from ...models.equipment import CALIBRATION_RESULTS, EQUIPMENT_KINDS
from ...queries.equipment import EQUIPMENT_STATES
from .common import RECORD_ID, Day, Search


class CalibrationSchema(Schema):
    """One calibration or certification; `next_due_on` is the due date it set (a pass) or left (a fail)."""

    id = fields.Integer()
    equipment_id = fields.Integer()
    performed_on = fields.Date()
    result = fields.String(metadata={"enum": list(CALIBRATION_RESULTS)})
    next_due_on = fields.Date()
    performed_by = fields.String()
    certificate_number = fields.String()
    note = fields.String()
    recorded_by_id = fields.Integer(allow_none=True)
    recorded_at = fields.DateTime()


class EquipmentSchema(Schema):
    """A piece of equipment; `state` and `usable`, `reasons` are judged today at its own site."""

    id = fields.Integer()
    code = fields.String(metadata={"example": "BAL-01"})
    kind = fields.String(metadata={"enum": list(EQUIPMENT_KINDS)})
    name = fields.String()
    serial_number = fields.String()
    site_id = fields.Integer()
    site = fields.String(dump_only=True, metadata={"description": "The site's code"})
    due_on = fields.Date(metadata={"description": "Usable until this day included"})
    out_of_service = fields.Boolean(metadata={"description": "A failed calibration, until a passing one"})
    active = fields.Boolean(metadata={"description": "False: retired"})
    created_at = fields.DateTime()
    state = fields.String(dump_only=True, metadata={"enum": list(EQUIPMENT_STATES)})
    usable = fields.Boolean(dump_only=True)
    reasons = fields.List(fields.String(), dump_only=True,
                          metadata={"description": "Why it may not be used at the bench today (empty: usable)"})
    calibrations = fields.List(fields.Nested(CalibrationSchema), dump_only=True,
                               metadata={"description": "Newest first (one piece's answer only)"})


class CalibrationRecordedSchema(CalibrationSchema):
    """The calibration as recorded, and the equipment as it now stands."""

    equipment = fields.Nested(EquipmentSchema)


class EquipmentCreateSchema(Schema):
    code = fields.String(required=True, validate=validate.Length(min=1, max=CODE_MAX),
                         metadata={"description": "As on its label: upper-case letters, digits, hyphens (BAL-01)"})
    kind = fields.String(required=True, validate=validate.OneOf(EQUIPMENT_KINDS))
    due_on = Day(required=True, metadata={"description": "When its calibration or certification is due, "
                                                         "YYYY-MM-DD"})
    site_id = fields.Integer(load_default=None, allow_none=True, strict=True, validate=RECORD_ID,
                             metadata={"description": "Default: your site"})
    name = fields.String(load_default="", validate=validate.Length(max=NAME_MAX),
                         metadata={"description": "Default: the code"})
    serial_number = fields.String(load_default="", validate=validate.Length(max=NAME_MAX))


class EquipmentUpdateSchema(Schema):
    """A partial change: fields left out keep their values (the due date moves only with a calibration)."""

    name = fields.String(validate=validate.Length(min=1, max=NAME_MAX))
    serial_number = fields.String(validate=validate.Length(max=NAME_MAX))
    active = fields.Boolean(metadata={"description": "False retires it"})


class CalibrationCreateSchema(Schema):
    performed_on = Day(required=True, metadata={"description": "The day it was done (not in the future)"})
    result = fields.String(required=True, validate=validate.OneOf(CALIBRATION_RESULTS),
                           metadata={"description": "A fail takes the equipment out of service"})
    next_due_on = Day(load_default=None, allow_none=True,
                      metadata={"description": "Required for a pass: after performed_on"})
    performed_by = fields.String(load_default="", validate=validate.Length(max=NAME_MAX))
    certificate_number = fields.String(load_default="", validate=validate.Length(max=NAME_MAX))
    note = fields.String(load_default="", validate=validate.Length(max=NOTE_MAX))


class EquipmentQuerySchema(Schema):
    """The list page's filters (queries.equipment.EquipmentFilters), checked before use."""

    class Meta:
        unknown = EXCLUDE

    kind = fields.String(validate=validate.OneOf(EQUIPMENT_KINDS))
    state = fields.String(validate=validate.OneOf(list(EQUIPMENT_STATES)),
                          metadata={"description": "usable, due_soon (within 30 days), overdue, out_of_service, "
                                                   "retired"})
    q = Search(metadata={"description": "Part of the code or name"})
    site_id = fields.Integer(validate=RECORD_ID, metadata={"description": "One of your sites"})


class BatchEquipmentSchema(Schema):
    """A piece a batch was made with, as copied onto its record at compounding."""

    id = fields.Integer(attribute="equipment_id", metadata={"description": "The equipment's id"})
    code = fields.String()
    kind = fields.String(metadata={"enum": list(EQUIPMENT_KINDS)})
    name = fields.String()
    due_on = fields.Date(metadata={"description": "Its due date when the batch was made"})
