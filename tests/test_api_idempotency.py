"""The API's `Idempotency-Key` header: one POST counts once per key, per user, for 24 hours."""

from datetime import timedelta

import pytest
import sqlalchemy as sa
from testkit import PASSWORD, bearer, count_rows

from compounding import idempotency
from compounding.api import treatments as treatments_api
from compounding.extensions import db
from compounding.models import AuditEvent, IdempotencyKey, TreatmentSession
from compounding.models._common import utcnow
from compounding.services import treatments, users

URL = "/api/v1/treatment-sessions"


@pytest.fixture
def practitioner(make_user):
    return make_user("practitioner")


@pytest.fixture
def token(practitioner):
    return users.create_token(None, practitioner, "test")


def keyed(token: str, key: str) -> dict:
    return {**bearer(token), idempotency.HEADER: key}


def body(patient, batch, volume="1") -> dict:
    return {"patient_id": patient.id, "uses": [{"batch_code": batch.code, "volume_ml": volume, "area": "chin"}]}


def key_rows() -> list[IdempotencyKey]:
    db.session.expire_all()
    return list(db.session.scalars(sa.select(IdempotencyKey)))


def test_the_same_session_posted_twice_with_one_key_is_recorded_once_and_answered_alike(
        client, token, make_patient, make_batch):
    data = body(make_patient(), make_batch())
    first = client.post(URL, json=data, headers=keyed(token, "visit-2026-12-06-0001"))
    audit_count = count_rows(AuditEvent)
    again = client.post(URL, json=data, headers=keyed(token, "visit-2026-12-06-0001"))

    assert first.status_code == 201
    assert count_rows(TreatmentSession) == 1
    assert count_rows(AuditEvent) == audit_count  # the service did not run again
    assert again.status_code == 201 and again.json == first.json
    assert again.headers[idempotency.REPLAYED_HEADER] == "true"
    assert idempotency.REPLAYED_HEADER not in first.headers


def test_the_same_key_with_another_body_is_refused_with_422_and_records_nothing_more(
        client, token, make_patient, make_batch):
    patient, batch = make_patient(), make_batch()
    assert client.post(URL, json=body(patient, batch), headers=keyed(token, "key-0000001")).status_code == 201
    response = client.post(URL, json=body(patient, batch, "2"), headers=keyed(token, "key-0000001"))
    assert response.status_code == 422
    assert response.json["details"] == {"Idempotency-Key": ["Use a new key for a new request."]}
    assert count_rows(TreatmentSession) == 1


def test_key_order_and_spacing_do_not_make_another_body(client, token, make_patient, make_batch):
    patient, batch = make_patient(), make_batch()
    first = client.post(URL, json=body(patient, batch), headers=keyed(token, "key-0000002"))
    uses = f'[{{"volume_ml": "1", "area": "chin", "batch_code": "{batch.code}"}}]'
    reordered = f'{{ "uses": {uses},\n "patient_id": {patient.id} }}'
    again = client.post(URL, data=reordered, content_type="application/json", headers=keyed(token, "key-0000002"))
    assert again.status_code == 201 and again.json == first.json
    assert count_rows(TreatmentSession) == 1


def test_a_refused_request_gives_its_key_back_for_the_corrected_one(client, token, make_patient, make_batch):
    patient, batch = make_patient(), make_batch()
    too_much = client.post(URL, json=body(patient, batch, "500"), headers=keyed(token, "key-0000003"))
    assert too_much.status_code == 409
    invalid = client.post(URL, json={"patient_id": patient.id}, headers=keyed(token, "key-0000003"))
    assert invalid.status_code == 422 and "uses" in invalid.json["details"]
    assert key_rows() == []
    corrected = client.post(URL, json=body(patient, batch), headers=keyed(token, "key-0000003"))
    assert corrected.status_code == 201
    assert count_rows(TreatmentSession) == 1


def test_a_caller_without_the_role_does_not_spend_the_key(client, make_user, make_patient, make_batch):
    technician_token = users.create_token(None, make_user("technician"), "test")
    response = client.post(URL, json=body(make_patient(), make_batch()), headers=keyed(technician_token, "key-0000004"))
    assert response.status_code == 403
    assert key_rows() == []


def test_keys_belong_to_one_user(client, token, make_user, make_patient, make_batch):
    patient, batch = make_patient(), make_batch()
    other = users.create_token(None, make_user("practitioner"), "test")
    assert client.post(URL, json=body(patient, batch), headers=keyed(token, "shared-key-01")).status_code == 201
    response = client.post(URL, json=body(patient, batch), headers=keyed(other, "shared-key-01"))
    assert response.status_code == 201 and idempotency.REPLAYED_HEADER not in response.headers
    assert count_rows(TreatmentSession) == 2


def test_a_key_older_than_24_hours_is_forgotten(client, token, make_patient, make_batch):
    patient, batch = make_patient(), make_batch()
    assert client.post(URL, json=body(patient, batch), headers=keyed(token, "key-0000005")).status_code == 201
    db.session.execute(sa.update(IdempotencyKey).values(created_at=utcnow() - timedelta(hours=24, minutes=1)))
    db.session.commit()
    response = client.post(URL, json=body(patient, batch, "2"), headers=keyed(token, "key-0000005"))
    assert response.status_code == 201 and idempotency.REPLAYED_HEADER not in response.headers
    assert count_rows(TreatmentSession) == 2
    assert len(key_rows()) == 1


@pytest.mark.parametrize("key", ["", "short", "x" * 101, "has space 123", "naïve-key-123", "semi;colon;key"])
def test_a_malformed_key_is_refused_with_422_before_anything_runs(client, token, make_patient, make_batch, key):
    response = client.post(URL, json=body(make_patient(), make_batch()), headers=keyed(token, key))
    assert response.status_code == 422
    assert list(response.json["details"]) == ["Idempotency-Key"]
    assert count_rows(TreatmentSession) == 0 and key_rows() == []


def test_a_key_in_flight_answers_409_and_runs_nothing(app, client, token, practitioner, make_patient, make_batch):
    data = body(make_patient(), make_batch())
    # Hold the key as the first request would while it runs (a request of the same body).
    with app.test_request_context(URL, method="POST", json=data):
        row_id, first = idempotency.claim(practitioner.id, "key-in-flight", idempotency.request_fingerprint())
    assert row_id is not None and first is None
    response = client.post(URL, json=data, headers=keyed(token, "key-in-flight"))
    assert response.status_code == 409 and response.headers["Retry-After"] == "1"
    assert "still being processed" in response.json["error"]
    assert count_rows(TreatmentSession) == 0


def test_a_request_that_died_in_flight_is_taken_over_after_its_lease(
        app, client, token, practitioner, make_patient, make_batch):
    data = body(make_patient(), make_batch())
    with app.test_request_context(URL, method="POST", json=data):
        idempotency.claim(practitioner.id, "key-orphaned", idempotency.request_fingerprint())
    db.session.execute(sa.update(IdempotencyKey).values(created_at=utcnow() - idempotency.LEASE - timedelta(seconds=1)))
    db.session.commit()
    response = client.post(URL, json=data, headers=keyed(token, "key-orphaned"))
    assert response.status_code == 201
    assert [row.state for row in key_rows()] == ["done"]


@pytest.mark.parametrize("config_overrides", [{}, {"TESTING": False}], indirect=True)
def test_a_server_error_before_saving_leaves_the_key_free(client, token, make_patient, make_batch, monkeypatch,
                                                          config_overrides):
    data = body(make_patient(), make_batch())

    def broken(*args, **kwargs):
        raise RuntimeError("the service fell over")

    with monkeypatch.context() as patch:
        patch.setattr(treatments, "record_session", broken)
        if config_overrides.get("TESTING") is False:
            assert client.post(URL, json=data, headers=keyed(token, "key-0000006")).status_code == 500
        else:
            with pytest.raises(RuntimeError):
                client.post(URL, json=data, headers=keyed(token, "key-0000006"))
    assert key_rows() == []
    response = client.post(URL, json=data, headers=keyed(token, "key-0000006"))
    assert response.status_code == 201
    assert count_rows(TreatmentSession) == 1


def test_a_change_saved_before_a_server_error_still_counts_once(client, token, make_patient, make_batch,
                                                                 monkeypatch):
    data = body(make_patient(), make_batch())

    def answer_lost(session_id, status=200):
        raise RuntimeError("the answer could not be built")

    with monkeypatch.context() as patch:
        patch.setattr(treatments_api, "_session_answer", answer_lost)
        with pytest.raises(RuntimeError):
            client.post(URL, json=data, headers=keyed(token, "key-0000007"))
    again = client.post(URL, json=data, headers=keyed(token, "key-0000007"))
    assert count_rows(TreatmentSession) == 1
    assert again.status_code == 500 and again.headers[idempotency.REPLAYED_HEADER] == "true"
    assert "was saved" in again.json["error"]


def test_only_a_hash_of_the_body_is_kept_never_the_password(client, make_user, make_lot):
    pharmacist = make_user("pharmacist")
    lot = make_lot(release=False)
    response = client.post(f"/api/v1/lots/{lot.id}/release", json={"password": PASSWORD, "reason": "Requested"},
                           headers=keyed(users.create_token(None, pharmacist, "test"), "release-key-1"))
    assert response.status_code == 200
    [row] = key_rows()
    stored = " ".join(str(getattr(row, column.key)) for column in IdempotencyKey.__table__.columns)
    assert PASSWORD not in stored
    assert len(row.request_hash) == 64 and int(row.request_hash, 16) >= 0
    assert row.response_status == 200 and row.response_body == response.get_data(as_text=True)


def test_a_post_without_the_header_is_left_as_it_was(client, token, make_patient, make_batch):
    data = body(make_patient(), make_batch())
    assert client.post(URL, json=data, headers=bearer(token)).status_code == 201
    assert client.post(URL, json=data, headers=bearer(token)).status_code == 201
    assert count_rows(TreatmentSession) == 2 and key_rows() == []


def test_the_openapi_document_offers_the_header_on_every_post(client):
    paths = client.get("/api/v1/openapi.json").json["paths"]
    posts = [operation for operations in paths.values() for method, operation in operations.items()
             if method == "post"]
    assert len(posts) > 10
    for operation in posts:
        [header] = [p for p in operation["parameters"] if p["in"] == "header"]
        assert header["name"] == "Idempotency-Key" and header["required"] is False
        assert header["schema"]["maxLength"] == 100
        assert {"409", "422"} <= set(operation["responses"])
