"""API: transfers between sites (`/api/v1/transfers`): draft, dispatch, receive, cancel."""

from flask import abort, request
from flask_login import current_user
from marshmallow import EXCLUDE

from ..pagination import per_page_arg
from ..services import transfers
from ..site_scope import current_scope
from ..transfers.reads import transfer_list, transfer_record
from .schemas.transfers import (
    TransferCancelSchema,
    TransferCreateSchema,
    TransferDispatchSchema,
    TransferListItemSchema,
    TransferQuerySchema,
    TransferReceiveSchema,
    TransferSchema,
)
from .views import answer, json_body, load, page_answer, record_action, route, shared


def dump_transfer(view) -> dict:
    transfer = view.transfer
    return shared(TransferSchema).dump({
        "id": transfer.id, "code": transfer.code, "status": transfer.status, "from_site_id": transfer.from_site_id,
        "from_site_code": view.from_site.code, "to_site_id": transfer.to_site_id, "to_site_code": view.to_site.code,
        "to_location_code": view.to_location.code if view.to_location else None, "note": transfer.note,
        "created_at": transfer.created_at, "dispatched_at": transfer.dispatched_at,
        "received_at": transfer.received_at, "cancelled_at": transfer.cancelled_at,
        "cancel_reason": transfer.cancel_reason,
        "lines": [{"id": lv.line.id, "kind": lv.line.kind, "code": lv.code, "batch_code": lv.batch_code,
                   "quantity": lv.line.quantity, "received": lv.line.received, "damaged": lv.line.damaged,
                   "short": lv.short, "child_lot_code": lv.child_code, "item_status": lv.item_status,
                   "location_code": lv.location_code} for lv in view.lines]})


def _answer(transfer_id: int, status: int = 200):
    view = transfer_record(transfer_id, current_scope())
    if view is None:
        abort(404)
    return answer(dump_transfer(view), status)


@route("/transfers", permission="transfers.read", summary="List transfers from or to the caller's sites, newest "
       "first", response=TransferListItemSchema, many=True, query=TransferQuerySchema, errors=(422,))
def transfer_list_api():
    filters = load(TransferQuerySchema, request.args.to_dict(), unknown=EXCLUDE)
    page = transfer_list(current_scope(), filters.get("status"), per_page=per_page_arg())
    items = [{"id": row.Transfer.id, "code": row.Transfer.code, "status": row.Transfer.status,
              "from_site_code": row.from_code, "to_site_code": row.to_code, "lines": row.lines,
              "created_at": row.Transfer.created_at} for row in page.items]
    return answer(page_answer(TransferListItemSchema(many=True).dump(items), page))


@route("/transfers", "POST", permission="transfers.write",
       summary="Draft a transfer from one of the caller's sites to another site: lots by quantity, batches (their "
               "vials that can travel) or vials", body=TransferCreateSchema, response=TransferSchema, status=201,
       errors=(403, 404, 409))
def transfer_create():
    data = load(TransferCreateSchema, json_body())
    transfer = transfers.create_transfer(
        current_user, data["from_site_id"], data["to_site_id"],
        [{key: value for key, value in line.items() if value is not None} for line in data["lines"]],
        note=data["note"], to_location_id=data["to_location_id"])
    return _answer(transfer.id, 201)


@route("/transfers/<int:transfer_id>", permission="transfers.read", summary="One transfer with its lines",
       response=TransferSchema)
def transfer_detail(transfer_id: int):
    return _answer(transfer_id)


@record_action("/transfers/<int:transfer_id>/dispatch", permission="transfers.write",
               summary="Scan a draft out at its source: its vials go in transit, its lots give their quantity",
               body=TransferDispatchSchema, response=TransferSchema, answer_with=_answer, errors=(403, 409))
def transfer_dispatch(transfer_id: int, data: dict):
    transfers.dispatch(current_user, transfer_id, data["scanned_codes"])


@record_action("/transfers/<int:transfer_id>/receive", permission="transfers.receive",
               summary="Scan a dispatched transfer in at its destination (short and damaged counts per line); "
                       "409 when it was received already", body=TransferReceiveSchema, response=TransferSchema,
               answer_with=_answer, errors=(403, 404, 409, 422))
def transfer_receive(transfer_id: int, data: dict):
    counts = None if data["lines"] is None else [
        {"line_id": c["line_id"], "received": c["received"], "damaged": c["damaged"] or 0} for c in data["lines"]]
    transfers.receive(current_user, transfer_id, counts, to_location_id=data["to_location_id"])


@record_action("/transfers/<int:transfer_id>/cancel", permission="transfers.write",
               summary="Cancel a draft transfer (nothing has moved)", body=TransferCancelSchema,
               response=TransferSchema, answer_with=_answer)
def transfer_cancel(transfer_id: int, data: dict):
    transfers.cancel(current_user, transfer_id, data["reason"])
