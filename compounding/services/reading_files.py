"""A data logger's file of readings (DESIGN 10.5): read, previewed, then imported whole or not at all.

A logger exports a CSV file: a header row, then one row per reading (its moment and its
temperature, sometimes the extremes since the last reset). `parse` reads it without the
database: the encoding (UTF-8 with or without BOM, else the Windows code page loggers' PC
software writes), the delimiter (`,` `;` or tab; with `;` or tab a decimal comma), the
header's names (a logger's own words: "Date/Time", "Temperature(°C)"...), and each row
through the same checks as a reading typed at the fridge (`cold_chain.checked_reading`).

A moment is ISO 8601 with its offset; local times are read only when the user names the
file's time zone, and a local time the clocks skipped or went through twice is refused:
which of the two hours would it be? One bad row refuses the file; the same moment twice
(in the file, or already stored from a logger) is skipped and counted.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, available_timezones

import sqlalchemy as sa
from flask import current_app

from ..extensions import db
from ..models import Excursion, ReadingImport, TemperatureReading, User
from . import audit, cold_chain, sites
from .access import ensure_can
from .clock import utcnow
from .cold_chain import ReadingIn
from .errors import DomainError, InvalidInput, NotFound
from .transaction import transactional

EXPECTED_HEADER = "timestamp,temperature"
DEFAULT_MAX_BYTES = 5 * 1024 * 1024
# Logger software may write lines about the device before the header row.
HEADER_SEARCH_ROWS = 10
# How many rows a refusal's message names (the rest are counted).
ROWS_NAMED = 20
SOURCE = "logger"
DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab"}

_SYNONYMS = {
    "timestamp": {"timestamp", "time stamp", "datetime", "date time", "date and time", "measured at",
                  "time", "date"},
    "temperature": {"temperature", "temp", "celsius", "degrees", "c", "value", "reading"},
    "min": {"min", "minimum", "min temperature", "min temp", "temperature min", "min celsius", "low"},
    "max": {"max", "maximum", "max temperature", "max temp", "temperature max", "max celsius", "high"},
}
_FAHRENHEIT = re.compile(r"°\s*f\b|\bdeg(?:rees)?\s*f\b|fahrenheit|\(f\)|\[f\]", re.IGNORECASE)
_UNIT = re.compile(r"\(.*?\)|\[.*?\]|°\s*c\b|\bdeg(?:rees)?\s*c\b|\bdegc\b", re.IGNORECASE)
_VALUE_UNIT = re.compile(r"(?<=\d)\s*°?\s*c$", re.IGNORECASE)


class FileTooLarge(DomainError):
    """An upload over READINGS_FILE_MAX_BYTES (413)."""

    status_code = 413


@dataclass(frozen=True)
class RowError:
    row: int  # the file's line number, as a text editor or a spreadsheet shows it
    message: str


@dataclass
class Parsed:
    layout: str  # e.g. "timestamp,temperature,min,max (semicolon, decimal comma)"
    rows: list[ReadingIn]
    errors: list[RowError]
    duplicates_in_file: int
    first_at: datetime | None
    last_at: datetime | None
    ignored_columns: list[str] = field(default_factory=list)


class RowsRefused(InvalidInput):
    """The file cannot be imported as it is: `errors` names every row at fault, nothing was written."""

    def __init__(self, errors: list[RowError]):
        named = "; ".join(f"row {e.row}: {e.message}" for e in errors[:ROWS_NAMED])
        more = f" (and {len(errors) - ROWS_NAMED} more)" if len(errors) > ROWS_NAMED else ""
        count = f"{len(errors)} rows have errors" if len(errors) > 1 else "A row has an error"
        super().__init__(f"Nothing was imported. {count}: {named}{more}.", field="file",
                         details={"errors": [{"row": e.row, "message": e.message} for e in errors]})
        self.errors = errors


# --- Reading the file (no database) -------------------------------------------------------------------

def decoded(data: bytes) -> str:
    """The file's text: UTF-8 (with or without BOM), UTF-16 with its BOM, else Windows-1252, else Latin-1."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            pass
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1")


def header_key(name: str) -> str:
    """A column's name without case, quotes, units or punctuation: "Temperature(°C)" -> "temperature"."""
    text = _UNIT.sub(" ", name.strip().lower())
    words = "".join(ch if ch.isalnum() else " " for ch in text).split()
    if len(words) > 1 and words[-1] == "c":
        words = words[:-1]
    return " ".join(words)


def map_header(cells: list[str]) -> tuple[dict[str, int], list[str]] | None:
    """Where each known column is (timestamp, temperature, and min/max if present), and the names not read.

    None when the row is not a header of a readings file.
    """
    positions: dict[str, int] = {}
    ignored = []
    for index, cell in enumerate(cells):
        key = header_key(cell)
        role = next((r for r, names in _SYNONYMS.items() if key in names and r not in positions), None)
        if role is not None:
            positions[role] = index
        elif cell.strip():
            ignored.append(cell.strip())
    if "timestamp" not in positions or "temperature" not in positions:
        return None
    return positions, ignored


def _header(lines: list[tuple[int, str]]) -> tuple[int, str, list[str], dict[str, int], list[str]] | None:
    """The header row among the first lines: its number, delimiter, cells, column positions and names not read."""
    for number, line in lines[:HEADER_SEARCH_ROWS]:
        for delimiter in DELIMITERS:
            if delimiter not in line and delimiter != ",":
                continue
            try:
                cells = next(csv.reader([line], delimiter=delimiter))
            except csv.Error:
                continue
            found = map_header(cells)
            if found is not None:
                return number, delimiter, cells, found[0], found[1]
    return None


def parse(data: bytes, *, zone: str | None = None, now: datetime | None = None) -> Parsed:
    """Read a logger's CSV file into checked readings, with every row's error (no database).

    `zone` (an IANA name) is the file's time zone for moments written without an offset.
    """
    text = decoded(data)
    if "\x00" in text:
        return _refused("This is not a text (CSV) file: export the logger's readings as CSV.")
    lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not lines:
        return _refused(f"The file is empty: it needs a header row ({EXPECTED_HEADER}) and one row per reading.")
    found = _header(lines)
    if found is None:
        return _wrong_columns(lines[0][1])
    header_row, delimiter, cells, positions, ignored = found
    temperature_name = cells[positions["temperature"]]
    if _FAHRENHEIT.search(temperature_name):
        return _refused(f"The temperatures are in °F ({temperature_name.strip()}): export them in °C.",
                        row=header_row)
    tz = _zone(zone) if zone else None
    body = [(n, line) for n, line in lines if n > header_row]
    rows, errors, duplicates, decimal_comma = _read_rows(body, delimiter, positions, tz, now or utcnow())
    if not rows and not errors:
        errors.append(RowError(header_row, "The file has its header row but no readings under it."))
    layout = ",".join(k for k in ("timestamp", "temperature", "min", "max") if k in positions)
    layout += f" ({DELIMITERS[delimiter]}-separated{', decimal comma' if decimal_comma else ''})"
    moments = [r.measured_at for r in rows]
    return Parsed(layout, rows, errors, duplicates, min(moments, default=None), max(moments, default=None),
                  ignored)


def _read_rows(body, delimiter, positions, tz, now) -> tuple[list[ReadingIn], list[RowError], int, bool]:
    """Each row under the header checked: the readings (a moment's repeats counted, not kept), the errors,
    the repeats, and whether a decimal comma was read."""
    rows: list[ReadingIn] = []
    errors: list[RowError] = []
    seen: dict[datetime, tuple] = {}
    duplicates, decimal_comma = 0, False
    reader = csv.reader(io.StringIO("\n".join(line for _, line in body)), delimiter=delimiter)
    for number, _ in body:
        try:
            cells = next(reader, None)
        except csv.Error as exc:
            errors.append(RowError(number, f"This row cannot be read as CSV ({exc})."))
            continue
        if cells is None:
            break
        if not any(c.strip() for c in cells):
            continue
        try:
            reading = _reading(cells, positions, delimiter, tz, now, number)
        except InvalidInput as exc:
            errors.append(RowError(number, exc.message))
            continue
        decimal_comma = decimal_comma or "," in (_cell(cells, positions, "temperature") or "")
        values = (reading.celsius, reading.min_celsius, reading.max_celsius)
        if reading.measured_at in seen:
            first_row, first_values = seen[reading.measured_at]
            if first_values != values:
                # Two temperatures for one moment: which one the fridge had cannot be guessed.
                errors.append(RowError(number, f"The same moment as row {first_row} with another temperature."))
            else:
                duplicates += 1
            continue
        seen[reading.measured_at] = (number, values)
        rows.append(reading)
    return rows, errors, duplicates, decimal_comma


def _refused(message: str, row: int = 1) -> Parsed:
    return Parsed("", [], [RowError(row, message)], 0, None, None)


def _wrong_columns(first_line: str) -> Parsed:
    found = first_line.strip()
    shown = found if len(found) <= 120 else found[:117] + "..."
    return _refused(f'The columns are not those of a readings file: the header row must be "{EXPECTED_HEADER}" '
                    f'(optionally with "min,max"), and this file starts with "{shown}".')


@functools.cache
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones())


def _zone(name: str) -> ZoneInfo:
    if name.strip() not in _zone_names():
        raise InvalidInput(f"{name[:64]!r} is not a time zone (e.g. Europe/Paris).", field="timezone")
    return ZoneInfo(name.strip())


def checked_zone(name: str | None) -> str | None:
    """An IANA zone name as given, or None; an unknown name is refused (422)."""
    if name is None or not name.strip():
        return None
    _zone(name)
    return name.strip()


def _cell(cells: list[str], positions: dict[str, int], key: str) -> str | None:
    index = positions.get(key)
    if index is None:
        return None
    return cells[index].strip() if index < len(cells) else ""


def _value(text: str | None, delimiter: str) -> str | None:
    if text is None:
        return None
    text = _VALUE_UNIT.sub("", text.strip())
    if "," in text and delimiter == ",":
        raise InvalidInput(f"{text!r} is not a temperature: write a decimal point in a comma-separated file.")
    return text


def _reading(cells, positions, delimiter, tz, now, number) -> ReadingIn:
    moment = _moment(_cell(cells, positions, "timestamp") or "", tz)
    return cold_chain.checked_reading(
        measured_at=moment, celsius=_value(_cell(cells, positions, "temperature"), delimiter), source=SOURCE,
        min_celsius=_value(_cell(cells, positions, "min"), delimiter),
        max_celsius=_value(_cell(cells, positions, "max"), delimiter), now=now, row=number)


def _moment(text: str, tz: ZoneInfo | None):
    """The text as given when it has an offset; a local time placed in `tz`, refused at a change of the clocks."""
    if not text:
        raise InvalidInput("The timestamp is empty.")
    try:
        value = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
        if value.utcoffset() is not None:
            value.astimezone(UTC)  # a moment at the calendar's very edge has no UTC time
            return value
    except (ValueError, OverflowError):
        raise InvalidInput(f"{text[:40]!r} is not an ISO 8601 date and time (e.g. 2026-11-01T08:00:00+01:00)."
                           ) from None
    if tz is None:
        raise InvalidInput(f"{text} has no UTC offset: state the file's time zone (its times are then read as "
                           "local times there), or export the times with their offset "
                           "(e.g. 2026-11-01T08:00:00+01:00).")
    return cold_chain.local_moment(value, tz, text=text, hint="Export the times with their offset.")


# --- Against the database ------------------------------------------------------------------------------

def max_bytes() -> int:
    return int(current_app.config.get("READINGS_FILE_MAX_BYTES") or DEFAULT_MAX_BYTES)


def ensure_size(data: bytes) -> None:
    limit = max_bytes()
    if len(data) > limit:
        raise FileTooLarge(f"The file is larger than {_size(limit)}: export a shorter period (a month at a time).",
                           field="file")


def _size(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.3g} MB"
    return f"{n / 1024:.3g} kB" if n >= 1024 else f"{n:,} bytes"


def file_location(actor: User, location_id: int, *, lock: bool = False):
    """The monitored location a file is for: 404 outside the actor's sites, 403 where they may not act."""
    visible = sites.visible_site_ids(actor)
    if visible is not None and sites.get_location(location_id).site_id not in visible:
        raise NotFound(f"There is no location {location_id}.")
    location = cold_chain.monitored_location(location_id, lock=lock)
    sites.ensure_at_site(actor, location.site_id, "import its readings")
    return location


def stored_moments(location_id: int, parsed: Parsed) -> set[datetime]:
    """The file's moments already stored from a logger for this location: one statement over its span."""
    if parsed.first_at is None:
        return set()
    return set(db.session.scalars(sa.select(TemperatureReading.measured_at).where(
        TemperatureReading.location_id == location_id, TemperatureReading.source == SOURCE,
        TemperatureReading.measured_at >= parsed.first_at, TemperatureReading.measured_at <= parsed.last_at)))


@dataclass
class Preview:
    """What an import of this file would do, shown before anything is written."""

    location: object
    parsed: Parsed
    sha256: str
    filename: str
    zone: str | None
    already_stored: int
    out_of_range: int
    low: object
    high: object

    @property
    def to_import(self) -> int:
        return len(self.parsed.rows) - self.already_stored

    @property
    def ok(self) -> bool:
        return not self.parsed.errors


def preview(actor: User, location_id: int, data: bytes, filename: str, *, zone: str | None = None) -> Preview:
    """Read and check a file against its location without writing anything."""
    ensure_can(actor, "readings.import", "import a logger's readings")
    ensure_size(data)
    location = file_location(actor, location_id)
    zone = checked_zone(zone)
    parsed = parse(data, zone=zone)
    stored = stored_moments(location.id, parsed) if not parsed.errors else set()
    values = [v for r in parsed.rows for v in (r.celsius, r.min_celsius, r.max_celsius) if v is not None]
    out = sum(1 for r in parsed.rows if not all(cold_chain.within(location, v)
                                               for v in (r.celsius, r.min_celsius, r.max_celsius)))
    return Preview(location, parsed, hashlib.sha256(data).hexdigest(), filename, zone,
                   sum(1 for r in parsed.rows if r.measured_at in stored), out,
                   min(values, default=None), max(values, default=None))


@transactional
def import_file(actor: User, location_id: int, data: bytes, filename: str, *,
                zone: str | None = None) -> ReadingImport:
    """Import a logger's file for a location, whole or not at all.

    Any row in error refuses the file (422, naming the rows). Moments already stored from a
    logger for this location, or repeated in the file, are skipped and counted. The rest go
    through `cold_chain.add_readings` (excursions opened, found late, stock held) with one
    import row and one audit row, in one transaction.
    """
    ensure_can(actor, "readings.import", "import a logger's readings")
    ensure_size(data)
    zone = checked_zone(zone)
    # The location's row lock puts this file in a queue behind any other reading of the fridge.
    location = file_location(actor, location_id, lock=True)
    parsed = parse(data, zone=zone)
    if parsed.errors:
        raise RowsRefused(parsed.errors)
    stored = stored_moments(location.id, parsed)
    new = [r for r in parsed.rows if r.measured_at not in stored]
    filename = shown_filename(filename)
    record = ReadingImport(location_id=location.id, filename=filename, sha256=hashlib.sha256(data).hexdigest(),
                           rows=len(parsed.rows) + parsed.duplicates_in_file, imported=len(new),
                           duplicates=len(parsed.rows) - len(new) + parsed.duplicates_in_file,
                           first_at=parsed.first_at, last_at=parsed.last_at, uploaded_by_id=actor.id)
    db.session.add(record)
    db.session.flush()
    if new:
        cold_chain.add_readings(actor, location, new, import_id=record.id)
    excursions = sorted(db.session.scalars(sa.select(TemperatureReading.excursion_id).distinct().where(
        TemperatureReading.import_id == record.id, TemperatureReading.excursion_id.is_not(None))))
    audit.record(actor, "readings.imported", "location", location.id,
                 new={"import_id": record.id, "file": filename, "sha256": record.sha256, "rows": record.rows,
                      "imported": record.imported, "duplicates": record.duplicates, "first_at": record.first_at,
                      "last_at": record.last_at, "timezone": zone, "excursions": excursions})
    return record


def shown_filename(name: str | None) -> str:
    """The upload's own name, without a browser's path or characters that cannot be stored."""
    name = "".join(ch for ch in (name or "").replace("\\", "/").rsplit("/", 1)[-1] if ch.isprintable()).strip()
    return name[:255] or "readings.csv"


def import_excursions(import_id: int) -> list[Excursion]:
    """The excursions an import's readings opened or joined, in time order (one statement)."""
    touched = sa.select(TemperatureReading.excursion_id).where(TemperatureReading.import_id == import_id,
                                                               TemperatureReading.excursion_id.is_not(None))
    return list(db.session.scalars(sa.select(Excursion).where(Excursion.id.in_(touched))
                                   .order_by(Excursion.started_at)))
