"""Qualified people: competency records per person and kind (DESIGN 10.6, USP <797>).

A qualification is a dated result (`pass`, `fail`) of one kind for one person. A pass is
valid until its `valid_until` (by default its kind's interval after the day it was passed);
a fail suspends the person for that kind at once, until a later pass. A kind may need an
initial series (gloved fingertip sampling: three passes at zero colony-forming units in a row)
before its first pass qualifies. Records are never deleted: a wrong one is voided with a reason.
"""

from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from ..limits import LABEL_MAX, NAME_MAX
from ._common import one_of, utcnow

QUALIFICATION_RESULTS = ("pass", "fail")
# The kinds USP <797> names; admins may add more (`qualification_kinds`).
BUILTIN_KINDS = (
    # code, name, months valid (Category 1 and 2), months (Category 3), initial passes, counts CFU
    ("hand_hygiene_garbing", "Hand hygiene and garbing", 6, 3, 1, False),
    ("gloved_fingertip", "Gloved fingertip and thumb sampling", 6, 3, 3, True),
    ("media_fill", "Media-fill test", 6, 3, 1, False),
)
# Gloved fingertip sampling (USP <797> action levels): the initial series (after garbing) passes at zero CFU;
# a later one, with the media-fill test, passes at 3 CFU or fewer (action level: more than 3).
INITIAL_CFU_MAX = 0
ROUTINE_CFU_MAX = 3


class QualificationKind(db.Model):
    __tablename__ = "qualification_kinds"
    __table_args__ = (
        sa.CheckConstraint("valid_months >= 1 AND valid_months <= 60", name="valid_months_range"),
        sa.CheckConstraint("category3_months >= 1 AND category3_months <= valid_months", name="category3_months_range"),
        sa.CheckConstraint("initial_passes >= 1 AND initial_passes <= 10", name="initial_passes_range"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(LABEL_MAX), unique=True)
    name: Mapped[str] = mapped_column(sa.String(NAME_MAX))
    # How long a pass stands: Category 1 and 2 compounding, and the shorter interval of Category 3.
    valid_months: Mapped[int] = mapped_column(default=6)
    category3_months: Mapped[int] = mapped_column(default=3)
    # Passes in a row (with no fail between) before the first one qualifies.
    initial_passes: Mapped[int] = mapped_column(default=1)
    # Gloved fingertip sampling counts colony-forming units; its result must agree with the count.
    counts_cfu: Mapped[bool] = mapped_column(default=False)
    # Compounding and verifying need a valid pass of every required kind (REQUIRE_QUALIFICATIONS).
    required: Mapped[bool] = mapped_column(default=True)
    active: Mapped[bool] = mapped_column(default=True)
    builtin: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))


class Qualification(db.Model):
    __tablename__ = "qualifications"
    __table_args__ = (
        one_of("result", QUALIFICATION_RESULTS, "result_known"),
        sa.CheckConstraint("valid_until IS NULL OR valid_until > passed_on", name="valid_after_passed"),
        sa.CheckConstraint("cfu IS NULL OR cfu >= 0", name="cfu_not_negative"),
        # A person's records of a kind in date order: their standing is read off this index.
        sa.Index("ix_qualifications_user_kind_passed", "user_id", "kind_id", "passed_on"),
        # Who is due: the team page reads passes by their end.
        sa.Index("ix_qualifications_valid_until", "valid_until"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    kind_id: Mapped[int] = mapped_column(sa.ForeignKey("qualification_kinds.id"))
    # The day the test or assessment was performed.
    passed_on: Mapped[date]
    result: Mapped[str] = mapped_column(sa.String(10))
    # Colony-forming units counted (gloved fingertip sampling).
    cfu: Mapped[int | None]
    # A pass stands until this day included; None for a fail.
    valid_until: Mapped[date | None]
    assessor: Mapped[str] = mapped_column(sa.String(NAME_MAX), default="")
    note: Mapped[str] = mapped_column(sa.Text, default="")
    recorded_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)
    voided_at: Mapped[datetime | None]
    voided_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    void_reason: Mapped[str] = mapped_column(sa.Text, default="")


def insert_builtin_kinds(connection: sa.Connection) -> None:
    """The USP <797> kinds, unless they are there: every new database starts with them."""
    present = set(connection.execute(sa.select(QualificationKind.code)).scalars())
    now = utcnow()
    rows = [{"code": code, "name": name, "valid_months": months, "category3_months": months3,
             "initial_passes": passes, "counts_cfu": cfu, "required": True, "active": True, "builtin": True,
             "created_at": now}
            for code, name, months, months3, passes, cfu in BUILTIN_KINDS if code not in present]
    if rows:
        connection.execute(sa.insert(QualificationKind), rows)


@sa.event.listens_for(QualificationKind.__table__, "after_create")
def _builtin_kinds_in_every_new_schema(target, connection, **kw) -> None:
    insert_builtin_kinds(connection)
