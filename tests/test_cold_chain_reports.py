"""A location's month report: the arithmetic, the page with its chart, the workbook, the API, the audit sheets."""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from io import BytesIO
from zoneinfo import ZoneInfo

import openpyxl
import pytest
import sqlalchemy as sa
from testkit import QueryCounter, bearer, sign_in

from compounding import workbooks
from compounding.charts import temperature_chart
from compounding.extensions import db
from compounding.models import Excursion, Location, Site, TemperatureReading
from compounding.queries.cold_chain import month_report
from compounding.services import cold_chain
from compounding.services.cold_chain import ReadingIn

PARIS = ZoneInfo("Europe/Paris")
# March 2025 in Paris: the clocks go forward on the 30th, so the month is 743 hours long.
MARCH_START = datetime(2025, 3, 1, tzinfo=PARIS).astimezone(UTC)
SIX_HOURS = timedelta(hours=6)


def add_paris_fridge(code: str = "PAR", fridge_code: str = "PARFRIDGE") -> Location:
    site = Site(code=code, name=f"Clinic {code}", timezone="Europe/Paris", address="")
    db.session.add(site)
    db.session.flush()
    db.session.add(Location(site_id=site.id, code=f"LOC-{code}", name="Store", kind="room", is_default=True))
    fridge = Location(site_id=site.id, code=fridge_code, name="Fridge", kind="fridge", min_celsius=Decimal("2"),
                      max_celsius=Decimal("8"), created_at=datetime(2024, 1, 1, tzinfo=UTC))
    db.session.add(fridge)
    db.session.commit()
    return fridge


def put_readings(location: Location, readings: list[tuple[datetime, str]], actor=None) -> None:
    """Readings through the service that judges them and opens the excursions, then committed."""
    locked = cold_chain.monitored_location(location.id, lock=True)
    cold_chain.add_readings(actor, locked, [ReadingIn(at, 60, Decimal(c), source="logger") for at, c in readings])
    db.session.commit()


@pytest.fixture
def march(app):
    """A Paris fridge read every 6 hours through March 2025 at 5 °C, except 12 °C at readings 10 and 11
    (one excursion) and three readings missing after reading 49 (a 24-hour gap); one reading in February."""
    fridge = add_paris_fridge()
    times = [MARCH_START + SIX_HOURS * k for k in range(124) if k not in (50, 51, 52)]
    values = [(t, "12" if t in (MARCH_START + SIX_HOURS * 10, MARCH_START + SIX_HOURS * 11) else "5")
              for t in times]
    put_readings(fridge, [(MARCH_START - timedelta(hours=6), "5"), *values])
    return fridge


def test_time_in_range_counts_an_interval_in_range_only_when_both_ends_are(march):
    report = month_report(march.id, 2025, 3)
    assert report.month_length == timedelta(hours=743)  # the DST month is an hour short
    assert report.count == 121
    # 123 six-hour intervals from the first reading to the last; three touch a 12 °C reading.
    assert report.out_of_range_time == timedelta(hours=18)
    assert report.in_range_time == timedelta(hours=720)
    assert report.uncovered_time == timedelta(hours=5)  # after the last reading, none after the month
    assert report.percent_in_range == Decimal("97.6")
    assert (report.low, report.high) == (Decimal("5"), Decimal("12"))
    assert report.mean == (Decimal(119 * 5 + 2 * 12) / 121).quantize(Decimal("0.01"))
    assert report.out_of_range_readings == 2
    assert [e.code for e in report.excursions] == [f"E{db.session.scalar(sa.select(Excursion.id)):06d}"]
    assert report.excursions[0].high_celsius == Decimal("12")


def test_a_gap_longer_than_the_schedule_allows_is_a_missed_reading(march):
    report = month_report(march.id, 2025, 3)
    assert report.overdue_after == timedelta(hours=18)
    assert len(report.missed) == 1
    gap = report.missed[0]
    assert gap.after_at == MARCH_START + SIX_HOURS * 49 and gap.next_at == MARCH_START + SIX_HOURS * 53
    assert gap.length == timedelta(hours=24)


def test_days_are_the_sites_days_across_the_clock_change(march):
    report = month_report(march.id, 2025, 3)
    assert [d.day for d in report.days] == [date(2025, 3, n) for n in range(1, 32)]
    expected = {}
    for row in report.readings:
        day = row.measured_at.astimezone(PARIS).date()
        expected[day] = expected.get(day, 0) + 1
    assert {d.day: d.readings for d in report.days if d.readings} == expected
    third = report.days[2]
    assert (third.low, third.high, third.out_of_range) == (Decimal("5"), Decimal("12"), 2)
    # 30 March has 23 hours: its readings still fall on it by the Paris clock.
    assert report.days[29].readings == expected[date(2025, 3, 30)]


def test_excursions_crossing_the_months_edges_belong_to_both_months(app):
    fridge = add_paris_fridge()
    feb_end = datetime(2025, 2, 28, 23, 0, tzinfo=PARIS)
    put_readings(fridge, [(datetime(2025, 2, 28, 20, 0, tzinfo=PARIS), "5"), (feb_end, "12"),
                          (datetime(2025, 3, 1, 2, 0, tzinfo=PARIS), "5"),
                          (datetime(2025, 3, 31, 20, 0, tzinfo=PARIS), "5"),
                          (datetime(2025, 3, 31, 22, 0, tzinfo=PARIS), "9")])
    march = month_report(fridge.id, 2025, 3)
    assert len(march.excursions) == 2
    first, lasting = march.excursions
    # Dated from the last reading in range before it (20:00), the earliest it can have begun.
    assert first.started_at == datetime(2025, 2, 28, 20, 0, tzinfo=PARIS) and first.ended_at is not None
    assert lasting.ended_at is None and lasting.state == "out_of_range"
    # The February excursion's first 2 hours of March are out of range (from the month's edge).
    assert march.out_of_range_time == timedelta(hours=2) + timedelta(hours=2)
    assert [e.code for e in month_report(fridge.id, 2025, 2).excursions] == [first.code]
    assert [e.code for e in month_report(fridge.id, 2025, 4).excursions] == [lasting.code]


def test_a_month_without_readings_reports_nothing_measured_and_one_long_gap(app):
    fridge = add_paris_fridge()
    report = month_report(fridge.id, 2025, 6)
    assert report.count == 0 and report.low is None and report.mean is None
    assert report.percent_in_range is None and report.excursions == []
    assert len(report.missed) == 1 and report.missed[0].next_at is None
    assert report.missed[0].length == timedelta(days=30)
    assert all(d.readings == 0 and d.low is None for d in report.days) and len(report.days) == 30


def test_the_report_page_shows_the_month_with_its_chart_in_bounded_queries(client, march, make_user):
    sign_in(client, make_user("technician", site_codes=["PAR"]))
    client.get(f"/cold-chain/locations/{march.id}/report?month=2025-03")
    with QueryCounter(db.engine) as counter:
        response = client.get(f"/cold-chain/locations/{march.id}/report?month=2025-03")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "<svg" in page and "<polyline" in page and "Allowed range" in page
    assert "97.6 %" in page and "E0000" in page
    assert "month=2025-02" in page and "month=2025-04" in page and "report.xlsx?month=2025-03" in page
    assert counter.count <= 12, counter.statements


def test_the_page_defaults_to_the_current_month_and_refuses_a_bad_one(client, march, make_user):
    sign_in(client, make_user("technician", site_codes=["PAR"]))
    now = datetime.now(PARIS)
    response = client.get(f"/cold-chain/locations/{march.id}/report")
    assert response.status_code == 200 and f"{now:%Y-%m}" in response.get_data(as_text=True)
    for bad in ("2025-13", "March", "2025-3-1"):
        refused = client.get(f"/cold-chain/locations/{march.id}/report?month={bad}")
        assert refused.status_code == 400 and "YYYY-MM" in refused.get_data(as_text=True)


def test_a_location_at_another_site_is_not_found(client, march, make_user):
    sign_in(client, make_user("pharmacist"))  # a member of MAIN only
    for url in (f"/cold-chain/locations/{march.id}/report", f"/cold-chain/locations/{march.id}/report.xlsx",
                "/cold-chain/locations/999999/report"):
        assert client.get(url).status_code == 404


def test_the_month_workbook_opens_and_its_cells_match(client, march, make_user):
    sign_in(client, make_user("practitioner", site_codes=["PAR"]))
    response = client.get(f"/cold-chain/locations/{march.id}/report.xlsx?month=2025-03")
    assert response.status_code == 200 and response.mimetype == workbooks.XLSX_MIMETYPE
    book = openpyxl.load_workbook(BytesIO(response.data))
    assert book.sheetnames[:2] == ["Summary", "Readings"]
    summary = {row[0].value: row[1].value for row in book["Summary"].iter_rows() if row[0].value}
    assert summary["Readings"] == 121 and summary["Time in range (% of the time covered)"] == pytest.approx(97.6)
    rows = list(book["Readings"].iter_rows(values_only=True))
    assert rows[0] == ("Measured (Europe/Paris)", "°C", "Source", "In range", "Excursion")
    assert len(rows) == 122
    assert rows[1] == (datetime(2025, 3, 1, 0, 0), 5, "logger", "yes", None)
    out = rows[11]
    assert out[0] == datetime(2025, 3, 3, 12, 0) and out[1] == 12 and out[3] == "no" and out[4].startswith("E")
    assert len(list(book["Days"].iter_rows())) == 32


def test_the_api_answers_the_months_summary_with_decimal_strings(client, march, make_user, make_token):
    token = make_token(make_user("technician", site_codes=["PAR"]))
    response = client.get(f"/api/v1/locations/{march.id}/report?month=2025-03", headers=bearer(token))
    assert response.status_code == 200
    data = response.get_json()
    assert data["percent_in_range"] == "97.6" and data["readings"] == 121
    assert data["high_celsius"] == "12.00" and data["hours_out_of_range"] == "18.00"
    assert data["location"]["timezone"] == "Europe/Paris" and len(data["days"]) == 31
    assert len(data["missed_readings"]) == 1 and data["excursions"][0]["code"].startswith("E")
    assert client.get(f"/api/v1/locations/{march.id}/report?month=2025-00", headers=bearer(token)).status_code == 422
    other = make_token(make_user("technician"))
    assert client.get(f"/api/v1/locations/{march.id}/report", headers=bearer(other)).status_code == 404


def test_the_audit_workbook_has_a_row_per_location_and_day_and_the_excursions(march, pharmacist):
    excursion = db.session.scalar(sa.select(Excursion))
    out = BytesIO()
    workbooks.audit_workbook(out, date(2025, 3, 1), date(2025, 3, 31), generated_by="Test", clinic_name="Test")
    book = openpyxl.load_workbook(out)
    days = list(book["Readings"].iter_rows(values_only=True))
    assert days[0] == ("Site", "Location", "Day (site's zone)", "Readings", "Lowest °C", "Highest °C",
                       "Out-of-range readings", "Excursions")
    by_day = {row[2].date(): row for row in days[1:]}
    assert set(by_day) == {date(2025, 3, n) for n in range(1, 32)}
    # The period is the clinic's days; each row's day is its site's.
    start_at, end_at = workbooks.audit_period(date(2025, 3, 1), date(2025, 3, 31))
    assert sum(row[3] for row in days[1:]) == db.session.scalar(
        sa.select(sa.func.count()).select_from(TemperatureReading)
        .where(TemperatureReading.measured_at >= start_at, TemperatureReading.measured_at < end_at))
    assert by_day[date(2025, 3, 3)][3:] == (4, 5, 12, 2, excursion.code)
    assert by_day[date(2025, 3, 3)][:2] == ("PAR", "PARFRIDGE")
    rows = list(book["Excursions"].iter_rows(values_only=True))
    assert rows[0][:3] == ("Excursion", "Site", "Location") and len(rows) == 2
    assert rows[1][:3] == (excursion.code, "PAR", "PARFRIDGE") and rows[1][5] == 12


def test_seed_scale_writes_a_year_of_readings_per_fridge_with_its_excursions(runner):
    db.session.remove()
    result = runner.invoke(args=["seed-scale", "--lots", "10", "--batches", "10", "--sessions", "20",
                                 "--patients", "10", "--sites", "2"])
    assert result.exit_code == 0, result.output
    fridges = db.session.scalars(sa.select(Location.id).where(Location.kind == "fridge")).all()
    assert len(fridges) == 2
    for fridge in fridges:
        count = db.session.scalar(sa.select(sa.func.count()).where(TemperatureReading.location_id == fridge))
        assert 365 * 96 - 200 <= count <= 366 * 96
    out = db.session.scalar(sa.select(sa.func.count()).where(TemperatureReading.in_range.is_(False)))
    unlinked = db.session.scalar(sa.select(sa.func.count()).where(TemperatureReading.in_range.is_(False),
                                                                 TemperatureReading.excursion_id.is_(None)))
    assert out > 0 and unlinked == 0
    excursions = db.session.scalars(sa.select(Excursion)).all()
    assert excursions and all(e.ended_at is not None and e.decided_at is not None for e in excursions)
    # Each excursion's extremes are those of its readings.
    for e in excursions:
        low, high = db.session.execute(sa.select(sa.func.min(TemperatureReading.celsius),
                                                 sa.func.max(TemperatureReading.celsius))
                                       .where(TemperatureReading.excursion_id == e.id)).one()
        assert (Decimal(str(low)), Decimal(str(high))) == (e.low_celsius, e.high_celsius)
    # The month report reads the seeded month.
    now = datetime.now(UTC)
    report = month_report(fridges[0], now.year, now.month)
    assert report.count > 0


def test_a_logger_month_is_drawn_as_one_line_of_hourly_extremes_and_stays_small(app):
    fridge = add_paris_fridge()
    quarter = timedelta(minutes=15)
    put_readings(fridge, [(MARCH_START + quarter * k, "13" if k == 1000 else f"{4 + k % 3}")
                          for k in range(2972)])
    report = month_report(fridge.id, 2025, 3)
    svg = temperature_chart(report)
    assert svg.count("<polyline") == 1 and "<circle" not in svg
    points = svg.split('<polyline points="')[1].split('"')[0].split()
    assert len(points) <= 2 * 743  # each hour's lowest and highest
    assert len(svg.encode()) < 40_000
    # The excursion's peak is kept by the envelope, and the excursion is marked.
    assert report.excursions and report.excursions[0].code in svg
