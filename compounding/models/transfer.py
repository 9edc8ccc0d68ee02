"""Transfers: stock sent from one site to another, line by line.

`draft` -> `dispatched` (scanned out at the source; what it carries is in transit, usable
nowhere) -> `received` (scanned in at the destination; short and damaged quantities recorded,
damaged ones written off), or `cancelled` before dispatch. A line carries a quantity of a lot
(a child lot is made at the destination) or one vial; a batch is sent as one line per vial
it has left (each naming the batch, so the note groups them).
"""

from datetime import datetime
from decimal import Decimal
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from ._common import one_of, transition, utcnow
from .site import Site


class TransferStatus(StrEnum):
    DRAFT = "draft"
    DISPATCHED = "dispatched"
    RECEIVED = "received"
    CANCELLED = "cancelled"


TRANSFER_STATUSES = tuple(TransferStatus)
TRANSFER_TRANSITIONS = {
    "dispatch": transition({TransferStatus.DRAFT}, TransferStatus.DISPATCHED,
                           "{label} is {status}; only a draft is dispatched."),
    "receive": transition({TransferStatus.DISPATCHED}, TransferStatus.RECEIVED,
                          "{label} is {status}; only a dispatched transfer is received."),
    "cancel": transition({TransferStatus.DRAFT}, TransferStatus.CANCELLED,
                         "{label} is {status}; only a draft can be cancelled."),
}
LINE_KINDS = ("lot", "vial")


class Transfer(db.Model):
    __tablename__ = "transfers"
    __table_args__ = (
        one_of("status", TRANSFER_STATUSES, "status_known"),
        sa.CheckConstraint("from_site_id <> to_site_id", name="between_two_sites"),
        sa.Index("ix_transfers_from_status", "from_site_id", "status", "id"),
        sa.Index("ix_transfers_to_status", "to_site_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(12), unique=True)
    from_site_id: Mapped[int] = mapped_column(sa.ForeignKey("sites.id"))
    to_site_id: Mapped[int] = mapped_column(sa.ForeignKey("sites.id"))
    # Where the destination puts what arrives (its default location unless chosen).
    to_location_id: Mapped[int | None] = mapped_column(sa.ForeignKey("locations.id"))
    status: Mapped[str] = mapped_column(sa.String(12), default=TransferStatus.DRAFT)
    note: Mapped[str] = mapped_column(sa.Text, default="")
    created_by_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    dispatched_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    dispatched_at: Mapped[datetime | None]
    received_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    received_at: Mapped[datetime | None]
    cancelled_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    cancelled_at: Mapped[datetime | None]
    cancel_reason: Mapped[str] = mapped_column(sa.Text, default="")

    from_site: Mapped[Site] = relationship(foreign_keys=[from_site_id], lazy="raise")
    to_site: Mapped[Site] = relationship(foreign_keys=[to_site_id], lazy="raise")

    @property
    def label(self) -> str:
        return f"Transfer {self.code}"

    def __repr__(self) -> str:
        return f"<Transfer {self.code} {self.status}>"


class TransferLine(db.Model):
    __tablename__ = "transfer_lines"
    __table_args__ = (
        one_of("kind", LINE_KINDS, "kind_known"),
        sa.CheckConstraint(
            "(kind = 'lot' AND lot_id IS NOT NULL AND batch_id IS NULL AND vial_id IS NULL) OR "
            "(kind = 'vial' AND vial_id IS NOT NULL AND batch_id IS NOT NULL AND lot_id IS NULL AND quantity = 1)",
            name="one_item"),
        sa.CheckConstraint("quantity > 0", name="quantity_positive"),
        sa.CheckConstraint("received IS NULL OR received >= 0", name="received_not_negative"),
        sa.CheckConstraint("damaged IS NULL OR (damaged >= 0 AND damaged <= received)",
                           name="damaged_within_received"),
        sa.CheckConstraint("received IS NULL OR received <= quantity", name="received_within_sent"),
        sa.Index("ix_transfer_lines_lot", "lot_id"),
        sa.Index("ix_transfer_lines_batch", "batch_id"),
        sa.Index("ix_transfer_lines_vial", "vial_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    transfer_id: Mapped[int] = mapped_column(sa.ForeignKey("transfers.id"), index=True)
    kind: Mapped[str] = mapped_column(sa.String(5))
    lot_id: Mapped[int | None] = mapped_column(sa.ForeignKey("lots.id"))
    batch_id: Mapped[int | None] = mapped_column(sa.ForeignKey("batches.id"))
    vial_id: Mapped[int | None] = mapped_column(sa.ForeignKey("vials.id"))
    # Sent: a lot's quantity in its ingredient's unit; 1 for a vial (received 0 or 1, damaged 0 or 1).
    quantity: Mapped[Decimal]
    # Counted at the destination: what arrived, and of that what arrived damaged (written off).
    received: Mapped[Decimal | None]
    damaged: Mapped[Decimal | None]
    # A lot line: the child lot made at the destination from what arrived.
    child_lot_id: Mapped[int | None] = mapped_column(sa.ForeignKey("lots.id"))
    scanned_out_at: Mapped[datetime | None]
    scanned_in_at: Mapped[datetime | None]

    transfer: Mapped[Transfer] = relationship(lazy="raise")
