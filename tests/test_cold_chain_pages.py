"""Cold chain pages: the overview, the reading page by the fridge, a location's log, the dashboard's panels."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa
from sitekit import add_site
from testkit import QueryCounter, count_rows, sign_in

from compounding.extensions import db
from compounding.models import Excursion, Location, Lot, TemperatureReading
from compounding.services import cold_chain, sites, transfers


@pytest.fixture
def fridge(app):
    """Fridge 1 (2-8 °C) at MAIN, read twice a day."""
    location = sites.create_location(None, sites.main_site().id, "Fridge 1", "fridge", min_celsius="2",
                                     max_celsius="8")
    return location


@pytest.fixture
def lyon_fridge(app):
    """A fridge at another site, LYON."""
    lyon = add_site("LYON")
    return sites.create_location(None, lyon.id, "Lyon fridge", "fridge", min_celsius="2", max_celsius="8")


def read(actor, location, celsius, ago=timedelta(minutes=5)):
    return cold_chain.record_reading(actor, location.id, measured_at=(datetime.now(UTC) - ago).isoformat(),
                                     celsius=celsius)


# --- who sees what --------------------------------------------------------------------------------------

@pytest.mark.parametrize("role", ["pharmacist", "technician", "practitioner", "auditor", "admin"])
def test_every_role_reads_the_overview_and_the_log_and_only_recorders_get_the_form(client, make_user, fridge, role):
    sign_in(client, make_user(role))
    overview = client.get("/cold-chain")
    assert overview.status_code == 200 and "LOC" in overview.get_data(as_text=True)
    assert "Fridge 1" in overview.get_data(as_text=True)
    assert client.get(f"/cold-chain/locations/{fridge.id}").status_code == 200
    form = client.get(f"/cold-chain/locations/{fridge.id}/read")
    recorder = role in ("pharmacist", "technician", "practitioner")
    assert form.status_code == (200 if recorder else 403)
    assert ("Record a reading" in overview.get_data(as_text=True)) is recorder
    assert ('href="/cold-chain"' in client.get("/").get_data(as_text=True))


def test_a_location_of_another_site_is_not_found_and_not_listed(client, make_user, fridge, lyon_fridge):
    sign_in(client, make_user("technician"))  # works at MAIN only
    assert "Lyon fridge" not in client.get("/cold-chain").get_data(as_text=True)
    assert client.get(f"/cold-chain/locations/{lyon_fridge.id}").status_code == 404
    assert client.get(f"/cold-chain/locations/{lyon_fridge.id}/read").status_code == 404
    scanned = client.get(f"/cold-chain/read?code={lyon_fridge.code}")
    assert scanned.status_code == 404 and f"no location {lyon_fridge.code}" in scanned.get_data(as_text=True)
    posted = client.post(f"/cold-chain/locations/{lyon_fridge.id}/read", data={"celsius": "4"})
    assert posted.status_code == 404 and count_rows(TemperatureReading) == 0


def test_an_auditor_sees_every_site_but_records_nothing(client, make_user, fridge, lyon_fridge):
    sign_in(client, make_user("auditor"))
    page = client.get("/cold-chain").get_data(as_text=True)
    assert "Lyon fridge" in page and "Fridge 1" in page
    assert client.post(f"/cold-chain/locations/{fridge.id}/read", data={"celsius": "4"}).status_code == 403
    assert count_rows(TemperatureReading) == 0


# --- the reading page -----------------------------------------------------------------------------------

def test_scanning_the_fridge_label_opens_its_form_with_now_on_the_sites_clock(client, technician, fridge):
    sign_in(client, technician)
    scanned = client.get(f"/cold-chain/read?code={fridge.code.lower()}%0D")
    assert scanned.status_code == 302 and scanned.location.endswith(f"/cold-chain/locations/{fridge.id}/read")
    page = client.get(scanned.location).get_data(as_text=True)
    assert "Fridge 1" in page and "2 to 8 °C" in page and 'name="submission_key"' in page
    today = datetime.now(UTC).astimezone(sites_zone()).strftime("%Y-%m-%dT")
    assert f'value="{today}' in page


def test_a_reading_in_range_is_recorded_once_and_shown_green(client, technician, fridge):
    sign_in(client, technician)
    answer = client.post(f"/cold-chain/locations/{fridge.id}/read",
                         data={"celsius": "4,5", "min_celsius": "3.1", "max_celsius": "6", "note": "door shut"})
    assert answer.status_code == 302
    shown = client.get(answer.location).get_data(as_text=True)
    assert "In range" in shown and "4.5 °C" in shown and "Next reading" in shown
    reading = db.session.scalar(sa.select(TemperatureReading))
    assert (reading.celsius, reading.min_celsius, reading.max_celsius, reading.source, reading.recorded_by_id) == (
        Decimal("4.5"), Decimal("3.1"), Decimal("6"), "manual", technician.id)
    assert reading.note == "door shut"


def test_the_typed_time_is_read_on_the_sites_clock(client, technician, lyon_fridge):
    """LYON is in Europe/Paris; the test clinic is in Europe/London: 08:00 typed is 08:00 in Lyon."""
    lyon_tech = technician
    sites.set_user_sites(None, lyon_tech.id, [sites.main_site().id, lyon_fridge.site_id], all_sites=False)
    db.session.commit()
    sign_in(client, lyon_tech)
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date()
    answer = client.post(f"/cold-chain/locations/{lyon_fridge.id}/read",
                         data={"celsius": "5", "measured_at": f"{yesterday.isoformat()}T08:00"})
    assert answer.status_code == 302
    reading = db.session.scalar(sa.select(TemperatureReading))
    from zoneinfo import ZoneInfo
    expected = datetime.combine(yesterday, datetime.min.time().replace(hour=8), tzinfo=ZoneInfo("Europe/Paris"))
    assert reading.measured_at == expected.astimezone(UTC)
    assert reading.utc_offset_minutes in (60, 120)


def test_an_out_of_range_reading_says_which_excursion_opened_and_how_much_is_held(client, technician, fridge,
                                                                                make_lot, pharmacist):
    lot = make_lot()
    transfers.move_within_site(pharmacist, "lot", lot.id, fridge.id)
    db.session.commit()
    sign_in(client, technician)
    answer = client.post(f"/cold-chain/locations/{fridge.id}/read", data={"celsius": "11"})
    assert answer.status_code == 302
    shown = client.get(answer.location).get_data(as_text=True)
    excursion = db.session.scalar(sa.select(Excursion))
    assert f"OUT OF RANGE: excursion {excursion.code} opened, 1 item on hold" in shown
    assert db.session.get(Lot, lot.id).status == "on_hold"
    overview = client.get("/cold-chain").get_data(as_text=True)
    assert "OUT" in overview and excursion.code in overview
    log = client.get(f"/cold-chain/locations/{fridge.id}").get_data(as_text=True)
    assert 'id="open-excursion"' in log and excursion.code in log


@pytest.mark.parametrize(("data", "message"), [
    ({"celsius": ""}, "Type the temperature shown now."),
    ({"celsius": "four"}, "Degrees Celsius as the thermometer shows them"),
    ({"celsius": "1.234,5"}, "Degrees Celsius as the thermometer shows them"),
    ({"celsius": "-95"}, "not a plausible storage temperature"),
    ({"celsius": "5", "min_celsius": "6"}, "cannot be above the current temperature"),
    ({"celsius": "5", "measured_at": "2099-01-01T08:00"}, "in the future"),
    # Europe/London's clocks went forward at 01:00 and back at 02:00 on these days.
    ({"celsius": "5", "measured_at": "2026-03-29T01:30"}, "the clocks went forward"),
    ({"celsius": "5", "measured_at": "2026-10-25T01:30"}, "the clocks went back"),
])
def test_bad_input_is_refused_on_the_form_and_changes_nothing(client, technician, fridge, data, message):
    sign_in(client, technician)
    answer = client.post(f"/cold-chain/locations/{fridge.id}/read", data=data)
    assert answer.status_code == 422
    assert message in answer.get_data(as_text=True)
    assert count_rows(TemperatureReading) == 0 and count_rows(Excursion) == 0


def test_the_same_moment_twice_is_refused_as_a_duplicate(client, technician, fridge):
    sign_in(client, technician)
    moment = (datetime.now(UTC) - timedelta(hours=1)).astimezone(sites_zone()).strftime("%Y-%m-%dT%H:%M")
    assert client.post(f"/cold-chain/locations/{fridge.id}/read",
                       data={"celsius": "5", "measured_at": moment}).status_code == 302
    again = client.post(f"/cold-chain/locations/{fridge.id}/read", data={"celsius": "6", "measured_at": moment})
    assert again.status_code == 409 and "already has a manual reading" in again.get_data(as_text=True)
    assert count_rows(TemperatureReading) == 1


def test_a_location_without_a_range_offers_no_form(client, technician):
    store = sites.default_location(sites.main_site().id)
    sign_in(client, technician)
    page = client.get(f"/cold-chain/locations/{store.id}/read")
    assert page.status_code == 200 and "no allowed temperature range" in page.get_data(as_text=True)
    assert 'id="reading-form"' not in page.get_data(as_text=True)
    refused = client.post(f"/cold-chain/locations/{store.id}/read", data={"celsius": "20"})
    assert refused.status_code == 409 and count_rows(TemperatureReading) == 0


def sites_zone():
    from zoneinfo import ZoneInfo
    return ZoneInfo(sites.main_site().timezone)


# --- the log, the overview's states, the dashboard ------------------------------------------------------

def test_the_log_lists_readings_newest_first_with_who_and_the_state(client, technician, fridge):
    read(technician, fridge, "3", ago=timedelta(hours=5))
    read(technician, fridge, "7.25", ago=timedelta(hours=1))
    sign_in(client, technician)
    page = client.get(f"/cold-chain/locations/{fridge.id}").get_data(as_text=True)
    assert page.index("7.25") < page.index(">3<") and technician.display_name in page
    assert "2 readings a day" in page


def test_a_missed_reading_shows_red_on_the_overview_and_the_dashboard(client, technician, pharmacist, fridge):
    read(technician, fridge, "4", ago=timedelta(hours=20))  # twice a day: overdue after 18 h
    other = sites.create_location(None, sites.main_site().id, "Fridge 2", "fridge", min_celsius="2",
                                  max_celsius="8")
    read(technician, other, "4")
    for user in (technician, pharmacist):
        sign_in(client, user)
        overview = client.get("/cold-chain").get_data(as_text=True)
        assert "MISSED" in overview and "no reading since" in overview
        dashboard = client.get("/").get_data(as_text=True)
        assert 'id="missed-readings"' in dashboard and "Missed readings (1)" in dashboard
        assert fridge.code in dashboard and 'id="open-excursions"' not in dashboard
        client.post("/logout")


def test_the_dashboard_lists_open_excursions_of_the_viewers_sites_only(client, make_user, technician, fridge,
                                                                      lyon_fridge):
    read(technician, fridge, "12")
    lyon_doc = make_user("practitioner", site_codes=["LYON"])
    read(lyon_doc, lyon_fridge, "13")
    sign_in(client, technician)
    dashboard = client.get("/").get_data(as_text=True)
    excursions = db.session.scalars(sa.select(Excursion).order_by(Excursion.id)).all()
    assert 'id="open-excursions"' in dashboard and "Open excursions (1)" in dashboard
    assert excursions[0].code in dashboard and excursions[1].code not in dashboard


def test_the_reading_schedule_is_edited_on_the_location_form_from_1_to_96(client, technician, make_user, fridge):
    read(technician, fridge, "4", ago=timedelta(hours=3))
    sign_in(client, make_user("admin"))
    answer = client.post(f"/locations/{fridge.id}/edit", data={
        "name": "Fridge 1", "kind": "fridge", "parent_id": "0", "min_celsius": "2", "max_celsius": "8",
        "readings_per_day": "24"})
    assert answer.status_code == 302
    assert db.session.get(Location, fridge.id).readings_per_day == 24
    refused = client.post(f"/locations/{fridge.id}/edit", data={
        "name": "Fridge 1", "kind": "fridge", "parent_id": "0", "min_celsius": "2", "max_celsius": "8",
        "readings_per_day": "97"})
    assert refused.status_code == 422 and "from 1 to 96" in refused.get_data(as_text=True)
    assert db.session.get(Location, fridge.id).readings_per_day == 24
    assert [m.location.id for m in cold_chain.missed_readings(None)] == [fridge.id]


# --- query budgets --------------------------------------------------------------------------------------

def test_the_overview_and_the_log_cost_the_same_few_queries_however_many_rows(client, technician, app):
    main = sites.main_site().id

    def fill(n_locations, n_readings):
        start = count_rows(Location)
        for i in range(n_locations):
            location = sites.create_location(None, main, f"Fridge {start + i}", "fridge", min_celsius="2",
                                             max_celsius="8")
            for hours in range(n_readings):
                read(technician, location, "4", ago=timedelta(hours=hours + 1))
        return location

    sign_in(client, technician)
    first = fill(1, 2)
    client.get("/cold-chain")
    client.get(f"/cold-chain/locations/{first.id}")
    with QueryCounter(db.engine) as few:
        assert client.get("/cold-chain").status_code == 200
    with QueryCounter(db.engine) as few_log:
        assert client.get(f"/cold-chain/locations/{first.id}").status_code == 200
    many = fill(6, 8)
    with QueryCounter(db.engine) as more:
        assert client.get("/cold-chain").status_code == 200
    with QueryCounter(db.engine) as more_log:
        assert client.get(f"/cold-chain/locations/{many.id}").status_code == 200
    assert more.count == few.count <= 8, more.statements
    assert more_log.count == few_log.count <= 10, more_log.statements


def test_the_demo_fridges_have_twice_daily_readings_in_range_and_nothing_missed(client, app):
    from compounding.demo import seed_demo

    for _ in range(2):  # idempotent
        for _ in seed_demo():
            pass
    fridges = {code: location_id for code, location_id in db.session.execute(
        sa.select(Location.name, Location.id).where(Location.name.in_(["Fridge 1", "Fridge A"])))}
    assert set(fridges) == {"Fridge 1", "Fridge A"}
    for location_id in fridges.values():
        readings = db.session.scalars(sa.select(TemperatureReading).where(
            TemperatureReading.location_id == location_id)).all()
        assert len(readings) == 6 and all(r.in_range and r.source == "manual" for r in readings)
    assert count_rows(Excursion) == 0 and cold_chain.missed_readings(None) == []


def test_the_api_takes_a_reading_schedule_from_1_to_96_and_answers_it(client, auth):
    headers = auth("pharmacist")
    body = {"site_id": sites.main_site().id, "name": "Freezer", "kind": "freezer", "min_celsius": "-25",
            "max_celsius": "-15"}
    plain = client.post("/api/v1/locations", headers=headers, json=body)
    assert plain.status_code == 201 and plain.json["readings_per_day"] == 2
    refused = client.post("/api/v1/locations", headers=headers, json={**body, "name": "F2", "readings_per_day": 97})
    assert refused.status_code == 422 and count_rows(Location) == 2
    hourly = client.post("/api/v1/locations", headers=headers, json={**body, "name": "F3", "readings_per_day": 24})
    assert hourly.status_code == 201 and hourly.json["readings_per_day"] == 24
