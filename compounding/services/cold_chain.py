"""The cold chain (DESIGN 10.5): readings, the excursions they open, and what the held stock becomes.

A reading is judged against its location's range when it is recorded: its current value, and
a min/max thermometer's extremes since the last reset. A reading out of range opens an
excursion (or joins the one that covers its moment) and, in the same transaction, puts a hold
reason on every lot, batch and vial stored at the location (and at the places inside it that
keep no range of their own). The first reading back in range ends it. A pharmacist decides,
by signature, each held item or all of them: `keep` (the hold released, with a reason),
`keep_shortened` (released with an earlier use-by) or `discard` (written off).

Readings may arrive late and out of order (a logger's file uploaded the next morning): each
new reading is placed on the location's timeline among the readings already there, so an
excursion found late is opened with its true start, and the uses made from the held items
between that start and the hold are listed for review (`uses_for_review`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

import sqlalchemy as sa

from ..extensions import db
from ..limits import NOTE_MAX, REASON_MAX
from ..models import (
    Batch,
    BatchComponent,
    BatchStatus,
    Excursion,
    ExcursionItem,
    Hold,
    Location,
    Lot,
    LotStatus,
    SessionUse,
    Site,
    StockMove,
    TemperatureReading,
    Transfer,
    TransferLine,
    TreatmentSession,
    User,
    Vial,
    VialStatus,
)
from ..models.cold_chain import CELSIUS_MAX, CELSIUS_MIN, DECISIONS, READING_SOURCES
from . import audit, holds, sites
from .access import ensure_can
from .bounds import checked_text
from .clock import to_clinic, utcnow
from .errors import InvalidInput, InvalidState, NotAllowed, NotFound
from .history import change_status, deplete_if_empty, standing_holds, transition
from .ledger import move_batch, move_lot, move_vial
from .signatures import pharmacist_signs
from .transaction import transactional

# A clock a little ahead of the server's is not the future; more is a typing or clock error.
FUTURE_SKEW = timedelta(minutes=5)
TWO_PLACES = Decimal("0.01")
# Readings outside these years are typing errors (and year 1 or 9999 has no UTC neighbour).
EARLIEST_YEAR, LATEST_YEAR = 1900, 2100
# Statuses whose stock is still there to hold (anything else is finished: nothing to protect).
_LOTS_LIVE = (LotStatus.QUARANTINE, LotStatus.RELEASED, LotStatus.ON_HOLD, LotStatus.RECALLED)
_BATCHES_DONE = (BatchStatus.DISCARDED, BatchStatus.DEPLETED, BatchStatus.REJECTED)
_VIALS_LIVE = (VialStatus.SEALED, VialStatus.OPEN, VialStatus.ON_HOLD, VialStatus.RECALLED)
MODELS = {"lot": Lot, "batch": Batch, "vial": Vial}


# --- Reading the values ----------------------------------------------------------------------------

def parse_moment(value, *, field_name: str = "measured_at") -> tuple[datetime, int]:
    """An ISO 8601 moment with its UTC offset (or an aware datetime): (the moment in UTC, offset minutes).

    A moment without an offset is refused (422): 08:00 in which zone?
    """
    if isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise InvalidInput(f"{value!r} is not a date and time (e.g. 2026-12-07T08:00:00+01:00).",
                               field=field_name) from None
    if not isinstance(value, datetime):
        raise InvalidInput("Give the date and time of the reading.", field=field_name)
    offset = value.utcoffset()
    if offset is None:
        raise InvalidInput(f"{value.isoformat()} has no time zone offset: write it as in "
                           "2026-12-07T08:00:00+01:00 (or Z for UTC).", field=field_name)
    if not EARLIEST_YEAR <= value.year <= LATEST_YEAR:
        raise InvalidInput(f"{value.isoformat()} is not a plausible date for a reading.", field=field_name)
    return value.astimezone(UTC), int(offset.total_seconds() // 60)


def local_moment(value: datetime, tz, *, text: str | None = None, hint: str = "",
                 field_name: str = "measured_at") -> datetime:
    """A wall-clock time in zone `tz`, refused (422) where the clocks skipped it or lived it twice.

    A wall time is real when it comes back unchanged from UTC; at a change of the clocks it may be none
    (skipped) or two moments (lived twice).
    """
    text = text or f"{value:%Y-%m-%d %H:%M}"
    try:
        moments = {value.replace(tzinfo=tz, fold=fold).astimezone(UTC) for fold in (0, 1)}
    except OverflowError:
        raise InvalidInput(f"{text[:40]!r} is not a date and time a reading can have.", field=field_name) from None
    real = [m for m in moments if m.astimezone(tz).replace(tzinfo=None) == value.replace(tzinfo=None)]
    if not real:
        raise InvalidInput(f"{text} does not exist in {tz.key}: the clocks went forward then. {hint}".strip(),
                           field=field_name)
    if len(real) > 1:
        raise InvalidInput(f"{text} happened twice in {tz.key} (the clocks went back): which one is not known. "
                           f"{hint}".strip(), field=field_name)
    return real[0].astimezone(tz)


def checked_celsius(value, *, field_name: str = "celsius", required: bool = True) -> Decimal | None:
    """A temperature in degrees Celsius, two decimals; non-numeric or absurd values are refused (422)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise InvalidInput("Give the temperature in °C.", field=field_name)
        return None
    if isinstance(value, bool):
        raise InvalidInput(f"{value!r} is not a temperature.", field=field_name)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInput(f"{value!r} is not a temperature.", field=field_name)
        value = repr(value)
    try:
        number = Decimal(str(value).strip().replace(",", ".") if isinstance(value, str) else value)
    except (InvalidOperation, ValueError, TypeError):
        raise InvalidInput(f"{value!r} is not a temperature in °C.", field=field_name) from None
    if not number.is_finite():
        raise InvalidInput(f"{value!r} is not a temperature.", field=field_name)
    if number < CELSIUS_MIN or number > CELSIUS_MAX:
        raise InvalidInput(f"{number.normalize():f} °C is not a plausible storage temperature "
                           f"(between {CELSIUS_MIN} and {CELSIUS_MAX} °C): check the thermometer or the typing.",
                           field=field_name)
    return number.quantize(TWO_PLACES, rounding=ROUND_HALF_UP)


def has_range(location: Location) -> bool:
    return location.min_celsius is not None or location.max_celsius is not None


def within(location_or_range, celsius: Decimal | None) -> bool:
    """Whether a value is inside a range (inclusive); no value is inside."""
    if celsius is None:
        return True
    low, high = _bounds(location_or_range)
    return (low is None or celsius >= low) and (high is None or celsius <= high)


def _bounds(thing) -> tuple[Decimal | None, Decimal | None]:
    if isinstance(thing, tuple):
        return thing
    return thing.min_celsius, thing.max_celsius


def range_text(low: Decimal | None, high: Decimal | None) -> str:
    def shown(v):
        return f"{Decimal(v).normalize():f}"
    if low is not None and high is not None:
        return f"{shown(low)} to {shown(high)} °C"
    if low is not None:
        return f"at least {shown(low)} °C"
    if high is not None:
        return f"at most {shown(high)} °C"
    return "no range"


@dataclass
class ReadingIn:
    """A reading to record, checked: the moment in UTC with its offset, the values, where it came from."""

    measured_at: datetime
    offset_minutes: int
    celsius: Decimal
    min_celsius: Decimal | None = None
    max_celsius: Decimal | None = None
    source: str = "manual"
    note: str = ""
    row: int | None = None  # its row in a file


def checked_reading(*, measured_at, celsius, source: str = "manual", min_celsius=None, max_celsius=None,
                    note: str = "", now: datetime | None = None, row: int | None = None) -> ReadingIn:
    """Every check of one reading that needs no database (422 with the field)."""
    if source not in READING_SOURCES:
        raise InvalidInput(f"The source is one of {', '.join(READING_SOURCES)}.", field="source")
    moment, offset = parse_moment(measured_at)
    if moment > (now or utcnow()) + FUTURE_SKEW:
        raise InvalidInput(f"{measured_at if isinstance(measured_at, str) else moment.isoformat()} is in the "
                           "future: a reading is recorded when it has been taken.", field="measured_at")
    current = checked_celsius(celsius)
    low = checked_celsius(min_celsius, field_name="min_celsius", required=False)
    high = checked_celsius(max_celsius, field_name="max_celsius", required=False)
    if low is not None and low > current:
        raise InvalidInput("The minimum since the last reset cannot be above the current temperature.",
                           field="min_celsius")
    if high is not None and high < current:
        raise InvalidInput("The maximum since the last reset cannot be below the current temperature.",
                           field="max_celsius")
    note = checked_text(note, "note", NOTE_MAX)
    return ReadingIn(moment, offset, current, low, high, source, note, row)


# --- Locations that are read -----------------------------------------------------------------------

def monitored_location(location_id, *, lock: bool = False) -> Location:
    """A location readings may be recorded for: active, with a range (409 otherwise)."""
    location = sites.get_location(location_id, for_update=lock)
    if not location.active:
        raise InvalidState(f"{location.label} ({location.name}) is no longer in use.", field="location_id")
    if not has_range(location):
        raise InvalidState(f"{location.label} ({location.name}) has no allowed temperature range: set its range "
                           "before recording readings.", field="location_id")
    return location


def schedule_window(location: Location) -> timedelta:
    """The time between two scheduled readings (12 h for twice a day)."""
    return timedelta(hours=24) / max(location.readings_per_day or 1, 1)


def overdue_after(location: Location) -> timedelta:
    """How long after its last reading a location shows a missed reading: its window and half again
    (a twice-a-day fridge read at 08:00 and 18:00 is not late at 07:00)."""
    return schedule_window(location) * 3 / 2


open_excursion_at = sites.open_excursion_at
ensure_takes_stock = sites.ensure_takes_stock


def affected_locations(location: Location) -> list[int]:
    """The location and the places inside it without a range of their own (a cabinet in a cold room)."""
    rows = db.session.execute(sa.select(Location.id, Location.parent_id, Location.min_celsius, Location.max_celsius)
                              .where(Location.site_id == location.site_id)).all()
    children: dict[int, list] = {}
    for row in rows:
        children.setdefault(row.parent_id, []).append(row)
    found, todo = [location.id], [location.id]
    while todo:
        for child in children.get(todo.pop(), []):
            if child.min_celsius is None and child.max_celsius is None:
                found.append(child.id)
                todo.append(child.id)
    return found


# --- Recording ---------------------------------------------------------------------------------------

@transactional
def record_reading(actor: User, location_id: int, *, measured_at, celsius, source: str = "manual",
                   min_celsius=None, max_celsius=None, note: str = "", token_id: int | None = None
                   ) -> TemperatureReading:
    """Record one reading (by hand or from a sensor); an out-of-range one opens an excursion and holds the
    stock in this transaction. A duplicate (same location, moment and source) is refused (409)."""
    ensure_can(actor, "readings.record", "record temperature readings")
    reading_in = checked_reading(measured_at=measured_at, celsius=celsius, source=source,
                                 min_celsius=min_celsius, max_celsius=max_celsius, note=note)
    # The location's row lock puts two readings of one fridge in a queue.
    location = monitored_location(location_id, lock=True)
    sites.ensure_at_site(actor, location.site_id, "record its temperatures")
    duplicate = db.session.scalar(sa.select(TemperatureReading.id).where(
        TemperatureReading.location_id == location.id, TemperatureReading.measured_at == reading_in.measured_at,
        TemperatureReading.source == reading_in.source))
    if duplicate is not None:
        raise InvalidState(f"{location.label} already has a {reading_in.source} reading at "
                           f"{_shown(reading_in.measured_at)}.", field="measured_at",
                           details={"reading_id": duplicate})
    (reading_id,) = add_readings(actor, location, [reading_in], token_id=token_id)
    reading = db.session.get(TemperatureReading, reading_id)
    audit.record(actor, "reading.recorded", "location", location.id,
                 new={"reading_id": reading.id, "measured_at": reading.measured_at, "celsius": reading.celsius,
                      "min_celsius": reading.min_celsius, "max_celsius": reading.max_celsius,
                      "source": reading.source, "in_range": reading.in_range,
                      "excursion_id": reading.excursion_id})
    return reading


def add_readings(actor: User | None, location: Location, readings: list[ReadingIn], *,
                 import_id: int | None = None, token_id: int | None = None) -> list[int]:
    """Insert checked, non-duplicate readings of one locked location and apply them to its excursions
    (in the caller's transaction). Answers the new readings' ids, in time order.

    One multi-row INSERT whatever the number (a logger's month), then the timeline.
    """
    now = utcnow()
    ordered = sorted(readings, key=lambda r: r.measured_at)
    if not ordered:
        return []
    values = [dict(location_id=location.id, site_id=location.site_id, measured_at=item.measured_at,
                   utc_offset_minutes=item.offset_minutes, celsius=item.celsius, min_celsius=item.min_celsius,
                   max_celsius=item.max_celsius, source=item.source, note=item.note,
                   in_range=_reading_in_range(location, item), import_id=import_id,
                   recorded_by_id=actor.id if actor else None, token_id=token_id, recorded_at=now)
              for item in ordered]
    ids = list(db.session.scalars(
        sa.insert(TemperatureReading).returning(TemperatureReading.id, sort_by_parameter_order=True), values))
    new = [_New(id_, item) for id_, item in zip(ids, ordered, strict=True)]
    Timeline(location, new).apply(actor, now)
    return ids


@dataclass
class _New:
    id: int
    reading: ReadingIn

    @property
    def measured_at(self) -> datetime:
        return self.reading.measured_at


def _reading_in_range(location: Location, item) -> bool:
    return all(within(location, v) for v in (item.celsius, item.min_celsius, item.max_celsius))


@dataclass
class _Point:
    """A reading on a location's timeline: whether it reports an excursion, whether it is back in range."""

    at: datetime
    out: bool  # its current value or its extremes since the reset are out of range
    current_in: bool  # its current value is in range (a moment known to be in range)
    extremes_out: bool  # only its min/max were out: the excursion happened since the reading before
    low: Decimal
    high: Decimal
    raw: tuple = (None, None)  # the min/max thermometer's extremes as read
    row: _New | None = None  # a new reading (None: one already recorded)
    excursion_id: int | None = None
    index: int = 0  # its place on the timeline
    stale_of: int | None = None  # judged a thermometer not reset since a reading of this excursion


@dataclass
class Timeline:
    """A location's readings around new ones, in time order, with the excursions they may touch.

    Reads a fixed handful of statements whatever the number of new readings (a logger's month is
    one call): the readings already recorded between the first and last new one, the one before
    and the one after, and the excursions that reach that span.
    """

    location: Location
    new: list[_New]
    points: list[_Point] = field(default_factory=list)
    excursions: list[Excursion] = field(default_factory=list)
    opened: list[Excursion] = field(default_factory=list)
    # Excursions recorded before whose facts these readings change: their facts as they stood.
    changed: dict[int, dict] = field(default_factory=dict)

    def apply(self, actor: User | None, now: datetime) -> None:
        if not self.new:
            return
        self._load()
        for point in self.points:
            if point.row is None:
                continue
            if point.out and self._stale_extremes(point):
                # The thermometer was not reset: the extremes are the ones already judged; the reading
                # belongs to that excursion, and its current value (in range) may end it.
                point.out = False
                point.excursion_id = point.stale_of
            if point.out:
                self._out(point, actor, now)
            elif point.current_in:
                self._back_in(point)
        joined: dict[int, list[int]] = {}
        for point in self.points:
            if point.row is not None and point.excursion_id is not None:
                joined.setdefault(point.excursion_id, []).append(point.row.id)
        db.session.flush()
        for excursion_id, ids in joined.items():
            db.session.execute(sa.update(TemperatureReading).where(TemperatureReading.id.in_(ids))
                               .values(excursion_id=excursion_id).execution_options(synchronize_session=False))
        for excursion in self.opened:
            hold_stock(actor, excursion, self.location, now)
        for excursion in self.excursions:
            if excursion.id in self.changed:
                reopen_if_decided(actor, excursion, self.location, self.changed[excursion.id], now)
        _settle_empty([e for e in self.excursions if e.ended_at is not None and e.decided_at is None])

    def _load(self) -> None:
        first, last = self.new[0].measured_at, self.new[-1].measured_at
        new_ids = {r.id for r in self.new}
        reading = TemperatureReading
        columns = (reading.id, reading.measured_at, reading.celsius, reading.min_celsius, reading.max_celsius,
                   reading.excursion_id)
        where = reading.location_id == self.location.id
        around = [
            sa.select(*columns).where(where, reading.measured_at < first).order_by(reading.measured_at.desc()).limit(1),
            sa.select(*columns).where(where, reading.measured_at > last).order_by(reading.measured_at).limit(1),
        ]
        old = list(db.session.execute(sa.select(*columns).where(
            where, reading.measured_at >= first, reading.measured_at <= last)).all())
        for query in around:
            old.extend(db.session.execute(query).all())
        points = [self._point(r.measured_at, r.celsius, r.min_celsius, r.max_celsius, None, r.excursion_id)
                  for r in old if r.id not in new_ids]
        points += [self._point(r.measured_at, r.reading.celsius, r.reading.min_celsius, r.reading.max_celsius, r, None)
                   for r in self.new]
        # At one moment, a reading back in range comes after one out (the excursion ends there).
        self.points = sorted(points, key=lambda p: (p.at, not p.out, p.row is not None))
        for index, point in enumerate(self.points):
            point.index = index
        earliest = self.points[0].at
        self.excursions = list(db.session.scalars(
            sa.select(Excursion).where(Excursion.location_id == self.location.id,
                                       sa.or_(Excursion.ended_at.is_(None), Excursion.ended_at >= earliest))
            .order_by(Excursion.id).with_for_update()))
        self.excursions.sort(key=lambda e: e.started_at)

    def _point(self, at, celsius, low, high, row, excursion_id) -> _Point:
        loc = self.location
        current_in = within(loc, celsius)
        extremes_out = not (within(loc, low) and within(loc, high))
        lows = [v for v in (celsius, low) if v is not None]
        highs = [v for v in (celsius, high) if v is not None]
        return _Point(at, not current_in or extremes_out, current_in, extremes_out and current_in,
                      min(lows), max(highs), (low, high), row, excursion_id)

    def _before(self, point: _Point) -> _Point | None:
        return self.points[point.index - 1] if point.index > 0 else None

    def _stale_extremes(self, point: _Point) -> bool:
        """Only the min/max were out, and they are the very extremes of the reading before, which is in an
        excursion already: a thermometer not reset since, not a new excursion."""
        before = self._before(point)
        if not (point.extremes_out and before is not None and before.raw == point.raw):
            return False
        point.stale_of = before.excursion_id or before.stale_of
        return point.stale_of is not None

    def _out(self, point: _Point, actor: User | None, now: datetime) -> None:
        before = self._before(point)
        # It went out some time after the reading before: the earliest it can have begun (the uses made
        # from the stock since then are listed for review).
        start = before.at if before is not None else point.at - schedule_window(self.location)
        excursion = self._covering(start, point.at) or self._starting_after(point)
        if excursion is None:
            excursion = self._open(point, start, actor, now)
        else:
            worse = ((excursion.range_max is not None and point.high > max(excursion.high_celsius,
                                                                           excursion.range_max))
                     or (excursion.range_min is not None and point.low < min(excursion.low_celsius,
                                                                            excursion.range_min)))
            if excursion not in self.opened and (start < excursion.started_at or worse):
                self.changed.setdefault(excursion.id, {
                    "started_at": excursion.started_at, "ended_at": excursion.ended_at,
                    "low_celsius": excursion.low_celsius, "high_celsius": excursion.high_celsius})
            excursion.started_at = min(excursion.started_at, start)
            # Its extremes: the worst read on each side it went out (an in-range low is not its low).
            if point.low < excursion.low_celsius and not within(self.location, point.low):
                excursion.low_celsius = point.low
            if point.high > excursion.high_celsius and not within(self.location, point.high):
                excursion.high_celsius = point.high
        point.excursion_id = excursion.id
        if point.current_in and excursion.ended_at is None and not self._out_after(excursion, point):
            excursion.ended_at = point.at

    def _covering(self, start: datetime, at: datetime) -> Excursion | None:
        """The excursion whose span reaches [start, at]."""
        for excursion in self.excursions:
            if excursion.started_at <= at and (excursion.ended_at is None or excursion.ended_at > start):
                return excursion
        return None

    def _starting_after(self, point: _Point) -> Excursion | None:
        """An excursion that starts after this moment with no reading back in range in between: it began earlier."""
        following = self.points[point.index + 1:]
        for later in following:
            if later.excursion_id is not None:
                return next((e for e in self.excursions if e.id == later.excursion_id), None)
            if later.current_in and not later.out:
                return None
        return None

    def _out_after(self, excursion: Excursion, point: _Point) -> bool:
        return any(p.excursion_id == excursion.id for p in self.points[point.index + 1:])

    def _back_in(self, point: _Point) -> None:
        """A reading in range ends the excursion it follows (unless that excursion reads out again later)."""
        for excursion in self.excursions:
            lasting = excursion.ended_at is None or excursion.ended_at > point.at
            later = [p for p in self.points[point.index + 1:] if p.excursion_id == excursion.id and p.out]
            if excursion.started_at < point.at and lasting and not later:
                excursion.ended_at = point.at

    def _open(self, point: _Point, start: datetime, actor: User | None, now: datetime) -> Excursion:
        loc = self.location
        end = point.at if point.current_in else None
        if end is None:  # a reading back in range already recorded after it (a file uploaded late)
            end = next((p.at for p in self.points[point.index + 1:] if p.current_in and not p.out), None)
        excursion = Excursion(
            location_id=loc.id, site_id=loc.site_id, started_at=start, ended_at=end,
            low_celsius=point.low, high_celsius=point.high, range_min=loc.min_celsius, range_max=loc.max_celsius,
            source=point.row.reading.source, held_at=now, opened_by_id=actor.id if actor else None,
            # Over before it was recorded, or first read out more than a schedule's window ago: the uses
            # made from the stock meanwhile are listed for review.
            found_late=end is not None or now - point.at > schedule_window(loc))
        db.session.add(excursion)
        db.session.flush()
        self.excursions.append(excursion)
        self.opened.append(excursion)
        return excursion


# --- Holding the stock -------------------------------------------------------------------------------

def stock_at(location_ids: list[int], start: datetime | None = None, end: datetime | None = None
             ) -> tuple[list[Lot], list[Batch], list[Vial]]:
    """What an excursion holds: the live lots, batches and vials stored at these places at some moment
    between `start` and `end` (None: now), locked.

    Where an item was when is read from its moves (`stock_moves`): at `start` it was where its first
    move after `start` took it from (or where it is now, if it has not moved since); it was there too
    if a move brought it in before `end`. A vial on the road is held too (it goes on hold when it
    arrives). Child lots split off a lot there (sent to another site) after `start` are held
    (`_split_since`). A batch is held as a whole (its hold reaches its vials) when every vial of it still
    in use is here; otherwise each of its vials here is held on its own.
    """
    places = set(location_ids)
    candidates = {kind: set() for kind in MODELS}
    for kind, model in MODELS.items():
        candidates[kind] |= set(db.session.scalars(sa.select(model.id).where(model.location_id.in_(places))))
    if start is not None:
        for kind, entity_id in db.session.execute(sa.select(StockMove.entity_type, StockMove.entity_id).where(
                sa.or_(StockMove.from_location_id.in_(places), StockMove.to_location_id.in_(places)),
                StockMove.moved_at >= start)):
            candidates[kind].add(entity_id)
    exposed = _exposed(candidates, places, start, end)
    if start is not None:
        exposed["lot"] |= _split_since(exposed["lot"], start)

    def locked(model, kind, *where):
        if not exposed[kind]:
            return []
        rows = db.session.scalars(sa.select(model).where(model.id.in_(exposed[kind]), *where).order_by(model.id)
                                  .with_for_update().execution_options(populate_existing=True))
        return [row for row in rows if _born_by(row, end)]

    lots = locked(Lot, "lot", Lot.status.in_(_LOTS_LIVE), Lot.remaining > 0)
    live_vial = Vial.status.in_(_VIALS_LIVE)
    elsewhere = sa.select(Vial.id).where(Vial.batch_id == Batch.id, live_vial,
                                         Vial.location_id.not_in(location_ids)).exists()
    batches = locked(Batch, "batch", Batch.status.not_in(_BATCHES_DONE),
                     sa.or_(sa.not_(elsewhere), Batch.location_id.not_in(location_ids)))
    whole = {b.id for b in batches}
    vials = locked(Vial, "vial", Vial.status.in_((*_VIALS_LIVE, VialStatus.IN_TRANSIT)))
    return lots, batches, [v for v in vials if v.batch_id not in whole]


def _exposed(candidates: dict[str, set], places: set, start: datetime | None, end: datetime | None
             ) -> dict[str, set]:
    """Of the candidates, those at one of the places at some moment of [start, end] (one statement)."""
    if start is None:
        return candidates
    moves: dict[tuple, list] = {}
    for kind in MODELS:
        if not candidates[kind]:
            continue
        for row in db.session.execute(
                sa.select(StockMove.entity_type, StockMove.entity_id, StockMove.from_location_id,
                          StockMove.to_location_id, StockMove.moved_at)
                .where(StockMove.entity_type == kind, StockMove.entity_id.in_(candidates[kind]),
                       StockMove.moved_at >= start)
                .order_by(StockMove.moved_at, StockMove.id)):
            moves.setdefault((row.entity_type, row.entity_id), []).append(row)
    current = {}
    for kind, model in MODELS.items():
        if candidates[kind]:
            current.update({(kind, i): loc for i, loc in db.session.execute(
                sa.select(model.id, model.location_id).where(model.id.in_(candidates[kind])))})
    exposed = {kind: set() for kind in MODELS}
    for key, now_at in current.items():
        history = moves.get(key, [])
        at_start = history[0].from_location_id if history else now_at
        came_in = any(m.to_location_id in places and (end is None or m.moved_at <= end) for m in history)
        if at_start in places or came_in:
            exposed[key[0]].add(key[1])
    return exposed


def _split_since(lot_ids: set, start: datetime) -> set:
    """Child lots made from these lots' stock that left after `start` (the transfer's dispatch), received."""
    if not lot_ids:
        return set()
    return set(db.session.scalars(
        sa.select(TransferLine.child_lot_id).join(Transfer, Transfer.id == TransferLine.transfer_id)
        .where(TransferLine.lot_id.in_(lot_ids), TransferLine.child_lot_id.is_not(None),
               Transfer.dispatched_at > start)))


def carry_to_child_lot(actor: User | None, parent: Lot, child: Lot, dispatched_at: datetime, now: datetime) -> None:
    """A child lot received from a transfer takes its parent's excursion holds for the excursions that had
    begun before its stock was dispatched (it was in that fridge then), each with an item to decide."""
    rows = db.session.execute(
        sa.select(Excursion, ExcursionItem).join(ExcursionItem, ExcursionItem.excursion_id == Excursion.id)
        .where(ExcursionItem.entity_type == "lot", ExcursionItem.entity_id == parent.id,
               sa.or_(ExcursionItem.decision.is_(None), ExcursionItem.decision == "discard"),
               Excursion.started_at < dispatched_at)
        .order_by(Excursion.id)).all()
    for excursion, _ in rows:
        location = db.session.get(Location, excursion.location_id)
        _hold(actor, excursion, location, [child], [], [], now)
        excursion.decided_at = None


def _born_by(item, end: datetime | None) -> bool:
    """Whether the item existed by `end` (an item made later was never exposed)."""
    if end is None:
        return True
    born = getattr(item, "received_at", None) or getattr(item, "compounded_at", None) or getattr(
        item, "created_at", None)
    return born is None or born <= end


def hold_stock(actor: User | None, excursion: Excursion, location: Location, now: datetime) -> list[ExcursionItem]:
    """Put an excursion hold on everything stored there while it lasted (in the caller's transaction), one
    item row each."""
    lots, batches, vials = stock_at(affected_locations(location), excursion.started_at, excursion.ended_at)
    items = _hold(actor, excursion, location, lots, batches, vials, now)
    audit.record(actor, "excursion.opened", "excursion", excursion.id,
                 new={"location": location.code, "started_at": excursion.started_at,
                      "ended_at": excursion.ended_at, "low_celsius": excursion.low_celsius,
                      "high_celsius": excursion.high_celsius,
                      "range": range_text(excursion.range_min, excursion.range_max),
                      "found_late": excursion.found_late, "held": [i.code for i in items]})
    if not items:
        excursion.decided_at = now if excursion.ended_at is not None else None
    return items


def _hold_text(excursion: Excursion, location: Location) -> str:
    return (f"{excursion.code} at {location.code} ({location.name}), {_c(excursion.low_celsius)} to "
            f"{_c(excursion.high_celsius)} °C read against {range_text(excursion.range_min, excursion.range_max)}")


def _hold(actor, excursion, location, lots, batches, vials, now, *, rows: dict | None = None) -> list[ExcursionItem]:
    """An excursion hold on each item, and its item row (made, or `rows`' one given back its hold)."""
    detail = _hold_text(excursion, location)
    items = []
    for kind, found in (("lot", lots), ("batch", batches), ("vial", vials)):
        for item in found:
            hold = holds.place_hold(actor, item, "excursion", detail, source_type="excursion",
                                    source_id=excursion.id, at=now, reach_child_lots=False)
            row = (rows or {}).get((kind, item.id))
            if row is None:
                row = ExcursionItem(excursion_id=excursion.id, entity_type=kind, entity_id=item.id, code=item.code)
                db.session.add(row)
            row.hold_id = hold.id
            items.append(row)
    return items


def reopen_if_decided(actor: User | None, excursion: Excursion, location: Location, before: dict,
                      now: datetime) -> None:
    """Readings recorded late changed an excursion's facts (an earlier start, a higher peak): audited; and if
    items were already kept on the old facts, those still in use are held again and wait for a new decision."""
    after = {"started_at": excursion.started_at, "ended_at": excursion.ended_at,
             "low_celsius": excursion.low_celsius, "high_celsius": excursion.high_celsius}
    kept = list(db.session.scalars(sa.select(ExcursionItem).where(
        ExcursionItem.excursion_id == excursion.id, ExcursionItem.decision.in_(("keep", "keep_shortened")))
        .order_by(ExcursionItem.id).with_for_update()))
    reopened = []
    if excursion.started_at < before["started_at"]:
        # It began earlier: what was stored there since then and is not held for it yet is held now.
        known = set(db.session.execute(sa.select(ExcursionItem.entity_type, ExcursionItem.entity_id)
                                       .where(ExcursionItem.excursion_id == excursion.id)).all())
        lots, batches, vials = stock_at(affected_locations(location), excursion.started_at, excursion.ended_at)
        found = [[i for i in items if (kind, i.id) not in known]
                 for kind, items in (("lot", lots), ("batch", batches), ("vial", vials))]
        added = _hold(actor, excursion, location, *found, now)
        if added:
            excursion.decided_at = None
            reopened.extend(row.code for row in added)
    if kept:
        found = {kind: [r.entity_id for r in kept if r.entity_type == kind] for kind in MODELS}
        lots = _live(Lot, found["lot"], Lot.status.in_(_LOTS_LIVE))
        batches = _live(Batch, found["batch"], Batch.status.not_in(_BATCHES_DONE))
        vials = _live(Vial, found["vial"], Vial.status.in_((*_VIALS_LIVE, VialStatus.IN_TRANSIT)))
        rows = {(r.entity_type, r.entity_id): r for r in kept}
        for row in _hold(actor, excursion, location, lots, batches, vials, now, rows=rows):
            row.reason = (f"held again {now:%Y-%m-%d %H:%M} UTC: readings recorded late changed the excursion; "
                          f"earlier decision {row.decision.replace('_', ' ')}: {row.reason}")[:REASON_MAX]
            row.decision, row.decided_by_id, row.decided_at = None, None, None
            reopened.append(row.code)
        if reopened:
            excursion.decided_at = None
    audit.record(actor, "excursion.changed", "excursion", excursion.id, old=before,
                 new={**after, "held_again": reopened}, reason="readings recorded late")


def _live(model, ids, *where) -> list:
    if not ids:
        return []
    return list(db.session.scalars(sa.select(model).where(model.id.in_(ids), *where).order_by(model.id)
                                   .with_for_update().execution_options(populate_existing=True)))


def _settle_empty(excursions: list[Excursion]) -> None:
    """An excursion back in range with no item left to decide is decided (one that held nothing, too)."""
    if not excursions:
        return
    waiting = set(db.session.scalars(sa.select(ExcursionItem.excursion_id).distinct().where(
        ExcursionItem.excursion_id.in_([e.id for e in excursions]), ExcursionItem.decision.is_(None))))
    for excursion in excursions:
        if excursion.id not in waiting:
            excursion.decided_at = excursion.ended_at


def lock_excursions_holding(kind: str, item_id: int) -> None:
    """Lock, in id order, the excursions whose holds stand on an item (before the item itself: the order
    `decide` takes them in, so a decision and a hold release on one item queue instead of deadlocking)."""
    db.session.execute(sa.select(Excursion.id).where(Excursion.id.in_(
        sa.select(Hold.source_id).where(Hold.entity_type == kind, Hold.entity_id == item_id,
                                        Hold.source_type == "excursion", Hold.released_at.is_(None))))
        .order_by(Excursion.id).with_for_update())


# --- Deciding ----------------------------------------------------------------------------------------

def get_excursion(excursion_id, *, for_update: bool = False) -> Excursion:
    query = sa.select(Excursion).where(Excursion.id == excursion_id)
    if for_update:
        query = query.with_for_update().execution_options(populate_existing=True)
    excursion = db.session.scalar(query) if isinstance(excursion_id, int) else None
    if excursion is None:
        raise NotFound(f"There is no excursion {excursion_id}.")
    return excursion


def excursion_items(excursion_id: int) -> list[ExcursionItem]:
    return list(db.session.scalars(sa.select(ExcursionItem).where(ExcursionItem.excursion_id == excursion_id)
                                   .order_by(ExcursionItem.entity_type, ExcursionItem.code)))


@transactional
def decide(actor: User, excursion_id: int, decision: str, reason: str, password: str, *,
           items: list[str] | None = None, use_by=None) -> Excursion:
    """A pharmacist decides, by signature, what the held stock becomes: all undecided items, or the codes listed.

    `keep` releases the excursion's hold; `keep_shortened` releases it with an earlier use-by
    (`use_by`: a batch's BUD, a vial's own use-by; a lot keeps its supplier's expiry, so it is
    kept or discarded); `discard` writes the item off. Keeping an item still where the
    excursion lasts is refused (409): move it out first, or wait for a reading back in range.
    """
    if actor is None or actor.role != "pharmacist":
        raise NotAllowed("Only a pharmacist's signature can decide what an excursion's stock becomes.",
                         field="password")
    ensure_can(actor, "excursions.decide", "decide excursions")
    if decision not in DECISIONS:
        raise InvalidInput(f"Choose the decision: {', '.join(DECISIONS)}.", field="decision")
    reason = checked_text(reason, "reason", REASON_MAX,
                          required="Say why (for a keep: the stability data or the assessment).")
    new_use_by = _checked_use_by(use_by) if decision == "keep_shortened" else None
    if decision != "keep_shortened" and use_by not in (None, ""):
        raise InvalidInput("A new use-by goes with the decision keep_shortened only.", field="beyond_use_at")
    excursion = get_excursion(excursion_id)
    sites.ensure_at_site(actor, excursion.site_id, "decide its excursions")
    # Lock order: every excursion holding the chosen items (a discard settles them too), in id order,
    # then their item rows, then the items (as a hold release and a reading take them).
    excursion = _lock_excursions(excursion, _chosen(excursion, items, lock=False))
    chosen = _chosen(excursion, items)
    places = set(affected_locations(db.session.get(Location, excursion.location_id)))
    targets = []
    for row in chosen:
        item = holds.locked_item(row.entity_type, row.entity_id)
        _check_decision(excursion, row, item, decision, new_use_by, places)
        targets.append((row, item))
    pharmacist_signs(actor, password, "excursion decided", "excursion", excursion.id,
                     "decide what an excursion's stock becomes")
    now = utcnow()
    for row, item in targets:
        _apply_decision(actor, excursion, row, item, decision, reason, new_use_by, now)
    if not db.session.scalar(sa.select(ExcursionItem.id).where(
            ExcursionItem.excursion_id == excursion.id, ExcursionItem.decision.is_(None)).limit(1)):
        excursion.decided_at = now
    audit.record(actor, "excursion.decided", "excursion", excursion.id,
                 new={"decision": decision, "items": [row.code for row, _ in targets],
                      "use_by": new_use_by, "all_decided": excursion.decided_at is not None},
                 reason=reason)
    return excursion


def _checked_use_by(value) -> datetime:
    if value in (None, ""):
        raise InvalidInput("Give the new, earlier use-by (date and time with its offset).", field="beyond_use_at")
    moment, _ = parse_moment(value, field_name="beyond_use_at")
    if moment <= utcnow():
        raise InvalidInput("The new use-by is already past: discard the stock instead.", field="beyond_use_at")
    return moment


def _lock_excursions(excursion: Excursion, rows: list[ExcursionItem]) -> Excursion:
    """Lock the excursion and every other excursion holding these items, in id order; answer it read afresh."""
    holding = set()
    for kind in MODELS:
        ids = [r.entity_id for r in rows if r.entity_type == kind]
        if ids:
            holding |= set(db.session.scalars(sa.select(ExcursionItem.excursion_id).where(
                ExcursionItem.entity_type == kind, ExcursionItem.entity_id.in_(ids))))
    locked = {e.id: e for e in db.session.scalars(
        sa.select(Excursion).where(Excursion.id.in_(holding | {excursion.id})).order_by(Excursion.id)
        .with_for_update().execution_options(populate_existing=True))}
    return locked[excursion.id]


def _chosen(excursion: Excursion, codes: list[str] | None, *, lock: bool = True) -> list[ExcursionItem]:
    query = (sa.select(ExcursionItem).where(ExcursionItem.excursion_id == excursion.id)
             .order_by(ExcursionItem.entity_type, ExcursionItem.id))
    rows = list(db.session.scalars(query.with_for_update() if lock else query))
    if codes is None or codes == []:
        chosen = [r for r in rows if r.decision is None]
        if not chosen:
            raise InvalidState(f"Every item of {excursion.label} is decided.")
        return chosen
    by_code = {r.code: r for r in rows}
    chosen = []
    for code in dict.fromkeys(str(c).strip().upper() for c in codes):
        row = by_code.get(code)
        if row is None:
            raise InvalidInput(f"{code} was not held by {excursion.label}.", field="items")
        if row.decision is not None:
            raise InvalidState(f"{code} is already decided ({row.decision.replace('_', ' ')}).", field="items")
        chosen.append(row)
    return chosen


def _finished(kind: str, item) -> bool:
    """Nothing left to keep: written off, used up, rejected or discarded (by this excursion or another)."""
    if kind == "lot":
        return item.status in (LotStatus.DEPLETED, LotStatus.REJECTED) or item.remaining <= 0
    if kind == "batch":
        return item.status in _BATCHES_DONE
    return item.status in (VialStatus.SPENT, VialStatus.SAMPLED, VialStatus.DISCARDED)


def _check_decision(excursion, row, item, decision, use_by, places) -> None:
    if decision == "discard":
        return
    if _finished(row.entity_type, item):
        raise InvalidState(f"{row.code} is {item.status.replace('_', ' ')}: there is nothing to keep; record it "
                           "as discarded.", field="items")
    if excursion.ended_at is None and item.location_id in places:
        raise InvalidState(f"{row.code} is still where {excursion.label} lasts: move it to a place in range, "
                           "or wait for a reading back in range, before keeping it.", field="items")
    recall_id = holds.open_recall_of(row.entity_type, item.id)
    if recall_id:
        raise InvalidState(f"{row.code} is in open recall {recall_id}: its holds stay until the recall is closed.",
                           field="items", details={"recall_id": recall_id})
    if decision == "keep_shortened":
        if row.entity_type == "lot":
            raise InvalidState(f"{row.code} is a supplier's lot: it keeps its expiry date. Keep it or discard it.",
                               field="items")
        current = _use_by(row.entity_type, item)
        if use_by >= current:
            raise InvalidInput(f"The new use-by must be earlier than {row.code}'s, {_shown(current)}.",
                               field="beyond_use_at")


def _use_by(kind: str, item) -> datetime:
    if kind == "batch":
        return item.beyond_use_at
    batch = db.session.get(Batch, item.batch_id)
    return item.in_use_until(batch.beyond_use_at)


def _apply_decision(actor, excursion, row, item, decision, reason, use_by, now) -> None:
    kind = row.entity_type
    standing = standing_holds(kind, item.id)
    mine = [h for h in standing if h.source_type == "excursion" and h.source_id == excursion.id]
    why = f"{excursion.code} {decision.replace('_', ' ')}: {reason}"
    if decision == "keep_shortened":
        row.use_by_before = _use_by(kind, item)
        row.use_by_after = use_by
        if kind == "batch":
            with audit.change(actor, "batch.use_by_shortened", item, ("beyond_use_at",), reason=why):
                item.beyond_use_at = use_by
        else:
            with audit.change(actor, "vial.use_by_shortened", item, ("use_by_at",), reason=why):
                item.use_by_at = use_by
    if decision == "discard":
        if not _finished(kind, item):
            _write_off(actor, excursion, kind, item, reason, now)
        # Written off: its holds from other excursions are settled with it (nothing is left to keep there).
        others = _other_rows(excursion, kind, item.id)
        theirs = {r.hold_id for r in others}
        holds.lift_holds(actor, kind, item, standing, [h for h in standing if h in mine or h.id in theirs], why,
                         unhold=False)
        for other in others:
            other.decision, other.decided_by_id, other.decided_at = "discard", actor.id, now
            other.reason = f"written off on {excursion.code}: {reason}"[:REASON_MAX]
            audit.record(actor, "excursion.decided", "excursion", other.excursion_id,
                         new={"decision": "discard", "items": [other.code], "by": f"written off on {excursion.code}"},
                         reason=reason)
        _settle_empty([e for e in db.session.scalars(sa.select(Excursion).where(
            Excursion.id.in_({r.excursion_id for r in others}), Excursion.ended_at.is_not(None)))])
    else:
        holds.lift_holds(actor, kind, item, standing, mine, why)
    row.decision, row.reason, row.decided_by_id, row.decided_at = decision, reason, actor.id, now


def _other_rows(excursion: Excursion, kind: str, item_id: int) -> list[ExcursionItem]:
    """The item's undecided rows in other excursions."""
    return list(db.session.scalars(sa.select(ExcursionItem).where(
        ExcursionItem.entity_type == kind, ExcursionItem.entity_id == item_id,
        ExcursionItem.excursion_id != excursion.id, ExcursionItem.decision.is_(None))
        .order_by(ExcursionItem.id).with_for_update()))


def _write_off(actor, excursion, kind, item, reason, now) -> None:
    """Discard a held item: its remainder written off as waste with the excursion as the reference."""
    note = f"{excursion.code}: {reason}"[:NOTE_MAX]
    if kind == "lot":
        with audit.change(actor, "lot.written_off", item, ("remaining", "status"), reason=note):
            if item.remaining > 0:
                move_lot(item, "waste", -item.remaining, actor, reason="excursion", note=note,
                         reference_type="excursion", reference_id=excursion.id)
            deplete_if_empty(item, actor, reason=f"written off after {excursion.code}", at=now)
    elif kind == "batch":
        with audit.change(actor, "batch.discarded", item, ("status", "remaining_volume_ml"), reason=note):
            item.discard_reason = "excursion"
            item.status_reason = note
            transition(item, "discard", actor, reason=note, reference=f"excursion {excursion.id}", at=now)
            if item.remaining_volume_ml > 0:
                move_batch(item, "waste", -item.remaining_volume_ml, actor, reason="excursion", note=note,
                           reference_type="excursion", reference_id=excursion.id)
    else:
        batch = db.session.scalar(sa.select(Batch).where(Batch.id == item.batch_id))
        with audit.change(actor, "vial.discarded", item, ("status", "remaining_ml"), reason=note):
            if item.remaining_ml > 0:
                move_vial(item, batch, "waste", -item.remaining_ml, actor, reason="excursion", note=note,
                          reference_type="excursion", reference_id=excursion.id)
            change_status(item, VialStatus.DISCARDED, actor, reason=note, reference=f"excursion {excursion.id}",
                          at=now)
            item.status_reason = note
        deplete_if_empty(batch, actor, reason=f"its last vial was discarded ({item.code})", at=now)


# --- Reading back ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class UseForReview:
    kind: str  # "session": a patient treated from a held batch or vial; "batch": compounded from a held lot
    at: datetime
    item_code: str
    session_id: int | None = None
    patient_id: int | None = None
    voided: bool = False
    batch_code: str = ""
    vial_code: str = ""


def uses_for_review(excursion: Excursion, *, limit: int = 500) -> list[UseForReview]:
    """The uses made from the held items between the excursion's start and the hold: sessions from its
    batches and vials, batches compounded from its lots. Three statements."""
    rows = excursion_items(excursion.id)
    ids = {kind: [r.entity_id for r in rows if r.entity_type == kind] for kind in MODELS}
    codes = {(r.entity_type, r.entity_id): r.code for r in rows}
    start, end = excursion.started_at, excursion.held_at
    found: list[UseForReview] = []
    if ids["batch"] or ids["vial"]:
        used_from = sa.or_(SessionUse.batch_id.in_(ids["batch"]), SessionUse.vial_id.in_(ids["vial"]))
        query = (sa.select(TreatmentSession.id, TreatmentSession.performed_at, TreatmentSession.patient_id,
                           TreatmentSession.voided_at, SessionUse.batch_id, SessionUse.vial_id,
                           Batch.code.label("batch_code"), Vial.code.label("vial_code"))
                 .join(SessionUse, SessionUse.session_id == TreatmentSession.id)
                 .join(Batch, Batch.id == SessionUse.batch_id)
                 .outerjoin(Vial, Vial.id == SessionUse.vial_id)
                 .where(used_from, TreatmentSession.performed_at >= start, TreatmentSession.performed_at <= end)
                 .order_by(TreatmentSession.performed_at, TreatmentSession.id).limit(limit))
        for r in db.session.execute(query):
            held = codes.get(("vial", r.vial_id)) or codes.get(("batch", r.batch_id)) or r.batch_code
            found.append(UseForReview("session", r.performed_at, held, r.id, r.patient_id, r.voided_at is not None,
                                      r.batch_code, r.vial_code or ""))
    if ids["lot"]:
        query = (sa.select(Batch.code, Batch.compounded_at, BatchComponent.lot_id)
                 .join(BatchComponent, BatchComponent.batch_id == Batch.id)
                 .where(BatchComponent.lot_id.in_(ids["lot"]), Batch.compounded_at >= start,
                        Batch.compounded_at <= end)
                 .order_by(Batch.compounded_at).limit(limit))
        for r in db.session.execute(query):
            found.append(UseForReview("batch", r.compounded_at, codes[("lot", r.lot_id)], batch_code=r.code))
    return sorted(found, key=lambda u: u.at)[:limit]


def last_reading_at(location_id: int) -> datetime | None:
    return db.session.scalar(sa.select(sa.func.max(TemperatureReading.measured_at))
                             .where(TemperatureReading.location_id == location_id))


@dataclass(frozen=True)
class MissedReading:
    location: Location
    last_at: datetime | None
    due_at: datetime


def missed_readings(site_ids, *, now: datetime | None = None) -> list[MissedReading]:
    """Monitored locations of these sites (None: every site) with no reading within their schedule.

    One statement: each location's last reading read from the (location, time) index.
    """
    now = now or utcnow()
    last = (sa.select(sa.func.max(TemperatureReading.measured_at))
            .where(TemperatureReading.location_id == Location.id).scalar_subquery())
    query = (sa.select(Location, last.label("last_at"))
             .join(Site, Site.id == Location.site_id)
             .where(Location.active, Site.active,
                    sa.or_(Location.min_celsius.is_not(None), Location.max_celsius.is_not(None)))
             .order_by(Location.site_id, Location.code))
    if site_ids is not None:
        query = query.where(Location.site_id.in_(list(site_ids)))
    missed = []
    for location, last_at in db.session.execute(query):
        since = last_at or location.created_at
        due = since + overdue_after(location)
        if due <= now:
            missed.append(MissedReading(location, last_at, due))
    return missed


def held_by(kind: str, item_id: int) -> list[Hold]:
    """The excursion holds standing on an item (for its page)."""
    return [h for h in standing_holds(kind, item_id) if h.kind == "excursion"]


# --- Small helpers -----------------------------------------------------------------------------------

def _c(value: Decimal) -> str:
    return f"{Decimal(value).normalize():f}"


def _shown(moment: datetime) -> str:
    local = to_clinic(moment)
    return f"{local:%Y-%m-%d %H:%M} {local.tzname()}"



def record_release(actor: User, hold_ids: list[int], reason: str) -> list[ExcursionItem]:
    """A pharmacist releasing an excursion hold from the item's page keeps the item: the decision `keep`,
    with the release's reason, is recorded on the excursion's item (in the caller's transaction, after
    its signature), so the excursion's page and its state tell what became of it.

    The rule of `decide` holds here too: an item still where its excursion lasts is not kept (409).
    """
    rows = list(db.session.scalars(
        sa.select(ExcursionItem).where(ExcursionItem.hold_id.in_(list(hold_ids)), ExcursionItem.decision.is_(None))
        .order_by(ExcursionItem.excursion_id, ExcursionItem.id).with_for_update())) if hold_ids else []
    if not rows:
        return []
    excursions = {e.id: e for e in db.session.scalars(
        sa.select(Excursion).where(Excursion.id.in_({r.excursion_id for r in rows})).order_by(Excursion.id)
        .with_for_update().execution_options(populate_existing=True))}
    for row in rows:
        excursion = excursions[row.excursion_id]
        item = db.session.get(MODELS[row.entity_type], row.entity_id)
        if excursion.ended_at is None and item.location_id in affected_locations(
                db.session.get(Location, excursion.location_id)):
            raise InvalidState(f"{row.code} is still where {excursion.label} lasts: move it to a place in range, "
                               "or wait for a reading back in range, before releasing its hold.", field="hold")
    now = utcnow()
    for row in rows:
        row.decision, row.reason, row.decided_by_id, row.decided_at = "keep", reason, actor.id, now
    db.session.flush()
    for excursion in excursions.values():
        if not db.session.scalar(sa.select(ExcursionItem.id).where(
                ExcursionItem.excursion_id == excursion.id, ExcursionItem.decision.is_(None)).limit(1)):
            excursion.decided_at = now
        audit.record(actor, "excursion.decided", "excursion", excursion.id,
                     new={"decision": "keep", "items": [r.code for r in rows if r.excursion_id == excursion.id],
                          "by": "hold released", "all_decided": excursion.decided_at is not None},
                     reason=reason)
    return rows
