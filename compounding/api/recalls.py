"""API: trace a lot or a batch, open and work recalls (contacts, close), and the quality signals."""

from flask import jsonify, request
from flask_login import current_user
from marshmallow import Schema

from ..pagination import page_arg, paginate_rows, per_page_arg
from ..privacy import note_access
from ..queries import recalls as records
from ..services import recalls, trace
from ..services.signals import quality_signals
from .schemas.recalls import (
    BatchTraceSchema,
    LotTraceSchema,
    QualitySignalSchema,
    RecallCloseSchema,
    RecallContactAnswerSchema,
    RecallContactCreateSchema,
    RecallOpenSchema,
    RecallQuerySchema,
    RecallSchema,
    RecallSummarySchema,
    ScopePageSchema,
)
from .views import answer, json_body, load, page_answer, route


def _answer(recall_id: int, status: int = 200, page: int = 1, per_page: int = trace.TRACE_PER_PAGE):
    record = records.recall_record(recall_id, page, per_page)
    note_access("recall.view", target_type="recall", target_id=recall_id)
    return answer(RecallSchema().dump(record), status)


def _scope_page() -> tuple[int, int]:
    args = load(ScopePageSchema, request.args.to_dict())
    return args["page"], args["per_page"]


def _traced(kind: str, record_id: int, tracer, schema: type[Schema]):
    """One page of a lot's or batch's trace; the reading is noted, as the trace names patients."""
    args = load(ScopePageSchema, request.args.to_dict())
    scope = tracer(record_id, args["page"], args["per_page"], after=trace.decode_cursor(args["after"]))
    note_access(f"trace.{kind}", target_type=kind, target_id=record_id)
    return jsonify(schema().dump(scope))


@route("/trace/lots/<int:lot_id>", permission="patients.read",
       summary="Trace a lot downstream: the batches that used it, their sessions and patients (counts over "
               "all, one page of each list)", response=LotTraceSchema, query=ScopePageSchema, errors=(422,))
def trace_lot(lot_id: int):
    return _traced("lot", lot_id, trace.trace_lot, LotTraceSchema)


@route("/trace/batches/<int:batch_id>", permission="patients.read",
       summary="Trace a batch: the lots it consumed upstream, its sessions and patients downstream (counts "
               "over all, one page of each list)", response=BatchTraceSchema, query=ScopePageSchema, errors=(422,))
def trace_batch(batch_id: int):
    return _traced("batch", batch_id, trace.trace_batch, BatchTraceSchema)


SIGNAL_RATES = ("rate", "session_rate", "session_ci_low", "session_ci_high", "patient_rate", "patient_ci_low",
                "patient_ci_high", "baseline_session_rate", "baseline_patient_rate")


@route("/quality-signals", permission="recalls.read",
       summary="Batches and lots flagged by adverse events: one quality-class or severe event, or a patient rate "
               "whose 95 % lower bound is above the clinic's; each with its exposure, rates and reasons",
       response=QualitySignalSchema, many=True)
def quality_signal_list():
    page, per_page = page_arg(), per_page_arg()
    signals = quality_signals(limit=10_000)
    recall_ids = records.open_recall_ids()
    items = [_signal_item(s, recall_ids.get((s.kind, s.id))) for s in signals[(page - 1) * per_page:page * per_page]]
    return jsonify({"items": QualitySignalSchema(many=True).dump(items), "page": page, "per_page": per_page,
                    "total": len(signals)})


def _signal_item(signal, open_recall_id) -> dict:
    """A signal's figures, its rates as four-decimal strings like today's `rate`."""
    rates = {name: f"{getattr(signal, name):.4f}" for name in SIGNAL_RATES}
    return {**vars(signal), **rates, "open_recall_id": open_recall_id}


@route("/recalls", permission="recalls.read", summary="List recalls, the open ones first",
       response=RecallSummarySchema, many=True, query=RecallQuerySchema, errors=(422,))
def recall_list():
    filters = records.RecallFilters(**load(RecallQuerySchema, request.args.to_dict()))
    pagination = paginate_rows(records.recall_list_query(filters), per_page=per_page_arg())
    progress = records.progress_for([row.Recall.id for row in pagination.items])
    return jsonify(page_answer(
        RecallSummarySchema(many=True).dump([records.summary(row, progress) for row in pagination.items]),
        pagination))


@route("/recalls", "POST", permission="recalls.open",
       summary="Open a recall on a lot or a batch (e-signature): everything it reached is recalled at once",
       body=RecallOpenSchema, response=RecallSchema, status=201, errors=(404, 409))
def recall_create():
    data = load(RecallOpenSchema, json_body())
    recall = recalls.open_recall(current_user, reason=data["reason"], password=data["password"],
                                 lot_id=data["lot_id"], batch_id=data["batch_id"])
    return _answer(recall.id, 201)


@route("/recalls/<int:recall_id>", permission="patients.read",
       summary="One recall with its scope (counts over all, one page of each list), contacts, progress and "
               "signatures", response=RecallSchema, query=ScopePageSchema, errors=(422,))
def recall_detail(recall_id: int):
    return _answer(recall_id, 200, *_scope_page())


@route("/recalls/<int:recall_id>/contacts", "POST", permission="recalls.contact",
       summary="Record an attempt to reach a patient in the recall's scope and its outcome; 409 for unreachable "
               "before RECALL_MIN_ATTEMPTS failed attempts", body=RecallContactCreateSchema,
       response=RecallContactAnswerSchema, status=201, errors=(403, 404, 409))
def recall_contact_create(recall_id: int):
    data = load(RecallContactCreateSchema, json_body())
    contact = recalls.record_contact(current_user, recall_id, data["patient_id"], data["method"], data["note"],
                                     outcome=data["outcome"], password=data["password"])
    note_access("recall.contact", patient_id=contact.patient_id, target_type="recall", target_id=recall_id)
    contacted, total = records.progress_for([recall_id])[recall_id]
    return answer(RecallContactAnswerSchema().dump(
        {**vars(records.contact_answer(contact.id)), "recall_id": recall_id,
         "progress": {"contacted": contacted, "total": total}}), 201)


@route("/recalls/<int:recall_id>/close", "POST", permission="recalls.open",
       summary="Close a recall with its outcome (e-signature); 409 while a patient in scope has no outcome; "
               "recalled stock stays recalled",
       body=RecallCloseSchema, response=RecallSchema, errors=(409,))
def recall_close(recall_id: int):
    data = load(RecallCloseSchema, json_body())
    recalls.close_recall(current_user, recall_id, data["outcome"], data["password"])
    return _answer(recall_id)
