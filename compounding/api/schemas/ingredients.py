"""Ingredients: what the API accepts and answers."""

from decimal import Decimal

from marshmallow import EXCLUDE, Schema, fields, validate

from ...limits import LABEL_MAX, NAME_MAX
from ...models.ingredient import INGREDIENT_KINDS, STOCK_UNITS, STORAGE_CONDITIONS
from ...services.ingredients import LEGACY_LIGHT_STORAGE
from .common import Quantity, Search

STORAGE_DESCRIPTION = (f"A temperature: {', '.join(STORAGE_CONDITIONS)}. The earlier value "
                       f"`{LEGACY_LIGHT_STORAGE}` is still read, as `room` with `protect_from_light: true`.")


def storage_field(**kwargs) -> fields.String:
    """Storage as a temperature; the first tranche's light value is still accepted (the service maps it)."""
    kwargs.setdefault("metadata", {"enum": list(STORAGE_CONDITIONS), "description": STORAGE_DESCRIPTION})
    return fields.String(validate=validate.OneOf((*STORAGE_CONDITIONS, LEGACY_LIGHT_STORAGE)), **kwargs)


class IngredientSchema(Schema):
    id = fields.Integer(dump_only=True)
    name = fields.String(required=True, validate=validate.Length(min=1, max=NAME_MAX))
    kind = fields.String(required=True, validate=validate.OneOf(INGREDIENT_KINDS))
    unit = fields.String(required=True, validate=validate.OneOf(STOCK_UNITS))
    strength = fields.String(load_default="", validate=validate.Length(max=LABEL_MAX))
    storage = storage_field(load_default="room")
    protect_from_light = fields.Boolean(load_default=False)
    sterile = fields.Boolean(load_default=False, metadata={"description": "Supplied sterile"})
    vehicle = fields.Boolean(load_default=False, metadata={
        "description": "A pure vehicle (water for injection, sodium chloride 0.9 %): not named on labels as a drug"})
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

    name = fields.String(validate=validate.Length(min=1, max=NAME_MAX))
    kind = fields.String(validate=validate.OneOf(INGREDIENT_KINDS))
    unit = fields.String(validate=validate.OneOf(STOCK_UNITS))
    strength = fields.String(validate=validate.Length(max=LABEL_MAX))
    storage = storage_field()
    protect_from_light = fields.Boolean()
    sterile = fields.Boolean()
    vehicle = fields.Boolean()
    gtins = fields.List(fields.String(validate=validate.Regexp(r"^\d{8,14}$")))
    reorder_level = Quantity(allow_zero=True)
    active = fields.Boolean()


class IngredientQuerySchema(Schema):
    class Meta:
        unknown = EXCLUDE

    q = Search(load_default="", metadata={"description": "Part of the name"})
    below_reorder = fields.Boolean(load_default=False)
    include_inactive = fields.Boolean(load_default=False)
