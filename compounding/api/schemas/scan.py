"""The scan station: a scanned code and what it names."""

from marshmallow import Schema, fields, validate

from ...limits import SCAN_MAX
from ...models.equipment import EQUIPMENT_KINDS
from .common import Quantity


class ScanQuerySchema(Schema):
    code = fields.String(required=True, validate=validate.Length(min=1, max=SCAN_MAX))


class ScanLotRefSchema(Schema):
    id = fields.Integer()
    code = fields.String()
    status = fields.String()
    expiry_date = fields.Date(metadata={"description": "the lot's recorded expiry, to set beside the barcode's"})


class ScanStoredSchema(Schema):
    lots = fields.Integer()
    batches = fields.Integer()
    vials = fields.Integer()


class ScanResultSchema(Schema):
    kind = fields.String(required=True,
                         validate=validate.OneOf(["batch", "vial", "lot", "location", "equipment", "gs1",
                                                  "unknown"]))
    usable = fields.Boolean(required=True)
    reasons = fields.List(fields.String(), required=True)
    received = fields.String(metadata={"description": "what arrived, control characters made visible"})
    id = fields.Integer()
    code = fields.String()
    status = fields.String()
    formula = fields.String()
    ingredient = fields.String()
    beyond_use_at = fields.AwareDateTime()
    remaining_volume_ml = Quantity()
    remaining = Quantity()
    expiry_date = fields.Date(allow_none=True)
    gtin = fields.String(allow_none=True)
    lot_number = fields.String(allow_none=True)
    serial = fields.String(allow_none=True)
    ingredient_id = fields.Integer(allow_none=True)
    lot = fields.Nested(ScanLotRefSchema, allow_none=True)
    error = fields.String()
    # A vial: its batch, dose, volume left, and for a punctured multiple-dose vial its deadline.
    batch_id = fields.Integer()
    batch_code = fields.String(allow_none=True)
    batch_status = fields.String()
    dose = fields.String()
    remaining_ml = Quantity()
    in_use_until = fields.AwareDateTime(allow_none=True, metadata={
        "description": "A punctured multiple-dose vial: usable until then (never past its batch's BUD)"})
    first_punctured = fields.AwareDateTime(allow_none=True)
    site = fields.String(metadata={"description": "The code of the site where the item is (all that is said of an "
                                                  "item at a site the caller may not see)"})
    # A storage location: its name, kind and what is stored there.
    name = fields.String()
    location_kind = fields.String(metadata={"enum": ["room", "cabinet", "fridge", "freezer"]})
    stored = fields.Nested(ScanStoredSchema)
    # A piece of equipment: its kind and calibration due date (usable: at the bench today, where the caller acts).
    equipment_kind = fields.String(metadata={"enum": list(EQUIPMENT_KINDS)})
    due_on = fields.Date(metadata={"description": "Equipment: its calibration or certification is due that day"})
