"""Staff accounts, their roles and their API tokens."""

from datetime import datetime

import sqlalchemy as sa
from flask_login import UserMixin
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates

from ..extensions import db
from ..limits import NAME_MAX
from ..permissions import ROLES, role_can
from ._common import one_of, utcnow
from .patient import fold

TOKEN_NAME_LENGTH = 80


class User(UserMixin, db.Model):
    __tablename__ = "users"
    __table_args__ = (
        one_of("role", ROLES, "role_known"),
        # A printed name on a signature names one active person. Inactive accounts
        # keep theirs (old signatures still read right), so the index is partial.
        sa.Index("uq_users_display_name_key_active", "display_name_key", unique=True,
                 sqlite_where=sa.text("active"), postgresql_where=sa.text("active")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(sa.String(64), unique=True)
    display_name: Mapped[str] = mapped_column(sa.String(NAME_MAX))
    # fold(display_name): no surrounding or doubled spaces, case or accents ("dr  ana" is "Dr Ana").
    display_name_key: Mapped[str] = mapped_column(sa.String(NAME_MAX))
    role: Mapped[str] = mapped_column(sa.String(20), index=True)
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    active: Mapped[bool] = mapped_column(default=True)
    must_change_password: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None]
    password_changed_at: Mapped[datetime | None]
    # A chain-wide account (a chain pharmacist): sees every site, as auditors do.
    all_sites: Mapped[bool] = mapped_column(default=False)
    # Where the daily digest goes (DESIGN 10.7); none: the digest is read on the dashboard only.
    email: Mapped[str | None] = mapped_column(sa.String(254))

    tokens: Mapped[list["ApiToken"]] = relationship(back_populates="user", lazy="raise",
                                                    foreign_keys="ApiToken.user_id")

    @property
    def is_active(self) -> bool:  # Flask-Login refuses inactive accounts
        return self.active

    @validates("display_name")
    def _keep_key(self, _key: str, value: str) -> str:
        # Folding can lengthen a name (one ligature becomes several letters): the key keeps
        # the column's length rather than overflow it.
        self.display_name_key = fold(value)[:NAME_MAX]
        return value

    def can(self, permission: str) -> bool:
        return self.active and role_can(self.role, permission)

    def __repr__(self) -> str:
        return f"<User {self.username} ({self.role})>"


class ApiToken(db.Model):
    """A bearer token; only its SHA-256 is stored, the token itself is shown once.

    It answers until `expires_at` or until revoked (by hand, or with every other token of
    its user on a password change or reset and on deactivation).
    """

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(sa.String(TOKEN_NAME_LENGTH), default="")
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    prefix: Mapped[str] = mapped_column(sa.String(12))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    revoked_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    revoked_reason: Mapped[str | None] = mapped_column(sa.String(30))
    # A device's token (a fridge sensor) opens one permission only, for one location: none is the
    # user's whole role.
    scope: Mapped[str | None] = mapped_column(sa.String(40))
    location_id: Mapped[int | None] = mapped_column(sa.ForeignKey("locations.id"))

    user: Mapped[User] = relationship(back_populates="tokens", lazy="joined", foreign_keys=[user_id])
    revoked_by: Mapped[User | None] = relationship(lazy="select", foreign_keys=[revoked_by_id])

    def status(self, at: datetime) -> str:
        """`revoked`, `expired` or `live` at the moment `at`."""
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if self.expires_at <= at else "live"
