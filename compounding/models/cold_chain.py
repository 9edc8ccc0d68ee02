"""Cold chain: temperature readings of storage locations, and the excursions they open (DESIGN 10.5).

A location with an allowed range (`locations.min_celsius`/`max_celsius`) is read on a
schedule (`readings_per_day`, twice a day by default). A reading out of range opens an
excursion, which puts every lot, batch and vial stored there on hold in the same
transaction; a pharmacist decides each item (`keep`, `keep_shortened`, `discard`).
"""

from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from ._common import one_of, utcnow

READING_SOURCES = ("manual", "logger", "sensor")
# A thermometer's plausible span: anything outside is a typing or wiring error, refused.
CELSIUS_MIN, CELSIUS_MAX = Decimal("-90"), Decimal("60")
# Readings keep two decimals (loggers give one or two).
Celsius = sa.Numeric(5, 2, asdecimal=True)
DECISIONS = ("keep", "keep_shortened", "discard")
EXCURSION_ITEM_TYPES = ("lot", "batch", "vial")
# The default schedule: a fridge log read morning and evening.
DEFAULT_READINGS_PER_DAY = 2


class TemperatureReading(db.Model):
    """One reading of a location's thermometer: by hand, from a data logger's file, or from a sensor."""

    __tablename__ = "temperature_readings"
    __table_args__ = (
        one_of("source", READING_SOURCES, "source_known"),
        # The same location, moment and source twice is a duplicate (409; skipped with a count in a file).
        sa.UniqueConstraint("location_id", "measured_at", "source", name="uq_readings_once"),
        # The month report and the last reading of a location read this index in time order.
        sa.Index("ix_readings_location_measured", "location_id", "measured_at"),
        sa.CheckConstraint(f"celsius >= {CELSIUS_MIN} AND celsius <= {CELSIUS_MAX}", name="celsius_plausible"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    location_id: Mapped[int] = mapped_column(sa.ForeignKey("locations.id"))
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("sites.id"))
    # When it was measured (UTC), and the UTC offset it was given with (minutes), so it shows as taken.
    measured_at: Mapped[datetime]
    utc_offset_minutes: Mapped[int] = mapped_column(default=0)
    celsius: Mapped[Decimal] = mapped_column(Celsius)
    # A min/max thermometer's extremes since it was last reset (optional).
    min_celsius: Mapped[Decimal | None] = mapped_column(Celsius)
    max_celsius: Mapped[Decimal | None] = mapped_column(Celsius)
    source: Mapped[str] = mapped_column(sa.String(10), default="manual")
    # Judged against the location's range when recorded (a later edit of the range does not rewrite it).
    in_range: Mapped[bool]
    excursion_id: Mapped[int | None] = mapped_column(sa.ForeignKey("excursions.id"), index=True)
    import_id: Mapped[int | None] = mapped_column(sa.ForeignKey("reading_imports.id"), index=True)
    recorded_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    # The sensor's API token, when a sensor sent it.
    token_id: Mapped[int | None] = mapped_column(sa.ForeignKey("api_tokens.id"))
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)
    note: Mapped[str] = mapped_column(sa.Text, default="")


class ReadingImport(db.Model):
    """A data logger's file, imported whole or not at all."""

    __tablename__ = "reading_imports"

    id: Mapped[int] = mapped_column(primary_key=True)
    location_id: Mapped[int] = mapped_column(sa.ForeignKey("locations.id"), index=True)
    filename: Mapped[str] = mapped_column(sa.String(255), default="")
    sha256: Mapped[str] = mapped_column(sa.String(64))
    rows: Mapped[int]
    imported: Mapped[int]
    duplicates: Mapped[int] = mapped_column(default=0)
    first_at: Mapped[datetime | None]
    last_at: Mapped[datetime | None]
    uploaded_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    uploaded_at: Mapped[datetime] = mapped_column(default=utcnow)


class Excursion(db.Model):
    """A time a location spent out of its range: from its first reading out to the first back in."""

    __tablename__ = "excursions"
    __table_args__ = (
        # Open excursions of a location (no stock moves in; readings join them).
        sa.Index("ix_excursions_location_started", "location_id", "started_at"),
        sa.Index("ix_excursions_site_open", "site_id", "ended_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    location_id: Mapped[int] = mapped_column(sa.ForeignKey("locations.id"))
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("sites.id"))
    started_at: Mapped[datetime]
    # The first reading back in range; none while it lasts.
    ended_at: Mapped[datetime | None]
    # The extremes read during it.
    low_celsius: Mapped[Decimal] = mapped_column(Celsius)
    high_celsius: Mapped[Decimal] = mapped_column(Celsius)
    # The range it was judged against, as it stood when it opened.
    range_min: Mapped[Decimal | None] = mapped_column(Celsius)
    range_max: Mapped[Decimal | None] = mapped_column(Celsius)
    source: Mapped[str] = mapped_column(sa.String(10))
    # When the stock was held (the excursion was recorded), and by whom (none: a sensor's user).
    held_at: Mapped[datetime] = mapped_column(default=utcnow)
    opened_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    # Found after the fact (a logger file): the uses between its start and the hold are listed for review.
    found_late: Mapped[bool] = mapped_column(default=False)
    # Every item decided.
    decided_at: Mapped[datetime | None]

    @property
    def code(self) -> str:
        return f"E{self.id:06d}"

    @property
    def label(self) -> str:
        return f"Excursion {self.code}"

    @property
    def is_open(self) -> bool:
        return self.ended_at is None

    @property
    def state(self) -> str:
        """`out_of_range` while it lasts, then `awaiting_decision` until every item is decided, then `decided`."""
        if self.ended_at is None:
            return "out_of_range"
        return "decided" if self.decided_at is not None else "awaiting_decision"


class ExcursionItem(db.Model):
    """A lot, batch or vial stored where an excursion happened: its hold and the pharmacist's decision."""

    __tablename__ = "excursion_items"
    __table_args__ = (
        one_of("entity_type", EXCURSION_ITEM_TYPES, "entity_type_known"),
        sa.CheckConstraint("decision IS NULL OR decision IN ('keep', 'keep_shortened', 'discard')",
                           name="decision_known"),
        sa.UniqueConstraint("excursion_id", "entity_type", "entity_id", name="uq_excursion_items_once"),
        sa.Index("ix_excursion_items_entity", "entity_type", "entity_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    excursion_id: Mapped[int] = mapped_column(sa.ForeignKey("excursions.id"))
    entity_type: Mapped[str] = mapped_column(sa.String(10))
    entity_id: Mapped[int]
    code: Mapped[str] = mapped_column(sa.String(24))
    hold_id: Mapped[int | None] = mapped_column(sa.ForeignKey("holds.id"))
    decision: Mapped[str | None] = mapped_column(sa.String(20))
    reason: Mapped[str] = mapped_column(sa.Text, default="")
    # keep_shortened: the use-by before and after.
    use_by_before: Mapped[datetime | None]
    use_by_after: Mapped[datetime | None]
    decided_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    decided_at: Mapped[datetime | None]


class StockMove(db.Model):
    """A lot, batch or vial leaving one location for another (`sites.place`), so that an excursion found
    late holds what was stored there while it lasted, not only what is there now. An item made at a
    location has no row for it: it was there from its creation."""

    __tablename__ = "stock_moves"
    __table_args__ = (
        one_of("entity_type", EXCURSION_ITEM_TYPES, "entity_type_known"),
        sa.Index("ix_stock_moves_from_moved", "from_location_id", "moved_at"),
        sa.Index("ix_stock_moves_to_moved", "to_location_id", "moved_at"),
        sa.Index("ix_stock_moves_entity", "entity_type", "entity_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    entity_type: Mapped[str] = mapped_column(sa.String(10))
    entity_id: Mapped[int]
    from_location_id: Mapped[int] = mapped_column(sa.ForeignKey("locations.id"))
    to_location_id: Mapped[int] = mapped_column(sa.ForeignKey("locations.id"))
    moved_at: Mapped[datetime] = mapped_column(default=utcnow)
