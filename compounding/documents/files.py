"""A document's bytes on the way in and out, for the pages and the API alike.

In: the uploaded file read up to one byte past the limit (the service names the limit). Out: only
to someone who sees the record's site and holds its read permission, as an attachment the browser
neither renders in the app's origin nor guesses the type of, never kept in a shared cache, with
its SHA-256 as the ETag and a `Repr-Digest` (RFC 9530) so a client can check what it received.
"""

import base64
import unicodedata
from urllib.parse import quote

from flask import Response, request

from ..models import Document, User
from ..queries.documents import ensure_record_visible
from ..services import documents, sites

# What a multipart body carries besides the file (boundaries, headers, the form's other fields).
FORM_OVERHEAD = 64 * 1024
# The bytes are data to save, never a page of this origin: no script, no plugin, no frame of ours.
DOWNLOAD_CSP = "default-src 'none'; sandbox; frame-ancestors 'none'"


def upload_limit() -> int:
    """The largest request a document upload may be (werkzeug answers 413 beyond it, unread)."""
    return documents.max_bytes() + FORM_OVERHEAD


def too_large_message() -> str:
    limit = documents.max_bytes()
    return (f"The file is too large: a document may have at most {size_text(limit)} ({limit:,} bytes). "
            "Nothing was attached: scan at a lower resolution, or send the PDF itself.")


def size_text(size: int | None) -> str:
    """A size as people read it: 512 B, 12.3 KB, 10 MB."""
    size = int(size or 0)
    if size < 1024:
        return f"{size} B"
    value = size / 1024
    for unit in ("KB", "MB"):
        if value < 1024:
            return f"{value:.1f}".removesuffix(".0") + f" {unit}"
        value /= 1024
    return f"{value:.1f}".removesuffix(".0") + " GB"


def uploaded(field_name: str) -> tuple[bytes, str | None]:
    """The bytes and name of the file in the multipart field `field_name` (no file: empty and no name)."""
    upload = request.files.get(field_name)
    if upload is None:
        return b"", None
    return upload.read(documents.max_bytes() + 1), upload.filename


def readable(user: User, document_id: int) -> tuple[Document, bytes]:
    """The document and its bytes: 404 outside the viewer's sites, 403 without the record's read permission."""
    document = documents.get_document(document_id)
    ensure_record_visible(document.entity_type, document.entity_id, sites.visible_site_ids(user))
    return documents.read(user, document_id)


def ascii_name(filename: str) -> str:
    """The name for clients that do not read RFC 5987: accents dropped, anything else non-ASCII left out."""
    plain = unicodedata.normalize("NFKD", filename).encode("ascii", "ignore").decode()
    plain = "".join(c for c in plain if c.isprintable() and c not in '"\\;').strip()
    stem, dot, extension = plain.rpartition(".")
    if not stem.strip(" ._-"):
        return f"document.{extension}" if dot and extension else "document"
    return plain


def content_disposition(filename: str) -> str:
    """`attachment` with an ASCII `filename` and the exact name as `filename*` (RFC 6266, UTF-8)."""
    return f"attachment; filename=\"{ascii_name(filename)}\"; filename*=UTF-8''{quote(filename, safe='')}"


def repr_digest(sha256_hex: str) -> str:
    return f"sha-256=:{base64.b64encode(bytes.fromhex(sha256_hex)).decode()}:"


def download(document: Document, data: bytes) -> Response:
    response = Response(data, mimetype=document.content_type)
    response.headers["Content-Disposition"] = content_disposition(document.filename)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = DOWNLOAD_CSP
    response.headers["Cache-Control"] = "private, no-store"
    response.headers["ETag"] = f'"{document.sha256}"'
    response.headers["Repr-Digest"] = repr_digest(document.sha256)
    return response

