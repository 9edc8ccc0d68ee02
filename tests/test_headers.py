"""Browser protections: security headers and Secure cookies behind TLS (idle sign-out: test_sessions)."""

import pytest


def test_every_page_carries_a_csp_without_inline_scripts_and_the_other_headers(client, as_role):
    as_role("pharmacist")
    for path in ("/", "/lots/", "/login", "/api/v1/lots", "/static/css/app.css"):
        response = client.get(path)
        response.close()  # static files are streamed from an open file
        csp = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "same-origin"
        assert response.headers["X-Frame-Options"] == "DENY"


def test_pages_with_patient_data_are_not_cached(client, as_role):
    as_role("pharmacist")
    assert client.get("/").headers["Cache-Control"] == "no-store"


def test_no_page_has_an_inline_script_or_style_attribute(client, as_role, make_batch):
    batch = make_batch()
    as_role("pharmacist")
    for path in ("/", "/lots/", f"/batches/{batch.id}", f"/batches/{batch.id}/label", "/scan/", "/audit"):
        page = client.get(path).get_data(as_text=True)
        assert "<script>" not in page and " style=" not in page, path


def test_session_cookies_are_not_secure_over_plain_http_by_default(client, make_user):
    from testkit import sign_in

    response = sign_in(client, make_user("pharmacist"))
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie


@pytest.mark.parametrize("config_overrides", [{"SESSION_COOKIE_SECURE": True}], indirect=True)
def test_session_cookies_are_secure_when_the_site_runs_on_https(client, make_user):
    from testkit import sign_in

    assert "Secure" in sign_in(client, make_user("pharmacist")).headers["Set-Cookie"]


@pytest.mark.parametrize("config_overrides", [{"TRUSTED_PROXIES": 1}], indirect=True)
def test_behind_a_trusted_proxy_that_says_https_cookies_are_secure(client, make_user):
    from testkit import PASSWORD

    user = make_user("pharmacist")
    response = client.post("/login", data={"username": user.username, "password": PASSWORD},
                           headers={"X-Forwarded-Proto": "https"})
    assert response.status_code == 302 and "Secure" in response.headers["Set-Cookie"]
