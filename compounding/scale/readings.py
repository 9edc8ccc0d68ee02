"""A year of fridge readings for seed-scale: every 15 minutes per fridge, around 5 °C, with a few short excursions.

Each fridge of the chain (one per site) gets a logger's readings for the year before now (after
its last reading, when an earlier seed left some), drawn from a generator of their own so the
rest of the data set is what it was. A few times a year a fridge leaves its range for 30 minutes
to 2 hours: those readings are out of range and name their excursion, whose start is its first
reading out, its end the first reading back in range, its extremes those of its readings; each
excursion is already decided (no stock is rewritten: the excursions hold no items).
"""

from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import numpy as np
import sqlalchemy as sa

from ..models import Excursion, Location, Site, TemperatureReading
from .spec import DAY, HOUR, moment
from .writer import Writer, reserve_ids

STEP = 15 * 60  # a logger's interval, seconds
PER_YEAR = 365 * DAY // STEP  # 35,040 readings a fridge
EXCURSIONS_PER_YEAR = (2, 5)  # drawn in [2, 5)
RANGE_LOW, RANGE_HIGH = 200, 800  # centi-degrees: every fridge seeded is 2-8 °C


def _centi(value: int) -> Decimal:
    return Decimal(int(value)).scaleb(-2)


class FridgeYear:
    """One fridge's readings as arrays: times (epoch seconds), centi-degrees, and the excursion index (-1: none)."""

    def __init__(self, rng: np.random.Generator, first: int, last: int):
        self.times = np.arange(first, last + 1, STEP, dtype=np.int64)
        n = len(self.times)
        day_phase = (self.times % DAY) / DAY * 2 * np.pi
        values = 500 + 60 * np.sin(day_phase) + rng.normal(0, 25, n)
        self.centi = np.clip(np.rint(values), RANGE_LOW + 50, RANGE_HIGH - 50).astype(np.int64)
        self.excursion = np.full(n, -1, dtype=np.int64)
        self.spans: list[tuple[int, int]] = []  # (first index out, first index back in)
        if n < 200:
            return
        wanted = int(rng.integers(*EXCURSIONS_PER_YEAR)) * n // PER_YEAR
        for start in np.sort(rng.choice(np.arange(10, n - 20), size=wanted, replace=False)).tolist():
            if self.spans and start <= self.spans[-1][1]:
                continue
            length = int(rng.integers(2, 9))  # 30 minutes to 2 hours out
            cold = rng.random() < 0.25
            out = (rng.integers(50, 180, length) if cold else rng.integers(850, 1250, length))
            self.centi[start:start + length] = out
            self.excursion[start:start + length] = len(self.spans)
            self.spans.append((start, start + length))


def _offsets(zone: ZoneInfo, times: np.ndarray) -> np.ndarray:
    """The site's UTC offset (minutes) at each time, computed once per hour."""
    hours = times // HOUR
    unique, where = np.unique(hours, return_inverse=True)
    minutes = np.array([int(datetime.fromtimestamp(int(h) * HOUR, UTC).astimezone(zone).utcoffset().total_seconds()
                            // 60) for h in unique.tolist()], dtype=np.int64)
    return minutes[where]


def write_readings(writer: Writer, fridges: list[int], now: datetime, seed: int, log) -> dict:
    """A year of readings and their excursions for each fridge, in the caller's transaction."""
    connection = writer.connection
    rng = np.random.default_rng([seed, 715])
    last = int(now.timestamp()) // STEP * STEP
    places = {row.id: row for row in connection.execute(
        sa.select(Location.id, Location.site_id, Site.timezone).join(Site, Site.id == Location.site_id)
        .where(Location.id.in_(fridges)))}
    latest = dict(connection.execute(
        sa.select(TemperatureReading.location_id, sa.func.max(TemperatureReading.measured_at))
        .where(TemperatureReading.location_id.in_(fridges)).group_by(TemperatureReading.location_id)).all())
    years = []
    for fridge in fridges:
        first = last - 365 * DAY + STEP
        if latest.get(fridge) is not None:
            seen = latest[fridge]
            seen = seen if seen.tzinfo else seen.replace(tzinfo=UTC)
            first = max(first, (int(seen.timestamp()) // STEP + 1) * STEP)
        years.append((fridge, FridgeYear(rng, first, last)))
    counts = {"readings": sum(len(y.times) for _, y in years), "excursions": sum(len(y.spans) for _, y in years)}
    if not counts["readings"]:
        return counts
    ids = reserve_ids(connection, {TemperatureReading.__table__: counts["readings"],
                                   Excursion.__table__: max(counts["excursions"], 1)})
    reading_id, excursion_id = ids["temperature_readings"], ids["excursions"]
    excursion_rows, firsts = [], []
    for fridge, year in years:
        firsts.append(excursion_id)
        place = places[fridge]
        for start, end in year.spans:
            out = year.centi[start:end]
            started, ended = int(year.times[start]), int(year.times[end])
            excursion_rows.append({
                "id": excursion_id, "location_id": fridge, "site_id": place.site_id, "started_at": moment(started),
                "ended_at": moment(ended), "low_celsius": _centi(out.min()), "high_celsius": _centi(out.max()),
                "range_min": _centi(RANGE_LOW), "range_max": _centi(RANGE_HIGH), "source": "logger",
                "held_at": moment(started), "opened_by_id": None, "found_late": False,
                "decided_at": moment(min(ended + 2 * HOUR, last))})
            excursion_id += 1
    writer.insert(Excursion.__table__, excursion_rows)

    def reading_rows():
        nonlocal reading_id
        recorded = now
        for (fridge, year), first_excursion in zip(years, firsts, strict=True):
            place = places[fridge]
            offsets = _offsets(ZoneInfo(place.timezone), year.times).tolist()
            for at, centi, excursion, offset in zip(year.times.tolist(), year.centi.tolist(),
                                                    year.excursion.tolist(), offsets, strict=True):
                out = excursion >= 0
                yield {"id": reading_id, "location_id": fridge, "site_id": place.site_id, "measured_at": moment(at),
                       "utc_offset_minutes": offset, "celsius": _centi(centi), "min_celsius": None,
                       "max_celsius": None, "source": "logger", "in_range": not out,
                       "excursion_id": first_excursion + excursion if out else None, "import_id": None,
                       "recorded_by_id": None, "token_id": None, "recorded_at": recorded, "note": ""}
                reading_id += 1

    writer.insert(TemperatureReading.__table__, reading_rows())
    log.add(int(now.timestamp()), None, "scale.rows_loaded", "temperature_readings", None,
            new={"first_id": ids["temperature_readings"], "rows": counts["readings"], "fridges": len(fridges),
                 "excursions": counts["excursions"]})
    return counts
