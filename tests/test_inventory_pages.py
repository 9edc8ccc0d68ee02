"""Inventory pages: forms re-render with clear messages, lists filter, budgets hold."""

import re
from datetime import date, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa
from testkit import PASSWORD, QueryCounter, sign_in

from compounding.extensions import db
from compounding.models import Ingredient, Lot, StockMovement


def receive_form(ingredient, **overrides):
    data = {"ingredient_id": str(ingredient.id), "supplier": "Lipo Pharma", "lot_number": "PC-77",
            "expiry_date": (date.today() + timedelta(days=100)).isoformat(), "quantity": "25.5",
            "gtin": "", "coa_reference": "CoA-77", "location": "Fridge 2"}
    data.update(overrides)
    return data


def lot_count():
    return db.session.scalar(sa.select(sa.func.count(Lot.id)))


def test_a_technician_receives_a_lot_through_the_form(client, as_role, make_ingredient):
    as_role("technician")
    ingredient = make_ingredient(name="Biotin")
    response = client.post("/lots/receive", data=receive_form(ingredient))
    assert response.status_code == 302
    lot = db.session.scalar(sa.select(Lot))
    assert response.headers["Location"].endswith(f"/lots/{lot.id}")
    assert (lot.status, lot.remaining, lot.location) == ("quarantine", Decimal("25.5"), "Fridge 2")
    page = client.get(f"/lots/{lot.id}").get_data(as_text=True)
    assert lot.code in page and "quarantine" in page and "Biotin" in page


def test_a_month_only_expiry_is_stored_as_the_last_day_of_the_month(client, as_role, make_ingredient):
    as_role("technician")
    year = date.today().year + 1
    client.post("/lots/receive", data=receive_form(make_ingredient(), expiry_date=f"{year}-02"))
    assert db.session.scalar(sa.select(Lot.expires_on)) == date(year, 3, 1) - timedelta(days=1)


@pytest.mark.parametrize("field, value, message", [
    ("quantity", "0", "greater than zero"),
    ("quantity", "1.0001", "at most 3 decimals"),
    ("quantity", "lots", "Enter a number"),
    ("expiry_date", "2027-02-30", "real date"),
    ("expiry_date", (date.today() - timedelta(days=1)).isoformat(), "cannot be received"),
    ("supplier", "", "This field is required"),
    ("lot_number", "x" * 61, "longer than 60"),
    ("gtin", "12345", "8 to 14 digits"),
    ("gtin", "05012345000016", "not a valid GTIN"),
    ("ingredient_id", "0", "Choose the ingredient"),
])
def test_bad_receiving_input_rerenders_the_form_with_a_message_and_saves_nothing(
        client, as_role, make_ingredient, field, value, message):
    as_role("technician")
    form = receive_form(make_ingredient(), **{field: value})
    response = client.post("/lots/receive", data=form)
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert message in page
    # The user's input is kept, the refused field's too (an empty supplier stays empty).
    kept = re.search(r'<input [^>]*name="supplier"[^>]* value="([^"]*)">', page).group(1)
    assert kept == form["supplier"]
    assert lot_count() == 0


def test_receiving_the_same_supplier_lot_twice_links_to_the_existing_lot(client, as_role, make_ingredient):
    as_role("technician")
    ingredient = make_ingredient()
    client.post("/lots/receive", data=receive_form(ingredient))
    response = client.post("/lots/receive", data=receive_form(ingredient))
    assert response.status_code == 422
    existing = db.session.scalar(sa.select(Lot))
    page = response.get_data(as_text=True)
    assert existing.code in page and f"/lots/{existing.id}" in page
    assert lot_count() == 1


def test_a_pharmacist_releases_a_lot_with_the_password_and_the_signature_shows(
        client, make_user, make_lot):
    lot = make_lot(release=False)
    pharmacist = make_user("pharmacist", display_name="Dr Ada Lovelace")
    sign_in(client, pharmacist)
    wrong = client.post(f"/lots/{lot.id}/release", data={"release-password": "nope-nope-nope",
                                                         "release-reason": "Certificate requested"})
    assert wrong.status_code == 422 and "password is not correct" in wrong.get_data(as_text=True)
    assert db.session.get(Lot, lot.id).status == "quarantine"
    response = client.post(f"/lots/{lot.id}/release", data={"release-password": PASSWORD,
                                                            "release-reason": "Certificate requested"},
                           follow_redirects=True)
    page = response.get_data(as_text=True)
    assert "released" in page and "Released</strong> by Dr Ada Lovelace" in page


def test_a_technician_cannot_release_a_lot_from_the_page(client, as_role, make_lot):
    lot = make_lot(release=False)
    as_role("technician")
    assert client.post(f"/lots/{lot.id}/release", data={"release-password": PASSWORD}).status_code == 403
    assert "Release lot" not in client.get(f"/lots/{lot.id}").get_data(as_text=True)


def test_an_adjustment_below_zero_is_refused_on_the_page(client, as_role, make_lot):
    lot = make_lot(quantity="2")
    as_role("technician")
    response = client.post(f"/lots/{lot.id}/adjust", data={
        "adjust-reason": "damaged", "adjust-direction": "out", "adjust-quantity": "3"})
    assert response.status_code == 422
    assert "cannot be taken" in response.get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.count(StockMovement.id)).where(
        StockMovement.lot_id == lot.id)) == 1


def test_the_lot_list_filters_by_status_ingredient_and_expiry(client, as_role, make_ingredient, make_lot):
    as_role("auditor")
    pc, biotin = make_ingredient(name="Phosphatidylcholine"), make_ingredient(name="Biotin")
    soon = make_lot(pc, expires_on=date.today() + timedelta(days=10))
    later = make_lot(biotin, expires_on=date.today() + timedelta(days=300))
    waiting = make_lot(biotin, release=False)
    expired = make_lot(pc)
    expired.expires_on = date.today() - timedelta(days=1)
    db.session.commit()

    def codes(query):
        page = client.get(f"/lots/?{query}").get_data(as_text=True)
        return {lot.code for lot in (soon, later, waiting, expired) if lot.code in page}

    assert codes("status=quarantine") == {waiting.code}
    assert codes(f"ingredient_id={pc.id}") == {soon.code, expired.code}
    assert codes("expiring_within_days=30") == {soon.code}
    assert codes("expired_in_stock=1") == {expired.code}


def test_a_pharmacist_creates_and_edits_an_ingredient(client, as_role):
    as_role("pharmacist")
    response = client.post("/ingredients/new", data={
        "name": "Glycolic acid", "kind": "active", "unit": "mL", "strength": "10 %",
        "storage": "room", "reorder_level": "5", "gtins": "05012345000015", "active": "y"})
    assert response.status_code == 302
    ingredient = db.session.scalar(sa.select(Ingredient))
    assert ingredient.gtin_list == ["05012345000015"]
    response = client.post(f"/ingredients/{ingredient.id}/edit", data={
        "name": "Glycolic acid", "kind": "active", "unit": "mL", "strength": "20 %",
        "storage": "room", "reorder_level": "5", "gtins": "", "active": "y"})
    assert response.status_code == 302
    db.session.refresh(ingredient)
    assert ingredient.strength == "20 %" and ingredient.gtin_list == []


def test_a_duplicate_ingredient_name_is_refused_next_to_the_field(client, as_role, make_ingredient):
    make_ingredient(name="Biotin")
    as_role("pharmacist")
    response = client.post("/ingredients/new", data={
        "name": "biotin", "kind": "active", "unit": "mL", "storage": "room", "reorder_level": "0"})
    assert response.status_code == 422
    assert "already exists" in response.get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.count(Ingredient.id))) == 1


def test_a_technician_cannot_create_ingredients(client, as_role):
    as_role("technician")
    assert client.get("/ingredients/new").status_code == 403


def test_the_ingredient_list_shows_released_stock_and_flags_below_reorder(client, as_role,
                                                                         make_ingredient, make_lot):
    as_role("practitioner")
    biotin = make_ingredient(name="Biotin", reorder_level="50")
    make_lot(biotin, quantity="20")
    make_lot(biotin, quantity="500", release=False)  # quarantine stock does not count
    page = client.get("/ingredients/").get_data(as_text=True)
    assert "20 mL" in page and "below reorder" in page
    assert "Biotin" in client.get("/ingredients/?below_reorder=1").get_data(as_text=True)


def test_the_dashboard_counts_link_to_the_filtered_lists(client, as_role, make_lot):
    make_lot(release=False)
    as_role("pharmacist")
    page = client.get("/").get_data(as_text=True)
    assert "/lots/?status=quarantine" in page and "Lots awaiting release" in page
    assert "/lots/?expired_in_stock=1" in page and "/ingredients/?below_reorder=1" in page


def _fill(n, make_ingredient):
    """n lots on n ingredients, inserted directly (a budget test needs rows, not rules)."""
    user_id = db.session.scalar(sa.text("SELECT id FROM users LIMIT 1"))
    ingredients = [Ingredient(name=f"Bulk {n}-{i}", kind="active", unit="mL") for i in range(n)]
    db.session.add_all(ingredients)
    db.session.flush()
    db.session.add_all(Lot(code=f"L9{n:02d}{i:03d}", ingredient_id=ing.id, supplier="S",
                           supplier_lot_number=f"{n}-{i}",
                           received_by_id=user_id, expires_on=date.today() + timedelta(days=30 + i),
                           quantity_received=Decimal(5), remaining=Decimal(5), status="released")
                       for i, ing in enumerate(ingredients))
    db.session.commit()


@pytest.mark.parametrize("path", ["/lots/", "/ingredients/", "/"])
def test_lists_issue_the_same_number_of_queries_for_5_rows_as_for_200(client, as_role, make_ingredient, path):
    as_role("pharmacist")
    _fill(5, make_ingredient)
    with QueryCounter(db.engine) as small:
        assert client.get(path).status_code == 200
    _fill(195, make_ingredient)
    with QueryCounter(db.engine) as large:
        assert client.get(path).status_code == 200
    assert small.count == large.count, (small.statements, large.statements)
