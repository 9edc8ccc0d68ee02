"""Formulas: versions from draft to approval and retirement."""

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates_schema

from ...limits import FORMULA_CODE_MAX, INSTRUCTIONS_MAX, LABEL_MAX, NOTE_MAX, REASON_MAX, SHORT_TEXT_MAX
from ...models.formula import FORMULA_STATUSES, INDICATIONS, ROUTES
from ...models.ingredient import STORAGE_CONDITIONS
from ...models.vial import DOSES, MAX_IN_USE_HOURS
from ...services.bud import BUD_TABLE, bud_duration
from .common import RECORD_ID, Quantity, Search, reason_text, signature
from .ingredients import storage_field


class FormulaComponentSchema(Schema):
    """One component per unit; its ingredient comes loaded with it."""

    ingredient_id = fields.Integer(required=True, strict=True, validate=RECORD_ID)
    ingredient_name = fields.String(dump_only=True, attribute="ingredient.name")
    strength = fields.String(dump_only=True, attribute="ingredient.strength")
    unit = fields.String(dump_only=True, attribute="ingredient.unit",
                         metadata={"description": "The ingredient's stock unit, in which the quantity is given"})
    sterile = fields.Boolean(dump_only=True, attribute="ingredient.sterile")
    quantity = Quantity(metadata={"type": "string", "format": "decimal", "example": "2.5",
                                  "description": "Per unit, in the ingredient's stock unit; required unless "
                                                 "`qs`, and computed (what is sent is ignored) when `qs`"})
    qs = fields.Boolean(load_default=False, metadata={
        "description": "The one diluent (in mL) filled to volume: it gets the unit volume less the other mL "
                       "components"})

    @validates_schema(skip_on_field_errors=True)
    def quantity_unless_qs(self, data, **kwargs):
        if not data.get("qs") and data.get("quantity") is None:
            raise ValidationError("Give the quantity per unit, or mark the diluent qs (to volume).", "quantity")


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
    protect_from_light = fields.Boolean()
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
    dose = fields.String(metadata={"enum": list(DOSES)})
    in_use_hours = fields.Integer(allow_none=True, metadata={
        "description": "Multiple-dose: hours a vial may be used after its first puncture (never beyond its BUD)"})
    antimicrobial_evidence = fields.String(metadata={"description": "USP <51> evidence (multiple-dose)"})


class FormulaCreateSchema(Schema):
    code = fields.String(required=True, validate=validate.Length(min=1, max=FORMULA_CODE_MAX),
                         metadata={"description": "Capitals, digits and dashes, e.g. LIPO-PCDC"})
    name = fields.String(required=True, validate=validate.Length(min=1, max=SHORT_TEXT_MAX))
    indication = fields.String(required=True, validate=validate.OneOf(INDICATIONS))
    route = fields.String(required=True, validate=validate.OneOf(ROUTES))
    dosage_form = fields.String(required=True, validate=validate.Length(min=1, max=LABEL_MAX))
    unit_volume_ml = Quantity(required=True)
    bud_category = fields.String(required=True, validate=validate.OneOf(tuple(BUD_TABLE)))
    storage = storage_field(required=True)
    protect_from_light = fields.Boolean(load_default=False)
    components = fields.List(fields.Nested(FormulaComponentSchema), required=True, validate=validate.Length(max=40))
    instructions = fields.String(load_default="", validate=validate.Length(max=INSTRUCTIONS_MAX),
                                 metadata={"description": "Step by step; required before approval"})
    bud_hours = fields.Integer(load_default=None, allow_none=True, strict=True,
                               validate=validate.Range(min=1, max=100000),
                               metadata={"description": "Shorter than the table's duration, with bud_reason"})
    bud_reason = fields.String(load_default="", validate=validate.Length(max=REASON_MAX))
    unit_label = fields.String(load_default="vial", validate=validate.Length(max=LABEL_MAX),
                               metadata={"example": "vial 10 mL"})
    # The rules (evidence required, at most 28 days, none for single-dose) are the service's.
    dose = fields.String(load_default="single", validate=validate.OneOf(DOSES),
                         metadata={"description": "single (default): one patient in one session; multiple: "
                                                  "several patients until the in-use period ends"})
    in_use_hours = fields.Integer(load_default=None, allow_none=True, strict=True,
                                  validate=validate.Range(min=1, max=MAX_IN_USE_HOURS),
                                  metadata={"description": f"Multiple-dose only: 1 to {MAX_IN_USE_HOURS} (28 days)"})
    antimicrobial_evidence = fields.String(load_default="", validate=validate.Length(max=NOTE_MAX),
                                           metadata={"description": "Required for multiple-dose: the USP <51> "
                                                                    "antimicrobial-effectiveness evidence"})


class FormulaUpdateSchema(FormulaCreateSchema):
    """A partial update of a draft: fields left out keep their values; the code never changes."""

    class Meta:
        exclude = ("code",)

    def __init__(self, **kwargs):
        # Top-level fields may be left out (and get no defaults); component rows stay complete.
        super().__init__(partial=tuple(name for name in self._declared_fields if name != "code"), **kwargs)


class FormulaApproveSchema(Schema):
    password = signature("The approving pharmacist's")


class FormulaRetireSchema(Schema):
    reason = reason_text()


class FormulaQuerySchema(Schema):
    class Meta:
        unknown = EXCLUDE

    status = fields.String(validate=validate.OneOf(FORMULA_STATUSES))
    code = fields.String(validate=validate.Length(max=FORMULA_CODE_MAX),
                         metadata={"description": "A formula code (all versions)"})
    indication = fields.String(validate=validate.OneOf(INDICATIONS))
    q = Search(metadata={"description": "Part of the code or name"})
