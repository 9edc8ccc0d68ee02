"""Time: now in UTC, and conversion to the clinic's time zone for people."""

from datetime import UTC, date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo

from flask import current_app


def utcnow() -> datetime:
    return datetime.now(UTC)


def clinic_zone() -> ZoneInfo:
    return ZoneInfo(current_app.config["CLINIC_TIMEZONE"])


def to_clinic(value: datetime, zone: tzinfo | None = None) -> datetime:
    """`value` in the clinic's time zone (or in `zone`, for a rule judged without the application)."""
    return value.astimezone(zone or clinic_zone())


def clinic_today(now: datetime | None = None, zone: tzinfo | None = None) -> date:
    return to_clinic(now or utcnow(), zone).date()


def start_of_clinic_day(day: date, zone: tzinfo | None = None) -> datetime:
    """The first instant of `day` in the clinic's zone (or `zone`), as UTC."""
    return datetime.combine(day, time.min, tzinfo=zone or clinic_zone()).astimezone(UTC)


def end_of_clinic_day(day: date, zone: tzinfo | None = None) -> datetime:
    """The first instant after `day` ends in the clinic's zone (an exclusive bound), as UTC."""
    return start_of_clinic_day(day + timedelta(days=1), zone)
