"""Documents over time and across people: evidence in reach, a certificate withdrawn, a damaged file re-uploaded."""

import io
from datetime import timedelta
from pathlib import Path

import pytest
from documentkit import PDF, pdf
from PIL import Image
from sitekit import add_site
from testkit import PASSWORD

from compounding.extensions import db
from compounding.models import Lot
from compounding.services import documents, inventory, qualifications
from compounding.services.clock import clinic_today
from compounding.services.errors import InvalidInput, InvalidState, NotAllowed, TooLarge


def post_file(client, url, headers, data, filename):
    return client.post(url, headers=headers, data={"file": (io.BytesIO(data), filename)},
                       content_type="multipart/form-data")


@pytest.fixture
def evidence(make_user):
    recorder = make_user("pharmacist")
    person = make_user("technician", qualified=False)
    record = qualifications.record_qualification(recorder, user_id=person.id, kind="media_fill",
                                                 passed_on=clinic_today() - timedelta(days=2), result="pass")
    return person, record, documents.attach(recorder, "qualification", record.id, data=PDF, filename="plate.pdf")


def test_another_sites_pharmacist_neither_reads_nor_touches_a_persons_evidence(client, auth, make_user, evidence):
    add_site("LYON")
    _person, record, document = evidence
    headers = auth(make_user("pharmacist", site_codes=["LYON"]))
    assert client.get(f"/api/v1/qualifications/{record.id}/documents", headers=headers).status_code == 404
    assert client.get(f"/api/v1/documents/{document.id}/content", headers=headers).status_code == 404
    assert post_file(client, f"/api/v1/qualifications/{record.id}/documents", headers, pdf("x"),
                     "x.pdf").status_code == 404
    assert client.post(f"/api/v1/documents/{document.id}/withdraw", headers=headers,
                       json={"reason": "mine"}).status_code == 404
    # A colleague at the person's site reads it.
    assert client.get(f"/api/v1/documents/{document.id}/content", headers=auth(make_user("pharmacist"))).data == PDF


def test_nobody_replaces_the_evidence_of_their_own_qualification(make_user):
    recorder = make_user("pharmacist")
    me = make_user("pharmacist", qualified=False)
    record = qualifications.record_qualification(recorder, user_id=me.id, kind="media_fill",
                                                 passed_on=clinic_today(), result="pass")
    document = documents.attach(recorder, "qualification", record.id, data=PDF, filename="plate.pdf")
    with pytest.raises(NotAllowed, match="your own"):
        documents.withdraw(me, document.id, "wrong plate")
    with pytest.raises(NotAllowed, match="your own"):
        documents.attach(me, "qualification", record.id, data=pdf("mine"), filename="mine.pdf")
    assert documents.read(me, document.id)[1] == PDF  # reading one's own stays open


def test_the_last_certificate_of_a_released_lot_is_not_withdrawn(make_user, make_lot):
    technician, pharmacist = make_user("technician"), make_user("pharmacist")
    lot = make_lot(release=False)
    first = documents.attach(technician, "lot", lot.id, data=PDF, filename="coa.pdf")
    inventory.release_lot(pharmacist, lot.id, PASSWORD)
    with pytest.raises(InvalidState, match="released on it: attach the right certificate first"):
        documents.withdraw(technician, first.id, "Certificate of another lot")
    documents.attach(technician, "lot", lot.id, data=pdf("the right one"), filename="coa-right.pdf")
    documents.withdraw(technician, first.id, "Certificate of another lot")
    assert documents.has_certificate(db.session.get(Lot, lot.id))


def test_a_certificate_still_withdraws_while_its_lot_is_in_quarantine(make_user, make_lot):
    technician = make_user("technician")
    lot = make_lot(release=False)
    document = documents.attach(technician, "lot", lot.id, data=PDF, filename="coa.pdf")
    assert documents.withdraw(technician, document.id, "Certificate of another lot").withdrawn_at


def test_uploading_the_same_bytes_again_repairs_a_damaged_stored_file(app, make_user, make_lot):
    technician = make_user("technician")
    lot = make_lot(release=False)
    document = documents.attach(technician, "lot", lot.id, data=PDF, filename="coa.pdf")
    stored = Path(app.config["FILE_STORE_PATH"]) / document.storage_key
    stored.write_bytes(b"X" * len(PDF))
    with pytest.raises(InvalidState, match="does not match"):
        documents.read(technician, document.id)
    again = documents.attach(technician, "lot", lot.id, data=PDF, filename="coa.pdf")
    assert documents.read(technician, again.id)[1] == PDF == stored.read_bytes()


def test_a_jpeg_comment_is_not_kept(app):
    out = io.BytesIO()
    Image.new("RGB", (30, 30)).save(out, "JPEG", comment=b"Shot at 12 rue des Lilas, Paris 48.8566N 2.3522E")
    assert b"rue des Lilas" not in documents.prepare(out.getvalue(), "photo.jpg").data


def test_an_image_over_25_megapixels_is_refused_unread(app):
    out = io.BytesIO()
    Image.new("1", (6300, 6300)).save(out, "PNG")
    with pytest.raises(InvalidInput, match=r"6300 × 6300; at most 25,000,000"):
        documents.prepare(out.getvalue(), "scan.png")


@pytest.mark.parametrize("config_overrides", [{"DOCUMENT_MAX_BYTES": 1000}], indirect=True)
def test_the_limit_message_does_not_claim_a_size_it_did_not_read(app):
    with pytest.raises(TooLarge) as refused:
        documents.prepare(PDF + b"%" + b"x" * 5000 + b"\n%%EOF\n", "coa.pdf")
    assert refused.value.message == "coa.pdf is larger than a document may be: at most 1,000 bytes."
