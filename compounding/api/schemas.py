"""Marshmallow schemas: what the API accepts and answers (and what OpenAPI documents)."""

from marshmallow import Schema, fields, validate

from ..models.ingredient import INGREDIENT_KINDS, STOCK_UNITS, STORAGE_CONDITIONS


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
    reorder_level = fields.Decimal(as_string=True, load_default="0", places=3,
                                   validate=validate.Range(min=0))
    active = fields.Boolean(dump_only=True)
