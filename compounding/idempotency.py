"""A submission counts once: forms' one-time keys and the API's `Idempotency-Key` header.

A POST carrying a key first claims it (a row committed `in_flight`, so a concurrent repeat
sees it), then runs. The row turns `done` inside the transaction that commits the
request's change, so "the change was saved" and "the key is spent" can never disagree;
after the answer it keeps what to replay (the JSON answer, or the page a form led to).
A request that changed nothing (a refusal, a validation error, a crash before commit)
gives its key back, so the corrected request can be sent again with it.
"""

import hashlib
import json
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import Flask, current_app, flash, g, has_request_context, redirect, request, url_for
from flask_login import current_user
from markupsafe import Markup
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .errors import error_response
from .extensions import db
from .models import IdempotencyKey
from .models._common import utcnow
from .models.idempotency import MAX_KEY_LENGTH
from .services.transaction import transaction, transactional

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
FORM_FIELD = "submission_key"
KEEP_FOR = timedelta(hours=24)
# A key still in flight after this long belongs to a request that died without an answer
# (a killed worker, a lost database): its change never committed, since `done` is written
# in the same transaction, so a repeat may take the key over rather than wait out 24 hours.
LEASE = timedelta(minutes=5)
# The width of idempotency_keys.response_location.
LOCATION_MAX = 2000
KEY_PATTERN = re.compile(rf"[A-Za-z0-9._:~+/=-]{{8,{MAX_KEY_LENGTH}}}")
KEY_RULE = f"8 to {MAX_KEY_LENGTH} characters: letters, digits and . _ : ~ + / = -"
# Signing in or out twice changes nothing worth guarding, and must work from any stale page.
EXEMPT_ENDPOINTS = frozenset({"auth.login", "auth.logout"})
MISSING_KEY_MESSAGE = "This form is out of date: reload the page and send it again."
_KEYS = IdempotencyKey.__table__


@dataclass
class Claim:
    """The key this request holds while it runs; `armed` until its outcome is being written."""

    row_id: int
    kind: str  # "form" or "api"
    armed: bool = True


def submission_key_input() -> Markup:
    """The hidden field that makes a form's submission count once: a fresh random key each rendering."""
    return Markup('<input type="hidden" name="{}" value="{}">').format(FORM_FIELD, secrets.token_urlsafe(18))


# --- what a request is ---------------------------------------------------------------------------


def request_fingerprint() -> str:
    """SHA-256 of the request's method, path and canonical body: all that is kept of a body."""
    digest = hashlib.sha256(f"{request.method} {request.full_path}\n".encode())
    for part in _canonical_body():
        digest.update(part)
    return digest.hexdigest()


def _canonical_body():
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        fields = sorted((k, v) for k, v in request.form.items(multi=True) if k != FORM_FIELD)
        yield json.dumps(fields).encode()
        for name, upload in sorted(request.files.items(multi=True), key=lambda item: item[0]):
            content = upload.stream.read()
            upload.stream.seek(0)
            yield json.dumps([name, upload.filename, hashlib.sha256(content).hexdigest()]).encode()
        return
    try:
        data = request.get_json(silent=True) if request.is_json else None
        if data is not None:
            # Key order and spacing do not make another request.
            yield json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
            return
    except RecursionError:  # nested deeper than the parser goes: the view answers 400
        pass
    yield request.get_data(cache=True)


# --- claiming a key ------------------------------------------------------------------------------


def _first_use(user_id: int, key: str):
    return db.session.execute(
        sa.select(_KEYS.c.id, _KEYS.c.state, _KEYS.c.request_hash, _KEYS.c.created_at, _KEYS.c.response_status,
                  _KEYS.c.response_type, _KEYS.c.response_body, _KEYS.c.response_location)
        .where(_KEYS.c.user_id == user_id, _KEYS.c.key == key)).first()


@transactional
def claim(user_id: int, key: str, fingerprint: str):
    """Take `key` for this request: (row id, None), or (None, the first request's row) if it is taken.

    A transaction of its own, committed at once: a repeat arriving while this request runs
    must see the key taken.
    """
    now = utcnow()
    db.session.execute(sa.delete(_KEYS).where(_KEYS.c.user_id == user_id, _KEYS.c.created_at < now - KEEP_FOR))
    first = _first_use(user_id, key)
    if first is not None and first.state == "in_flight" and first.created_at < now - LEASE:
        db.session.execute(sa.delete(_KEYS).where(_KEYS.c.id == first.id))
        first = None
    row_id = None
    if first is None:
        try:
            with db.session.begin_nested():
                row_id = db.session.execute(sa.insert(_KEYS).values(
                    user_id=user_id, key=key, request_hash=fingerprint, state="in_flight",
                    created_at=now)).inserted_primary_key[0]
        except IntegrityError:  # a concurrent request took the key a moment ago
            first = _first_use(user_id, key)
    return row_id, first


def _take(key: str, kind: str):
    fingerprint = request_fingerprint()
    row_id, first = claim(current_user.id, key, fingerprint)
    if row_id is not None:
        g._submission_claim = Claim(row_id, kind)
        return None
    if first is None:  # the key was released between our insert and our look (very rare)
        return error_response(409, "This submission is being handled; send it again in a moment.")
    return (_answer_form if kind == "form" else _answer_api)(first, fingerprint)


def _answer_form(first, fingerprint: str):
    if first.state == "in_flight":
        return error_response(409, "This form is still being saved. Wait a moment, then reload the page.")
    if first.request_hash == fingerprint:
        flash("This form was already saved; it was not saved again.", "info")
    else:
        flash("This form was already saved with other values; nothing was saved again. "
              "Open the record to change it.", "warning")
    return redirect(first.response_location or _page_before())


def _page_before() -> str:
    """Where a repeated form goes when the first did not lead anywhere: the page it was sent from."""
    referrer = urlsplit(request.referrer or "")
    if referrer.netloc == request.host and referrer.path.startswith("/"):
        return referrer.path + (f"?{referrer.query}" if referrer.query else "")
    return url_for("main.dashboard")


def _answer_api(first, fingerprint: str):
    if first.request_hash != fingerprint:
        return error_response(422, "This Idempotency-Key was already used for another request.",
                              {HEADER: ["Use a new key for a new request."]})
    if first.state == "in_flight":
        response = error_response(409, "A request with this Idempotency-Key is still being processed; "
                                       "send it again in a moment.")
        response.headers["Retry-After"] = "1"
        return response
    response = current_app.response_class(first.response_body or "", status=first.response_status,
                                          mimetype=first.response_type or "application/json")
    if first.response_location:
        response.headers["Location"] = first.response_location
    response.headers[REPLAYED_HEADER] = "true"
    return response


# --- the request hooks ---------------------------------------------------------------------------


def keys_required() -> bool:
    """A form POST without a key is refused wherever CSRF is checked: in production, always."""
    setting = current_app.config.get("SUBMISSION_KEYS_REQUIRED")
    return bool(current_app.config.get("WTF_CSRF_ENABLED", True) if setting is None else setting)


def _claim_form_submission():
    if (request.method != "POST" or request.url_rule is None or request.path.startswith("/api/")
            or request.endpoint in EXEMPT_ENDPOINTS or not current_user.is_authenticated):
        return None
    key = request.form.get(FORM_FIELD)
    if key is None:
        return error_response(400, MISSING_KEY_MESSAGE) if keys_required() else None
    if not KEY_PATTERN.fullmatch(key):
        return error_response(400, MISSING_KEY_MESSAGE)
    return _take(key, "form")


def claim_api_request():
    """The API blueprint's hook, after authentication: honour `Idempotency-Key` on a POST."""
    key = request.headers.get(HEADER)
    if request.method != "POST" or key is None or not current_user.is_authenticated:
        return None
    if not KEY_PATTERN.fullmatch(key):
        return error_response(422, "The Idempotency-Key header is not valid.", {HEADER: [KEY_RULE]})
    return _take(key, "api")


@sa.event.listens_for(Session, "before_commit")
def _spend_the_key_with_the_change(session):
    """The commit that saves the request's change also marks its key done (one transaction)."""
    if not has_request_context():
        return
    held = g.get("_submission_claim")
    if held is None or not held.armed or session is not db.session():
        return
    session.execute(sa.update(_KEYS).where(_KEYS.c.id == held.row_id, _KEYS.c.state == "in_flight")
                    .values(state="done", completed_at=utcnow()))


def _settle(held: Claim, response) -> None:
    """Keep the answer of a request that saved its change; give the key back otherwise."""
    held.armed = False
    # After the request's own boundary: nothing it left unsaved goes in with our bookkeeping.
    db.session.rollback()
    with transaction():
        _keep_or_free(held, response)


def _keep_or_free(held: Claim, response) -> None:
    status = response.status_code if response is not None else 500
    saved = db.session.scalar(sa.select(_KEYS.c.state).where(_KEYS.c.id == held.row_id)) == "done"
    # A 4xx after a commit is a refusal that recorded only the attempt (a failed signature):
    # the submission did not count. A 5xx after a commit did count: its change is saved.
    if saved and not 400 <= status < 500:
        db.session.execute(sa.update(_KEYS).where(_KEYS.c.id == held.row_id).values(**_answer_of(held, response)))
    else:
        db.session.execute(sa.delete(_KEYS).where(_KEYS.c.id == held.row_id))


def _answer_of(held: Claim, response) -> dict:
    if response is None:  # an exception escaped after the change was saved
        body = {"error": "The request was saved, but its answer was lost; look the record up.", "details": None}
        return {"response_status": 500, "response_type": "application/json", "response_body": json.dumps(body)}
    values = {"response_status": response.status_code, "response_type": response.mimetype,
              # Our own redirects are short; the column's width bounds a pathological one.
              "response_location": (response.location or None) and response.location[:LOCATION_MAX]}
    # Forms replay by leading to the page the first submission led to; pages are not kept.
    if held.kind == "api" and not response.is_streamed:
        values["response_body"] = response.get_data(as_text=True)
    return values


def _settle_after_request(response):
    held = g.pop("_submission_claim", None)
    if held is not None:
        try:
            _settle(held, response)
        except sa.exc.DBAPIError:
            if response.status_code != 503:
                raise
            # The database went away during the request: keep its 503; the key, still in
            # flight, frees itself once it is old enough (see above).
            db.session.remove()
    return response


def _settle_on_teardown(exc) -> None:
    # Reached with the claim still held only when an exception escaped the request (tests
    # propagate them; production answers 500 through the error handler and after_request).
    held = g.pop("_submission_claim", None) if has_request_context() else None
    if held is not None:
        try:
            _settle(held, None)
        except Exception:  # never hide the request's own error behind ours
            # Not a use case's boundary: the bookkeeping failed and is thrown away before the teardown ends.
            db.session.rollback()
            current_app.logger.exception("Could not settle the submission key of %s %s", request.method,
                                         request.path)


def init_app(app: Flask) -> None:
    app.before_request(_claim_form_submission)
    app.after_request(_settle_after_request)
    app.teardown_request(_settle_on_teardown)
    app.jinja_env.globals["submission_key_field"] = submission_key_input
