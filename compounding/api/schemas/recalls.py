"""Traces, recalls and their contacts, quality signals."""

from marshmallow import EXCLUDE, Schema, ValidationError, fields, post_dump, validate, validates_schema

from ...limits import NOTE_MAX, NOTES_MAX
from ...models.batch import BATCH_STATUSES
from ...models.recall import CONTACT_METHODS, CONTACT_OUTCOMES, RECALL_STATUSES
from ...models.treatment import VOID_CODES
from ...pagination import MAX_PAGE
from ...privacy import withhold_identity
from ...queries.recalls import split_codes, trace_counts
from ...services.trace import TRACE_PER_PAGE, TRACE_PER_PAGE_MAX
from ...services.trace_places import lot_place_lines, place_text
from .batches import BatchFormulaSchema
from .common import RECORD_ID, Quantity, reason_text, signature
from .lots import LotRefSchema, LotStockSchema

# Trace rows are database rows (services.trace): every field below is read by name from them.


def _value(row, name: str):
    """A field of a trace row, or of a recall's patient (the row's fields in a dict, with the outcome)."""
    return row[name] if isinstance(row, dict) else getattr(row, name)


_CODES = {"type": "array", "items": {"type": "string"}}
_VIAL_CODES = {**_CODES, "description": "The vials used (none for uses recorded before vials had codes)"}
_POOLED = {"type": "boolean", "description": "Some use was recorded before vials had codes: pooled, no vial"}
_PLACE = {"type": "string", "description": 'Where it is now: "SITE · LOCATION name", or "in transit on T000123"'}


class _PlacedSchema(Schema):
    """Where a traced item is now."""

    site_code = fields.String(allow_none=True)
    location_code = fields.String(allow_none=True)
    location_name = fields.String(allow_none=True)
    place = fields.Function(place_text, metadata=_PLACE)


class TraceLotSchema(LotStockSchema):
    """The traced lot; its ingredient comes loaded with it."""


class TraceBatchSchema(Schema):
    """The traced batch; its formula comes loaded with it."""

    id = fields.Integer()
    code = fields.String()
    status = fields.String(metadata={"enum": list(BATCH_STATUSES)})
    status_reason = fields.String()
    formula = fields.Nested(BatchFormulaSchema)
    units = fields.Integer()
    total_volume_ml = Quantity()
    remaining_volume_ml = Quantity()
    compounded_at = fields.DateTime()
    verified_at = fields.DateTime(allow_none=True)
    beyond_use_at = fields.DateTime()


class TraceUpstreamLotSchema(LotRefSchema, _PlacedSchema):
    """A lot a batch consumed, with how much of it."""

    ingredient_name = fields.String()
    unit = fields.String()
    quantity = Quantity(metadata={"type": "string", "format": "decimal", "description": "Taken from this lot"})


class TraceBatchRowSchema(_PlacedSchema):
    """A batch downstream of a lot (or the traced batch itself)."""

    id = fields.Integer()
    code = fields.String()
    status = fields.String(metadata={"enum": list(BATCH_STATUSES)})
    formula_code = fields.String()
    formula_version = fields.Integer()
    formula_name = fields.String()
    compounded_at = fields.DateTime()
    beyond_use_at = fields.DateTime()
    total_volume_ml = Quantity()
    remaining_volume_ml = Quantity()
    quantity_from_lot = Quantity(allow_none=True, metadata={
        "type": "string", "format": "decimal", "nullable": True,
        "description": "For a lot's trace: what this batch took from the lot, in the ingredient's unit"})


class TraceSessionRowSchema(Schema):
    """A treatment session that used the traced batches; a voided one stays, flagged: a correction never
    shrinks a trace."""

    id = fields.Integer()
    performed_at = fields.DateTime()
    patient_id = fields.Integer()
    chart_number = fields.String()
    volume_ml = Quantity(metadata={"type": "string", "format": "decimal",
                                   "description": "Of the traced batches, in this session"})
    batch_codes = fields.Function(lambda row: split_codes(row.batch_codes),
                                  metadata={"type": "array", "items": {"type": "string"}})
    site_code = fields.String(metadata={"description": "Where the session was performed"})
    voided = fields.Function(lambda row: row.voided_at is not None, metadata={"type": "boolean"})
    voided_at = fields.DateTime(allow_none=True)
    void_code = fields.String(allow_none=True, metadata={"enum": list(VOID_CODES)})
    vial_codes = fields.Function(lambda row: split_codes(row.vial_codes), metadata=_VIAL_CODES)
    pooled = fields.Function(lambda row: bool(row.pooled), metadata=_POOLED)


class TracePatientRowSchema(Schema):
    """A patient reached, with the contact details a recall needs and the volume received."""

    id = fields.Integer()
    chart_number = fields.String()
    name = fields.String()
    phone = fields.String()
    email = fields.String()
    sessions = fields.Integer()
    volume_ml = Quantity(metadata={"type": "string", "format": "decimal",
                                   "description": "Of the traced batches, over the sessions that stand"})
    first_at = fields.DateTime()
    last_at = fields.DateTime()
    voided_sessions = fields.Integer(metadata={"description": "Of `sessions`, those voided"})
    vial_codes = fields.Function(lambda row: split_codes(_value(row, "vial_codes")), metadata=_VIAL_CODES)
    pooled = fields.Function(lambda row: bool(_value(row, "pooled")), metadata=_POOLED)

    @post_dump
    def _need_to_know(self, data, **kwargs):
        return withhold_identity(data)


class TraceVialRowSchema(_PlacedSchema):
    """A vial of the traced batches: where it stands and which sessions and patients it went to."""

    id = fields.Integer()
    code = fields.String()
    number = fields.Integer()
    batch_id = fields.Integer()
    batch_code = fields.String()
    status = fields.String()
    dose = fields.String()
    volume_ml = Quantity()
    remaining_ml = Quantity()
    punctured_at = fields.DateTime(allow_none=True)
    legacy = fields.Boolean()
    sessions = fields.Integer(metadata={"description": "Sessions it was used in (voided ones too)"})
    session_ids = fields.Function(lambda row: sorted(int(i) for i in split_codes(row.session_ids)),
                                  metadata={"type": "array", "items": {"type": "integer"}})
    chart_numbers = fields.Function(lambda row: split_codes(row.chart_numbers),
                                    metadata={**_CODES, "description": "The patients it went to"})
    transit_code = fields.String(allow_none=True, metadata={"description": "The dispatched transfer carrying it"})


class TraceSiteSchema(Schema):
    """One site's share of the scope: the sessions performed there and what they reached."""

    site_code = fields.String()
    site_name = fields.String()
    batches = fields.Integer(metadata={"description": "Batches used there"})
    vials = fields.Integer(metadata={"description": "Vials used there"})
    sessions = fields.Integer(metadata={"description": "Voided ones too"})
    voided_sessions = fields.Integer()
    patients = fields.Integer()
    volume_ml = Quantity(metadata={"type": "string", "format": "decimal", "description": "Of the sessions that stand"})


class TracePlaceSchema(Schema):
    """The traced item (a lot with its child lots) and where each is now."""

    id = fields.Integer()
    code = fields.String()
    status = fields.String()
    parent_lot_id = fields.Integer(allow_none=True)
    site_code = fields.String(allow_none=True)
    location_code = fields.String(allow_none=True)
    location_name = fields.String(allow_none=True)
    transit_code = fields.String(allow_none=True)
    transit_quantity = Quantity(allow_none=True)
    place = fields.Function(lambda row: "; ".join(lot_place_lines(row)) if hasattr(row, "transit_quantity")
                            else place_text(row), metadata=_PLACE)


class TraceCountsSchema(Schema):
    lots = fields.Integer(metadata={"description": "A batch's trace only"})
    batches = fields.Integer()
    vials = fields.Integer()
    sessions = fields.Integer()
    patients = fields.Integer()


class ScopePageSchema(Schema):
    """Which page of a trace's or a recall's lists: batches, sessions and patients are paged together."""

    class Meta:
        unknown = EXCLUDE

    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=MAX_PAGE))
    per_page = fields.Integer(load_default=TRACE_PER_PAGE, validate=validate.Range(min=1, max=TRACE_PER_PAGE_MAX),
                              metadata={"description": "Rows of each list per page"})
    after = fields.String(load_default=None, validate=validate.Length(max=2000), metadata={
        "description": "A trace's `next_cursor`: the next page after the rows seen, as cheap as the first"})


_SCOPE_COUNTS = {"type": "object", "description": "Over the whole scope, whatever the page", "properties": {
    name: {"type": "integer"} for name in ("lots", "batches", "vials", "sessions", "patients")}}
_PAGES = "Pages of the longest list; `counts` tells how many rows each list has in all"


class _TraceScopeSchema(Schema):
    batches = fields.List(fields.Nested(TraceBatchRowSchema), metadata={"description": "This page's"})
    vials = fields.List(fields.Nested(TraceVialRowSchema), metadata={"description": "This page's"})
    sessions = fields.List(fields.Nested(TraceSessionRowSchema), metadata={"description": "This page's"})
    patients = fields.List(fields.Nested(TracePatientRowSchema), metadata={"description": "This page's"})
    counts = fields.Function(trace_counts, metadata=_SCOPE_COUNTS)
    total_volume_ml = Quantity(metadata={"type": "string", "format": "decimal",
                                         "description": "Injected in all, over the whole scope"})
    voided_sessions = fields.Integer(metadata={"description": "Of counts.sessions, those voided (kept, flagged)"})
    page = fields.Integer()
    per_page = fields.Integer()
    pages = fields.Integer(metadata={"description": _PAGES})
    next_cursor = fields.String(allow_none=True, metadata={"description": "Pass as `after` for the next page"})
    sites = fields.List(fields.Nested(TraceSiteSchema), metadata={"description": "Per site where sessions were "
                                                                                 "performed"})
    places = fields.List(fields.Nested(TracePlaceSchema), metadata={
        "description": "The traced lot and its child lots (or the batch), where each is now"})


class LotTraceSchema(_TraceScopeSchema):
    """Downstream of a lot: every batch that used it, every session, every patient."""

    lot = fields.Nested(TraceLotSchema)


class BatchTraceSchema(_TraceScopeSchema):
    """Upstream lots of a batch, and its sessions and patients downstream."""

    batch = fields.Nested(TraceBatchSchema)
    lots = fields.List(fields.Nested(TraceUpstreamLotSchema))


class RecallTargetSchema(Schema):
    kind = fields.String(metadata={"enum": ["lot", "batch"]})
    id = fields.Integer()
    code = fields.String()


class RecallProgressSchema(Schema):
    contacted = fields.Integer(metadata={"description": "Patients with an outcome (anything but attempt_failed)"})
    total = fields.Integer(metadata={"description": "Patients in the recall's scope"})


class SignatureSchema(Schema):
    meaning = fields.String()
    signer_id = fields.Integer()
    signer_name = fields.String()
    signed_at = fields.DateTime()


class RecallContactSchema(Schema):
    """One attempt to reach a patient and its outcome: who, when, how."""

    id = fields.Integer()
    patient_id = fields.Integer()
    chart_number = fields.String()
    outcome = fields.String(metadata={"enum": list(CONTACT_OUTCOMES)})
    contacted_at = fields.DateTime()
    contacted_by_id = fields.Integer()
    contacted_by = fields.String()
    method = fields.String(allow_none=True, metadata={"enum": list(CONTACT_METHODS)})
    note = fields.String()


class RecallPatientRowSchema(TracePatientRowSchema):
    """A patient in a recall's scope, with their attempts and outcome (the latest that is not a failed attempt)."""

    contacted = fields.Boolean(metadata={"description": "Whether the patient has an outcome"})
    outcome = fields.String(allow_none=True, metadata={"enum": list(CONTACT_OUTCOMES)})
    contact = fields.Nested(RecallContactSchema, allow_none=True, metadata={"description": "The outcome's row"})
    attempts = fields.List(fields.Nested(RecallContactSchema), metadata={"description": "Every row, oldest first"})


class RecallSummarySchema(Schema):
    """A recall in the list."""

    id = fields.Integer()
    status = fields.String(metadata={"enum": list(RECALL_STATUSES)})
    target = fields.Nested(RecallTargetSchema)
    reason = fields.String()
    opened_at = fields.DateTime()
    opened_by = fields.String()
    closed_at = fields.DateTime(allow_none=True)
    outcome = fields.String()
    progress = fields.Nested(RecallProgressSchema)


class RecallSchema(Schema):
    """A recall with its computed scope, the contacts made and the signatures (a queries.recalls.RecallRecord)."""

    id = fields.Integer(attribute="recall.id")
    status = fields.String(attribute="recall.status", metadata={"enum": list(RECALL_STATUSES)})
    target = fields.Nested(RecallTargetSchema)
    lot_id = fields.Integer(attribute="recall.lot_id", allow_none=True)
    batch_id = fields.Integer(attribute="recall.batch_id", allow_none=True)
    reason = fields.String(attribute="recall.reason")
    opened_at = fields.DateTime(attribute="recall.opened_at")
    opened_by_id = fields.Integer(attribute="recall.opened_by_id")
    opened_by = fields.String()
    closed_at = fields.DateTime(attribute="recall.closed_at", allow_none=True)
    closed_by_id = fields.Integer(attribute="recall.closed_by_id", allow_none=True)
    closed_by = fields.String(allow_none=True)
    outcome = fields.String(attribute="recall.outcome")
    signatures = fields.List(fields.Nested(SignatureSchema))
    progress = fields.Nested(RecallProgressSchema)
    recorded_after_opening = fields.Function(
        lambda record: list(record.late_sessions), metadata={
            "type": "array", "items": {"type": "integer"},
            "description": "Sessions performed before the recall opened but recorded after it (contact them)"})
    batches = fields.List(fields.Nested(TraceBatchRowSchema), attribute="scope.batches",
                          metadata={"description": "This page's"})
    vials = fields.List(fields.Nested(TraceVialRowSchema), attribute="scope.vials",
                        metadata={"description": "This page's"})
    sessions = fields.List(fields.Nested(TraceSessionRowSchema), attribute="scope.sessions",
                           metadata={"description": "This page's"})
    patients = fields.List(fields.Nested(RecallPatientRowSchema), metadata={"description": "This page's"})
    counts = fields.Function(lambda record: trace_counts(record.scope), metadata=_SCOPE_COUNTS)
    total_volume_ml = Quantity(attribute="scope.total_volume_ml")
    contacts = fields.List(fields.Nested(RecallContactSchema), attribute="contact_list",
                           metadata={"description": "Every attempt and outcome of this page's patients"})
    voided_sessions = fields.Integer(attribute="scope.voided_sessions")
    page = fields.Integer(attribute="scope.page")
    per_page = fields.Integer(attribute="scope.per_page")
    pages = fields.Integer(attribute="scope.pages", metadata={"description": _PAGES})


class RecallOpenSchema(Schema):
    lot_id = fields.Integer(strict=True, allow_none=True, load_default=None, validate=RECORD_ID)
    batch_id = fields.Integer(strict=True, allow_none=True, load_default=None, validate=RECORD_ID)
    reason = reason_text(NOTES_MAX)
    password = signature("The opening pharmacist's")

    @validates_schema
    def _one_target(self, data, **kwargs):
        if bool(data.get("lot_id")) == bool(data.get("batch_id")):
            raise ValidationError("Give either lot_id or batch_id.", field_name="lot_id")


class RecallContactCreateSchema(Schema):
    patient_id = fields.Integer(required=True, strict=True, validate=RECORD_ID)
    outcome = fields.String(load_default="reached", validate=validate.OneOf(CONTACT_OUTCOMES))
    method = fields.String(load_default=None, allow_none=True, validate=validate.OneOf(CONTACT_METHODS),
                           metadata={"description": "Required for reached and attempt_failed"})
    note = fields.String(load_default="", validate=validate.Length(max=NOTE_MAX))
    password = fields.String(load_default=None, allow_none=True,
                             metadata={"description": "A pharmacist's password, for not_exposed"})


class RecallCloseSchema(Schema):
    outcome = reason_text(NOTES_MAX)
    password = signature("The closing pharmacist's")


class RecallQuerySchema(Schema):
    class Meta:
        unknown = EXCLUDE

    status = fields.String(validate=validate.OneOf(RECALL_STATUSES))


def _fraction(description: str) -> fields.String:
    return fields.String(metadata={"format": "decimal", "description": description + ", a fraction in [0, 1]"})


class QualitySignalSchema(Schema):
    """A batch or lot flagged by its adverse events (services.signals.quality_signals)."""

    kind = fields.String(metadata={"enum": ["batch", "lot"]})
    id = fields.Integer()
    code = fields.String()
    status = fields.String()
    events = fields.Integer(metadata={"description": "Adverse events in the sessions that used it"})
    severe = fields.Integer(metadata={"description": "Of those, a serious type or graded severe"})
    sessions = fields.Integer(metadata={"description": "Exposed sessions (voided ones included)"})
    patients = fields.Integer(metadata={"description": "Distinct patients of those sessions"})
    rate = _fraction("The session rate (kept under its old name), e.g. \"0.0667\"")
    session_rate = _fraction("Sessions with at least one event / sessions")
    session_ci_low = _fraction("95 % Wilson interval of the session rate, low end")
    session_ci_high = _fraction("95 % Wilson interval of the session rate, high end")
    patient_rate = _fraction("Patients with at least one event / patients")
    patient_ci_low = _fraction("95 % Wilson interval of the patient rate, low end")
    patient_ci_high = _fraction("95 % Wilson interval of the patient rate, high end")
    baseline_session_rate = _fraction("The clinic's session rate over every session with a use")
    baseline_patient_rate = _fraction("The clinic's patient rate over every session with a use")
    signal_class = fields.String(metadata={"enum": ["quality", "expected"], "description":
                                           "quality: an infection, necrosis, nodule, allergic reaction, abscess "
                                           "or granuloma (one flags); expected: the rest"})
    reasons = fields.List(fields.String(), metadata={"description": "Why it is flagged, in words"})
    open_recall_id = fields.Integer(allow_none=True)


class RecallContactAnswerSchema(RecallContactSchema):
    """An attempt or outcome just recorded, with the recall's progress after it."""

    recall_id = fields.Integer()
    progress = fields.Nested(RecallProgressSchema)
