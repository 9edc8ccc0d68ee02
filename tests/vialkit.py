"""Vials for tests of what reaches them (trace, holds, scan): a batch's vials, one used in a session."""

import sqlalchemy as sa

from compounding.extensions import db
from compounding.models import Vial
from compounding.services import treatments


def vials_of(batch) -> list[Vial]:
    """A batch's vials as stored now, in number order."""
    db.session.expire_all()
    return list(db.session.scalars(sa.select(Vial).where(Vial.batch_id == batch.id).order_by(Vial.number)))


def use_vial(actor, patient, vial, volume="1", **session):
    """Record a session using `vial`, named by its code and its batch's (both must agree)."""
    batch_code = vial.code.rsplit("-", 1)[0]
    return treatments.record_session(actor, patient_id=patient.id, uses=[
        {"vial_code": vial.code, "batch_code": batch_code, "volume_ml": volume}], **session)
