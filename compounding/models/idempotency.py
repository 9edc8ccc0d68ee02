"""One-time submission keys: a form's hidden key or an API client's `Idempotency-Key`, per user, for 24 h."""

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from ._common import one_of, utcnow

KEY_STATES = ("in_flight", "done")
MAX_KEY_LENGTH = 100


class IdempotencyKey(db.Model):
    """A submission's key and its outcome, never its body.

    Bodies carry passwords, so only the SHA-256 of the canonical request (method, path, body)
    is kept, to tell a repeat from another request reusing the key. `in_flight` while the
    first request runs; `done` once its change committed (in the same transaction), with the
    answer to replay: status, JSON body (API) or the page it led to (forms).
    """

    __tablename__ = "idempotency_keys"
    __table_args__ = (
        sa.UniqueConstraint("user_id", "key", name="uq_idempotency_keys_user_id_key"),
        one_of("state", KEY_STATES, "state_known"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    key: Mapped[str] = mapped_column(sa.String(MAX_KEY_LENGTH))
    request_hash: Mapped[str] = mapped_column(sa.String(64))
    state: Mapped[str] = mapped_column(sa.String(12), default="in_flight")
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    completed_at: Mapped[datetime | None]
    response_status: Mapped[int | None]
    response_type: Mapped[str | None] = mapped_column(sa.String(100))
    response_body: Mapped[str | None] = mapped_column(sa.Text)
    response_location: Mapped[str | None] = mapped_column(sa.String(2000))
