"""API: vials (`/api/v1/vials/{id}/release-hold`, `/api/v1/vials/{id}/discard`)."""

import sqlalchemy as sa
from flask_login import current_user

from ..models import Batch, Vial
from ..services import vials
from ..services.holds import standing_holds
from .schemas.batches import BatchDiscardSchema
from .schemas.vials import VialSchema
from .views import answer_one, hold_release_route, record_action, shared


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


@record_action("/vials/<int:vial_id>/discard", permission="vials.discard",
               summary="Discard one vial with a coded reason (dropped, contaminated, past its in-use period); "
                       "what it holds is written off",
               body=BatchDiscardSchema, response=VialSchema, answer_with=_answer)
def vial_discard(vial_id: int, data: dict):
    vials.discard_vial(current_user, vial_id, data["reason"], data["note"])
