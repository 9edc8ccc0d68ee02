"""A form submission counts once: the one-time key every state-changing form carries."""

import re

import pytest
import sqlalchemy as sa
from flask_wtf import FlaskForm
from testkit import PASSWORD, csrf_token_from, first_role_allowed, placeholder_url, routes, sign_in, sign_in_session

from compounding import idempotency
from compounding.extensions import db
from compounding.models import TreatmentSession
from compounding.services import treatments


def hidden_inputs(html: str, marker: str) -> dict[str, str]:
    """The hidden fields of the page's POST form whose opening tag holds `marker` (an id, an action)."""
    forms = re.findall(r"<form\b([^>]*)>(.*?)</form>", html, flags=re.S)
    for attributes, body in forms:
        if 'method="post"' not in attributes or marker not in attributes:
            continue
        fields = {}
        for tag in re.findall(r"<input\b[^>]*>", body):
            if 'type="hidden"' in tag:
                name = re.search(r'name="([^"]*)"', tag).group(1)
                fields[name] = re.search(r'value="([^"]*)"', tag).group(1)
        return fields
    raise AssertionError(f"no POST form {marker} in the page")


def session_rows(batch, practitioner) -> dict[str, str]:
    return {"practitioner_id": str(practitioner.id), "performed_at": "", "indication": "submental fat",
            "notes": "", "uses-0-batch_code": batch.code, "uses-0-volume_ml": "1", "uses-0-area": "chin"}


def sessions() -> list[TreatmentSession]:
    db.session.expire_all()
    return list(db.session.scalars(sa.select(TreatmentSession).order_by(TreatmentSession.id)))


@pytest.fixture
def practitioner(make_user):
    return make_user("practitioner")


def test_the_same_session_form_posted_twice_records_one_session_and_leads_to_it(
        client, practitioner, make_patient, make_batch):
    patient, batch = make_patient(), make_batch()
    sign_in(client, practitioner)
    url = f"/treatments/patients/{patient.id}/sessions/new"
    page = client.get(url).get_data(as_text=True)
    form = {**hidden_inputs(page, 'id="treatment-form"'), **session_rows(batch, practitioner)}

    first = client.post(url, data=form)
    assert first.status_code == 302
    again = client.post(url, data=form)  # a retrying proxy, or the browser's "send again"

    assert len(sessions()) == 1
    assert again.status_code == 302 and again.headers["Location"] == first.headers["Location"]
    page = client.get(again.headers["Location"]).get_data(as_text=True)
    assert "already saved" in page


def test_a_refused_session_form_gives_its_key_back_so_the_corrected_form_can_be_sent(
        client, practitioner, make_patient, make_batch):
    patient, batch = make_patient(), make_batch()
    sign_in(client, practitioner)
    url = f"/treatments/patients/{patient.id}/sessions/new"
    form = {**hidden_inputs(client.get(url).get_data(as_text=True), 'id="treatment-form"'),
            **session_rows(batch, practitioner)}

    too_much = client.post(url, data={**form, "uses-0-volume_ml": "500"})
    assert too_much.status_code == 422
    blank = client.post(url, data={**form, "uses-0-volume_ml": ""})
    assert blank.status_code == 422
    corrected = client.post(url, data=form)
    assert corrected.status_code == 302
    assert len(sessions()) == 1 and "already saved" not in client.get(corrected.headers["Location"]).get_data(
        as_text=True)


def test_the_same_key_sent_with_other_values_saves_nothing_and_says_so(client, practitioner, make_patient,
                                                                       make_batch):
    patient, batch = make_patient(), make_batch()
    sign_in(client, practitioner)
    url = f"/treatments/patients/{patient.id}/sessions/new"
    form = {**hidden_inputs(client.get(url).get_data(as_text=True), 'id="treatment-form"'),
            **session_rows(batch, practitioner)}
    first = client.post(url, data=form)
    # Back to the form (the browser keeps the page and its key), a value changed, sent again.
    changed = client.post(url, data={**form, "uses-0-volume_ml": "2"}, follow_redirects=True)
    assert [record.id for record in sessions()] == [int(first.headers["Location"].rsplit("/", 1)[1])]
    assert "nothing was saved again" in changed.get_data(as_text=True)


def test_a_form_key_still_in_flight_answers_409_and_saves_nothing(app, client, practitioner, make_patient,
                                                                  make_batch):
    patient, batch = make_patient(), make_batch()
    sign_in(client, practitioner)
    url = f"/treatments/patients/{patient.id}/sessions/new"
    form = {**hidden_inputs(client.get(url).get_data(as_text=True), 'id="treatment-form"'),
            **session_rows(batch, practitioner)}
    with app.test_request_context(url, method="POST", data=form):
        idempotency.claim(practitioner.id, form[idempotency.FORM_FIELD], idempotency.request_fingerprint())
    response = client.post(url, data=form)
    assert response.status_code == 409
    assert "still being saved" in response.get_data(as_text=True)
    assert sessions() == []


def test_a_malformed_form_key_is_refused(client, practitioner, make_patient, make_batch):
    patient, batch = make_patient(), make_batch()
    sign_in(client, practitioner)
    response = client.post(f"/treatments/patients/{patient.id}/sessions/new",
                           data={**session_rows(batch, practitioner), idempotency.FORM_FIELD: "<script>"})
    assert response.status_code == 400 and sessions() == []


def test_without_csrf_checks_a_form_post_without_a_key_still_runs(client, practitioner, make_patient, make_batch):
    # The test configuration (CSRF off) lets the suite post form data directly; production
    # checks CSRF, and there a keyless form is refused (below).
    patient, batch = make_patient(), make_batch()
    sign_in(client, practitioner)
    response = client.post(f"/treatments/patients/{patient.id}/sessions/new", data=session_rows(batch, practitioner))
    assert response.status_code == 302 and len(sessions()) == 1


def test_every_form_class_renders_the_key_with_its_hidden_fields(app):
    from compounding.forms import AppForm

    # The app imported every area's forms when it registered the blueprints.
    pending, found = list(FlaskForm.__subclasses__()), []
    while pending:
        form_class = pending.pop()
        pending.extend(form_class.__subclasses__())
        if form_class.__module__.startswith("compounding."):
            found.append(form_class)
    strays = [f"{c.__module__}.{c.__name__}" for c in found if not issubclass(c, AppForm)]
    assert len(found) > 20
    assert strays == [], "forms that would post without a one-time key: derive them from AppForm"


def _post_forms(html: str):
    for attributes, body in re.findall(r"<form\b([^>]*)>(.*?)</form>", html, re.S):
        if 'method="post"' in attributes and "/logout" not in attributes:
            yield attributes, body


def test_every_post_form_on_the_record_pages_carries_a_key(client, make_user, make_lot, make_batch,
                                                           make_patient, make_formula):
    pharmacist = make_user("pharmacist")
    lot, batch, formula = make_lot(release=False), make_batch(release=False), make_formula(approve=False)
    record = treatments.record_session(pharmacist, patient_id=make_patient().id,
                                       uses=[{"batch_code": make_batch().code, "volume_ml": "1"}])
    pages = {make_user("admin"): [f"/admin/users/{pharmacist.id}", "/admin/users/new"],
             pharmacist: [f"/lots/{lot.id}", f"/batches/{batch.id}", f"/formulas/{formula.id}",
                          f"/treatments/sessions/{record.id}", "/treatments/patients/new", "/ingredients/new",
                          "/lots/receive", f"/batches/new?formula_id={make_formula().id}&units=1",
                          "/account/password", "/exports/import"]}
    checked = 0
    for user, urls in pages.items():
        sign_in_session(client, user)
        for url in urls:
            response = client.get(url)
            assert response.status_code == 200, url
            for attributes, body in _post_forms(response.get_data(as_text=True)):
                assert f'name="{idempotency.FORM_FIELD}"' in body, (url, attributes)
                checked += 1
    assert checked >= 15


# --- with CSRF checks on, as in production ----------------------------------------------------------

CSRF_ON = pytest.mark.parametrize("config_overrides", [{"WTF_CSRF_ENABLED": True}], indirect=True)


@CSRF_ON
def test_with_csrf_on_the_session_form_sent_twice_with_its_tokens_records_one_session(
        client, practitioner, make_patient, make_batch):
    patient, batch = make_patient(), make_batch()
    login = hidden_inputs(client.get("/login").get_data(as_text=True), "")
    assert client.post("/login", data={**login, "username": practitioner.username,
                                       "password": PASSWORD}).status_code == 302
    url = f"/treatments/patients/{patient.id}/sessions/new"
    form = {**hidden_inputs(client.get(url).get_data(as_text=True), 'id="treatment-form"'),
            **session_rows(batch, practitioner)}
    assert set(form) >= {"csrf_token", idempotency.FORM_FIELD}

    first = client.post(url, data=form)
    again = client.post(url, data=form)
    assert first.status_code == again.status_code == 302
    assert again.headers["Location"] == first.headers["Location"]
    assert len(sessions()) == 1
    without_key = client.post(url, data={k: v for k, v in form.items() if k != idempotency.FORM_FIELD})
    assert without_key.status_code == 400 and idempotency.MISSING_KEY_MESSAGE in without_key.get_data(as_text=True)
    assert len(sessions()) == 1


@CSRF_ON
def test_with_csrf_on_every_form_post_without_a_key_is_refused_and_changes_nothing(app, client, make_user):
    from compounding.models import AuditEvent

    accounts = {role: make_user(role) for role in ("admin", "pharmacist", "technician", "practitioner")}
    audit_rows = db.session.scalar(sa.select(sa.func.count(AuditEvent.id)))
    refused, failures = 0, []
    for rule, view in sorted(routes(app), key=lambda item: item[0].rule):
        if ("POST" not in rule.methods or rule.rule.startswith("/api/") or view.required_permission is None
                or rule.endpoint in idempotency.EXEMPT_ENDPOINTS):
            continue
        sign_in_session(client, accounts[first_role_allowed(view.required_permission)])
        token = csrf_token_from(client.get("/account/password").get_data(as_text=True))
        response = client.post(placeholder_url(rule), data={"csrf_token": token, "password": "x", "reason": "x"})
        if response.status_code == 400 and idempotency.MISSING_KEY_MESSAGE in response.get_data(as_text=True):
            refused += 1
        else:
            failures.append(f"POST {rule.rule}: {response.status_code}")
    assert refused > 20
    assert not failures, failures
    assert db.session.scalar(sa.select(sa.func.count(AuditEvent.id))) == audit_rows
