"""The documents API: multipart uploads to records, their descriptions and bytes, withdrawal; a lot's release."""

import hashlib
import io
from datetime import timedelta

import pytest
import sqlalchemy as sa
from documentkit import PDF, jpeg_with_gps, pdf, png, png_bomb, zip_bomb
from testkit import PASSWORD, audit_rows

from compounding.extensions import db
from compounding.models import Document, Lot
from compounding.services import documents, qualifications
from compounding.services.batch_tests import record_test_result
from compounding.services.clock import clinic_today


@pytest.fixture
def lot(make_lot):
    return make_lot(release=False)


def post_file(client, url: str, headers, data: bytes, filename: str | None, **fields):
    form = dict(fields)
    if filename is not None:
        form["file"] = (io.BytesIO(data), filename)
    return client.post(url, headers=headers, data=form, content_type="multipart/form-data")


def stored_count() -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(Document))


def test_an_upload_answers_the_document_and_its_bytes_come_back_unchanged(client, auth, technician, lot):
    data = pdf("CoA 123")
    response = post_file(client, f"/api/v1/lots/{lot.id}/documents", auth(technician), data, "CoA 123.pdf",
                         note="From the portal")
    assert response.status_code == 201, response.json
    body = response.json
    digest = hashlib.sha256(data).hexdigest()
    assert {key: body[key] for key in ("filename", "sha256", "size", "kind", "content_type", "entity_type",
                                       "entity_id", "note", "withdrawn", "uploaded_by")} == {
        "filename": "CoA 123.pdf", "sha256": digest, "size": len(data), "kind": "certificate_of_analysis",
        "content_type": "application/pdf", "entity_type": "lot", "entity_id": lot.id, "note": "From the portal",
        "withdrawn": False, "uploaded_by": technician.display_name}
    assert body["download_url"] == f"/api/v1/documents/{body['id']}/content" and body["uploaded_at"]
    [row] = audit_rows("document.attached")
    assert row.new_values["sha256"] == digest

    content = client.get(body["download_url"], headers=auth("practitioner"))
    assert content.status_code == 200 and content.get_data() == data
    assert content.headers["Content-Type"] == "application/pdf"
    assert content.headers["ETag"] == f'"{digest}"'
    assert content.headers["Content-Disposition"].startswith('attachment; filename="CoA 123.pdf"')

    assert client.get(f"/api/v1/documents/{body['id']}", headers=auth("auditor")).json == body
    listed = client.get(f"/api/v1/lots/{lot.id}/documents", headers=auth("practitioner")).json
    assert (listed["total"], listed["items"]) == (1, [body])


def test_an_image_is_answered_without_its_metadata_and_both_hashes(client, auth, technician, lot):
    data = jpeg_with_gps()
    body = post_file(client, f"/api/v1/lots/{lot.id}/documents", auth(technician), data, "box.jpg",
                     kind="other").json
    assert body["received_sha256"] == hashlib.sha256(data).hexdigest() != body["sha256"]
    assert body["kind"] == "other" and body["content_type"] == "image/jpeg"


@pytest.mark.parametrize("data, filename, message", [
    (png(), "certificate.pdf", "claims to be a PDF but its content is a PNG image"),
    (b"Hello, I am a PDF", "certificate.pdf", "claims to be a PDF but its content is not a PDF, PNG or JPEG"),
    (b"", "empty.pdf", "empty.pdf is empty"),
    (zip_bomb(), "photo.png", "claims to be a PNG image but its content is not"),
    (PDF, "../../x.pdf", "names a folder"),
    (png_bomb(), "huge.png", "has more pixels than an image document may have"),
    (PDF, None, "The file has no name"),
], ids=["png-named-pdf", "text-named-pdf", "empty", "zip-named-png", "path-in-name", "png-bomb", "no-file"])
def test_a_file_that_is_not_what_it_claims_is_422_and_nothing_is_stored(client, auth, technician, lot, tmp_path,
                                                                         data, filename, message):
    response = post_file(client, f"/api/v1/lots/{lot.id}/documents", auth(technician), data, filename)
    assert response.status_code == 422 and message in response.json["error"]
    assert response.json["details"] == {"file": [response.json["error"]]}
    assert stored_count() == 0 and audit_rows("document.attached") == []
    assert not (tmp_path / "store").exists()


def test_an_unknown_kind_is_422_naming_the_field(client, auth, technician, lot):
    response = post_file(client, f"/api/v1/lots/{lot.id}/documents", auth(technician), PDF, "coa.pdf",
                         kind="selfie")
    assert response.status_code == 422 and "kind" in response.json["details"] and stored_count() == 0


@pytest.mark.parametrize("config_overrides", [{"DOCUMENT_MAX_BYTES": 1000}], indirect=True)
def test_a_file_over_the_limit_is_413_saying_the_limit(client, auth, technician, lot):
    url, headers = f"/api/v1/lots/{lot.id}/documents", auth(technician)
    just_over = post_file(client, url, headers, PDF + b" " * 1000, "big.pdf")
    assert just_over.status_code == 413 and "at most 1,000" in just_over.json["error"]
    far_over = post_file(client, url, headers, PDF + b" " * 100_000, "bigger.pdf")  # refused unread
    assert far_over.status_code == 413 and "a document may have at most 1000 B (1,000 bytes)" in far_over.json["error"]
    assert stored_count() == 0


def test_an_unreachable_store_is_503_and_nothing_is_attached(app, client, auth, technician, lot, tmp_path):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the store's folder should be")
    app.config["FILE_STORE_PATH"] = str(blocked)
    app.extensions.pop("file_stores", None)
    response = post_file(client, f"/api/v1/lots/{lot.id}/documents", auth(technician), PDF, "coa.pdf")
    assert response.status_code == 503 and "Nothing was attached" in response.json["error"]
    assert stored_count() == 0 and audit_rows("document.attached") == []


def test_who_may_upload_and_read_follows_the_record(client, auth, make_user, technician, lot):
    url = f"/api/v1/lots/{lot.id}/documents"
    assert post_file(client, url, auth("practitioner"), PDF, "coa.pdf").status_code == 403
    assert post_file(client, url, auth("auditor"), PDF, "coa.pdf").status_code == 403
    document = documents.attach(technician, "lot", lot.id, data=PDF, filename="coa.pdf")

    from sitekit import add_site

    add_site("LYON")
    lyon = auth(make_user("pharmacist", site_codes=["LYON"]))
    assert client.get(url, headers=lyon).status_code == 404
    assert client.get(f"/api/v1/documents/{document.id}", headers=lyon).status_code == 404
    assert client.get(f"/api/v1/documents/{document.id}/content", headers=lyon).status_code == 404
    assert post_file(client, url, lyon, PDF, "coa.pdf").status_code == 404
    assert client.post(f"/api/v1/documents/{document.id}/withdraw", headers=lyon,
                       json={"reason": "wrong"}).status_code == 404
    assert client.get("/api/v1/lots/4242/documents", headers=auth()).status_code == 404
    assert stored_count() == 1


def test_a_qualifications_evidence_is_read_by_its_person_not_by_a_colleague(client, auth, make_user, pharmacist):
    person = make_user("technician", qualified=False)
    record = qualifications.record_qualification(pharmacist, user_id=person.id, kind="media_fill",
                                                 passed_on=clinic_today() - timedelta(days=2), result="pass")
    url = f"/api/v1/qualifications/{record.id}/documents"
    assert post_file(client, url, auth(person), PDF, "media-fill.pdf").status_code == 403
    body = post_file(client, url, auth(pharmacist), PDF, "media-fill.pdf").json
    assert body["kind"] == "evidence"
    colleague = auth("technician")
    assert client.get(url, headers=colleague).status_code == 403
    assert client.get(body["download_url"], headers=colleague).status_code == 403
    assert client.get(f"/api/v1/documents/{body['id']}", headers=colleague).status_code == 403
    assert client.get(body["download_url"], headers=auth(person)).get_data() == PDF
    assert client.get(url, headers=auth(person)).json["total"] == 1


def test_a_test_result_takes_its_report_under_its_own_batch_only(client, auth, make_formula, make_ingredient,
                                                                   make_lot, make_batch, pharmacist):
    formula = make_formula([(make_ingredient(), "2"), (make_ingredient(kind="diluent", vehicle=True), "8")],
                           bud_category="category_2_aseptic_sterility_tested")
    for component in formula.components:
        make_lot(component.ingredient, quantity="1000")
    batch = make_batch(formula, release=False)
    test = record_test_result(pharmacist, batch.id, kind="sterility", result="pass", method="rapid", lab="Lab",
                              sampled_on=clinic_today(), password=PASSWORD)
    other = make_batch(release=False)
    wrong = post_file(client, f"/api/v1/batches/{other.id}/tests/{test.id}/documents", auth(pharmacist), PDF, "r.pdf")
    assert wrong.status_code == 404
    response = post_file(client, f"/api/v1/batches/{batch.id}/tests/{test.id}/documents", auth(pharmacist),
                         PDF, "report.pdf")
    assert response.status_code == 201 and response.json["kind"] == "test_report"
    assert (response.json["entity_type"], response.json["entity_id"]) == ("batch_test", test.id)
    listed = client.get(f"/api/v1/batches/{batch.id}/tests/{test.id}/documents", headers=auth("practitioner")).json
    assert [item["filename"] for item in listed["items"]] == ["report.pdf"]
    assert post_file(client, f"/api/v1/batches/{batch.id}/documents", auth("technician"), PDF,
                     "photo.pdf").json["kind"] == "other"


def test_a_withdrawal_needs_a_reason_and_happens_once(client, auth, pharmacist, lot):
    document = documents.attach(pharmacist, "lot", lot.id, data=PDF, filename="wrong-lot.pdf")
    url = f"/api/v1/documents/{document.id}/withdraw"
    assert client.post(url, headers=auth(pharmacist), json={}).status_code == 422
    assert client.post(url, headers=auth("practitioner"), json={"reason": "mine"}).status_code == 403
    response = client.post(url, headers=auth(pharmacist), json={"reason": "Certificate of another lot"})
    assert response.status_code == 200
    assert (response.json["withdrawn"], response.json["withdraw_reason"], response.json["withdrawn_by"]) == (
        True, "Certificate of another lot", pharmacist.display_name)
    again = client.post(url, headers=auth(pharmacist), json={"reason": "again"})
    assert again.status_code == 409 and "already withdrawn" in again.json["error"]


# --- a lot's release and its certificate ----------------------------------------------------------


def test_a_lot_without_a_certificate_is_released_over_the_api_only_with_a_reason(client, auth, pharmacist, lot):
    url = f"/api/v1/lots/{lot.id}/release"
    refused = client.post(url, headers=auth(pharmacist), json={"password": PASSWORD})
    assert refused.status_code == 422 and "no certificate of analysis attached" in refused.json["error"]
    assert list(refused.json["details"]) == ["reason"]
    assert db.session.get(Lot, lot.id).status == "quarantine"
    released = client.post(url, headers=auth(pharmacist), json={"password": PASSWORD, "reason": "On request"})
    assert released.status_code == 200
    assert (released.json["status"], released.json["released_without_coa_reason"], released.json["certificate"]) == (
        "released", "On request", None)
    assert client.get(f"/api/v1/lots/{lot.id}", headers=auth("auditor")).json["released_without_coa_reason"] == (
        "On request")


def test_a_lot_answers_its_certificate_and_is_released_without_a_reason(client, auth, technician, pharmacist, lot):
    upload = post_file(client, f"/api/v1/lots/{lot.id}/documents", auth(technician), PDF, "CoA 123.pdf").json
    answer = client.get(f"/api/v1/lots/{lot.id}", headers=auth("practitioner")).json
    assert answer["certificate"] == {"document_id": upload["id"], "filename": "CoA 123.pdf",
                                     "sha256": upload["sha256"]}
    released = client.post(f"/api/v1/lots/{lot.id}/release", headers=auth(pharmacist), json={"password": PASSWORD})
    assert released.status_code == 200 and released.json["released_without_coa_reason"] == ""


def test_the_openapi_document_shows_the_multipart_uploads_and_their_errors(client):
    document = client.get("/api/v1/openapi.json").json
    paths = document["paths"]
    for path in ("/api/v1/lots/{lot_id}/documents", "/api/v1/batches/{batch_id}/documents",
                 "/api/v1/equipment/{equipment_id}/documents", "/api/v1/qualifications/{qualification_id}/documents",
                 "/api/v1/batches/{batch_id}/tests/{test_id}/documents"):
        upload = paths[path]["post"]
        assert "multipart/form-data" in upload["requestBody"]["content"], path
        assert {"201", "403", "404", "413", "422", "503"} <= set(upload["responses"]), path
        assert "get" in paths[path]
    assert {"get"} == set(paths["/api/v1/documents/{document_id}/content"])
    reason = document["components"]["schemas"]["LotRelease"]["properties"]["reason"]
    assert "required (422 naming `reason`) when none is attached" in reason["description"]
    assert {"certificate", "released_without_coa_reason"} <= set(document["components"]["schemas"]["Lot"]["properties"])


def test_a_records_document_list_costs_the_same_statements_for_one_and_six(client, auth, technician, make_lot):
    from testkit import QueryCounter

    headers = auth("auditor")
    client.get("/api/v1/lots", headers=headers)  # the token's first use is recorded once

    def statements(lot, count: int) -> int:
        for n in range(count):
            documents.attach(technician, "lot", lot.id, data=pdf(f"page {n}"), filename=f"page-{n}.pdf")
        with QueryCounter(db.engine) as counter:
            answer = client.get(f"/api/v1/lots/{lot.id}/documents", headers=headers)
        assert answer.json["total"] == count == len(answer.json["items"])
        return counter.count

    assert statements(make_lot(), 1) == statements(make_lot(), 6)
