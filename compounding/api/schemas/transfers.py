"""Transfers: stock sent from one site to another, line by line."""

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from ...limits import CODE_MAX, NOTE_MAX
from ...models.transfer import LINE_KINDS, TRANSFER_STATUSES
from ...services.transfer_lines import LINES_MAX
from .common import RECORD_ID, Quantity, reason_text


class TransferLineInSchema(Schema):
    """One thing to send: a lot and a quantity, a batch (its vials that can travel), or one vial."""

    lot_id = fields.Integer(strict=True, validate=RECORD_ID)
    quantity = Quantity(metadata={"type": "string", "format": "decimal", "description": "With lot_id"})
    batch_id = fields.Integer(strict=True, validate=RECORD_ID)
    vial_code = fields.String(validate=validate.Length(min=1, max=CODE_MAX), metadata={"example": "B2611270003-02"})

    @validates_schema
    def _one_item(self, data, **kwargs):
        named = [key for key in ("lot_id", "batch_id", "vial_code") if data.get(key) is not None]
        if len(named) != 1:
            raise ValidationError("Give one of lot_id (with quantity), batch_id or vial_code.", field_name="lot_id")
        if named == ["lot_id"] and data.get("quantity") is None:
            raise ValidationError("A lot line needs its quantity.", field_name="quantity")


class TransferCreateSchema(Schema):
    from_site_id = fields.Integer(required=True, strict=True, validate=RECORD_ID)
    to_site_id = fields.Integer(required=True, strict=True, validate=RECORD_ID)
    to_location_id = fields.Integer(load_default=None, allow_none=True, strict=True, validate=RECORD_ID, metadata={
        "description": "Where the destination puts what arrives (its default location when left out)"})
    lines = fields.List(fields.Nested(TransferLineInSchema), required=True,
                        validate=validate.Length(min=1, max=LINES_MAX))
    note = fields.String(load_default="", validate=validate.Length(max=NOTE_MAX))


class TransferDispatchSchema(Schema):
    scanned_codes = fields.List(fields.String(validate=validate.Length(max=CODE_MAX)), load_default=None,
                                allow_none=True, validate=validate.Length(max=LINES_MAX), metadata={
                                    "description": "The codes scanned out (every line's lot or vial code); "
                                                   "left out: the caller confirms every line"})


class TransferCountSchema(Schema):
    line_id = fields.Integer(required=True, strict=True, validate=RECORD_ID)
    received = Quantity(required=True, allow_zero=True)
    damaged = Quantity(load_default=None, allow_zero=True, allow_none=True)


class TransferReceiveSchema(Schema):
    lines = fields.List(fields.Nested(TransferCountSchema), load_default=None, allow_none=True,
                        validate=validate.Length(max=LINES_MAX), metadata={
                            "description": "Per line what arrived and, of that, what arrived damaged; "
                                           "left out: everything arrived as sent"})
    to_location_id = fields.Integer(load_default=None, allow_none=True, metadata={
        "description": "Where at the destination the stock goes, if not where the transfer planned (e.g. the "
                       "planned fridge has an open temperature excursion)"})


class TransferCancelSchema(Schema):
    reason = reason_text()


class TransferLineSchema(Schema):
    id = fields.Integer()
    kind = fields.String(validate=validate.OneOf(LINE_KINDS))
    code = fields.String(metadata={"description": "The lot's or the vial's code"})
    batch_code = fields.String(allow_none=True)
    quantity = Quantity()
    received = Quantity(allow_zero=True, allow_none=True)
    damaged = Quantity(allow_zero=True, allow_none=True)
    short = Quantity(allow_zero=True, allow_none=True, metadata={"description": "Sent but not received"})
    child_lot_code = fields.String(allow_none=True, metadata={"description": "A lot line: the lot made on arrival"})
    item_status = fields.String()
    location_code = fields.String(metadata={"description": "Where the item is now"})


class TransferSchema(Schema):
    id = fields.Integer()
    code = fields.String(metadata={"example": "T000001"})
    status = fields.String(validate=validate.OneOf(TRANSFER_STATUSES))
    from_site_id = fields.Integer()
    from_site_code = fields.String()
    to_site_id = fields.Integer()
    to_site_code = fields.String()
    to_location_code = fields.String(allow_none=True)
    note = fields.String()
    created_at = fields.DateTime()
    dispatched_at = fields.DateTime(allow_none=True)
    received_at = fields.DateTime(allow_none=True)
    cancelled_at = fields.DateTime(allow_none=True)
    cancel_reason = fields.String()
    lines = fields.List(fields.Nested(TransferLineSchema))


class TransferListItemSchema(Schema):
    id = fields.Integer()
    code = fields.String()
    status = fields.String()
    from_site_code = fields.String()
    to_site_code = fields.String()
    lines = fields.Integer()
    created_at = fields.DateTime()


class TransferQuerySchema(Schema):
    status = fields.String(validate=validate.OneOf(TRANSFER_STATUSES))
