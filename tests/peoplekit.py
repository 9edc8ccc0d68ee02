"""Helpers for the qualified-people tests: a qualification moved into the past."""

from datetime import date, timedelta

import sqlalchemy as sa

from compounding.extensions import db
from compounding.models import Qualification, QualificationKind
from compounding.services.qualifications import add_months


def lapse(user, code: str = "media_fill", *, days_ago: int = 1) -> date:
    """Move `user`'s records of a kind back so that their pass lapsed `days_ago` days ago; the day it lapsed."""
    kind_id = db.session.scalar(sa.select(QualificationKind.id).where(QualificationKind.code == code))
    until = date.today() - timedelta(days=days_ago)
    records = db.session.scalars(sa.select(Qualification).where(Qualification.user_id == user.id,
                                                                Qualification.kind_id == kind_id)
                                 .order_by(Qualification.passed_on.desc(), Qualification.id.desc())).all()
    for back, record in enumerate(records):  # an initial series stays on separate days, the last one ending `until`
        record.passed_on = add_months(until, -6) - timedelta(days=back)
        record.valid_until = until - timedelta(days=back)
    db.session.commit()
    return until


def due_in(user, days: int, code: str = "media_fill") -> date:
    """Move `user`'s pass of a kind so that it ends in `days` days (due soon within 30)."""
    kind_id = db.session.scalar(sa.select(QualificationKind.id).where(QualificationKind.code == code))
    until = date.today() + timedelta(days=days)
    db.session.execute(sa.update(Qualification).where(Qualification.user_id == user.id,
                                                      Qualification.kind_id == kind_id)
                       .values(passed_on=add_months(until, -6), valid_until=until))
    db.session.commit()
    return until
