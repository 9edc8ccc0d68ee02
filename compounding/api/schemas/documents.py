"""Documents: an upload to a record, a document as answered, a withdrawal."""

from marshmallow import Schema, fields, validate

from ...limits import NOTE_MAX
from ...models.document import CONTENT_TYPES, DOCUMENT_ENTITY_TYPES, DOCUMENT_KINDS
from .common import reason_text


class DocumentUploadSchema(Schema):
    """Documents the multipart body; the view reads `file`, `kind` and `note` from the form itself."""

    file = fields.Raw(required=True, metadata={
        "type": "string", "format": "binary",
        "description": "A PDF, PNG or JPEG, recognised by its content (its name must say the same type); at most "
                       "DOCUMENT_MAX_BYTES (413 beyond). An image is kept without its metadata (location, camera)"})
    kind = fields.String(validate=validate.OneOf(DOCUMENT_KINDS), metadata={
        "description": "Default: certificate_of_analysis for a lot, test_report for a test result, "
                       "calibration_certificate for equipment, evidence for a qualification, other for a batch"})
    note = fields.String(validate=validate.Length(max=NOTE_MAX))


class DocumentSchema(Schema):
    id = fields.Integer()
    entity_type = fields.String(metadata={"enum": list(DOCUMENT_ENTITY_TYPES)})
    entity_id = fields.Integer()
    kind = fields.String(metadata={"enum": list(DOCUMENT_KINDS)})
    filename = fields.String(metadata={"description": "As uploaded (never a folder)"})
    content_type = fields.String(metadata={"enum": list(CONTENT_TYPES), "description": "As read from the content"})
    size = fields.Integer(metadata={"description": "Bytes stored"})
    sha256 = fields.String(metadata={"description": "Of the bytes stored, hex; also in the audit trail"})
    received_sha256 = fields.String(metadata={
        "description": "Of the bytes received: differs from sha256 for an image saved again without its metadata"})
    note = fields.String()
    uploaded_at = fields.DateTime()
    uploaded_by = fields.String()
    withdrawn = fields.Boolean()
    withdrawn_at = fields.DateTime(allow_none=True)
    withdrawn_by = fields.String(allow_none=True)
    withdraw_reason = fields.String()
    download_url = fields.String(metadata={"description": "The bytes: GET it with the same token"})


class DocumentWithdrawSchema(Schema):
    reason = reason_text()
