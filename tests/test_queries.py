"""The list filters of compounding.queries: each read once from a query string, the same on the page and in the API."""

from datetime import date

import pytest
from testkit import bearer, sign_in_session
from werkzeug.datastructures import MultiDict

from compounding.admin.forms import AuditFilterForm
from compounding.limits import SEARCH_MAX
from compounding.queries.audit import AuditFilters
from compounding.queries.batches import BatchFilters
from compounding.queries.common import SEARCH_MESSAGE, contains
from compounding.queries.formulas import FormulaFilters
from compounding.queries.ingredients import IngredientFilters
from compounding.queries.lots import MAX_EXPIRY_WINDOW_DAYS, LotFilters
from compounding.queries.recalls import RecallFilters
from compounding.queries.treatments import PatientFilters, SessionFilters

TOO_LONG = "x" * (SEARCH_MAX + 1)


def args(**values) -> MultiDict:
    return MultiDict(values)


# --- each Filters, read from a query string ---------------------------------------------------------------


def test_lot_filters_read_every_field():
    filters = LotFilters.from_args(args(ingredient_id="3", status="released", expiring_within_days="30",
                                        expired_in_stock="1", q="  A_1% ", sort="-received"))
    assert filters == LotFilters(ingredient_id=3, status="released", expiring_within_days=30, expired_in_stock=True,
                                 q="A_1%", sort="-received")


def test_lot_filters_leave_out_what_they_cannot_read():
    filters = LotFilters.from_args(args(ingredient_id="abc", status="lost", expiring_within_days="-4",
                                        expired_in_stock="yes", q=TOO_LONG, sort="price"))
    assert filters.ingredient_id is None and filters.status == "" and filters.sort == "expiry"
    assert filters.expiring_within_days == 0 and filters.expired_in_stock is False
    assert filters.q == "" and filters.errors == {"q": SEARCH_MESSAGE}
    assert LotFilters.from_args(args(expiring_within_days="99999")).expiring_within_days == MAX_EXPIRY_WINDOW_DAYS
    assert LotFilters.from_args(args(ingredient_id="99999999999")).ingredient_id is None


def test_batch_filters_read_every_field():
    filters = BatchFilters.from_args(args(formula=" lipo-pcdc ", status="released", bud_within_hours="48",
                                          compounded_from="2026-11-01", compounded_to="2026-11-30", q=" B26 "))
    assert filters == BatchFilters(formula="LIPO-PCDC", status="released", bud_within_hours=48,
                                   compounded_from=date(2026, 11, 1), compounded_to=date(2026, 11, 30), q="B26")


def test_batch_filters_name_each_day_they_leave_out():
    filters = BatchFilters.from_args(args(status="gone", bud_within_hours="soon", compounded_from="9999-01-01",
                                          compounded_to="01/11/2026", q=TOO_LONG))
    assert filters.status == "" and filters.bud_within_hours is None
    assert filters.compounded_from is None and filters.compounded_to is None and filters.q == ""
    assert filters.errors == {"compounded_from": "Compounded from: Give a date between 1900 and 2100.",
                              "compounded_to": "Compounded to: Use a date such as 2026-11-27.",
                              "q": SEARCH_MESSAGE}


def test_session_filters_read_days_and_the_practitioner():
    filters = SessionFilters.from_args(args(**{"from": "2026-11-01", "to": "2026-11-02", "practitioner_id": "7"}))
    assert filters == SessionFilters(practitioner_id=7, first_day=date(2026, 11, 1), last_day=date(2026, 11, 2))


def test_session_filters_name_a_bad_day_and_ignore_a_bad_id():
    filters = SessionFilters.from_args(args(**{"from": "1800-01-01", "to": "tomorrow", "practitioner_id": "0"}))
    assert filters.first_day is None and filters.last_day is None and filters.practitioner_id is None
    assert filters.errors == {"from": "From: Give a date between 1900 and 2100.",
                              "to": "To: Use a date such as 2026-11-27."}


@pytest.mark.parametrize("filters_class", [PatientFilters, IngredientFilters, FormulaFilters])
def test_a_search_box_is_stripped_and_refused_past_the_limit(filters_class):
    assert filters_class.from_args(args(q="  Núñez ")).q == "Núñez"
    assert filters_class.from_args(args(q="y" * SEARCH_MAX)).errors == {}
    refused = filters_class.from_args(args(q=TOO_LONG))
    assert refused.q == "" and refused.errors == {"q": SEARCH_MESSAGE}


def test_ingredient_filters_read_their_checkboxes():
    assert IngredientFilters.from_args(args(below_reorder="1", inactive="1")) == IngredientFilters(
        below_reorder=True, include_inactive=True)
    assert IngredientFilters.from_args(args(below_reorder="on", inactive="true")) == IngredientFilters()


def test_formula_filters_keep_only_known_statuses_and_indications():
    assert FormulaFilters.from_args(args(status="approved", indication="hair_loss")) == FormulaFilters(
        status="approved", indication="hair_loss")
    assert FormulaFilters.from_args(args(status="lost", indication="warts")) == FormulaFilters()


def test_recall_filters_keep_only_known_statuses():
    assert RecallFilters.from_args(args(status="open")).status == "open"
    assert RecallFilters.from_args(args(status="closed")).status == "closed"
    assert RecallFilters.from_args(args(status="pending")).status == ""


def test_audit_filters_leave_out_a_field_with_an_error_and_keep_the_others(app):
    with app.test_request_context(query_string={"entity_type": " lot ", "entity_id": "12", "action": "lot.",
                                                "user": " Pat ", "start": "2026-11-01", "end": "2026-02-30"}):
        form = AuditFilterForm(MultiDict({"entity_type": " lot ", "entity_id": "12", "action": "lot.",
                                          "user": " Pat ", "start": "2026-11-01", "end": "2026-02-30"}))
        form.validate()
        filters = AuditFilters.from_form(form)
    assert filters == AuditFilters(entity_type="lot", entity_id=12, action="lot.", user="pat",
                                   start=date(2026, 11, 1), end=None)
    assert form.end.errors == ["Use a date such as 2026-11-27."]
    with app.test_request_context():
        form = AuditFilterForm(MultiDict({"entity_id": "12345678901"}))
        form.validate()
        assert AuditFilters.from_form(form) == AuditFilters()


def test_a_search_pattern_takes_like_metacharacters_literally():
    assert contains("50%_a\\b") == "%50\\%\\_a\\\\b%"


# --- the page and the API apply the same limit -------------------------------------------------------------

SEARCHED = [("/lots/", "/api/v1/lots"), ("/batches/", "/api/v1/batches"),
            ("/treatments/patients", "/api/v1/patients"), ("/ingredients/", "/api/v1/ingredients"),
            ("/formulas/", "/api/v1/formulas")]


@pytest.mark.parametrize(("page", "api"), SEARCHED)
def test_the_page_and_the_api_take_the_same_longest_search_and_refuse_one_more(client, make_user, make_token,
                                                                              page, api):
    pharmacist = make_user("pharmacist")
    headers = bearer(make_token(pharmacist))
    sign_in_session(client, pharmacist)
    longest = "x" * SEARCH_MAX
    assert client.get(page, query_string={"q": longest}).status_code == 200
    assert client.get(api, query_string={"q": longest}, headers=headers).status_code == 200
    refused_page = client.get(page, query_string={"q": TOO_LONG})
    assert refused_page.status_code == 422
    assert SEARCH_MESSAGE in refused_page.get_data(as_text=True)
    refused_api = client.get(api, query_string={"q": TOO_LONG}, headers=headers)
    assert refused_api.status_code == 422 and "q" in refused_api.get_json()["details"]


@pytest.mark.parametrize("export", ["/exports/lots.xlsx", "/exports/batches.xlsx"])
def test_an_export_refuses_the_search_its_list_page_refuses(client, make_user, export):
    sign_in_session(client, make_user("pharmacist"))
    assert client.get(export, query_string={"q": TOO_LONG}).status_code == 422
