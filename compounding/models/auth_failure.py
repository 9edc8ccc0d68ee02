"""Wrong passwords, one row each: at sign-in and when signing."""

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from ._common import one_of, utcnow

FAILURE_KINDS = ("login", "signature")


class AuthFailure(db.Model):
    """One wrong password for a known account.

    A row per failure, never a counter: concurrent failures each insert their own row, so
    counting the recent ones is exact where `failed_logins += 1` lost updates.
    """

    __tablename__ = "auth_failures"
    __table_args__ = (
        one_of("kind", FAILURE_KINDS, "kind_known"),
        sa.Index("ix_auth_failures_user_id_occurred_at", "user_id", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)
    kind: Mapped[str] = mapped_column(sa.String(20))
    client_address: Mapped[str | None] = mapped_column(sa.String(64))
