"""API: batches, compounded from an approved formula, verified by a second pharmacist, tested, rejected or
discarded."""

import sqlalchemy as sa
from flask import current_app, request
from flask_login import current_user
from sqlalchemy.orm import defaultload, joinedload, selectinload

from ..extensions import db
from ..models import Batch, Formula
from ..queries.batches import BatchFilters, all_batch_vials, batch_list_query, in_use_deadline, recorded_tests
from ..services import batches, holds
from ..services.batch_tests import record_test_result
from ..services.batches import unusable_reasons
from ..services.clock import utcnow
from ..site_scope import ensure_visible
from .schemas.batches import (
    BatchCompoundSchema,
    BatchDiscardSchema,
    BatchQuerySchema,
    BatchRejectSchema,
    BatchSchema,
    BatchTestCreateSchema,
    BatchTestRecordedSchema,
    BatchTestSchema,
    BatchVerifySchema,
    BatchVialSchema,
)
from .schemas.common import HoldSchema
from .scope import list_scope
from .views import answer, answer_one, hold_release_route, json_body, load, paginated, record_action, route

# Everything BatchSchema reads beyond the batch's formula and people (the relationships are
# lazy="raise"): the components, which carry their copy of ingredient and lot, and the equipment
# used, in one more statement each, so a page of batches costs the same number of statements whatever its length.
_COMPONENTS = (
    selectinload(Batch.components),
    selectinload(Batch.equipment_used),
    defaultload(Batch.formula).lazyload(Formula.components),
)


def _dump(row) -> dict:
    """A batch with every hold reason, standing or released; the standing ones are among its reasons."""
    batch = row.Batch
    data = BatchSchema().dump(batch)
    data["holds"] = HoldSchema(many=True).dump(holds.holds_of("batch", batch.id))
    data["tests"] = BatchTestSchema(many=True).dump(recorded_tests(batch.id))
    data["vials"] = BatchVialSchema(many=True).dump([
        {**vars(vial), "in_use_until": in_use_deadline(vial, batch)} for vial in all_batch_vials(batch.id)])
    standing = [h["text"] for h in data["holds"] if h["released_at"] is None]
    if standing:
        data["reasons"] = unusable_reasons(batch, utcnow(), holds=standing)
    return data


def _one(batch_id: int):
    """The statement reading one batch with everything its answer shows."""
    return sa.select(Batch).where(Batch.id == batch_id).options(
        joinedload(Batch.formula), joinedload(Batch.compounded_by), joinedload(Batch.verified_by), *_COMPONENTS)


def _answer(batch_id: int, status: int = 200):
    return answer_one(_one(batch_id), _dump, status)


@route("/batches", permission="batches.read", summary="List batches, filtered as on the batch page",
       response=BatchSchema, many=True, query=BatchQuerySchema, errors=(422,))
def batch_list():
    load(BatchQuerySchema, request.args.to_dict())
    # Checked by the schema, then read as the page reads them: the filters stay identical by construction.
    query = batch_list_query(BatchFilters.from_args(request.args), site_ids=list_scope())
    return paginated(query.options(*_COMPONENTS), BatchSchema)


@route("/batches", "POST", permission="batches.compound",
       summary="Compound a batch from an approved formula (FEFO unless lots are allocated); every container "
               "scanned by default: 409 with details.proposed_lots to scan and send back as allocations; "
               "equipment_ids name what it was made with (409 for overdue or out-of-service equipment)",
       body=BatchCompoundSchema, response=BatchSchema, status=201, errors=(404, 409))
def batch_create():
    data = load(BatchCompoundSchema, json_body())
    batch = batches.compound_batch(
        current_user, data["formula_id"], data["units"], allocations=data["allocations"],
        deviation_note=data["deviation_note"], notes=data["notes"], scanned_lot_ids=data["scanned_lot_ids"],
        require_scan=current_app.config.get("REQUIRE_SCAN_CONFIRMATION", True),
        preparation_started_at=data["preparation_started_at"], location_id=data["location_id"],
        equipment_ids=data["equipment_ids"],
    )
    return _answer(batch.id, 201)


@route("/batches/<int:batch_id>", permission="batches.read", summary="One batch", response=BatchSchema)
def batch_detail(batch_id: int):
    ensure_visible("batch", batch_id)
    return _answer(batch_id)


@record_action("/batches/<int:batch_id>/verify", permission="batches.verify",
               summary="Verify a prepared batch (a pharmacist other than the compounder; e-signature): status "
                       "released, or awaiting_tests while the tests its BUD rests on have not all passed",
               body=BatchVerifySchema, response=BatchSchema, answer_with=_answer)
def batch_verify(batch_id: int, data: dict):
    batches.verify_batch(current_user, batch_id, data["password"])


@route("/batches/<int:batch_id>/tests", "POST", permission="batches.verify",
       summary="Record a required test result (sterility, endotoxin) with a pharmacist's e-signature: the last "
               "pass releases a batch awaiting tests, a fail rejects it; sampled units leave the batch",
       body=BatchTestCreateSchema, response=BatchTestRecordedSchema, status=201, errors=(404, 409))
def batch_test_record(batch_id: int):
    data = load(BatchTestCreateSchema, json_body())
    test = record_test_result(current_user, batch_id, **data)
    recorded = next(row for row in recorded_tests(batch_id) if row["id"] == test.id)
    batch = _dump(db.session.execute(_one(batch_id)).one())
    return answer({**BatchTestSchema().dump(recorded), "status": batch["status"], "batch": batch}, 201)


@record_action("/batches/<int:batch_id>/reject", permission="batches.verify",
               summary="Reject a prepared batch (e-signature and a reason); its lots stay consumed",
               body=BatchRejectSchema, response=BatchSchema, answer_with=_answer)
def batch_reject(batch_id: int, data: dict):
    batches.reject_batch(current_user, batch_id, data["password"], data["reason"])


@record_action("/batches/<int:batch_id>/discard", permission="batches.discard",
               summary="Discard a batch with a coded reason; its remaining volume is written off",
               body=BatchDiscardSchema, response=BatchSchema, answer_with=_answer)
def batch_discard(batch_id: int, data: dict):
    batches.discard_batch(current_user, batch_id, data["reason"], data["note"])


hold_release_route("batch", "/batches/<int:batch_id>/release-hold",
                   permission="batches.verify", response=BatchSchema, answer_with=_answer)
