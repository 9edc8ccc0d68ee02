"""The OpenAPI 3 document, generated from the routes and their marshmallow schemas."""

import re

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Flask

from ..models._common import MAX_RECORD_ID
from ..pagination import MAX_PAGE
from .schemas import ErrorSchema

_CONVERTER = re.compile(r"<(?:[a-z]+:)?([a-z_]+)>")
_ERROR_TEXT = {
    400: "Malformed request", 401: "Missing or bad token", 403: "Role not allowed or bad signature",
    404: "Not found", 409: "Rule refused the change", 422: "Invalid fields",
}

# Path ids are database integers; an unknown one, however large, answers 404 (compounding.RecordId).
_RECORD_ID = {"type": "integer", "minimum": 1, "maximum": MAX_RECORD_ID}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _schema_name(schema) -> str:
    return schema.__name__.removesuffix("Schema")


def build_spec(app: Flask) -> dict:
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
    seen: set = set()

    def ref(schema):
        if schema not in seen:
            seen.add(schema)
            spec.components.schema(_schema_name(schema), schema=schema)
        return _schema_name(schema)

    paths: dict[str, dict] = {}
    for rule in app.url_map.iter_rules():
        view = app.view_functions.get(rule.endpoint)
        doc = getattr(view, "api_doc", None)
        if doc is None:
            continue
        path = _CONVERTER.sub(r"{\1}", rule.rule)
        method = next(m for m in rule.methods if m not in ("HEAD", "OPTIONS")).lower()
        operation: dict = {"summary": doc["summary"], "operationId": rule.endpoint,
                           "responses": {}}
        parameters = [
            {"name": name, "in": "path", "required": True,
             "schema": _RECORD_ID if "int:" in rule.rule else {"type": "string"}}
            for name in rule.arguments
        ]
        if doc["query"]:
            parameters.append({"in": "query", "schema": doc["query"]})
        if doc["many"]:
            parameters += [
                {"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}},
                {"name": "per_page", "in": "query",
                 "schema": {"type": "integer", "minimum": 1, "maximum": 200}},
            ]
        if parameters:
            operation["parameters"] = parameters
        if doc["body"]:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": _ref(ref(doc["body"]))}},
            }
        if doc["response"]:
            item = _ref(ref(doc["response"]))
            schema = item
            if doc["many"]:
                schema = {"type": "object", "required": ["items", "page", "per_page", "total"],
                          "properties": {"items": {"type": "array", "items": item},
                                         "page": {"type": "integer"},
                                         "per_page": {"type": "integer"},
                                         "total": {"type": "integer"}}}
            operation["responses"][str(doc["status"])] = {
                "description": "Success", "content": {"application/json": {"schema": schema}}}
        else:
            operation["responses"][str(doc["status"])] = {"description": "Success"}
        statuses = set(doc["errors"])
        if doc["permission"]:
            operation["security"] = [{"bearer": []}]
            statuses |= {401, 403}
        if doc["body"]:
            statuses |= {400, 422}
        if rule.arguments:
            statuses.add(404)
        for status in sorted(statuses):
            operation["responses"][str(status)] = {
                "description": _ERROR_TEXT[status],
                "content": {"application/json": {"schema": _ref("Error")}},
            }
        paths.setdefault(path, {})[method] = operation
    for path, operations in sorted(paths.items()):
        spec.path(path=path, operations=operations)
    return spec.to_dict()
