"""Small column helpers shared by the model modules."""

from datetime import UTC, datetime

import sqlalchemy as sa

# Ids are INTEGER columns: PostgreSQL's holds up to this, and a larger value overflows the driver.
MAX_RECORD_ID = 2**31 - 1


def utcnow() -> datetime:
    return datetime.now(UTC)


def one_of(column: str, values, name: str) -> sa.CheckConstraint:
    """A CHECK constraint that keeps a status-like column inside its vocabulary."""
    allowed = ", ".join(f"'{v}'" for v in values)
    return sa.CheckConstraint(f"{column} IN ({allowed})", name=name)
