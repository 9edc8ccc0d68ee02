"""Time: now in UTC, and conversion to the clinic's time zone for people."""

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from flask import current_app


def utcnow() -> datetime:
    return datetime.now(UTC)


def clinic_zone() -> ZoneInfo:
    return ZoneInfo(current_app.config["CLINIC_TIMEZONE"])


def to_clinic(value: datetime) -> datetime:
    return value.astimezone(clinic_zone())


def clinic_today(now: datetime | None = None) -> date:
    return to_clinic(now or utcnow()).date()


def start_of_clinic_day(day: date) -> datetime:
    """The first instant of `day` in the clinic's zone, as UTC."""
    return datetime.combine(day, time.min, tzinfo=clinic_zone()).astimezone(UTC)


def end_of_clinic_day(day: date) -> datetime:
    """The first instant after `day` ends in the clinic's zone (an exclusive bound), as UTC."""
    return start_of_clinic_day(day + timedelta(days=1))
