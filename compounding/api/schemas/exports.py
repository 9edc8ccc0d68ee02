"""Export jobs: a request for a workbook written in the background, and a job as answered."""

from marshmallow import Schema, fields, validate

from ...models.job import EXPORT_KINDS, JOB_STATUSES
from .common import RECORD_ID, Day


class ExportRequestSchema(Schema):
    kind = fields.String(required=True, validate=validate.OneOf(EXPORT_KINDS), metadata={
        "description": "audit (start and end required; auditors and chain-wide accounts), trace (target_kind and "
                       "target_id), recall (target_id: the recall), lots, batches, sessions (start and end optional)"})
    start = Day(metadata={"description": "First clinic day (audit, sessions)"})
    end = Day(metadata={"description": "Last clinic day, inclusive (audit, sessions)"})
    target_kind = fields.String(validate=validate.OneOf(("lot", "batch")), metadata={
        "description": "What a trace starts from"})
    target_id = fields.Integer(validate=RECORD_ID, metadata={"description": "The lot or batch traced, or the recall"})
    filters = fields.Dict(keys=fields.String(), metadata={
        "description": "A list's filters as its page's address names them (lots: ingredient_id, status, "
                       "expiring_within_days, expired_in_stock, q, sort; batches: formula, status, bud_within_hours, "
                       "compounded_from, compounded_to, q); sessions: patient_id, practitioner_id"})


class ExportProgressSchema(Schema):
    rows_written = fields.Integer()
    rows_expected = fields.Integer(allow_none=True, metadata={"description": "Counted before writing: about"})


class ExportJobSchema(Schema):
    id = fields.Integer()
    kind = fields.String(metadata={"enum": list(EXPORT_KINDS)})
    status = fields.String(metadata={"enum": list(JOB_STATUSES)})
    progress = fields.Nested(ExportProgressSchema)
    params = fields.Dict(metadata={"description": "What was asked, as kept (days, target, filters, sites in scope)"})
    filename = fields.String()
    attempts = fields.Integer(metadata={"description": "Runs started (more than one: a worker stopped before)"})
    requested_at = fields.DateTime()
    started_at = fields.DateTime(allow_none=True)
    finished_at = fields.DateTime(allow_none=True)
    url = fields.String(metadata={"description": "This job: GET it again for its progress"})
    download_url = fields.String(metadata={"description": "When done: the workbook (GET it with the same token)"})
    size = fields.Integer(metadata={"description": "When done: bytes"})
    sha256 = fields.String(metadata={"description": "When done: of the workbook, hex"})
    expires_at = fields.DateTime(metadata={"description": "When done or expired: kept until then (410 after)"})
    error = fields.String(metadata={"description": "When failed: why"})
