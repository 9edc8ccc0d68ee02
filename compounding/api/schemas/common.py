"""What the API's schemas share: quantities, days, record ids, errors, holds."""

from decimal import Decimal

from marshmallow import Schema, ValidationError, fields, validate

from ...limits import REASON_MAX, SEARCH_MAX
from ...models._common import MAX_RECORD_ID
from ...models.hold import HOLD_KINDS
from ...queries.common import SEARCH_MESSAGE
from ...services.bounds import DAY_MESSAGE, day_in_range
from ...services.errors import InvalidInput
from ...services.expiry import parse_expiry
from ...services.inventory import check_quantity

# Record ids are database integers: a larger one names no record, and is refused here (422,
# naming the field) rather than overflowing the driver.
RECORD_ID = validate.Range(min=1, max=MAX_RECORD_ID, error="No record has this id.")


class Search(fields.String):
    """A search box's text, stripped before its length is checked, as the pages read it."""

    def __init__(self, **kwargs):
        super().__init__(validate=validate.Length(max=SEARCH_MAX, error=SEARCH_MESSAGE), **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        return super()._deserialize(value, attr, data, **kwargs).strip()


def signature(whose: str = "The signer's") -> fields.String:
    """A required e-signature: the password of the person `whose` names."""
    return fields.String(required=True, metadata={"description": f"{whose} password"})


def reason_text(maximum: int = REASON_MAX) -> fields.String:
    """A required reason, kept with the record's history."""
    return fields.String(required=True, validate=validate.Length(min=1, max=maximum))


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
        if not number.is_finite():  # NaN and sNaN compare with nothing, not even zero
            raise ValidationError("Enter a number such as 12.5.")
        if self.allow_zero and number == 0:
            return Decimal("0")
        if self.allow_zero and number < 0:
            raise ValidationError("Enter zero or more.")
        try:
            return check_quantity(number)
        except InvalidInput as exc:
            raise ValidationError(exc.message) from None


class _WithinDays:
    """A date or date-time field whose value lies within 1900-2100 (services.bounds)."""

    def _deserialize(self, value, attr, data, **kwargs):
        read = super()._deserialize(value, attr, data, **kwargs)
        if not day_in_range(read):
            raise ValidationError(DAY_MESSAGE)
        return read


class Day(_WithinDays, fields.Date):
    """`YYYY-MM-DD` within 1900-2100: later sums of days never leave the calendar."""


class Moment(_WithinDays, fields.AwareDateTime):
    """ISO 8601 with its offset, within 1900-2100."""


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


class HoldSchema(Schema):
    """A hold reason on a lot or batch; standing while `released_at` is null."""

    id = fields.Integer()
    kind = fields.String(metadata={"enum": list(HOLD_KINDS)})
    text = fields.String(metadata={"description": "How scans and refusals name it"})
    detail = fields.String()
    source_type = fields.String()
    source_id = fields.Integer(allow_none=True)
    placed_at = fields.DateTime()
    placed_by_id = fields.Integer(allow_none=True)
    released_at = fields.DateTime(allow_none=True)
    released_by_id = fields.Integer(allow_none=True)
    release_reason = fields.String()


class HoldReleaseSchema(Schema):
    hold = fields.String(required=True, validate=validate.OneOf(HOLD_KINDS))
    reason = reason_text()
    password = signature("The releasing pharmacist's")
