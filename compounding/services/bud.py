"""Beyond-use dates: the USP <797> (2023) table as data, and the BUD rule.

Values as commonly published; the clinic's pharmacist confirms them.
Bump BUD_TABLE_VERSION whenever a value changes: batches record the version they used.
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo

from .clock import end_of_clinic_day

BUD_TABLE_VERSION = "USP797-2023.1"
STORAGE_TEMPERATURES = ("room", "fridge", "freezer")

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


@dataclass(frozen=True)
class BudCategory:
    key: str
    label: str
    room: timedelta
    fridge: timedelta
    freezer: timedelta | None  # None: not allowed frozen


BUD_TABLE: dict[str, BudCategory] = {c.key: c for c in (
    BudCategory("immediate_use", "Immediate use", 4 * HOUR, 4 * HOUR, 4 * HOUR),
    BudCategory("category_1", "Category 1", 12 * HOUR, 24 * HOUR, None),
    BudCategory("category_2_aseptic_nonsterile_components",
                "Category 2, aseptic, any non-sterile starting component, no sterility test",
                1 * DAY, 4 * DAY, 45 * DAY),
    BudCategory("category_2_aseptic_sterile_components",
                "Category 2, aseptic, only sterile starting components, no sterility test",
                4 * DAY, 10 * DAY, 45 * DAY),
    BudCategory("category_2_aseptic_sterility_tested",
                "Category 2, aseptic, sterility test passed", 30 * DAY, 45 * DAY, 60 * DAY),
    BudCategory("category_2_terminal", "Category 2, terminally sterilized, no sterility test",
                14 * DAY, 28 * DAY, 45 * DAY),
    BudCategory("category_2_terminal_sterility_tested",
                "Category 2, terminally sterilized, sterility test passed", 45 * DAY, 60 * DAY, 90 * DAY),
    BudCategory("category_3_aseptic_tested", "Category 3, aseptic, tested", 60 * DAY, 90 * DAY, 120 * DAY),
    BudCategory("category_3_terminal_tested", "Category 3, terminally sterilized, tested",
                90 * DAY, 120 * DAY, 180 * DAY),
)}


def storage_temperature(storage: str) -> str:
    """Formula storage as a BUD column: light protection does not change the temperature."""
    return "fridge" if storage == "fridge" else "freezer" if storage == "freezer" else "room"


def table_duration(category: str, storage: str) -> timedelta | None:
    """The table's maximum duration, or None when the category cannot be stored that way."""
    row = BUD_TABLE[category]
    return getattr(row, storage_temperature(storage))


def bud_duration(category: str, storage: str, shorter_hours: int | None = None) -> timedelta:
    """The formula's duration: the table's, or a shorter one the formula sets (never longer)."""
    maximum = table_duration(category, storage)
    if maximum is None:
        raise ValueError(f"{BUD_TABLE[category].label} cannot be stored frozen")
    if shorter_hours is not None:
        return min(maximum, timedelta(hours=shorter_hours))
    return maximum


def beyond_use_at(compounded_at: datetime, duration: timedelta, component_expiries: list[date],
                  zone: tzinfo | None = None) -> datetime:
    """BUD = min(compounded at + duration, end of the earliest component expiry day).

    Days end in the clinic's time zone (`zone` when given, for a rule judged without the application).
    """
    candidates = [compounded_at + duration]
    earliest = min(component_expiries, default=None)
    # An expiry days after the duration's end cannot shorten it; skipping it also keeps a
    # stored 9999-12-31 from asking for the day after the calendar's last.
    if earliest is not None and earliest <= (compounded_at + duration).date() + timedelta(days=1):
        candidates.append(end_of_clinic_day(earliest, zone))
    return min(candidates)


# Categories whose duration rests on a passed sterility test (the batch waits for the result).
TESTED_CATEGORIES = frozenset({
    "category_2_aseptic_sterility_tested", "category_2_terminal_sterility_tested",
    "category_3_aseptic_tested", "category_3_terminal_tested",
})
# Categories that assume every starting component is sterile.
STERILE_ONLY_CATEGORIES = frozenset({"category_2_aseptic_sterile_components"})
IMMEDIATE_USE = "immediate_use"
# USP <797> immediate use: one unit, from at most three sterile products, given within 4 h of the start.
IMMEDIATE_USE_MAX_PRODUCTS = 3
IMMEDIATE_USE_UNITS = 1
# A compendial (USP <71>) sterility test reads its result no earlier than 14 days after sampling.
COMPENDIAL_STERILITY_DAYS = 14


def required_tests(category: str, all_sterile: bool) -> tuple[str, ...]:
    """The tests a batch of `category` owes before use: sterility, plus endotoxins when a component was non-sterile."""
    if category not in TESTED_CATEGORIES:
        return ()
    return ("sterility",) if all_sterile else ("sterility", "endotoxin")


def immediate_use_refusals(units: int | None, products: list[tuple[str, bool]]) -> list[str]:
    """Why an immediate-use preparation breaks its limits; `products` is (name, sterile) per component."""
    reasons = []
    if units is not None and units != IMMEDIATE_USE_UNITS:
        reasons.append(f"immediate use is one unit at a time ({units} asked)")
    if len(products) > IMMEDIATE_USE_MAX_PRODUCTS:
        reasons.append(f"immediate use takes at most {IMMEDIATE_USE_MAX_PRODUCTS} sterile products "
                       f"({len(products)} components)")
    unsterile = [name for name, sterile in products if not sterile]
    if unsterile:
        reasons.append("immediate use takes sterile products only: " + ", ".join(unsterile) + " is not sterile")
    return reasons


def last_usable_minute(beyond_use_at: datetime) -> datetime:
    """The last whole minute before the (exclusive) beyond-use instant, in UTC: what "Use by" prints."""
    instant = beyond_use_at if beyond_use_at.tzinfo else beyond_use_at.replace(tzinfo=UTC)
    return instant.astimezone(UTC).replace(second=0, microsecond=0) - timedelta(minutes=1)
