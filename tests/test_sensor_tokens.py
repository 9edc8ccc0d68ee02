"""A sensor's token: it records readings of its one location and every other API call is refused."""

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa
from sitekit import add_site
from testkit import base_config, bearer, sign_in, submission_key_from

from compounding import create_app
from compounding.extensions import db
from compounding.models import ApiToken, Location, TemperatureReading
from compounding.services import sites, users
from compounding.services.errors import InvalidInput, InvalidState, NotAllowed, NotFound

READINGS = "/api/v1/locations/<int:location_id>/readings"


def _api_routes() -> list[tuple[str, str]]:
    """Every API route and method there is (read from the app, so a new route is tested as soon as it exists)."""
    app = create_app(base_config())
    return sorted((rule.rule, method) for rule in app.url_map.iter_rules() if rule.endpoint.startswith("api.")
                  for method in rule.methods - {"HEAD", "OPTIONS"})


def _fridge(code: str, site_id: int | None = None) -> Location:
    site_id = site_id or sites.main_site().id
    location = Location(site_id=site_id, parent_id=sites.default_location(site_id).id, code=code, name=code.title(),
                        kind="fridge", min_celsius=Decimal("2"), max_celsius=Decimal("8"))
    db.session.add(location)
    db.session.commit()
    return location


@pytest.fixture
def fridge(app):
    return _fridge("FRIDGE1")


@pytest.fixture
def sensor(fridge, technician):
    return users.create_token(None, technician, "fridge 1 probe", scope="readings.record", location_id=fridge.id)


def reading(celsius="5", source="sensor", minutes=2) -> dict:
    moment = datetime.now(UTC) - timedelta(minutes=minutes)
    return {"measured_at": moment.isoformat(), "celsius": celsius, "source": source}


def test_a_sensor_token_records_readings_of_its_location_as_the_sensors(client, fridge, sensor):
    response = client.post(f"/api/v1/locations/{fridge.id}/readings", headers=bearer(sensor), json=reading("5.5"))
    assert response.status_code == 201, response.json
    assert response.json["source"] == "sensor" and response.json["celsius"] == "5.5"
    row = db.session.get(TemperatureReading, response.json["id"])
    token = db.session.scalar(sa.select(ApiToken).where(ApiToken.name == "fridge 1 probe"))
    assert row.token_id == token.id and (token.scope, token.location_id) == ("readings.record", fridge.id)
    manual = client.post(f"/api/v1/locations/{fridge.id}/readings", headers=bearer(sensor),
                         json=reading(source="manual", minutes=1))
    assert manual.status_code == 422 and "sensor" in manual.json["error"]


def test_a_sensor_token_is_refused_at_another_location(client, fridge, sensor):
    other = _fridge("FRIDGE2")
    refused = client.post(f"/api/v1/locations/{other.id}/readings", headers=bearer(sensor), json=reading())
    assert refused.status_code == 403 and "FRIDGE1" in refused.json["error"]
    assert db.session.scalar(sa.select(sa.func.count()).select_from(TemperatureReading)) == 0


@pytest.mark.parametrize(("rule", "method"), [r for r in _api_routes() if r != (READINGS, "POST")])
def test_a_sensor_token_opens_no_other_api_route(client, fridge, sensor, rule, method):
    path = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: str(fridge.id) if m.group(1) == "location_id" else "1", rule)
    response = client.open(path, method=method, headers=bearer(sensor), json={} if method != "GET" else None)
    assert response.status_code == 403, (path, method, response.status_code)
    assert "device's" in response.json["error"]


def test_lots_scan_and_readings_list_are_refused_with_a_clear_message(client, fridge, sensor):
    for path in ("/api/v1/lots", "/api/v1/scan?code=L000001", f"/api/v1/locations/{fridge.id}/readings"):
        refused = client.get(path, headers=bearer(sensor))
        assert refused.status_code == 403
        assert refused.json["error"] == ("The token fridge 1 probe is a device's: it may only readings.record at "
                                         "FRIDGE1, nothing else.")


def test_a_token_scoped_without_a_location_records_at_any_of_its_sites(client, fridge, technician):
    token = users.create_token(None, technician, "roaming probe", scope="readings.record")
    assert client.post(f"/api/v1/locations/{fridge.id}/readings", headers=bearer(token),
                       json=reading()).status_code == 201
    assert client.get("/api/v1/lots", headers=bearer(token)).status_code == 403


def test_a_revoked_sensor_token_is_401(client, fridge, sensor, technician):
    token = db.session.scalar(sa.select(ApiToken).where(ApiToken.name == "fridge 1 probe"))
    users.revoke_token(None, token.id, owner=technician)
    response = client.post(f"/api/v1/locations/{fridge.id}/readings", headers=bearer(sensor), json=reading())
    assert response.status_code == 401


def test_a_sensor_token_gives_no_more_than_its_user_has(fridge, make_user, technician):
    with pytest.raises(InvalidInput):
        users.create_token(None, technician, "x", scope="everything")
    with pytest.raises(NotAllowed):
        users.create_token(None, make_user("auditor"), "x", scope="readings.record")
    with pytest.raises(InvalidInput):
        users.create_token(None, technician, "x", location_id=fridge.id)
    with pytest.raises(NotFound):
        users.create_token(None, technician, "x", scope="readings.record", location_id=999999)
    with pytest.raises(InvalidState):
        users.create_token(None, technician, "x", scope="readings.record",
                           location_id=sites.default_location(sites.main_site().id).id)
    lyon_fridge = _fridge("LYONFRIDGE", add_site("LYON").id)
    with pytest.raises(NotAllowed):
        users.create_token(None, technician, "x", scope="readings.record", location_id=lyon_fridge.id)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ApiToken)) == 0


def test_the_command_line_prints_a_working_sensor_token(app, client, runner, fridge, technician):
    result = runner.invoke(args=["sensor-token", "--location", "fridge1", "--user", technician.username,
                                 "--name", "cli probe", "--days", "30"])
    assert result.exit_code == 0, result.output
    token = result.output.strip()
    assert token.startswith("ct_")
    assert client.post(f"/api/v1/locations/{fridge.id}/readings", headers=bearer(token),
                       json=reading()).status_code == 201
    assert client.get("/api/v1/lots", headers=bearer(token)).status_code == 403
    unknown = runner.invoke(args=["sensor-token", "--location", "NOPE", "--user", technician.username,
                                  "--name", "x"])
    assert unknown.exit_code != 0 and "no location" in unknown.output
    shelf = sites.default_location(sites.main_site().id).code
    no_range = runner.invoke(args=["sensor-token", "--location", shelf, "--user", technician.username,
                                   "--name", "x"])
    assert no_range.exit_code != 0 and "no allowed temperature range" in no_range.output


def test_the_page_shows_a_new_sensor_token_once_and_revokes_it(client, fridge, pharmacist):
    sign_in(client, pharmacist)
    path = f"/cold-chain/locations/{fridge.id}/sensor-token"
    page = client.get(path)
    assert page.status_code == 200 and "No API tokens." in page.get_data(as_text=True)
    created = client.post(path, data={"name": "door probe", "days": "365",
                                      "submission_key": submission_key_from(page.get_data(as_text=True))})
    html = created.get_data(as_text=True)
    assert created.status_code == 200
    token = re.search(r'id="new-token">(ct_[^<]+)<', html).group(1)
    assert client.post(f"/api/v1/locations/{fridge.id}/readings", headers=bearer(token),
                       json=reading()).status_code == 201
    again = client.get(path).get_data(as_text=True)
    assert token not in again and "door probe" in again
    row = db.session.scalar(sa.select(ApiToken).where(ApiToken.name == "door probe"))
    revoked = client.post(f"{path}/{row.id}/revoke", data={"submission_key": submission_key_from(again)})
    assert revoked.status_code == 302
    assert client.post(f"/api/v1/locations/{fridge.id}/readings", headers=bearer(token),
                       json=reading(minutes=1)).status_code == 401
    assert "No API tokens." in client.get(path).get_data(as_text=True)


def test_the_page_refuses_bad_input_and_those_who_do_not_manage_the_site(app, client, fridge, make_user):
    sign_in(client, make_user("pharmacist"))
    path = f"/cold-chain/locations/{fridge.id}/sensor-token"
    blank = client.post(path, data={"name": "", "submission_key": submission_key_from(client.get(path).get_data(
        as_text=True))})
    assert blank.status_code == 422
    shelf = sites.default_location(sites.main_site().id)
    no_range_path = f"/cold-chain/locations/{shelf.id}/sensor-token"
    no_range = client.post(no_range_path, data={"name": "probe", "submission_key": submission_key_from(
        client.get(no_range_path).get_data(as_text=True))})
    assert no_range.status_code == 422 and "no allowed temperature range" in no_range.get_data(as_text=True)
    assert client.get("/cold-chain/locations/999999/sensor-token").status_code == 404
    technician = app.test_client()
    sign_in(technician, make_user("technician"))
    assert technician.get(path).status_code == 403
    add_site("LYON")
    elsewhere = app.test_client()
    sign_in(elsewhere, make_user("pharmacist", site_codes=["LYON"]))
    assert elsewhere.get(path).status_code == 403
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ApiToken)) == 0
