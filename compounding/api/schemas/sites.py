"""Sites and storage locations: answers, creation bodies, and how other answers name a place."""

from marshmallow import Schema, fields, post_dump, validate

from ...limits import NAME_MAX, NOTE_MAX
from ...models.site import LOCATION_CODE_MAX, LOCATION_KINDS, SITE_CODE_MAX, TIMEZONE_MAX
from ...services.site_reads import places
from .common import RECORD_ID


class LocationRefSchema(Schema):
    """How a lot, batch or vial answer names where it is."""

    id = fields.Integer()
    code = fields.String()
    name = fields.String()


class SiteRefSchema(Schema):
    id = fields.Integer()
    code = fields.String()


# Answered as a decimal string ("8.0"), as quantities are.
DEGREES = {"type": "string", "format": "decimal", "example": "8.0"}


class Celsius(fields.Decimal):
    def __init__(self, **kwargs):
        # The span (-90 to 60 °C) is the service's check, one message whichever way the value came.
        super().__init__(as_string=True, allow_none=True, load_default=None,
                         metadata={"description": "Degrees Celsius, -90 to 60, one decimal", "type": "string",
                                   "format": "decimal", "example": "8.0"}, **kwargs)


class LocationSchema(Schema):
    id = fields.Integer()
    site_id = fields.Integer()
    parent_id = fields.Integer(allow_none=True)
    code = fields.String()
    name = fields.String()
    kind = fields.String(metadata={"enum": list(LOCATION_KINDS)})
    is_default = fields.Boolean()
    active = fields.Boolean()
    min_celsius = fields.Decimal(places=1, as_string=True, allow_none=True, metadata=DEGREES)
    max_celsius = fields.Decimal(places=1, as_string=True, allow_none=True, metadata=DEGREES)
    readings_per_day = fields.Integer(metadata={"description": "Readings expected per day (a missed one shows red)"})


class SiteLocationSchema(LocationSchema):
    """A location as a site's answer lists it."""


class SiteSchema(Schema):
    id = fields.Integer()
    code = fields.String()
    name = fields.String()
    timezone = fields.String()
    address = fields.String()
    active = fields.Boolean()
    locations_count = fields.Integer(dump_only=True, metadata={"description": "How many storage locations it has"})
    locations = fields.List(fields.Nested(SiteLocationSchema), dump_only=True,
                            metadata={"description": "Its locations, as a tree depth-first (one site's answer)"})


class SiteCreateSchema(Schema):
    code = fields.String(required=True, validate=validate.Length(min=2, max=SITE_CODE_MAX))
    name = fields.String(required=True, validate=validate.Length(min=1, max=NAME_MAX))
    timezone = fields.String(load_default="", validate=validate.Length(max=TIMEZONE_MAX),
                             metadata={"description": "IANA zone (default: the clinic's)"})
    address = fields.String(load_default="", validate=validate.Length(max=NOTE_MAX))


class LocationCreateSchema(Schema):
    site_id = fields.Integer(required=True, strict=True, validate=RECORD_ID)
    code = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=LOCATION_CODE_MAX),
                         metadata={"description": "Default: the next LOC number"})
    name = fields.String(required=True, validate=validate.Length(min=1, max=NAME_MAX))
    kind = fields.String(required=True, validate=validate.OneOf(LOCATION_KINDS))
    parent_id = fields.Integer(load_default=None, allow_none=True, strict=True, validate=RECORD_ID)
    min_celsius = Celsius()
    max_celsius = Celsius()
    readings_per_day = fields.Integer(
        load_default=None, allow_none=True, strict=True, validate=validate.Range(1, 96),
        metadata={"description": "The reading schedule: readings expected per day, 1 to 96 (default 2)"})


class PlacedSchema(Schema):
    """Where a lot or batch is: `storage_location: {id, code, name}` and `site: {id, code}`, read for a
    whole page of answers in one statement. (A lot's `location` stays the free text typed at receipt.)"""

    location_id = fields.Integer(dump_only=True)
    site_id = fields.Integer(dump_only=True)
    # Filled in after the dump (below): the answered objects carry ids, not the rows they name.
    storage_location = fields.Nested(LocationRefSchema, dump_only=True, attribute="_answered_location")
    site = fields.Nested(SiteRefSchema, dump_only=True, attribute="_answered_site")

    @post_dump(pass_collection=True)
    def _add_places(self, data, many, **kwargs):
        rows = data if many else [data]
        found = places(row.get("location_id") for row in rows)
        for row in rows:
            place = found.get(row.get("location_id"), {"location": None, "site": None})
            row.update(storage_location=place["location"], site=place["site"])
        return data
