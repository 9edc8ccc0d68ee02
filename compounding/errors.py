"""Error pages for people and JSON errors for API clients, from one set of handlers."""

from flask import Flask, current_app, jsonify, render_template, request
from sqlalchemy.exc import DisconnectionError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from .extensions import db
from .services.errors import DomainError

MESSAGES = {
    400: "The request could not be understood.",
    401: "Sign in, or send a valid API token.",
    403: "Your role does not allow this.",
    404: "There is no such page or record.",
    405: "This method is not allowed here.",
    409: "This conflicts with the current state of the record.",
    413: "The upload is too large.",
    422: "Some fields are not valid.",
    429: "Too many attempts from your address; wait a few minutes and try again.",
    503: "The database cannot be reached right now. Please try again in a moment.",
}
# The database is down, hung (a timeout fired), or every pooled connection is busy: 503, try again.
UNAVAILABLE = (OperationalError, InterfaceError, DisconnectionError, PoolTimeout)
RETRY_AFTER_SECONDS = 10
CONFLICT_MESSAGE = "This conflicts with a record saved at the same moment; reload and try again."


def wants_json() -> bool:
    if request.path.startswith("/api/"):
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json" and request.accept_mimetypes[best] > request.accept_mimetypes[
        "text/html"
    ]


def error_response(status: int, message: str | None = None, details=None):
    message = message or MESSAGES.get(status, "Something went wrong.")
    if wants_json():
        response = jsonify({"error": message, "details": details})
        response.status_code = status
        return response
    template = f"errors/{status}.html" if status in (403, 404, 503) else "errors/generic.html"
    try:
        return render_template(template, status=status, message=message), status
    except UNAVAILABLE as exc:  # the page asks who is signed in, and the database went away
        return _database_unavailable(exc)


def _http_error(exc: HTTPException):
    status = exc.code or 500
    description = exc.description if exc.description != type(exc).description else None
    if status == 413 and description is None:
        description = too_large_message()
    response = error_response(status, description)
    if status == 401 and wants_json():
        response.headers["WWW-Authenticate"] = 'Bearer realm="api"'
    return response


def _domain_error(exc: DomainError):
    # A service's boundary already rolled its work back; a refusal raised in a view, outside one, is undone here.
    db.session.rollback()
    return error_response(exc.status_code, exc.message, exc.to_details())


def _conflict(exc: IntegrityError):
    # The services check uniqueness before writing, so this is two writers racing (e.g. the
    # same supplier lot received twice at the same instant): the database refused the second.
    # Raised by the commit itself, after the boundary: what is left in the session is thrown away here.
    db.session.rollback()
    current_app.logger.warning("Integrity conflict on %s %s: %s", request.method, request.path, exc.orig)
    return error_response(409, CONFLICT_MESSAGE)


def _database_unavailable(exc: Exception):
    """503 with Retry-After, from a view, a before_request hook or the user loader alike.

    The session is thrown away (not rolled back: a rollback on a dead connection fails again);
    its connection was invalidated with the pool, so the next request connects afresh.
    """
    db.session.remove()
    reason = getattr(exc, "orig", None) or exc
    current_app.logger.error("Database unavailable on %s %s: %s", request.method, request.path,
                             str(reason).strip().splitlines()[0] if str(reason).strip() else type(reason).__name__)
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    if wants_json():
        response = jsonify({"error": MESSAGES[503], "details": None})
        response.status_code = 503
        response.headers.update(headers)
        return response
    # Rendered without context processors: they would ask the database who is signed in.
    page = current_app.jinja_env.get_template("errors/503.html").render(message=MESSAGES[503])
    return page, 503, headers


def _unexpected(exc: Exception):
    # Whatever failed may have been outside any boundary: the request's unsaved work never goes in.
    db.session.rollback()
    if isinstance(exc, HTTPException):
        return _http_error(exc)
    current_app.logger.exception("Unhandled error on %s %s", request.method, request.path)
    return error_response(500, "An unexpected error occurred; it has been logged.")


def too_large_message() -> str:
    """What a 413 says: the limit of the view (a document's size), else of any request."""
    view = current_app.view_functions.get(request.endpoint or "")
    explain = getattr(view, "too_large_message", None)
    if explain is not None:
        return explain()
    limit = request.max_content_length
    if not limit:
        return MESSAGES[413]
    megabytes = f" ({limit / 1024 / 1024:g} MB)" if limit >= 1024 * 1024 else ""
    return f"The upload is too large: a request may carry at most {limit:,} bytes{megabytes}."


NUL_MESSAGE = "Text may not contain NUL characters."


def _apply_view_limits(endpoint: str | None, values) -> None:
    """A view may declare a larger form limit (the import's confirm step carries its file) or a smaller
    request limit (a document upload, `max_content_length`: a number or a function of the settings).

    Applied before any before-request hook, so before the CSRF check first reads the form.
    """
    view = current_app.view_functions.get(endpoint or "")
    if getattr(view, "max_form_memory_size", None):
        request.max_form_memory_size = view.max_form_memory_size
    limit = getattr(view, "max_content_length", None)
    if limit:
        request.max_content_length = limit() if callable(limit) else limit


def _refuse_nul_characters():
    """Refuse a NUL in any query or form field: it never belongs in a record, and PostgreSQL can
    neither store nor compare it (the query would fail with a 500 instead of a 4xx)."""
    fields = sorted({key for source in (request.args, request.form) for key, value in source.items(multi=True)
                     if "\x00" in key or "\x00" in value})
    if fields:
        return error_response(422 if wants_json() else 400, NUL_MESSAGE, {field: [NUL_MESSAGE] for field in fields})
    return None


def init_app(app: Flask) -> None:
    app.url_value_preprocessor(_apply_view_limits)
    app.before_request(_refuse_nul_characters)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(DomainError, _domain_error)
    app.register_error_handler(IntegrityError, _conflict)
    for error in UNAVAILABLE:
        app.register_error_handler(error, _database_unavailable)
    if not app.testing:
        app.register_error_handler(Exception, _unexpected)
