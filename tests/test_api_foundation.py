"""The JSON API's foundation: tokens, session access, CSRF, the OpenAPI document, the audit feed."""

import hashlib
import re
from datetime import datetime

import pytest
import sqlalchemy as sa
from flask_login import login_user
from openapi_spec_validator import validate as validate_openapi
from testkit import audit_rows, bearer, count_rows, csrf_token_from, sign_in, sign_in_session
from werkzeug.exceptions import BadRequest

from compounding.api import views as api_views
from compounding.extensions import db
from compounding.models import ApiToken, AuditEvent, Ingredient
from compounding.services import audit, users


def _ingredients(*names: str) -> None:
    for name in names:
        db.session.add(Ingredient(name=name, kind="active", unit="mL"))
    db.session.commit()


def _cli_token(runner, username: str) -> str:
    result = runner.invoke(args=["create-token", username])
    assert result.exit_code == 0, result.output
    return result.output.strip()


# --- who gets in ---------------------------------------------------------------------------


def test_without_a_token_the_api_answers_401_json(client):
    response = client.get("/api/v1/ingredients")
    assert response.status_code == 401
    assert set(response.json) == {"error", "details"}
    assert response.json["error"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("header", [
    "Bearer ct_not-a-real-token", "Bearer ", "Basic dXNlcjpwYXNz", "ct_no-scheme", "bearer ct_x"])
def test_a_bad_or_malformed_token_gets_401_json(client, make_user, make_token, header):
    make_token(make_user("pharmacist"))
    response = client.get("/api/v1/ingredients", headers={"Authorization": header})
    assert response.status_code == 401
    assert set(response.json) == {"error", "details"}


def test_a_token_printed_by_the_cli_opens_the_api_and_is_stored_only_as_a_hash(runner, client, make_user):
    user = make_user("technician")
    token = _cli_token(runner, user.username)
    assert token.startswith("ct_") and len(token) > 40

    response = client.get("/api/v1/ingredients", headers=bearer(token))
    assert response.status_code == 200

    [row] = db.session.scalars(sa.select(ApiToken)).all()
    assert row.user_id == user.id
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    stored = db.session.execute(sa.select(*ApiToken.__table__.c)).one()
    assert not any(token in str(value) for value in stored)
    trail = db.session.execute(sa.select(*AuditEvent.__table__.c)).all()
    assert not any(token in str(value) for event in trail for value in event)
    [event] = audit_rows("token.created")
    assert event.new_values["user"] == user.username


def test_a_token_of_a_deactivated_account_stops_working(client, make_user, make_token):
    admin, user = make_user("admin"), make_user("pharmacist")
    token = make_token(user)
    assert client.get("/api/v1/ingredients", headers=bearer(token)).status_code == 200
    users.set_active(admin, user, False, "left")
    assert client.get("/api/v1/ingredients", headers=bearer(token)).status_code == 401


def test_the_browser_session_opens_the_api_too(client, make_user):
    _ingredients("Biotin")
    sign_in(client, make_user("practitioner"))
    response = client.get("/api/v1/ingredients")
    assert response.status_code == 200
    assert [item["name"] for item in response.json["items"]] == ["Biotin"]


# --- CSRF on browser-session writes --------------------------------------------------------


@pytest.mark.parametrize("config_overrides", [{"WTF_CSRF_ENABLED": True}], indirect=True)
def test_with_csrf_on_a_session_write_without_a_token_is_refused(app, make_user):
    user = make_user("pharmacist")
    with app.test_request_context("/api/v1/ingredients", method="POST", json={}):
        login_user(user)
        with pytest.raises(BadRequest, match="CSRF"):
            api_views._authenticate()


@pytest.mark.parametrize("config_overrides", [{"WTF_CSRF_ENABLED": True}], indirect=True)
def test_with_csrf_on_a_browser_post_to_the_api_needs_the_token_but_a_bearer_call_does_not(
        client, make_user, make_token):
    pharmacist = make_user("pharmacist")
    body = {"name": "Biotin", "kind": "active", "unit": "mL"}
    sign_in_session(client, pharmacist)
    csrf = csrf_token_from(client.get("/account/password").get_data(as_text=True))

    refused = client.post("/api/v1/ingredients", json=body)
    assert refused.status_code == 400
    assert set(refused.json) == {"error", "details"}
    assert count_rows(Ingredient) == 0

    assert client.post("/api/v1/ingredients", json=body, headers={"X-CSRFToken": csrf}).status_code == 201
    token_client = client.application.test_client()
    response = token_client.post("/api/v1/ingredients", headers=bearer(make_token(pharmacist)),
                                 json={**body, "name": "Minoxidil"})
    assert response.status_code == 201
    assert count_rows(Ingredient) == 2


def test_a_session_write_to_the_api_honours_csrf_being_switched_off(client, make_user):
    sign_in_session(client, make_user("pharmacist"))
    response = client.post("/api/v1/ingredients", json={"name": "Biotin", "kind": "active", "unit": "mL"})
    assert response.status_code == 201
    assert count_rows(Ingredient) == 1


# --- the OpenAPI document ------------------------------------------------------------------


@pytest.fixture
def spec(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    return response.json


def test_the_openapi_document_is_valid_openapi_3(spec):
    assert spec["openapi"].startswith("3.")
    assert spec["paths"]
    validate_openapi(spec)


def test_every_api_route_is_in_the_openapi_document(app, spec):
    documented = {(path, method, operation["operationId"])
                  for path, operations in spec["paths"].items()
                  for method, operation in operations.items()}
    missing = []
    for rule in app.url_map.iter_rules():
        # The document does not describe itself.
        if not rule.endpoint.startswith("api.") or rule.endpoint == "api.openapi":
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            if (path, method.lower(), rule.endpoint) not in documented:
                missing.append(f"{method} {path} ({rule.endpoint})")
    assert not missing, missing


def test_the_openapi_document_holds_every_schema_the_routes_use(app, spec):
    schemas = spec["components"]["schemas"]
    used = {"Error"}
    for view in app.view_functions.values():
        doc = getattr(view, "api_doc", None)
        for schema in (doc or {}).get("body"), (doc or {}).get("response"):
            if schema is not None:
                used.add(schema.__name__.removesuffix("Schema"))
    assert {"Ingredient", "AuditEvent", "Error"} <= used
    assert used <= set(schemas), used - set(schemas)
    assert {"error", "details"} <= set(schemas["Error"]["properties"])


def test_secured_operations_say_bearer_and_list_401_and_403(spec):
    operation = spec["paths"]["/api/v1/audit-events"]["get"]
    assert operation["security"] == [{"bearer": []}]
    assert {"200", "401", "403"} <= set(operation["responses"])
    names = {p["name"] for p in operation["parameters"]}
    assert {"page", "per_page", "entity_type", "entity_id", "action"} <= names


# --- lists and the audit feed --------------------------------------------------------------


def test_a_list_answers_items_page_per_page_and_total(client, make_user, make_token):
    _ingredients("Biotin", "Lidocaine", "Minoxidil")
    token = make_token(make_user("auditor"))
    first = client.get("/api/v1/ingredients?per_page=2", headers=bearer(token)).json
    assert set(first) == {"items", "page", "per_page", "total"}
    assert (first["page"], first["per_page"], first["total"], len(first["items"])) == (1, 2, 3, 2)
    second = client.get("/api/v1/ingredients?per_page=2&page=2", headers=bearer(token)).json
    assert [i["name"] for i in first["items"] + second["items"]] == ["Biotin", "Lidocaine", "Minoxidil"]
    default = client.get("/api/v1/ingredients", headers=bearer(token)).json
    assert (default["page"], default["per_page"]) == (1, 50)


def test_a_technician_token_gets_403_json_from_the_audit_feed(client, make_user, make_token):
    response = client.get("/api/v1/audit-events", headers=bearer(make_token(make_user("technician"))))
    assert response.status_code == 403
    assert set(response.json) == {"error", "details"}


@pytest.mark.parametrize("role", ["auditor", "pharmacist", "admin"])
def test_an_auditor_token_reads_the_audit_feed_newest_first(client, make_user, make_token, role):
    reader = make_user(role)
    token = make_token(reader)
    response = client.get("/api/v1/audit-events", headers=bearer(token))
    assert response.status_code == 200
    body = response.json
    expected = list(db.session.scalars(sa.select(AuditEvent.id).order_by(AuditEvent.id.desc())))
    assert [item["id"] for item in body["items"]] == expected
    assert body["total"] == len(expected) >= 2
    newest = body["items"][0]
    assert newest["action"] == "token.created"
    assert datetime.fromisoformat(newest["occurred_at"]).utcoffset() is not None
    assert len(newest["hash"]) == 64


def test_the_audit_feed_filters_by_entity_record_and_action_prefix(client, make_user, make_token):
    actor = make_user("pharmacist")
    for entity_type, entity_id, action in [("lot", 1, "lot.received"), ("lot", 2, "lot.received"),
                                           ("lot", 1, "lot.released"), ("batch", 1, "batch.verified"),
                                           ("lot", 1, "lotx.other")]:
        audit.record(actor, action, entity_type, entity_id)
    db.session.commit()
    token = make_token(make_user("auditor"))

    def actions(query):
        response = client.get(f"/api/v1/audit-events?{query}", headers=bearer(token))
        assert response.status_code == 200, response.json
        return [item["action"] for item in response.json["items"]]

    assert actions("entity_type=lot&entity_id=1") == ["lotx.other", "lot.released", "lot.received"]
    assert actions("action=lot.") == ["lot.released", "lot.received", "lot.received"]
    assert actions("entity_type=batch") == ["batch.verified"]
    assert actions("action=lot%25") == []
    assert actions("per_page=1&page=2&entity_type=lot") == ["lot.released"]


def test_a_bad_audit_feed_filter_is_a_422_naming_the_field(client, make_user, make_token):
    response = client.get("/api/v1/audit-events?entity_id=abc",
                          headers=bearer(make_token(make_user("auditor"))))
    assert response.status_code == 422
    assert "entity_id" in response.json["details"]


def test_a_bad_bearer_token_is_refused_even_with_a_signed_in_browser_session(client, as_role):
    as_role("pharmacist")
    assert client.get("/api/v1/ingredients").status_code == 200
    response = client.get("/api/v1/ingredients", headers={"Authorization": "Bearer not-a-token"})
    assert response.status_code == 401
    assert response.json["error"]


def test_a_token_decides_the_caller_over_a_browser_session(client, as_role, make_user):
    from compounding.services.users import create_token

    as_role("auditor")
    technician = make_user("technician")
    token = create_token(None, technician, "test")
    assert client.get("/api/v1/audit-events").status_code == 200
    response = client.get("/api/v1/audit-events", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 403
