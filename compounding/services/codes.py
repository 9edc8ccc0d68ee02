"""Our scannable codes: lots L + 6 digits, batches B + yymmdd + 4-digit sequence."""

from datetime import datetime

from ..extensions import db
from ..models import CodeCounter
from .clock import to_clinic


def _next(key: str) -> int:
    """Take the next value of a counter, atomically on both databases."""
    if db.session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    # An upsert with RETURNING: two concurrent callers never get the same value, and the
    # first caller of the day creates the row without a race.
    statement = insert(CodeCounter).values(key=key, value=1)
    statement = statement.on_conflict_do_update(
        index_elements=[CodeCounter.key], set_={"value": CodeCounter.value + 1}
    ).returning(CodeCounter.value)
    return db.session.execute(statement).scalar_one()


def next_lot_code() -> str:
    return f"L{_next('lot'):06d}"


def next_batch_code(compounded_at: datetime) -> str:
    day = to_clinic(compounded_at).strftime("%y%m%d")
    return f"B{day}{_next('batch' + day):04d}"
