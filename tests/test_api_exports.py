"""The export jobs API: ask, follow, download, list; 403, 404, 409 and 410 as documented."""

import io
from datetime import timedelta
from pathlib import Path

import pytest
from jobkit import drain
from openpyxl import load_workbook

from compounding.extensions import db
from compounding.models import ExportJob
from compounding.services import export_jobs


@pytest.fixture
def tech(make_user, auth):
    user = make_user("technician")
    return user, auth(user)


def test_a_job_is_asked_followed_and_downloaded(app, client, make_lot, tech):
    user, headers = tech
    make_lot()
    asked = client.post("/api/v1/exports", json={"kind": "lots", "filters": {"q": "SL"}}, headers=headers)
    assert asked.status_code == 202, asked.get_json()
    body = asked.get_json()
    assert body["kind"] == "lots" and body["status"] == "queued"
    assert body["progress"] == {"rows_written": 0, "rows_expected": None}  # counted by the worker
    assert body["params"]["filters"] == {"q": "SL"} and body["requested_at"]
    assert "download_url" not in body and "error" not in body
    again = client.post("/api/v1/exports", json={"filters": {"q": "SL"}, "kind": "lots"}, headers=headers)
    assert again.status_code == 200 and again.get_json()["id"] == body["id"]
    early = client.get(f"/api/v1/exports/{body['id']}/download", headers=headers)
    assert early.status_code == 409 and "still queued" in early.get_json()["error"]
    drain(app)
    done = client.get(body["url"], headers=headers).get_json()
    assert done["status"] == "done" and done["progress"] == {"rows_written": 1, "rows_expected": 1}
    assert done["download_url"] == f"/api/v1/exports/{body['id']}/download" and done["expires_at"]
    response = client.get(done["download_url"], headers=headers)
    assert response.status_code == 200 and response.headers["Cache-Control"] == "private, no-store"
    assert response.headers["Content-Disposition"].startswith('attachment; filename="lots-')
    assert len(list(load_workbook(io.BytesIO(response.get_data()))["Lots"].iter_rows(min_row=2))) == 1
    response.close()


def test_the_list_holds_the_caller_s_jobs_newest_first_by_page(client, tech, auth):
    user, headers = tech
    ids = [client.post("/api/v1/exports", json={"kind": "batches", "filters": {"q": q}}, headers=headers)
           .get_json()["id"] for q in ("a", "b", "c")]
    client.post("/api/v1/exports", json={"kind": "batches"}, headers=auth("technician"))
    listed = client.get("/api/v1/exports?per_page=2", headers=headers).get_json()
    assert [item["id"] for item in listed["items"]] == ids[::-1][:2]
    assert (listed["total"], listed["page"], listed["per_page"]) == (3, 1, 2)
    assert [i["id"] for i in client.get("/api/v1/exports?per_page=2&page=2", headers=headers).get_json()["items"]] \
        == ids[:1]


@pytest.mark.parametrize(("who", "body", "status", "message"), [
    ("technician", {"kind": "audit", "start": "2026-01-01", "end": "2026-01-31"}, 403, "You may not export this."),
    ("admin", {"kind": "trace", "target_kind": "lot", "target_id": 1}, 403, "You may not export this."),
    ("pharmacist", {"kind": "audit", "start": "2026-01-01"}, 422, "Give `end`"),
    ("pharmacist", {"kind": "audit", "start": "2026-02-01", "end": "2026-01-01"}, 422, "The last day is before"),
    ("pharmacist", {"kind": "trace", "target_id": 1}, 422, "Give `target_kind`"),
    ("pharmacist", {"kind": "trace", "target_kind": "batch", "target_id": 999}, 404, None),
    ("pharmacist", {"kind": "recall", "target_id": 999}, 404, "There is no such recall."),
    ("pharmacist", {"kind": "receipts"}, 422, None),
    ("pharmacist", {"kind": "lots", "site_ids": [1]}, 422, None),
])
def test_a_refused_request_makes_no_job(client, auth, who, body, status, message):
    response = client.post("/api/v1/exports", json=body, headers=auth(who))
    assert response.status_code == status, response.get_json()
    if message:
        assert message in response.get_json()["error"]
    assert db.session.scalar(db.select(db.func.count(ExportJob.id))) == 0


def test_another_s_job_is_not_found_and_a_lost_permission_is_refused(app, client, tech, auth, make_user):
    user, headers = tech
    job_id = client.post("/api/v1/exports", json={"kind": "lots"}, headers=headers).get_json()["id"]
    other = auth("technician")
    assert client.get(f"/api/v1/exports/{job_id}", headers=other).status_code == 404
    assert client.get(f"/api/v1/exports/{job_id}/download", headers=other).status_code == 404
    pharmacist = make_user("pharmacist")
    sessions_id = client.post("/api/v1/exports", json={"kind": "sessions"}, headers=auth(pharmacist)).get_json()["id"]
    drain(app)
    from compounding.services import users

    users.update_user(make_user("admin"), pharmacist, display_name=pharmacist.display_name, role="technician")
    refused = client.get(f"/api/v1/exports/{sessions_id}/download", headers=auth(pharmacist))
    assert refused.status_code == 403 and "no longer" in refused.get_json()["error"]


def test_a_failed_job_says_why_and_an_expired_one_answers_410(app, client, tech):
    user, headers = tech
    failing = client.post("/api/v1/exports", json={"kind": "lots", "filters": {"q": "x"}}, headers=headers).get_json()
    export_jobs.fail(failing["id"], "The file store was full.")
    failed = client.get(failing["url"], headers=headers).get_json()
    assert failed["status"] == "failed" and failed["error"] == "The file store was full."
    assert client.get(f"/api/v1/exports/{failing['id']}/download", headers=headers).status_code == 409
    kept = client.post("/api/v1/exports", json={"kind": "lots"}, headers=headers).get_json()
    drain(app)
    done = db.session.get(ExportJob, kept["id"])
    path = Path(app.config["FILE_STORE_PATH"]) / done.storage_key
    assert path.exists()
    assert export_jobs.expire_due(now=done.expires_at + timedelta(minutes=1)) == 1
    assert not path.exists()
    expired = client.get(kept["url"], headers=headers).get_json()
    assert expired["status"] == "expired" and expired["expires_at"] and "download_url" not in expired
    gone = client.get(f"/api/v1/exports/{kept['id']}/download", headers=headers)
    assert gone.status_code == 410
    assert "has been deleted. Ask for it again." in gone.get_json()["error"]


def test_the_openapi_document_shows_both_answers_to_a_request_and_the_410(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    request = spec["paths"]["/api/v1/exports"]["post"]["responses"]
    assert {"200", "202", "403", "404", "422"} <= set(request)
    assert request["200"]["content"] == request["202"]["content"]
    download = spec["paths"]["/api/v1/exports/{job_id}/download"]["get"]["responses"]
    assert {"403", "404", "409", "410", "503"} <= set(download)
    assert set(spec["components"]["schemas"]["ExportJob"]["properties"]) >= {
        "id", "kind", "status", "progress", "download_url", "expires_at", "error"}


def test_a_workbook_with_names_is_refused_once_its_requester_may_not_see_names(app, client, auth, make_user,
                                                                               make_batch):
    from compounding.services import users

    pharmacist = make_user("pharmacist")
    batch = make_batch()
    job_id = client.post("/api/v1/exports", json={"kind": "trace", "target_kind": "batch", "target_id": batch.id},
                         headers=auth(pharmacist)).get_json()["id"]
    drain(app)
    assert client.get(f"/api/v1/exports/{job_id}/download", headers=auth(pharmacist)).status_code == 200
    users.update_user(make_user("admin"), pharmacist, display_name=pharmacist.display_name, role="technician")
    refused = client.get(f"/api/v1/exports/{job_id}/download", headers=auth(pharmacist))
    assert refused.status_code == 403 and "ask for it again" in refused.get_json()["error"]


def test_a_file_missing_before_its_time_answers_503_without_its_key(app, client, make_lot, tech):
    user, headers = tech
    make_lot()
    job_id = client.post("/api/v1/exports", json={"kind": "lots"}, headers=headers).get_json()["id"]
    drain(app)
    done = db.session.get(ExportJob, job_id)
    (Path(app.config["FILE_STORE_PATH"]) / done.storage_key).unlink()
    response = client.get(f"/api/v1/exports/{job_id}/download", headers=headers)
    assert response.status_code == 503
    message = response.get_json()["error"]
    assert message.startswith("The file store did not give back this export")
    assert done.storage_key not in message and app.config["FILE_STORE_PATH"] not in message


def test_a_job_past_its_time_is_expired_before_the_scheduled_expiry_marks_it(app, client, make_lot, tech):
    from compounding.services.clock import utcnow

    user, headers = tech
    make_lot()
    job_id = client.post("/api/v1/exports", json={"kind": "lots"}, headers=headers).get_json()["id"]
    drain(app)
    db.session.execute(db.update(ExportJob).where(ExportJob.id == job_id)
                       .values(expires_at=utcnow() - timedelta(seconds=1)))
    db.session.commit()
    body = client.get(f"/api/v1/exports/{job_id}", headers=headers).get_json()
    assert body["status"] == "expired" and "download_url" not in body
    assert client.get(f"/api/v1/exports/{job_id}/download", headers=headers).status_code == 410
