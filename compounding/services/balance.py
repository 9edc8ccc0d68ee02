"""Formulas balance: the liquid components fill the unit exactly, or one diluent is filled to volume (qs).

A pure rule (DESIGN 10.2), judged without a database: concentrations are computed per unit
volume, so a formula whose liquids do not add up to the unit would print a false strength.
"""

from dataclasses import dataclass
from decimal import Decimal
from typing import NamedTuple

# Only liquids measured in mL take up the unit's volume; solids (mg, g, IU) dissolve in them.
VOLUME_UNIT = "mL"
# The one kind of ingredient that may be filled "to volume" (quantum sufficit).
QS_KIND = "diluent"


class Line(NamedTuple):
    """One component as the rule sees it; `quantity` is ignored (may be None) on the qs line."""

    unit: str
    quantity: Decimal | None
    qs: bool
    kind: str
    name: str


@dataclass(frozen=True)
class Balance:
    """The outcome: the qs line's computed quantity and the totals, or why the formula cannot balance."""

    unit_volume: Decimal
    # The mL components other than the qs line, added up.
    measured_ml: Decimal
    qs_quantity: Decimal | None = None
    refusal: str | None = None

    @property
    def balanced(self) -> bool:
        return self.refusal is None

    @property
    def total_ml(self) -> Decimal:
        """The liquid in one unit, the qs line included."""
        return self.measured_ml + (self.qs_quantity or 0)


def _ml(value: Decimal) -> str:
    """'8', '2.5': a volume without the database's trailing zeros."""
    return format(Decimal(value).normalize(), "f")


def _line_refusal(lines: list[Line]) -> str | None:
    """Why the lines cannot balance whatever the volume: a bad quantity, or a qs line that cannot be one."""
    for line in lines:
        if not line.qs and (line.quantity is None or line.quantity <= 0):
            return f"The quantity of {line.name} must be greater than zero."
    marked = [line for line in lines if line.qs]
    if len(marked) > 1:
        return ("Only one component can be filled to volume (qs); "
                + " and ".join(line.name for line in marked) + " are both marked.")
    for line in marked:
        if line.kind != QS_KIND:
            return f"Only a diluent can be filled to volume (qs): {line.name} is {line.kind}."
        if line.unit != VOLUME_UNIT:
            return (f"Only a diluent measured in mL can be filled to volume (qs): "
                    f"{line.name} is measured in {line.unit}.")
    return None


def balance(lines: list[Line], unit_volume: Decimal) -> Balance:
    """Balance `lines` into a unit of `unit_volume` mL.

    Without a qs line the mL components must add up to the unit volume exactly; with one,
    the qs diluent gets the difference, which must be more than zero.
    """
    unit_volume = Decimal(unit_volume)
    measured = sum((Decimal(line.quantity) for line in lines
                    if line.unit == VOLUME_UNIT and not line.qs and line.quantity is not None), Decimal("0"))
    refusal = _line_refusal(lines)
    if refusal:
        return Balance(unit_volume, measured, refusal=refusal)
    qs_line = next((line for line in lines if line.qs), None)
    totals = f"Components in mL add up to {_ml(measured)} mL; the unit holds {_ml(unit_volume)} mL"
    if qs_line is not None:
        remainder = unit_volume - measured
        if remainder <= 0:
            return Balance(unit_volume, measured, refusal=(
                f"{totals} before {qs_line.name}: nothing is left to fill to volume."))
        return Balance(unit_volume, measured, qs_quantity=remainder)
    if measured == unit_volume:
        return Balance(unit_volume, measured)
    if measured < unit_volume:
        return Balance(unit_volume, measured, refusal=(
            f"{totals}: mark one diluent in mL as qs (to volume) to fill the difference."))
    return Balance(unit_volume, measured, refusal=f"{totals}.")
