"""Batches: compounding, verification, release tests, rejection, discard, the list."""

from marshmallow import EXCLUDE, Schema, ValidationError, fields, post_dump, validate, validates_schema

from ...limits import FORMULA_CODE_MAX, NOTE_MAX, NOTES_MAX, SHORT_TEXT_MAX
from ...models.batch import BATCH_STATUSES, DISCARD_REASONS, TEST_KINDS, TEST_METHODS, TEST_RESULTS
from ...models.vial import DOSES, VIAL_STATUSES
from ...services.batches import MAX_UNITS, is_batch_expired, unusable_reasons
from ...services.clock import utcnow
from .common import RECORD_ID, Day, HoldSchema, Moment, Quantity, Search, reason_text, signature
from .equipment import BatchEquipmentSchema
from .sites import PlacedSchema


class BatchFormulaSchema(Schema):
    """The formula version a batch was made from."""

    id = fields.Integer()
    code = fields.String()
    version = fields.Integer()
    name = fields.String()


class BatchComponentSchema(Schema):
    """One lot a batch consumed, as the ingredient and lot were at compounding (the copy on the record)."""

    lot_id = fields.Integer()
    lot_code = fields.String()
    supplier_lot_number = fields.String()
    lot_expires_on = fields.Date()
    lot_expiry_date = fields.Function(lambda component: component.lot_expires_on.isoformat(), metadata={
        "type": "string", "format": "date", "description": "Same as lot_expires_on"})
    ingredient_id = fields.Integer()
    ingredient_name = fields.String()
    strength = fields.String(attribute="ingredient_strength")
    unit = fields.String(attribute="ingredient_unit")
    theoretical_quantity = Quantity(metadata={"type": "string", "format": "decimal",
                                              "description": "What the formula asks for, for all units"})
    quantity = Quantity(metadata={"type": "string", "format": "decimal", "description": "What was taken from this lot"})
    scanned = fields.Boolean(metadata={"description": "The container was confirmed by scanning it"})


class BatchVialSchema(Schema):
    """One vial of a batch; `in_use_until` is set once a multiple-dose vial is punctured."""

    code = fields.String(metadata={"example": "B2612060001-02"})
    number = fields.Integer()
    dose = fields.String(metadata={"enum": list(DOSES)})
    status = fields.String(metadata={"enum": list(VIAL_STATUSES)})
    remaining_ml = Quantity()
    volume_ml = Quantity(metadata={"description": "Its fill", "type": "string", "format": "decimal"})
    punctured_at = fields.AwareDateTime(allow_none=True, metadata={"description": "Its first use"})
    in_use_until = fields.AwareDateTime(allow_none=True, metadata={
        "description": "Multiple-dose, once punctured: the end of its in-use period, never beyond the batch's BUD"})
    legacy = fields.Boolean(metadata={"description": "Made for the volume a batch had left when vials got codes"})


class BatchSchema(PlacedSchema):
    """A batch as answered; formula, people and components come loaded with it (lazy="raise").

    `usable`, `reasons` and `expired` come from services.batches, the one rule, at one instant.
    """

    id = fields.Integer()
    code = fields.String()
    status = fields.String(metadata={"enum": list(BATCH_STATUSES)})
    status_reason = fields.String()
    discard_reason = fields.String(allow_none=True, metadata={"enum": list(DISCARD_REASONS)})
    formula = fields.Nested(BatchFormulaSchema)
    units = fields.Integer()
    total_volume_ml = Quantity()
    remaining_volume_ml = Quantity()
    storage = fields.String()
    beyond_use_at = fields.DateTime()
    preparation_started_at = fields.DateTime(metadata={"description": "When the BUD clock started"})
    compounded_at = fields.DateTime()
    compounded_by_id = fields.Integer()
    compounded_by = fields.Function(lambda batch: batch.compounded_by.display_name, metadata={"type": "string"})
    verified_at = fields.DateTime(allow_none=True)
    verified_by_id = fields.Integer(allow_none=True)
    verified_by = fields.Function(
        lambda batch: batch.verified_by.display_name if batch.verified_by_id is not None else None,
        metadata={"type": "string", "nullable": True, "description": "The verifying pharmacist's name"})
    deviations = fields.String()
    notes = fields.String()
    components = fields.List(fields.Nested(BatchComponentSchema))
    equipment = fields.List(fields.Nested(BatchEquipmentSchema), attribute="equipment_used", metadata={
        "description": "The equipment it was made with, as recorded at compounding (its due date then)"})
    required_tests = fields.Function(lambda batch: list(batch.tests_required), metadata={
        "type": "array", "items": {"type": "string", "enum": list(TEST_KINDS)},
        "description": "The tests its BUD rests on; the batch is awaiting_tests until each has passed"})
    tests = fields.List(fields.Nested(lambda: BatchTestSchema()), dump_only=True,
                        metadata={"description": "The recorded test results (one batch's answer only)"})
    holds = fields.List(fields.Nested(HoldSchema), dump_only=True,
                        metadata={"description": "Every hold reason, standing or released (one batch's answer only)"})
    vials = fields.List(fields.Nested(BatchVialSchema), dump_only=True,
                        metadata={"description": "Every vial, by number (one batch's answer only)"})
    # Filled by _usability below (a batch has no such attributes).
    expired = fields.Boolean(dump_only=True)
    usable = fields.Boolean(dump_only=True)
    reasons = fields.List(fields.String(), dump_only=True,
                          metadata={"description": "Why the batch may not be injected now (empty: usable)"})

    @post_dump(pass_original=True)
    def _usability(self, data, batch, **kwargs):
        now = utcnow()
        reasons = unusable_reasons(batch, now)
        data.update(expired=is_batch_expired(batch, now), usable=not reasons, reasons=reasons)
        return data


class BatchAllocationSchema(Schema):
    lot_id = fields.Integer(required=True, strict=True, validate=RECORD_ID)
    quantity = Quantity(required=True)


class BatchCompoundSchema(Schema):
    formula_id = fields.Integer(required=True, strict=True, validate=RECORD_ID,
                                metadata={"description": "An approved formula version"})
    units = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=MAX_UNITS))
    allocations = fields.List(
        fields.Nested(BatchAllocationSchema), load_default=None, allow_none=True,
        validate=validate.Length(max=200),
        metadata={"description": "Lots picked by hand; ingredients left out are taken FEFO"})
    deviation_note = fields.String(load_default="", validate=validate.Length(max=NOTE_MAX),
                                   metadata={"description": "Required when quantities differ from the formula"})
    notes = fields.String(load_default="", validate=validate.Length(max=NOTES_MAX))
    scanned_lot_ids = fields.List(fields.Integer(strict=True, validate=RECORD_ID), load_default=list,
                                  validate=validate.Length(max=200),
                                  metadata={"description": "Lots whose containers were confirmed by scanning"})
    preparation_started_at = Moment(load_default=None, allow_none=True, metadata={
        "description": "When preparation started (ISO 8601 with offset; default: now): the BUD counts from it"})
    location_id = fields.Integer(load_default=None, allow_none=True, strict=True, validate=RECORD_ID,
                                 metadata={"description": "Where the batch is kept (default: your site's default)"})
    equipment_ids = fields.List(
        fields.Integer(strict=True, validate=RECORD_ID), load_default=None, allow_none=True,
        validate=validate.Length(max=50),
        metadata={"description": "The equipment used (balance, hood...): required where the batch's site has "
                                 "equipment registered; overdue, out-of-service, retired or another site's "
                                 "equipment is refused (409)"})

    @validates_schema
    def _each_lot_once(self, data, **kwargs):
        lot_ids = [row["lot_id"] for row in data.get("allocations") or []]
        if len(lot_ids) != len(set(lot_ids)):
            raise ValidationError("Allocate each lot once.", field_name="allocations")


class BatchVerifySchema(Schema):
    password = signature("The verifying pharmacist's")


class BatchTestSchema(Schema):
    """A recorded test result with who signed it."""

    id = fields.Integer()
    batch_id = fields.Integer()
    kind = fields.String(metadata={"enum": list(TEST_KINDS)})
    result = fields.String(metadata={"enum": list(TEST_RESULTS)})
    method = fields.String(metadata={"enum": list(TEST_METHODS)})
    lab = fields.String()
    sampled_on = fields.Date()
    units_sampled = fields.Integer()
    note = fields.String()
    recorded_at = fields.DateTime()
    recorded_by_id = fields.Integer()
    signed_by = fields.String(metadata={"description": "The signing pharmacist's name"})
    signed_at = fields.DateTime()


class BatchTestRecordedSchema(BatchTestSchema):
    """The result as recorded, the batch's status after it, and the batch."""

    status = fields.String(metadata={"enum": list(BATCH_STATUSES)})
    batch = fields.Nested(BatchSchema)


class BatchTestCreateSchema(Schema):
    kind = fields.String(required=True, validate=validate.OneOf(TEST_KINDS))
    result = fields.String(required=True, validate=validate.OneOf(TEST_RESULTS))
    method = fields.String(required=True, validate=validate.OneOf(TEST_METHODS),
                           metadata={"description": "compendial (USP <71>: a pass no earlier than 14 days "
                                                    "after sampling) or rapid"})
    lab = fields.String(required=True, validate=validate.Length(min=1, max=SHORT_TEXT_MAX))
    sampled_on = Day(required=True, metadata={"description": "The clinic day the samples were taken, YYYY-MM-DD"})
    password = signature("The recording pharmacist's")
    units_sampled = fields.Integer(load_default=0, strict=True, validate=validate.Range(min=0, max=MAX_UNITS),
                                   metadata={"description": "Units taken as samples: they leave the batch"})
    note = fields.String(load_default="", validate=validate.Length(max=NOTE_MAX))


class BatchRejectSchema(Schema):
    password = signature()
    reason = reason_text()


class BatchDiscardSchema(Schema):
    reason = fields.String(required=True, validate=validate.OneOf(DISCARD_REASONS))
    note = fields.String(load_default="", validate=validate.Length(max=NOTE_MAX),
                         metadata={"description": "Required when the reason is `other`"})


class BatchQuerySchema(Schema):
    """The batch page's filters (queries.batches.BatchFilters), checked before use."""

    class Meta:
        unknown = EXCLUDE

    formula = fields.String(validate=validate.Length(max=FORMULA_CODE_MAX),
                            metadata={"description": "A formula code (any version)"})
    status = fields.String(validate=validate.OneOf(BATCH_STATUSES))
    bud_within_hours = fields.Integer(
        validate=validate.Range(min=0, max=24 * 3650),
        metadata={"description": "Prepared or released batches whose BUD falls within this many hours"})
    compounded_from = Day(metadata={"description": "First clinic day, YYYY-MM-DD"})
    compounded_to = Day(metadata={"description": "Last clinic day, YYYY-MM-DD"})
    q = Search(metadata={"description": "Part of the batch code"})
