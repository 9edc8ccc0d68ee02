"""Injection: markup typed into records shows as text, SQL metacharacters in searches are just characters,
and no account can sign for another.
"""

import re
from datetime import date, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa
from markupsafe import escape
from testkit import PASSWORD, bearer, sign_in_session

from compounding.demo import DEMO_PASSWORD, seed_demo
from compounding.extensions import db
from compounding.limits import SEARCH_MAX
from compounding.models import (
    AuditEvent,
    Batch,
    Formula,
    Ingredient,
    Lot,
    Patient,
    Recall,
    Signature,
    TreatmentSession,
    User,
)
from compounding.services import inventory, treatments
from compounding.services.users import create_token

SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'
RAW_TAGS = ("<script>alert(1)", "<img src=x onerror=alert(1)>")


def payload(field: str) -> str:
    """A field's own markup, so each page can be checked for each value it shows."""
    return f"{field}{SCRIPT}{IMG}"


def assert_shown_as_text(html: str, *fields: str, json_escaped: bool = False) -> None:
    for tag in RAW_TAGS:
        assert tag not in html, f"raw {tag!r} in the page"
    for field in fields:
        if json_escaped:  # |tojson in a page: <, > and & become \\u003c, \\u003e, \\u0026
            shown = payload(field).replace("<", "\\u003c").replace(">", "\\u003e").replace('"', '\\"')
        else:
            shown = str(escape(payload(field)))
        assert shown in html, f"{field}'s value is not shown escaped"


# --- markup entered through the forms and the API ---------------------------------------------------------


@pytest.fixture
def marked_up(app, client, make_user):
    """Every free-text field a person types, filled with markup through the real pages."""
    pharmacist, checker = make_user("pharmacist"), make_user("pharmacist")
    technician, practitioner = make_user("technician"), make_user("practitioner")

    def post(user, url, data, expected=302):
        sign_in_session(client, user)
        response = client.post(url, data=data)
        assert response.status_code == expected, response.get_data(as_text=True)[:2000]
        return response

    post(pharmacist, "/ingredients/new", {"name": payload("INGREDIENT"), "kind": "active", "unit": "mL",
                                          "strength": payload("STRENGTH")[:60], "storage": "fridge",
                                          "reorder_level": "0", "active": "y"})
    post(pharmacist, "/ingredients/new", {"name": "Saline", "kind": "diluent", "unit": "mL", "storage": "room",
                                          "reorder_level": "0", "active": "y"})
    active = db.session.scalar(sa.select(Ingredient).where(Ingredient.name == payload("INGREDIENT")))
    saline = db.session.scalar(sa.select(Ingredient).where(Ingredient.name == "Saline"))
    for ingredient, number in ((active, payload("LOTNO")), (saline, "NS-1")):
        post(technician, "/lots/receive", {"ingredient_id": str(ingredient.id), "supplier": payload("SUPPLIER"),
                                           "lot_number": number, "expiry_date": "2099-12",
                                           "quantity": "100", "coa_reference": payload("COA"),
                                           "location": payload("LOCATION")})
    lots = {lot.ingredient_id: lot for lot in db.session.scalars(sa.select(Lot))}
    for lot in lots.values():
        post(pharmacist, f"/lots/{lot.id}/release", {"release-password": PASSWORD, "release-reason": payload("COA")})
    post(pharmacist, "/formulas/new", {
        "code": "XSS-1", "name": payload("FORMULA"), "indication": "other", "route": "intradermal",
        "dosage_form": "solution for injection", "unit_label": "vial 5 mL", "unit_volume_ml": "5",
        "instructions": payload("STEP1") + "\r\n" + payload("STEP2"), "storage": "fridge",
        "bud_category": "category_1", "components-0-ingredient_id": str(active.id), "components-0-quantity": "1",
        "components-1-ingredient_id": str(saline.id), "components-1-quantity": "4"})
    formula = db.session.scalar(sa.select(Formula).where(Formula.code == "XSS-1"))
    post(checker, f"/formulas/{formula.id}/approve", {"approve-password": PASSWORD})  # not its author
    post(technician, "/batches/new", {"formula_id": str(formula.id), "units": "2", "notes": payload("BATCHNOTE"),
                                      f"lot-{lots[active.id].id}-quantity": "2",
                                      f"lot-{lots[active.id].id}-scan": lots[active.id].code,
                                      f"lot-{lots[saline.id].id}-quantity": "8",
                                      f"lot-{lots[saline.id].id}-scan": lots[saline.id].code})
    batch = db.session.scalar(sa.select(Batch))
    post(checker, f"/batches/{batch.id}/verify", {"verify-password": PASSWORD})
    post(practitioner, "/treatments/patients/new", {"chart_number": "CH-XSS", "name": payload("PATIENT"),
                                                    "phone": "", "email": ""})
    patient = db.session.scalar(sa.select(Patient))
    post(practitioner, f"/treatments/patients/{patient.id}/sessions/new", {
        "practitioner_id": str(practitioner.id), "indication": payload("INDICATION"), "notes": payload("SESSION"),
        "uses-0-batch_code": batch.code, "uses-0-volume_ml": "1", "uses-0-area": payload("AREA")})
    record = db.session.scalar(sa.select(TreatmentSession))
    post(practitioner, f"/treatments/sessions/{record.id}/adverse-events", {
        "event-type": "redness", "event-severity": "mild", "event-outcome": payload("OUTCOME"),
        "event-notes": payload("EVENT")})
    post(pharmacist, f"/recalls/new?batch_id={batch.id}", {"reason": payload("RECALL"), "password": PASSWORD})
    recall = db.session.scalar(sa.select(Recall))
    return {"pharmacist": pharmacist, "lot": lots[active.id], "batch": batch, "formula": formula,
            "patient": patient, "record": record, "recall": recall}


PAGES = [
    ("lot detail", "/lots/{lot}", ("INGREDIENT", "SUPPLIER", "LOTNO", "COA", "LOCATION")),
    ("lot label", "/lots/{lot}/label", ("INGREDIENT", "LOTNO")),
    ("lot list", "/lots/", ("INGREDIENT", "SUPPLIER", "LOTNO")),
    ("ingredient list", "/ingredients/", ("INGREDIENT",)),
    ("batch detail", "/batches/{batch}", ("FORMULA", "INGREDIENT", "BATCHNOTE")),
    ("batch label", "/batches/{batch}/label", ("FORMULA", "INGREDIENT")),
    ("formula detail", "/formulas/{formula}", ("FORMULA", "STEP1", "STEP2", "INGREDIENT")),
    ("patient detail", "/treatments/patients/{patient}", ("PATIENT", "SESSION", "LOTNO", "INGREDIENT")),
    ("patient list", "/treatments/patients", ("PATIENT",)),
    ("session detail", "/treatments/sessions/{record}", ("PATIENT", "INDICATION", "SESSION", "AREA", "EVENT",
                                                          "OUTCOME")),
    ("recall page", "/recalls/{recall}", ("RECALL", "PATIENT")),
    ("recall report", "/recalls/{recall}/report", ("RECALL", "PATIENT")),
    ("recall list", "/recalls/", ("RECALL",)),
    ("trace of the lot", "/trace/lots/{lot}", ("INGREDIENT", "LOTNO", "PATIENT")),
    ("dashboard", "/", ()),
]


@pytest.mark.parametrize(("page", "url", "fields"), PAGES, ids=[page for page, _, _ in PAGES])
def test_markup_typed_into_records_is_shown_as_text(client, marked_up, page, url, fields):
    sign_in_session(client, marked_up["pharmacist"])
    ids = {key: getattr(value, "id", None) for key, value in marked_up.items()}
    response = client.get(url.format(**ids))
    assert response.status_code == 200, page
    assert_shown_as_text(response.get_data(as_text=True), *fields)


def test_markup_in_the_audit_trail_is_shown_as_text(client, marked_up):
    sign_in_session(client, marked_up["pharmacist"])
    html = "".join(client.get(f"/audit?page={page}").get_data(as_text=True) for page in (1, 2))
    assert_shown_as_text(html, "INGREDIENT", "SUPPLIER", "FORMULA", "PATIENT", "RECALL", json_escaped=True)


def test_markup_sent_through_the_api_is_stored_as_typed_and_shown_as_text(client, make_user):
    pharmacist = make_user("pharmacist")
    headers = bearer(create_token(None, pharmacist, "test"))
    answer = client.post("/api/v1/ingredients", json={"name": payload("APIINGREDIENT"), "kind": "active",
                                                      "unit": "mL"}, headers=headers)
    assert answer.status_code == 201
    assert answer.get_json()["name"] == payload("APIINGREDIENT") and answer.mimetype == "application/json"
    patient = client.post("/api/v1/patients", json={"chart_number": "CH-API", "name": payload("APIPATIENT")},
                          headers=headers).get_json()
    assert patient["name"] == payload("APIPATIENT")
    sign_in_session(client, pharmacist)
    assert_shown_as_text(client.get(f"/ingredients/{answer.get_json()['id']}").get_data(as_text=True),
                         "APIINGREDIENT")
    assert_shown_as_text(client.get(f"/treatments/patients/{patient['id']}").get_data(as_text=True), "APIPATIENT")


# --- SQL metacharacters in every search box -----------------------------------------------------------------

METACHARACTERS = ["' OR 1=1 --", "%", "_", "\\", '"; DROP TABLE lots; --', "'", "%%", "a%", "_a", "--", ";"]


@pytest.fixture
def demo(app, make_user):
    """The demo data, plus records whose names hold the metacharacters literally."""
    for _ in seed_demo():
        pass
    pharmacist = db.session.scalar(sa.select(User).where(User.username == "pharmacist"))
    technician = db.session.scalar(sa.select(User).where(User.username == "technician"))
    ingredient = db.session.scalar(sa.select(Ingredient).where(Ingredient.name == "Biotin"))
    inventory.receive_lot(technician, ingredient_id=ingredient.id, supplier="Acme_Labs \\ 100% pure",
                          supplier_lot_number="A_1%", expires_on=date.today() + timedelta(days=300),
                          quantity=Decimal("5"))
    treatments.create_patient(pharmacist, {"chart_number": "CH_100%", "name": "Back\\slash"})
    return {"pharmacist": pharmacist, "token": create_token(None, pharmacist, "test")}


def literal(model, columns, needle: str) -> set[int]:
    """The ids a literal, case-insensitive substring search finds, computed in Python apart from the app."""
    needle = needle.strip().lower()
    return {row.id for row in db.session.scalars(sa.select(model))
            if any(needle in (getattr(row, column) or "").lower() for column in columns)}


def _table_counts() -> dict:
    """Rows per table; the patient access log aside, as a search of patients is a look it records."""
    return {table.name: db.session.scalar(sa.select(sa.func.count()).select_from(table))
            for table in db.metadata.sorted_tables if table.name != "patient_access_log"}


SEARCHES = [
    # list, its search argument's model and columns, the longest search the API accepts / the page keeps
    ("lots", Lot, ("code", "supplier_lot_number", "supplier"), SEARCH_MAX, SEARCH_MAX),
    ("ingredients", Ingredient, ("name",), SEARCH_MAX, SEARCH_MAX),
    ("batches", Batch, ("code",), SEARCH_MAX, SEARCH_MAX),
    ("patients", Patient, ("chart_number", "name"), SEARCH_MAX, SEARCH_MAX),
    ("formulas", Formula, ("code", "name"), SEARCH_MAX, SEARCH_MAX),
]
PAGES_OF = {"lots": "/lots/", "ingredients": "/ingredients/", "batches": "/batches/",
            "patients": "/treatments/patients/", "formulas": "/formulas/"}


@pytest.mark.parametrize("needle", METACHARACTERS)
def test_metacharacters_in_api_searches_find_exactly_what_a_literal_search_finds(client, demo, needle):
    counts = _table_counts()
    for name, model, columns, longest, _ in SEARCHES:
        response = client.get(f"/api/v1/{name}", query_string={"q": needle, "per_page": 200},
                              headers=bearer(demo["token"]))
        if len(needle) > longest:
            assert response.status_code == 422, name
            continue
        assert response.status_code == 200, (name, response.get_data(as_text=True)[:300])
        found = {item["id"] for item in response.get_json()["items"]}
        assert found == literal(model, columns, needle), (name, needle)
    assert _table_counts() == counts


@pytest.mark.parametrize("needle", METACHARACTERS)
def test_metacharacters_in_page_searches_find_exactly_what_a_literal_search_finds(client, demo, needle):
    sign_in_session(client, demo["pharmacist"])
    counts = _table_counts()
    for name, model, columns, _, kept in SEARCHES:
        list_url = "/treatments/patients" if name == "patients" else PAGES_OF[name]
        response = client.get(list_url, query_string={"q": needle})
        assert response.status_code == 200, name
        html = response.get_data(as_text=True)
        listed = {int(found) for found in re.findall(rf'href="{re.escape(PAGES_OF[name])}(\d+)"', html)}
        assert listed == literal(model, columns, needle.strip()[:kept]), (name, needle)
    assert _table_counts() == counts


@pytest.mark.parametrize("needle", METACHARACTERS)
def test_metacharacters_in_trace_scan_and_audit_filters_are_harmless(client, demo, needle):
    sign_in_session(client, demo["pharmacist"])
    counts = _table_counts()
    # Every needle keeps a character once its spaces are dropped, and no code holds these: not found.
    trace = client.get("/trace", query_string={"code": needle})
    assert trace.status_code == 404
    assert f'No batch or lot has the code <strong class="code">{escape(needle.strip())}</strong>' in trace.get_data(
        as_text=True)
    scan = client.get("/api/v1/scan", query_string={"code": needle}, headers=bearer(demo["token"]))
    assert scan.status_code == 200 and scan.get_json()["kind"] == "unknown"
    assert client.get("/scan/", query_string={"code": needle}).status_code == 200
    for args in ({"action": needle}, {"entity_type": needle}, {"user": needle}):
        page = client.get("/audit", query_string=args)
        # A filter that names nothing lists nothing: no row of the trail is shown.
        assert page.status_code == 200 and 'class="audit-values"' not in page.get_data(as_text=True), args
    for args in ({"entity_id": needle}, {"start": needle, "end": needle}):
        assert client.get("/audit", query_string=args).status_code == 200, args
    for args in ({"action": needle}, {"entity_type": needle}):
        answer = client.get("/api/v1/audit-events", query_string=args, headers=bearer(demo["token"]))
        assert answer.status_code == 200 and answer.get_json()["total"] == 0, args
    assert _table_counts() == counts
    assert {"lots", "batches", "audit_events", "patients"} <= set(sa.inspect(db.engine).get_table_names())


def test_a_percent_sign_does_not_match_everything(client, demo):
    answer = client.get("/api/v1/batches", query_string={"q": "%"}, headers=bearer(demo["token"])).get_json()
    assert db.session.scalar(sa.select(sa.func.count(Batch.id))) > 0 and answer["total"] == 0
    lots = client.get("/api/v1/lots", query_string={"q": "%"}, headers=bearer(demo["token"])).get_json()
    assert [item["supplier"] for item in lots["items"]] == ["Acme_Labs \\ 100% pure"]


# --- no account can sign for another ------------------------------------------------------------------------

OTHER_PASSWORD = "another-pharmacists-secret"


@pytest.fixture
def signers(app, make_user, make_lot, make_formula, make_batch):
    return {
        "me": make_user("pharmacist", display_name="Dr Caller"),
        "other": make_user("pharmacist", password=OTHER_PASSWORD, display_name="Dr Other"),
        "technician": make_user("technician"),
        "lot": make_lot(release=False),
        "formula": make_formula(approve=False),
        "batch": make_batch(release=False),
    }


def _signing_calls(signers) -> list[tuple[str, str, dict]]:
    lot, formula, batch = signers["lot"], signers["formula"], signers["batch"]
    return [
        ("lot", f"/api/v1/lots/{lot.id}/release", {"reason": "certificate requested"}),
        ("lot", f"/api/v1/lots/{lot.id}/reject", {"reason": "damaged seal"}),
        ("formula", f"/api/v1/formulas/{formula.id}/approve", {}),
        ("batch", f"/api/v1/batches/{batch.id}/verify", {}),
        ("batch", f"/api/v1/batches/{batch.id}/reject", {"reason": "cloudy"}),
        ("recall", "/api/v1/recalls", {"batch_id": batch.id, "reason": "supplier alert"}),
    ]


def _signatures() -> int:
    return db.session.scalar(sa.select(sa.func.count(Signature.id)))


def test_a_technician_token_with_a_pharmacists_password_is_refused_every_signature(client, signers):
    token = create_token(None, signers["technician"], "test")
    signed = _signatures()
    for _, url, body in _signing_calls(signers):
        response = client.post(url, json={**body, "password": PASSWORD}, headers=bearer(token))
        assert response.status_code == 403, url
    assert _signatures() == signed


def test_a_pharmacist_cannot_sign_with_another_pharmacists_password(client, signers):
    token = create_token(None, signers["me"], "test")
    signed, last_event = _signatures(), db.session.scalar(sa.select(sa.func.max(AuditEvent.id)))
    calls = _signing_calls(signers)
    for _, url, body in calls:
        response = client.post(url, json={**body, "password": OTHER_PASSWORD}, headers=bearer(token))
        assert response.status_code == 403, url
        assert response.get_json()["details"] == {"password": [response.get_json()["error"]]}
    assert _signatures() == signed
    # Each refusal is audited, and nothing else is written.
    new_actions = db.session.scalars(sa.select(AuditEvent.action).where(AuditEvent.id > last_event)).all()
    assert set(new_actions) <= {"signature.refused", "signature.blocked", "user.password_attempts_paused"}
    assert len([a for a in new_actions if a.startswith("signature.")]) == len(calls)
    db.session.expire_all()
    assert db.session.get(Lot, signers["lot"].id).status == "quarantine"


def test_the_signer_is_always_the_caller_whatever_the_body_or_cookie_says(client, signers):
    me, other = signers["me"], signers["other"]
    # Signed in as the other pharmacist in the browser, calling with my token: the token decides.
    sign_in_session(client, other)
    token = create_token(None, me, "test")
    last = db.session.scalar(sa.select(sa.func.max(Signature.id))) or 0
    impostor = {"signer_id": other.id, "signer_name": other.display_name, "user_id": other.id}
    refused = client.post(f"/api/v1/lots/{signers['lot'].id}/release", json={"password": PASSWORD, **impostor},
                          headers=bearer(token))
    assert refused.status_code == 422 and set(refused.get_json()["details"]) == set(impostor)
    for _, url, body in _signing_calls(signers):
        if url.endswith("/reject"):
            continue  # the release and the verification below leave nothing to reject
        response = client.post(url, json={**body, "password": PASSWORD}, headers=bearer(token))
        # Opening a recall creates one (201); the other signatures act on a record that exists (200).
        assert response.status_code == (201 if url == "/api/v1/recalls" else 200), (url, response.get_json())
    signatures = list(db.session.scalars(sa.select(Signature).where(Signature.id > last)))
    assert {s.meaning for s in signatures} == {"released", "approved", "verified", "recall opened"}
    assert {(s.signer_id, s.signer_name) for s in signatures} == {(me.id, "Dr Caller")}


def test_on_the_pages_a_signature_takes_only_the_signed_in_persons_password(client, signers):
    me, other, lot, batch = signers["me"], signers["other"], signers["lot"], signers["batch"]
    last = db.session.scalar(sa.select(sa.func.max(Signature.id))) or 0
    sign_in_session(client, signers["technician"])
    assert client.post(f"/lots/{lot.id}/release", data={"release-password": PASSWORD}).status_code == 403
    assert client.post(f"/batches/{batch.id}/verify", data={"verify-password": PASSWORD}).status_code == 403
    sign_in_session(client, me)
    for url, data in ((f"/lots/{lot.id}/release", {"release-password": OTHER_PASSWORD, "release-reason": "requested"}),
                      (f"/batches/{batch.id}/verify", {"verify-password": OTHER_PASSWORD}),
                      (f"/formulas/{signers['formula'].id}/approve", {"approve-password": OTHER_PASSWORD}),
                      (f"/recalls/new?batch_id={batch.id}", {"reason": "alert", "password": OTHER_PASSWORD})):
        response = client.post(url, data={**data, "signer_id": str(other.id)})
        assert response.status_code == 422, url
        assert "Signature refused" in response.get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.max(Signature.id))) == last
    response = client.post(f"/lots/{lot.id}/release", data={"release-password": PASSWORD, "release-reason": "requested",
                                                            "signer_id": str(other.id), "user_id": str(other.id)})
    assert response.status_code == 302
    signature = db.session.scalars(sa.select(Signature).where(Signature.id > last)).one()
    assert (signature.signer_id, signature.signer_name, signature.meaning) == (me.id, "Dr Caller", "released")


def test_the_demo_pharmacists_cannot_sign_for_each_other(client, app):
    for _ in seed_demo():
        pass
    lot = db.session.scalar(sa.select(Lot).where(Lot.status == "quarantine", Lot.supplier_lot_number == "HA-1002"))
    first, second = (db.session.scalar(sa.select(User).where(User.username == name))
                     for name in ("pharmacist", "pharmacist2"))
    token = create_token(None, first, "test")
    assert db.session.scalar(sa.select(sa.func.count(Signature.id)).where(Signature.entity_id == lot.id,
                                                                          Signature.entity_type == "lot")) == 0
    # Both demo accounts share a password: the signature is still the caller's, never the other's.
    response = client.post(f"/api/v1/lots/{lot.id}/release", json={"password": DEMO_PASSWORD}, headers=bearer(token))
    assert response.status_code == 200 and response.get_json()["released_by"] == first.display_name
    signature = db.session.scalar(sa.select(Signature).where(Signature.entity_id == lot.id,
                                                            Signature.entity_type == "lot"))
    assert signature.signer_id == first.id != second.id
