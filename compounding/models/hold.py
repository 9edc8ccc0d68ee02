"""Hold reasons on stock: while any stands, the item is `on_hold`."""

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from ._common import one_of, utcnow
from .batch import BATCH_HOLDABLE
from .lot import LOT_HOLDABLE
from .vial import VIAL_HOLDABLE

HOLD_KINDS = ("adverse_event", "excursion", "quality_signal")
# A hold names its item by type and id.
HOLD_ENTITY_TYPES = ("lot", "batch", "vial")
# The statuses a hold suspends (and that the item returns to when the last hold is released).
# Any other status (recalled, depleted, rejected, discarded) stays; the hold is still recorded.
HOLDABLE_STATUSES = {"lot": LOT_HOLDABLE, "batch": BATCH_HOLDABLE, "vial": VIAL_HOLDABLE}
HOLD_KIND_TEXT = {"adverse_event": "adverse event", "excursion": "temperature excursion",
                  "quality_signal": "quality signal"}


class Hold(db.Model):
    __tablename__ = "holds"
    __table_args__ = (
        one_of("kind", HOLD_KINDS, "kind_known"),
        one_of("entity_type", HOLD_ENTITY_TYPES, "entity_type_known"),
        sa.Index("ix_holds_entity", "entity_type", "entity_id", "released_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    entity_type: Mapped[str] = mapped_column(sa.String(20))
    entity_id: Mapped[int]
    kind: Mapped[str] = mapped_column(sa.String(20))
    detail: Mapped[str] = mapped_column(sa.Text, default="")
    # What raised it, e.g. ("adverse_event", 12).
    source_type: Mapped[str] = mapped_column(sa.String(40), default="")
    source_id: Mapped[int | None]
    placed_at: Mapped[datetime] = mapped_column(default=utcnow)
    placed_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    released_at: Mapped[datetime | None]
    released_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    release_reason: Mapped[str] = mapped_column(sa.Text, default="")

    @property
    def text(self) -> str:
        """How a scan, a refusal or a label names this reason."""
        kind = HOLD_KIND_TEXT[self.kind]
        return f"{kind}: {self.detail}" if self.detail else kind

    def stands_at(self, at: datetime) -> bool:
        return self.placed_at <= at and (self.released_at is None or self.released_at > at)
