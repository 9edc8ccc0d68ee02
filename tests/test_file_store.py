"""The file store on a real S3-compatible server (moto's server mode, a separate process on 127.0.0.1).

boto3 speaks HTTP to it as to any S3 bucket: nothing of the client is replaced.
"""

import hashlib
import os
import socket
import subprocess
import sys
import time

import pytest
import sqlalchemy as sa
from documentkit import jpeg_with_gps, pdf
from testkit import audit_rows, stop_process

from compounding import storage
from compounding.extensions import db
from compounding.models import Document
from compounding.services import documents
from compounding.services.errors import Unavailable

BUCKET = "clinic-documents"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test-key", "AWS_SECRET_ACCESS_KEY": "test-secret",
               "AWS_DEFAULT_REGION": "eu-west-3"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint():
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("the S3-compatible server did not start")
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(server)


@pytest.fixture
def config_overrides(s3_endpoint, tmp_path, monkeypatch):
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    import boto3

    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="eu-west-3")
    existing = [b["Name"] for b in client.list_buckets().get("Buckets", [])]
    if BUCKET not in existing:
        client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-3"})
    return {"FILE_STORE_BUCKET": BUCKET, "FILE_STORE_ENDPOINT_URL": s3_endpoint, "FILE_STORE_REGION": "eu-west-3",
            "FILE_STORE_PREFIX": "test-run", "FILE_STORE_PATH": str(tmp_path / "folder")}


def object_in_bucket(endpoint: str, key: str) -> bytes:
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, region_name="eu-west-3")
    return client.get_object(Bucket=BUCKET, Key=key)["Body"].read()


def test_a_document_round_trips_byte_for_byte_through_the_bucket(pharmacist, make_lot, s3_endpoint):
    lot = make_lot(release=False)
    data = pdf(f"CoA {lot.code}")
    document = documents.attach(pharmacist, "lot", lot.id, data=data, filename="coa.pdf")
    digest = hashlib.sha256(data).hexdigest()
    assert document.store == "s3" and document.sha256 == digest
    assert object_in_bucket(s3_endpoint, f"test-run/documents/{digest[:2]}/{digest}") == data
    assert documents.read(pharmacist, document.id)[1] == data
    [row] = audit_rows("document.attached")
    assert row.new_values["sha256"] == digest and row.new_values["store"] == "s3"


def test_an_image_is_stripped_before_it_reaches_the_bucket(pharmacist, make_lot, s3_endpoint):
    lot = make_lot(release=False)
    document = documents.attach(pharmacist, "lot", lot.id, data=jpeg_with_gps(), filename="label.jpg")
    kept = object_in_bucket(s3_endpoint, f"test-run/{document.storage_key}")
    assert hashlib.sha256(kept).hexdigest() == document.sha256 and b"Clinic phone" not in kept


def test_documents_kept_in_the_folder_before_the_bucket_still_download(app, pharmacist, make_lot):
    lot = make_lot(release=False)
    data = pdf("kept in the folder")
    folder = storage.store(storage.FOLDER)
    key = storage.object_key(hashlib.sha256(data).hexdigest())
    folder.put(key, data, "application/pdf")
    document = Document(entity_type="lot", entity_id=lot.id, kind="certificate_of_analysis", filename="old.pdf",
                        content_type="application/pdf", size=len(data), sha256=hashlib.sha256(data).hexdigest(),
                        received_sha256=hashlib.sha256(data).hexdigest(), store="folder", storage_key=key,
                        uploaded_by_id=pharmacist.id)
    db.session.add(document)
    db.session.commit()
    assert documents.read(pharmacist, document.id)[1] == data


@pytest.mark.parametrize("config_overrides", [{}], indirect=False)
def test_an_unreachable_bucket_answers_503_and_attaches_nothing(app, pharmacist, make_lot, monkeypatch):
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    app.config.update(FILE_STORE_BUCKET=BUCKET, FILE_STORE_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}",
                      FILE_STORE_REGION="eu-west-3")
    app.extensions.pop("file_stores", None)
    lot = make_lot(release=False)
    with pytest.raises(Unavailable, match="could not keep the file") as refused:
        documents.attach(pharmacist, "lot", lot.id, data=pdf(), filename="coa.pdf")
    assert refused.value.status_code == 503
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Document)) == 0
    assert os.environ["AWS_ACCESS_KEY_ID"] == "test-key"
