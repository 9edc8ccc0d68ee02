"""Two requests with one Idempotency-Key at the same time, against a real threaded server on loopback.

The first request is held inside the service until the second has been answered: the
second gets 409 (the key is in flight), then the first completes and a third gets its
answer replayed. Runs on a SQLite file or on the PostgreSQL test database.
"""

import http.client
import json
import threading

import pytest
from testkit import TEST_DATABASE_URL, bearer, count_rows
from werkzeug.serving import make_server

from compounding import idempotency
from compounding.extensions import db
from compounding.models import TreatmentSession
from compounding.services import treatments, users


@pytest.fixture
def config_overrides(tmp_path):
    """A database every server thread can open (SQLite in memory is one connection), any Host."""
    url = TEST_DATABASE_URL if TEST_DATABASE_URL.startswith("postgresql") else f"sqlite:///{tmp_path / 'keys.db'}"
    return {"SQLALCHEMY_DATABASE_URI": url, "SERVER_NAME": None}


@pytest.fixture
def port(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_port
    server.shutdown()
    thread.join(10)


def post(port: int, path: str, body: dict, headers: dict) -> tuple[int, dict, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("POST", path, json.dumps(body), {"Content-Type": "application/json", **headers})
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"{}"), dict(response.getheaders())
    finally:
        connection.close()


@pytest.fixture
def held_service(monkeypatch):
    """record_session waits, outside any transaction, until the test lets it go."""
    entered, go_on = threading.Event(), threading.Event()
    real = treatments.record_session

    def held(*args, **kwargs):
        db.session.rollback()  # hold no database lock while waiting: a slow request, not a stuck one
        entered.set()
        assert go_on.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(treatments, "record_session", held)
    return entered, go_on


def test_a_second_request_while_the_first_is_in_flight_gets_409_and_the_first_one_counts(
        app, port, make_user, make_patient, make_batch, held_service):
    entered, go_on = held_service
    practitioner = make_user("practitioner")
    headers = {**bearer(users.create_token(None, practitioner, "test")), idempotency.HEADER: "race-key-0001"}
    data = {"patient_id": make_patient().id, "uses": [{"batch_code": make_batch().code, "volume_ml": "1"}]}
    db.session.commit()
    answers = {}
    first = threading.Thread(target=lambda: answers.setdefault(
        "first", post(port, "/api/v1/treatment-sessions", data, headers)))
    first.start()
    try:
        assert entered.wait(30), "the first request never reached the service"
        answers["second"] = post(port, "/api/v1/treatment-sessions", data, headers)
    finally:
        go_on.set()
        first.join(60)

    status, answer, response_headers = answers["second"]
    assert status == 409 and "still being processed" in answer["error"]
    assert response_headers["Retry-After"] == "1"
    assert answers["first"][0] == 201
    status, answer, response_headers = post(port, "/api/v1/treatment-sessions", data, headers)
    assert (status, answer) == answers["first"][:2]
    assert response_headers[idempotency.REPLAYED_HEADER] == "true"
    db.session.rollback()
    assert count_rows(TreatmentSession) == 1
