"""API: a monitored location's month report (`/api/v1/locations/{id}/report?month=YYYY-MM`)."""

from decimal import Decimal

from flask import request
from flask_login import current_user
from marshmallow import EXCLUDE

from ..queries.cold_chain import month_report, parse_month, report_location
from ..services import sites
from .schemas.cold_chain_reports import MonthQuerySchema, MonthReportSchema
from .views import answer, load, route, shared


def _hours(delta) -> Decimal:
    return (Decimal(int(delta.total_seconds())) / 3600).quantize(Decimal("0.01"))


def dump_report(report) -> dict:
    location = report.location
    return shared(MonthReportSchema).dump({
        "location": {"id": location.id, "code": location.code, "name": location.name, "kind": location.kind,
                     "site_id": location.site_id, "site_code": location.site_code, "timezone": location.zone.key,
                     "min_celsius": location.min_celsius, "max_celsius": location.max_celsius,
                     "readings_per_day": location.readings_per_day},
        "month": report.label, "start_at": report.start_at, "end_at": report.end_at,
        "readings": report.count, "out_of_range_readings": report.out_of_range_readings,
        "low_celsius": report.low, "high_celsius": report.high, "mean_celsius": report.mean,
        "percent_in_range": report.percent_in_range, "hours_in_range": _hours(report.in_range_time),
        "hours_out_of_range": _hours(report.out_of_range_time), "hours_not_covered": _hours(report.uncovered_time),
        "excursions": [{"id": e.id, "code": e.code, "started_at": e.started_at, "ended_at": e.ended_at,
                        "low_celsius": e.low_celsius, "high_celsius": e.high_celsius, "range_min": e.range_min,
                        "range_max": e.range_max, "found_late": e.found_late, "state": e.state}
                       for e in report.excursions],
        "missed_readings": [{"after_at": m.after_at, "next_at": m.next_at, "hours": _hours(m.length)}
                            for m in report.missed],
        "days": [{"day": d.day, "readings": d.readings, "low_celsius": d.low, "high_celsius": d.high,
                  "out_of_range": d.out_of_range} for d in report.days]})


@route("/locations/<int:location_id>/report", permission="coldchain.read",
       summary="A monitored location's calendar month in its site's time zone: readings, time in range, "
               "excursions, missed readings and daily extremes", response=MonthReportSchema, query=MonthQuerySchema,
       errors=(404, 422))
def location_month_report(location_id: int):
    month = load(MonthQuerySchema, request.args.to_dict(), unknown=EXCLUDE).get("month")
    # A location outside every site the caller may see answers 404, as one that does not exist.
    site_ids = sites.visible_site_ids(current_user)
    location = report_location(location_id, site_ids=site_ids)
    year, number = parse_month(month, location.zone)
    return answer(dump_report(month_report(location_id, year, number, site_ids=site_ids)))
