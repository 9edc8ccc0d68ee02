"""Small column helpers shared by the model modules."""

from dataclasses import dataclass
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


@dataclass(frozen=True)
class Transition:
    """One way an item's status may change: the statuses it starts from, where it leads, and the refusal.

    `refusal` is formatted with the item's `label` and `status` (e.g. "{label} is {status}; ...").
    `to` is None for a use of the item that keeps its status (compounding from a formula).
    """

    sources: frozenset[str]
    to: str | None
    refusal: str

    def allows(self, status: str) -> bool:
        return status in self.sources

    def refusal_for(self, label: str, status: str) -> str:
        return self.refusal.format(label=label, status=status)


def transition(sources, to, refusal: str) -> Transition:
    return Transition(frozenset(sources), to, refusal)
