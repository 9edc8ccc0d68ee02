"""The one transaction boundary of the use cases: commit on return, roll back on error.

Every service function that changes state is decorated with `@transactional` (or runs
its work inside `with transaction():`). The outermost boundary commits when the work
returns and rolls back when it raises; a boundary entered while another is open joins
it, so a use case made of other use cases (an import of many receipts, a void that
releases a hold) is still one transaction with its ledger and audit rows.

`refusal()` is the other boundary, for the few refusals that must leave a record behind
(a wrong signature counted against the account): it throws away the unfinished work of
whatever boundary is open, then commits only what is written inside it.

A joined use case that raises leaves its half-done writes in the session (there is no
savepoint). Its caller must let the error through: if the caller catches it and returns,
the outer boundary refuses to commit (`UseCaseFailed`) and rolls everything back, so a
failed step can never be saved as if it had succeeded. `alone()` is for the two writes
that must commit by themselves at the start of a request (a sign-in's failure row, a
session's last-seen time): it refuses to run inside an open boundary.

Nothing else in `compounding/` commits, but for the command line's bulk loaders, which
commit in chunks on purpose (each says so where it does).
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import ParamSpec, TypeVar

from ..extensions import db

_DEPTH = "use_case_depth"
# Set when a joined use case raised: the outermost boundary must not commit what it left.
_FAILED = "use_case_failed"

P = ParamSpec("P")
R = TypeVar("R")


def _depth() -> int:
    return db.session.info.get(_DEPTH, 0)


def in_transaction() -> bool:
    """Whether a use case's boundary is open (work written now commits with it)."""
    return _depth() > 0


class UseCaseFailed(RuntimeError):
    """A use case joined to this one raised and its error was caught: nothing is committed."""


@contextmanager
def transaction() -> Iterator[None]:
    """Run the block as one use case; inside another one, as part of it."""
    depth = _depth()
    db.session.info[_DEPTH] = depth + 1
    try:
        yield
        if depth == 0:
            if db.session.info.pop(_FAILED, False):
                raise UseCaseFailed("A step of this change failed and was caught; nothing was saved.")
            db.session.commit()
    except BaseException:
        if depth == 0:
            db.session.info.pop(_FAILED, None)
            db.session.rollback()
        else:
            db.session.info[_FAILED] = True
        raise
    finally:
        db.session.info[_DEPTH] = depth


@contextmanager
def alone() -> Iterator[None]:
    """A use case that commits by itself, never as part of another (see the module's docstring)."""
    if in_transaction():
        raise RuntimeError("This write commits on its own and cannot run inside another change.")
    with transaction():
        yield


def transactional(function: Callable[P, R]) -> Callable[P, R]:
    """Decorate a service function: it is one transaction, or part of its caller's."""

    @wraps(function)
    def run_as_one(*args: P.args, **kwargs: P.kwargs) -> R:
        with transaction():
            return function(*args, **kwargs)

    return run_as_one


@contextmanager
def refusal() -> Iterator[None]:
    """Discard the unfinished work, then commit only the record of a refusal written inside.

    The caller raises its refusal afterwards; the boundaries it unwinds through then have
    nothing left to roll back.
    """
    db.session.rollback()
    db.session.info.pop(_FAILED, None)  # what failed is thrown away with the rest
    depth = _depth()
    db.session.info[_DEPTH] = depth + 1  # use cases called inside join the refusal's commit
    try:
        yield
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    finally:
        db.session.info[_DEPTH] = depth
