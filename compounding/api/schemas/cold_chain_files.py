"""A data logger's file of readings: the upload, the import's answer, and the rows a refusal names."""

from marshmallow import Schema, fields

from ...models.site import TIMEZONE_MAX
from .common import ErrorSchema


class ReadingFileUploadSchema(Schema):
    """Documents the multipart body; the view reads `file` and `timezone` from the form itself."""

    file = fields.Raw(required=True, metadata={
        "type": "string", "format": "binary",
        "description": "The logger's CSV export: a header row (timestamp,temperature; optionally min,max), "
                       "then one reading a row, times in ISO 8601 with their offset"})
    timezone = fields.String(metadata={
        "maxLength": TIMEZONE_MAX,
        "description": "The file's time zone (IANA, e.g. Europe/Paris) when its times have no offset"})


class ExcursionRefSchema(Schema):
    id = fields.Integer()
    code = fields.String(metadata={"example": "E000001"})
    started_at = fields.DateTime()
    ended_at = fields.DateTime(allow_none=True)
    found_late = fields.Boolean()
    state = fields.String(metadata={"enum": ["out_of_range", "awaiting_decision", "decided"]})


class ReadingImportSchema(Schema):
    id = fields.Integer()
    location_id = fields.Integer()
    filename = fields.String()
    sha256 = fields.String()
    rows = fields.Integer(metadata={"description": "Readings in the file, repeats included"})
    imported = fields.Integer()
    duplicates = fields.Integer(metadata={"description": "Repeated in the file, or already stored from a logger"})
    first_at = fields.DateTime(allow_none=True)
    last_at = fields.DateTime(allow_none=True)
    excursions = fields.List(fields.Nested(ExcursionRefSchema),
                             metadata={"description": "The excursions the file's readings opened or joined"})


class RowErrorSchema(Schema):
    row = fields.Integer(metadata={"description": "The file's line number"})
    message = fields.String()


class ReadingFileErrorSchema(ErrorSchema):
    """A refusal; for a file that cannot be imported, every row at fault."""

    errors = fields.List(fields.Nested(RowErrorSchema))
