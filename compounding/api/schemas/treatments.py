"""Patients, treatment sessions and adverse events."""

from marshmallow import EXCLUDE, Schema, ValidationError, fields, post_dump, validate, validates_schema

from ...limits import CODE_MAX, NAME_MAX, NOTES_MAX, SHORT_TEXT_MAX
from ...models.treatment import ADVERSE_EVENT_TYPES, SEVERITIES, VOID_CODES
from ...privacy import withhold_identity
from .common import RECORD_ID, Day, Moment, Quantity, Search, reason_text, signature


class PatientSchema(Schema):
    """A patient; `birth_date` and the contact details are optional (needed only for recalls)."""

    id = fields.Integer(dump_only=True)
    chart_number = fields.String(required=True, validate=validate.Length(min=1, max=CODE_MAX),
                                 metadata={"description": "The clinic's chart number (unique)"})
    name = fields.String(load_default="", validate=validate.Length(max=SHORT_TEXT_MAX))
    birth_date = Day(attribute="birth_on", data_key="birth_date", load_default=None, allow_none=True)
    phone = fields.String(load_default="", validate=validate.Length(max=CODE_MAX))
    email = fields.String(load_default="", validate=validate.Length(max=SHORT_TEXT_MAX))
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

    chart_number = fields.String(validate=validate.Length(min=1, max=CODE_MAX))
    name = fields.String(validate=validate.Length(max=SHORT_TEXT_MAX))
    birth_date = Day(attribute="birth_on", data_key="birth_date", allow_none=True)
    phone = fields.String(validate=validate.Length(max=CODE_MAX))
    email = fields.String(validate=validate.Length(max=SHORT_TEXT_MAX))


class PatientQuerySchema(Schema):
    class Meta:
        unknown = EXCLUDE

    q = Search(metadata={"description": "Part of the chart number or name"})


class SessionUseSchema(Schema):
    """One vial injected in a session; its batch, formula and vial come loaded with it (lazy="raise")."""

    id = fields.Integer()
    batch_id = fields.Integer()
    batch_code = fields.String(attribute="batch.code")
    vial_id = fields.Integer(allow_none=True)
    vial_code = fields.Function(lambda use: use.vial.code if use.vial is not None else None, allow_none=True,
                                metadata={"type": "string", "nullable": True,
                                          "description": "The vial drawn from (null: recorded before vials, "
                                                         "pooled on the batch)"})
    formula_code = fields.String(attribute="batch.formula.code")
    formula_version = fields.Integer(attribute="batch.formula.version")
    formula_name = fields.String(attribute="batch.formula.name")
    volume_ml = Quantity()
    area = fields.String()


class SessionUseInSchema(Schema):
    """A use to record: the vial by its code (as scanned), or only the batch by its code or id (the open
    vial that can take it, else the next sealed one), and the volume in mL."""

    vial_code = fields.String(validate=validate.Length(min=1, max=CODE_MAX), metadata={
        "example": "B2611270003-02", "description": "The vial used; with batch_code or batch_id, they must agree"})
    batch_code = fields.String(validate=validate.Length(min=1, max=CODE_MAX), metadata={"example": "B2611270003"})
    batch_id = fields.Integer(strict=True, validate=RECORD_ID)
    volume_ml = Quantity(required=True, metadata={"type": "string", "format": "decimal", "example": "2.5"})
    area = fields.String(load_default="", validate=validate.Length(max=NAME_MAX))

    @validates_schema
    def _names_a_batch(self, data, **kwargs):
        if not data.get("vial_code") and not data.get("batch_code") and data.get("batch_id") is None:
            raise ValidationError("Give the vial_code (or the batch_code or batch_id).", field_name="vial_code")


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
    patient_id = fields.Integer(required=True, strict=True, validate=RECORD_ID)
    uses = fields.List(fields.Nested(SessionUseInSchema), required=True, validate=validate.Length(min=1, max=50))
    performed_at = Moment(load_default=None, allow_none=True, metadata={
        "description": "ISO 8601 with its offset; now when left out; never in the future"})
    indication = fields.String(load_default="", validate=validate.Length(max=SHORT_TEXT_MAX),
                               metadata={"description": "Indication / treated area"})
    notes = fields.String(load_default="", validate=validate.Length(max=NOTES_MAX))
    practitioner_id = fields.Integer(load_default=None, allow_none=True, strict=True, validate=RECORD_ID, metadata={
        "description": "Who treated (a practitioner or pharmacist); the caller when left out"})
    site_id = fields.Integer(load_default=None, allow_none=True, strict=True, validate=RECORD_ID, metadata={
        "description": "Where the session was performed (one of the caller's sites; their first when left out): "
                       "a vial kept at another site or in transit is refused (409)"})


class TreatmentSessionVoidSchema(Schema):
    reason_code = fields.String(required=True, validate=validate.OneOf(VOID_CODES))
    reason = reason_text()
    password = fields.String(load_default=None, allow_none=True, metadata={
        "description": "A pharmacist's password: needed when the session is in an open recall's scope or "
                       "carries an adverse event"})


class TreatmentSessionCorrectSchema(Schema):
    patient_id = fields.Integer(required=True, strict=True, validate=RECORD_ID,
                                metadata={"description": "The patient who really received the session"})
    reason = reason_text()
    password = signature("The correcting pharmacist's")


class TreatmentSessionQuerySchema(Schema):
    class Meta:
        unknown = EXCLUDE

    patient_id = fields.Integer(validate=RECORD_ID)
    practitioner_id = fields.Integer(validate=RECORD_ID)
    first_day = Day(data_key="from", metadata={"description": "First clinic day, YYYY-MM-DD"})
    last_day = Day(data_key="to", metadata={"description": "Last clinic day, YYYY-MM-DD"})


class AdverseEventSchema(Schema):
    id = fields.Integer(dump_only=True)
    session_id = fields.Integer(required=True, strict=True, validate=RECORD_ID)
    patient_id = fields.Integer(dump_only=True, attribute="treatment_session.patient_id")
    type = fields.String(required=True, validate=validate.OneOf(ADVERSE_EVENT_TYPES))
    severity = fields.String(required=True, validate=validate.OneOf(SEVERITIES))
    onset_on = Day(load_default=None, allow_none=True,
                           metadata={"description": "Between the session's day and today (clinic days)"})
    outcome = fields.String(load_default="", validate=validate.Length(max=SHORT_TEXT_MAX))
    notes = fields.String(load_default="", validate=validate.Length(max=NOTES_MAX))
    recorded_at = fields.DateTime(dump_only=True)
    recorded_by_id = fields.Integer(dump_only=True)


class AdverseEventQuerySchema(Schema):
    class Meta:
        unknown = EXCLUDE

    session_id = fields.Integer(validate=RECORD_ID)
    patient_id = fields.Integer(validate=RECORD_ID)
    type = fields.String(validate=validate.OneOf(ADVERSE_EVENT_TYPES))
    severity = fields.String(validate=validate.OneOf(SEVERITIES))
