"""Marshmallow schemas: what the API accepts and answers (and what OpenAPI documents)."""

from decimal import Decimal

from marshmallow import EXCLUDE, Schema, ValidationError, fields, post_dump, validate, validates_schema

from ..models._common import MAX_RECORD_ID
from ..models.batch import BATCH_STATUSES, DISCARD_REASONS
from ..models.formula import FORMULA_STATUSES, INDICATIONS, ROUTES
from ..models.hold import HOLD_KINDS
from ..models.ingredient import INGREDIENT_KINDS, STOCK_UNITS, STORAGE_CONDITIONS
from ..models.ledger import ADJUST_REASONS
from ..models.lot import LOT_STATUSES
from ..models.recall import CONTACT_METHODS, CONTACT_OUTCOMES, RECALL_STATUSES
from ..models.treatment import ADVERSE_EVENT_TYPES, SEVERITIES, VOID_CODES
from ..pagination import MAX_PAGE
from ..privacy import withhold_identity
from ..queries.recalls import trace_counts
from ..services.batches import MAX_UNITS, is_batch_expired, unusable_reasons
from ..services.bounds import DAY_MESSAGE, day_in_range
from ..services.bud import BUD_TABLE, bud_duration
from ..services.clock import utcnow
from ..services.errors import InvalidInput
from ..services.expiry import is_expired, parse_expiry
from ..services.inventory import check_quantity
from ..queries.lots import LOT_SORTS
from ..services.trace import PER_PAGE as TRACE_PER_PAGE

# Record ids are database integers: a larger one names no record, and is refused here (422,
# naming the field) rather than overflowing the driver.
_ID = validate.Range(min=1, max=MAX_RECORD_ID, error="No record has this id.")


class Quantity(fields.Decimal):
    """A stock quantity: read by the services' rule (> 0, at most 3 decimals), answered as a string.

    Answers drop the database's trailing zeros ("250", "12.5"); `allow_zero` is for
    thresholds such as a reorder level.
    """

    def __init__(self, *, allow_zero: bool = False, **kwargs):
        kwargs.setdefault("metadata", {"type": "string", "format": "decimal", "example": "12.5"})
        super().__init__(as_string=True, **kwargs)
        self.allow_zero = allow_zero

    def _serialize(self, value, attr, obj, **kwargs):
        if value is None:
            return None
        return format(Decimal(value).normalize(), "f")

    def _deserialize(self, value, attr, data, **kwargs) -> Decimal:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ValidationError("Enter a number such as 12.5.")
        try:
            number = Decimal(str(value).strip())
        except ArithmeticError:
            raise ValidationError("Enter a number such as 12.5.") from None
        if not number.is_finite():  # NaN and sNaN compare with nothing, not even zero
            raise ValidationError("Enter a number such as 12.5.")
        if self.allow_zero and number == 0:
            return Decimal("0")
        if self.allow_zero and number < 0:
            raise ValidationError("Enter zero or more.")
        try:
            return check_quantity(number)
        except InvalidInput as exc:
            raise ValidationError(exc.message) from None


class Day(fields.Date):
    """`YYYY-MM-DD` within 1900-2100 (services.bounds): later sums of days never leave the calendar."""

    def _deserialize(self, value, attr, data, **kwargs):
        day = super()._deserialize(value, attr, data, **kwargs)
        if not day_in_range(day):
            raise ValidationError(DAY_MESSAGE)
        return day


class Moment(fields.AwareDateTime):
    """ISO 8601 with its offset, within 1900-2100."""

    def _deserialize(self, value, attr, data, **kwargs):
        at = super()._deserialize(value, attr, data, **kwargs)
        if not day_in_range(at):
            raise ValidationError(DAY_MESSAGE)
        return at


class ExpiryDate(fields.Date):
    """`YYYY-MM-DD`, or a month-only `YYYY-MM` read as the month's last day (services.expiry)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str):
            raise ValidationError("Give a date as YYYY-MM-DD, or a month as YYYY-MM.")
        try:
            return parse_expiry(value)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None


class ErrorSchema(Schema):
    error = fields.String(required=True)
    details = fields.Raw(allow_none=True)


class IngredientSchema(Schema):
    id = fields.Integer(dump_only=True)
    name = fields.String(required=True, validate=validate.Length(min=1, max=120))
    kind = fields.String(required=True, validate=validate.OneOf(INGREDIENT_KINDS))
    unit = fields.String(required=True, validate=validate.OneOf(STOCK_UNITS))
    strength = fields.String(load_default="", validate=validate.Length(max=60))
    storage = fields.String(load_default="room", validate=validate.OneOf(STORAGE_CONDITIONS))
    gtins = fields.List(fields.String(validate=validate.Regexp(r"^\d{8,14}$")),
                        attribute="gtin_list", data_key="gtins", load_default=list)
    reorder_level = Quantity(allow_zero=True, load_default=Decimal("0"))
    active = fields.Boolean(dump_only=True)
    # Released, unexpired stock (ingredient_overview_query): answered, never accepted.
    on_hand = Quantity(dump_only=True)
    nearest_expiry = fields.Date(dump_only=True, allow_none=True)
    below_reorder = fields.Boolean(dump_only=True)


class IngredientUpdateSchema(Schema):
    """A partial update: fields left out keep their current values."""

    name = fields.String(validate=validate.Length(min=1, max=120))
    kind = fields.String(validate=validate.OneOf(INGREDIENT_KINDS))
    unit = fields.String(validate=validate.OneOf(STOCK_UNITS))
    strength = fields.String(validate=validate.Length(max=60))
    storage = fields.String(validate=validate.OneOf(STORAGE_CONDITIONS))
    gtins = fields.List(fields.String(validate=validate.Regexp(r"^\d{8,14}$")))
    reorder_level = Quantity(allow_zero=True)
    active = fields.Boolean()


class IngredientQuerySchema(Schema):
    class Meta:
        unknown = EXCLUDE

    q = fields.String(load_default="", validate=validate.Length(max=120),
                      metadata={"description": "Part of the name"})
    below_reorder = fields.Boolean(load_default=False)
    include_inactive = fields.Boolean(load_default=False)


class AuditEventSchema(Schema):
    id = fields.Integer(dump_only=True)
    occurred_at = fields.DateTime(dump_only=True)
    actor_id = fields.Integer(dump_only=True, allow_none=True)
    actor_name = fields.String(dump_only=True)
    action = fields.String(dump_only=True)
    entity_type = fields.String(dump_only=True)
    entity_id = fields.Integer(dump_only=True, allow_none=True)
    old_values = fields.Dict(dump_only=True, allow_none=True)
    new_values = fields.Dict(dump_only=True, allow_none=True)
    reason = fields.String(dump_only=True)
    prev_hash = fields.String(dump_only=True)
    hash = fields.String(dump_only=True)
    hash_scheme = fields.String(dump_only=True)  # hmac-sha256, or sha256 for rows from before the key


class AuditEventQuerySchema(Schema):
    entity_type = fields.String(validate=validate.Length(min=1, max=40))
    entity_id = fields.Integer(validate=validate.Range(min=0, max=MAX_RECORD_ID))
    action = fields.String(validate=validate.Length(min=1, max=60),
                           metadata={"description": "An action or its prefix, e.g. `user.`"})


class HoldSchema(Schema):
    """A hold reason on a lot or batch (DESIGN 10.1.3); standing while `released_at` is null."""

    id = fields.Integer()
    kind = fields.String(metadata={"enum": list(HOLD_KINDS)})
    text = fields.String(metadata={"description": "How scans and refusals name it"})
    detail = fields.String()
    source_type = fields.String()
    source_id = fields.Integer(allow_none=True)
    placed_at = fields.DateTime()
    placed_by_id = fields.Integer(allow_none=True)
    released_at = fields.DateTime(allow_none=True)
    released_by_id = fields.Integer(allow_none=True)
    release_reason = fields.String()


class LotSchema(Schema):
    """A lot as answered; its ingredient and signers come loaded with it (lazy="raise")."""

    id = fields.Integer()
    code = fields.String()
    ingredient_id = fields.Integer()
    ingredient_name = fields.String(attribute="ingredient.name")
    unit = fields.String(attribute="ingredient.unit")
    supplier = fields.String()
    lot_number = fields.String(attribute="supplier_lot_number")
    gtin = fields.String(allow_none=True)
    expiry_date = fields.Date(attribute="expires_on")
    expired = fields.Function(lambda lot: is_expired(lot.expires_on), metadata={"type": "boolean"})
    quantity_received = Quantity()
    remaining = Quantity()
    status = fields.String(metadata={"enum": list(LOT_STATUSES)})
    status_reason = fields.String()
    coa_reference = fields.String()
    location = fields.String()
    received_at = fields.DateTime()
    received_by = fields.Function(lambda lot: lot.received_by.display_name, metadata={"type": "string"})
    released_at = fields.DateTime(allow_none=True)
    released_by = fields.Function(
        lambda lot: lot.released_by.display_name if lot.released_by_id is not None else None,
        metadata={"type": "string", "nullable": True, "description": "The releasing pharmacist's name"})
    holds = fields.List(fields.Nested(HoldSchema), dump_only=True,
                        metadata={"description": "Every hold reason, standing or released (one lot's answer only)"})


class HoldReleaseSchema(Schema):
    hold = fields.String(required=True, validate=validate.OneOf(HOLD_KINDS))
    reason = fields.String(required=True, validate=validate.Length(min=1, max=2000))
    password = fields.String(required=True, metadata={"description": "The releasing pharmacist's password"})


class LotReceiveSchema(Schema):
    ingredient_id = fields.Integer(required=True, strict=True, validate=_ID)
    supplier = fields.String(required=True, validate=validate.Length(min=1, max=120))
    lot_number = fields.String(required=True, validate=validate.Length(min=1, max=60))
    expiry_date = ExpiryDate(required=True, metadata={"description": "YYYY-MM-DD, or YYYY-MM for the "
                                                                       "month's last day"})
    quantity = Quantity(required=True)
    gtin = fields.String(load_default="", validate=validate.Length(max=14))
    coa_reference = fields.String(load_default="", validate=validate.Length(max=120))
    location = fields.String(load_default="", validate=validate.Length(max=120))


class LotReleaseSchema(Schema):
    password = fields.String(required=True, metadata={"description": "The signer's password"})


class LotRejectSchema(Schema):
    password = fields.String(required=True, metadata={"description": "The signer's password"})
    reason = fields.String(required=True, validate=validate.Length(min=1, max=2000))


class LotAdjustSchema(Schema):
    reason = fields.String(required=True, validate=validate.OneOf(ADJUST_REASONS))
    quantity = Quantity(required=True)
    direction = fields.String(load_default="out", validate=validate.OneOf(("in", "out")))
    note = fields.String(load_default="", validate=validate.Length(max=2000))
    password = fields.String(load_default=None, allow_none=True, metadata={
        "description": "A pharmacist's password: required to raise stock (direction `in`)"})


class LotQuerySchema(Schema):
    class Meta:
        unknown = EXCLUDE

    ingredient_id = fields.Integer(validate=_ID)
    status = fields.String(validate=validate.OneOf(LOT_STATUSES))
    expiring_within_days = fields.Integer(validate=validate.Range(min=0, max=3650))
    expired_in_stock = fields.Boolean()
    q = fields.String(validate=validate.Length(max=120),
                      metadata={"description": "Part of our code, the supplier or its lot number"})
    sort = fields.String(validate=validate.OneOf(tuple(LOT_SORTS)))


# --- batches -------------------------------------------------------------------------------------


class BatchFormulaSchema(Schema):
    """The formula version a batch was made from."""

    id = fields.Integer()
    code = fields.String()
    version = fields.Integer()
    name = fields.String()


class BatchComponentSchema(Schema):
    """One lot a batch consumed; the lot and its ingredient come loaded with it (lazy="raise")."""

    lot_id = fields.Integer()
    lot_code = fields.String(attribute="lot.code")
    lot_expiry_date = fields.Date(attribute="lot.expires_on")
    ingredient_id = fields.Integer()
    ingredient_name = fields.String(attribute="lot.ingredient.name")
    unit = fields.String(attribute="lot.ingredient.unit")
    theoretical_quantity = Quantity(metadata={"type": "string", "format": "decimal",
                                              "description": "What the formula asks for, for all units"})
    quantity = Quantity(metadata={"type": "string", "format": "decimal", "description": "What was taken from this lot"})
    scanned = fields.Boolean(metadata={"description": "The container was confirmed by scanning it"})


class BatchSchema(Schema):
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
    holds = fields.List(fields.Nested(HoldSchema), dump_only=True,
                        metadata={"description": "Every hold reason, standing or released (one batch's answer only)"})
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
    lot_id = fields.Integer(required=True, strict=True, validate=_ID)
    quantity = Quantity(required=True)


class BatchCompoundSchema(Schema):
    formula_id = fields.Integer(required=True, strict=True, validate=_ID,
                                metadata={"description": "An approved formula version"})
    units = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=MAX_UNITS))
    allocations = fields.List(
        fields.Nested(BatchAllocationSchema), load_default=None, allow_none=True,
        validate=validate.Length(max=200),
        metadata={"description": "Lots picked by hand; ingredients left out are taken FEFO"})
    deviation_note = fields.String(load_default="", validate=validate.Length(max=2000),
                                   metadata={"description": "Required when quantities differ from the formula"})
    notes = fields.String(load_default="", validate=validate.Length(max=5000))
    scanned_lot_ids = fields.List(fields.Integer(strict=True, validate=_ID), load_default=list,
                                  validate=validate.Length(max=200),
                                  metadata={"description": "Lots whose containers were confirmed by scanning"})

    @validates_schema
    def _each_lot_once(self, data, **kwargs):
        lot_ids = [row["lot_id"] for row in data.get("allocations") or []]
        if len(lot_ids) != len(set(lot_ids)):
            raise ValidationError("Allocate each lot once.", field_name="allocations")


class BatchVerifySchema(Schema):
    password = fields.String(required=True, metadata={"description": "The verifying pharmacist's password"})


class BatchRejectSchema(Schema):
    password = fields.String(required=True, metadata={"description": "The signer's password"})
    reason = fields.String(required=True, validate=validate.Length(min=1, max=2000))


class BatchDiscardSchema(Schema):
    reason = fields.String(required=True, validate=validate.OneOf(DISCARD_REASONS))
    note = fields.String(load_default="", validate=validate.Length(max=2000),
                         metadata={"description": "Required when the reason is `other`"})


class BatchQuerySchema(Schema):
    """The batch page's filters (batches.views.batch_list_query), checked before use."""

    class Meta:
        unknown = EXCLUDE

    formula = fields.String(validate=validate.Length(max=30), metadata={"description": "A formula code (any version)"})
    status = fields.String(validate=validate.OneOf(BATCH_STATUSES))
    bud_within_hours = fields.Integer(
        validate=validate.Range(min=0, max=24 * 3650),
        metadata={"description": "Prepared or released batches whose BUD falls within this many hours"})
    compounded_from = Day(metadata={"description": "First clinic day, YYYY-MM-DD"})
    compounded_to = Day(metadata={"description": "Last clinic day, YYYY-MM-DD"})
    q = fields.String(validate=validate.Length(max=20), metadata={"description": "Part of the batch code"})


# --- formulas ------------------------------------------------------------------------------------


class FormulaComponentSchema(Schema):
    """One component per unit; its ingredient comes loaded with it."""

    ingredient_id = fields.Integer(required=True, strict=True, validate=_ID)
    ingredient_name = fields.String(dump_only=True, attribute="ingredient.name")
    strength = fields.String(dump_only=True, attribute="ingredient.strength")
    unit = fields.String(dump_only=True, attribute="ingredient.unit",
                         metadata={"description": "The ingredient's stock unit, in which the quantity is given"})
    quantity = Quantity(required=True, metadata={"type": "string", "format": "decimal", "example": "2.5",
                                                 "description": "Per unit, in the ingredient's stock unit"})


class FormulaSchema(Schema):
    """A formula version as answered; `created_by` and `approved_by` are the people's names."""

    id = fields.Integer()
    code = fields.String()
    version = fields.Integer()
    name = fields.String()
    indication = fields.String(metadata={"enum": list(INDICATIONS)})
    route = fields.String(metadata={"enum": list(ROUTES)})
    dosage_form = fields.String()
    unit_label = fields.String()
    unit_volume_ml = Quantity()
    instructions = fields.String()
    storage = fields.String(metadata={"enum": list(STORAGE_CONDITIONS)})
    bud_category = fields.String(metadata={"enum": list(BUD_TABLE)})
    bud_category_label = fields.Function(lambda f: BUD_TABLE[f.bud_category].label, metadata={"type": "string"})
    bud_hours = fields.Integer(allow_none=True, metadata={"description": "A shorter duration than the table's"})
    bud_reason = fields.String()
    bud_duration_hours = fields.Function(
        lambda f: int(bud_duration(f.bud_category, f.storage, f.bud_hours).total_seconds() // 3600),
        metadata={"type": "integer", "description": "The duration batches get: the table's, or the shorter one"})
    status = fields.String(metadata={"enum": list(FORMULA_STATUSES)})
    created_at = fields.DateTime()
    created_by = fields.String()
    approved_at = fields.DateTime(allow_none=True)
    approved_by = fields.String(allow_none=True)
    retired_at = fields.DateTime(allow_none=True)
    previous_version_id = fields.Integer(allow_none=True)
    components = fields.List(fields.Nested(FormulaComponentSchema))


class FormulaCreateSchema(Schema):
    code = fields.String(required=True, validate=validate.Length(min=1, max=30),
                         metadata={"description": "Capitals, digits and dashes, e.g. LIPO-PCDC"})
    name = fields.String(required=True, validate=validate.Length(min=1, max=160))
    indication = fields.String(required=True, validate=validate.OneOf(INDICATIONS))
    route = fields.String(required=True, validate=validate.OneOf(ROUTES))
    dosage_form = fields.String(required=True, validate=validate.Length(min=1, max=60))
    unit_volume_ml = Quantity(required=True)
    bud_category = fields.String(required=True, validate=validate.OneOf(tuple(BUD_TABLE)))
    storage = fields.String(required=True, validate=validate.OneOf(STORAGE_CONDITIONS))
    components = fields.List(fields.Nested(FormulaComponentSchema), required=True, validate=validate.Length(max=40))
    instructions = fields.String(load_default="", validate=validate.Length(max=20000),
                                 metadata={"description": "Step by step; required before approval"})
    bud_hours = fields.Integer(load_default=None, allow_none=True, strict=True,
                               validate=validate.Range(min=1, max=100000),
                               metadata={"description": "Shorter than the table's duration, with bud_reason"})
    bud_reason = fields.String(load_default="", validate=validate.Length(max=2000))
    unit_label = fields.String(load_default="vial", validate=validate.Length(max=60),
                               metadata={"example": "vial 10 mL"})


class FormulaUpdateSchema(FormulaCreateSchema):
    """A partial update of a draft: fields left out keep their values; the code never changes."""

    class Meta:
        exclude = ("code",)

    def __init__(self, **kwargs):
        # Top-level fields may be left out (and get no defaults); component rows stay complete.
        super().__init__(partial=tuple(name for name in self._declared_fields if name != "code"), **kwargs)


class FormulaApproveSchema(Schema):
    password = fields.String(required=True, metadata={"description": "The approving pharmacist's password"})


class FormulaRetireSchema(Schema):
    reason = fields.String(required=True, validate=validate.Length(min=1, max=2000))


class FormulaQuerySchema(Schema):
    class Meta:
        unknown = EXCLUDE

    status = fields.String(validate=validate.OneOf(FORMULA_STATUSES))
    code = fields.String(validate=validate.Length(max=30), metadata={"description": "A formula code (all versions)"})
    indication = fields.String(validate=validate.OneOf(INDICATIONS))
    q = fields.String(validate=validate.Length(max=60), metadata={"description": "Part of the code or name"})


# --- scan ---------------------------------------------------------------------------------


class ScanQuerySchema(Schema):
    code = fields.String(required=True, validate=validate.Length(min=1, max=5000))


class ScanLotRefSchema(Schema):
    id = fields.Integer()
    code = fields.String()
    status = fields.String()
    expiry_date = fields.Date(metadata={"description": "the lot's recorded expiry, to set beside the barcode's"})


class ScanResultSchema(Schema):
    kind = fields.String(required=True, validate=validate.OneOf(["batch", "lot", "gs1", "unknown"]))
    usable = fields.Boolean(required=True)
    reasons = fields.List(fields.String(), required=True)
    received = fields.String(metadata={"description": "what arrived, control characters made visible"})
    id = fields.Integer()
    code = fields.String()
    status = fields.String()
    formula = fields.String()
    ingredient = fields.String()
    beyond_use_at = fields.AwareDateTime()
    remaining_volume_ml = Quantity()
    remaining = Quantity()
    expiry_date = fields.Date(allow_none=True)
    gtin = fields.String(allow_none=True)
    lot_number = fields.String(allow_none=True)
    serial = fields.String(allow_none=True)
    ingredient_id = fields.Integer(allow_none=True)
    lot = fields.Nested(ScanLotRefSchema, allow_none=True)
    error = fields.String()


# --- trace, recalls and quality signals ------------------------------------------------------------

# Trace rows are database rows (services.trace): every field below is read by name from them.


class TraceLotSchema(Schema):
    """The traced lot; its ingredient comes loaded with it."""

    id = fields.Integer()
    code = fields.String()
    status = fields.String(metadata={"enum": list(LOT_STATUSES)})
    status_reason = fields.String()
    ingredient_id = fields.Integer()
    ingredient_name = fields.String(attribute="ingredient.name")
    unit = fields.String(attribute="ingredient.unit")
    supplier = fields.String()
    lot_number = fields.String(attribute="supplier_lot_number")
    expiry_date = fields.Date(attribute="expires_on")
    quantity_received = Quantity()
    remaining = Quantity()


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


class TraceUpstreamLotSchema(Schema):
    """A lot a batch consumed, with how much of it."""

    id = fields.Integer()
    code = fields.String()
    status = fields.String(metadata={"enum": list(LOT_STATUSES)})
    ingredient_name = fields.String()
    unit = fields.String()
    supplier = fields.String()
    lot_number = fields.String(attribute="supplier_lot_number")
    expiry_date = fields.Date(attribute="expires_on")
    quantity = Quantity(metadata={"type": "string", "format": "decimal", "description": "Taken from this lot"})


class TraceBatchRowSchema(Schema):
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
    """A treatment session that used the traced batches; a voided one stays, flagged (DESIGN 10.1 rule 1)."""

    id = fields.Integer()
    performed_at = fields.DateTime()
    patient_id = fields.Integer()
    chart_number = fields.String()
    volume_ml = Quantity(metadata={"type": "string", "format": "decimal",
                                   "description": "Of the traced batches, in this session"})
    batch_codes = fields.Function(
        lambda row: sorted({c.strip() for c in (row.batch_codes or "").split(",") if c.strip()}),
        metadata={"type": "array", "items": {"type": "string"}})
    voided = fields.Function(lambda row: row.voided_at is not None, metadata={"type": "boolean"})
    voided_at = fields.DateTime(allow_none=True)
    void_code = fields.String(allow_none=True, metadata={"enum": list(VOID_CODES)})


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

    @post_dump
    def _need_to_know(self, data, **kwargs):
        return withhold_identity(data)


class TraceCountsSchema(Schema):
    lots = fields.Integer(metadata={"description": "A batch's trace only"})
    batches = fields.Integer()
    sessions = fields.Integer()
    patients = fields.Integer()


class ScopePageSchema(Schema):
    """Which page of a trace's or a recall's lists: batches, sessions and patients are paged together."""

    class Meta:
        unknown = EXCLUDE

    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=MAX_PAGE))
    per_page = fields.Integer(load_default=TRACE_PER_PAGE, validate=validate.Range(min=1, max=500),
                              metadata={"description": "Rows of each list per page"})


_SCOPE_COUNTS = {"type": "object", "description": "Over the whole scope, whatever the page", "properties": {
    name: {"type": "integer"} for name in ("lots", "batches", "sessions", "patients")}}
_PAGES = "Pages of the longest list; `counts` tells how many rows each list has in all"


class _TraceScopeSchema(Schema):
    batches = fields.List(fields.Nested(TraceBatchRowSchema), metadata={"description": "This page's"})
    sessions = fields.List(fields.Nested(TraceSessionRowSchema), metadata={"description": "This page's"})
    patients = fields.List(fields.Nested(TracePatientRowSchema), metadata={"description": "This page's"})
    counts = fields.Function(trace_counts, metadata=_SCOPE_COUNTS)
    total_volume_ml = Quantity(metadata={"type": "string", "format": "decimal",
                                         "description": "Injected in all, over the whole scope"})
    voided_sessions = fields.Integer(metadata={"description": "Of counts.sessions, those voided (kept, flagged)"})
    page = fields.Integer()
    per_page = fields.Integer()
    pages = fields.Integer(metadata={"description": _PAGES})


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
    lot_id = fields.Integer(strict=True, allow_none=True, load_default=None, validate=_ID)
    batch_id = fields.Integer(strict=True, allow_none=True, load_default=None, validate=_ID)
    reason = fields.String(required=True, validate=validate.Length(min=1, max=5000))
    password = fields.String(required=True, metadata={"description": "The opening pharmacist's password"})

    @validates_schema
    def _one_target(self, data, **kwargs):
        if bool(data.get("lot_id")) == bool(data.get("batch_id")):
            raise ValidationError("Give either lot_id or batch_id.", field_name="lot_id")


class RecallContactCreateSchema(Schema):
    patient_id = fields.Integer(required=True, strict=True, validate=_ID)
    outcome = fields.String(load_default="reached", validate=validate.OneOf(CONTACT_OUTCOMES))
    method = fields.String(load_default=None, allow_none=True, validate=validate.OneOf(CONTACT_METHODS),
                           metadata={"description": "Required for reached and attempt_failed"})
    note = fields.String(load_default="", validate=validate.Length(max=2000))
    password = fields.String(load_default=None, allow_none=True,
                             metadata={"description": "A pharmacist's password, for not_exposed"})


class RecallCloseSchema(Schema):
    outcome = fields.String(required=True, validate=validate.Length(min=1, max=5000))
    password = fields.String(required=True, metadata={"description": "The closing pharmacist's password"})


class RecallQuerySchema(Schema):
    class Meta:
        unknown = EXCLUDE

    status = fields.String(validate=validate.OneOf(RECALL_STATUSES))


class QualitySignalSchema(Schema):
    """A batch or lot flagged by its adverse events (services.trace.quality_signals)."""

    kind = fields.String(metadata={"enum": ["batch", "lot"]})
    id = fields.Integer()
    code = fields.String()
    status = fields.String()
    events = fields.Integer()
    severe = fields.Integer()
    sessions = fields.Integer()
    rate = fields.String(metadata={"format": "decimal", "description": "Events per session, e.g. \"0.0667\""})
    open_recall_id = fields.Integer(allow_none=True)


class RecallContactAnswerSchema(RecallContactSchema):
    """An attempt or outcome just recorded, with the recall's progress after it."""

    recall_id = fields.Integer()
    progress = fields.Nested(RecallProgressSchema)


# --- patients, treatment sessions and adverse events --------------------------------------------------


class PatientSchema(Schema):
    """A patient; `birth_date` and the contact details are optional (needed only for recalls)."""

    id = fields.Integer(dump_only=True)
    chart_number = fields.String(required=True, validate=validate.Length(min=1, max=40),
                                 metadata={"description": "The clinic's chart number (unique)"})
    name = fields.String(load_default="", validate=validate.Length(max=160))
    birth_date = Day(attribute="birth_on", data_key="birth_date", load_default=None, allow_none=True)
    phone = fields.String(load_default="", validate=validate.Length(max=40))
    email = fields.String(load_default="", validate=validate.Length(max=160))
    created_at = fields.DateTime(dump_only=True)
    confirm_duplicate = fields.Boolean(
        load_only=True, load_default=False,
        metadata={"description": "Register although a patient with the same name and birth date exists "
                                 "(without it: 409 with details.existing_patient_id)"})

    @post_dump
    def _need_to_know(self, data, **kwargs):
        return withhold_identity(data)


class PatientUpdateSchema(Schema):
    """A partial update: fields left out keep their current values."""

    chart_number = fields.String(validate=validate.Length(min=1, max=40))
    name = fields.String(validate=validate.Length(max=160))
    birth_date = Day(attribute="birth_on", data_key="birth_date", allow_none=True)
    phone = fields.String(validate=validate.Length(max=40))
    email = fields.String(validate=validate.Length(max=160))


class PatientQuerySchema(Schema):
    class Meta:
        unknown = EXCLUDE

    q = fields.String(validate=validate.Length(max=60), metadata={"description": "Part of the chart number or name"})


class SessionUseSchema(Schema):
    """One batch injected in a session; its batch and formula come loaded with it (lazy="raise")."""

    id = fields.Integer()
    batch_id = fields.Integer()
    batch_code = fields.String(attribute="batch.code")
    formula_code = fields.String(attribute="batch.formula.code")
    formula_version = fields.Integer(attribute="batch.formula.version")
    formula_name = fields.String(attribute="batch.formula.name")
    volume_ml = Quantity()
    area = fields.String()


class SessionUseInSchema(Schema):
    """A use to record: the batch by its code (as scanned) or its id, and the volume in mL."""

    batch_code = fields.String(validate=validate.Length(min=1, max=40), metadata={"example": "B2611270003"})
    batch_id = fields.Integer(strict=True, validate=_ID)
    volume_ml = Quantity(required=True, metadata={"type": "string", "format": "decimal", "example": "2.5"})
    area = fields.String(load_default="", validate=validate.Length(max=120))

    @validates_schema
    def _names_a_batch(self, data, **kwargs):
        if not data.get("batch_code") and data.get("batch_id") is None:
            raise ValidationError("Give the batch_code or the batch_id.", field_name="batch_code")


class TreatmentSessionSchema(Schema):
    """A treatment session as answered; patient, practitioner and uses come loaded with it."""

    id = fields.Integer()
    patient_id = fields.Integer()
    chart_number = fields.String(attribute="patient.chart_number")
    practitioner_id = fields.Integer()
    practitioner = fields.Function(lambda row: row.practitioner.display_name, metadata={"type": "string"})
    performed_at = fields.DateTime()
    indication = fields.String()
    notes = fields.String()
    recorded_at = fields.DateTime()
    voided = fields.Function(lambda row: row.voided_at is not None, metadata={"type": "boolean"})
    voided_at = fields.DateTime(allow_none=True)
    voided_by_id = fields.Integer(allow_none=True)
    void_code = fields.String(allow_none=True, metadata={"enum": list(VOID_CODES)})
    void_reason = fields.String()
    corrects_session_id = fields.Integer(allow_none=True, metadata={
        "description": "The session, recorded on the wrong patient, that this one corrects"})
    uses = fields.List(fields.Nested(SessionUseSchema))


class TreatmentSessionCreateSchema(Schema):
    password = fields.String(load_default=None, allow_none=True, metadata={
        "description": "A pharmacist's password: needed when performed_at is more than BACKDATE_HOURS back"})
    patient_id = fields.Integer(required=True, strict=True, validate=_ID)
    uses = fields.List(fields.Nested(SessionUseInSchema), required=True, validate=validate.Length(min=1, max=50))
    performed_at = Moment(load_default=None, allow_none=True, metadata={
        "description": "ISO 8601 with its offset; now when left out; never in the future"})
    indication = fields.String(load_default="", validate=validate.Length(max=160),
                               metadata={"description": "Indication / treated area"})
    notes = fields.String(load_default="", validate=validate.Length(max=5000))
    practitioner_id = fields.Integer(load_default=None, allow_none=True, strict=True, validate=_ID, metadata={
        "description": "Who treated (a practitioner or pharmacist); the caller when left out"})


class TreatmentSessionVoidSchema(Schema):
    reason_code = fields.String(required=True, validate=validate.OneOf(VOID_CODES))
    reason = fields.String(required=True, validate=validate.Length(min=1, max=2000))
    password = fields.String(load_default=None, allow_none=True, metadata={
        "description": "A pharmacist's password: needed when the session is in an open recall's scope or "
                       "carries an adverse event"})


class TreatmentSessionCorrectSchema(Schema):
    patient_id = fields.Integer(required=True, strict=True, validate=_ID,
                                metadata={"description": "The patient who really received the session"})
    reason = fields.String(required=True, validate=validate.Length(min=1, max=2000))
    password = fields.String(required=True, metadata={"description": "The correcting pharmacist's password"})


class TreatmentSessionQuerySchema(Schema):
    class Meta:
        unknown = EXCLUDE

    patient_id = fields.Integer(validate=_ID)
    practitioner_id = fields.Integer(validate=_ID)
    first_day = Day(data_key="from", metadata={"description": "First clinic day, YYYY-MM-DD"})
    last_day = Day(data_key="to", metadata={"description": "Last clinic day, YYYY-MM-DD"})


class AdverseEventSchema(Schema):
    id = fields.Integer(dump_only=True)
    session_id = fields.Integer(required=True, strict=True, validate=_ID)
    patient_id = fields.Integer(dump_only=True, attribute="treatment_session.patient_id")
    type = fields.String(required=True, validate=validate.OneOf(ADVERSE_EVENT_TYPES))
    severity = fields.String(required=True, validate=validate.OneOf(SEVERITIES))
    onset_on = Day(load_default=None, allow_none=True,
                           metadata={"description": "Between the session's day and today (clinic days)"})
    outcome = fields.String(load_default="", validate=validate.Length(max=160))
    notes = fields.String(load_default="", validate=validate.Length(max=5000))
    recorded_at = fields.DateTime(dump_only=True)
    recorded_by_id = fields.Integer(dump_only=True)


class AdverseEventQuerySchema(Schema):
    class Meta:
        unknown = EXCLUDE

    session_id = fields.Integer(validate=_ID)
    patient_id = fields.Integer(validate=_ID)
    type = fields.String(validate=validate.OneOf(ADVERSE_EVENT_TYPES))
    severity = fields.String(validate=validate.OneOf(SEVERITIES))
