"""API plumbing: bearer-token or session auth, JSON errors, parsing, documented routes."""

from flask import Blueprint, abort, current_app, g, jsonify, request
from flask_login import current_user
from marshmallow import Schema, ValidationError

from ..extensions import csrf, db
from ..security import public, requires
from ..services.users import user_for_token
from .openapi import build_spec

bp = Blueprint("api", __name__, url_prefix="/api/v1")
# Token clients carry no cookie, so CSRF cannot apply to them; browser-session calls are
# checked by hand below.
csrf.exempt(bp)


@bp.before_request
def _authenticate():
    header = request.headers.get("Authorization")
    if header is not None:
        user = user_for_token(header.removeprefix("Bearer ").strip()) if header.startswith("Bearer ") else None
        if user is None:
            abort(401, "The API token is missing, unknown or revoked.")
        # The token decides who is calling, even if the browser also sends a session cookie.
        g._login_user = user
        return
    # protect() ignores WTF_CSRF_ENABLED, so honour the setting here as the app-wide check does.
    if (request.method not in ("GET", "HEAD", "OPTIONS") and current_user.is_authenticated
            and current_app.config.get("WTF_CSRF_ENABLED", True)):
        csrf.protect()


def route(rule: str, method: str = "GET", *, permission: str | None, summary: str,
          body: type[Schema] | None = None, response: type[Schema] | None = None,
          status: int = 200, many: bool = False, query: type[Schema] | None = None,
          errors: tuple[int, ...] = ()):
    """Register an API view with its permission and the schemas the OpenAPI document shows."""

    def decorator(fn):
        view = requires(permission)(fn) if permission else public(fn)
        view.api_doc = {
            "summary": summary, "body": body, "response": response, "status": status,
            "many": many, "query": query, "errors": errors, "permission": permission,
        }
        bp.add_url_rule(rule, endpoint=fn.__name__, view_func=view, methods=[method])
        return view

    return decorator


def json_body() -> dict:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        abort(400, "The body must be a JSON object.")
    return data


def load(schema: type[Schema], data: dict, **kwargs) -> dict:
    try:
        return schema(**kwargs).load(data)
    except ValidationError as exc:
        response = jsonify({"error": "Some fields are not valid.", "details": exc.messages})
        response.status_code = 422
        abort(response)


def paginated(query, schema: type[Schema]):
    page = request.args.get("page", 1, type=int) or 1
    per_page = min(max(request.args.get("per_page", 50, type=int) or 50, 1), 200)
    pagination = db.paginate(query, page=max(page, 1), per_page=per_page, error_out=False)
    return jsonify({
        "items": schema(many=True).dump(pagination.items),
        "page": pagination.page,
        "per_page": pagination.per_page,
        "total": pagination.total,
    })


@bp.route("/openapi.json")
@public
def openapi():
    return jsonify(build_spec(current_app))
