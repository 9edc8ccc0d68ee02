"""With CSRF protection on, as in production: every state-changing request without a token is refused.

Built from `app.url_map` like the route-permission test, so new forms are covered too.
"""

import pytest
import sqlalchemy as sa
from testkit import first_role_allowed, placeholder_url, routes, sign_in_session

from compounding.extensions import db
from compounding.models import AuditEvent
from compounding.permissions import ROLES

pytestmark = pytest.mark.parametrize("config_overrides", [{"WTF_CSRF_ENABLED": True}], indirect=True)


def test_every_post_without_a_csrf_token_is_refused_and_changes_nothing(app, client, make_user):
    accounts = {role: make_user(role) for role in ROLES}
    audit_rows = db.session.scalar(sa.select(sa.func.count(AuditEvent.id)))
    refused, failures = 0, []
    for rule, view in sorted(routes(app), key=lambda item: item[0].rule):
        for method in sorted(rule.methods & {"POST", "PUT", "PATCH", "DELETE"}):
            role = first_role_allowed(view.required_permission)
            sign_in_session(client, accounts[role] if role else None)
            response = client.open(placeholder_url(rule), method=method, data={"password": "x"},
                                   headers={"Accept": "application/json"} if rule.rule.startswith("/api/") else {})
            if response.status_code == 400:
                refused += 1
            else:
                failures.append(f"{method} {rule.rule} as {role or 'visitor'}: {response.status_code}")
    print(f"\n{refused} state-changing routes refused without a CSRF token")
    assert refused > 20
    assert not failures, failures
    assert db.session.scalar(sa.select(sa.func.count(AuditEvent.id))) == audit_rows


def test_an_api_client_with_a_bearer_token_needs_no_csrf_token(app, client, make_user):
    from compounding.services.users import create_token

    token = create_token(None, make_user("pharmacist"), "test")
    response = client.post("/api/v1/ingredients", json={"name": "Glycolic acid", "kind": "active", "unit": "mL"},
                           headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 201


def test_the_login_form_works_with_its_csrf_token(app, client, make_user):
    import re

    from testkit import PASSWORD

    user = make_user("pharmacist")
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    response = client.post("/login", data={"username": user.username, "password": PASSWORD, "csrf_token": token})
    assert response.status_code == 302
