"""The cold chain: readings of a location's thermometer, the excursions they open, the pharmacist's decision."""

from decimal import Decimal

from marshmallow import Schema, ValidationError, fields, validate

from ...limits import CODE_MAX, NOTE_MAX
from ...models.cold_chain import DECISIONS, EXCURSION_ITEM_TYPES, READING_SOURCES
from ...services import cold_chain
from ...services.bounds import DAY_MESSAGE, day_in_range
from ...services.errors import InvalidInput
from .common import RECORD_ID, Moment, reason_text, signature
from .sites import DEGREES

EXCURSION_STATES = ("out_of_range", "awaiting_decision", "decided")
# A decision names each item by its code; an excursion holds what one location stores.
DECIDED_ITEMS_MAX = 1000
_MOMENT_DOC = {"type": "string", "format": "date-time", "example": "2026-12-07T08:00:00+01:00",
               "description": "ISO 8601 with its UTC offset (Z for UTC)"}


class Degrees(fields.Field):
    """Degrees Celsius, read by the service's rule (-90 to 60, two decimals; a number or its text), answered as
    a decimal string with one decimal, or two where the thermometer gave them ("8.0", "12.25")."""

    def __init__(self, **kwargs):
        kwargs.setdefault("metadata", {**DEGREES, "description": "Degrees Celsius, -90 to 60"})
        super().__init__(**kwargs)

    def _serialize(self, value, attr, obj, **kwargs):
        if value is None:
            return None
        value = Decimal(value).quantize(cold_chain.TWO_PLACES)
        tenths = value.quantize(Decimal("0.1"))
        return format(tenths if tenths == value else value, "f")

    def _deserialize(self, value, attr, data, **kwargs) -> Decimal | None:
        if isinstance(value, list | dict):
            raise ValidationError("Give the temperature as a number, e.g. 5.5.")
        try:
            return cold_chain.checked_celsius(value, field_name=attr, required=self.required)
        except InvalidInput as exc:
            raise ValidationError(exc.message) from None


class ReadingMoment(fields.String):
    """When something was measured or ends: the service's rule (an offset is required), within 1900-2100.
    Loaded as the text given, so the service keeps the offset it was written with."""

    def __init__(self, **kwargs):
        kwargs.setdefault("metadata", _MOMENT_DOC)
        super().__init__(validate=validate.Length(max=64), **kwargs)

    def _deserialize(self, value, attr, data, **kwargs) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            moment, _ = cold_chain.parse_moment(text, field_name=attr)
        except InvalidInput as exc:
            raise ValidationError(exc.message) from None
        except OverflowError:  # year 1 or 9999 moved to UTC leaves the calendar
            raise ValidationError(DAY_MESSAGE) from None
        if not day_in_range(moment):
            raise ValidationError(DAY_MESSAGE)
        return text


class ReadingCreateSchema(Schema):
    measured_at = ReadingMoment(required=True)
    celsius = Degrees(required=True)
    source = fields.String(required=True, validate=validate.OneOf(READING_SOURCES),
                           metadata={"description": "A sensor's token sends `sensor`"})
    min_celsius = Degrees(load_default=None, allow_none=True,
                          metadata={**DEGREES, "description": "A min/max thermometer's minimum since its reset"})
    max_celsius = Degrees(load_default=None, allow_none=True,
                          metadata={**DEGREES, "description": "A min/max thermometer's maximum since its reset"})
    note = fields.String(load_default="", validate=validate.Length(max=NOTE_MAX))


class ReadingQuerySchema(Schema):
    start = Moment(data_key="from", metadata={"description": "Readings measured at or after this moment"})
    end = Moment(data_key="to", metadata={"description": "Readings measured at or before this moment"})


class PlaceRefSchema(Schema):
    id = fields.Integer()
    code = fields.String()


class ExcursionBriefSchema(Schema):
    """An excursion as a reading's answer names it."""

    id = fields.Integer()
    code = fields.String(metadata={"example": "E000001"})
    started_at = fields.AwareDateTime()
    ended_at = fields.AwareDateTime(allow_none=True, metadata={"description": "The first reading back in range"})
    low_celsius = Degrees()
    high_celsius = Degrees()
    state = fields.String(validate=validate.OneOf(EXCURSION_STATES))
    held = fields.Integer(metadata={"description": "How many lots, batches and vials it holds"})


class ReadingSchema(Schema):
    id = fields.Integer()
    location = fields.Nested(PlaceRefSchema)
    measured_at = fields.String(metadata={**_MOMENT_DOC, "description": "As given, with its offset"})
    celsius = Degrees()
    min_celsius = Degrees(allow_none=True)
    max_celsius = Degrees(allow_none=True)
    source = fields.String(validate=validate.OneOf(READING_SOURCES))
    in_range = fields.Boolean()
    note = fields.String()
    excursion_id = fields.Integer(allow_none=True)
    recorded_at = fields.AwareDateTime()


class ReadingRecordedSchema(ReadingSchema):
    excursion = fields.Nested(ExcursionBriefSchema, allow_none=True,
                              metadata={"description": "The excursion it opened or joined; null in range"})


class ExcursionSchema(ExcursionBriefSchema):
    location = fields.Nested(PlaceRefSchema)
    site = fields.Nested(PlaceRefSchema)
    range_min = Degrees(allow_none=True, metadata={**DEGREES, "description": "The range it was judged against"})
    range_max = Degrees(allow_none=True, metadata=DEGREES)
    source = fields.String()
    held_at = fields.AwareDateTime()
    found_late = fields.Boolean(metadata={"description": "Recorded after the fact: see uses_for_review"})
    decided_at = fields.AwareDateTime(allow_none=True)


class ExcursionItemSchema(Schema):
    id = fields.Integer()
    kind = fields.String(validate=validate.OneOf(EXCURSION_ITEM_TYPES))
    code = fields.String()
    status = fields.String(metadata={"description": "The lot's, batch's or vial's status now"})
    decision = fields.String(allow_none=True, validate=validate.OneOf(DECISIONS))
    reason = fields.String()
    decided_at = fields.AwareDateTime(allow_none=True)
    use_by_before = fields.AwareDateTime(allow_none=True)
    use_by_after = fields.AwareDateTime(allow_none=True)


class UseForReviewSchema(Schema):
    kind = fields.String(validate=validate.OneOf(("session", "batch")),
                         metadata={"description": "session: a treatment from a held batch or vial; batch: "
                                                  "compounded from a held lot"})
    at = fields.AwareDateTime()
    item_code = fields.String(metadata={"description": "The held item it was made from"})
    session_id = fields.Integer(allow_none=True)
    patient_id = fields.Integer(allow_none=True, metadata={"description": "Null for those who may not see "
                                                                          "patients"})
    voided = fields.Boolean()
    batch_code = fields.String()
    vial_code = fields.String()


class ExcursionDetailSchema(ExcursionSchema):
    items = fields.List(fields.Nested(ExcursionItemSchema))
    uses_for_review = fields.List(fields.Nested(UseForReviewSchema), metadata={
        "description": "Uses of the held items between the excursion's start and the hold"})


class ExcursionQuerySchema(Schema):
    state = fields.String(validate=validate.OneOf(EXCURSION_STATES))
    site_id = fields.Integer(validate=RECORD_ID)
    location_id = fields.Integer(validate=RECORD_ID)


class DecisionSchema(Schema):
    decision = fields.String(required=True, validate=validate.OneOf(DECISIONS))
    reason = reason_text()
    password = signature("The deciding pharmacist's")
    items = fields.List(fields.String(validate=validate.Length(min=1, max=CODE_MAX)), load_default=None,
                        allow_none=True, validate=validate.Length(max=DECIDED_ITEMS_MAX),
                        metadata={"description": "The held items' codes; left out: every undecided item"})
    beyond_use_at = ReadingMoment(load_default=None, allow_none=True, metadata={
        **_MOMENT_DOC, "description": "keep_shortened: the new, earlier use-by, with its offset"})
