"""A monitored location's month (DESIGN 10.5): its readings, time in range, excursions, missed readings.

Read by the report page, its chart and workbook, and the API. The month is a calendar month in
the location's SITE's time zone (a fridge in Paris has its March from 1 March 00:00 Paris time,
23 hours shorter than 31 days when the clocks go forward). Columns are read as rows, never as
ORM objects: a fridge read every 15 minutes has 2,976 readings in a 31-day month.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from ..extensions import db
from ..models import Excursion, Location, Site, TemperatureReading
from ..services.clock import utcnow
from ..services.cold_chain import overdue_after
from ..services.errors import InvalidInput, NotFound
from ..services.site_filters import SiteIds

TWO_PLACES, ONE_PLACE = Decimal("0.01"), Decimal("0.1")
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


@dataclass(frozen=True)
class ReportLocation:
    id: int
    code: str
    name: str
    kind: str
    site_id: int
    site_code: str
    site_name: str
    zone: ZoneInfo
    min_celsius: Decimal | None
    max_celsius: Decimal | None
    readings_per_day: int
    created_at: datetime


@dataclass(frozen=True)
class ReportExcursion:
    """An excursion that overlaps the month (it may have started before or end after it)."""

    id: int
    started_at: datetime
    ended_at: datetime | None
    low_celsius: Decimal
    high_celsius: Decimal
    range_min: Decimal | None
    range_max: Decimal | None
    found_late: bool
    decided_at: datetime | None

    @property
    def code(self) -> str:
        return f"E{self.id:06d}"

    @property
    def state(self) -> str:
        if self.ended_at is None:
            return "out_of_range"
        return "decided" if self.decided_at is not None else "awaiting_decision"


@dataclass(frozen=True)
class MissedReadings:
    """A gap longer than the schedule allows: from the reading before it to the next one (None: none yet)."""

    after_at: datetime
    next_at: datetime | None
    length: timedelta


@dataclass(frozen=True)
class DayFigures:
    day: date
    readings: int
    low: Decimal | None
    high: Decimal | None
    out_of_range: int


@dataclass
class MonthReport:
    """One location's calendar month in its site's zone. `readings` are rows (measured_at, celsius, source,
    in_range, excursion_id) in time order; times are UTC, shown in `location.zone`."""

    location: ReportLocation
    year: int
    month: int
    start_at: datetime  # the month's first instant (UTC)
    end_at: datetime  # the next month's first instant (UTC, exclusive)
    readings: list = field(default_factory=list)
    low: Decimal | None = None
    high: Decimal | None = None
    mean: Decimal | None = None
    in_range_time: timedelta = timedelta(0)
    out_of_range_time: timedelta = timedelta(0)
    excursions: list[ReportExcursion] = field(default_factory=list)
    missed: list[MissedReadings] = field(default_factory=list)
    days: list[DayFigures] = field(default_factory=list)
    overdue_after: timedelta = timedelta(hours=18)
    # The end of the time the report judges: the month's end, or now for the current month.
    until: datetime | None = None

    @property
    def count(self) -> int:
        return len(self.readings)

    @property
    def out_of_range_readings(self) -> int:
        return sum(1 for r in self.readings if not r.in_range)

    @property
    def covered_time(self) -> timedelta:
        return self.in_range_time + self.out_of_range_time

    @property
    def month_length(self) -> timedelta:
        return self.end_at - self.start_at

    @property
    def uncovered_time(self) -> timedelta:
        """The part of the month so far that no pair of readings spans (before the first, after the last);
        the days still to come are not counted."""
        until = min(self.until or self.end_at, self.end_at)
        return max(until - self.start_at - self.covered_time, timedelta(0))

    @property
    def percent_in_range(self) -> Decimal | None:
        """Time in range as a percentage of the time the readings cover, one decimal (None: nothing covered)."""
        covered = self.covered_time.total_seconds()
        if not covered:
            return None
        value = Decimal(int(self.in_range_time.total_seconds()) * 100) / Decimal(int(covered))
        return value.quantize(ONE_PLACE, rounding=ROUND_HALF_UP)

    @property
    def label(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def previous(self) -> tuple[int, int]:
        return (self.year - 1, 12) if self.month == 1 else (self.year, self.month - 1)

    @property
    def next(self) -> tuple[int, int]:
        return (self.year + 1, 1) if self.month == 12 else (self.year, self.month + 1)


def parse_month(text: str | None, zone: ZoneInfo, now: datetime | None = None) -> tuple[int, int]:
    """`YYYY-MM` (default: the current month in `zone`); anything else is refused (422) with what to write."""
    if text is None or not text.strip():
        today = (now or utcnow()).astimezone(zone)
        return today.year, today.month
    found = _MONTH.match(text.strip())
    if not found or not 1 <= int(found.group(2)) <= 12 or not 1900 <= int(found.group(1)) <= 9998:
        raise InvalidInput(f"{text!r} is not a month: write it as YYYY-MM (e.g. 2026-03).", field="month")
    return int(found.group(1)), int(found.group(2))


def month_bounds(year: int, month: int, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The month's first instant and the next month's, in `zone`, as UTC."""
    following = (year + 1, 1) if month == 12 else (year, month + 1)
    start = datetime(year, month, 1, tzinfo=zone).astimezone(UTC)
    end = datetime(*following, 1, tzinfo=zone).astimezone(UTC)
    return start, end


def report_location(location_id: int, *, site_ids: SiteIds) -> ReportLocation:
    """A location with a range at the sites in scope; 404 as for a location that does not exist otherwise."""
    query = (sa.select(Location.id, Location.code, Location.name, Location.kind, Location.site_id,
                       Site.code.label("site_code"), Site.name.label("site_name"), Site.timezone,
                       Location.min_celsius, Location.max_celsius, Location.readings_per_day, Location.created_at)
             .join(Site, Site.id == Location.site_id).where(Location.id == location_id))
    row = db.session.execute(query).first() if isinstance(location_id, int) else None
    if row is None or (site_ids is not None and row.site_id not in site_ids):
        raise NotFound(f"There is no location {location_id}.")
    return ReportLocation(row.id, row.code, row.name, row.kind, row.site_id, row.site_code, row.site_name,
                          ZoneInfo(row.timezone), row.min_celsius, row.max_celsius, row.readings_per_day or 1,
                          row.created_at)


def month_report(location_id: int, year: int, month: int, *, site_ids: SiteIds = None,
                 now: datetime | None = None) -> MonthReport:
    """The month of one location in its site's zone, in five statements whatever the number of readings.

    Time in range: the month is cut at each reading; the interval between two consecutive
    readings counts as in range only when both readings are in range (as judged when recorded),
    and as out of range otherwise. The readings just before and just after the month close its
    first and last intervals, clipped at the month's edges; time before the first reading or
    after the last (a month still running, a fridge started mid-month) is counted in neither,
    and the percentage is of the time covered. Missed readings: gaps between consecutive
    readings longer than `services.cold_chain.overdue_after(location)`, and, for the last
    reading, a gap still open at the month's end (or now, for the current month).
    """
    location = report_location(location_id, site_ids=site_ids)
    start_at, end_at = month_bounds(year, month, location.zone)
    report = MonthReport(location, year, month, start_at, end_at)
    report.overdue_after = overdue_after(location)
    columns = (TemperatureReading.measured_at, TemperatureReading.celsius, TemperatureReading.source,
               TemperatureReading.in_range, TemperatureReading.excursion_id)
    mine = TemperatureReading.location_id == location.id
    report.readings = db.session.execute(
        sa.select(*columns).where(mine, TemperatureReading.measured_at >= start_at,
                                  TemperatureReading.measured_at < end_at)
        .order_by(TemperatureReading.measured_at, TemperatureReading.id)).all()
    before = db.session.execute(sa.select(*columns).where(mine, TemperatureReading.measured_at < start_at)
                                .order_by(TemperatureReading.measured_at.desc()).limit(1)).first()
    after = db.session.execute(sa.select(*columns).where(mine, TemperatureReading.measured_at >= end_at)
                               .order_by(TemperatureReading.measured_at).limit(1)).first()
    report.excursions = [ReportExcursion(*row) for row in db.session.execute(
        sa.select(Excursion.id, Excursion.started_at, Excursion.ended_at, Excursion.low_celsius,
                  Excursion.high_celsius, Excursion.range_min, Excursion.range_max, Excursion.found_late,
                  Excursion.decided_at)
        .where(Excursion.location_id == location.id, Excursion.started_at < end_at,
               sa.or_(Excursion.ended_at.is_(None), Excursion.ended_at >= start_at))
        .order_by(Excursion.started_at, Excursion.id))]
    _figures(report)
    _time_in_range(report, before, after)
    report.until = now or utcnow()
    report.missed = _missed(report, before, after, report.until)
    report.days = _days(report)
    return report


def _figures(report: MonthReport) -> None:
    values = [r.celsius for r in report.readings]
    if values:
        report.low, report.high = min(values), max(values)
        report.mean = (sum(values, Decimal(0)) / len(values)).quantize(TWO_PLACES, rounding=ROUND_HALF_UP)


def _time_in_range(report: MonthReport, before, after) -> None:
    points = [p for p in (before, *report.readings, after) if p is not None]
    start, end = report.start_at, report.end_at
    inside = outside = timedelta(0)
    for a, b in zip(points, points[1:], strict=False):
        span = min(b.measured_at, end) - max(a.measured_at, start)
        if span <= timedelta(0):
            continue
        if a.in_range and b.in_range:
            inside += span
        else:
            outside += span
    report.in_range_time, report.out_of_range_time = inside, outside


def _missed(report: MonthReport, before, after, now: datetime) -> list[MissedReadings]:
    limit = report.overdue_after
    start, end = report.start_at, report.end_at
    times = [p.measured_at for p in (before, *report.readings, after) if p is not None]
    if before is None:
        # No reading before this month: the schedule runs from when the location was made.
        times.insert(0, max(report.location.created_at, start) if report.location.created_at < end else end)
    gaps = [MissedReadings(a, b, b - a) for a, b in zip(times, times[1:], strict=False)
            if b - a > limit and b > start and a < end]
    if after is None and times:
        last, until = times[-1], min(end, now)
        if until - last > limit and last < end:
            gaps.append(MissedReadings(last, None, until - last))
    return gaps


def _days(report: MonthReport) -> list[DayFigures]:
    zone = report.location.zone
    by_day: dict[date, list] = {}
    for row in report.readings:
        by_day.setdefault(row.measured_at.astimezone(zone).date(), []).append(row)
    first = date(report.year, report.month, 1)
    days = []
    day = first
    while day.month == report.month:
        rows = by_day.get(day, [])
        values = [r.celsius for r in rows]
        days.append(DayFigures(day, len(rows), min(values) if values else None, max(values) if values else None,
                               sum(1 for r in rows if not r.in_range)))
        day += timedelta(days=1)
    return days
