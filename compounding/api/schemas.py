"""Marshmallow schemas: what the API accepts and answers (and what OpenAPI documents)."""

from decimal import Decimal

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

from ..models.ingredient import INGREDIENT_KINDS, STOCK_UNITS, STORAGE_CONDITIONS
from ..models.ledger import ADJUST_REASONS
from ..models.lot import LOT_STATUSES
from ..services.errors import InvalidInput
from ..services.expiry import is_expired, parse_expiry
from ..services.inventory import check_quantity
from ..services.stock_queries import LOT_SORTS


class Quantity(fields.Decimal):
    """A stock quantity: read by the services' rule (> 0, at most 3 decimals), answered as a string.

    Answers drop the database's trailing zeros ("250", "12.5"); `allow_zero` is for
    thresholds such as a reorder level.
    """

    def __init__(self, *, allow_zero: bool = False, **kwargs):
        kwargs.setdefault("metadata", {"type": "string", "format": "decimal", "example": "12.5"})
        super().__init__(as_string=True, **kwargs)
        self.allow_zero = allow_zero

    def _serialize(self, value, attr, obj, **kwargs):
        if value is None:
            return None
        return format(Decimal(value).normalize(), "f")

    def _deserialize(self, value, attr, data, **kwargs) -> Decimal:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ValidationError("Enter a number such as 12.5.")
        try:
            number = Decimal(str(value).strip())
        except ArithmeticError:
            raise ValidationError("Enter a number such as 12.5.") from None
        if self.allow_zero and number == 0:
            return Decimal("0")
        if self.allow_zero and number < 0:
            raise ValidationError("Enter zero or more.")
        try:
            return check_quantity(number)
        except InvalidInput as exc:
            raise ValidationError(exc.message) from None


class ExpiryDate(fields.Date):
    """`YYYY-MM-DD`, or a month-only `YYYY-MM` read as the month's last day (services.expiry)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str):
            raise ValidationError("Give a date as YYYY-MM-DD, or a month as YYYY-MM.")
        try:
            return parse_expiry(value)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None


class ErrorSchema(Schema):
    error = fields.String(required=True)
    details = fields.Raw(allow_none=True)


class IngredientSchema(Schema):
    id = fields.Integer(dump_only=True)
    name = fields.String(required=True, validate=validate.Length(min=1, max=120))
    kind = fields.String(required=True, validate=validate.OneOf(INGREDIENT_KINDS))
    unit = fields.String(required=True, validate=validate.OneOf(STOCK_UNITS))
    strength = fields.String(load_default="", validate=validate.Length(max=60))
    storage = fields.String(load_default="room", validate=validate.OneOf(STORAGE_CONDITIONS))
    gtins = fields.List(fields.String(validate=validate.Regexp(r"^\d{8,14}$")),
                        attribute="gtin_list", data_key="gtins", load_default=list)
    reorder_level = Quantity(allow_zero=True, load_default=Decimal("0"))
    active = fields.Boolean(dump_only=True)
    # Released, unexpired stock (ingredient_overview_query): answered, never accepted.
    on_hand = Quantity(dump_only=True)
    nearest_expiry = fields.Date(dump_only=True, allow_none=True)
    below_reorder = fields.Boolean(dump_only=True)


class IngredientUpdateSchema(Schema):
    """A partial update: fields left out keep their current values."""

    name = fields.String(validate=validate.Length(min=1, max=120))
    kind = fields.String(validate=validate.OneOf(INGREDIENT_KINDS))
    unit = fields.String(validate=validate.OneOf(STOCK_UNITS))
    strength = fields.String(validate=validate.Length(max=60))
    storage = fields.String(validate=validate.OneOf(STORAGE_CONDITIONS))
    gtins = fields.List(fields.String(validate=validate.Regexp(r"^\d{8,14}$")))
    reorder_level = Quantity(allow_zero=True)
    active = fields.Boolean()


class IngredientQuerySchema(Schema):
    class Meta:
        unknown = EXCLUDE

    q = fields.String(load_default="", validate=validate.Length(max=120),
                      metadata={"description": "Part of the name"})
    below_reorder = fields.Boolean(load_default=False)
    include_inactive = fields.Boolean(load_default=False)


class AuditEventSchema(Schema):
    id = fields.Integer(dump_only=True)
    occurred_at = fields.DateTime(dump_only=True)
    actor_id = fields.Integer(dump_only=True, allow_none=True)
    actor_name = fields.String(dump_only=True)
    action = fields.String(dump_only=True)
    entity_type = fields.String(dump_only=True)
    entity_id = fields.Integer(dump_only=True, allow_none=True)
    old_values = fields.Dict(dump_only=True, allow_none=True)
    new_values = fields.Dict(dump_only=True, allow_none=True)
    reason = fields.String(dump_only=True)
    prev_hash = fields.String(dump_only=True)
    hash = fields.String(dump_only=True)


class AuditEventQuerySchema(Schema):
    entity_type = fields.String(validate=validate.Length(min=1, max=40))
    entity_id = fields.Integer(validate=validate.Range(min=0))
    action = fields.String(validate=validate.Length(min=1, max=60),
                           metadata={"description": "An action or its prefix, e.g. `user.`"})


class LotSchema(Schema):
    """A lot as answered; its ingredient and signers come loaded with it (lazy="raise")."""

    id = fields.Integer()
    code = fields.String()
    ingredient_id = fields.Integer()
    ingredient_name = fields.String(attribute="ingredient.name")
    unit = fields.String(attribute="ingredient.unit")
    supplier = fields.String()
    lot_number = fields.String(attribute="supplier_lot_number")
    gtin = fields.String(allow_none=True)
    expiry_date = fields.Date(attribute="expires_on")
    expired = fields.Function(lambda lot: is_expired(lot.expires_on), metadata={"type": "boolean"})
    quantity_received = Quantity()
    remaining = Quantity()
    status = fields.String(metadata={"enum": list(LOT_STATUSES)})
    status_reason = fields.String()
    coa_reference = fields.String()
    location = fields.String()
    received_at = fields.DateTime()
    received_by = fields.Function(lambda lot: lot.received_by.display_name, metadata={"type": "string"})
    released_at = fields.DateTime(allow_none=True)
    released_by = fields.Function(
        lambda lot: lot.released_by.display_name if lot.released_by_id is not None else None,
        metadata={"type": "string", "nullable": True, "description": "The releasing pharmacist's name"})


class LotReceiveSchema(Schema):
    ingredient_id = fields.Integer(required=True, strict=True)
    supplier = fields.String(required=True, validate=validate.Length(min=1, max=120))
    lot_number = fields.String(required=True, validate=validate.Length(min=1, max=60))
    expiry_date = ExpiryDate(required=True, metadata={"description": "YYYY-MM-DD, or YYYY-MM for the "
                                                                       "month's last day"})
    quantity = Quantity(required=True)
    gtin = fields.String(load_default="", validate=validate.Length(max=14))
    coa_reference = fields.String(load_default="", validate=validate.Length(max=120))
    location = fields.String(load_default="", validate=validate.Length(max=120))


class LotReleaseSchema(Schema):
    password = fields.String(required=True, metadata={"description": "The signer's password"})


class LotRejectSchema(Schema):
    password = fields.String(required=True, metadata={"description": "The signer's password"})
    reason = fields.String(required=True, validate=validate.Length(min=1, max=2000))


class LotAdjustSchema(Schema):
    reason = fields.String(required=True, validate=validate.OneOf(ADJUST_REASONS))
    quantity = Quantity(required=True)
    direction = fields.String(load_default="out", validate=validate.OneOf(("in", "out")))
    note = fields.String(load_default="", validate=validate.Length(max=2000))


class LotQuerySchema(Schema):
    class Meta:
        unknown = EXCLUDE

    ingredient_id = fields.Integer()
    status = fields.String(validate=validate.OneOf(LOT_STATUSES))
    expiring_within_days = fields.Integer(validate=validate.Range(min=0, max=3650))
    expired_in_stock = fields.Boolean()
    q = fields.String(validate=validate.Length(max=120),
                      metadata={"description": "Part of our code, the supplier or its lot number"})
    sort = fields.String(validate=validate.OneOf(tuple(LOT_SORTS)))
