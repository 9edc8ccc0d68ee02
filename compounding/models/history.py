"""Status history: every status change of a lot, a batch or a recall, with its time."""

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from ..limits import NAME_MAX
from ._common import utcnow


class StatusChange(db.Model):
    """One change of status: usability is judged against these rows at the moment of use."""

    __tablename__ = "status_changes"
    __table_args__ = (
        # "What was this item's status at that instant": the entity's rows in time order.
        sa.Index("ix_status_changes_entity_changed", "entity_type", "entity_id", "changed_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    entity_type: Mapped[str] = mapped_column(sa.String(20))
    entity_id: Mapped[int]
    # None for the first row: the item came into being with `to_status`.
    from_status: Mapped[str | None] = mapped_column(sa.String(20))
    to_status: Mapped[str] = mapped_column(sa.String(20))
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    actor_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    actor_name: Mapped[str] = mapped_column(sa.String(NAME_MAX), default="")
    reason: Mapped[str] = mapped_column(sa.Text, default="")
    # What caused it, e.g. "recall 4", "adverse_event 12", "session 31".
    reference: Mapped[str] = mapped_column(sa.String(NAME_MAX), default="")
