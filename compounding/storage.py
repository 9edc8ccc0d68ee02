"""The file store: where documents' bytes live (DESIGN 10.6).

A folder (`FILE_STORE_PATH`, default `instance/documents`) unless `FILE_STORE_BUCKET` names an
S3-compatible bucket (AWS S3, MinIO, Ceph...; `FILE_STORE_ENDPOINT_URL` for one that is not AWS,
credentials from the usual AWS variables). Objects are named by their SHA-256
(`documents/ab/abcd...`), so a key is never built from a name a user typed, the same bytes
uploaded twice are one object, and an object is never overwritten with other bytes. A document
row remembers which store holds its bytes, so documents uploaded before a bucket was configured
still download from the folder.
"""

import hashlib
import logging
import os
import tempfile
from pathlib import Path

from flask import current_app

log = logging.getLogger(__name__)
FOLDER, S3 = "folder", "s3"


class StoreError(RuntimeError):
    """The store could not keep or give back an object (a full disk, an unreachable bucket).

    Its message is for the person who asked: it names no key, folder or bucket address (those are
    logged here with the cause, for an administrator).
    """


def _refused(message: str, key: str, error: Exception) -> StoreError:
    log.warning("File store: %s (key %s): %s", message, key, error)
    return StoreError(message)


def _disk_reason(error: OSError) -> str:
    return error.strerror or "the disk refused it"  # str(error) would name the path


def _bucket_reason(error: Exception) -> str:
    code = (getattr(error, "response", None) or {}).get("Error", {}).get("Code")  # ClientError: AccessDenied...
    return f"the bucket answered {code}" if code else "the bucket could not be reached"


def export_key(job_id: int, token: str) -> str:
    """Where a finished export's workbook is kept until it expires (deleted then: not a document)."""
    if not token.isalnum():
        raise ValueError("an export key's token is letters and digits")
    return f"exports/{int(job_id)}-{token}.xlsx"


def object_key(sha256: str) -> str:
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise ValueError("an object key is made from a SHA-256 in hex")
    return f"documents/{sha256[:2]}/{sha256}"


class FolderStore:
    kind = FOLDER

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise ValueError(f"key {key!r} leaves the store")
        return path

    def put(self, key: str, data: bytes, content_type: str) -> None:
        path = self._path(key)
        if path.exists() and sha256_of(path.read_bytes()) == key.rsplit("/", 1)[-1]:
            return  # the same bytes are there; a damaged copy is written again below
        self._write_whole(key, path, lambda out: out.write(data), "The document folder")

    def _write_whole(self, key: str, path: Path, write, store_name: str) -> None:
        """`write(out)` into a file beside `path`, then renamed to it: a reader never sees half a file."""
        partial = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle, partial = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
            with os.fdopen(handle, "wb") as out:
                write(out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(partial, path)
        except OSError as error:
            if partial is not None:
                Path(partial).unlink(missing_ok=True)
            raise _refused(f"{store_name} could not keep the file: {_disk_reason(error)}.", key, error) from error

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except OSError as error:
            raise _refused("The document folder does not have this file.", key, error) from error

    def put_file(self, key: str, source: str | os.PathLike, content_type: str) -> None:
        """Keep the file at `source` under `key` (a whole file appears, or none)."""
        def copy(out) -> None:
            with open(source, "rb") as data:
                while chunk := data.read(1024 * 1024):
                    out.write(chunk)

        self._write_whole(key, self._path(key), copy, "The file folder")

    def open(self, key: str):
        """A binary file object of the object at `key`, read in chunks by the caller (who closes it)."""
        try:
            return self._path(key).open("rb")
        except OSError as error:
            raise _refused("The file folder does not have this file.", key, error) from error

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink(missing_ok=True)
        except OSError as error:
            raise _refused(f"The file folder could not delete the file: {_disk_reason(error)}.", key,
                           error) from error


class S3Store:
    kind = S3

    def __init__(self, bucket: str, *, endpoint_url: str | None = None, region: str | None = None,
                 prefix: str = ""):
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        # Seconds, not minutes: an unreachable bucket answers a page with a message, not a hung worker.
        config = Config(connect_timeout=5, read_timeout=30, retries={"max_attempts": 3, "mode": "standard"},
                        s3={"addressing_style": "path"} if endpoint_url else None)
        self.client = boto3.client("s3", endpoint_url=endpoint_url or None, region_name=region or None,
                                   config=config)

    def put(self, key: str, data: bytes, content_type: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.put_object(Bucket=self.bucket, Key=self.prefix + key, Body=data, ContentType=content_type,
                                   ChecksumAlgorithm="SHA256")
        except (BotoCoreError, ClientError) as error:
            raise _refused(f"The document bucket could not keep the file: {_bucket_reason(error)}.", key,
                           error) from error

    def get(self, key: str) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)["Body"].read()
        except (BotoCoreError, ClientError) as error:
            raise _refused(f"The document bucket did not give back the file: {_bucket_reason(error)}.", key,
                           error) from error

    def put_file(self, key: str, source: str | os.PathLike, content_type: str) -> None:
        """Upload the file at `source` (in parts when large) under `key`."""
        from boto3.s3.transfer import TransferConfig
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.upload_file(str(source), self.bucket, self.prefix + key,
                                    ExtraArgs={"ContentType": content_type},
                                    Config=TransferConfig(multipart_threshold=64 * 1024 * 1024))
        except (BotoCoreError, ClientError, OSError) as error:
            raise _refused(f"The file bucket could not keep the file: {_bucket_reason(error)}.", key,
                           error) from error

    def open(self, key: str):
        """The object's body as a stream (read in chunks, then closed by the caller)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)["Body"]
        except (BotoCoreError, ClientError) as error:
            raise _refused(f"The file bucket did not give back the file: {_bucket_reason(error)}.", key,
                           error) from error

    def delete(self, key: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.prefix + key)
        except (BotoCoreError, ClientError) as error:
            raise _refused(f"The file bucket could not delete the file: {_bucket_reason(error)}.", key,
                           error) from error


def configured_kind(app=None) -> str:
    app = app or current_app
    return S3 if app.config.get("FILE_STORE_BUCKET") else FOLDER


def store(kind: str | None = None, app=None):
    """The store of `kind` (the configured one when None), built once per application."""
    app = app or current_app
    kind = kind or configured_kind(app)
    stores = app.extensions.setdefault("file_stores", {})
    if kind not in stores:
        if kind == S3:
            bucket = app.config.get("FILE_STORE_BUCKET")
            if not bucket:
                raise StoreError("Documents are in an S3 bucket, but FILE_STORE_BUCKET is not set.")
            stores[kind] = S3Store(bucket, endpoint_url=app.config.get("FILE_STORE_ENDPOINT_URL"),
                                   region=app.config.get("FILE_STORE_REGION"),
                                   prefix=app.config.get("FILE_STORE_PREFIX") or "")
        else:
            stores[kind] = FolderStore(app.config.get("FILE_STORE_PATH")
                                       or os.path.join(app.instance_path, "documents"))
    return stores[kind]


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
