"""FEFO allocation (first expiry, first out) as a pure function: no database, no clock."""

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from .errors import InsufficientStock


@dataclass(frozen=True)
class Candidate:
    """An eligible lot: released, unexpired, unrecalled, with stock (the caller filters)."""

    lot_id: int
    code: str
    expires_on: date
    received_at: datetime
    remaining: Decimal

    @classmethod
    def of(cls, lot) -> "Candidate":
        """A lot (anything with these attributes) as a candidate."""
        return cls(lot.id, lot.code, lot.expires_on, lot.received_at, lot.remaining)


@dataclass(frozen=True)
class Allocation:
    lot_id: int
    code: str
    quantity: Decimal
    expires_on: date


def _fmt(value: Decimal) -> str:
    """12.500 -> "12.5", 10.000 -> "10": quantities as a person writes them."""
    return format(value.normalize(), "f")


def fefo_order(candidates):
    """Earliest expiry first; ties go to the oldest receipt, then the lowest code (L999999 before L1000000)."""
    return sorted(candidates, key=lambda c: (c.expires_on, c.received_at, len(c.code), c.code))


def allocate(candidates, required: Decimal, *, what: str = "this ingredient",
             unit: str = "") -> list[Allocation]:
    """Take `required` from the lots in FEFO order, spanning lots when one is not enough.

    Raises InsufficientStock naming the shortfall when all eligible stock is not enough.
    """
    required = Decimal(required)
    if required <= 0:
        raise ValueError("required quantity must be positive")
    allocations: list[Allocation] = []
    still_needed = required
    for candidate in fefo_order(candidates):
        if still_needed <= 0:
            break
        if candidate.remaining <= 0:
            continue
        take = min(candidate.remaining, still_needed)
        allocations.append(Allocation(candidate.lot_id, candidate.code, take, candidate.expires_on))
        still_needed -= take
    if still_needed > 0:
        available = required - still_needed
        suffix = f" {unit}" if unit else ""
        raise InsufficientStock(
            f"Not enough {what}: {_fmt(required)}{suffix} needed, {_fmt(available)}{suffix} available in "
            f"eligible lots (short by {_fmt(still_needed)}{suffix}).",
            details={"needed": _fmt(required), "available": _fmt(available),
                     "shortfall": _fmt(still_needed), "ingredient": what},
        )
    return allocations
