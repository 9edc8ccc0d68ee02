"""Documents (DESIGN 10.6): checked by content, kept in the folder store, read back byte for byte."""

import hashlib
import io

import pytest
import sqlalchemy as sa
from documentkit import PDF, jpeg_with_gps, pdf, png, png_bomb, zip_bomb
from PIL import Image
from testkit import PASSWORD, audit_rows

from compounding import storage
from compounding.extensions import db
from compounding.models import Document, Lot
from compounding.services import documents, inventory
from compounding.services.errors import InvalidInput, InvalidState, NotAllowed, NotFound, TooLarge


@pytest.fixture
def lot(make_lot):
    return make_lot(release=False)


def stored(document: Document) -> bytes:
    return storage.store(document.store).get(document.storage_key)


def test_a_pdf_round_trips_byte_for_byte_and_its_hash_is_in_the_audit_trail(pharmacist, lot, tmp_path):
    data = pdf("CoA 123")
    document = documents.attach(pharmacist, "lot", lot.id, data=data, filename="CoA 123.pdf")
    digest = hashlib.sha256(data).hexdigest()
    assert (document.sha256, document.received_sha256, document.size) == (digest, digest, len(data))
    assert (document.kind, document.store, document.content_type) == ("certificate_of_analysis", "folder",
                                                                      "application/pdf")
    assert (tmp_path / "store" / "documents" / digest[:2] / digest).read_bytes() == data
    again, read_back = documents.read(pharmacist, document.id)
    assert read_back == data and again.filename == "CoA 123.pdf"
    [row] = audit_rows("document.attached")
    assert (row.entity_type, row.entity_id) == ("lot", lot.id)
    assert row.new_values["sha256"] == digest and row.new_values["filename"] == "CoA 123.pdf"


def test_images_are_stored_without_their_location_metadata(pharmacist, lot):
    data = jpeg_with_gps()
    assert Image.open(io.BytesIO(data)).getexif().get(0x8825)
    document = documents.attach(pharmacist, "lot", lot.id, data=data, filename="photo.JPG")
    kept = stored(document)
    assert document.received_sha256 == hashlib.sha256(data).hexdigest() != document.sha256
    image = Image.open(io.BytesIO(kept))
    assert image.format == "JPEG" and not image.getexif() and image.size == (32, 32)
    tagged = documents.attach(pharmacist, "lot", lot.id, data=png(text={"Location": "48.85,2.35"}),
                              filename="scan.png")
    assert "Location" not in Image.open(io.BytesIO(stored(tagged))).info


@pytest.mark.parametrize("data, filename, error, message", [
    (png(), "certificate.pdf", InvalidInput, "claims to be a PDF but its content is a PNG image"),
    (b"Hello, I am a PDF", "certificate.pdf", InvalidInput, "claims to be a PDF but its content is not a PDF"),
    (b"", "empty.pdf", InvalidInput, "empty.pdf is empty"),
    (zip_bomb(), "photo.png", InvalidInput, "claims to be a PNG image but its content is not"),
    (png_bomb(), "huge.png", InvalidInput, "huge.png has more pixels than an image document may have"),
    (PDF, "../../x.pdf", InvalidInput, "names a folder"),
    (PDF, "..\\x.pdf", InvalidInput, "names a folder"),
    (PDF, "report.docx", InvalidInput, "documents are PDF, PNG or JPEG"),
    (PDF[:-7], "cut.pdf", InvalidInput, "not a complete PDF"),
    (png()[:40], "cut.png", InvalidInput, "damaged PNG image"),
    (PDF, "", InvalidInput, "has no name"),
])
def test_bad_files_are_refused_and_nothing_is_stored(pharmacist, lot, tmp_path, data, filename, error, message):
    with pytest.raises(error, match=message):
        documents.attach(pharmacist, "lot", lot.id, data=data, filename=filename)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Document)) == 0
    assert audit_rows("document.attached") == []
    assert not (tmp_path / "store").exists()


@pytest.mark.parametrize("config_overrides", [{"DOCUMENT_MAX_BYTES": 1000}], indirect=True)
def test_a_file_over_the_limit_is_refused_with_413(pharmacist, lot):
    with pytest.raises(TooLarge, match="at most 1,000") as refused:
        documents.attach(pharmacist, "lot", lot.id, data=PDF + b" " * 1000, filename="big.pdf")
    assert refused.value.status_code == 413


def test_who_may_attach_and_read_follows_the_record(make_user, pharmacist, lot):
    practitioner = make_user("practitioner")
    with pytest.raises(NotAllowed):
        documents.attach(practitioner, "lot", lot.id, data=PDF, filename="coa.pdf")
    technician = make_user("technician")
    document = documents.attach(technician, "lot", lot.id, data=PDF, filename="coa.pdf")
    assert documents.read(practitioner, document.id)[1] == PDF  # every role reads lots
    with pytest.raises(NotFound):
        documents.attach(pharmacist, "lot", 999, data=PDF, filename="coa.pdf")


def test_a_stored_file_altered_afterwards_is_refused_on_download(pharmacist, lot, tmp_path):
    document = documents.attach(pharmacist, "lot", lot.id, data=PDF, filename="coa.pdf")
    path = tmp_path / "store" / document.storage_key
    path.write_bytes(PDF.replace(b"595", b"596"))
    with pytest.raises(InvalidState, match="does not match the SHA-256"):
        documents.read(pharmacist, document.id)


def test_the_same_file_twice_is_one_object_and_two_records(pharmacist, lot, tmp_path):
    first = documents.attach(pharmacist, "lot", lot.id, data=PDF, filename="coa.pdf")
    second = documents.attach(pharmacist, "lot", lot.id, data=PDF, filename="coa-again.pdf")
    assert first.storage_key == second.storage_key and first.id != second.id
    assert len(list((tmp_path / "store").rglob("*"))) == 3  # documents/, its two-letter folder, one file


# --- a lot's release and its certificate ----------------------------------------------------------

def test_a_lot_without_a_certificate_is_released_only_with_a_reason(pharmacist, lot):
    with pytest.raises(InvalidInput, match="no certificate of analysis attached") as refused:
        inventory.release_lot(pharmacist, lot.id, PASSWORD)
    assert refused.value.field == "reason" and db.session.get(Lot, lot.id).status == "quarantine"
    inventory.release_lot(pharmacist, lot.id, PASSWORD, reason="Supplier sends certificates on request")
    assert lot.status == "released" and lot.released_without_coa_reason == "Supplier sends certificates on request"
    [row] = audit_rows("lot.released")
    assert row.new_values["released_without_coa_reason"] == "Supplier sends certificates on request"
    assert row.old_values["released_without_coa_reason"] == ""


def test_a_lot_with_its_certificate_is_released_without_a_reason(pharmacist, make_user, lot):
    documents.attach(make_user("technician"), "lot", lot.id, data=PDF, filename="coa.pdf")
    inventory.release_lot(pharmacist, lot.id, PASSWORD, reason="ignored: a certificate is attached")
    assert lot.status == "released" and lot.released_without_coa_reason == ""


def test_a_withdrawn_certificate_does_not_count(pharmacist, lot):
    document = documents.attach(pharmacist, "lot", lot.id, data=PDF, filename="wrong-lot.pdf")
    documents.withdraw(pharmacist, document.id, "Certificate of another lot")
    with pytest.raises(InvalidInput, match="no certificate of analysis"):
        inventory.release_lot(pharmacist, lot.id, PASSWORD)
    assert [r.reason for r in audit_rows("document.withdrawn")] == ["Certificate of another lot"]
    again, data = documents.read(pharmacist, document.id)
    assert again.withdrawn_at is not None and data == PDF  # withdrawn, never deleted


def test_a_test_report_other_than_a_certificate_does_not_release_a_lot(pharmacist, lot):
    documents.attach(pharmacist, "lot", lot.id, data=PDF, filename="photo-of-box.pdf", kind="other")
    with pytest.raises(InvalidInput, match="no certificate of analysis"):
        inventory.release_lot(pharmacist, lot.id, PASSWORD)


def test_an_image_over_the_pixel_limit_but_under_pillows_is_refused_before_decoding(pharmacist, lot):
    with pytest.raises(InvalidInput, match=r"\(9000 × 5000; at most 25,000,000\)"):
        documents.attach(pharmacist, "lot", lot.id, data=png(size=(9000, 5000)), filename="scan.png")
