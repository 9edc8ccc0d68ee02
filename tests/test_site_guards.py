"""Records, actions by id, scans, site management, the audit workbook and the remaining lists keep to the
viewer's sites: two sites (MAIN and LYON), a user of each, one of both, an auditor and a chain pharmacist."""

from datetime import date, timedelta

import pytest
import sqlalchemy as sa
from testkit import PASSWORD, QueryCounter, sign_in_session

from compounding.extensions import db
from compounding.models import Batch, BatchComponent, Location, Lot, Site, TreatmentSession, Vial
from compounding.queries.ingredients import below_reorder_count_query, ingredient_row_query
from compounding.services import (
    batch_tests,
    batches,
    holds,
    inventory,
    scan,
    site_reads,
    sites,
    treatments,
    vials,
)
from compounding.services.errors import InvalidInput, InvalidState, NotAllowed

# --- two sites and their people -------------------------------------------------------------------------


def add_site(code: str, location_code: str) -> tuple[Site, Location]:
    site = Site(code=code, name=f"{code.title()} clinic", timezone="Europe/Paris", address="")
    db.session.add(site)
    db.session.flush()
    location = Location(site_id=site.id, code=location_code, name=f"{code.title()} store", kind="room",
                        is_default=True)
    db.session.add(location)
    db.session.commit()
    return site, location


RECEIVED = {"n": 0}


def receive(chain: dict, site: Site, ingredient=None, *, release: bool = True, quantity: str = "100"):
    RECEIVED["n"] += 1
    lot = inventory.receive_lot(
        chain["receiver"], ingredient_id=(ingredient or chain["ingredient"]).id, supplier="Supplier A",
        supplier_lot_number=f"SG-{site.code}-{RECEIVED['n']}", expires_on=date.today() + timedelta(days=200),
        quantity=quantity, site_id=site.id)
    if release:
        inventory.release_lot(chain["releaser"], lot.id, PASSWORD, reason="Certificate requested")
    return lot


@pytest.fixture
def chain(app, make_user, make_ingredient):
    main = db.session.scalar(sa.select(Site).where(Site.code == "MAIN"))
    lyon, lyon_store = add_site("LYON", "LOC0002")
    people = {
        "receiver": make_user("technician", site_codes=["MAIN", "LYON"]),
        "releaser": make_user("pharmacist", site_codes=["MAIN", "LYON"]),
        "main": make_user("pharmacist", display_name="Mia Main"),
        "lyon": make_user("pharmacist", display_name="Leo Lyon", site_codes=["LYON"]),
        "lyon_tech": make_user("technician", display_name="Tom Lyon", site_codes=["LYON"]),
        "lyon_doc": make_user("practitioner", display_name="Dr Lyon", site_codes=["LYON"]),
        "both": make_user("pharmacist", display_name="Bea Both", site_codes=["MAIN", "LYON"]),
        "auditor": make_user("auditor"),
        "chain": make_user("pharmacist", display_name="Cy Chain"),
        "admin": make_user("admin", site_codes=["LYON"]),
    }
    people["chain"].all_sites = True
    db.session.commit()
    ingredient = make_ingredient()
    data = {"main_site": main, "lyon_site": lyon, "lyon_store": lyon_store, "ingredient": ingredient, **people}
    data["main_store"] = sites.default_location(main.id)
    data["main_lot"] = receive(data, main)
    data["lyon_lot"] = receive(data, lyon)
    return data


@pytest.fixture
def main_batch(chain, make_formula, make_lot):
    """A released batch of 6 vials compounded at MAIN from MAIN's lots."""
    formula = make_formula()
    for component in formula.components:
        make_lot(component.ingredient, quantity="1000")
    batch = batches.compound_batch(chain["receiver"], formula.id, 6)
    batches.verify_batch(chain["releaser"], batch.id, PASSWORD)
    return batch


def vial_of(batch, number: int) -> Vial:
    return db.session.scalar(sa.select(Vial).where(Vial.batch_id == batch.id, Vial.number == number))


def move_vial(vial: Vial, location: Location) -> None:
    db.session.execute(sa.update(Vial).where(Vial.id == vial.id).values(location_id=location.id,
                                                                        site_id=location.site_id))
    db.session.commit()


def session_at(site: Site, batch, patient, practitioner) -> TreatmentSession:
    record = treatments.record_session(practitioner, patient_id=patient.id,
                                       uses=[{"batch_code": batch.code, "volume_ml": "1"}])
    db.session.execute(sa.update(TreatmentSession).where(TreatmentSession.id == record.id).values(site_id=site.id))
    db.session.commit()
    return record


def get(client, user, url: str):
    sign_in_session(client, user)
    return client.get(url)


# --- 1. records and actions by id ---------------------------------------------------------------------------


def test_a_record_of_another_site_answers_404_on_its_page_and_in_the_api(client, chain, main_batch):
    lot = chain["main_lot"]
    for url in (f"/lots/{lot.id}", f"/api/v1/lots/{lot.id}", f"/batches/{main_batch.id}",
                f"/api/v1/batches/{main_batch.id}", f"/batches/{main_batch.id}/vials/1"):
        assert get(client, chain["lyon"], url).status_code == 404, url
        assert get(client, chain["main"], url).status_code == 200, url
        assert get(client, chain["auditor"], url).status_code == 200, url
        assert get(client, chain["chain"], url).status_code == 200, url
    assert get(client, chain["lyon"], f"/lots/{chain['lyon_lot'].id}").status_code == 200


def test_a_batch_with_a_vial_at_the_viewer_s_site_is_theirs_to_read(client, chain, main_batch):
    move_vial(vial_of(main_batch, 2), chain["lyon_store"])
    assert get(client, chain["lyon"], f"/batches/{main_batch.id}").status_code == 200
    assert get(client, chain["lyon"], f"/api/v1/batches/{main_batch.id}").status_code == 200
    assert get(client, chain["lyon"], f"/batches/{main_batch.id}/vials/2").status_code == 200
    assert get(client, chain["lyon"], f"/batches/{main_batch.id}/vials/1").status_code == 404


def test_a_session_of_another_site_answers_404_and_pages_list_only_sessions_in_scope(
        client, chain, main_batch, make_patient, practitioner):
    move_vial(vial_of(main_batch, 2), chain["lyon_store"])
    seen, unseen = make_patient(chart_number="CH-LYON-1"), make_patient(chart_number="CH-MAIN-1")
    lyon_record = session_at(chain["lyon_site"], main_batch, seen, practitioner)
    main_record = session_at(chain["main_site"], main_batch, unseen, practitioner)
    both_sites = session_at(chain["main_site"], main_batch, seen, practitioner)
    for path in ("/treatments/sessions/{}", "/api/v1/treatment-sessions/{}"):
        assert get(client, chain["lyon"], path.format(main_record.id)).status_code == 404
        assert get(client, chain["lyon"], path.format(lyon_record.id)).status_code == 200
        assert get(client, chain["main"], path.format(main_record.id)).status_code == 200
    html = get(client, chain["lyon"], f"/batches/{main_batch.id}").get_data(as_text=True)
    assert "CH-LYON-1" in html and "CH-MAIN-1" not in html
    html = get(client, chain["auditor"], f"/batches/{main_batch.id}").get_data(as_text=True)
    assert "CH-LYON-1" in html and "CH-MAIN-1" in html
    html = get(client, chain["lyon"], f"/batches/{main_batch.id}/vials/2").get_data(as_text=True)
    assert "CH-MAIN-1" not in html
    # The patient's page: the LYON session, not the MAIN one.
    html = get(client, chain["lyon"], f"/treatments/patients/{seen.id}").get_data(as_text=True)
    assert f"/treatments/sessions/{lyon_record.id}" in html
    assert f"/treatments/sessions/{both_sites.id}" not in html
    html = get(client, chain["main"], f"/treatments/patients/{seen.id}").get_data(as_text=True)
    assert f"/treatments/sessions/{both_sites.id}" in html
    assert f"/treatments/sessions/{lyon_record.id}" not in html


def test_a_lyon_technician_cannot_write_off_main_stock_through_the_api(client, chain):
    lot = chain["main_lot"]
    sign_in_session(client, chain["lyon_tech"])
    response = client.post(f"/api/v1/lots/{lot.id}/adjust", json={"reason": "damaged", "quantity": "10"})
    assert response.status_code == 403, response.get_json()
    assert "MAIN" in response.get_json()["error"]
    assert db.session.get(Lot, lot.id).remaining == 100


def test_lot_actions_at_another_site_are_refused(chain):
    waiting = receive(chain, chain["main_site"], release=False)
    with pytest.raises(NotAllowed, match="MAIN"):
        inventory.release_lot(chain["lyon"], waiting.id, PASSWORD)
    with pytest.raises(NotAllowed, match="MAIN"):
        inventory.reject_lot(chain["lyon"], waiting.id, PASSWORD, "damaged box")
    with pytest.raises(NotAllowed, match="MAIN"):
        inventory.adjust_lot(chain["lyon_tech"], chain["main_lot"].id, reason="damaged", quantity="1")
    with pytest.raises(NotAllowed, match="MAIN"):
        inventory.quarantine_lot(chain["lyon"], chain["main_lot"].id, "supplier alert")
    assert inventory.adjust_lot(chain["lyon_tech"], chain["lyon_lot"].id, reason="damaged", quantity="1").remaining \
        == 99


def test_batch_and_vial_actions_at_another_site_are_refused(chain, main_batch, make_batch):
    waiting = make_batch(release=False)  # compounded at MAIN
    with pytest.raises(NotAllowed, match="MAIN"):
        batches.verify_batch(chain["lyon"], waiting.id, PASSWORD)
    with pytest.raises(NotAllowed, match="MAIN"):
        batches.reject_batch(chain["lyon"], waiting.id, PASSWORD, "wrong colour")
    with pytest.raises(NotAllowed, match="MAIN"):
        batches.discard_batch(chain["lyon"], main_batch.id, "contaminated", "dropped")
    with pytest.raises(NotAllowed, match="MAIN"):
        vials.discard_vial(chain["lyon_doc"], vial_of(main_batch, 1).id, "contaminated", "dropped")
    with pytest.raises(NotAllowed, match="MAIN"):
        batch_tests.record_test_result(chain["lyon"], main_batch.id, kind="sterility", result="pass",
                                       method="compendial", lab="Lab", sampled_on=date.today(), password=PASSWORD)
    assert db.session.get(Batch, main_batch.id).status == "released"
    # A vial of the batch kept at LYON is LYON's to discard.
    at_lyon = vial_of(main_batch, 3)
    move_vial(at_lyon, chain["lyon_store"])
    assert vials.discard_vial(chain["lyon_doc"], at_lyon.id, "contaminated", "dropped").status == "discarded"


def test_a_hold_at_another_site_is_not_released_there(chain):
    lot = chain["main_lot"]
    holds.quality_signal_hold(chain["main"], "lot", lot.id, "three nodules")
    with pytest.raises(NotAllowed, match="MAIN"):
        holds.release_hold(chain["lyon"], "lot", lot.id, "quality_signal", "reviewed", PASSWORD)
    assert holds.release_hold(chain["main"], "lot", lot.id, "quality_signal", "reviewed", PASSWORD).status == \
        "released"


# --- 2. the scan ----------------------------------------------------------------------------------------


def test_a_location_with_a_code_of_its_own_is_scanned(chain):
    for code in ("COLD-1", "BENCH-1"):
        sites.create_location(None, chain["main_site"].id, f"Place {code}", "fridge", code=code)
        answer = scan.resolve(code.lower(), site_ids=None)
        assert (answer.kind, answer.location.code) == ("location", code)
        hidden = scan.resolve(code, site_ids={chain["lyon_site"].id})
        assert hidden.hidden and hidden.reasons == [scan.not_yours("MAIN")]


def test_a_missing_vial_of_a_batch_at_a_hidden_site_tells_only_the_site(chain, main_batch):
    answer = scan.resolve(f"{main_batch.code}-09", site_ids={chain["lyon_site"].id})
    assert answer.hidden and answer.reasons == [scan.not_yours("MAIN")]
    assert "run to" not in " ".join(answer.reasons)
    seen = scan.resolve(f"{main_batch.code}-09", site_ids={chain["main_site"].id})
    assert "run to" in seen.reasons[0]


# --- 3. managing sites is for their members -----------------------------------------------------------------


def test_a_pharmacist_manages_only_the_sites_they_belong_to(chain):
    main = chain["main_site"]
    cold = sites.create_location(chain["main"], main.id, "Cold room", "fridge")
    for attempt in (lambda: sites.create_location(chain["lyon"], main.id, "Cupboard", "cabinet"),
                    lambda: sites.set_default_location(chain["lyon"], cold.id),
                    lambda: sites.deactivate_location(chain["lyon"], cold.id, "gone"),
                    lambda: sites.update_location(chain["lyon"], cold.id, name="Renamed", kind="fridge"),
                    lambda: sites.update_site(chain["lyon"], main.id, name="Taken", timezone="Europe/Paris")):
        with pytest.raises(NotAllowed, match="MAIN"):
            attempt()
    assert sites.default_location(main.id).id == chain["main_store"].id
    # A chain-wide pharmacist and an admin manage every site.
    sites.set_default_location(chain["chain"], cold.id)
    sites.set_default_location(chain["admin"], chain["main_store"].id)
    assert sites.default_location(main.id).id == chain["main_store"].id


# --- 4. the audit workbook -------------------------------------------------------------------------------


def test_the_audit_workbook_is_refused_to_a_pharmacist_of_some_sites_only(client, chain):
    today = date.today()
    url = f"/exports/audit.xlsx?start={(today - timedelta(days=1)).isoformat()}&end={today.isoformat()}"
    for user in (chain["lyon"], chain["main"]):
        response = get(client, user, url)
        assert response.status_code == 403
        assert "auditor" in response.get_data(as_text=True)
        assert "Download the audit workbook" not in get(client, user, "/exports/").get_data(as_text=True)
    for user in (chain["auditor"], chain["chain"], chain["both"]):  # "both" belongs to every site there is
        response = get(client, user, url)
        assert response.status_code == 200
        response.close()


# --- 5. the remaining lists -------------------------------------------------------------------------------


def test_the_adverse_event_list_holds_the_events_of_sessions_in_scope(client, chain, main_batch, make_patient,
                                                                      practitioner):
    move_vial(vial_of(main_batch, 2), chain["lyon_store"])
    lyon_record = session_at(chain["lyon_site"], main_batch, make_patient(), practitioner)
    main_record = session_at(chain["main_site"], main_batch, make_patient(), practitioner)
    for record in (lyon_record, main_record):
        treatments.record_adverse_event(practitioner, session_id=record.id, type="redness", severity="mild")

    def listed(user, query=""):
        response = get(client, user, f"/api/v1/adverse-events{query}")
        assert response.status_code == 200, response.get_json()
        return [item["session_id"] for item in response.get_json()["items"]]

    assert listed(chain["lyon"]) == [lyon_record.id]
    assert sorted(listed(chain["auditor"])) == sorted([lyon_record.id, main_record.id])
    assert listed(chain["auditor"], f"?site_id={chain['main_site'].id}") == [main_record.id]
    assert get(client, chain["lyon"], f"/api/v1/adverse-events?site_id={chain['main_site'].id}").status_code == 403


def test_the_patient_list_holds_patients_treated_in_scope_or_nowhere_and_any_by_exact_chart(
        client, chain, main_batch, make_patient, practitioner):
    move_vial(vial_of(main_batch, 2), chain["lyon_store"])
    lyon_patient, main_patient = make_patient(chart_number="CH-L-01"), make_patient(chart_number="CH-M-01")
    make_patient(chart_number="CH-N-01")  # registered, treated nowhere yet: at no site, in every list
    session_at(chain["lyon_site"], main_batch, lyon_patient, practitioner)
    session_at(chain["main_site"], main_batch, main_patient, practitioner)

    def charts(user, query=""):
        response = get(client, user, f"/api/v1/patients{query}")
        assert response.status_code == 200, response.get_json()
        return [item["chart_number"] for item in response.get_json()["items"]]

    assert charts(chain["lyon"]) == ["CH-L-01", "CH-N-01"]
    assert charts(chain["main"], "?q=CH-") == ["CH-M-01", "CH-N-01"]
    assert charts(chain["lyon"], "?q=ch-m-01") == ["CH-M-01"]  # a patient walking in from another site
    assert {"CH-L-01", "CH-M-01"} <= set(charts(chain["auditor"]))
    assert charts(chain["auditor"], f"?site_id={chain['lyon_site'].id}") == ["CH-L-01", "CH-N-01"]
    assert get(client, chain["lyon"], f"/api/v1/patients?site_id={chain['main_site'].id}").status_code == 403
    html = get(client, chain["lyon"], "/treatments/patients").get_data(as_text=True)
    assert "CH-L-01" in html and "CH-M-01" not in html


def test_stock_on_hand_and_the_below_reorder_figure_count_the_stock_in_scope(client, chain):
    ingredient = chain["ingredient"]
    ingredient.reorder_level = 150
    db.session.commit()
    lyon, main = {chain["lyon_site"].id}, {chain["main_site"].id}
    assert db.session.execute(ingredient_row_query(ingredient.id, site_ids=lyon)).one().on_hand == 100
    assert db.session.execute(ingredient_row_query(ingredient.id, site_ids=None)).one().on_hand == 200
    assert db.session.scalar(below_reorder_count_query(site_ids=lyon)) == 1
    assert db.session.scalar(below_reorder_count_query(site_ids=lyon | main)) == 0
    response = get(client, chain["lyon"], f"/api/v1/ingredients/{ingredient.id}")
    assert float(response.get_json()["on_hand"]) == 100
    response = get(client, chain["auditor"], f"/api/v1/ingredients/{ingredient.id}")
    assert float(response.get_json()["on_hand"]) == 200


# --- 6. the compound page proposes the lots of the chosen location's site -----------------------------------


def test_the_compound_page_proposes_the_lots_at_the_chosen_location_s_site(client, chain, make_formula, make_lot):
    formula = make_formula()
    main_lots = [make_lot(component.ingredient, quantity="1000") for component in formula.components]
    lyon_lots = [receive(chain, chain["lyon_site"], component.ingredient, quantity="1000")
                 for component in formula.components]
    sign_in_session(client, chain["both"])  # acts at MAIN unless told
    url = f"/batches/new?formula_id={formula.id}&units=1"
    html = client.get(url).get_data(as_text=True)
    assert all(lot.code in html for lot in main_lots) and not any(lot.code in html for lot in lyon_lots)
    html = client.get(f"{url}&location_id={chain['lyon_store'].id}").get_data(as_text=True)
    assert all(lot.code in html for lot in lyon_lots) and not any(lot.code in html for lot in main_lots)
    # Posting MAIN's lots with a LYON location proposes LYON's again instead of a bare refusal.
    from testkit import csrf_token_from, submission_key_from

    page = client.get(url).get_data(as_text=True)
    form = {"csrf_token": csrf_token_from(page), "submission_key": submission_key_from(page),
            "formula_id": formula.id, "units": 1, "location_id": chain["lyon_store"].id}
    for lot in main_lots:
        form[f"lot-{lot.id}-quantity"] = "1"
        form[f"lot-{lot.id}-scan"] = lot.code
    before = db.session.scalar(sa.select(sa.func.count(Batch.id)))
    response = client.post("/batches/new", data=form)
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert all(lot.code in html for lot in lyon_lots) and "LYON" in html
    assert db.session.scalar(sa.select(sa.func.count(Batch.id))) == before


# --- 7. the "where does it go" select reads every site's locations at once ----------------------------------


def test_choosable_locations_costs_the_same_statements_for_2_sites_and_6(chain):
    def statements() -> tuple[int, int]:
        with QueryCounter(db.engine) as counter:
            offered = site_reads.choosable_locations(None)
        return counter.count, len(offered)

    small, count = statements()
    assert count == 2
    for n in range(4):
        site = sites.create_site(None, f"S{n}X", f"Site {n}")
        sites.create_location(None, site.id, "Fridge", "fridge", parent_id=sites.default_location(site.id).id)
    large, count = statements()
    assert (large, count) == (small, 6)
    offered = dict((site.code, [node.depth for node in tree]) for site, tree in site_reads.choosable_locations(None))
    assert offered["S0X"] == [0, 1]


# --- 8. small holes ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("zone", ["localtime", "posixrules", "Factory", "right/Europe/Paris", "posix/Europe/Paris"])
def test_a_time_zone_is_an_iana_name_only(app, zone):
    with pytest.raises(InvalidInput, match="time zone"):
        sites.create_site(None, "NICE", "Nice", zone)


def test_a_site_code_is_upper_cased_as_the_form_does(client, chain):
    assert sites.create_site(None, " nice ", "Nice").code == "NICE"
    sign_in_session(client, chain["chain"])
    response = client.post("/api/v1/sites", json={"code": "mad-01", "name": "Madrid", "timezone": "Europe/Madrid"})
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["code"] == "MAD-01"


def test_the_cli_upper_cases_a_site_code(runner, app):
    result = runner.invoke(args=["create-site", "bdx", "Bordeaux"])
    assert result.exit_code == 0, result.output
    assert db.session.scalar(sa.select(Site.id).where(Site.code == "BDX")) is not None


def test_an_inactive_parent_is_refused(chain):
    main = chain["main_site"]
    old = sites.create_location(None, main.id, "Old cabinet", "cabinet")
    other = sites.create_location(None, main.id, "Fridge", "fridge")
    sites.deactivate_location(None, old.id, "removed")
    with pytest.raises(InvalidState, match="no longer in use"):
        sites.create_location(None, main.id, "Shelf", "cabinet", parent_id=old.id)
    with pytest.raises(InvalidState, match="no longer in use"):
        sites.update_location(None, other.id, name="Fridge", kind="fridge", parent_id=old.id)


@pytest.mark.parametrize("target", ["/\\evil.com", "//evil.com", "https://evil.com", "/\\/evil.com", "\\evil.com"])
def test_the_switcher_returns_only_to_a_path_of_this_site(client, chain, target):
    from testkit import csrf_token_from

    sign_in_session(client, chain["both"])
    token = csrf_token_from(client.get("/").get_data(as_text=True))
    response = client.post("/site-scope", data={"csrf_token": token, "site_id": chain["lyon_site"].id,
                                                     "next": target})
    assert response.status_code == 302
    assert response.headers["Location"] in ("/", "http://localhost/")


def test_the_switcher_returns_to_a_page_of_this_site(client, chain):
    from testkit import csrf_token_from

    sign_in_session(client, chain["both"])
    token = csrf_token_from(client.get("/").get_data(as_text=True))
    response = client.post("/site-scope", data={"csrf_token": token, "site_id": chain["lyon_site"].id,
                                                     "next": "/lots/?status=released"})
    assert response.headers["Location"].endswith("/lots/?status=released")


def test_setting_the_default_location_locks_the_site_row_first(chain):
    cold = sites.create_location(None, chain["main_site"].id, "Cold room", "fridge")
    db.session.commit()
    with QueryCounter(db.engine) as counter:
        sites.set_default_location(chain["main"], cold.id)
    locking = [s for s in counter.statements if "FOR UPDATE" in s.upper() or "FOR SHARE" in s.upper()]
    if db.engine.dialect.name == "postgresql":
        assert locking and "sites" in locking[0].split("FROM", 1)[1].split()[0]
    assert sites.default_location(chain["main_site"].id).id == cold.id


@pytest.mark.parametrize("path", ["/audit", "/audit/patient-access", "/api/v1/audit-events"])
def test_the_chain_wide_audit_records_are_refused_to_a_pharmacist_of_some_sites(client, make_user, make_token, path):
    add_site("LYON", "LOC-LYON")
    lyon_pharmacist = make_user("pharmacist", username="lyon-pharm", site_codes=["LYON"])
    chain_pharmacist = make_user("pharmacist", username="chain-pharm", site_codes=["MAIN", "LYON"])
    for user, status in ((lyon_pharmacist, 403), (chain_pharmacist, 200), (make_user("auditor"), 200)):
        sign_in_session(client, user)
        headers = {"Authorization": f"Bearer {make_token(user)}"} if path.startswith("/api/") else {}
        assert client.get(path, headers=headers).status_code == status, user.username


def test_labels_records_and_barcodes_of_another_sites_stock_are_not_found(client, make_user, make_token, make_batch):
    batch = make_batch()
    lot_id = db.session.scalar(sa.select(BatchComponent.lot_id).where(BatchComponent.batch_id == batch.id).limit(1))
    add_site("LYON", "LOC-LYON")
    outsider = make_user("pharmacist", username="lyon-pharm", site_codes=["LYON"])
    insider = make_user("pharmacist", username="main-pharm")
    paths = [f"/batches/{batch.id}/label", f"/batches/{batch.id}/record", f"/lots/{lot_id}/label",
             f"/api/v1/batches/{batch.id}/label", f"/api/v1/batches/{batch.id}/barcode.svg",
             f"/api/v1/lots/{lot_id}/barcode.svg"]
    for user, status in ((outsider, 404), (insider, 200)):
        sign_in_session(client, user)
        headers = {"Authorization": f"Bearer {make_token(user)}"}
        for path in paths:
            assert client.get(path, headers=headers if path.startswith("/api/") else {}).status_code == status, (
                user.username, path)
