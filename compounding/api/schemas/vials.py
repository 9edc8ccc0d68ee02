"""Vials: one unit of a batch, its own code and status."""

from marshmallow import Schema, fields, validate

from ...models.vial import DOSES, VIAL_STATUSES
from .common import HoldSchema, Quantity


class VialSchema(Schema):
    id = fields.Integer()
    code = fields.String(metadata={"description": "<batch code>-NN"})
    number = fields.Integer()
    batch_id = fields.Integer()
    batch_code = fields.String()
    dose = fields.String(validate=validate.OneOf(DOSES))
    status = fields.String(validate=validate.OneOf(VIAL_STATUSES))
    status_reason = fields.String()
    volume_ml = Quantity(metadata={"description": "The fill"})
    remaining_ml = Quantity()
    legacy = fields.Boolean()
    punctured_at = fields.AwareDateTime(allow_none=True)
    in_use_until = fields.AwareDateTime(allow_none=True, metadata={
        "description": "A punctured multiple-dose vial: the end of its in-use period (never past the batch's BUD)"})
    holds = fields.List(fields.Nested(HoldSchema), metadata={"description": "Its own hold reasons standing"})
