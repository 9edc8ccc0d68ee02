"""Cold-chain figures for bench.measure: a fridge's month report, and a logger's month imported.

- The month report of MAIN's fridge for the last whole month in the site's zone (2,976 readings
  for a 31-day month at one every 15 minutes, as seed-scale writes them): the query and its chart
  (`queries.cold_chain.month_report` + `charts.temperature_chart`), the page, and the month's
  workbook. Target: under 300 ms.
- A logger's month (2,976 rows) through `services.reading_files.import_file`, into a new fridge,
  rolled back each time so the data stay as seeded. Target: under 2 s.
"""

import importlib
import importlib.util
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from compounding.extensions import db
from compounding.models import Location, Site, TemperatureReading, User
from compounding.services.transaction import transaction

READINGS_FILE_MODULE = "compounding.services.reading_files"
STEP = timedelta(minutes=15)


class _RolledBack(Exception):
    pass


def _last_whole_month(zone: ZoneInfo, now: datetime) -> tuple[int, int]:
    local = now.astimezone(zone)
    return (local.year - 1, 12) if local.month == 1 else (local.year, local.month - 1)


def month_report_figures(client, app, n: int, timed, percentiles, get) -> dict:
    """The month report of the seeded fridge of MAIN (the fridge with the most readings if MAIN has none)."""
    from compounding.charts import temperature_chart
    from compounding.queries.cold_chain import month_report
    from compounding.workbooks.cold_chain import month_workbook

    with app.app_context():
        fridge = db.session.execute(
            sa.select(Location.id, Site.timezone).join(Site, Site.id == Location.site_id)
            .where(Location.kind == "fridge", Location.min_celsius.is_not(None))
            .order_by((Site.code != "MAIN"), Location.id).limit(1)).first()
        if fridge is None:
            return {"skipped": "no fridge: seed-scale writes one per site"}
        year, month = _last_whole_month(ZoneInfo(fridge.timezone), datetime.now(UTC))
        readings = month_report(fridge.id, year, month).count
        db.session.remove()
    if not readings:
        return {"skipped": f"no reading in {year}-{month:02d}: reseed with seed-scale"}

    def service():
        with app.app_context():
            temperature_chart(month_report(fridge.id, year, month))
            db.session.remove()

    def workbook():
        with app.app_context(), tempfile.TemporaryFile() as out:
            month_workbook(out, month_report(fridge.id, year, month), generated_by="bench", clinic_name="Bench")
            db.session.remove()

    url = f"/cold-chain/locations/{fridge.id}/report"
    page = get(client, url, query_string={"month": f"{year}-{month:02d}"})
    svg = page.get_data(as_text=True)
    chart_bytes = len(svg[svg.find("<svg"):svg.find("</svg>") + 6].encode())
    return {"location_id": fridge.id, "month": f"{year}-{month:02d}", "readings": readings,
            "chart_bytes": chart_bytes,
            "service": percentiles(timed(service, n)),
            "page": percentiles(timed(lambda: get(client, url, query_string={"month": f"{year}-{month:02d}"}), n)),
            "workbook": percentiles(timed(workbook, max(2, n // 3), warmup=1))}


def logger_month(first: datetime, rows: int = 2976) -> bytes:
    """A data logger's CSV: one reading every 15 minutes from `first`, ISO 8601 times with their offset,
    around 5 °C with one hour out of range."""
    lines = ["timestamp,temperature"]
    for i in range(rows):
        at = (first + STEP * i).astimezone(ZoneInfo("Europe/Paris"))
        celsius = 9.4 if 1500 <= i < 1504 else 5 + (i % 7 - 3) / 10
        lines.append(f"{at.isoformat()},{celsius:.1f}")
    return ("\n".join(lines) + "\n").encode()


def import_figures(app, n: int, percentiles) -> dict:
    """A month of one logger through `services.reading_files.import_file(actor, location_id, data, filename,
    zone=None)`, into a new fridge at MAIN, rolled back each time.

    That service is written beside this benchmark: until it is merged, this measurement is skipped
    with a note on stderr (and in the results), never a failure of the run.
    """
    if importlib.util.find_spec(READINGS_FILE_MODULE) is None:
        note = f"{READINGS_FILE_MODULE} is not there yet: the logger import is not measured"
        print(f"bench: {note}", file=sys.stderr)
        return {"skipped": note}
    reading_files = importlib.import_module(READINGS_FILE_MODULE)
    import_file = getattr(reading_files, "import_file", None)
    if import_file is None:
        return {"skipped": f"{READINGS_FILE_MODULE} has no import_file yet"}
    first = (datetime.now(UTC) - timedelta(days=40)).replace(minute=0, second=0, microsecond=0)
    data = logger_month(first)
    times, imported = [], None
    for attempt in range(n + 1):  # the first run warms up
        with app.app_context():
            pharmacist = db.session.scalar(sa.select(User).where(User.username == "scale.pharmacist1"))
            main = db.session.scalar(sa.select(Site.id).where(Site.code == "MAIN"))
            try:
                with transaction():
                    fridge = Location(site_id=main, code=f"BENCHLOG{attempt}", name=f"Bench logger fridge {attempt}",
                                      kind="fridge", min_celsius=2, max_celsius=8, readings_per_day=96)
                    db.session.add(fridge)
                    db.session.flush()
                    started = time.perf_counter()
                    import_file(pharmacist, fridge.id, data, "logger-month.csv")
                    db.session.flush()
                    elapsed = (time.perf_counter() - started) * 1000
                    imported = db.session.scalar(sa.select(sa.func.count()).select_from(TemperatureReading)
                                                 .where(TemperatureReading.location_id == fridge.id))
                    raise _RolledBack
            except _RolledBack:
                if attempt:
                    times.append(elapsed)
            except Exception as exc:  # a service still changing its shape: say so, keep the run going
                print(f"bench: logger import failed: {exc!r}", file=sys.stderr)
                return {"skipped": f"import_file failed: {exc!r}"[:300]}
            finally:
                db.session.remove()
    return {"rows": data.count(b"\n") - 1, "imported": imported, "import": percentiles(times)}
