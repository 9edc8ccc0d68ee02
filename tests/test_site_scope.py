"""Lists, API lists, the dashboard and the workbooks show the viewer's sites: two sites, a user of each,
an auditor and a chain-wide pharmacist."""

import io
from datetime import date, timedelta

import pytest
import sqlalchemy as sa
from openpyxl import load_workbook
from testkit import PASSWORD, QueryCounter, sign_in_session

from compounding.extensions import db
from compounding.models import Location, Site, TreatmentSession, Vial
from compounding.queries.lots import inventory_counts
from compounding.services import batches, dashboard, inventory, treatments
from compounding.site_scope import SITE_KEY

# --- two sites and their people -------------------------------------------------------------------------


def add_site(code: str, location_code: str) -> tuple[Site, Location]:
    """A site with its default location (set up as an admin's site page would)."""
    site = Site(code=code, name=f"{code.title()} clinic", timezone="Europe/Paris", address="")
    db.session.add(site)
    db.session.flush()
    location = Location(site_id=site.id, code=location_code, name=f"{code.title()} store", kind="room",
                        is_default=True)
    db.session.add(location)
    db.session.commit()
    return site, location


@pytest.fixture
def chain(app, make_user, make_ingredient):
    """MAIN and LYON, one released lot at each, and a user of each site, an auditor and a chain pharmacist."""
    main = db.session.scalar(sa.select(Site).where(Site.code == "MAIN"))
    lyon, lyon_store = add_site("LYON", "LOC0002")
    people = {
        "receiver": make_user("technician", site_codes=["MAIN", "LYON"]),
        "releaser": make_user("pharmacist", site_codes=["MAIN", "LYON"]),
        "main": make_user("pharmacist", display_name="Mia Main"),
        "lyon": make_user("pharmacist", display_name="Leo Lyon", site_codes=["LYON"]),
        "both": make_user("pharmacist", display_name="Bea Both", site_codes=["MAIN", "LYON"]),
        "auditor": make_user("auditor"),
        "chain": make_user("pharmacist", display_name="Cy Chain"),
    }
    people["chain"].all_sites = True
    db.session.commit()
    ingredient = make_ingredient()
    data = {"main_site": main, "lyon_site": lyon, "lyon_store": lyon_store, "ingredient": ingredient, **people}
    data["main_lot"] = receive(data, main)
    data["lyon_lot"] = receive(data, lyon)
    return data


RECEIVED = {"n": 0}


def receive(chain: dict, site: Site, ingredient=None, *, release: bool = True, quantity: str = "100"):
    RECEIVED["n"] += 1
    lot = inventory.receive_lot(
        chain["receiver"], ingredient_id=(ingredient or chain["ingredient"]).id, supplier="Supplier A",
        supplier_lot_number=f"SL-{site.code}-{RECEIVED['n']}", expires_on=date.today() + timedelta(days=200),
        quantity=quantity, site_id=site.id)
    if release:
        inventory.release_lot(chain["releaser"], lot.id, PASSWORD, reason="Certificate requested")
    return lot


def move_vial(vial_id: int, location: Location) -> None:
    """Put a vial at another site's location, as a received transfer leaves it."""
    db.session.execute(sa.update(Vial).where(Vial.id == vial_id).values(location_id=location.id,
                                                                        site_id=location.site_id))
    db.session.commit()


def page(client, user, url: str, site_id: int | None = None) -> str:
    sign_in_session(client, user)
    if site_id is not None:
        with client.session_transaction() as session:
            session[SITE_KEY] = site_id
    response = client.get(url)
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    return response.get_data(as_text=True)


def api_codes(client, user, url: str) -> list[str]:
    sign_in_session(client, user)
    response = client.get(url)
    assert response.status_code == 200, response.get_json()
    return [item["code"] for item in response.get_json()["items"]]


# --- the lot list -------------------------------------------------------------------------------------


def test_a_user_of_one_site_lists_only_that_site_s_lots(client, chain):
    lyon_page = page(client, chain["lyon"], "/lots/")
    assert chain["lyon_lot"].code in lyon_page and chain["main_lot"].code not in lyon_page
    main_page = page(client, chain["main"], "/lots/")
    assert chain["main_lot"].code in main_page and chain["lyon_lot"].code not in main_page


def test_the_auditor_and_the_chain_pharmacist_list_every_site_s_lots_each_with_its_site(client, chain):
    for user in (chain["auditor"], chain["chain"]):
        html = page(client, user, "/lots/")
        assert chain["lyon_lot"].code in html and chain["main_lot"].code in html
        assert 'title="Site">LYON</span>' in html and 'title="Site">MAIN</span>' in html


def test_a_user_of_one_site_sees_no_site_badge(client, chain):
    assert 'title="Site"' not in page(client, chain["lyon"], "/lots/")


def test_the_switcher_narrows_a_user_of_two_sites_to_one(client, chain):
    both = page(client, chain["both"], "/lots/")
    assert chain["lyon_lot"].code in both and chain["main_lot"].code in both
    narrowed = page(client, chain["both"], "/lots/", site_id=chain["lyon_site"].id)
    assert chain["lyon_lot"].code in narrowed and chain["main_lot"].code not in narrowed
    assert 'title="Site"' not in narrowed


def test_a_switcher_choice_the_user_may_not_see_is_ignored(client, chain):
    html = page(client, chain["lyon"], "/lots/", site_id=chain["main_site"].id)
    assert chain["lyon_lot"].code in html and chain["main_lot"].code not in html


def test_an_ingredient_page_lists_its_lots_at_the_viewer_s_sites(client, chain):
    html = page(client, chain["lyon"], f"/ingredients/{chain['ingredient'].id}")
    assert chain["lyon_lot"].code in html and chain["main_lot"].code not in html


# --- the API lists ------------------------------------------------------------------------------------


def test_the_api_lot_list_is_scoped_and_narrowed_by_site_id(client, chain):
    assert api_codes(client, chain["lyon"], "/api/v1/lots") == [chain["lyon_lot"].code]
    assert sorted(api_codes(client, chain["auditor"], "/api/v1/lots")) == sorted(
        [chain["main_lot"].code, chain["lyon_lot"].code])
    main_only = f"/api/v1/lots?site_id={chain['main_site'].id}"
    assert api_codes(client, chain["auditor"], main_only) == [chain["main_lot"].code]
    assert api_codes(client, chain["both"], f"/api/v1/lots?site_id={chain['lyon_site'].id}") == [chain["lyon_lot"].code]


def test_the_api_refuses_a_site_the_caller_may_not_see(client, chain):
    sign_in_session(client, chain["lyon"])
    for url in ("/api/v1/lots", "/api/v1/batches", "/api/v1/treatment-sessions"):
        response = client.get(f"{url}?site_id={chain['main_site'].id}")
        assert response.status_code == 403, url
        assert "site" in response.get_json()["error"]
    assert client.get("/api/v1/lots?site_id=abc").status_code == 422
    sign_in_session(client, chain["auditor"])
    assert client.get("/api/v1/lots?site_id=999999").status_code == 404


# --- batches: at their site, and where their vials are --------------------------------------------------


@pytest.fixture
def main_batch(chain, make_formula, make_lot):
    """A released batch compounded at MAIN from MAIN's lots."""
    formula = make_formula()
    for component in formula.components:
        make_lot(component.ingredient, quantity="1000")
    batch = batches.compound_batch(chain["receiver"], formula.id, 3)  # the receiver's first site: MAIN
    batches.verify_batch(chain["releaser"], batch.id, PASSWORD)
    return batch


def test_a_batch_is_listed_at_its_site_and_at_a_site_holding_one_of_its_vials(client, chain, main_batch):
    assert main_batch.code not in page(client, chain["lyon"], "/batches/")
    assert api_codes(client, chain["lyon"], "/api/v1/batches") == []
    vial = db.session.scalar(sa.select(Vial).where(Vial.batch_id == main_batch.id, Vial.number == 2))
    move_vial(vial.id, chain["lyon_store"])
    assert main_batch.code in page(client, chain["lyon"], "/batches/")
    assert api_codes(client, chain["lyon"], "/api/v1/batches") == [main_batch.code]
    assert main_batch.code in page(client, chain["main"], "/batches/")


def test_a_batch_page_lists_only_the_vials_at_the_viewer_s_sites(client, chain, main_batch):
    vial = db.session.scalar(sa.select(Vial).where(Vial.batch_id == main_batch.id, Vial.number == 2))
    move_vial(vial.id, chain["lyon_store"])
    def listed(user) -> list[str]:
        html = page(client, user, f"/batches/{main_batch.id}")
        return [code for code in (f"{main_batch.code}-0{n}" for n in (1, 2, 3)) if f">{code}</a>" in html]

    assert listed(chain["lyon"]) == [f"{main_batch.code}-02"]
    assert listed(chain["main"]) == [f"{main_batch.code}-01", f"{main_batch.code}-03"]
    assert len(listed(chain["auditor"])) == 3


# --- sessions and patients ------------------------------------------------------------------------------


@pytest.fixture
def lyon_session(chain, main_batch, make_patient, practitioner):
    patient = make_patient()
    record = treatments.record_session(practitioner, patient_id=patient.id,
                                       uses=[{"batch_code": main_batch.code, "volume_ml": "1"}])
    db.session.execute(sa.update(TreatmentSession).where(TreatmentSession.id == record.id)
                       .values(site_id=chain["lyon_site"].id))  # performed at LYON
    db.session.commit()
    return record, patient


def test_sessions_are_listed_at_the_site_where_they_were_performed(client, chain, lyon_session):
    record, patient = lyon_session
    assert patient.chart_number in page(client, chain["lyon"], "/treatments/sessions")
    assert patient.chart_number not in page(client, chain["main"], "/treatments/sessions")
    sign_in_session(client, chain["lyon"])
    assert [s["id"] for s in client.get("/api/v1/treatment-sessions").get_json()["items"]] == [record.id]
    sign_in_session(client, chain["main"])
    assert client.get("/api/v1/treatment-sessions").get_json()["items"] == []


def test_the_patient_list_counts_the_sessions_at_the_viewer_s_sites(client, chain, lyon_session):
    from compounding.queries.treatments import PatientFilters, patient_list_query

    _, patient = lyon_session
    rows = {row.Patient.id: row.treatment_count
            for row in db.session.execute(patient_list_query(PatientFilters(), site_ids={chain["lyon_site"].id}))}
    assert rows[patient.id] == 1
    rows = {row.Patient.id: row.treatment_count
            for row in db.session.execute(patient_list_query(PatientFilters(), site_ids={chain["main_site"].id}))}
    assert patient.id not in rows  # treated at LYON only: not MAIN's to list


# --- statements: a scoped list costs the same for 5 rows and 50 ------------------------------------------


def statements(client, url: str) -> int:
    with QueryCounter(db.engine) as counter:
        response = client.get(url)
    assert response.status_code == 200
    return counter.count


def test_a_scoped_lot_list_costs_the_same_statements_for_5_and_50_lots(client, chain):
    for _ in range(4):
        receive(chain, chain["lyon_site"])
        receive(chain, chain["main_site"])
    sign_in_session(client, chain["lyon"])
    small = {url: statements(client, url) for url in ("/lots/", "/api/v1/lots?per_page=100")}
    for _ in range(45):
        receive(chain, chain["lyon_site"], release=False)
    sign_in_session(client, chain["lyon"])
    assert len(client.get("/api/v1/lots?per_page=100").get_json()["items"]) == 50
    assert {url: statements(client, url) for url in small} == small


def test_a_chain_wide_batch_list_with_site_badges_costs_the_same_statements_for_more_batches(
        client, chain, main_batch, make_batch):
    sign_in_session(client, chain["auditor"])
    small = {url: statements(client, url) for url in ("/batches/", "/api/v1/batches", "/treatments/sessions")}
    for _ in range(3):
        make_batch()
    sign_in_session(client, chain["auditor"])
    assert {url: statements(client, url) for url in small} == small


# --- the dashboard ------------------------------------------------------------------------------------


def test_the_dashboard_counts_the_stock_at_the_viewer_s_sites(chain):
    receive(chain, chain["lyon_site"], release=False)
    receive(chain, chain["lyon_site"], release=False)
    receive(chain, chain["main_site"], release=False)

    def awaiting(site_ids):
        return db.session.execute(inventory_counts(site_ids=site_ids)).one().awaiting_release

    assert (awaiting({chain["lyon_site"].id}), awaiting({chain["main_site"].id}), awaiting(None)) == (2, 1, 3)


def test_batches_awaiting_verification_show_on_the_dashboard_of_their_site_only(client, chain, make_batch):
    prepared = make_batch(release=False)  # compounded at MAIN
    assert prepared.code in page(client, chain["main"], "/")
    assert prepared.code not in page(client, chain["lyon"], "/")
    assert dashboard.batch_counts(site_ids={chain["lyon_site"].id})["awaiting_verification"] == 0
    assert dashboard.batch_counts(site_ids=None)["awaiting_verification"] == 1


def test_a_scoped_dashboard_costs_the_same_statements_with_more_data(client, chain, make_batch):
    sign_in_session(client, chain["both"])
    with client.session_transaction() as session:
        session[SITE_KEY] = chain["main_site"].id
    before = statements(client, "/")
    for _ in range(3):
        receive(chain, chain["main_site"], release=False)
        make_batch(release=False)
    sign_in_session(client, chain["both"])
    with client.session_transaction() as session:
        session[SITE_KEY] = chain["main_site"].id
    assert statements(client, "/") == before


# --- the workbooks ------------------------------------------------------------------------------------


def workbook(client, user, url: str):
    sign_in_session(client, user)
    response = client.get(url)
    try:
        assert response.status_code == 200, response.get_data(as_text=True)[:500]
        return load_workbook(io.BytesIO(response.get_data()))
    finally:
        response.close()


def column(sheet, header: str) -> list:
    index = [cell.value for cell in sheet[1]].index(header)
    return [row[index] for row in sheet.iter_rows(min_row=2, values_only=True)]


def test_the_lot_workbook_holds_the_lots_its_page_shows_with_their_site(client, chain):
    sheet = workbook(client, chain["lyon"], "/exports/lots.xlsx")["Lots"]
    assert column(sheet, "Lot code") == [chain["lyon_lot"].code] and column(sheet, "Site") == ["LYON"]
    sheet = workbook(client, chain["auditor"], "/exports/lots.xlsx")["Lots"]
    assert dict(zip(column(sheet, "Lot code"), column(sheet, "Site"), strict=True)) == {
        chain["main_lot"].code: "MAIN", chain["lyon_lot"].code: "LYON"}


def test_the_batch_and_session_workbooks_are_scoped_like_their_pages(client, chain, lyon_session, main_batch):
    record, _ = lyon_session
    assert column(workbook(client, chain["lyon"], "/exports/batches.xlsx")["Batches"], "Batch code") == []
    assert column(workbook(client, chain["main"], "/exports/batches.xlsx")["Batches"], "Batch code") == [
        main_batch.code]
    sessions = workbook(client, chain["lyon"], "/exports/sessions.xlsx")["Sessions"]
    assert column(sessions, "Session id") == [record.id] and column(sessions, "Site") == ["LYON"]
    assert column(workbook(client, chain["main"], "/exports/sessions.xlsx")["Sessions"], "Session id") == []


def test_the_audit_workbook_is_chain_wide_for_auditors_and_chain_pharmacists_else_refused(client, chain,
                                                                                         lyon_session):
    record, _ = lyon_session
    today = date.today()
    url = f"/exports/audit.xlsx?start={(today - timedelta(days=1)).isoformat()}&end={today.isoformat()}"
    every = {chain["main_lot"].code, chain["lyon_lot"].code}
    for user in (chain["auditor"], chain["chain"]):
        book = workbook(client, user, url)
        assert every <= set(column(book["Lots"], "Lot code"))
        assert record.id in column(book["Sessions"], "Session id")
    # Its audit trail and patient access are the chain's: a pharmacist of some sites is refused it.
    for user in (chain["main"], chain["lyon"]):
        sign_in_session(client, user)
        assert client.get(url).status_code == 403
