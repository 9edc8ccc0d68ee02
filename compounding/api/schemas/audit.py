"""The audit trail, read-only."""

from marshmallow import Schema, fields, validate

from ...limits import CODE_MAX, LABEL_MAX
from ...models._common import MAX_RECORD_ID


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
    entity_type = fields.String(validate=validate.Length(min=1, max=CODE_MAX))
    entity_id = fields.Integer(validate=validate.Range(min=0, max=MAX_RECORD_ID))
    action = fields.String(validate=validate.Length(min=1, max=LABEL_MAX),
                           metadata={"description": "An action or its prefix, e.g. `user.`"})
