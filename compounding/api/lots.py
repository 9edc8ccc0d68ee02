"""API: lots, from receipt into quarantine to release or rejection, adjustments and the list."""

import sqlalchemy as sa
from flask import request
from flask_login import current_user
from marshmallow import EXCLUDE
from sqlalchemy.orm import defaultload, joinedload

from ..models import Ingredient, Lot
from ..queries.lots import LotFilters, lot_list_query
from ..services import holds, inventory
from .schemas.common import HoldReleaseSchema, HoldSchema
from .schemas.lots import (
    LotAdjustSchema,
    LotQuerySchema,
    LotReceiveSchema,
    LotRejectSchema,
    LotReleaseSchema,
    LotSchema,
)
from .views import answer_one, json_body, load, paginated, route

# Everything LotSchema reads, in the lot's own statement (the relationships are lazy="raise"),
# so a page of lots costs the same number of statements whatever its length.
_ANSWERED = (
    joinedload(Lot.received_by),
    joinedload(Lot.released_by),
    defaultload(Lot.ingredient).lazyload(Ingredient.gtins),
)


def _dump(row) -> dict:
    """A lot with every hold reason, standing or released."""
    lot = row.Lot
    return {**LotSchema().dump(lot), "holds": HoldSchema(many=True).dump(holds.holds_of("lot", lot.id))}


def _answer(lot_id: int, status: int = 200):
    return answer_one(sa.select(Lot).where(Lot.id == lot_id).options(joinedload(Lot.ingredient), *_ANSWERED),
                      _dump, status)


@route("/lots", permission="lots.read", summary="List lots, filtered", response=LotSchema, many=True,
       query=LotQuerySchema, errors=(422,))
def lot_list():
    filters = LotFilters(**load(LotQuerySchema, request.args.to_dict(), unknown=EXCLUDE))
    return paginated(lot_list_query(filters).options(*_ANSWERED), LotSchema, Lot.id)


@route("/lots", "POST", permission="lots.receive", summary="Receive a lot into quarantine",
       body=LotReceiveSchema, response=LotSchema, status=201, errors=(409,))
def lot_create():
    data = load(LotReceiveSchema, json_body())
    lot = inventory.receive_lot(
        current_user, ingredient_id=data["ingredient_id"], supplier=data["supplier"],
        supplier_lot_number=data["lot_number"], expires_on=data["expiry_date"],
        quantity=data["quantity"], gtin=data["gtin"], coa_reference=data["coa_reference"],
        location=data["location"],
    )
    return _answer(lot.id, 201)


@route("/lots/<int:lot_id>", permission="lots.read", summary="One lot", response=LotSchema)
def lot_detail(lot_id: int):
    return _answer(lot_id)


@route("/lots/<int:lot_id>/release", "POST", permission="lots.release",
       summary="Release a quarantined lot (e-signature: the signer's password)",
       body=LotReleaseSchema, response=LotSchema, errors=(409,))
def lot_release(lot_id: int):
    data = load(LotReleaseSchema, json_body())
    inventory.release_lot(current_user, lot_id, data["password"])
    return _answer(lot_id)


@route("/lots/<int:lot_id>/reject", "POST", permission="lots.release",
       summary="Reject a quarantined lot (e-signature and a reason)",
       body=LotRejectSchema, response=LotSchema, errors=(409,))
def lot_reject(lot_id: int):
    data = load(LotRejectSchema, json_body())
    inventory.reject_lot(current_user, lot_id, data["password"], data["reason"])
    return _answer(lot_id)


@route("/lots/<int:lot_id>/adjust", "POST", permission="lots.adjust",
       summary="Waste, return or correct a lot's count with a coded reason (a rise: a pharmacist's password)",
       body=LotAdjustSchema, response=LotSchema, errors=(403, 409))
def lot_adjust(lot_id: int):
    data = load(LotAdjustSchema, json_body())
    inventory.adjust_lot(current_user, lot_id, reason=data["reason"], quantity=data["quantity"],
                         direction=data["direction"], note=data["note"], password=data["password"])
    return _answer(lot_id)


@route("/lots/<int:lot_id>/release-hold", "POST", permission="lots.release",
       summary="Release one hold reason of a lot (a pharmacist's signature and a reason); 409 during a recall",
       body=HoldReleaseSchema, response=LotSchema, errors=(409,))
def lot_release_hold(lot_id: int):
    data = load(HoldReleaseSchema, json_body())
    holds.release_hold(current_user, "lot", lot_id, data["hold"], data["reason"], data["password"])
    return _answer(lot_id)
