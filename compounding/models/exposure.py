"""Exposure counts: what each lot and batch reached, per site, kept up to date with each use.

A row of `exposure_counts` holds, for one lot or batch (`kind`, `item_id`) and one site (the
site where the sessions were performed; `site_id` 0 is the whole chain), the batches and
vials used, the sessions (voided ones too: a correction never shrinks a trace), those of
them voided, the distinct patients, and the volume injected by the sessions that stand.

Distinct counts stay exact one session at a time through the membership tables: one row per
(item, site, patient), (item, site, vial) and (item, site, batch) with the uses that put
it there; a count rises when its membership row is made. A lot's rows include the batches
made from its child lots (a transfer's destination), so the parent reaches every patient.
"""

from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from ._common import one_of

EXPOSURE_KINDS = ("lot", "batch")
# The row of the whole chain: every site's sessions together (distinct patients across sites).
ALL_SITES = 0


class ExposureCount(db.Model):
    __tablename__ = "exposure_counts"
    __table_args__ = (one_of("kind", EXPOSURE_KINDS, "kind_known"),)

    kind: Mapped[str] = mapped_column(sa.String(5), primary_key=True)
    item_id: Mapped[int] = mapped_column(primary_key=True)
    # No foreign key: 0 stands for every site together.
    site_id: Mapped[int] = mapped_column(primary_key=True)
    batches: Mapped[int] = mapped_column(default=0)
    vials: Mapped[int] = mapped_column(default=0)
    sessions: Mapped[int] = mapped_column(default=0)
    voided_sessions: Mapped[int] = mapped_column(default=0)
    patients: Mapped[int] = mapped_column(default=0)
    volume_ml: Mapped[Decimal] = mapped_column(default=Decimal("0"))


def _membership(name: str, member: str) -> sa.Table:
    """(kind, item, site, member) -> the uses that made the member part of the item's exposure at the site."""
    return sa.Table(
        name, db.metadata,
        sa.Column("kind", sa.String(5), primary_key=True),
        sa.Column("item_id", sa.Integer, primary_key=True),
        sa.Column("site_id", sa.Integer, primary_key=True),
        sa.Column(member, sa.Integer, primary_key=True),
        sa.Column("uses", sa.Integer, nullable=False),
    )


exposure_patients = _membership("exposure_patients", "patient_id")
exposure_vials = _membership("exposure_vials", "vial_id")
exposure_batches = _membership("exposure_batches", "batch_id")
MEMBERSHIPS = {"patients": (exposure_patients, "patient_id"), "vials": (exposure_vials, "vial_id"),
               "batches": (exposure_batches, "batch_id")}
