"""Documents on the pages: upload to a record, download it back byte for byte, withdraw it; the lot's release."""

import base64
import hashlib
import io
import re
from datetime import timedelta
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from documentkit import PDF, pdf, png, png_bomb, zip_bomb
from testkit import PASSWORD, QueryCounter, audit_rows, sign_in, sign_in_session
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from compounding.extensions import db
from compounding.models import Document, Lot
from compounding.services import documents, qualifications
from compounding.services.batch_tests import record_test_result
from compounding.services.clock import clinic_today


@pytest.fixture
def lot(make_lot):
    return make_lot(release=False)


def upload(client, entity_type: str, entity_id: int, data: bytes, filename: str, **fields):
    prefix = f"doc-{entity_type}-{entity_id}"
    form = {f"{prefix}-file": (io.BytesIO(data), filename), **{f"{prefix}-{k}": v for k, v in fields.items()}}
    return client.post(f"/documents/{entity_type}/{entity_id}", data=form, content_type="multipart/form-data")


def stored_count() -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(Document))


def text_of(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def test_a_certificate_goes_up_and_comes_back_byte_for_byte_with_safe_headers(client, technician, lot):
    sign_in(client, technician)
    data, name = pdf("Certificat 123"), "Certificat d'analyse été 123.pdf"
    response = upload(client, "lot", lot.id, data, name, note="From the supplier's portal")
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/lots/{lot.id}#documents-lot-{lot.id}")
    page = client.get(f"/lots/{lot.id}").get_data(as_text=True)
    assert f"{name.replace(chr(39), '&#39;')} attached" in page and "From the supplier&#39;s portal" in page

    document = db.session.scalar(sa.select(Document))
    digest = hashlib.sha256(data).hexdigest()
    assert (document.sha256, document.kind, document.filename) == (digest, "certificate_of_analysis", name)
    [row] = audit_rows("document.attached")
    assert (row.entity_type, row.entity_id, row.new_values["sha256"]) == ("lot", lot.id, digest)

    download = client.get(f"/documents/{document.id}")
    assert download.status_code == 200 and download.get_data() == data
    headers = download.headers
    assert headers["Content-Type"] == "application/pdf"
    assert headers["Content-Disposition"] == (
        "attachment; filename=\"Certificat d'analyse ete 123.pdf\"; "
        f"filename*=UTF-8''{quote(name, safe='')}")
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Content-Security-Policy"] == "default-src 'none'; sandbox; frame-ancestors 'none'"
    assert headers["Cache-Control"] == "private, no-store"
    assert headers["ETag"] == f'"{digest}"'
    assert headers["Repr-Digest"] == f"sha-256=:{base64.b64encode(hashlib.sha256(data).digest()).decode()}:"


def test_a_name_in_another_script_downloads_under_an_ascii_fallback(client, technician, lot):
    sign_in(client, technician)
    upload(client, "lot", lot.id, PDF, "証明書.pdf")
    document = db.session.scalar(sa.select(Document))
    disposition = client.get(f"/documents/{document.id}").headers["Content-Disposition"]
    assert disposition == "attachment; filename=\"document.pdf\"; filename*=UTF-8''%E8%A8%BC%E6%98%8E%E6%9B%B8.pdf"


@pytest.mark.parametrize("data, filename, message", [
    (png(), "certificate.pdf", "certificate.pdf claims to be a PDF but its content is a PNG image"),
    (b"Hello, I am a PDF", "certificate.pdf", "its content is not a PDF, PNG or JPEG file"),
    (b"", "empty.pdf", "empty.pdf is empty: nothing to keep"),
    (zip_bomb(), "photo.png", "photo.png claims to be a PNG image but its content is not"),
    (PDF, "../../x.pdf", "names a folder: upload the file under its own name only"),
    (png_bomb(), "huge.png", "huge.png has more pixels than an image document may have"),
], ids=["png-named-pdf", "text-named-pdf", "empty", "zip-named-png", "path-in-name", "png-bomb"])
def test_a_bad_file_is_refused_with_the_reason_and_nothing_is_stored(client, technician, lot, tmp_path, data,
                                                                     filename, message):
    sign_in(client, technician)
    response = upload(client, "lot", lot.id, data, filename)
    assert response.status_code == 302 and f"#documents-lot-{lot.id}" in response.headers["Location"]
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Nothing was attached" in page and message in text_of(page).replace("&#39;", "'")
    assert stored_count() == 0 and audit_rows("document.attached") == []
    assert not (tmp_path / "store").exists()


def test_a_file_over_the_limit_answers_a_413_page_that_says_the_limit(client, technician, lot, tmp_path):
    sign_in(client, technician)
    # Encoded in memory: the test client would spill a body this large to a temporary file it never closes.
    boundary, body = encode_multipart({f"doc-lot-{lot.id}-file": FileStorage(
        io.BytesIO(b"%PDF-" + b"0" * (11 * 1024 * 1024)), "scan.pdf")})
    response = client.post(f"/documents/lot/{lot.id}", data=body,
                           content_type=f"multipart/form-data; boundary={boundary}")
    assert response.status_code == 413
    page = text_of(response.get_data(as_text=True))
    assert "a document may have at most 10 MB (10,485,760 bytes)" in page
    assert stored_count() == 0 and not (tmp_path / "store").exists()


@pytest.mark.parametrize("config_overrides", [{"DOCUMENT_MAX_BYTES": 1000}], indirect=True)
def test_a_file_just_over_a_smaller_limit_is_refused_by_the_rule_with_a_message(client, technician, lot):
    sign_in(client, technician)
    response = upload(client, "lot", lot.id, PDF + b" " * 1000, "big.pdf")
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "is larger than a document may be: at most 1,000 bytes" in page and stored_count() == 0


def test_whoever_may_not_attach_here_is_told_so_and_nothing_is_stored(client, make_user, lot):
    sign_in(client, make_user("practitioner"))
    page = client.get(f"/lots/{lot.id}").get_data(as_text=True)
    assert "Attach a document" not in page and 'enctype="multipart/form-data"' not in page
    response = upload(client, "lot", lot.id, PDF, "coa.pdf")
    assert "A practitioner cannot attach documents to a lot." in client.get(response.headers["Location"]).get_data(
        as_text=True)
    assert stored_count() == 0


def test_another_sites_lot_is_404_for_upload_and_download(client, make_user, technician, lot):
    from sitekit import add_site

    add_site("LYON")
    document = documents.attach(technician, "lot", lot.id, data=PDF, filename="coa.pdf")
    sign_in(client, make_user("technician", site_codes=["LYON"]))
    assert client.get(f"/documents/{document.id}").status_code == 404
    assert upload(client, "lot", lot.id, PDF, "coa.pdf").status_code == 404
    assert client.post(f"/documents/{document.id}/withdraw",
                       data={f"withdraw-{document.id}-reason": "wrong lot"}).status_code == 404
    assert stored_count() == 1 and db.session.get(Document, document.id).withdrawn_at is None


def test_a_practitioner_reads_a_lots_certificate(client, make_user, technician, lot):
    document = documents.attach(technician, "lot", lot.id, data=PDF, filename="coa.pdf")
    sign_in(client, make_user("practitioner"))
    response = client.get(f"/documents/{document.id}")
    assert response.status_code == 200 and response.get_data() == PDF


def test_a_qualifications_evidence_is_for_its_person_and_those_who_read_qualifications(client, make_user,
                                                                                        pharmacist):
    person = make_user("technician", qualified=False)
    record = qualifications.record_qualification(pharmacist, user_id=person.id, kind="media_fill",
                                                 passed_on=clinic_today() - timedelta(days=2), result="pass")
    document = documents.attach(pharmacist, "qualification", record.id, data=PDF, filename="media-fill.pdf")
    sign_in_session(client, make_user("technician"))
    assert client.get(f"/documents/{document.id}").status_code == 403
    sign_in_session(client, person)
    assert client.get(f"/documents/{document.id}").get_data() == PDF
    sign_in_session(client, make_user("auditor"))
    assert client.get(f"/documents/{document.id}").status_code == 200


def test_a_withdrawn_document_stays_listed_struck_through_with_its_reason(client, pharmacist, lot):
    document = documents.attach(pharmacist, "lot", lot.id, data=PDF, filename="wrong-lot.pdf")
    sign_in(client, pharmacist)
    refused = client.post(f"/documents/{document.id}/withdraw", data={f"withdraw-{document.id}-reason": ""})
    assert "was not withdrawn" in client.get(refused.headers["Location"]).get_data(as_text=True)
    assert db.session.get(Document, document.id).withdrawn_at is None

    response = client.post(f"/documents/{document.id}/withdraw",
                           data={f"withdraw-{document.id}-reason": "Certificate of another lot",
                                 f"withdraw-{document.id}-next": f"/lots/{lot.id}"})
    assert response.headers["Location"].endswith(f"/lots/{lot.id}#documents-lot-{lot.id}")
    page = client.get(f"/lots/{lot.id}").get_data(as_text=True)
    item = re.search(rf'data-document-id="{document.id}".*?</li>', page, re.S).group(0)
    assert "<del" in item and "withdrawn" in item and "Certificate of another lot" in item
    assert "none attached" in page  # a withdrawn certificate does not count
    [row] = audit_rows("document.withdrawn")
    assert row.reason == "Certificate of another lot"
    assert client.get(f"/documents/{document.id}").get_data() == PDF  # never deleted


def test_the_panel_lists_each_document_with_its_people_size_and_hash(client, make_user, technician, lot):
    documents.attach(technician, "lot", lot.id, data=pdf("CoA"), filename="CoA 123.pdf", note="scanned")
    sign_in(client, technician)
    page = client.get(f"/lots/{lot.id}").get_data(as_text=True)
    document = db.session.scalar(sa.select(Document))
    item = re.search(rf'data-document-id="{document.id}".*?</li>', page, re.S).group(0)
    assert f'href="/documents/{document.id}"' in item and "CoA 123.pdf" in item
    assert "Certificate of analysis" in item and technician.display_name in item and "scanned" in item
    assert f"{document.size} B" in item
    assert f'title="SHA-256 {document.sha256}"' in item and f"{document.sha256[:12]}…" in item
    assert "Withdraw document" in item  # a technician may attach to lots, and withdraw
    assert 'enctype="multipart/form-data"' in page and 'name="doc-lot-1-kind"'.replace("1", str(lot.id)) in page


def test_the_lot_page_costs_the_same_statements_for_one_and_five_documents(client, technician, make_lot):
    sign_in(client, technician)

    def statements(lot, count: int) -> int:
        for n in range(count):
            documents.attach(technician, "lot", lot.id, data=pdf(f"page {n}"), filename=f"page-{n}.pdf")
        with QueryCounter(db.engine) as counter:
            page = client.get(f"/lots/{lot.id}").get_data(as_text=True)
        assert page.count("data-document-id=") == count
        return counter.count

    assert statements(make_lot(release=False), 1) == statements(make_lot(release=False), 5)


def test_a_form_leads_back_to_a_page_of_this_site_only(client, technician, lot):
    sign_in(client, technician)
    for next_url in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        response = upload(client, "lot", lot.id, PDF, "coa.pdf", next=next_url)
        assert response.headers["Location"].endswith(f"/lots/{lot.id}#documents-lot-{lot.id}"), next_url
    response = upload(client, "lot", lot.id, PDF, "coa.pdf", next="/lots/?status=quarantine")
    assert response.headers["Location"].endswith(f"/lots/?status=quarantine#documents-lot-{lot.id}")


def test_a_child_lot_at_another_site_shows_and_downloads_its_parents_certificate(client, make_user, make_lot,
                                                                                   technician):
    from sitekit import add_site

    from compounding.services import sites, transfers

    parent = make_lot(quantity="20")
    document = documents.attach(technician, "lot", parent.id, data=PDF, filename="CoA parent.pdf")
    lyon = add_site("LYON")
    hub = make_user("pharmacist", site_codes=["MAIN", "LYON"])
    transfer = transfers.create_transfer(hub, sites.main_site().id, lyon.id, [{"lot_id": parent.id, "quantity": "5"}])
    transfers.dispatch(hub, transfer.id)
    transfers.receive(hub, transfer.id)
    child = db.session.scalar(sa.select(Lot).where(Lot.parent_lot_id == parent.id))

    sign_in(client, make_user("practitioner", site_codes=["LYON"]))
    assert client.get(f"/lots/{parent.id}").status_code == 404  # the parent itself is not theirs to see
    page = client.get(f"/lots/{child.id}").get_data(as_text=True)
    certificate = re.search(r'<dd class="col-7 lot-certificate">(.*?)</dd>', page, re.S).group(1)
    assert "CoA parent.pdf" in certificate and "the lot it was split from" in certificate
    assert client.get(f"/documents/{document.id}").get_data() == PDF


# --- a lot's release and its certificate ----------------------------------------------------------


def test_a_lot_without_a_certificate_asks_for_the_reason_and_keeps_it(client, pharmacist, lot):
    sign_in(client, pharmacist)
    page = client.get(f"/lots/{lot.id}").get_data(as_text=True)
    assert "none attached" in page and 'name="release-reason"' in page
    assert "Reason for releasing without a certificate of analysis" in page

    refused = client.post(f"/lots/{lot.id}/release", data={"release-password": PASSWORD})
    assert refused.status_code == 422
    assert "has no certificate of analysis attached" in refused.get_data(as_text=True)
    assert db.session.get(Lot, lot.id).status == "quarantine"

    response = client.post(f"/lots/{lot.id}/release", data={"release-password": PASSWORD,
                                                            "release-reason": "Supplier sends it on request"})
    assert response.status_code == 302
    page = client.get(f"/lots/{lot.id}").get_data(as_text=True)
    assert "Released without a certificate" in page and "Supplier sends it on request" in page
    assert db.session.get(Lot, lot.id).released_without_coa_reason == "Supplier sends it on request"


def test_a_lot_with_its_certificate_shows_it_and_releases_without_a_reason(client, pharmacist, technician, lot):
    document = documents.attach(technician, "lot", lot.id, data=PDF, filename="CoA 123.pdf")
    sign_in(client, pharmacist)
    page = client.get(f"/lots/{lot.id}").get_data(as_text=True)
    certificate = re.search(r'<dd class="col-7 lot-certificate">(.*?)</dd>', page, re.S).group(1)
    assert f'href="/documents/{document.id}"' in certificate and "CoA 123.pdf" in certificate
    assert 'name="release-reason"' not in page
    response = client.post(f"/lots/{lot.id}/release", data={"release-password": PASSWORD})
    assert response.status_code == 302
    lot = db.session.get(Lot, lot.id)
    assert lot.status == "released" and lot.released_without_coa_reason == ""
    assert "Released without a certificate" not in client.get(f"/lots/{lot.id}").get_data(as_text=True)


# --- the batch page: the batch's documents and each test result's ---------------------------------


@pytest.fixture
def tested_batch(make_formula, make_ingredient, make_lot, make_user):
    """A verified batch of a sterility-tested formula with a non-sterile active: it owes both tests."""

    def make():
        active = make_ingredient(sterile=False)
        saline = make_ingredient(kind="diluent", sterile=True, vehicle=True)
        formula = make_formula([(active, "2"), (saline, "8")], bud_category="category_2_aseptic_sterility_tested")
        make_lot(active, quantity="1000")
        make_lot(saline, quantity="1000")
        from compounding.services import batches

        batch = batches.compound_batch(make_user("technician"), formula.id, 4)
        batches.verify_batch(make_user("pharmacist"), batch.id, PASSWORD)
        return batch

    return make


# A compendial sterility pass waits 14 days after sampling: three results are what a new batch may have.
RESULTS = [("sterility", "rapid"), ("endotoxin", "rapid"), ("endotoxin", "compendial")]


def add_results(batch, pharmacist, count: int) -> list:
    tests = []
    for kind, method in RESULTS[:count]:
        tests.append(record_test_result(pharmacist, batch.id, kind=kind, result="pass", method=method,
                                        lab="North Lab", sampled_on=clinic_today(),
                                        password=PASSWORD))
        documents.attach(pharmacist, "batch_test", tests[-1].id, data=pdf(f"{kind} {method}"),
                         filename=f"{kind}-{method}.pdf")
    return tests


def test_each_test_result_shows_its_report_and_takes_an_upload(client, pharmacist, tested_batch):
    batch = tested_batch()
    [test] = add_results(batch, pharmacist, 1)
    sign_in(client, pharmacist)
    page = client.get(f"/batches/{batch.id}").get_data(as_text=True)
    panel = re.search(rf'id="documents-batch-test-{test.id}".*?</section>', page, re.S).group(0)
    assert "sterility-rapid.pdf" in panel and "Test report" in panel and "Attach a document" in panel
    assert f'id="documents-batch-{batch.id}"' in page

    response = upload(client, "batch_test", test.id, pdf("lab letter"), "lab-letter.pdf", kind="other",
                      next=f"/batches/{batch.id}")
    assert response.headers["Location"].endswith(f"/batches/{batch.id}#documents-batch-test-{test.id}")
    [_, letter] = documents.documents_of("batch_test", [test.id])[test.id]
    assert (letter.filename, letter.kind) == ("lab-letter.pdf", "other")


def test_the_batch_page_costs_the_same_statements_for_one_and_three_test_results(client, pharmacist, tested_batch):
    sign_in(client, pharmacist)

    def statements(batch, results: int) -> int:
        with QueryCounter(db.engine) as counter:
            response = client.get(f"/batches/{batch.id}")
        assert response.status_code == 200
        page = response.get_data(as_text=True)
        assert page.count('class="documents-panel') == results + 1  # the batch's and each result's
        assert page.count('href="/documents/') == results
        return counter.count

    one, three = tested_batch(), tested_batch()
    add_results(one, pharmacist, 1)
    add_results(three, pharmacist, 3)
    assert statements(one, 1) == statements(three, 3)
