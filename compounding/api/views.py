"""API plumbing: bearer-token or session auth, JSON errors, parsing, documented routes."""

import functools

from flask import Blueprint, abort, current_app, g, jsonify, request
from flask_login import current_user
from marshmallow import Schema, ValidationError

from .. import idempotency
from ..extensions import csrf, db
from ..pagination import page_arg, paginate_entities, per_page_arg
from ..security import public, requires, scope_refusal, signed_in, token_for_bearer
from ..services import holds
from .openapi import build_spec
from .schemas.common import HoldReleaseSchema

bp = Blueprint("api", __name__, url_prefix="/api/v1")
# Token clients carry no cookie, so CSRF cannot apply to them; browser-session calls are
# checked by hand below.
csrf.exempt(bp)


@bp.before_request
def _authenticate():
    header = request.headers.get("Authorization")
    if header is not None:
        token = token_for_bearer(header)
        if token is None:
            abort(401, "The API token is missing, unknown, expired or revoked.")
        refusal = scope_refusal(token)
        if refusal is not None:
            abort(403, refusal)
        # The token decides who is calling, even if the browser also sends a session cookie.
        g._login_user = token.user
        return
    # protect() ignores WTF_CSRF_ENABLED, so honour the setting here as the app-wide check does.
    if (request.method not in ("GET", "HEAD", "OPTIONS") and current_user.is_authenticated
            and current_app.config.get("WTF_CSRF_ENABLED", True)):
        csrf.protect()


# After _authenticate: the key belongs to the caller it names.
bp.before_request(idempotency.claim_api_request)


def route(rule: str, method: str = "GET", *, permission: str | None, summary: str,
          body: type[Schema] | None = None, response: type[Schema] | None = None,
          status: int = 200, many: bool = False, query: type[Schema] | None = None,
          errors: tuple[int, ...] = (), body_type: str = "application/json",
          error_schemas: dict[int, type[Schema]] | None = None, also: dict[int, str] | None = None):
    """Register an API view with its permission and the schemas the OpenAPI document shows.

    `body_type` names the body's media type (`multipart/form-data` for an upload); `error_schemas`
    gives an error status a fuller schema than the shared Error (more fields beside `error`);
    `also` names other success statuses answering the same schema, each with what it means.
    """

    def decorator(fn):
        # "signed_in": any signed-in account, whatever its role.
        wrap = signed_in if permission == "signed_in" else requires(permission) if permission else public
        view = wrap(fn)
        view.api_doc = {
            "summary": summary, "body": body, "response": response, "status": status,
            "many": many, "query": query, "errors": errors, "permission": permission,
            "body_type": body_type, "error_schemas": error_schemas or {}, "also": also or {},
        }
        bp.add_url_rule(rule, endpoint=fn.__name__, view_func=view, methods=[method])
        return view

    return decorator


def record_action(rule: str, *, permission: str, summary: str, body: type[Schema], response: type[Schema],
                  answer_with, errors: tuple[int, ...] = (409,)):
    """A POST that changes the one record `rule` names: the view gets the record's id and the loaded
    body, and the answer is `answer_with(record_id)`, the record as it now stands."""

    def decorator(fn):
        @functools.wraps(fn)
        def view(**ids):
            (record_id,) = ids.values()
            fn(record_id, load(body, json_body()))
            return answer_with(record_id)

        return route(rule, "POST", permission=permission, summary=summary, body=body, response=response,
                     errors=errors)(view)

    return decorator


def hold_release_route(kind: str, rule: str, *, permission: str, response: type[Schema], answer_with) -> None:
    """Register `<kind>_release_hold`: a pharmacist releases one hold reason of a lot or batch."""

    def release_hold(record_id: int, data: dict):
        holds.release_hold(current_user, kind, record_id, data["hold"], data["reason"], data["password"])

    release_hold.__name__ = f"{kind}_release_hold"
    record_action(rule, permission=permission,
                  summary=f"Release one hold reason of a {kind} (a pharmacist's signature and a reason); "
                          "409 during a recall",
                  body=HoldReleaseSchema, response=response, answer_with=answer_with)(release_hold)


def json_body() -> dict:
    try:
        data = request.get_json(silent=True)
    except RecursionError:  # nested deeper than the JSON parser goes
        data = None
    if not isinstance(data, dict):
        abort(400, "The body must be a JSON object.")
    unstorable = sorted(key for key, value in data.items() if not _storable(key) or not _storable(value))
    if unstorable:
        message = "Text may not contain NUL characters or unpaired surrogates."
        response = jsonify({"error": "Some fields are not valid.", "details": {key: [message] for key in unstorable}})
        response.status_code = 422
        abort(response)
    return data


def _storable(value) -> bool:
    """No string inside `value` holds a NUL (PostgreSQL refuses it) or a lone surrogate (not UTF-8)."""
    pending = [value]
    while pending:  # a loop, not recursion: the body may nest as deep as the parser allowed
        item = pending.pop()
        if isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, str) and ("\x00" in item or not item.isascii() and not _encodes(item)):
            return False
    return True


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@functools.cache
def shared(schema: type[Schema]) -> Schema:
    """One instance per schema class, reused: building a schema costs more than a small load or dump."""
    return schema()


def load(schema: type[Schema], data: dict, **kwargs) -> dict:
    try:
        return (schema(**kwargs) if kwargs else shared(schema)).load(data)
    except ValidationError as exc:
        response = jsonify({"error": "Some fields are not valid.", "details": exc.messages})
        response.status_code = 422
        abort(response)


def answer(data, status: int = 200):
    """A JSON answer with its status."""
    response = jsonify(data)
    response.status_code = status
    return response


def answer_one(statement, dump, status: int = 200):
    """The first row `statement` finds, as `dump(row)` answers it; 404 when there is none."""
    row = db.session.execute(statement).first()
    if row is None:
        abort(404)
    return answer(dump(row), status)


def page_answer(items: list, pagination) -> dict:
    """A list answer's body: this page's items, where the page is, and how many rows in all."""
    return {"items": items, "page": pagination.page, "per_page": pagination.per_page, "total": pagination.total}


def paginated(query, schema: type[Schema], id_column=None):
    """A list answer; given the listed entity's `id_column`, a page's ids are picked on it first
    (pagination.paginate_entities), so deep pages of long lists stay as quick as the first."""
    per_page = per_page_arg()
    if id_column is not None:
        pagination = paginate_entities(query, id_column, per_page=per_page)
    else:
        pagination = db.paginate(query, page=page_arg(), per_page=per_page, error_out=False)
    return jsonify(page_answer(schema(many=True).dump(pagination.items), pagination))


@bp.route("/openapi.json")
@public
def openapi():
    return jsonify(build_spec(current_app))
