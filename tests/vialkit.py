"""Uses of one vial in a session, for tests of what reaches vials (trace, holds, scan)."""

import sqlalchemy as sa

from compounding.extensions import db
from compounding.models import Batch, SessionUse, Vial
from compounding.services import treatments
from compounding.services.history import change_status
from compounding.services.ledger import move_vial


def use_vial(actor, patient, vial, volume="1", **session):
    """Record a session using `vial` (by its code; by its batch's code where the session takes no vial code).

    Where the session service does not yet attribute uses to vials, the use is attributed here as
    it would be: the vial's volume taken, opened, a single-dose vial spent at once.
    """
    batch_code = vial.code.rsplit("-", 1)[0]
    row = treatments.record_session(actor, patient_id=patient.id, uses=[
        {"vial_code": vial.code, "batch_code": batch_code, "volume_ml": volume}], **session)
    use = db.session.scalar(sa.select(SessionUse).where(SessionUse.session_id == row.id))
    if use.vial_id is None:
        use.vial_id = vial.id
        db.session.execute(sa.update(Vial).where(Vial.id == vial.id)
                           .values(remaining_ml=Vial.remaining_ml - use.volume_ml))
        db.session.refresh(vial)
        vial.first_session_id = vial.first_session_id or row.id
        vial.punctured_at = vial.punctured_at or row.performed_at
        if vial.single_dose and vial.remaining_ml > 0:
            move_vial(vial, db.session.get(Batch, vial.batch_id), "waste", -vial.remaining_ml, actor,
                      reason="single_dose_remainder")
        change_status(vial, "spent" if vial.single_dose or vial.remaining_ml <= 0 else "open", actor,
                      reason=f"used in session {row.id}", at=row.performed_at)
        db.session.commit()
    return row
