"""API: lots, from receipt into quarantine to release or rejection, adjustments and the list."""

import sqlalchemy as sa
from flask import request
from flask_login import current_user
from marshmallow import EXCLUDE
from sqlalchemy.orm import defaultload, joinedload

from ..models import Ingredient, Lot
from ..queries.documents import certificate_of
from ..queries.lots import LotFilters, lot_list_query
from ..services import holds, inventory
from ..site_scope import ensure_visible
from .schemas.common import HoldSchema
from .schemas.lots import (
    LotAdjustSchema,
    LotQuerySchema,
    LotReceiveSchema,
    LotRejectSchema,
    LotReleaseSchema,
    LotSchema,
)
from .scope import list_scope
from .views import answer_one, hold_release_route, json_body, load, paginated, record_action, route

# Everything LotSchema reads, in the lot's own statement (the relationships are lazy="raise"),
# so a page of lots costs the same number of statements whatever its length.
_ANSWERED = (
    joinedload(Lot.received_by),
    joinedload(Lot.released_by),
    defaultload(Lot.ingredient).lazyload(Ingredient.gtins),
)


def _dump(row) -> dict:
    """A lot with every hold reason, standing or released, and the certificate of analysis attached."""
    lot = row.Lot
    certificate = certificate_of(lot)
    return {**LotSchema().dump(lot), "holds": HoldSchema(many=True).dump(holds.holds_of("lot", lot.id)),
            "certificate": None if certificate is None else {
                "document_id": certificate.id, "filename": certificate.filename, "sha256": certificate.sha256}}


def _answer(lot_id: int, status: int = 200):
    return answer_one(sa.select(Lot).where(Lot.id == lot_id).options(joinedload(Lot.ingredient), *_ANSWERED),
                      _dump, status)


@route("/lots", permission="lots.read", summary="List lots, filtered", response=LotSchema, many=True,
       query=LotQuerySchema, errors=(422,))
def lot_list():
    filters = LotFilters(**load(LotQuerySchema, request.args.to_dict(), unknown=EXCLUDE))
    return paginated(lot_list_query(filters, site_ids=list_scope()).options(*_ANSWERED), LotSchema, Lot.id)


@route("/lots", "POST", permission="lots.receive", summary="Receive a lot into quarantine",
       body=LotReceiveSchema, response=LotSchema, status=201, errors=(404, 409))
def lot_create():
    data = load(LotReceiveSchema, json_body())
    lot = inventory.receive_lot(
        current_user, ingredient_id=data["ingredient_id"], supplier=data["supplier"],
        supplier_lot_number=data["lot_number"], expires_on=data["expiry_date"],
        quantity=data["quantity"], gtin=data["gtin"], coa_reference=data["coa_reference"],
        location=data["location"], location_id=data["location_id"],
    )
    return _answer(lot.id, 201)


@route("/lots/<int:lot_id>", permission="lots.read", summary="One lot", response=LotSchema)
def lot_detail(lot_id: int):
    ensure_visible("lot", lot_id)
    return _answer(lot_id)


@record_action("/lots/<int:lot_id>/release", permission="lots.release",
               summary="Release a quarantined lot (e-signature: the signer's password); without a certificate of "
                       "analysis attached, only with a `reason` (422 otherwise)",
               body=LotReleaseSchema, response=LotSchema, answer_with=_answer)
def lot_release(lot_id: int, data: dict):
    inventory.release_lot(current_user, lot_id, data["password"], data["reason"])


@record_action("/lots/<int:lot_id>/reject", permission="lots.release",
               summary="Reject a quarantined lot (e-signature and a reason)",
               body=LotRejectSchema, response=LotSchema, answer_with=_answer)
def lot_reject(lot_id: int, data: dict):
    inventory.reject_lot(current_user, lot_id, data["password"], data["reason"])


@record_action("/lots/<int:lot_id>/adjust", permission="lots.adjust",
               summary="Waste, return or correct a lot's count with a coded reason (a rise: a pharmacist's password)",
               body=LotAdjustSchema, response=LotSchema, answer_with=_answer, errors=(403, 409))
def lot_adjust(lot_id: int, data: dict):
    inventory.adjust_lot(current_user, lot_id, reason=data["reason"], quantity=data["quantity"],
                         direction=data["direction"], note=data["note"], password=data["password"])


hold_release_route("lot", "/lots/<int:lot_id>/release-hold",
                   permission="lots.release", response=LotSchema, answer_with=_answer)
