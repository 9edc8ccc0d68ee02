"""A location's month report: the query and the JSON summary (degrees and percentages as decimal strings)."""

from marshmallow import Schema, fields, validate

DECIMAL = {"type": "string", "format": "decimal", "example": "5.12"}


def _degrees(description: str = "") -> fields.Decimal:
    metadata = {**DECIMAL, "description": description} if description else DECIMAL
    return fields.Decimal(as_string=True, allow_none=True, metadata=metadata)


class MonthQuerySchema(Schema):
    month = fields.String(load_default=None, validate=validate.Regexp(
        r"^\d{4}-(0[1-9]|1[0-2])$", error="Write the month as YYYY-MM (e.g. 2026-03)."),
        metadata={"description": "Calendar month in the site's time zone (default: the current one)",
                  "example": "2026-03"})


class ReportLocationSchema(Schema):
    id = fields.Integer()
    code = fields.String()
    name = fields.String()
    kind = fields.String()
    site_id = fields.Integer()
    site_code = fields.String()
    timezone = fields.String()
    min_celsius = _degrees()
    max_celsius = _degrees()
    readings_per_day = fields.Integer()


class ReportExcursionSchema(Schema):
    id = fields.Integer()
    code = fields.String()
    started_at = fields.DateTime()
    ended_at = fields.DateTime(allow_none=True)
    low_celsius = _degrees()
    high_celsius = _degrees()
    range_min = _degrees()
    range_max = _degrees()
    found_late = fields.Boolean()
    state = fields.String(metadata={"enum": ["out_of_range", "awaiting_decision", "decided"]})


class MissedSchema(Schema):
    after_at = fields.DateTime()
    next_at = fields.DateTime(allow_none=True)
    hours = _degrees()


class DaySchema(Schema):
    day = fields.Date()
    readings = fields.Integer()
    low_celsius = _degrees()
    high_celsius = _degrees()
    out_of_range = fields.Integer()


class MonthReportSchema(Schema):
    location = fields.Nested(ReportLocationSchema)
    month = fields.String(metadata={"example": "2026-03"})
    start_at = fields.DateTime()
    end_at = fields.DateTime()
    readings = fields.Integer()
    out_of_range_readings = fields.Integer()
    low_celsius = _degrees()
    high_celsius = _degrees()
    mean_celsius = _degrees()
    percent_in_range = _degrees("Of the time the readings cover, one decimal")
    hours_in_range = _degrees()
    hours_out_of_range = _degrees()
    hours_not_covered = _degrees()
    excursions = fields.List(fields.Nested(ReportExcursionSchema))
    missed_readings = fields.List(fields.Nested(MissedSchema))
    days = fields.List(fields.Nested(DaySchema))
