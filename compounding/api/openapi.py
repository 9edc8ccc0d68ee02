"""The OpenAPI 3 document, generated from the routes and their marshmallow schemas."""

import re

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Flask

from ..idempotency import HEADER, KEY_PATTERN, REPLAYED_HEADER
from ..models._common import MAX_RECORD_ID
from ..models.idempotency import MAX_KEY_LENGTH
from ..pagination import MAX_PAGE
from .schemas.common import ErrorSchema

_CONVERTER = re.compile(r"<(?:[a-z]+:)?([a-z_]+)>")
_ERROR_TEXT = {
    400: "Malformed request", 401: "Missing or bad token", 403: "Role not allowed or bad signature",
    404: "Not found", 409: "Rule refused the change (on a POST, or its Idempotency-Key is in flight)",
    410: "Kept for a set time and since deleted (an expired export): ask for it again",
    413: "The upload is over the size limit",
    422: "Invalid fields (on a POST, or an Idempotency-Key malformed or reused with another body)",
    503: "A service it needs (the file store) did not answer: nothing changed, try again",
}

# Path ids are database integers; an unknown one, however large, answers 404 (compounding.RecordId).
_RECORD_ID = {"type": "integer", "minimum": 1, "maximum": MAX_RECORD_ID}

# Every POST honours the header (compounding.idempotency): a retried request is answered, not run again.
_IDEMPOTENCY_KEY = {
    "name": HEADER, "in": "header", "required": False,
    "schema": {"type": "string", "minLength": 8, "maxLength": MAX_KEY_LENGTH, "pattern": f"^{KEY_PATTERN.pattern}$"},
    "description": (
        "A key of your choosing, new for each request you mean to make once (a UUID will do). Within 24 hours, "
        "the same key with the same body answers the first result again (same status and JSON, with the "
        f"`{REPLAYED_HEADER}: true` header) without running the request again; with another body it answers "
        "422; while the first request is still running, 409 with `Retry-After`. A refused request (4xx) or "
        "one that failed before saving gives its key back. Keys are per user."),
}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _schema_name(schema) -> str:
    return schema.__name__.removesuffix("Schema")


def _new_spec(app: Flask) -> APISpec:
    """The document's header, the bearer scheme and the shared Error schema."""
    spec = APISpec(
        title=f"{app.config['CLINIC_NAME']} compounding tracker API",
        version="1.0.0",
        openapi_version="3.0.3",
        plugins=[MarshmallowPlugin()],
        info={"description": "Lots, formulas, batches, treatment sessions, trace and recall. "
                             "Authenticate with `Authorization: Bearer <token>`."},
    )
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    spec.components.schema("Error", schema=ErrorSchema)
    return spec


def _registrar(spec: APISpec):
    """A function that names a schema, adding it to the components the first time it is seen."""
    seen: set = set()

    def ref(schema):
        if schema not in seen:
            seen.add(schema)
            spec.components.schema(_schema_name(schema), schema=schema)
        return _schema_name(schema)

    return ref


def _parameters(rule, method: str, doc: dict) -> list[dict]:
    """Path ids, the query schema, the idempotency header on a POST, and paging on a list."""
    parameters = [
        {"name": name, "in": "path", "required": True,
         "schema": _RECORD_ID if "int:" in rule.rule else {"type": "string"}}
        for name in rule.arguments
    ]
    if doc["query"]:
        parameters.append({"in": "query", "schema": doc["query"]})
    if method == "post":
        parameters.append(_IDEMPOTENCY_KEY)
    if doc["many"]:
        parameters += [
            {"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}},
            {"name": "per_page", "in": "query",
             "schema": {"type": "integer", "minimum": 1, "maximum": 200}},
        ]
    return parameters


def _success(doc: dict, ref) -> dict:
    """The success response: the schema, wrapped in a page envelope for a list."""
    if not doc["response"]:
        return {"description": "Success"}
    item = _ref(ref(doc["response"]))
    schema = item
    if doc["many"]:
        schema = {"type": "object", "required": ["items", "page", "per_page", "total"],
                  "properties": {"items": {"type": "array", "items": item},
                                 "page": {"type": "integer"},
                                 "per_page": {"type": "integer"},
                                 "total": {"type": "integer"}}}
    return {"description": "Success", "content": {"application/json": {"schema": schema}}}


def _error_statuses(rule, method: str, doc: dict) -> list[int]:
    """The error statuses a route can answer: its own, and those its method, token, body and ids imply."""
    statuses = set(doc["errors"])
    if method == "post":
        statuses |= {409, 422}
    if doc["permission"]:
        statuses |= {401, 403}
    if doc["body"]:
        statuses |= {400, 422}
    if rule.arguments:
        statuses.add(404)
    return sorted(statuses)


def _operation(rule, method: str, doc: dict, ref) -> dict:
    """One route's operation object, its keys in a fixed order."""
    operation: dict = {"summary": doc["summary"], "operationId": rule.endpoint,
                       "responses": {}}
    parameters = _parameters(rule, method, doc)
    if parameters:
        operation["parameters"] = parameters
    if doc["body"]:
        operation["requestBody"] = {
            "required": True,
            "content": {doc["body_type"]: {"schema": _ref(ref(doc["body"]))}},
        }
    operation["responses"][str(doc["status"])] = _success(doc, ref)
    for status, meaning in doc["also"].items():
        operation["responses"][str(status)] = {**_success(doc, ref), "description": meaning}
    if doc["permission"]:
        operation["security"] = [{"bearer": []}]
    for status in _error_statuses(rule, method, doc):
        schema = doc["error_schemas"].get(status)
        operation["responses"][str(status)] = {
            "description": _ERROR_TEXT[status],
            "content": {"application/json": {"schema": _ref(ref(schema) if schema else "Error")}},
        }
    return operation


def build_spec(app: Flask) -> dict:
    """Every documented route as an operation, paths in order; schemas are added as routes name them."""
    spec = _new_spec(app)
    ref = _registrar(spec)
    paths: dict[str, dict] = {}
    for rule in app.url_map.iter_rules():
        view = app.view_functions.get(rule.endpoint)
        doc = getattr(view, "api_doc", None)
        if doc is None:
            continue
        path = _CONVERTER.sub(r"{\1}", rule.rule)
        method = next(m for m in rule.methods if m not in ("HEAD", "OPTIONS")).lower()
        paths.setdefault(path, {})[method] = _operation(rule, method, doc, ref)
    for path, operations in sorted(paths.items()):
        spec.path(path=path, operations=operations)
    return spec.to_dict()
