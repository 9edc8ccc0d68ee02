"""Hypothesis against the forms, the list filters, the scan field, the API bodies and the parsers.

Whatever arrives (control characters, RTL marks, NUL, 10,000-character strings, "1e400",
four hundred nines, lists where one value is expected, JSON of the wrong type), the answer
is never a 5xx, and a refused submission changes nothing: no row in any table, no audit
event. Parsers answer their value or their own error, never another exception.
"""

import itertools
import json
from collections import Counter
from datetime import date
from decimal import Decimal

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from testkit import PASSWORD, bearer, sign_in

from compounding.extensions import db
from compounding.gs1 import GS, GS1Data, GS1Error, parse_gs1
from compounding.models import AuditEvent, BatchComponent
from compounding.services import treatments
from compounding.services.errors import InvalidInput
from compounding.services.expiry import parse_expiry
from compounding.services.inventory import check_quantity
from compounding.services.users import create_token

FUZZ = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.filter_too_much, HealthCheck.data_too_large])
EXAMPLES: Counter = Counter()


@pytest.fixture(scope="module", autouse=True)
def _report_examples():
    yield
    print(f"\nhypothesis examples run in {__name__}: {sum(EXAMPLES.values())} "
          f"({', '.join(f'{name} {count}' for name, count in sorted(EXAMPLES.items()))})")


def _counted(name: str) -> None:
    EXAMPLES[name] += 1


# --- what arrives ----------------------------------------------------------------------------------

NASTY = [
    "", " ", "\x00", "a\x00b", "\u202egnp.exe", "\u200f\u200e\u202a\u202c", "\r\n", "\t\x0b\x0c", "\x1b[31m",
    "\ufeff", "\x1d", "\x7f", "x" * 10_000, "9" * 400, "1e400", "-1e400", "1E+400", "NaN", "sNaN", "Infinity",
    "-0", "0", "-1", "0.0001", "12.5", "1_000", "１２", "٣", "0x10", "2027-02-30", "2027-13", "2027-00", "9999-12",
    "0000-01-01", "99999-01-01", "2027-W01", "20271231", "' OR 1=1 --", '"; DROP TABLE lots; --', "%", "_", "\\",
    "<script>alert(1)</script>", "{{ 7*7 }}", "=cmd|' /C calc'!A0", "null", "[]", "{}", "true",
]
TEXT = st.text(st.characters(codec="utf-8"), max_size=40)
SINGLE = st.one_of(st.sampled_from(NASTY), TEXT)


@st.composite
def submissions(draw, good: dict, extra=()):
    """A form submission: each field kept good, made nasty, repeated as a list, or left out."""
    data = {}
    for name, value in good.items():
        value = value() if callable(value) else value
        how = draw(st.sampled_from(["good", "good", "good", "nasty", "list", "absent"]))
        if how == "good":
            data[name] = value
        elif how == "nasty":
            data[name] = draw(SINGLE)
        elif how == "list":
            data[name] = draw(st.lists(st.one_of(st.just(value), SINGLE), min_size=2, max_size=3))
    for name in extra:
        if draw(st.booleans()):
            data[name] = draw(SINGLE)
    return data


def row_counts() -> dict:
    """Rows in every table, in one statement.

    Not the patient access log: a refused form shown again still shows the patient, and
    that look is logged; it is no record the form saved.
    """
    tables = [table for table in db.metadata.sorted_tables if table.name != "patient_access_log"]
    row = db.session.execute(sa.select(*[
        sa.select(sa.func.count()).select_from(table).scalar_subquery().label(table.name) for table in tables
    ])).one()
    db.session.rollback()
    return dict(row._mapping)


def submit(client, url: str, data: dict, *, accepted=(302,)) -> bool:
    """POST the form; refused means nothing changed anywhere. True when it was accepted."""
    before = row_counts()
    response = client.post(url, data=data)
    assert response.status_code < 500, (url, data)
    after = row_counts()
    if response.status_code in accepted:
        assert after["audit_events"] > before["audit_events"], "an accepted change left no audit event"
        return True
    assert after == before, f"refused with {response.status_code} but rows changed: {data!r}"
    return False


def accepted_as_is(client, url: str, good: dict) -> None:
    """The unfuzzed submission is accepted: the field names are right, so refusals come from the fuzz."""
    assert submit(client, url, {name: value() if callable(value) else value for name, value in good.items()}), url


def fuzz_form(client, url: str, good: dict, label: str, extra=()) -> None:
    """The good submission is accepted as is; then fuzzed ones (plus `extra` fields) never fail or half-save."""
    accepted_as_is(client, url, good)

    @FUZZ
    @given(submissions(good, extra=extra))
    def check(data):
        _counted(label)
        submit(client, url, data)

    check()


def _unique(prefix: str):
    numbers = itertools.count(1)
    return lambda: f"{prefix}{next(numbers)}"


# --- the forms -------------------------------------------------------------------------------------


def test_the_receive_lot_form_never_fails_and_never_half_saves(app, client, as_role, make_ingredient):
    ingredient = make_ingredient(gtins=["05012345000015"])
    as_role("technician")
    good = {"ingredient_id": str(ingredient.id), "supplier": "Lipo Pharma", "lot_number": _unique("SL-"),
            "gtin": "05012345000015", "expiry_date": "2099-06", "quantity": "12.5", "coa_reference": "CoA 1",
            "location": "Fridge 2"}

    fuzz_form(client, "/lots/receive", good, "receive lot", extra=("csrf_token", "status", "remaining"))


def test_the_ingredient_form_never_fails_and_never_half_saves(app, client, as_role):
    as_role("pharmacist")
    good = {"name": _unique("Glycolic acid "), "kind": "active", "unit": "mL", "strength": "50 mg/mL",
            "storage": "fridge", "reorder_level": "10", "gtins": "", "active": "y"}

    fuzz_form(client, "/ingredients/new", good, "ingredient", extra=("id",))


def test_the_formula_form_never_fails_and_never_half_saves(app, client, as_role, make_ingredient):
    active, diluent = make_ingredient(), make_ingredient(kind="diluent")
    as_role("pharmacist")
    good = {"code": _unique("FZ-"), "name": "Fuzzed mix", "indication": "fat_reduction", "route": "subcutaneous",
            "dosage_form": "solution for injection", "unit_label": "vial 10 mL", "unit_volume_ml": "10",
            "instructions": "Mix.\r\nSeal.", "storage": "fridge", "bud_category": "category_1", "bud_hours": "",
            "bud_reason": "", "components-0-ingredient_id": str(active.id), "components-0-quantity": "2",
            "components-1-ingredient_id": str(diluent.id), "components-1-quantity": "8"}

    fuzz_form(client, "/formulas/new", good, "formula",
              extra=("components-2-ingredient_id", "components-2-quantity", "components-39-quantity",
                     "components-99999999999999999999-quantity", "status", "version"))


def test_the_compound_form_never_fails_and_never_half_saves(app, client, as_role, make_formula, make_lot):
    formula = make_formula()
    lots = [make_lot(component.ingredient, quantity="1000") for component in formula.components]
    as_role("technician")
    good = {"formula_id": str(formula.id), "units": "1", "deviation_note": "", "notes": "fuzzed",
            **{f"lot-{lot.id}-quantity": str(component.quantity)
               for lot, component in zip(lots, formula.components, strict=True)},
            **{f"lot-{lot.id}-scan": lot.code for lot in lots}}

    fuzz_form(client, "/batches/new", good, "compound", extra=("lot-999999-quantity", "lot-x-quantity"))


def test_the_patient_form_never_fails_and_never_half_saves(app, client, as_role):
    as_role("practitioner")
    good = {"chart_number": _unique("CH-FZ-"), "name": "Ana Lima", "birth_on": "1990-04-02",
            "phone": "+44 20 7946 0000", "email": "ana@example.org"}

    fuzz_form(client, "/treatments/patients/new", good, "patient", extra=("id", "created_at"))


def test_the_session_form_never_fails_and_never_half_saves(app, client, as_role, make_batch, make_patient):
    batch = make_batch(units=10)
    patient = make_patient()
    practitioner = as_role("practitioner")
    good = {"practitioner_id": str(practitioner.id), "performed_at": "", "offered_at": "", "indication": "face",
            "notes": "fuzzed", "uses-0-batch_code": batch.code, "uses-0-volume_ml": "0.5", "uses-0-area": "cheek"}

    fuzz_form(client, f"/treatments/patients/{patient.id}/sessions/new", good, "session",
              extra=("uses-1-batch_code", "uses-1-volume_ml", "uses-5-area", "patient_id"))


def test_the_adverse_event_form_never_fails_and_never_half_saves(app, client, as_role, make_batch, make_patient):
    batch = make_batch()
    practitioner = as_role("practitioner")
    record = treatments.record_session(practitioner, patient_id=make_patient().id,
                                       uses=[{"batch_code": batch.code, "volume_ml": "1", "area": "chin"}])
    good = {"event-type": "swelling", "event-severity": "mild", "event-onset_on": "",
            "event-outcome": "resolved", "event-notes": "fuzzed"}

    fuzz_form(client, f"/treatments/sessions/{record.id}/adverse-events", good, "adverse event",
              extra=("event-session_id", "type", "severity"))


def test_the_login_form_never_fails_and_records_only_sign_ins_failures_and_pauses(app, make_user):
    user = make_user("pharmacist", username="fuzz.pharmacist")
    good = {"username": user.username, "password": PASSWORD}

    @FUZZ
    @given(submissions(good, extra=("remember", "next")))
    def check(data):
        _counted("login")
        before = row_counts()
        last_event = db.session.scalar(sa.select(sa.func.max(AuditEvent.id))) or 0
        response = app.test_client().post("/login", data=data)
        assert response.status_code < 500, data
        after = row_counts()
        actions = set(db.session.scalars(sa.select(AuditEvent.action).where(AuditEvent.id > last_event)))
        # Refused sign-ins only add failure rows, and pause the account after too many;
        # a sign-in adds its server-side session and nothing else.
        assert actions <= {"user.signed_in", "user.password_attempts_paused"}, actions
        kept = {"audit_events", "auth_failures", "user_sessions"}
        assert {k: v for k, v in after.items() if k not in kept} == {
            k: v for k, v in before.items() if k not in kept}
        signed_in = "user.signed_in" in actions
        assert after["user_sessions"] - before["user_sessions"] == (1 if signed_in else 0), data
        if response.status_code != 302:
            assert not signed_in

    check()


# --- the scan field and the list filters -------------------------------------------------------------------

GS1_LIKE = st.one_of(
    SINGLE,
    st.builds(lambda prefix, parts, sep: prefix + sep.join(parts),
              st.sampled_from(["", "]C1", "]d2", "]Q3", "(", "https://id.gs1.org/"]),
              st.lists(st.sampled_from(["0105012345000015", "0105012345000016", "10LOT-1", "17271231", "17270200",
                                        "17271399", "21SER", "11270101", "99X", "10", "01", "(01)05012345000015",
                                        "(17)270631", "(10)A|B"]), max_size=5),
              st.sampled_from(["", GS, "|", "\x00", "\n"])),
)


def test_the_scan_field_answers_whatever_is_scanned_and_changes_nothing(app, client, as_role, make_lot):
    lot = make_lot()
    as_role("practitioner")

    @FUZZ
    @given(st.one_of(GS1_LIKE, st.just(lot.code), st.just(lot.code.lower() + "\t")))
    def check(code):
        _counted("scan")
        before = row_counts()
        for url, args in (("/scan/", {"code": code}), ("/scan/setup", {"test": code}),
                          ("/api/v1/scan", {"code": code})):
            response = client.get(url, query_string=args)
            assert response.status_code < 500, (url, code)
            if url == "/api/v1/scan" and response.status_code == 200:
                assert response.get_json()["kind"] in ("batch", "lot", "gs1", "unknown")
        assert row_counts() == before

    check()


LIST_PAGES = {
    "/lots/": ("q", "ingredient_id", "status", "expiring_within_days", "expired_in_stock", "sort", "page"),
    "/lots/receive": ("gtin", "lot_number", "expiry_date", "ingredient_id", "scan"),
    "/ingredients/": ("q", "below_reorder", "inactive", "page"),
    "/formulas/": ("status", "indication", "q", "page"),
    "/batches/": ("formula", "status", "bud_within_hours", "compounded_from", "compounded_to", "q", "page"),
    "/batches/new": ("formula_id", "units"),
    "/treatments/patients": ("q", "page"),
    "/treatments/sessions": ("from", "to", "practitioner_id", "page"),
    "/recalls/": ("status", "page"),
    "/recalls/new": ("lot_id", "batch_id", "reason"),
    "/trace": ("code",),
    "/audit": ("entity_type", "entity_id", "user", "action", "start", "end", "page"),
    "/api/v1/lots": ("q", "ingredient_id", "status", "expiring_within_days", "expired_in_stock", "sort", "page",
                     "per_page"),
    "/api/v1/ingredients": ("q", "below_reorder", "include_inactive", "page", "per_page"),
    "/api/v1/batches": ("formula", "status", "bud_within_hours", "compounded_from", "compounded_to", "q", "page"),
    "/api/v1/formulas": ("status", "code", "indication", "q", "page"),
    "/api/v1/patients": ("q", "page", "per_page"),
    "/api/v1/treatment-sessions": ("patient_id", "practitioner_id", "from", "to", "page"),
    "/api/v1/adverse-events": ("session_id", "patient_id", "type", "severity", "page"),
    "/api/v1/audit-events": ("entity_type", "entity_id", "action", "page"),
    "/api/v1/recalls": ("status", "page"),
}
NUMBERISH = st.sampled_from(["1", "0", "-1", "2147483647", "2147483648", "9223372036854775808", "9" * 400, "1e400",
                             "3.5", "", "NaN", "2027-06-30"])


@pytest.mark.parametrize("url", sorted(LIST_PAGES))
def test_list_filters_survive_any_query_arguments(app, client, make_user, make_batch, url):
    make_batch()
    pharmacist = make_user("pharmacist")
    headers = bearer(create_token(None, pharmacist, "test")) if url.startswith("/api/") else {}
    if not url.startswith("/api/"):
        sign_in(client, pharmacist)

    @FUZZ
    @given(st.fixed_dictionaries({}, optional={name: st.one_of(NUMBERISH, SINGLE, st.lists(SINGLE, max_size=2))
                                               for name in LIST_PAGES[url]}))
    def check(args):
        _counted("list filters")
        before = row_counts()
        response = client.get(url, query_string=args, headers=headers)
        assert response.status_code < 500, (url, args)
        assert response.status_code != 401
        assert row_counts() == before

    check()


# --- the API, with bodies of the wrong type -------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=2**31, max_value=10**400),
              st.floats(), st.sampled_from(NASTY), TEXT),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(TEXT, inner, max_size=3)),
    max_leaves=8,
)
API_WRITES = {
    "/api/v1/ingredients": ("name", "kind", "unit", "strength", "storage", "gtins", "reorder_level", "sterile",
                            "protect_from_light", "vehicle"),
    "/api/v1/ingredients/{ingredient}": ("name", "kind", "unit", "gtins", "reorder_level", "active"),
    "/api/v1/lots": ("ingredient_id", "supplier", "lot_number", "expiry_date", "quantity", "gtin"),
    "/api/v1/lots/{lot}/release": ("password", "reason"),
    "/api/v1/lots/{lot}/adjust": ("reason", "quantity", "direction", "note"),
    "/api/v1/formulas": ("code", "name", "indication", "route", "dosage_form", "unit_volume_ml", "bud_category",
                         "storage", "components", "bud_hours", "protect_from_light"),
    "/api/v1/batches": ("formula_id", "units", "allocations", "scanned_lot_ids", "notes", "preparation_started_at"),
    "/api/v1/batches/{batch}/verify": ("password",),
    "/api/v1/batches/{batch}/tests": ("kind", "result", "method", "lab", "sampled_on", "password", "units_sampled",
                                      "note"),
    "/api/v1/batches/{batch}/discard": ("reason", "note"),
    "/api/v1/patients": ("chart_number", "name", "birth_date", "phone", "email"),
    "/api/v1/treatment-sessions": ("patient_id", "uses", "performed_at", "practitioner_id", "notes"),
    "/api/v1/adverse-events": ("session_id", "type", "severity", "onset_on", "notes"),
    "/api/v1/recalls": ("lot_id", "batch_id", "reason", "password"),
}


@pytest.mark.parametrize("path", sorted(API_WRITES))
def test_api_bodies_of_the_wrong_type_are_refused_and_change_nothing(app, client, make_user, make_batch, path):
    batch = make_batch(release=False)
    component = db.session.scalars(sa.select(BatchComponent).where(BatchComponent.batch_id == batch.id)).first()
    url = path.format(ingredient=component.ingredient_id, lot=component.lot_id, batch=batch.id)
    method = "PATCH" if path == "/api/v1/ingredients/{ingredient}" else "POST"
    token = create_token(None, make_user("pharmacist"), "test")
    bodies = st.one_of(
        JSON_VALUES.map(json.dumps),
        st.fixed_dictionaries({}, optional={name: JSON_VALUES for name in API_WRITES[path]}).map(json.dumps),
        st.sampled_from(["[" * 50_000, '{"a":' * 50_000, "", "{", "\x00", "NaN", '{"name": "\\ud800"}',
                         '{"name": "a\\u0000b"}']),
    )

    @FUZZ
    @given(bodies)
    def check(raw):
        _counted("api bodies")
        before = row_counts()
        response = client.open(url, method=method, data=raw, content_type="application/json",
                               headers=bearer(token))
        assert response.status_code < 500, (url, raw[:200])
        if response.status_code >= 300:
            assert set(response.get_json()) == {"error", "details"}
            assert row_counts() == before, (url, raw[:200])

    check()


# --- the parsers -------------------------------------------------------------------------------------


@FUZZ
@given(st.one_of(GS1_LIKE, st.text(st.characters(codec="utf-8"), max_size=600)),
       st.sampled_from(["", GS, "|", "~", "#"]))
def test_the_gs1_parser_answers_data_or_its_own_error(raw, separator):
    _counted("gs1")
    try:
        data = parse_gs1(raw, separator)
    except GS1Error:
        return
    assert isinstance(data, GS1Data)
    assert data.gtin is None or (len(data.gtin) == 14 and data.gtin.isdigit())
    assert data.expiry_date is None or isinstance(data.expiry_date, date)
    # The human-readable form it shows parses back to the same fields.
    again = parse_gs1(data.hri)
    assert (again.gtin, again.lot_number, again.expiry_date, again.serial) == (
        data.gtin, data.lot_number, data.expiry_date, data.serial)


@FUZZ
@given(st.one_of(SINGLE, st.integers(), st.integers(min_value=10**300, max_value=10**400), st.floats(),
                 st.decimals(), st.none(), st.lists(st.integers(), max_size=2)))
def test_check_quantity_answers_a_sane_decimal_or_invalid_input(value):
    _counted("check_quantity")
    try:
        quantity = check_quantity(value)
    except InvalidInput as exc:
        assert exc.field == "quantity" and exc.message
        return
    assert isinstance(quantity, Decimal) and quantity.is_finite()
    assert Decimal(0) < quantity < Decimal("100000000000")
    assert quantity.as_tuple().exponent >= -3


@FUZZ
@given(st.one_of(SINGLE, st.from_regex(r"\A\d{4}-\d{1,2}(-\d{1,2})?\Z"), st.none()))
def test_parse_expiry_answers_a_date_or_value_error(text):
    _counted("parse_expiry")
    try:
        day = parse_expiry(text)
    except ValueError as exc:
        assert "YYYY-MM" in str(exc)
        return
    assert isinstance(day, date)

