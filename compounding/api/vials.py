"""API: vials (`/api/v1/vials/{id}/release-hold`)."""

import sqlalchemy as sa

from ..models import Batch, Vial
from ..services.holds import standing_holds
from .schemas.vials import VialSchema
from .views import answer_one, hold_release_route, shared


def _dump(row) -> dict:
    vial, batch = row.Vial, row.Batch
    punctured = vial.dose == "multiple" and vial.punctured_at is not None
    return shared(VialSchema).dump({
        "id": vial.id, "code": vial.code, "number": vial.number, "batch_id": batch.id, "batch_code": batch.code,
        "dose": vial.dose, "status": vial.status, "status_reason": vial.status_reason, "volume_ml": vial.volume_ml,
        "remaining_ml": vial.remaining_ml, "legacy": vial.legacy, "punctured_at": vial.punctured_at,
        "in_use_until": vial.in_use_until(batch.beyond_use_at) if punctured else None,
        "holds": standing_holds("vial", vial.id)})


def _answer(vial_id: int, status: int = 200):
    return answer_one(sa.select(Vial, Batch).join(Batch, Batch.id == Vial.batch_id).where(Vial.id == vial_id),
                      _dump, status)


hold_release_route("vial", "/vials/<int:vial_id>/release-hold",
                   permission="batches.verify", response=VialSchema, answer_with=_answer)
