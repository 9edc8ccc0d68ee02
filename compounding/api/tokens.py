"""API: a caller revokes their own API tokens."""

from flask import jsonify, request
from flask_login import current_user
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from ..models._common import MAX_RECORD_ID
from ..security import token_for_bearer
from ..services import users
from ..services.errors import InvalidInput
from .views import json_body, load, route


class TokenRevokeSchema(Schema):
    id = fields.Integer(strict=True, validate=validate.Range(min=1, max=MAX_RECORD_ID),
                        metadata={"description": "One of your tokens; leave out to revoke the token of this call"})
    all = fields.Boolean(metadata={"description": "true: every live token of yours"})

    @validates_schema
    def _one_choice(self, data, **kwargs):
        if "id" in data and data.get("all"):
            raise ValidationError("Give `id` or `all`, not both.", "_schema")


class TokenSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    prefix = fields.String(metadata={"description": "The first characters of the token"})
    created_at = fields.DateTime()
    last_used_at = fields.DateTime(allow_none=True)
    expires_at = fields.DateTime()
    revoked_at = fields.DateTime(allow_none=True)


class TokenRevokedSchema(Schema):
    revoked = fields.List(fields.Nested(TokenSchema), required=True)


@route("/tokens/revoke", "POST", permission="signed_in",
       summary="Revoke your own API tokens: `{}` the token of this call, `{\"id\": N}` one, `{\"all\": true}` all",
       body=TokenRevokeSchema, response=TokenRevokedSchema, errors=(404, 409))
def token_revoke():
    data = load(TokenRevokeSchema, json_body())
    if data.get("all"):
        revoked = users.revoke_tokens(current_user, current_user)
    else:
        token_id = data["id"] if "id" in data else _calling_token_id()
        revoked = [users.revoke_token(current_user, token_id, owner=current_user)]
    return jsonify(TokenRevokedSchema().dump({"revoked": revoked}))


def _calling_token_id() -> int:
    token = token_for_bearer(request.headers.get("Authorization", ""))
    if token is None:
        raise InvalidInput("This call was not made with a token: give `id` or `all`.", field="id")
    return token.id

