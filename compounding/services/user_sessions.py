"""Sign-in sessions kept on the server: started at sign-in, ended here, idle judged here."""

import hashlib
import secrets
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm.attributes import set_committed_value

from ..extensions import db
from ..models import User, UserSession
from ..models.user_session import CLIENT_ADDRESS_LENGTH, USER_AGENT_LENGTH
from . import audit
from .clock import utcnow
from .transaction import alone, transaction, transactional

# last_seen_at is written at most this often per session, not on every request.
TOUCH_EVERY = timedelta(minutes=1)


def hash_session_id(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()


@transactional
def start_session(user: User, *, client_address: str | None, user_agent: str | None,
                  at: datetime | None = None) -> str:
    """Open a session after a successful sign-in; return the random id for the cookie.

    Only the id's SHA-256 is stored: a copy of the table opens no browser session.
    """
    session_id = secrets.token_urlsafe(32)
    now = at or utcnow()
    db.session.add(UserSession(
        user_id=user.id, token_hash=hash_session_id(session_id), created_at=now, last_seen_at=now,
        client_address=(client_address or "")[:CLIENT_ADDRESS_LENGTH] or None,
        user_agent=(user_agent or "")[:USER_AGENT_LENGTH] or None,
    ))
    return session_id


def _find(session_id: str | None) -> UserSession | None:
    if not session_id or not isinstance(session_id, str):
        return None
    return db.session.scalar(sa.select(UserSession).where(UserSession.token_hash == hash_session_id(session_id)))


def ended_reason(session_id: str | None) -> str | None:
    """Why the session a cookie names has ended (None when unknown or still live)."""
    row = _find(session_id)
    return row.ended_reason if row is not None else None


def live_session(session_id: str | None, *, at: datetime, idle_limit: timedelta) -> UserSession | None:
    """The live session a cookie names, or None when it is unknown, ended, or its user inactive.

    A session unused for longer than `idle_limit` (judged on `last_seen_at`, never on the
    cookie) is ended here with the reason `idle`. last_seen_at moves at most once a minute.
    """
    row = _find(session_id)
    if row is None or row.ended_at is not None or not row.user.active:
        return None
    if at - row.last_seen_at > idle_limit:
        with transaction():
            _end([row], "idle", at)
        return None
    if at - row.last_seen_at >= TOUCH_EVERY:
        record_seen(row, "last_seen_at", at)
    return row


def record_seen(row, column: str, at: datetime) -> None:
    """Write a session's or token's last-seen time in a commit of its own, at the start of a request.

    The row and its user stay loaded as they are (kept out of the commit's expiry), so the
    request goes on with no extra query. A database too busy to take the write skips it: the
    next request within the minute writes it instead.
    """
    keep = (row, row.user)
    for obj in keep:
        db.session.expunge(obj)
    try:
        with alone():
            db.session.execute(sa.update(type(row)).where(type(row).id == row.id).values({column: at}))
    except sa.exc.OperationalError:
        current_app.logger.warning("Could not record the last use of %s %s", type(row).__name__, row.id)
    finally:
        for obj in keep:
            db.session.add(obj)
    set_committed_value(row, column, at)


def _end(rows, reason: str, at: datetime) -> int:
    for row in rows:
        row.ended_at = at
        row.ended_reason = reason
    return len(rows)


def live_sessions(user: User, *, at: datetime, idle_limit: timedelta) -> list[UserSession]:
    """The user's open sessions (not ended, not idle past the limit at `at`), most recently seen first."""
    return list(db.session.scalars(
        sa.select(UserSession).where(UserSession.user_id == user.id, UserSession.ended_at.is_(None),
                                     UserSession.last_seen_at >= at - idle_limit)
        .order_by(UserSession.last_seen_at.desc(), UserSession.id.desc())))


def end_sessions(user: User, reason: str, *, at: datetime | None = None) -> int:
    """End every live session of `user`; part of the caller's transaction (no commit)."""
    rows = db.session.scalars(
        sa.select(UserSession).where(UserSession.user_id == user.id, UserSession.ended_at.is_(None))
    ).all()
    return _end(rows, reason, at or utcnow())


@transactional
def sign_out(session_id: str | None) -> None:
    """End the session a cookie names (sign-out); a copy of the cookie opens nothing afterwards."""
    row = _find(session_id)
    if row is None or row.ended_at is not None:
        return
    _end([row], "logout", utcnow())
    audit.record(row.user, "user.signed_out", "user", row.user_id)


@transactional
def sign_out_everywhere(actor: User, user: User) -> int:
    """End every session of `user` (the actor's own included); audited. Returns how many ended."""
    count = end_sessions(user, "signed_out_everywhere")
    audit.record(actor, "user.signed_out_everywhere", "user", user.id, new={"sessions_ended": count})
    return count
