"""Our scannable codes: lots L + 6 digits, batches B + yymmdd + 4-digit sequence, vials
<batch code>-NN, transfers T + 6 digits.

The widths are minimums: lot 1,000,000 is L1000000 and a day's 10,000th batch ends in 10000.
The patterns below are the one place that says what our codes look like, so a grown code
still scans.
"""

import re
from datetime import datetime

from ..extensions import db
from ..models import CodeCounter
from .clock import to_clinic

LOT_CODE = re.compile(r"^L\d{6,}$")
BATCH_CODE = re.compile(r"^B\d{10,}$")  # yymmdd, then the day's sequence of 4 or more digits
# A vial: its batch's code, a hyphen, its number (at least two digits, to the width of the batch's units).
VIAL_CODE = re.compile(r"^(B\d{10,})-(\d{2,})$")
TRANSFER_CODE = re.compile(r"^T\d{6,}$")
# Anything a person or scanner might mean as a vial code (checked against VIAL_CODE for a clear refusal).
LOOKS_LIKE_VIAL = re.compile(r"^(B\d*)?-\d*$")


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


def next_transfer_code() -> str:
    return f"T{_next('transfer'):06d}"


def next_batch_code(compounded_at: datetime) -> str:
    day = to_clinic(compounded_at).strftime("%y%m%d")
    return f"B{day}{_next('batch' + day):04d}"


def vial_code(batch_code: str, number: int, units: int) -> str:
    """`B2612060001-03`: zero-padded to at least two digits, to the width of the batch's unit count."""
    width = max(2, len(str(units)))
    return f"{batch_code}-{number:0{width}d}"


# A storage location: LOC and at least four digits, unless a site gives its own code (COLD-1).
LOCATION_CODE = re.compile(r"^LOC\d{4,}$")


def next_location_code(taken) -> str:
    """The next free `LOC0001`-style code; `taken(code)` says whether a code is in use already
    (the first location of every database, and codes typed by hand, were not counted)."""
    while True:
        code = f"LOC{_next('location'):04d}"
        if not taken(code):
            return code
