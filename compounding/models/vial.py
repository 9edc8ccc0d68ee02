"""Vials: every unit of a batch has its own code, label and status.

A batch of N units has N vials `<batch code>-NN`. The batch keeps its own status (verified,
held, recalled) and its volume (the sum of its vials'); a vial adds what happened to that
one container: sealed, first punctured, spent, taken as a sample, discarded.
"""

from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from ._common import one_of, transition, utcnow
from .batch import Batch
from .site import main_location_id, main_site_id


class VialStatus(StrEnum):
    """Where a vial stands; each member equals the string stored in `vials.status`."""

    SEALED = "sealed"
    OPEN = "open"
    SPENT = "spent"
    SAMPLED = "sampled"
    ON_HOLD = "on_hold"
    RECALLED = "recalled"
    DISCARDED = "discarded"
    IN_TRANSIT = "in_transit"


VIAL_STATUSES = tuple(VialStatus)
# Single-dose (the default): one patient in one session, then spent. Multiple-dose: punctured
# once, usable by several patients until its in-use deadline.
DOSES = ("single", "multiple")
# USP <797>: a multiple-dose container is used for at most 28 days after it is first entered.
MAX_IN_USE_HOURS = 672
# The statuses a hold suspends; the last is where a vial returns when its history says nothing.
VIAL_HOLDABLE = (VialStatus.OPEN, VialStatus.SEALED)
# Statuses from which nothing is taken again: a void never brings these back.
VIAL_FINISHED = (VialStatus.SPENT, VialStatus.SAMPLED, VialStatus.DISCARDED)
VIAL_TRANSITIONS = {
    # The first use: a multiple-dose vial records its puncture and counts its in-use period from it.
    "open": transition({VialStatus.SEALED}, VialStatus.OPEN, "{label} is {status}; only a sealed vial is opened."),
    # A single-dose vial when its session is saved; any vial emptied or written off.
    "spend": transition({VialStatus.SEALED, VialStatus.OPEN, VialStatus.ON_HOLD, VialStatus.RECALLED},
                        VialStatus.SPENT, "{label} is {status}."),
    "sample": transition({VialStatus.SEALED}, VialStatus.SAMPLED,
                         "{label} is {status}; only a sealed vial can be taken as a test sample."),
    "hold": transition(VIAL_HOLDABLE, VialStatus.ON_HOLD, "{label} is {status}."),
    "unhold": transition({VialStatus.ON_HOLD}, None, "{label} is {status}, not on hold."),
    "recall": transition({VialStatus.SEALED, VialStatus.OPEN, VialStatus.ON_HOLD}, VialStatus.RECALLED,
                         "{label} is {status}."),
    "discard": transition({VialStatus.SEALED, VialStatus.OPEN, VialStatus.ON_HOLD, VialStatus.RECALLED,
                           VialStatus.IN_TRANSIT},
                          VialStatus.DISCARDED, "{label} is already {status}."),
    # Scanned out on a transfer: usable nowhere until scanned in at the destination.
    "dispatch": transition({VialStatus.SEALED, VialStatus.OPEN}, VialStatus.IN_TRANSIT,
                           "{label} is {status}; only a sealed or open vial is sent."),
    # Scanned in: back to the status it left with (`to` is read from its history).
    "arrive": transition({VialStatus.IN_TRANSIT}, None, "{label} is {status}, not in transit."),
    # history.deplete_if_empty: a vial with nothing left is spent.
    "deplete": transition({VialStatus.SEALED, VialStatus.OPEN, VialStatus.ON_HOLD}, VialStatus.SPENT,
                          "{label} is {status}."),
}


class Vial(db.Model):
    __tablename__ = "vials"
    __table_args__ = (
        sa.UniqueConstraint("batch_id", "number"),
        one_of("status", VIAL_STATUSES, "status_known"),
        one_of("dose", DOSES, "dose_known"),
        sa.CheckConstraint("volume_ml > 0", name="volume_positive"),
        sa.CheckConstraint("remaining_ml >= 0", name="remaining_not_negative"),
        sa.CheckConstraint("remaining_ml <= volume_ml", name="remaining_within_volume"),
        sa.CheckConstraint("number > 0", name="number_positive"),
        sa.CheckConstraint(f"in_use_hours IS NULL OR (in_use_hours > 0 AND in_use_hours <= {MAX_IN_USE_HOURS})",
                           name="in_use_hours_range"),
        # A use by batch code takes the open vial, else the lowest-numbered sealed one.
        sa.Index("ix_vials_batch_status_number", "batch_id", "status", "number"),
        sa.ForeignKeyConstraint(["location_id", "site_id"], ["locations.id", "locations.site_id"],
                                name="fk_vials_location_at_site"),
        # A site's vials of a batch (the batch page and a use by batch code, scoped to a site).
        sa.Index("ix_vials_site_batch", "site_id", "batch_id"),
        sa.Index("ix_vials_location", "location_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[int] = mapped_column(sa.ForeignKey("batches.id"))
    number: Mapped[int]
    code: Mapped[str] = mapped_column(sa.String(24), unique=True)
    # Copied from the formula version at compounding (multiple-dose: its in-use period in hours).
    dose: Mapped[str] = mapped_column(sa.String(10), default="single")
    in_use_hours: Mapped[int | None]
    volume_ml: Mapped[Decimal]
    remaining_ml: Mapped[Decimal]
    status: Mapped[str] = mapped_column(sa.String(20), default=VialStatus.SEALED)
    status_reason: Mapped[str] = mapped_column(sa.Text, default="")
    # Made by the migration for a batch compounded before vials: its past uses stay pooled on the batch.
    legacy: Mapped[bool] = mapped_column(default=False)
    # The first use (the session's performed_at), and the session it served first.
    punctured_at: Mapped[datetime | None]
    first_session_id: Mapped[int | None] = mapped_column(sa.ForeignKey("treatment_sessions.id"))
    spent_at: Mapped[datetime | None]
    # A use-by earlier than its batch's, set when a pharmacist kept it after a temperature excursion.
    use_by_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Where it is: a location, and that location's site (a pair the database keeps consistent).
    location_id: Mapped[int] = mapped_column(default=main_location_id())
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("sites.id"), default=main_site_id())

    batch: Mapped[Batch] = relationship(lazy="raise")

    @property
    def label(self) -> str:
        return f"Vial {self.code}"

    @property
    def single_dose(self) -> bool:
        return self.dose == "single"

    def in_use_until(self, beyond_use_at: datetime) -> datetime:
        """The end of this vial's use: its batch's BUD, or sooner for a punctured multiple-dose vial.

        Computed, never stored, so a batch BUD shortened later (an excursion) shortens it too.
        """
        if self.use_by_at is not None:
            beyond_use_at = min(beyond_use_at, self.use_by_at)
        if self.dose == "multiple" and self.punctured_at is not None and self.in_use_hours:
            return min(self.punctured_at + timedelta(hours=self.in_use_hours), beyond_use_at)
        return beyond_use_at

    def returning_to(self, status: str) -> str:
        """The status a vial takes back when a hold ends: never sealed again once punctured, spent when empty."""
        if self.remaining_ml <= 0:
            return VialStatus.SPENT
        if status == VialStatus.SEALED and (self.punctured_at is not None or self.remaining_ml < self.volume_ml):
            return VialStatus.OPEN
        return status

    def __repr__(self) -> str:
        return f"<Vial {self.code} {self.status}>"
