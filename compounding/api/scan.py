"""API: resolve a scanned code (`GET /api/v1/scan?code=...`)."""

from flask import jsonify, request

from ..services.codes import BATCH_CODE
from ..services.scan import in_use_until, resolve
from ..site_scope import acting_site_id, current_scope
from .schemas.scan import ScanQuerySchema, ScanResultSchema
from .views import load, route, shared


@route("/scan", permission="scan.use",
       summary="Resolve a scanned code: batch, vial, lot, storage location, equipment, supplier GS1 or unknown; "
               "an item at a site the caller may not see answers its site's code only",
       query=ScanQuerySchema, response=ScanResultSchema, errors=(422,))
def scan():
    args = load(ScanQuerySchema, request.args.to_dict())
    result = resolve(args["code"], site_ids=current_scope(), acting_site_id=acting_site_id())
    answer = {"kind": result.kind, "usable": result.usable, "reasons": result.reasons, "received": result.shown}
    if result.site:
        answer["site"] = result.site
    if result.hidden:
        # Stock at a site the caller may not see: what was read and where it is, nothing more.
        answer["code"] = result.shown.strip().upper()
    elif result.equipment is not None:
        item = result.equipment
        answer.update(id=item.id, code=item.code, name=item.name, equipment_kind=item.kind, due_on=item.due_on)
    elif result.location is not None:
        location = result.location
        answer.update(id=location.id, code=location.code, name=location.name, location_kind=location.kind,
                      stored=result.stored)
    elif result.vial is not None:
        vial, batch = result.vial, result.batch
        answer.update(id=vial.id, code=vial.code, batch_id=batch.id, batch_code=batch.code, status=vial.status,
                      batch_status=batch.status, dose=vial.dose, remaining_ml=vial.remaining_ml,
                      in_use_until=in_use_until(vial, batch), first_punctured=vial.punctured_at,
                      beyond_use_at=batch.beyond_use_at, formula=batch.formula.label)
    elif result.kind == "vial":
        # A code meant as a vial that names none of ours: what was read, and its batch where it has one.
        head = result.shown.strip().upper().partition("-")[0]
        answer.update(code=result.shown.strip().upper(), batch_code=head if BATCH_CODE.match(head) else None)
    elif result.batch is not None:
        batch = result.batch
        answer.update(id=batch.id, code=batch.code, status=batch.status, beyond_use_at=batch.beyond_use_at,
                      remaining_volume_ml=batch.remaining_volume_ml, formula=batch.formula.label)
    elif result.lot is not None and result.kind == "lot":
        lot = result.lot
        answer.update(id=lot.id, code=lot.code, status=lot.status, expiry_date=lot.expires_on,
                      remaining=lot.remaining, ingredient=lot.ingredient.name)
    if result.kind == "gs1" and not result.hidden:
        data = result.gs1
        answer.update(gtin=data.gtin, lot_number=data.lot_number, expiry_date=data.expiry_date,
                      serial=data.serial, ingredient_id=result.ingredient.id if result.ingredient else None,
                      lot=({"id": result.lot.id, "code": result.lot.code, "status": result.lot.status,
                            "expiry_date": result.lot.expires_on} if result.lot is not None else None))
        if result.lot is not None:
            answer.update(id=result.lot.id, code=result.lot.code, status=result.lot.status)
    if result.error:
        answer["error"] = result.error
    return jsonify(shared(ScanResultSchema).dump(answer))
