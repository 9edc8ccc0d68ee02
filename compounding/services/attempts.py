"""Wrong passwords counted together, at sign-in and when signing.

Each wrong password is a row (`AuthFailure`). After LOGIN_MAX_FAILURES of them within
LOGIN_LOCKOUT_MINUTES the account waits before its next password is even checked: one
minute after the fifth, then two, four, eight... up to LOGIN_LOCKOUT_MINUTES. While it
waits, it can neither sign in nor sign. A new password (own change or an admin's reset)
starts the count afresh.
"""

import math
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app, has_request_context, request

from ..extensions import db
from ..models import AuthFailure, User
from . import audit
from .clock import utcnow
from .errors import DomainError, NotAllowed
from .transaction import refusal


def _window() -> timedelta:
    return timedelta(minutes=current_app.config["LOGIN_LOCKOUT_MINUTES"])


def delay_after(failures: int, *, max_failures: int, cap: timedelta) -> timedelta:
    """The wait after `failures` recent wrong passwords: none below the limit, then doubling.

    >>> delay_after(5, max_failures=5, cap=timedelta(minutes=15))
    datetime.timedelta(seconds=60)
    """
    if failures < max_failures:
        return timedelta(0)
    doublings = min(failures - max_failures, 16)
    return min(timedelta(minutes=2 ** doublings), cap)


def recent_failures(user: User, at: datetime) -> list[datetime]:
    """When this account's wrong passwords were given within the window, newest first."""
    since = at - _window()
    if user.password_changed_at is not None and user.password_changed_at > since:
        since = user.password_changed_at
    return list(db.session.scalars(
        sa.select(AuthFailure.occurred_at)
        .where(AuthFailure.user_id == user.id, AuthFailure.occurred_at > since)
        .order_by(AuthFailure.occurred_at.desc())
    ))


def blocked_until(user: User, at: datetime | None = None) -> datetime | None:
    """The moment this account may give a password again, or None when it may now."""
    at = at or utcnow()
    failures = recent_failures(user, at)
    # Refusals of this process whose failure row is not written yet count as of now.
    failures = [at] * _unwritten.get(user.id, 0) + failures
    delay = delay_after(len(failures), max_failures=current_app.config["LOGIN_MAX_FAILURES"],
                        cap=_window())
    if not delay:
        return None
    until = failures[0] + delay
    return until if until > at else None


def minutes_left(until: datetime, at: datetime) -> int:
    return max(1, math.ceil((until - at).total_seconds() / 60))


def record_failure(user: User, kind: str, client_address: str | None, at: datetime) -> int:
    """Add one wrong password (in the caller's transaction); returns how many are now recent.

    An INSERT, never a read-modify-write of a counter: simultaneous failures are all kept.
    """
    db.session.add(AuthFailure(user_id=user.id, occurred_at=at, kind=kind,
                               client_address=(client_address or None) and client_address[:64]))
    db.session.flush()
    count = len(recent_failures(user, at))
    if count == current_app.config["LOGIN_MAX_FAILURES"]:
        audit.record(None, "user.password_attempts_paused", "user", user.id,
                     new={"failures": count, "last_kind": kind},
                     reason=f"{count} wrong passwords within {current_app.config['LOGIN_LOCKOUT_MINUTES']} minutes")
    return count


def request_address() -> str | None:
    """The client's address for the failure row: a fact kept with the record, never a rule input."""
    return request.remote_addr if has_request_context() else None


def check_signing_password(user: User, password: str, *, doing: str, subject: dict,
                           refused: DomainError) -> None:
    """The one gate for a password a signed-in user re-enters (a signature, a password change).

    A paused account is refused at once (403, saying for how long) without the password
    being checked. A wrong password is counted and audited with what was being signed, and
    `refused` is raised. Both discard the caller's unfinished work and commit the failure on
    its own (transaction.refusal), so the count survives the refusal.
    """
    with _one_check_at_a_time(user.id):
        at = utcnow()
        until = blocked_until(user, at)
        if until is not None:
            minutes = minutes_left(until, at)
            _keep_refusal(user, "signature.blocked", subject, doing)
            raise NotAllowed(f"Signing is blocked for {minutes} min after too many wrong passwords; "
                             "nothing was changed.", field="password")
        if _password_matches(user, password):
            return
        with _counted_until_written(user.id):
            _keep_refusal(user, "signature.refused", subject, doing, failed_at=at)
        raise refused


# Per account, wrong signatures found by this process whose failure row is not committed yet.
_unwritten: Counter[int] = Counter()
_unwritten_lock = threading.Lock()


@contextmanager
def _counted_until_written(user_id: int) -> Iterator[None]:
    """Count a wrong signature from the moment it is found until its row is committed.

    A refusal first rolls back the caller's work, which on SQLite lets the next writer in
    before the failure row is written: that writer must still see this failure.
    """
    with _unwritten_lock:
        _unwritten[user_id] += 1
    try:
        yield
    finally:
        with _unwritten_lock:
            _unwritten[user_id] -= 1
            if not _unwritten[user_id]:
                del _unwritten[user_id]


# The first key of the advisory lock that puts one account's password checks in a line.
_SIGNING_LOCK = 0x5167


@contextmanager
def _one_check_at_a_time(user_id: int) -> Iterator[None]:
    """One password check per account at a time, from the count through to the failure's commit.

    On PostgreSQL a second connection holds a transaction advisory lock on the account for
    the whole check: the lock must outlive the rollback of the caller's work that a refusal
    makes, so simultaneous wrong signatures each see the ones before them and the pause
    after LOGIN_MAX_FAILURES holds exactly. SQLite already lets one writer in at a time.
    """
    if db.engine.dialect.name != "postgresql":
        yield
        return
    with db.engine.connect() as connection, connection.begin():
        connection.execute(sa.select(sa.func.pg_advisory_xact_lock(_SIGNING_LOCK, user_id)))
        yield


def _password_matches(user: User, password: str) -> bool:
    from .users import verify_password  # users imports this module for sign-in

    return user.active and verify_password(user, password or "")


def _keep_refusal(user: User, action: str, subject: dict, doing: str,
                  failed_at: datetime | None = None) -> None:
    """Throw away the caller's work and commit only the refusal: its audit row and any failure row."""
    user_id = user.id
    with refusal():
        user = db.session.get(User, user_id)
        if failed_at is not None:
            record_failure(user, "signature", request_address(), failed_at)
        entity_type = subject.get("entity_type", "user")
        entity_id = subject.get("entity_id", user_id)
        new = {key: value for key, value in subject.items() if key not in ("entity_type", "entity_id")}
        if entity_id is not None and not _exists(entity_type, entity_id):
            # The record being signed was created in the work just rolled back (a new account, a
            # recall): its id names nothing, or later something else. Keep it as what was intended.
            new["not_created"] = f"{entity_type} {entity_id}"
            entity_id = None
        audit.record(user, action, entity_type, entity_id, new=new, reason=doing)


def _exists(entity_type: str, entity_id: int) -> bool:
    """Whether the record an audit row would name is in the database (unknown kinds: assumed so)."""
    names = {entity_type, entity_type + "s", entity_type + "es"}
    for mapper in db.Model.registry.mappers:
        if mapper.local_table.name in names:
            return db.session.get(mapper.class_, entity_id) is not None
    return True
