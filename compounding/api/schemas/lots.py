"""Lots: receipt, release, rejection, adjustment, the list."""

from marshmallow import EXCLUDE, Schema, fields, validate

from ...limits import LABEL_MAX, NAME_MAX, NOTE_MAX, REASON_MAX
from ...models.ledger import ADJUST_REASONS
from ...models.lot import LOT_STATUSES
from ...queries.lots import LOT_SORTS
from ...services.expiry import is_expired
from .common import RECORD_ID, ExpiryDate, HoldSchema, Quantity, Search, reason_text, signature
from .sites import PlacedSchema


class LotRefSchema(Schema):
    """How every answer names a lot: our code and status, the supplier's lot number and expiry."""

    id = fields.Integer()
    code = fields.String()
    status = fields.String(metadata={"enum": list(LOT_STATUSES)})
    supplier = fields.String()
    lot_number = fields.String(attribute="supplier_lot_number")
    expiry_date = fields.Date(attribute="expires_on")


class LotStockSchema(LotRefSchema):
    """What a lot is and what is left of it: as a trace shows it, and the start of the lot's own answer."""

    status_reason = fields.String()
    ingredient_id = fields.Integer()
    ingredient_name = fields.String(attribute="ingredient.name")
    unit = fields.String(attribute="ingredient.unit")
    quantity_received = Quantity()
    remaining = Quantity()


class CertificateSchema(Schema):
    """The certificate of analysis a lot's release rests on (its own, or the lot's it was split from)."""

    document_id = fields.Integer()
    filename = fields.String()
    sha256 = fields.String(metadata={"description": "Of the stored bytes, hex"})


class LotSchema(PlacedSchema, LotStockSchema):
    """A lot as answered; its ingredient and signers come loaded with it (lazy="raise")."""

    gtin = fields.String(allow_none=True)
    expired = fields.Function(lambda lot: is_expired(lot.expires_on), metadata={"type": "boolean"})
    coa_reference = fields.String()
    location = fields.String(metadata={"description": "Where in its storage location (a shelf, a box), as typed"})
    received_at = fields.DateTime()
    received_by = fields.Function(lambda lot: lot.received_by.display_name, metadata={"type": "string"})
    released_at = fields.DateTime(allow_none=True)
    released_by = fields.Function(
        lambda lot: lot.released_by.display_name if lot.released_by_id is not None else None,
        metadata={"type": "string", "nullable": True, "description": "The releasing pharmacist's name"})
    released_without_coa_reason = fields.String(metadata={
        "description": "Why it was released with no certificate of analysis attached (empty when one was)"})
    holds = fields.List(fields.Nested(HoldSchema), dump_only=True,
                        metadata={"description": "Every hold reason, standing or released (one lot's answer only)"})
    certificate = fields.Nested(CertificateSchema, allow_none=True, dump_only=True, metadata={
        "description": "The certificate of analysis attached, not withdrawn; null when none (one lot's answer "
                       "only)"})


class LotReceiveSchema(Schema):
    ingredient_id = fields.Integer(required=True, strict=True, validate=RECORD_ID)
    supplier = fields.String(required=True, validate=validate.Length(min=1, max=NAME_MAX))
    lot_number = fields.String(required=True, validate=validate.Length(min=1, max=LABEL_MAX))
    expiry_date = ExpiryDate(required=True, metadata={"description": "YYYY-MM-DD, or YYYY-MM for the "
                                                                       "month's last day"})
    quantity = Quantity(required=True)
    gtin = fields.String(load_default="", validate=validate.Length(max=14))
    coa_reference = fields.String(load_default="", validate=validate.Length(max=NAME_MAX))
    location = fields.String(load_default="", validate=validate.Length(max=NAME_MAX),
                             metadata={"description": "Where in the location (a shelf, a box), as free text"})
    location_id = fields.Integer(load_default=None, allow_none=True, strict=True, validate=RECORD_ID,
                                 metadata={"description": "The storage location (default: your site's default)"})


class LotReleaseSchema(Schema):
    password = signature()
    reason = fields.String(load_default="", validate=validate.Length(max=REASON_MAX), metadata={
        "description": "Why the lot is released without a certificate of analysis: required (422 naming `reason`) "
                       "when none is attached to the lot or the lot it was split from; ignored when one is"})


class LotRejectSchema(Schema):
    password = signature()
    reason = reason_text()


class LotAdjustSchema(Schema):
    reason = fields.String(required=True, validate=validate.OneOf(ADJUST_REASONS))
    quantity = Quantity(required=True)
    direction = fields.String(load_default="out", validate=validate.OneOf(("in", "out")))
    note = fields.String(load_default="", validate=validate.Length(max=NOTE_MAX))
    password = fields.String(load_default=None, allow_none=True, metadata={
        "description": "A pharmacist's password: required to raise stock (direction `in`)"})


class LotQuerySchema(Schema):
    class Meta:
        unknown = EXCLUDE

    ingredient_id = fields.Integer(validate=RECORD_ID)
    status = fields.String(validate=validate.OneOf(LOT_STATUSES))
    expiring_within_days = fields.Integer(validate=validate.Range(min=0, max=3650))
    expired_in_stock = fields.Boolean()
    q = Search(metadata={"description": "Part of our code, the supplier or its lot number"})
    sort = fields.String(validate=validate.OneOf(tuple(LOT_SORTS)))
