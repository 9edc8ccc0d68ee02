"""A signed-in browser: one row per sign-in, so sessions can be ended on the server."""

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from ._common import one_of, utcnow
from .user import User

END_REASONS = ("logout", "password_changed", "password_reset", "deactivated", "signed_out_everywhere", "idle",
               "restored")
USER_AGENT_LENGTH = 200
CLIENT_ADDRESS_LENGTH = 64


class UserSession(db.Model):
    """One sign-in. The cookie carries a random id; only its SHA-256 is stored here.

    A session is live until `ended_at` is set (sign-out, password change or reset,
    deactivation, "sign out everywhere", or found idle past SESSION_IDLE_MINUTES).
    """

    __tablename__ = "user_sessions"
    __table_args__ = (one_of("ended_reason", END_REASONS, "ended_reason_known"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), index=True)
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None]
    ended_reason: Mapped[str | None] = mapped_column(sa.String(30))
    client_address: Mapped[str | None] = mapped_column(sa.String(CLIENT_ADDRESS_LENGTH))
    user_agent: Mapped[str | None] = mapped_column(sa.String(USER_AGENT_LENGTH))

    user: Mapped[User] = relationship(lazy="joined")

    @property
    def is_live(self) -> bool:
        return self.ended_at is None
