"""Expiry, defined once: a lot is expired from the start of the day after its expiry date.

"Day" is the clinic's day (setting CLINIC_TIMEZONE). Every page, rule, API answer and
export asks this module, never the calendar directly.
"""

import calendar
import re
from datetime import date, datetime

import sqlalchemy as sa

from ..models.lot import expired_by
from .bounds import day_in_range, iso_day
from .clock import clinic_today, utcnow

_MONTH_ONLY = re.compile(r"^(\d{4})-(\d{1,2})$")


def last_day_of_month(year: int, month: int) -> date:
    return date(year, month, calendar.monthrange(year, month)[1])


EXPIRY_RANGE_MESSAGE = "Give an expiry between 1900 and 2100, as YYYY-MM-DD or YYYY-MM."
EXPIRY_MALFORMED_MESSAGE = "Give a real date as YYYY-MM-DD, or a month as YYYY-MM."


def parse_expiry(text: str) -> date:
    """Read `YYYY-MM-DD` or a month-only `YYYY-MM` (stored as the month's last day), within 1900-2100."""
    text = (text or "").strip()
    match = _MONTH_ONLY.match(text)
    if not match:
        return iso_day(text, EXPIRY_MALFORMED_MESSAGE, EXPIRY_RANGE_MESSAGE)
    try:
        day = last_day_of_month(int(match.group(1)), int(match.group(2)))
    except ValueError:
        raise ValueError(EXPIRY_MALFORMED_MESSAGE) from None
    if not day_in_range(day):
        raise ValueError(EXPIRY_RANGE_MESSAGE)
    return day


def last_usable_day(at: datetime | None = None) -> date:
    """Lots whose expiry date is on or after this clinic day are not expired at `at`."""
    return clinic_today(at or utcnow())


def is_expired(expires_on: date, at: datetime | None = None) -> bool:
    return expired_by(expires_on, last_usable_day(at))


def expired_clause(column, at: datetime | None = None) -> sa.ColumnElement[bool]:
    """The same rule as `is_expired`, as a SQL condition on an expiry-date column."""
    return column < last_usable_day(at)


def days_left(expires_on: date, at: datetime | None = None) -> int:
    return (expires_on - last_usable_day(at)).days
