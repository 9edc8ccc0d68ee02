"""Edge values: the days the record can hold, named once for every way in.

Forms, API schemas, query-string filters and the services ask this module, so a date in
the year 9999 is refused as malformed input (422) wherever it arrives, instead of
overflowing a sum of days later (a 500). Numbers are bounded by the services'
check_quantity, the schemas' Quantity and forms.Between; ids by MAX_RECORD_ID.
"""

import re
from datetime import date, datetime

from ..models._common import MAX_RECORD_ID
from .errors import InvalidInput

# A clinic's records (births, sessions, expiry dates, report ranges) fall well inside these;
# keeping a margin from the calendar's ends lets every "day + 1" and time-zone shift stay valid.
FIRST_DAY = date(1900, 1, 1)
LAST_DAY = date(2100, 12, 31)
DAY_MESSAGE = "Give a date between 1900 and 2100."
# Python also reads "20261127" and ISO week dates; a person never types a day so.
_ISO_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")

__all__ = ["DAY_MESSAGE", "FIRST_DAY", "LAST_DAY", "MAX_RECORD_ID", "check_day", "checked_text", "day_in_range",
           "iso_day", "read_day"]


def day_in_range(day: date) -> bool:
    if isinstance(day, datetime):
        day = day.date()
    return FIRST_DAY <= day <= LAST_DAY


def check_day(day: date, field: str | None = None) -> date:
    """`day`, or InvalidInput when it lies outside 1900-2100."""
    if not day_in_range(day):
        raise InvalidInput(DAY_MESSAGE, field=field)
    return day


def read_day(text: str | None) -> date | None:
    """A query string's day (YYYY-MM-DD): None when blank; ValueError when malformed or outside 1900-2100."""
    text = (text or "").strip()
    return iso_day(text, "Use a date such as 2026-11-27.") if text else None


def iso_day(text: str, malformed: str, out_of_range: str = DAY_MESSAGE) -> date:
    """`text` as YYYY-MM-DD within 1900-2100; ValueError(`malformed` or `out_of_range`) otherwise."""
    if not _ISO_DAY.match(text):
        raise ValueError(malformed)
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise ValueError(malformed) from None
    if not day_in_range(day):
        raise ValueError(out_of_range)
    return day


def checked_text(value, field: str, maximum: int, *, required: str = "") -> str:
    """`value` stripped, refused (422 naming `field`) when longer than `maximum` or, with `required`, empty.

    Never cut: forms and API schemas refuse the same length, so every way in says the same.
    """
    text = (value or "").strip()
    if required and not text:
        raise InvalidInput(required, field=field)
    if len(text) > maximum:
        raise InvalidInput(f"At most {maximum} characters.", field=field)
    return text
